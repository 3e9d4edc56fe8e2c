// Who may see and write a grouped record, and what a membership record's write does, without a
// service: the pure rules of server/access.hpp and the channel merge of `server_store`.
#include <offsync/server/access.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace offsync;
using namespace offsync::server;
using namespace offsync::server::detail;

namespace {

using strings = std::vector<std::string>;

/// A grouped collection by hand: "id" (the key), "list" (the group, one name or, with
/// `list_of_groups`, several) and "members" (set when `membership`; then the key is the group).
collection_schema grouped_schema(bool list_of_groups = false, bool membership = false) {
    collection_schema s;
    s.name = membership ? "lists" : "tasks";
    s.fields = {"id", "list", "members"};
    s.key_field = "id";
    s.scope = scope::grouped;
    s.group_field = membership ? "id" : "list";
    s.group_is_list = list_of_groups;
    if (membership) s.members_field = "members";
    s.defaults = {{"id", ""},
                  {"list", list_of_groups ? boost::json::value(boost::json::array{})
                                          : boost::json::value("")},
                  {"members", boost::json::array{}}};
    s.check_field = [](std::size_t, const boost::json::value&) { return diagnostics{}; };
    return s;
}

server_record stored(std::string key, boost::json::object value, bool deleted = false) {
    server_record r;
    r.key = std::move(key);
    r.value = std::move(value);
    r.deleted = deleted;
    r.version = 5;
    return r;
}

mutation write_of(boost::json::object fields, mutation_op op = mutation_op::upsert) {
    mutation m;
    m.collection = "tasks";
    m.id = "t-1";
    m.op = op;
    m.fields = std::move(fields);
    return m;
}

} // namespace

TEST_CASE("access: a record names its groups in its group field", "[access]") {
    strings groups;
    const auto one = grouped_schema();
    CHECK_FALSE(groups_in(one, {{"list", "home"}}, 10, groups));
    CHECK(groups == strings{"home"});
    CHECK(groups_in(one, {{"list", ""}}, 10, groups).code == errc::invalid_field);
    CHECK(groups_in(one, {}, 10, groups).code == errc::invalid_field); // the default names none
    CHECK(groups_in(one, {{"list", std::string(300, 'x')}}, 10, groups).code ==
          errc::invalid_field);

    const auto many = grouped_schema(true);
    CHECK_FALSE(groups_in(many, {{"list", boost::json::array{"b", "a", "b"}}}, 10, groups));
    CHECK(groups == strings{"a", "b"}); // sorted, without repeats
    CHECK(groups_in(many, {{"list", boost::json::array{}}}, 10, groups).code ==
          errc::invalid_field);
    CHECK(groups_in(many, {{"list", boost::json::array{"a", 1}}}, 10, groups).code ==
          errc::invalid_field);
    CHECK(groups_in(many, {{"list", "a"}}, 10, groups).code == errc::invalid_field);
    CHECK(groups_in(many, {{"list", boost::json::array{"a", "b", "c"}}}, 2, groups).code ==
          errc::invalid_field);
}

TEST_CASE("access: a user sees a record through any group they share with it", "[access]") {
    CHECK(may_see({"a", "c"}, {"b", "c"}));
    CHECK_FALSE(may_see({"a", "c"}, {"b", "d"}));
    CHECK_FALSE(may_see({}, {"a"}));
    CHECK_FALSE(may_see({"a"}, {}));
    const auto s = grouped_schema();
    const auto live = stored("t-1", {{"list", "home"}});
    const auto gone = stored("t-1", {}, true);
    CHECK(stored_groups(s, &live) == strings{"home"});
    CHECK(stored_groups(s, &gone).empty());
    CHECK(stored_groups(s, nullptr).empty());
}

TEST_CASE("access: a write needs a member of the record's group, and may add only the "
          "writer's groups",
          "[access]") {
    const auto s = grouped_schema();
    const auto existing = stored("t-1", {{"list", "home"}});
    group_write out;

    // A new record, in a group of the writer's, or not.
    CHECK_FALSE(check_group_write(s, "t-1", write_of({{"list", "home"}}), nullptr, {"home"}, {},
                                  10, out));
    CHECK(out.before.empty());
    CHECK(out.after == strings{"home"});
    auto d = check_group_write(s, "t-1", write_of({{"list", "work"}}), nullptr, {"home"}, {}, 10,
                               out);
    CHECK(d.code == errc::forbidden);
    CHECK(d.message.find("work") != std::string::npos); // the group the writer named
    CHECK(check_group_write(s, "t-1", write_of({{"id", "t-1"}}), nullptr, {"home"}, {}, 10, out)
              .code == errc::invalid_field);

    // An existing record: the writer must see it; a refusal does not name its group.
    CHECK_FALSE(
        check_group_write(s, "t-1", write_of({{"id", "t-1"}}), &existing, {"home"}, {}, 10, out));
    CHECK(out.after == strings{"home"}); // untouched group field: it stays
    d = check_group_write(s, "t-1", write_of({{"id", "t-1"}}), &existing, {"work"}, {}, 10, out);
    CHECK(d.code == errc::forbidden);
    CHECK(d.message.find("home") == std::string::npos);
    d = check_group_write(s, "t-1", write_of({}, mutation_op::remove), &existing, {"work"}, {}, 10,
                          out);
    CHECK(d.code == errc::forbidden);
    CHECK_FALSE(check_group_write(s, "t-1", write_of({}, mutation_op::remove), &existing,
                                  {"home"}, {}, 10, out));
    CHECK(out.after.empty());

    // Moving it: only into a group of the writer's.
    CHECK_FALSE(check_group_write(s, "t-1", write_of({{"list", "work"}}), &existing,
                                  {"home", "work"}, {}, 10, out));
    CHECK(out.before == strings{"home"});
    CHECK(out.after == strings{"work"});
    CHECK(check_group_write(s, "t-1", write_of({{"list", "work"}}), &existing, {"home"}, {}, 10,
                            out)
              .code == errc::forbidden);

    // A record over a tombstone is new.
    const auto tombstone = stored("t-1", {}, true);
    CHECK_FALSE(check_group_write(s, "t-1", write_of({{"list", "work"}}), &tombstone, {"work"}, {},
                                  10, out));
}

TEST_CASE("access: a record in several groups keeps those its writer is not in", "[access]") {
    const auto s = grouped_schema(true);
    const auto existing = stored("n-1", {{"list", boost::json::array{"home", "work"}}});
    group_write out;
    // Carol is in "work" only: she may edit, keep "home", and drop it; not add "gym".
    CHECK_FALSE(check_group_write(s, "n-1",
                                  write_of({{"list", boost::json::array{"home", "work"}}}),
                                  &existing, {"work"}, {}, 10, out));
    CHECK_FALSE(check_group_write(s, "n-1", write_of({{"list", boost::json::array{"work"}}}),
                                  &existing, {"work"}, {}, 10, out));
    CHECK(check_group_write(s, "n-1", write_of({{"list", boost::json::array{"work", "gym"}}}),
                            &existing, {"work"}, {}, 10, out)
              .code == errc::forbidden);
}

TEST_CASE("access: a membership record founds its group and must list its writer",
          "[access][membership]") {
    const auto s = grouped_schema(false, true);
    group_write out;
    // Founding a group nobody is in yet: allowed for the key's own group only.
    CHECK_FALSE(check_group_write(s, "l-1", write_of({{"id", "l-1"}}), nullptr, {}, "l-1", 10, out));
    CHECK(out.after == strings{"l-1"});
    CHECK(check_group_write(s, "l-1", write_of({{"id", "l-1"}}), nullptr, {}, {}, 10, out).code ==
          errc::forbidden);

    auto known = [](std::string_view u) { return u == "alice" || u == "bob"; };
    strings after;
    CHECK_FALSE(check_members(s, write_of({{"members", boost::json::array{"bob", "alice"}}}),
                              "alice", known, 10, {}, false, after));
    CHECK(after == strings{"alice", "bob"});
    auto d = check_members(s, write_of({{"members", boost::json::array{"bob"}}}), "alice", known,
                           10, {"alice", "bob"}, true, after);
    CHECK(d.code == errc::forbidden);
    CHECK(d.message.find("writer") != std::string::npos);
    d = check_members(s, write_of({{"members", boost::json::array{"alice", "zed"}}}), "alice",
                      known, 10, {}, false, after);
    CHECK(d.code == errc::invalid_field);
    CHECK(d.message.find("zed") != std::string::npos);
    CHECK(check_members(s, write_of({{"members", boost::json::array{"alice", "bob"}}}), "alice",
                        known, 1, {}, false, after)
              .code == errc::invalid_field);
    CHECK(check_members(s, write_of({{"members", "alice"}}), "alice", known, 10, {}, false, after)
              .code == errc::invalid_field);
    // No members field: an existing record keeps its members; a new one lists nobody, which
    // leaves out its writer.
    CHECK_FALSE(check_members(s, write_of({{"id", "l-1"}}), "alice", known, 10,
                              {"alice", "bob"}, true, after));
    CHECK(after == strings{"alice", "bob"});
    CHECK(check_members(s, write_of({{"id", "l-1"}}), "alice", known, 10, {}, false, after).code ==
          errc::forbidden);
    // No way to know users: nobody is known.
    CHECK(check_members(s, write_of({{"members", boost::json::array{"alice"}}}), "alice", {}, 10,
                        {}, false, after)
              .code == errc::invalid_field);
    // A delete leaves no members.
    CHECK_FALSE(check_members(s, write_of({}, mutation_op::remove), "alice", known, 10,
                              {"alice"}, true, after));
    CHECK(after.empty());

    const auto diff = diff_members({"alice", "bob", "carol"}, {"alice", "dave"});
    CHECK(diff.joined == strings{"dave"});
    CHECK(diff.left == strings{"bob", "carol"});
}

TEST_CASE("access: a channel feed merges channels by version, one probe each, bounded by the "
          "page",
          "[access][channels]") {
    memory_server_store store;
    const auto s = grouped_schema();
    store.begin();
    // Channel a: versions 1, 4, 6; b: 2, 3, 5; c (starting above 4): 7 only.
    for (auto [channel, key, version] :
         std::vector<std::tuple<std::string, std::string, std::uint64_t>>{
             {"a", "k1", 1}, {"b", "k2", 2}, {"b", "k3", 3}, {"a", "k4", 4}, {"b", "k5", 5},
             {"a", "k6", 6}, {"c", "k0", 2}, {"c", "k7", 7}})
        store.touch_channel(s, channel, key, version, true);
    // Touching again moves a key up its channel.
    store.touch_channel(s, "a", "k1", 8, true);
    store.commit();

    std::vector<channel_entry> out;
    const std::vector<channel_start> channels{{"a", 0}, {"b", 0}, {"c", 4}};
    store.channel_feed(s, channels, 0, 3, out);
    CHECK(out == std::vector<channel_entry>{{"k2", 2}, {"k3", 3}, {"k4", 4}});
    store.channel_feed(s, channels, 4, 3, out);
    CHECK(out == std::vector<channel_entry>{{"k5", 5}, {"k6", 6}, {"k7", 7}});
    store.channel_feed(s, channels, 7, 3, out);
    CHECK(out == std::vector<channel_entry>{{"k1", 8}});
    store.channel_feed(s, channels, 8, 3, out);
    CHECK(out.empty());
    store.channel_feed(s, {}, 0, 3, out);
    CHECK(out.empty());

    std::vector<channel_entry> all;
    store.channel_entries(s, "a", all);
    CHECK(all.size() == 3);
}

TEST_CASE("access: copy_channel copies the present entries, and those touched after a version, "
          "in order",
          "[access][channels]") {
    memory_server_store store;
    const auto s = grouped_schema();
    store.begin();
    store.touch_channel(s, "group:g", "k1", 1, true);
    store.touch_channel(s, "group:g", "k2", 2, false); // left the group, or deleted
    store.touch_channel(s, "group:g", "k3", 3, true);
    store.touch_channel(s, "group:g", "k4", 5, false);
    store.touch_channel(s, "user:u", "k3", 4, true);
    store.commit();

    std::vector<channel_entry> undecided;
    std::vector<channel_entry> out;
    store.begin();
    // A join: what is in the group now, at fresh versions in the group's order.
    CHECK(store.copy_channel(s, "group:g", "user:u", ~std::uint64_t{0}, 10, undecided) == 2);
    store.channel_page(s, "user:u", 0, ~std::uint64_t{0}, 10, out);
    CHECK(out == std::vector<channel_entry>{{"k1", 11}, {"k3", 12}});
    // A leave of a member since version 2: also what was touched in the group after it.
    CHECK(store.copy_channel(s, "group:g", "user:u", 2, 12, undecided) == 3);
    out.clear();
    store.channel_page(s, "user:u", 0, ~std::uint64_t{0}, 10, out);
    CHECK(out == std::vector<channel_entry>{{"k1", 13}, {"k3", 14}, {"k4", 15}});
    CHECK(undecided.empty());
    // A channel nobody touched copies nothing.
    CHECK(store.copy_channel(s, "group:none", "user:u", 0, 15, undecided) == 0);
    store.rollback();

    out.clear();
    store.channel_page(s, "user:u", 0, ~std::uint64_t{0}, 10, out);
    CHECK(out == std::vector<channel_entry>{{"k3", 4}});
    std::vector<channel_entry> all;
    store.channel_entries(s, "group:g", all);
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.version < b.version; });
    CHECK(all == std::vector<channel_entry>{
                     {"k1", 1, true}, {"k2", 2, false}, {"k3", 3, true}, {"k4", 5, false}});
}

TEST_CASE("access: the memory store's groups and channels roll back with their transaction",
          "[access][channels]") {
    memory_server_store store;
    const auto s = grouped_schema();
    store.begin();
    store.add_group("home");
    store.add_member("home", "alice", 3);
    store.touch_channel(s, "group:home", "t-1", 3, true);
    store.commit();

    store.begin();
    store.add_member("home", "bob", 4);
    store.remove_member("home", "alice");
    store.touch_channel(s, "group:home", "t-1", 5, false);
    store.add_group("work");
    store.remove_group("home");
    CHECK_FALSE(store.group_exists("home"));
    CHECK(store.groups_of("alice").empty());
    store.rollback();

    CHECK(store.group_exists("home"));
    CHECK_FALSE(store.group_exists("work"));
    CHECK(store.members_of("home") == strings{"alice"});
    CHECK(store.groups_of("alice") == std::vector<membership>{{"home", 3}});
    CHECK(store.groups_of("bob").empty());
    std::vector<channel_entry> entries;
    store.channel_entries(s, "group:home", entries);
    CHECK(entries == std::vector<channel_entry>{{"t-1", 3}});
    CHECK_THROWS_AS(store.add_member("nope", "alice", 1), sync_error);
}
