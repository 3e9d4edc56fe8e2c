// offsync — an in-memory StoragePolicy: for tests, caches and apps that persist elsewhere.
#pragma once

#include <offsync/record.hpp>
#include <offsync/uuid.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offsync {

/// A transactional in-memory store. Transactions serialise on one mutex; writes are staged and
/// applied at commit, so a transaction abandoned midway (an exception; tests inject one with
/// testing/faulty_storage.hpp) changes nothing. The pushable-record index is kept per
/// collection, so building a push batch costs O(batch · log n), never a scan.
///
/// Thread safety: every member function may be called from any thread. A transaction object
/// holds the store's lock for its lifetime: do not begin a second one on the same thread while
/// one is alive.
class memory_storage {
    struct state;

public:
    explicit memory_storage(std::string client_id = make_uuid()) {
        state_.client_id = std::move(client_id);
    }
    memory_storage(const memory_storage&) = delete;
    memory_storage& operator=(const memory_storage&) = delete;

    class transaction {
    public:
        transaction(transaction&&) noexcept = default;
        transaction& operator=(transaction&&) = delete;

        std::optional<local_record> load(std::string_view collection, std::string_view key) {
            auto id = make_id(collection, key);
            if (auto it = records_.find(id); it != records_.end()) return it->second;
            auto& all = store_->state_.records;
            if (auto it = all.find(id); it != all.end()) return it->second;
            return std::nullopt;
        }
        void save(std::string_view collection, std::string_view key, const local_record& r) {
            records_[make_id(collection, key)] = r;
        }
        void remove(std::string_view collection, std::string_view key) {
            records_[make_id(collection, key)] = std::nullopt;
        }
        std::vector<std::string> pushable_keys(std::string_view collection,
                                               std::string_view after, std::size_t limit) {
            std::vector<std::string> keys;
            auto it = store_->state_.pushable.find(std::string(collection));
            if (it == store_->state_.pushable.end()) return keys;
            for (auto k = it->second.upper_bound(after); k != it->second.end() && keys.size() < limit;
                 ++k)
                keys.push_back(*k);
            return keys;
        }
        std::uint64_t cursor(std::string_view collection) {
            std::string c(collection);
            if (auto it = cursors_.find(c); it != cursors_.end()) return it->second;
            auto& all = store_->state_.cursors;
            auto it = all.find(c);
            return it == all.end() ? 0 : it->second;
        }
        void set_cursor(std::string_view collection, std::uint64_t cursor) {
            cursors_[std::string(collection)] = cursor;
        }
        std::string subset_state(std::string_view collection) {
            std::string c(collection);
            if (auto it = subset_states_.find(c); it != subset_states_.end()) return it->second;
            auto& all = store_->state_.subset_states;
            auto it = all.find(c);
            return it == all.end() ? std::string() : it->second;
        }
        void set_subset_state(std::string_view collection, std::string_view state) {
            subset_states_[std::string(collection)] = std::string(state);
        }
        std::optional<parked_record> load_parked(std::string_view collection,
                                                 std::string_view key) {
            auto id = make_id(collection, key);
            if (auto it = parked_.find(id); it != parked_.end()) return it->second;
            auto& all = store_->state_.parked;
            if (auto it = all.find(id); it != all.end()) return it->second;
            return std::nullopt;
        }
        void save_parked(const parked_record& p) {
            parked_[make_id(p.collection, p.key)] = p;
        }
        void remove_parked(std::string_view collection, std::string_view key) {
            parked_[make_id(collection, key)] = std::nullopt;
        }
        std::uint64_t next_mutation_id() {
            if (!next_mutation_) next_mutation_ = store_->state_.next_mutation;
            return (*next_mutation_)++;
        }
        hlc_state clock() { return clock_ ? *clock_ : store_->state_.clock; }
        void set_clock(hlc_state s) { clock_ = s; }
        std::string client_id() { return store_->state_.client_id; }

        void commit() {
            auto& st = store_->state_;
            for (auto& [id, rec] : records_) {
                auto& index = st.pushable[id.first];
                if (rec) {
                    if (rec->pushable()) index.insert(id.second);
                    else index.erase(id.second);
                    st.records[id] = std::move(*rec);
                } else {
                    index.erase(id.second);
                    st.records.erase(id);
                }
            }
            for (auto& [id, p] : parked_) {
                if (p) st.parked[id] = std::move(*p);
                else st.parked.erase(id);
            }
            for (auto& [c, v] : cursors_) st.cursors[c] = v;
            for (auto& [c, v] : subset_states_) {
                if (v.empty()) st.subset_states.erase(c);
                else st.subset_states[c] = std::move(v);
            }
            if (next_mutation_) st.next_mutation = *next_mutation_;
            if (clock_) st.clock = *clock_;
            records_.clear();
            parked_.clear();
            cursors_.clear();
            subset_states_.clear();
            next_mutation_.reset();
            clock_.reset();
        }

    private:
        friend class memory_storage;
        using record_id = std::pair<std::string, std::string>;
        static record_id make_id(std::string_view c, std::string_view k) {
            return {std::string(c), std::string(k)};
        }
        explicit transaction(memory_storage& s) : store_(&s), lock_(s.mutex_) {}

        memory_storage* store_;
        std::unique_lock<std::mutex> lock_;
        std::map<record_id, std::optional<local_record>> records_;
        std::map<record_id, std::optional<parked_record>> parked_;
        std::map<std::string, std::uint64_t> cursors_;
        std::map<std::string, std::string> subset_states_;
        std::optional<std::uint64_t> next_mutation_;
        std::optional<hlc_state> clock_;
    };

    transaction begin() { return transaction(*this); }

    std::vector<std::pair<std::string, local_record>> list(std::string_view collection) {
        std::lock_guard lock(mutex_);
        std::vector<std::pair<std::string, local_record>> out;
        const std::string c(collection);
        for (auto it = state_.records.lower_bound({c, ""});
             it != state_.records.end() && it->first.first == c; ++it)
            if (!it->second.deleted) out.emplace_back(it->first.second, it->second);
        return out;
    }

    std::vector<parked_record> parked(std::string_view collection) {
        std::lock_guard lock(mutex_);
        std::vector<parked_record> out;
        for (auto& [id, p] : state_.parked)
            if (collection.empty() || id.first == collection) out.push_back(p);
        return out;
    }

    pending_counts pending(std::string_view collection) {
        std::lock_guard lock(mutex_);
        pending_counts counts;
        if (auto it = state_.pushable.find(std::string(collection)); it != state_.pushable.end())
            counts.dirty = it->second.size();
        for (auto& [id, p] : state_.parked)
            if (id.first == collection)
                ++(p.kind == park_state::conflict ? counts.conflicts : counts.rejected);
        return counts;
    }

private:
    struct state {
        std::string client_id;
        std::map<std::pair<std::string, std::string>, local_record> records;
        std::map<std::string, std::set<std::string, std::less<>>> pushable;
        std::map<std::pair<std::string, std::string>, parked_record> parked;
        std::map<std::string, std::uint64_t> cursors;
        std::map<std::string, std::string> subset_states;
        std::uint64_t next_mutation = 1;
        hlc_state clock;
    };

    std::mutex mutex_;
    state state_;
};

} // namespace offsync
