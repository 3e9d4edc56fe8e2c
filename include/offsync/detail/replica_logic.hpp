// offsync — the client's sync rules as plain functions over a storage transaction.
//
// Every rule that guards the "nothing lost" invariants lives here, once, for every store: the
// app's edits, building a push, applying its results, applying a pull page, and resolving
// conflicts. The engine and the replica only open transactions and call these.
#pragma once

#include <offsync/concepts.hpp>
#include <offsync/conflict/resolution.hpp>
#include <offsync/detail/validate.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>
#include <offsync/report.hpp>
#include <offsync/record.hpp>

#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace offsync::detail {

// The optional capabilities of concepts.hpp, under the names these rules use.
template <class Txn>
concept metadata_access = metadata_transaction<Txn>;
template <class Txn>
concept acknowledge_access = acknowledging_transaction<Txn>;
template <class Txn>
concept batch_read_access = batch_reading_transaction<Txn>;
template <class Txn>
concept insert_access = inserting_transaction<Txn>;

/// The record, its value included only where the store cannot leave it out.
template <class Txn>
std::optional<local_record> load_metadata(Txn& txn, std::string_view collection,
                                          std::string_view key) {
    if constexpr (metadata_access<Txn>) return txn.load_metadata(collection, key);
    else return txn.load(collection, key);
}

/// Saves a record whose value did not change since it was loaded (by `load` or
/// `load_metadata`).
template <class Txn>
void save_metadata(Txn& txn, std::string_view collection, std::string_view key,
                   const local_record& rec) {
    if constexpr (metadata_access<Txn>) txn.save_metadata(collection, key, rec);
    else txn.save(collection, key, rec);
}

/// Whether two values of `schema` read the same, a missing field reading as its default.
inline bool same_value(const collection_schema& schema, const boost::json::object& a,
                       const boost::json::object& b) {
    for (const auto& f : schema.fields) {
        const auto* x = a.if_contains(f);
        const auto* y = b.if_contains(f);
        if (!x) x = schema.defaults.if_contains(f);
        if (!y) y = schema.defaults.if_contains(f);
        if ((x == nullptr) != (y == nullptr) || (x && *x != *y)) return false;
    }
    return true;
}

/// The fields of `value` selected by `mask`, in schema order, a missing one as its default, in
/// `storage`. From a const `value` they are copied; from a mutable one, moved out (leaving
/// nulls in their place; a move into another storage copies).
template <class Object>
boost::json::object pick_fields(const collection_schema& schema, Object& value, std::uint64_t mask,
                         boost::json::storage_ptr storage) {
    boost::json::object out(std::move(storage));
    out.reserve(schema.fields.size());
    for (std::size_t i = 0; i < schema.fields.size(); ++i) {
        if (!((mask >> i) & 1)) continue;
        const auto& f = schema.fields[i];
        if (auto* v = value.if_contains(f)) {
            if constexpr (std::is_const_v<Object>) out.emplace(f, *v);
            else out.emplace(f, std::move(*v));
        } else if (const auto* d = schema.defaults.if_contains(f)) {
            out.emplace(f, *d);
        }
    }
    return out;
}

/// Fields of `value` selected by `mask`, in schema order.
inline boost::json::object select_fields(const collection_schema& schema, const boost::json::object& value,
                                  std::uint64_t mask) {
    return pick_fields(schema, value, mask, {});
}

/// `select_fields`, moving the values out of `value` into an object of its storage: for a
/// value read only to be sent.
inline boost::json::object take_fields(const collection_schema& schema, boost::json::object& value,
                                std::uint64_t mask) {
    return pick_fields(schema, value, mask, value.storage());
}

/// Bits of the fields whose values differ between `a` and `b`.
inline std::uint64_t diff_mask(const collection_schema& schema, const boost::json::object& a,
                               const boost::json::object& b) {
    std::uint64_t mask = 0;
    for (std::size_t i = 0; i < schema.fields.size(); ++i) {
        const auto* x = a.if_contains(schema.fields[i]);
        const auto* y = b.if_contains(schema.fields[i]);
        if ((x == nullptr) != (y == nullptr) || (x && *x != *y)) mask |= std::uint64_t{1} << i;
    }
    return mask;
}

/// The server's record over the local one, keeping the fields in `keep_mask` local.
inline boost::json::object overlay(const collection_schema& schema, const boost::json::object& server,
                            const boost::json::object& local, std::uint64_t keep_mask) {
    boost::json::object out = normalize(schema, server);
    for (std::size_t i = 0; i < schema.fields.size(); ++i)
        if ((keep_mask >> i) & 1)
            if (const auto* v = local.if_contains(schema.fields[i])) out[schema.fields[i]] = *v;
    return out;
}

/// An app edit: `value` replaces the record (nullopt deletes it). Returns false if nothing
/// changed. Marks exactly the changed fields dirty and bumps the change generation, which is
/// what keeps an acknowledgement of an older push from clearing this edit.
template <class Txn>
bool local_edit(Txn& txn, const collection_schema& schema, std::string_view key,
                std::optional<boost::json::object> value, std::int64_t now_ms) {
    auto loaded = txn.load(schema.name, key);
    local_record rec = loaded.value_or(local_record{});
    const bool live = loaded && !rec.deleted;
    if (value) {
        boost::json::object full = normalize(schema, *value);
        full[schema.key_field] = key_to_json(schema, key);
        const std::uint64_t changed =
            live ? diff_mask(schema, rec.value, full) : schema.all_fields_mask();
        if (changed == 0) return false;
        rec.value = std::move(full);
        rec.deleted = false;
        rec.delete_pending = false;
        rec.dirty_mask |= changed;
    } else {
        if (!live) return false;
        // Even a record created offline and never pushed sends its delete: a pull may have met
        // a record of the same id from another device (merged into this dirty one, base still
        // 0), and only the server can say. A delete of a record it never had costs it nothing.
        rec.value = {};
        rec.deleted = true;
        rec.delete_pending = true;
        rec.dirty_mask = 0;
    }
    auto clock = txn.clock();
    rec.modified_at = hlc_tick(clock, now_ms, txn.client_id());
    txn.set_clock(clock);
    ++rec.generation;
    // The edit's mutation id is issued here, in the row write the edit makes anyway, so
    // building a push writes nothing for a record edited once since its last push.
    rec.sent_mutation_id = txn.next_mutation_id();
    rec.sent_generation = rec.generation;
    if (rec.parked == park_state::rejected) {
        // A new edit is the app's answer to a rejection: push it again.
        rec.parked = park_state::none;
        txn.remove_parked(schema.name, key);
    } else if (rec.parked == park_state::conflict) {
        if (auto p = txn.load_parked(schema.name, key)) {
            p->local_value = rec.value;
            p->local_deleted = rec.deleted;
            txn.save_parked(*p);
        }
    }
    txn.save(schema.name, key, rec);
    return true;
}

/// What the engine remembers about a mutation in flight, to match its result.
struct sent_mutation {
    std::string key;
    std::uint64_t generation = 0;
};

/// The pushable records after key `after`, ascending, at most `limit`, each with its key: read
/// in one query by a store that can (`batch_read_access`), else listed and loaded one by one.
template <class Txn>
std::vector<std::pair<std::string, local_record>>
pushable_batch(Txn& txn, std::string_view collection, std::string_view after, std::size_t limit) {
    if constexpr (batch_read_access<Txn>) {
        return txn.pushable_records(collection, after, limit);
    } else {
        std::vector<std::pair<std::string, local_record>> out;
        for (auto& key : txn.pushable_keys(collection, after, limit))
            if (auto rec = txn.load(collection, key)) out.emplace_back(std::move(key), std::move(*rec));
        return out;
    }
}

/// Builds the mutations for `records` (from `pushable_batch`), assigning mutation ids where a
/// record has none for its current generation (an edit issues one; a resolved conflict or an
/// acknowledgement of an older generation clears it). A retry of an unchanged record reuses
/// its id, so the server answers it with its original outcome instead of writing twice.
/// The records' values are moved into the mutations: `records` is spent.
template <class Txn>
void build_push(Txn& txn, const collection_schema& schema,
                std::vector<std::pair<std::string, local_record>>& records,
                push_request& request, std::vector<sent_mutation>& sent) {
    for (auto& [key, rec] : records) {
        if (!rec.pushable()) continue;
        if (rec.sent_mutation_id == 0 || rec.sent_generation != rec.generation) {
            rec.sent_mutation_id = txn.next_mutation_id();
            rec.sent_generation = rec.generation;
            save_metadata(txn, schema.name, key, rec);
        }
        const auto op = rec.delete_pending ? mutation_op::remove : mutation_op::upsert;
        // A record the server may not have (new, or recreated over a tombstone) goes whole.
        const auto mask = rec.base_version == 0 ? schema.all_fields_mask() : rec.dirty_mask;
        // Constructed, not assigned: a boost::json::object assigned across storages is copied, and
        // the fields keep the storage the store read them into (sqlite_storage: one arena
        // per batch).
        request.mutations.push_back(mutation{
            rec.sent_mutation_id, schema.name, key_to_json(schema, key), op, rec.base_version,
            rec.modified_at,
            op == mutation_op::upsert ? take_fields(schema, rec.value, mask) : boost::json::object()});
        sent.push_back({std::move(key), rec.generation});
    }
}

/// Replaces the local record by the server's (a tombstone removes it).
template <class Txn>
void adopt_server(Txn& txn, const collection_schema& schema, std::string_view key,
                  local_record rec, const change& server, std::int64_t now_ms) {
    if (server.deleted) {
        txn.remove(schema.name, key);
        return;
    }
    rec.value = normalize(schema, server.value);
    rec.deleted = rec.delete_pending = false;
    rec.dirty_mask = 0;
    rec.base_version = server.version;
    rec.sent_mutation_id = 0;
    rec.parked = park_state::none;
    rec.last_synced_ms = now_ms;
    txn.save(schema.name, key, rec);
}

/// The server applied the mutation sent for `sent`. Clears the dirty state only if no local
/// edit happened since the push was built (invariant 1); otherwise the record stays dirty,
/// rebased on the new version, and its newer edit goes out in a later push.
///
/// `server` is the record at `version` when the answer carries it: fields other clients wrote
/// since the mutation's base merged with ours. The record takes their values (its dirty fields
/// stay), so that after the acknowledgement it holds the record as the server does.
///
/// Returns whether the store now holds the record as the feed has it at `version`: what the
/// echo of this write would confirm (false when the record is gone from the store).
template <class Txn>
bool apply_applied(Txn& txn, const collection_schema& schema, const sent_mutation& sent,
                   std::uint64_t version, std::int64_t now_ms,
                   const change* server = nullptr) {
    if (server && !server->deleted) {
        auto rec = txn.load(schema.name, sent.key);
        if (!rec || rec->delete_pending) return apply_applied(txn, schema, sent, version, now_ms);
        rec->base_version = version;
        rec->sent_mutation_id = 0;
        if (rec->generation == sent.generation) {
            rec->value = normalize(schema, server->value);
            rec->dirty_mask = 0;
            rec->last_synced_ms = now_ms;
        } else {
            rec->value = overlay(schema, server->value, rec->value, rec->dirty_mask);
        }
        txn.save(schema.name, sent.key, *rec);
        return rec->parked == park_state::none;
    }
    if constexpr (acknowledge_access<Txn>)
        if (txn.acknowledge(schema.name, sent.key, sent.generation, version, now_ms))
            return true;
    auto rec = load_metadata(txn, schema.name, sent.key);
    if (!rec) return false; // gone: the feed's record at `version` is not held
    rec->base_version = version;
    rec->sent_mutation_id = 0;
    if (rec->generation == sent.generation) {
        if (rec->delete_pending) {
            txn.remove(schema.name, sent.key);
            return true; // the feed holds the tombstone; a removed record is its match
        }
        rec->dirty_mask = 0;
        rec->last_synced_ms = now_ms;
    }
    save_metadata(txn, schema.name, sent.key, *rec);
    return rec->parked == park_state::none;
}

/// The parked copy of a local record, as the user will decide on it.
inline parked_record parked_from(const collection_schema& schema, std::string_view key,
                                 const local_record& rec, park_state kind, std::int64_t now_ms) {
    parked_record p;
    p.collection = schema.name;
    p.key = std::string(key);
    p.kind = kind;
    p.local_value = rec.value;
    p.local_deleted = rec.deleted;
    p.detected_at_ms = now_ms;
    return p;
}

/// Carries out a policy's decision on a conflicting record. `rec` must be the stored record.
/// Returns the outcome to report.
template <class Txn>
conflict_outcome apply_resolution(Txn& txn, const collection_schema& schema, std::string_view key,
                                  local_record rec, const change& server, const resolution& r,
                                  std::int64_t now_ms) {
    auto clock = txn.clock();
    hlc_observe(clock, server.stamp, now_ms);
    txn.set_clock(clock);
    switch (r.decision) {
    case resolution::kind::keep_local:
        rec.base_version = server.version;
        rec.sent_mutation_id = 0;
        rec.parked = park_state::none;
        if (!rec.delete_pending) {
            rec.value = overlay(schema, server.deleted ? schema.defaults : server.value, rec.value,
                                server.deleted ? schema.all_fields_mask() : rec.dirty_mask);
            if (server.deleted) rec.dirty_mask = schema.all_fields_mask();
        } else if (server.deleted) {
            // Both sides deleted it: nothing left to push.
            txn.remove(schema.name, key);
            return conflict_outcome::kept_local;
        }
        txn.save(schema.name, key, rec);
        return conflict_outcome::kept_local;
    case resolution::kind::take_server:
        adopt_server(txn, schema, key, std::move(rec), server, now_ms);
        return conflict_outcome::took_server;
    case resolution::kind::merged: {
        boost::json::object merged = normalize(schema, r.merged_value);
        merged[schema.key_field] = key_to_json(schema, key);
        rec.dirty_mask = server.deleted ? schema.all_fields_mask()
                                        : diff_mask(schema, server.value, merged);
        rec.value = std::move(merged);
        rec.deleted = rec.delete_pending = false;
        rec.base_version = server.version;
        rec.sent_mutation_id = 0;
        rec.parked = park_state::none;
        txn.save(schema.name, key, rec);
        return conflict_outcome::merged;
    }
    case resolution::kind::defer: {
        auto p = parked_from(schema, key, rec, park_state::conflict, now_ms);
        p.server = server;
        txn.save_parked(p);
        rec.parked = park_state::conflict;
        txn.save(schema.name, key, rec);
        return conflict_outcome::deferred;
    }
    }
    return conflict_outcome::deferred;
}

/// Parks a record whose mutation the server rejected, with the server's reason.
template <class Txn>
void park_rejected(Txn& txn, const collection_schema& schema, std::string_view key,
                   local_record rec, const mutation_result& result, std::int64_t now_ms) {
    auto p = parked_from(schema, key, rec, park_state::rejected, now_ms);
    p.server = result.server;
    p.error_code = result.error_code;
    p.error_message = result.error_message;
    txn.save_parked(p);
    rec.parked = park_state::rejected;
    rec.sent_mutation_id = 0;
    txn.save(schema.name, key, rec);
}

/// Applies one pulled change. Never overwrites a dirty field or a conflict-parked record
/// (invariant 2): a dirty record takes only the fields it has not changed, and nothing from a
/// change older than its base; a record parked by a conflict only refreshes the server side of
/// its parked record, so the user decides against the newest server version. A record parked
/// by a rejection refreshes that side too, and takes the fields it has not changed as a dirty
/// record does: the rejected fields stay as the user left them.
/// `c.value` may be moved from: a page is applied once.
///
/// An echo (the client's own write, still the record's latest, sent without its value) needs
/// nothing when the record is based on that version. Returns false when it is not: the store
/// has lost what it wrote (an older copy of the file, a power loss), so the page must be pulled
/// again in full; the caller then abandons the transaction.
///
/// `insert_first` (a store with `insert_access`) starts with an insert and falls back to the
/// lookup if the record exists. The caller keeps it across a page: it stays true while pulled
/// records turn out new (a first sync) and turns false at the first that is not.
template <class Txn>
bool apply_pulled(Txn& txn, const collection_schema& schema, change& c, std::int64_t now_ms,
                  bool* insert_first = nullptr) {
    std::string key;
    if (auto d = key_from_json(schema, c.id, key))
        throw sync_error(make_error_code(errc::bad_response), "pulled change: " + d.message);
    if (c.echo) {
        auto rec = load_metadata(txn, schema.name, key);
        if (!rec) return c.deleted; // its own delete, acknowledged and removed
        return rec->base_version == c.version && rec->parked == park_state::none;
    }
    // The caller's transaction then rolls back what the page stored before this change.
    if (!c.deleted) expect_server_value(schema, key, c.value, "pulled record");
    // The record as a store that has never had it keeps it: the server's, clean.
    auto fresh_from_server = [&] {
        local_record fresh;
        fresh.value = normalize(schema, std::move(c.value));
        fresh.base_version = c.version;
        fresh.last_synced_ms = now_ms;
        return fresh;
    };
    if constexpr (insert_access<Txn>) {
        if (insert_first && *insert_first && !c.deleted) {
            auto fresh = fresh_from_server();
            if (txn.insert_new(schema.name, key, fresh)) return true;
            *insert_first = false;
            c.value = std::move(fresh.value); // normalized already; the general path takes it
        }
    }
    auto rec = txn.load(schema.name, key);
    if (rec && rec->parked != park_state::none) {
        // A change at the version the parked side holds replaces it too: later in the feed is
        // newer news of the same version (a grouped record removed for this user, then given
        // back by a join, comes twice at its one version).
        if (auto p = txn.load_parked(schema.name, key);
            p && (!p->server || p->server->version <= c.version)) {
            p->server = c;
            txn.save_parked(*p);
        }
        if (rec->parked == park_state::conflict) return true;
    }
    if (!rec) {
        if (c.deleted) return true;
        txn.save(schema.name, key, fresh_from_server());
        return true;
    }
    if (!rec->dirty()) {
        // Equal versions are adopted too: an acknowledgement tells the version of our write,
        // but the server's record at that version may hold other fields we have not seen.
        if (c.version < rec->base_version) return true;
        // The echo of this client's own acknowledged write (a round pulls back what it pushed):
        // same version, same value, so there is nothing to store.
        if (c.version == rec->base_version && !c.deleted && !rec->deleted &&
            rec->parked == park_state::none && rec->sent_mutation_id == 0 &&
            same_value(schema, c.value, rec->value))
            return true;
        adopt_server(txn, schema, key, std::move(*rec), c, now_ms);
        return true;
    }
    // Dirty: the push will settle conflicts on the dirty fields; take the others, unless the
    // change is older than the version the record is based on (its other fields are newer
    // already; taking them would leave this copy behind the server's once the push is
    // acknowledged). A tombstone or a pending local delete leaves the record for the push to
    // settle with the policy.
    if (c.version < rec->base_version || c.deleted || rec->delete_pending) return true;
    rec->value = overlay(schema, c.value, rec->value, rec->dirty_mask);
    txn.save(schema.name, key, *rec);
    return true;
}

} // namespace offsync::detail
