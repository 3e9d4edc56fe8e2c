// offsync — a server store that fails on demand: a `server_store` decorator for tests that must
// fail the sync service's store at an exact operation (a push written half-way, a commit that
// fails).
#pragma once

#include <offsync/server/store.hpp>
#include <offsync/testing/fault_hook.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offsync::server {

/// Wraps a `server_store` and forwards every call to it, after asking a `fault_hook` whether
/// the call should fail instead. A failing call throws what a failing store throws,
/// `sync_error` with `errc::storage_failure` and a message "injected server store failure at
/// <operation>", and the wrapped store never sees it; the service then rolls the request back.
///
/// Operation names are the members' names ("begin", "find", "put", "remember_result",
/// "set_counters", "commit", ...), except that `insert_new` is "put" (both write a record).
/// `rollback` is `noexcept` and never fails. Members with a default in `server_store`
/// (`insert_new`, `feed_for_client`, `feed_version_below`, `newest_result`) are forwarded to the
/// wrapped store's, so its fast paths stay in use.
///
/// Lifetime: `next` must outlive the decorator. Thread safety: none, as `server_store` (the
/// service serialises its calls); set the hook between requests.
class faulty_server_store final : public server_store {
public:
    explicit faulty_server_store(server_store& next) noexcept : next_(next) {}

    /// Replaces the hook; an empty one injects nothing.
    void set_fault_hook(fault_hook hook) { hook_ = std::move(hook); }

    server_store& next_layer() noexcept { return next_; }

    void begin() override {
        check("begin");
        next_.begin();
    }
    void commit() override {
        check("commit");
        next_.commit();
    }
    void rollback() noexcept override { next_.rollback(); }

    server_counters counters() override {
        check("counters");
        return next_.counters();
    }
    void set_counters(const server_counters& counters) override {
        check("set_counters");
        next_.set_counters(counters);
    }
    void check_readable() override {
        check("check_readable");
        next_.check_readable();
    }

    std::optional<server_record> find(const collection_schema& schema, std::string_view owner,
                                      std::string_view key) override {
        check("find");
        return next_.find(schema, owner, key);
    }
    void find_page(const collection_schema& schema, std::string_view owner,
                   const std::vector<std::string_view>& keys,
                   std::vector<std::optional<server_record>>& out) override {
        check("find_page");
        next_.find_page(schema, owner, keys, out);
    }
    void put(const collection_schema& schema, std::string_view owner,
             const server_record& record) override {
        check("put");
        next_.put(schema, owner, record);
    }
    bool insert_new(const collection_schema& schema, std::string_view owner,
                    const server_record& record) override {
        check("put");
        return next_.insert_new(schema, owner, record);
    }
    void feed(const collection_schema& schema, std::string_view owner, std::uint64_t since,
              std::size_t limit, std::vector<server_record>& out) override {
        check("feed");
        next_.feed(schema, owner, since, limit, out);
    }
    void feed_for_client(const collection_schema& schema, std::string_view owner,
                         std::uint64_t since, std::size_t limit, std::vector<server_record>& out,
                         std::string_view client_id) override {
        check("feed_for_client");
        next_.feed_for_client(schema, owner, since, limit, out, client_id);
    }
    std::optional<std::uint64_t> feed_version_below(const collection_schema& schema,
                                                    std::string_view owner,
                                                    std::uint64_t version) override {
        check("feed_version_below");
        return next_.feed_version_below(schema, owner, version);
    }

    std::optional<mutation_result> find_result(std::string_view client,
                                               std::uint64_t mutation_id) override {
        check("find_result");
        return next_.find_result(client, mutation_id);
    }
    std::optional<std::uint64_t> newest_result(std::string_view client) override {
        check("newest_result");
        return next_.newest_result(client);
    }
    void remember_result(std::string_view client, const mutation_result& result) override {
        check("remember_result");
        next_.remember_result(client, result);
    }
    void keep_newest_results(std::string_view client, std::size_t count) override {
        check("keep_newest_results");
        next_.keep_newest_results(client, count);
    }

    bool supports_groups() const override { return next_.supports_groups(); }
    bool group_exists(std::string_view group) override {
        check("group_exists");
        return next_.group_exists(group);
    }
    void add_group(std::string_view group) override {
        check("add_group");
        next_.add_group(group);
    }
    void remove_group(std::string_view group) override {
        check("remove_group");
        next_.remove_group(group);
    }
    std::vector<std::string> members_of(std::string_view group) override {
        check("members_of");
        return next_.members_of(group);
    }
    std::vector<membership> groups_of(std::string_view user) override {
        check("groups_of");
        return next_.groups_of(user);
    }
    void add_member(std::string_view group, std::string_view user, std::uint64_t since) override {
        check("add_member");
        next_.add_member(group, user, since);
    }
    void remove_member(std::string_view group, std::string_view user) override {
        check("remove_member");
        next_.remove_member(group, user);
    }
    void touch_channel(const collection_schema& schema, std::string_view channel,
                       std::string_view key, std::uint64_t version, bool present) override {
        check("touch_channel");
        next_.touch_channel(schema, channel, key, version, present);
    }
    void channel_page(const collection_schema& schema, std::string_view channel,
                      std::uint64_t after, std::uint64_t through, std::size_t limit,
                      std::vector<channel_entry>& out) override {
        check("channel_page");
        next_.channel_page(schema, channel, after, through, limit, out);
    }
    std::optional<std::uint64_t> channel_version(const collection_schema& schema,
                                                 std::string_view channel,
                                                 std::string_view key) override {
        check("channel_version");
        return next_.channel_version(schema, channel, key);
    }
    std::optional<std::uint64_t> channel_version_below(const collection_schema& schema,
                                                       std::string_view channel,
                                                       std::uint64_t version) override {
        check("channel_version_below");
        return next_.channel_version_below(schema, channel, version);
    }
    void channel_entries(const collection_schema& schema, std::string_view channel,
                         std::vector<channel_entry>& out) override {
        check("channel_entries");
        next_.channel_entries(schema, channel, out);
    }
    std::size_t copy_channel(const collection_schema& schema, std::string_view from,
                             std::string_view to, std::uint64_t touched_after,
                             std::uint64_t last_version,
                             std::vector<channel_entry>& undecided) override {
        check("copy_channel");
        return next_.copy_channel(schema, from, to, touched_after, last_version, undecided);
    }

private:
    void check(std::string_view operation) {
        offsync::detail::inject_fault(hook_, "server store", operation);
    }

    server_store& next_;
    fault_hook hook_;
};

} // namespace offsync::server
