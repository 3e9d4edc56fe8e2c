// offsync — the three policy concepts. A type that models one plugs into basic_sync_engine.
//
// Each concept lists the few operations the engine calls; docs/concepts.md walks through
// writing each policy, and tests/test_custom_policies.cpp writes all three from scratch.
#pragma once

#include <offsync/conflict/resolution.hpp>
#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/protocol.hpp>
#include <offsync/query.hpp>
#include <offsync/record.hpp>

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offsync {

/// One atomic unit of work on a client store. Reads see the transaction's own writes. Nothing
/// is visible to other transactions until `commit()`; destroying an uncommitted transaction
/// rolls it back. Any operation may throw (`sync_error` with `errc::storage_failure`, or the
/// store's own exception); the engine then abandons the transaction, so a failure midway never
/// leaves half of a pull page or half of a push result batch applied.
///
/// Thread safety: a store serialises its transactions, so the app may write on its own thread
/// while a round runs; the engine never holds a transaction across an asynchronous wait.
template <class T>
concept storage_transaction = requires(T& t, const T& ct, std::string_view collection,
                                       std::string_view key, const local_record& rec,
                                       const parked_record& parked, hlc_state clock,
                                       std::uint64_t n) {
    { t.load(collection, key) } -> std::same_as<std::optional<local_record>>;
    t.save(collection, key, rec);
    t.remove(collection, key);
    /// Keys of pushable records (dirty, not parked) greater than `after`, ascending, at most n.
    /// Must be served by an index: a round never scans clean records.
    { t.pushable_keys(collection, key, std::size_t(n)) } -> std::same_as<std::vector<std::string>>;
    { t.cursor(collection) } -> std::same_as<std::uint64_t>;
    t.set_cursor(collection, n);
    { t.load_parked(collection, key) } -> std::same_as<std::optional<parked_record>>;
    t.save_parked(parked);
    t.remove_parked(collection, key);
    /// Issues the next mutation id of this client (persisted: never issued twice).
    { t.next_mutation_id() } -> std::same_as<std::uint64_t>;
    { t.clock() } -> std::same_as<hlc_state>;
    t.set_clock(clock);
    { t.client_id() } -> std::same_as<std::string>;
    t.commit();
};

/// A client's local store: records with sync metadata, the dirty index, pull cursors, parked
/// records, the client id (created once), the mutation sequence and the HLC state.
template <class S>
concept storage_policy = requires(S& s, std::string_view collection) {
    typename S::transaction;
    requires storage_transaction<typename S::transaction>;
    { s.begin() } -> std::same_as<typename S::transaction>;
    /// Every live (not deleted) record of a collection, for the app to display.
    { s.list(collection) } -> std::same_as<std::vector<std::pair<std::string, local_record>>>;
    /// Parked records of one collection, or of all when `collection` is empty.
    { s.parked(collection) } -> std::same_as<std::vector<parked_record>>;
    { s.pending(collection) } -> std::same_as<pending_counts>;
};

// --- Optional capabilities of a store transaction: fast paths the engine takes where a
// transaction has them. A decorator keeps them by forwarding them (forwarding.hpp).

/// Reads and writes a record's sync metadata without its value (sqlite_storage):
/// `load_metadata` returns the record with an empty `value`; `save_metadata` writes every
/// member but `value` of a record that exists. Acknowledging a push then neither parses nor
/// re-serialises the record's JSON.
template <class Txn>
concept metadata_transaction = requires(Txn& t, std::string_view s, const local_record& r) {
    { t.load_metadata(s, s) } -> std::same_as<std::optional<local_record>>;
    t.save_metadata(s, s, r);
};

/// Acknowledges a push in one write (sqlite_storage): `acknowledge(collection, key,
/// generation, version, now_ms)` marks the record clean at `version` if it is still at
/// `generation` and holds no pending delete, and returns whether it did; otherwise it changes
/// nothing and the engine takes the general path.
template <class Txn>
concept acknowledging_transaction =
    requires(Txn& t, std::string_view s, std::uint64_t n, std::int64_t ms) {
        { t.acknowledge(s, s, n, n, ms) } -> std::same_as<bool>;
    };

/// Reads a push batch in one query (sqlite_storage): `pushable_records(collection, after,
/// limit)` gives what `pushable_keys` would, each key with its record.
template <class Txn>
concept batch_reading_transaction = requires(Txn& t, std::string_view s, std::size_t n) {
    { t.pushable_records(s, s, n) } -> std::same_as<std::vector<std::pair<std::string, local_record>>>;
};

/// Inserts a record only if none is stored under its key (sqlite_storage): `insert_new(
/// collection, key, record)` returns whether it did. A pulled record new to the store then
/// costs one write instead of a failed lookup and a write.
template <class Txn>
concept inserting_transaction = requires(Txn& t, std::string_view s, const local_record& r) {
    { t.insert_new(s, s, r) } -> std::same_as<bool>;
};

/// Keeps, per collection, the partial-sync state the engine writes (an opaque text: the subset
/// the device holds and a backfill under way; empty when there is none), in the transaction
/// with the records and the cursor it belongs with. `set_subset_state(collection, "")` erases
/// it. A store needs it for `set_subset` (memory_storage and sqlite_storage have it).
template <class Txn>
concept subset_keeping_transaction = requires(Txn& t, std::string_view s) {
    { t.subset_state(s) } -> std::same_as<std::string>;
    t.set_subset_state(s, s);
};

/// A store that serves typed queries and pages itself (sqlite_storage): `find(collection,
/// spec, after, limit)` returns, in key text order, at most `limit` live records whose key text
/// is greater than `after` and that meet every condition of `spec` (a missing or null field
/// meets none). `basic_replica::find` and `list` use it; without it they read the collection
/// through `list` and filter the decoded records.
template <class S>
concept queryable_storage = requires(S& s, std::string_view collection, const query_spec& spec,
                                     std::size_t limit) {
    { s.find(collection, spec, collection, limit) }
        -> std::same_as<std::vector<std::pair<std::string, local_record>>>;
};

namespace detail {
struct push_handler_archetype {
    void operator()(error_code, push_response) const {}
};
struct pull_handler_archetype {
    void operator()(error_code, pull_response) const {}
};
} // namespace detail

/// Carries push batches and pull pages to a server. Both operations follow Asio's universal
/// model: they take any completion token (`boost::asio::deferred`, `boost::asio::use_awaitable`, a callback,
/// `boost::asio::use_future`) and complete with `(error_code, response)`. A non-success code means the
/// round cannot trust the answer: the engine ends the round and keeps every unacknowledged
/// change dirty. Operations should support terminal cancellation; the engine relies on it to
/// cancel a round promptly.
template <class T>
concept transport_policy = requires(T& t, const push_request& push, const pull_request& pull) {
    t.async_push(push, detail::push_handler_archetype{});
    t.async_pull(pull, detail::pull_handler_archetype{});
};

/// A transport that carries more than one request at a time says how many through
/// `max_requests_in_flight()`: the engine then sends the next push batches before the answers
/// to the earlier ones have come back, up to that many unanswered (`http_transport` pipelines
/// them on its one connection). Answers must complete in the order the requests were made, as
/// a server applies them. A transport without the member is given one request at a time.
template <class T>
concept pipelining_transport = requires(const T& t) {
    { t.max_requests_in_flight() } -> std::convertible_to<std::size_t>;
};

/// Decides a conflict: any callable from `const conflict&` to `resolution`. The shipped ones are
/// last_write_wins, server_wins and ask_user; a lambda that merges field by field is a policy too.
template <class P>
concept conflict_policy = std::copy_constructible<P> && requires(const P& p, const conflict& c) {
    { p(c) } -> std::convertible_to<resolution>;
};

} // namespace offsync
