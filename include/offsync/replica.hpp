// offsync — the app's handle on its local data: edit offline, read, resolve conflicts.
#pragma once

#include <offsync/concepts.hpp>
#include <offsync/detail/replica_logic.hpp>
#include <offsync/model.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync {

/// How the app settles an ask-user conflict.
enum class resolve_choice {
    keep_mine,  ///< push the local version, rebased on the server version in the conflict record
    use_server, ///< adopt the server version
};

/// The local side of sync: a store plus the clock that stamps edits. Every edit is one store
/// transaction that records exactly which fields changed, so a push sends patches and an
/// acknowledgement never clears an edit it did not carry.
///
/// Typed members (`put<T>`, `get<T>`, ...) throw `sync_error` on failure; the JSON members return
/// `diagnostics`. Thread safety: as the store's; the shipped stores allow any thread, so the app
/// may edit while a round runs on the engine's executor. Lifetime: the store must outlive this.
template <storage_policy Storage>
class basic_replica {
public:
    explicit basic_replica(Storage& storage, wall_clock clock = system_wall_ms)
        : storage_(storage), clock_(std::move(clock)) {}

    Storage& storage() noexcept { return storage_; }
    const wall_clock& clock() const noexcept { return clock_; }

    /// Creates or replaces a record; only the fields that differ become dirty.
    /// Returns false when the value equals the stored one (nothing to sync).
    template <synced_model T>
    bool put(const T& value) {
        bool changed = false;
        check(put(schema_of<T>(), key_of(value), to_json_object(value), &changed));
        return changed;
    }

    /// Deletes a record locally; the delete is pushed as a tombstone. False if there was none.
    template <synced_model T>
    bool erase(const key_type_t<T>& key) {
        bool changed = false;
        check(erase(schema_of<T>(), key_text(key), &changed));
        return changed;
    }

    template <synced_model T>
    std::optional<T> get(const key_type_t<T>& key) {
        auto txn = storage_.begin();
        auto rec = txn.load(schema_of<T>().name, key_text(key));
        if (!rec || rec->deleted) return std::nullopt;
        return from_json<T>(rec->value);
    }

    /// Every live record of `T`'s collection, in key order.
    template <synced_model T>
    std::vector<T> list() {
        std::vector<T> out;
        for (auto& [key, rec] : storage_.list(schema_of<T>().name))
            out.push_back(from_json<T>(rec.value));
        return out;
    }

    template <synced_model T>
    pending_counts pending() {
        return storage_.pending(schema_of<T>().name);
    }

    /// Parked ask-user conflicts of one collection (all when empty).
    std::vector<parked_record> conflicts(std::string_view collection = {}) {
        return parked_of(collection, park_state::conflict);
    }
    /// Mutations the server rejected, parked with its reason (the dead letters).
    std::vector<parked_record> rejected(std::string_view collection = {}) {
        return parked_of(collection, park_state::rejected);
    }

    template <synced_model T>
    void resolve(const key_type_t<T>& key, resolve_choice choice) {
        check(resolve(schema_of<T>(), key_text(key), choice));
    }
    /// Settles a conflict with a value of the app's making (both sides merged by hand).
    template <synced_model T>
    void resolve_merged(const T& merged) {
        check(resolve_merged(schema_of<T>(), key_of(merged), to_json_object(merged)));
    }
    /// Drops a rejected change: the record returns to the server's version (or goes, if the
    /// server has none).
    template <synced_model T>
    void drop_rejected(const key_type_t<T>& key) {
        check(drop_rejected(schema_of<T>(), key_text(key)));
    }

    // --- JSON level: for schemas built at run time, and the typed members' implementation.

    diagnostics put(const collection_schema& schema, std::string_view key,
                    const boost::json::object& value, bool* changed = nullptr) {
        if (auto d = validate_key(key)) return d;
        if (auto d = detail::validate_value(schema, key, value)) return d;
        return in_transaction([&](auto& txn) {
            bool c = detail::local_edit(txn, schema, key, value, clock_());
            if (changed) *changed = c;
            return c;
        });
    }

    diagnostics erase(const collection_schema& schema, std::string_view key,
                      bool* changed = nullptr) {
        return in_transaction([&](auto& txn) {
            bool c = detail::local_edit(txn, schema, key, std::nullopt, clock_());
            if (changed) *changed = c;
            return c;
        });
    }

    diagnostics resolve(const collection_schema& schema, std::string_view key,
                        resolve_choice choice) {
        return settle(schema, key, park_state::conflict, [&](auto& txn, local_record rec,
                                                             const change& server) {
            if (choice == resolve_choice::keep_mine)
                detail::apply_resolution(txn, schema, key, std::move(rec), server,
                                         resolution::keep_local(), clock_());
            else
                detail::adopt_server(txn, schema, key, std::move(rec), server, clock_());
        });
    }

    diagnostics resolve_merged(const collection_schema& schema, std::string_view key,
                               const boost::json::object& merged) {
        if (auto d = detail::validate_value(schema, key, merged)) return d;
        return settle(schema, key, park_state::conflict, [&](auto& txn, local_record rec,
                                                             const change& server) {
            detail::apply_resolution(txn, schema, key, std::move(rec), server,
                                     resolution::merged(merged), clock_());
        });
    }

    diagnostics drop_rejected(const collection_schema& schema, std::string_view key) {
        return settle(schema, key, park_state::rejected, [&](auto& txn, local_record rec,
                                                             const change& server) {
            detail::adopt_server(txn, schema, key, std::move(rec), server, clock_());
        });
    }

private:
    static void check(const diagnostics& d) {
        if (d) throw sync_error(d);
    }

    static diagnostics validate_key(std::string_view key) {
        if (key.empty() || key.size() > max_id_length)
            return {make_error_code(errc::invalid_id),
                    "id must be 1 to " + std::to_string(max_id_length) + " bytes"};
        return {};
    }

    template <class F>
    diagnostics in_transaction(F&& f) {
        try {
            auto txn = storage_.begin();
            f(txn);
            txn.commit();
            return {};
        } catch (const sync_error& e) {
            return {e.code(), e.what()};
        } catch (const std::exception& e) {
            return {make_error_code(errc::storage_failure), e.what()};
        }
    }

    /// Ends a parked state with `f(txn, record, server_version)` and removes the parked record.
    template <class F>
    diagnostics settle(const collection_schema& schema, std::string_view key, park_state kind,
                       F&& f) {
        diagnostics result;
        auto d = in_transaction([&](auto& txn) {
            auto p = txn.load_parked(schema.name, key);
            auto rec = txn.load(schema.name, key);
            if (!p || p->kind != kind || !rec) {
                result = {make_error_code(kind == park_state::conflict ? errc::no_such_conflict
                                                                       : errc::not_parked),
                          schema.name + "/" + std::string(key) + " has no " +
                              (kind == park_state::conflict ? "pending conflict"
                                                            : "rejected change")};
                return;
            }
            txn.remove_parked(schema.name, key);
            rec->parked = park_state::none;
            // A rejected record the server never held has only a tombstone to go back to.
            change server = p->server ? *p->server : change{{}, 0, true, {}, {}};
            f(txn, std::move(*rec), server);
        });
        return d ? d : result;
    }

    std::vector<parked_record> parked_of(std::string_view collection, park_state kind) {
        auto all = storage_.parked(collection);
        std::erase_if(all, [&](const parked_record& p) { return p.kind != kind; });
        return all;
    }

    Storage& storage_;
    wall_clock clock_;
};

} // namespace offsync
