// offsync — bases for policy decorators (a logging store, a metered transport) that keep the
// wrapped policy's optional capabilities.
//
// A decorator derives from one of these, passes everything through by default, and defines
// only the members it changes; its own member hides the base's. The base forwards each
// optional capability (concepts.hpp) exactly when the wrapped policy has it, so the engine
// takes the same fast paths through the decorator as on the bare policy:
//
//     struct logging_transaction : offsync::forwarding_transaction<offsync::sqlite_storage::transaction> {
//         using forwarding_transaction::forwarding_transaction;
//         void commit() { std::puts("commit"); next().commit(); }
//     };
//     using logging_store = offsync::forwarding_storage<offsync::sqlite_storage, logging_transaction>;
//
// docs/concepts.md ("Wrapping a policy") has a complete example.
#pragma once

#include <offsync/background.hpp>
#include <offsync/concepts.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace offsync {

/// A store transaction that forwards every operation to the transaction it wraps: by value
/// (`forwarding_transaction<sqlite_storage::transaction>`, for a store decorator, whose
/// `begin()` wraps the wrapped store's), or by reference (`forwarding_transaction<Txn&>`, to
/// watch one transaction someone else owns). Its optional members exist exactly when the
/// wrapped transaction has them.
///
/// A derived class that changes how records are written must change every write: `save`, and
/// where they exist `save_metadata`, `insert_new` and `acknowledge`.
template <class Next>
class forwarding_transaction {
    using next_type = std::remove_reference_t<Next>;

public:
    explicit forwarding_transaction(Next next) : next_(std::forward<Next>(next)) {}
    forwarding_transaction(forwarding_transaction&&) = default;

    next_type& next() noexcept { return next_; }

    // storage_transaction
    std::optional<local_record> load(std::string_view c, std::string_view k) { return next_.load(c, k); }
    void save(std::string_view c, std::string_view k, const local_record& r) { next_.save(c, k, r); }
    void remove(std::string_view c, std::string_view k) { next_.remove(c, k); }
    std::vector<std::string> pushable_keys(std::string_view c, std::string_view after, std::size_t n) {
        return next_.pushable_keys(c, after, n);
    }
    std::uint64_t cursor(std::string_view c) { return next_.cursor(c); }
    void set_cursor(std::string_view c, std::uint64_t v) { next_.set_cursor(c, v); }
    std::optional<parked_record> load_parked(std::string_view c, std::string_view k) {
        return next_.load_parked(c, k);
    }
    void save_parked(const parked_record& p) { next_.save_parked(p); }
    void remove_parked(std::string_view c, std::string_view k) { next_.remove_parked(c, k); }
    std::uint64_t next_mutation_id() { return next_.next_mutation_id(); }
    hlc_state clock() { return next_.clock(); }
    void set_clock(hlc_state s) { next_.set_clock(s); }
    std::string client_id() { return next_.client_id(); }
    void commit() { next_.commit(); }

    // Optional capabilities.
    std::optional<local_record> load_metadata(std::string_view c, std::string_view k)
        requires metadata_transaction<next_type>
    {
        return next_.load_metadata(c, k);
    }
    void save_metadata(std::string_view c, std::string_view k, const local_record& r)
        requires metadata_transaction<next_type>
    {
        next_.save_metadata(c, k, r);
    }
    bool acknowledge(std::string_view c, std::string_view k, std::uint64_t generation,
                     std::uint64_t version, std::int64_t now_ms)
        requires acknowledging_transaction<next_type>
    {
        return next_.acknowledge(c, k, generation, version, now_ms);
    }
    std::vector<std::pair<std::string, local_record>>
    pushable_records(std::string_view c, std::string_view after, std::size_t n)
        requires batch_reading_transaction<next_type>
    {
        return next_.pushable_records(c, after, n);
    }
    bool insert_new(std::string_view c, std::string_view k, const local_record& r)
        requires inserting_transaction<next_type>
    {
        return next_.insert_new(c, k, r);
    }
    std::string subset_state(std::string_view c)
        requires subset_keeping_transaction<next_type>
    {
        return next_.subset_state(c);
    }
    void set_subset_state(std::string_view c, std::string_view state)
        requires subset_keeping_transaction<next_type>
    {
        next_.set_subset_state(c, state);
    }

private:
    Next next_;
};

/// A StoragePolicy that owns the store it wraps (built in place from the constructor's
/// arguments) and forwards to it; `begin()` wraps each of its transactions in `Transaction`,
/// which is constructed from the wrapped store's transaction (a `forwarding_transaction` of
/// it, or a class derived from one). `find` exists when the wrapped store has it.
template <storage_policy Next,
          class Transaction = forwarding_transaction<typename Next::transaction>>
class forwarding_storage {
public:
    using transaction = Transaction;
    using next_layer_type = Next;

    template <class... Args>
        requires std::constructible_from<Next, Args&&...>
    explicit forwarding_storage(Args&&... args) : next_(std::forward<Args>(args)...) {}
    forwarding_storage(const forwarding_storage&) = delete;
    forwarding_storage& operator=(const forwarding_storage&) = delete;

    Next& next_layer() noexcept { return next_; }
    const Next& next_layer() const noexcept { return next_; }

    transaction begin() { return transaction(next_.begin()); }
    std::vector<std::pair<std::string, local_record>> list(std::string_view c) { return next_.list(c); }
    std::vector<parked_record> parked(std::string_view c) { return next_.parked(c); }
    pending_counts pending(std::string_view c) { return next_.pending(c); }
    std::vector<std::pair<std::string, local_record>>
    find(std::string_view c, const query_spec& spec, std::string_view after, std::size_t limit)
        requires queryable_storage<Next>
    {
        return next_.find(c, spec, after, limit);
    }

private:
    Next next_;
};

/// A TransportPolicy that owns the transport it wraps (built in place) and forwards to it,
/// with `get_executor`, `max_requests_in_flight` (pipelining_transport) and `retry_after`
/// (retry_after_hint) where the wrapped transport has them. A derived class overrides
/// `async_push` or `async_pull` as member templates taking any completion token.
template <transport_policy Next>
class forwarding_transport {
public:
    using next_layer_type = Next;

    template <class... Args>
        requires std::constructible_from<Next, Args&&...>
    explicit forwarding_transport(Args&&... args) : next_(std::forward<Args>(args)...) {}
    forwarding_transport(const forwarding_transport&) = delete;
    forwarding_transport& operator=(const forwarding_transport&) = delete;

    Next& next_layer() noexcept { return next_; }
    const Next& next_layer() const noexcept { return next_; }

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return next_.async_push(request, std::forward<Token>(token));
    }
    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return next_.async_pull(request, std::forward<Token>(token));
    }

    auto get_executor() const
        requires requires(const Next& n) { n.get_executor(); }
    {
        return next_.get_executor();
    }
    std::size_t max_requests_in_flight() const
        requires pipelining_transport<Next>
    {
        return next_.max_requests_in_flight();
    }
    auto retry_after() const
        requires retry_after_hint<Next>
    {
        return next_.retry_after();
    }

private:
    Next next_;
};

} // namespace offsync
