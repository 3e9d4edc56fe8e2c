// offsync — a client store that fails on demand: a StoragePolicy decorator for tests that must
// crash a store at an exact operation (a pull page half applied, a push result batch that
// cannot be stored, a commit that fails).
#pragma once

#include <offsync/concepts.hpp>
#include <offsync/detail/replica_logic.hpp>
#include <offsync/testing/fault_hook.hpp>

#include <concepts>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offsync {

namespace detail {
/// A store with a fault point inside its `commit()`, where no decorator reaches
/// (sqlite_storage: "make_durable", the sync that follows a COMMIT under `normal` durability).
/// The point calls the function it was given, which may throw.
template <class S>
concept commit_fault_point = requires(S& s, std::function<void(std::string_view)> point) {
    s.set_commit_fault_point(std::move(point));
};
} // namespace detail

/// Wraps a StoragePolicy and forwards every operation to it, after asking a `fault_hook`
/// whether the operation should fail instead. A failing operation throws what a failing store
/// throws, `sync_error` with `errc::storage_failure` and a message "injected storage failure at
/// <operation>", and the wrapped store never sees it: the operation changes nothing, and the
/// transaction it was part of rolls back when the caller abandons it.
///
/// Operation names are the members' names ("begin", "load", "set_cursor", "commit", "list",
/// ...), except that every write of a record is "save": `save` and, where the wrapped
/// transaction has them, `save_metadata`, `insert_new` and `acknowledge`. Those optional members
/// (the capabilities of detail/replica_logic.hpp) are forwarded exactly when the wrapped
/// transaction has them, so the engine takes the same paths as on the bare store. A store with
/// a fault point inside its commit (detail::commit_fault_point: sqlite_storage's
/// "make_durable") has it routed to the same hook. Members outside the concept (`path()`,
/// `native_handle()`, `list_where`) are reached through `next_layer()`.
///
/// The decorator owns the wrapped store, built in place from the constructor's arguments:
/// `faulty_storage<sqlite_storage> store(path, config);`.
///
/// Thread safety: as the wrapped store's. The hook runs under a lock of the decorator, so it
/// may be set from any thread; it must not call `set_fault_hook` itself.
template <storage_policy Storage>
class faulty_storage {
    using next_transaction = typename Storage::transaction;

public:
    using next_layer_type = Storage;

    template <class... Args>
        requires std::constructible_from<Storage, Args&&...>
    explicit faulty_storage(Args&&... args) : next_(std::forward<Args>(args)...) {
        if constexpr (detail::commit_fault_point<Storage>)
            next_.set_commit_fault_point([this](std::string_view point) { check(point); });
    }
    faulty_storage(const faulty_storage&) = delete;
    faulty_storage& operator=(const faulty_storage&) = delete;

    /// Replaces the hook; an empty one injects nothing.
    void set_fault_hook(fault_hook hook) {
        std::lock_guard lock(mutex_);
        hook_ = std::move(hook);
    }

    Storage& next_layer() noexcept { return next_; }
    const Storage& next_layer() const noexcept { return next_; }

    /// A transaction of the wrapped store, each operation asked about first.
    class transaction {
    public:
        transaction(transaction&&) = default;
        transaction& operator=(transaction&&) = delete;

        std::optional<local_record> load(std::string_view collection, std::string_view key) {
            check("load");
            return next_.load(collection, key);
        }
        void save(std::string_view collection, std::string_view key, const local_record& r) {
            check("save");
            next_.save(collection, key, r);
        }
        void remove(std::string_view collection, std::string_view key) {
            check("remove");
            next_.remove(collection, key);
        }
        std::vector<std::string> pushable_keys(std::string_view collection,
                                               std::string_view after, std::size_t limit) {
            check("pushable_keys");
            return next_.pushable_keys(collection, after, limit);
        }
        std::uint64_t cursor(std::string_view collection) {
            check("cursor");
            return next_.cursor(collection);
        }
        void set_cursor(std::string_view collection, std::uint64_t cursor) {
            check("set_cursor");
            next_.set_cursor(collection, cursor);
        }
        std::optional<parked_record> load_parked(std::string_view collection,
                                                 std::string_view key) {
            check("load_parked");
            return next_.load_parked(collection, key);
        }
        void save_parked(const parked_record& p) {
            check("save_parked");
            next_.save_parked(p);
        }
        void remove_parked(std::string_view collection, std::string_view key) {
            check("remove_parked");
            next_.remove_parked(collection, key);
        }
        std::uint64_t next_mutation_id() {
            check("next_mutation_id");
            return next_.next_mutation_id();
        }
        hlc_state clock() {
            check("clock");
            return next_.clock();
        }
        void set_clock(hlc_state s) {
            check("set_clock");
            next_.set_clock(s);
        }
        std::string client_id() {
            check("client_id");
            return next_.client_id();
        }
        void commit() {
            check("commit");
            next_.commit();
        }

        // The wrapped transaction's capabilities, where it has them.
        std::optional<local_record> load_metadata(std::string_view collection,
                                                  std::string_view key)
            requires detail::metadata_access<next_transaction>
        {
            check("load_metadata");
            return next_.load_metadata(collection, key);
        }
        void save_metadata(std::string_view collection, std::string_view key,
                           const local_record& r)
            requires detail::metadata_access<next_transaction>
        {
            check("save");
            next_.save_metadata(collection, key, r);
        }
        bool acknowledge(std::string_view collection, std::string_view key,
                         std::uint64_t generation, std::uint64_t version, std::int64_t now_ms)
            requires detail::acknowledge_access<next_transaction>
        {
            check("save");
            return next_.acknowledge(collection, key, generation, version, now_ms);
        }
        std::vector<std::pair<std::string, local_record>>
        pushable_records(std::string_view collection, std::string_view after, std::size_t limit)
            requires detail::batch_read_access<next_transaction>
        {
            check("pushable_records");
            return next_.pushable_records(collection, after, limit);
        }
        bool insert_new(std::string_view collection, std::string_view key, const local_record& r)
            requires detail::insert_access<next_transaction>
        {
            check("save");
            return next_.insert_new(collection, key, r);
        }
        std::string subset_state(std::string_view collection)
            requires subset_keeping_transaction<next_transaction>
        {
            check("subset_state");
            return next_.subset_state(collection);
        }
        void set_subset_state(std::string_view collection, std::string_view state)
            requires subset_keeping_transaction<next_transaction>
        {
            check("set_subset_state");
            next_.set_subset_state(collection, state);
        }

        next_transaction& next_layer() noexcept { return next_; }

    private:
        friend class faulty_storage;
        explicit transaction(faulty_storage& s) : store_(&s), next_(s.next_.begin()) {}
        void check(std::string_view operation) { store_->check(operation); }

        faulty_storage* store_;
        next_transaction next_;
    };

    transaction begin() {
        check("begin");
        return transaction(*this);
    }

    std::vector<std::pair<std::string, local_record>> list(std::string_view collection) {
        check("list");
        return next_.list(collection);
    }
    std::vector<parked_record> parked(std::string_view collection) {
        check("parked");
        return next_.parked(collection);
    }
    pending_counts pending(std::string_view collection) {
        check("pending");
        return next_.pending(collection);
    }

private:
    void check(std::string_view operation) {
        std::lock_guard lock(mutex_);
        detail::inject_fault(hook_, "storage", operation);
    }

    std::mutex mutex_;
    fault_hook hook_;
    Storage next_; // declared last: destroyed first, while the hook it may call still lives
};

} // namespace offsync
