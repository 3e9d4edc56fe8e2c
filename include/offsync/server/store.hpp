// offsync — where the sync service keeps its state: the server store interface and the
// in-memory store. The SQLite store is in server/sqlite_store.hpp.
#pragma once

#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>

#include <algorithm>
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

/// One entry of a channel (see `server_store::touch_channel`): a key, the version at which it
/// was last touched in that channel, and whether the record was then live in the channel's
/// group (unknown, empty, for entries written before stores kept it; `channel_page` leaves it
/// true).
struct channel_entry {
    std::string key;
    std::uint64_t version = 0;
    std::optional<bool> present = true;
    friend bool operator==(const channel_entry&, const channel_entry&) = default;
};

/// A user's membership of a group, from version `since` on.
struct membership {
    std::string group;
    std::uint64_t since = 0;
    friend bool operator==(const membership&, const membership&) = default;
};

/// Where a pull starts reading one channel: above `after` (and above the pull's cursor).
struct channel_start {
    std::string channel;
    std::uint64_t after = 0;
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

    /// Reads a little of everything a request reads first, so that a store that cannot serve
    /// fails here: the readiness check of `GET /healthz` calls it. Throws what a failing read
    /// throws (`sync_error`, `storage_failure`). Not a full check of the data: a store may
    /// offer one where it opens (`sqlite_server_config::quick_check_on_open`).
    virtual void check_readable() {}

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

    /// The records of `owner` at `keys`, in their order (none where there is no record), read
    /// as `feed` reads them (per-field versions may be left empty): a grouped pull reads its
    /// page this way. The default finds each; a store may read them in one statement.
    virtual void find_page(const collection_schema& schema, std::string_view owner,
                           const std::vector<std::string_view>& keys,
                           std::vector<std::optional<server_record>>& out) {
        out.clear();
        out.reserve(keys.size());
        for (const auto key : keys) out.push_back(find(schema, owner, key));
    }

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

    // --- Sharing: groups, their members, and channels (scope::grouped; docs/sharing.md). A
    // store that keeps them answers `supports_groups()` true and overrides every member below;
    // the defaults refuse, and a service refuses a grouped collection on such a store. Writes
    // happen between `begin()` and `commit()`, like every other write.

    virtual bool supports_groups() const { return false; }
    /// Whether the group was added and not removed since.
    virtual bool group_exists(std::string_view group) { return (void)group, unsupported(), false; }
    /// Adds a group without members; adding an existing group changes nothing.
    virtual void add_group(std::string_view group) { (void)group, unsupported(); }
    /// Removes a group and every membership in it.
    virtual void remove_group(std::string_view group) { (void)group, unsupported(); }
    /// The group's members, sorted.
    virtual std::vector<std::string> members_of(std::string_view group) {
        return (void)group, unsupported(), std::vector<std::string>{};
    }
    /// The groups the user is a member of, sorted by group.
    virtual std::vector<membership> groups_of(std::string_view user) {
        return (void)user, unsupported(), std::vector<membership>{};
    }
    /// Makes the user a member of an existing group from version `since` on (a member already:
    /// nothing changes).
    virtual void add_member(std::string_view group, std::string_view user, std::uint64_t since) {
        (void)group, (void)user, (void)since, unsupported();
    }
    /// Ends the user's membership of the group (none: nothing changes).
    virtual void remove_member(std::string_view group, std::string_view user) {
        (void)group, (void)user, unsupported();
    }
    /// A channel is a feed of keys of one collection: the service touches a key in the
    /// channel of each group a write concerns (the groups the record leaves and those it
    /// joins), and in a user's own channel when the user gains or loses access to it. Touching
    /// sets the key's version in the channel, replacing the one before: a channel holds each
    /// key once, at its latest touch. `present` says whether the record is, after the write,
    /// live in the channel's group (always true in a user's channel): a join copies the present
    /// entries without reading a record (`copy_channel`).
    virtual void touch_channel(const collection_schema& schema, std::string_view channel,
                               std::string_view key, std::uint64_t version, bool present) {
        (void)schema, (void)channel, (void)key, (void)version, (void)present, unsupported();
    }
    /// The entries of one channel with a version in (`after`, `through`], ascending by
    /// version, at most `limit`, appended to `out`. Cost must grow with the entries read, not
    /// with the channel or the collection. `channel_feed` merges several.
    virtual void channel_page(const collection_schema& schema, std::string_view channel,
                              std::uint64_t after, std::uint64_t through, std::size_t limit,
                              std::vector<channel_entry>& out) {
        (void)schema, (void)channel, (void)after, (void)through, (void)limit, (void)out,
            unsupported();
    }
    /// The version at which `key` was last touched in `channel`, if it ever was.
    virtual std::optional<std::uint64_t> channel_version(const collection_schema& schema,
                                                         std::string_view channel,
                                                         std::string_view key) {
        return (void)schema, (void)channel, (void)key, unsupported(), std::nullopt;
    }
    /// The highest version below `version` in one channel (0: none), if the store can tell
    /// with one index probe; nullopt otherwise (the default). A push answer to a grouped
    /// collection uses it as `feed_version_below` is used for a per-user one.
    virtual std::optional<std::uint64_t> channel_version_below(const collection_schema& schema,
                                                               std::string_view channel,
                                                               std::uint64_t version) {
        (void)schema, (void)channel, (void)version;
        return std::nullopt;
    }
    /// Every entry of one channel, in any order.
    virtual void channel_entries(const collection_schema& schema, std::string_view channel,
                                 std::vector<channel_entry>& out) {
        (void)schema, (void)channel, (void)out, unsupported();
    }
    /// Touches in channel `to` (as present), in `from`'s order of versions and at consecutive
    /// versions above `last_version`, each key of `from` that is present there or was touched
    /// there after `touched_after`; returns how many. An entry whose presence is unknown and
    /// touched at or below `touched_after` is not copied but appended to `undecided`, for the
    /// caller to decide from the record. This is how a user who joins or leaves a group is told
    /// of its records: a store may do it in one statement, without reading them.
    virtual std::size_t copy_channel(const collection_schema& schema, std::string_view from,
                                     std::string_view to, std::uint64_t touched_after,
                                     std::uint64_t last_version,
                                     std::vector<channel_entry>& undecided) {
        std::vector<channel_entry> entries;
        channel_entries(schema, from, entries);
        std::sort(entries.begin(), entries.end(),
                  [](const auto& a, const auto& b) { return a.version < b.version; });
        std::size_t copied = 0;
        for (const auto& e : entries) {
            if (e.version > touched_after || e.present.value_or(false))
                touch_channel(schema, to, e.key, last_version + ++copied, true);
            else if (!e.present)
                undecided.push_back(e);
        }
        return copied;
    }

    /// The entries of several channels with a version above `since` (and above each channel's
    /// own start), ascending by version, at most `limit`; a key in several channels appears
    /// once per channel. One `channel_page` per channel, each bounded by the page gathered so
    /// far: a page costs one probe per channel plus the entries it keeps, whatever the backlog.
    void channel_feed(const collection_schema& schema, const std::vector<channel_start>& channels,
                      std::uint64_t since, std::size_t limit, std::vector<channel_entry>& out) {
        out.clear();
        auto by_version = [](const channel_entry& a, const channel_entry& b) {
            return a.version < b.version;
        };
        std::uint64_t through = ~std::uint64_t{0};
        for (const auto& ch : channels) {
            channel_page(schema, ch.channel, std::max(since, ch.after), through, limit, out);
            if (out.size() > limit) {
                std::sort(out.begin(), out.end(), by_version);
                out.resize(limit);
            }
            // A full page bounds the rest: nothing above its last version can be in it.
            if (out.size() == limit) through = std::max_element(out.begin(), out.end(),
                                                                by_version)->version;
        }
        std::sort(out.begin(), out.end(), by_version);
    }

protected:
    [[noreturn]] static void unsupported() {
        throw sync_error(make_error_code(errc::storage_failure),
                         "this server store keeps no groups (scope::grouped)");
    }
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
        return highest_below(f->second, version);
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

    bool supports_groups() const override { return true; }
    bool group_exists(std::string_view group) override {
        return groups_.find(group) != groups_.end();
    }
    void add_group(std::string_view group) override {
        if (groups_.try_emplace(std::string(group)).second)
            on_rollback([this, g = std::string(group)] { groups_.erase(g); });
    }
    void remove_group(std::string_view group) override {
        auto it = groups_.find(group);
        if (it == groups_.end()) return;
        const auto members = it->second;
        for (const auto& [user, since] : members) remove_member(group, user);
        groups_.erase(std::string(group));
        on_rollback([this, g = std::string(group)] { groups_[g]; });
    }
    std::vector<std::string> members_of(std::string_view group) override {
        std::vector<std::string> out;
        if (auto it = groups_.find(group); it != groups_.end())
            for (const auto& [user, since] : it->second) out.push_back(user);
        return out;
    }
    std::vector<membership> groups_of(std::string_view user) override {
        std::vector<membership> out;
        if (auto it = memberships_.find(user); it != memberships_.end())
            for (const auto& [group, since] : it->second) out.push_back({group, since});
        return out;
    }
    void add_member(std::string_view group, std::string_view user, std::uint64_t since) override {
        auto it = groups_.find(group);
        if (it == groups_.end())
            throw sync_error(make_error_code(errc::storage_failure),
                             "no group '" + std::string(group) + "'");
        if (!it->second.try_emplace(std::string(user), since).second) return;
        memberships_[std::string(user)].try_emplace(std::string(group), since);
        on_rollback([this, g = std::string(group), u = std::string(user)] {
            groups_[g].erase(u);
            memberships_[u].erase(g);
        });
    }
    void remove_member(std::string_view group, std::string_view user) override {
        auto it = groups_.find(group);
        if (it == groups_.end()) return;
        auto m = it->second.find(user);
        if (m == it->second.end()) return;
        const auto since = m->second;
        it->second.erase(m);
        memberships_[std::string(user)].erase(std::string(group));
        on_rollback([this, g = std::string(group), u = std::string(user), since] {
            groups_[g][u] = since;
            memberships_[u][g] = since;
        });
    }
    void touch_channel(const collection_schema& schema, std::string_view channel,
                       std::string_view key, std::uint64_t version, bool present) override {
        auto& ch = collections_[schema.name].channels[std::string(channel)];
        std::optional<touch> previous;
        auto [it, inserted] = ch.versions.try_emplace(std::string(key), touch{version, present});
        if (!inserted) {
            previous = it->second;
            ch.keys.erase(it->second.version);
            it->second = {version, present};
        }
        ch.keys[version] = std::string(key);
        on_rollback([this, name = schema.name, c = std::string(channel), k = std::string(key),
                     version, previous] {
            auto& chan = collections_[name].channels[c];
            chan.keys.erase(version);
            if (previous) {
                chan.versions[k] = *previous;
                chan.keys[previous->version] = k;
            } else {
                chan.versions.erase(k);
            }
        });
    }
    void channel_page(const collection_schema& schema, std::string_view channel,
                      std::uint64_t after, std::uint64_t through, std::size_t limit,
                      std::vector<channel_entry>& out) override {
        const auto* ch = find_channel(schema, channel);
        if (!ch) return;
        std::size_t taken = 0;
        for (auto it = ch->keys.upper_bound(after);
             it != ch->keys.end() && it->first <= through && taken < limit; ++it, ++taken)
            out.push_back({it->second, it->first});
    }
    std::optional<std::uint64_t> channel_version(const collection_schema& schema,
                                                 std::string_view channel,
                                                 std::string_view key) override {
        const auto* ch = find_channel(schema, channel);
        if (!ch) return std::nullopt;
        auto it = ch->versions.find(std::string(key));
        if (it == ch->versions.end()) return std::nullopt;
        return it->second.version;
    }
    std::optional<std::uint64_t> channel_version_below(const collection_schema& schema,
                                                       std::string_view channel,
                                                       std::uint64_t version) override {
        const auto* ch = find_channel(schema, channel);
        return ch ? highest_below(ch->keys, version) : 0;
    }
    void channel_entries(const collection_schema& schema, std::string_view channel,
                         std::vector<channel_entry>& out) override {
        out.clear();
        const auto* ch = find_channel(schema, channel);
        if (!ch) return;
        for (const auto& [key, t] : ch->versions) out.push_back({key, t.version, t.present});
    }

private:
    void on_rollback(std::function<void()> undo) {
        if (in_transaction_) undo_.push_back(std::move(undo));
    }

    /// A key's latest touch in a channel.
    struct touch {
        std::uint64_t version = 0;
        bool present = true;
    };
    /// One channel: each key once, at its latest touch, and the same entries by version.
    struct channel_state {
        std::unordered_map<std::string, touch> versions;
        std::map<std::uint64_t, std::string> keys;
    };
    struct collection_state {
        /// Keyed by record_id(owner, key).
        std::unordered_map<std::string, server_record> records;
        /// Per owner: version -> key, the latest version of each record only.
        std::map<std::string, std::map<std::uint64_t, std::string>, std::less<>> feeds;
        std::map<std::string, channel_state, std::less<>> channels;
    };

    /// A channel of a collection, if anything was ever touched in it.
    const channel_state* find_channel(const collection_schema& schema,
                                      std::string_view channel) const {
        auto c = collections_.find(schema.name);
        if (c == collections_.end()) return nullptr;
        auto ch = c->second.channels.find(channel);
        return ch == c->second.channels.end() ? nullptr : &ch->second;
    }

    /// The highest version below `version` of a feed or a channel (version -> key); 0: none.
    static std::uint64_t highest_below(const std::map<std::uint64_t, std::string>& by_version,
                                       std::uint64_t version) {
        auto it = by_version.lower_bound(version);
        return it == by_version.begin() ? 0 : std::prev(it)->first;
    }

    static std::string record_id(std::string_view owner, std::string_view key) {
        std::string id;
        id.reserve(owner.size() + 1 + key.size());
        id.append(owner).push_back('\0');
        id.append(key);
        return id;
    }

    std::map<std::string, collection_state, std::less<>> collections_;
    std::unordered_map<std::string, std::map<std::uint64_t, mutation_result>> results_;
    /// Group -> its members, and user -> the user's groups, each with the membership's start.
    using member_map = std::map<std::string, std::uint64_t, std::less<>>;
    std::map<std::string, member_map, std::less<>> groups_;
    std::map<std::string, member_map, std::less<>> memberships_;
    server_counters counters_, saved_counters_;
    std::vector<std::function<void()>> undo_;
    bool in_transaction_ = false;
};

} // namespace offsync::server
