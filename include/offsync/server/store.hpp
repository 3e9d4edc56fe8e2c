// offsync — where the sync service keeps its state: the server store interface and the
// in-memory store. The SQLite store is in server/sqlite_store.hpp.
#pragma once

#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace offsync::server {

/// Which version wrote a field, and which writer (a client id, "server", or a REST writer).
struct field_stamp {
    std::uint64_t version = 0;
    std::string writer;
    friend bool operator==(const field_stamp&, const field_stamp&) = default;
};

/// One stored record. Its owner is the user of a per-user record, empty for a shared record;
/// a user's own values of a shared record's per-user fields are a record of their own, owned by
/// that user.
struct server_record {
    std::string key;
    boost::json::object value; ///< every field of the schema; empty for a tombstone
    bool deleted = false;
    std::uint64_t version = 0;
    hlc_stamp stamp;
    std::string last_writer;
    std::vector<field_stamp> fields; ///< aligned with the schema's `fields`
};

/// What the service keeps besides records: the version sequence, the REST writer sequence and
/// the hybrid logical clock. Saved with every write transaction.
struct server_counters {
    std::uint64_t last_version = 0;
    std::uint64_t rest_writes = 0;
    hlc_state clock;
};

/// The storage the sync service runs on. The service serialises every call (one mutex), so an
/// implementation need not be thread safe. Writes happen only between `begin()` and `commit()`;
/// everything written in between becomes visible together or, after `rollback()`, not at all.
///
/// Failures throw `sync_error` (usually `errc::storage_failure`); the service rolls back and
/// answers the request with a server error, so the client retries it later.
///
/// Records are read and written whole: an implementation stores them as it likes, but must
/// return each record exactly as put, with `value` and `fields` aligned to the schema it is
/// given (a field the schema gained since the record was written reads as its default, with
/// version 0).
class server_store {
public:
    virtual ~server_store() = default;

    virtual void begin() = 0;
    virtual void commit() = 0;
    virtual void rollback() noexcept = 0;

    virtual server_counters counters() = 0;
    virtual void set_counters(const server_counters& counters) = 0;

    /// The record (owner, key) of the collection, tombstones included.
    virtual std::optional<server_record> find(const collection_schema& schema,
                                              std::string_view owner, std::string_view key) = 0;
    /// Inserts or replaces the record (owner, record.key).
    virtual void put(const collection_schema& schema, std::string_view owner,
                     const server_record& record) = 0;
    /// Inserts the record (owner, record.key) unless that key exists, a tombstone included;
    /// returns whether it did. The default looks the key up first; a store that can insert
    /// and detect the clash in one step saves the lookup for every new record.
    virtual bool insert_new(const collection_schema& schema, std::string_view owner,
                            const server_record& record) {
        if (find(schema, owner, record.key)) return false;
        put(schema, owner, record);
        return true;
    }
    /// The change feed of one owner: records with a version above `since`, ascending, at most
    /// `limit` of them. Cost must grow with the page, not with the collection. The records'
    /// `fields` (per-field versions) may be left empty: the feed serves pulls and lists, which
    /// do not need them.
    virtual void feed(const collection_schema& schema, std::string_view owner,
                      std::uint64_t since, std::size_t limit,
                      std::vector<server_record>& out) = 0;

    /// `feed` as the client `client_id` pulls it: the service answers the records that client
    /// wrote last as echoes, without their values, so a store may leave those values unread
    /// (empty). The default reads them like any other.
    virtual void feed_for_client(const collection_schema& schema, std::string_view owner,
                                 std::uint64_t since, std::size_t limit,
                                 std::vector<server_record>& out, std::string_view client_id) {
        (void)client_id;
        feed(schema, owner, since, limit, out);
    }

    /// The version of the owner's last record in the feed below `version` (0: none), if the
    /// store can tell with one index probe; nullopt otherwise. With it a push answer can tell
    /// the client that the feed from there up to its own writes holds nothing else, so the
    /// client skips pulling its echoes. The default answers nullopt: the client pulls them.
    virtual std::optional<std::uint64_t> feed_version_below(const collection_schema& schema,
                                                            std::string_view owner,
                                                            std::uint64_t version) {
        (void)schema;
        (void)owner;
        (void)version;
        return std::nullopt;
    }

    /// The remembered result of a client's mutation, for an idempotent retry. `client` names
    /// the (user, client id) pair.
    virtual std::optional<mutation_result> find_result(std::string_view client,
                                                       std::uint64_t mutation_id) = 0;
    /// The highest mutation id the client has a remembered result for (0: none), if the store
    /// can tell cheaply; nullopt otherwise. A push then looks up only the mutations at or
    /// below it: a new mutation, the common case, costs no lookup. The default answers
    /// nullopt, which makes every mutation a lookup.
    virtual std::optional<std::uint64_t> newest_result(std::string_view client) {
        (void)client;
        return std::nullopt;
    }
    /// Remembers a result for `find_result`; called between `begin()` and `commit()`. A store
    /// may hold it back and write it with the results that follow (the SQLite store writes a
    /// run of plain successes as one row), as long as every read of results and the commit
    /// see it, and a rollback forgets it.
    virtual void remember_result(std::string_view client, const mutation_result& result) = 0;
    /// Forgets all but the client's `count` newest results (by mutation id). Counting results
    /// rather than id distance matters: a client's ids have gaps (each restart of an offsync
    /// client store skips to a new block of ids), and a window of ids would shrink with them.
    /// A store may keep more between trims, to spread their cost, but never fewer.
    virtual void keep_newest_results(std::string_view client, std::size_t count) = 0;
};

/// The server store in memory: fast, and gone when the process ends. Keeps an undo log while a
/// transaction is open so that a failed request leaves nothing behind (tests fail one with
/// testing/faulty_server_store.hpp).
class memory_server_store final : public server_store {
public:
    void begin() override {
        undo_.clear();
        saved_counters_ = counters_;
        in_transaction_ = true;
    }
    void commit() override {
        undo_.clear();
        in_transaction_ = false;
    }
    void rollback() noexcept override {
        for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
        undo_.clear();
        counters_ = saved_counters_;
        in_transaction_ = false;
    }

    server_counters counters() override { return counters_; }
    void set_counters(const server_counters& c) override {
        counters_ = c;
    }

    std::optional<server_record> find(const collection_schema& schema, std::string_view owner,
                                      std::string_view key) override {
        auto c = collections_.find(schema.name);
        if (c == collections_.end()) return std::nullopt;
        auto it = c->second.records.find(record_id(owner, key));
        if (it == c->second.records.end()) return std::nullopt;
        return it->second;
    }

    void put(const collection_schema& schema, std::string_view owner,
             const server_record& record) override {
        auto& c = collections_[schema.name];
        const auto id = record_id(owner, record.key);
        auto it = c.records.find(id);
        std::optional<server_record> previous;
        if (it != c.records.end()) previous = it->second;
        auto& feed = c.feeds[std::string(owner)];
        if (previous) feed.erase(previous->version);
        feed[record.version] = record.key;
        c.records[id] = record;
        if (in_transaction_)
            undo_.push_back([this, name = schema.name, owner = std::string(owner), id,
                             version = record.version, previous = std::move(previous)] {
                auto& coll = collections_[name];
                auto& f = coll.feeds[owner];
                f.erase(version);
                if (previous) {
                    f[previous->version] = previous->key;
                    coll.records[id] = *previous;
                } else {
                    coll.records.erase(id);
                }
            });
    }

    void feed(const collection_schema& schema, std::string_view owner, std::uint64_t since,
              std::size_t limit, std::vector<server_record>& out) override {
        out.clear();
        auto c = collections_.find(schema.name);
        if (c == collections_.end()) return;
        auto f = c->second.feeds.find(owner);
        if (f == c->second.feeds.end()) return;
        for (auto it = f->second.upper_bound(since); it != f->second.end() && out.size() < limit;
             ++it)
            out.push_back(c->second.records.at(record_id(owner, it->second)));
    }

    std::optional<std::uint64_t> feed_version_below(const collection_schema& schema,
                                                    std::string_view owner,
                                                    std::uint64_t version) override {
        auto c = collections_.find(schema.name);
        if (c == collections_.end()) return 0;
        auto f = c->second.feeds.find(owner);
        if (f == c->second.feeds.end()) return 0;
        auto it = f->second.lower_bound(version);
        if (it == f->second.begin()) return 0;
        return std::prev(it)->first;
    }

    std::optional<mutation_result> find_result(std::string_view client,
                                               std::uint64_t mutation_id) override {
        auto c = results_.find(std::string(client));
        if (c == results_.end()) return std::nullopt;
        auto it = c->second.find(mutation_id);
        if (it == c->second.end()) return std::nullopt;
        return it->second;
    }
    std::optional<std::uint64_t> newest_result(std::string_view client) override {
        auto c = results_.find(std::string(client));
        if (c == results_.end() || c->second.empty()) return 0;
        return c->second.rbegin()->first;
    }
    void remember_result(std::string_view client, const mutation_result& result) override {
        auto& results = results_[std::string(client)];
        const bool inserted = results.insert_or_assign(result.mutation_id, result).second;
        if (in_transaction_ && inserted)
            undo_.push_back([this, client = std::string(client), id = result.mutation_id] {
                results_[client].erase(id);
            });
    }
    void keep_newest_results(std::string_view client, std::size_t count) override {
        auto c = results_.find(std::string(client));
        if (c == results_.end() || c->second.size() <= count) return;
        auto& results = c->second;
        const auto end = std::next(results.begin(), std::ptrdiff_t(results.size() - count));
        if (in_transaction_)
            for (auto it = results.begin(); it != end; ++it)
                undo_.push_back([this, client = std::string(client), kept = *it] {
                    results_[client].insert(kept);
                });
        results.erase(results.begin(), end);
    }

private:
    struct collection_state {
        /// Keyed by record_id(owner, key).
        std::unordered_map<std::string, server_record> records;
        /// Per owner: version -> key, the latest version of each record only.
        std::map<std::string, std::map<std::uint64_t, std::string>, std::less<>> feeds;
    };

    static std::string record_id(std::string_view owner, std::string_view key) {
        std::string id;
        id.reserve(owner.size() + 1 + key.size());
        id.append(owner).push_back('\0');
        id.append(key);
        return id;
    }

    std::map<std::string, collection_state, std::less<>> collections_;
    std::unordered_map<std::string, std::map<std::uint64_t, mutation_result>> results_;
    server_counters counters_, saved_counters_;
    std::vector<std::function<void()>> undo_;
    bool in_transaction_ = false;
};

} // namespace offsync::server
