// offsync — the app's handle on its local data: edit offline, read, resolve conflicts.
#pragma once

#include <offsync/changes.hpp>
#include <offsync/concepts.hpp>
#include <offsync/detail/recording_transaction.hpp>
#include <offsync/detail/replica_logic.hpp>
#include <offsync/model.hpp>
#include <offsync/query.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
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

/// An ask-user conflict of a `T` record, typed: what the app shows the user.
template <synced_model T>
struct record_conflict {
    key_type_t<T> key{};
    std::optional<T> mine;   ///< the local version; empty when deleted locally
    std::optional<T> server; ///< the server's version; empty when the server deleted it
    std::uint64_t server_version = 0;
    /// Fields whose values differ between the two versions, in declaration order (every
    /// field, when one side is deleted).
    std::vector<std::string> changed_fields;
    std::chrono::system_clock::time_point found_at;
};

/// A change of a `T` record the server rejected, typed: parked until the user edits it again
/// or drops it (`drop_rejected`).
template <synced_model T>
struct rejected_record {
    key_type_t<T> key{};
    std::optional<T> mine;         ///< the rejected version; empty for a rejected delete
    std::optional<T> server;       ///< the server's version, if it has the record
    std::string code;              ///< the server's code ("invalid_field", "forbidden")
    std::string message;           ///< the server's reason
    std::chrono::system_clock::time_point found_at;
};

/// The local side of sync: a store plus the clock that stamps edits. Every edit is one store
/// transaction that records exactly which fields changed, so a push sends patches and an
/// acknowledgement never clears an edit it did not carry.
///
/// Typed members (`put<T>`, `get<T>`, ...) throw `sync_error` on failure; the JSON members return
/// `diagnostics`. A stored record that no longer decodes as `T` (a field of another type, written
/// by another program) throws `errc::undecodable_record` naming the collection, the key and the
/// field, and stays in the store as it is.
///
/// Change listeners (`subscribe`, `watch`) learn of every commit made through this replica or
/// an engine on it: local edits, pulled pages, conflicts a push settled.
///
/// Thread safety: as the store's; the shipped stores allow any thread, so the app may edit while
/// a round runs on the engine's executor. Lifetime: the store must outlive this.
template <storage_policy Storage>
class basic_replica {
public:
    explicit basic_replica(Storage& storage, wall_clock clock = system_wall_ms)
        : storage_(storage), clock_(std::move(clock)), hub_(std::make_shared<change_hub>()) {}

    Storage& storage() noexcept { return storage_; }
    const wall_clock& clock() const noexcept { return clock_; }
    /// Where commits' changes are published; the engine publishes through it too.
    change_hub& changes() noexcept { return *hub_; }

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
        const auto text = key_text(key);
        auto txn = storage_.begin();
        auto rec = txn.load(schema_of<T>().name, text);
        if (!rec || rec->deleted) return std::nullopt;
        return decoded<T>(text, rec->value);
    }

    /// Every live record of `T`'s collection, in key order.
    template <synced_model T>
    std::vector<T> list() {
        return list<T>(page_request{}).items;
    }

    /// One page of `T`'s live records, in key text order, after `page.after`. Served by the
    /// store when it can (`sqlite_storage`: one indexed range read), else by reading the
    /// collection.
    template <synced_model T>
    page<T> list(const page_request& request) {
        return find<T>(query<T>{}, request);
    }

    /// Every live record of `T`'s collection that matches `q`, in key order.
    template <synced_model T>
    std::vector<T> find(const query<T>& q) {
        return find<T>(q, page_request{}).items;
    }

    /// `find` with a single comparison: `find(field(&Task::done) == false)`.
    template <synced_model T>
    std::vector<T> find(const field_test<T>& test) {
        return find(query<T>(test));
    }
    template <synced_model T>
    page<T> find(const field_test<T>& test, const page_request& request) {
        return find(query<T>(test), request);
    }

    /// One page of the records that match `q`, in key text order, after `request.after`.
    /// `sqlite_storage` serves it in SQL, with an index the app declared
    /// (`sqlite_storage::create_index`) where one fits; other stores are read whole and
    /// filtered here (docs/app-api.md gives the costs).
    template <synced_model T>
    page<T> find(const query<T>& q, const page_request& request) {
        page<T> out;
        if (request.limit == 0) return out;
        const auto& name = schema_of<T>().name;
        if constexpr (queryable_storage<Storage>) {
            // One more than asked for tells whether a next page exists.
            const auto limit = request.limit == std::numeric_limits<std::size_t>::max()
                                   ? request.limit
                                   : request.limit + 1;
            auto rows = storage_.find(name, q.spec(), request.after, limit);
            for (auto& [key, rec] : rows) {
                if (out.items.size() == request.limit) {
                    out.next = key_text_of(out.items.back());
                    break;
                }
                out.items.push_back(decoded<T>(key, rec.value));
            }
        } else {
            for (auto& [key, rec] : storage_.list(name)) {
                if (!request.after.empty() && key <= request.after) continue;
                auto value = decoded<T>(key, rec.value);
                if (!q.matches(value)) continue;
                if (out.items.size() == request.limit) {
                    out.next = key_text_of(out.items.back());
                    break;
                }
                out.items.push_back(std::move(value));
            }
        }
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

    /// `T`'s parked ask-user conflicts, typed, in key text order.
    template <synced_model T>
    std::vector<record_conflict<T>> conflicts() {
        const auto& schema = schema_of<T>();
        std::vector<record_conflict<T>> out;
        for (auto& p : parked_of(schema.name, park_state::conflict)) {
            record_conflict<T> c;
            c.key = key_from_text<T>(p.key);
            if (!p.local_deleted) c.mine = decoded<T>(p.key, p.local_value);
            if (p.server && !p.server->deleted) c.server = decoded<T>(p.key, p.server->value);
            if (p.server) c.server_version = p.server->version;
            c.changed_fields = changed_fields(schema, p);
            c.found_at = time_of(p.detected_at_ms);
            out.push_back(std::move(c));
        }
        return out;
    }

    /// `T`'s changes the server rejected, typed, in key text order.
    template <synced_model T>
    std::vector<rejected_record<T>> rejected() {
        std::vector<rejected_record<T>> out;
        for (auto& p : parked_of(schema_of<T>().name, park_state::rejected)) {
            rejected_record<T> r;
            r.key = key_from_text<T>(p.key);
            if (!p.local_deleted) r.mine = decoded<T>(p.key, p.local_value);
            if (p.server && !p.server->deleted) r.server = decoded<T>(p.key, p.server->value);
            r.code = std::move(p.error_code);
            r.message = std::move(p.error_message);
            r.found_at = time_of(p.detected_at_ms);
            out.push_back(std::move(r));
        }
        return out;
    }

    /// Calls `callback(const std::vector<record_change<T>>&)` on `ex` after commits that change
    /// `T`'s records, until the returned subscription ends. The vector may be shared with other
    /// subscriptions: take it by reference (a parameter by value copies it). See changes.hpp
    /// for what is delivered and when.
    template <synced_model T, class Callback>
        requires std::invocable<Callback&, const std::vector<record_change<T>>&>
    [[nodiscard]] subscription subscribe(boost::asio::any_io_executor ex, Callback callback) {
        return subscribe_impl<T>(std::move(ex), std::nullopt, std::move(callback));
    }

    /// Calls `callback` for changes to `q`'s results: records that match after a commit, and
    /// records that matched before and no longer do (delivered without a value).
    template <synced_model T, class Callback>
        requires std::invocable<Callback&, const std::vector<record_change<T>>&>
    [[nodiscard]] subscription subscribe(boost::asio::any_io_executor ex, query<T> q,
                                         Callback callback) {
        return subscribe_impl<T>(std::move(ex), std::move(q), std::move(callback));
    }

    /// The same changes, to wait for with `async_wait` (completion tokens, cancellation).
    template <synced_model T>
    [[nodiscard]] change_stream<T> watch(boost::asio::any_io_executor ex,
                                         std::optional<query<T>> q = std::nullopt) {
        return change_stream<T>(hub_, std::move(ex), std::move(q));
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
        return in_transaction(schema.name, [&](auto& txn) {
            bool c = detail::local_edit(txn, schema, key, value, clock_());
            if (changed) *changed = c;
            return c;
        });
    }

    diagnostics erase(const collection_schema& schema, std::string_view key,
                      bool* changed = nullptr) {
        if (auto d = validate_key(key)) return d;
        return in_transaction(schema.name, [&](auto& txn) {
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

    /// Runs `f` on a transaction of `collection`'s records and commits it; listeners learn what
    /// it wrote once it has committed.
    template <class F>
    diagnostics in_transaction(const std::string& collection, F&& f) {
        try {
            auto txn = storage_.begin();
            detail::recording_transaction<typename Storage::transaction> noting(
                txn, hub_->begin(collection));
            f(noting);
            txn.commit();
            hub_->publish(noting.take());
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
        auto d = in_transaction(schema.name, [&](auto& txn) {
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

    template <synced_model T>
    T decoded(std::string_view key, const boost::json::object& value) {
        T out;
        if (auto d = decode_record<T>(key, value, out)) throw sync_error(d);
        return out;
    }

    template <synced_model T>
    static std::string key_text_of(const T& value) {
        return key_of(value);
    }

    static std::vector<std::string> changed_fields(const collection_schema& schema,
                                                   const parked_record& p) {
        std::vector<std::string> out;
        const bool server_gone = !p.server || p.server->deleted;
        if (p.local_deleted || server_gone) {
            if (p.local_deleted != server_gone) out = schema.fields;
            return out;
        }
        const auto mine = normalize(schema, p.local_value);
        const auto theirs = normalize(schema, p.server->value);
        const auto mask = detail::diff_mask(schema, mine, theirs);
        for (std::size_t i = 0; i < schema.fields.size(); ++i)
            if ((mask >> i) & 1) out.push_back(schema.fields[i]);
        return out;
    }

    static std::chrono::system_clock::time_point time_of(std::int64_t ms) {
        return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
    }

    template <synced_model T, class Callback>
    subscription subscribe_impl(boost::asio::any_io_executor ex, std::optional<query<T>> q,
                                Callback callback) {
        auto s = std::make_shared<detail::typed_subscriber<T>>(
            std::move(ex), std::move(q),
            [cb = std::move(callback)](const std::vector<record_change<T>>& c) mutable { cb(c); });
        hub_->add(s);
        return subscription(hub_, std::move(s));
    }

    std::vector<parked_record> parked_of(std::string_view collection, park_state kind) {
        auto all = storage_.parked(collection);
        std::erase_if(all, [&](const parked_record& p) { return p.kind != kind; });
        return all;
    }

    Storage& storage_;
    wall_clock clock_;
    std::shared_ptr<change_hub> hub_;
};

} // namespace offsync
