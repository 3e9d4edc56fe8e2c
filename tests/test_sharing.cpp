// Sharing: grouped collections, membership records and the service's membership API, on the
// server store this binary tests (memory, or SQLite in offsync-tests-sqlite) and devices on
// loopback transports. docs/sharing.md describes what these tests hold the service to.
#include "support/world.hpp"

#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/testing/faulty_server_store.hpp>

#include <boost/describe/class.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace offsync_test;

namespace {

using sharing_models = collections<List, Item, Note>;

/// A service with the sharing models and four known users, and devices that sync them.
struct sharing_world : world {
    sharing_world() {
        service.add_collections(sharing_models{});
        for (const char* user : {"alice", "bob", "carol", "dave"}) service.add_user(user);
    }
    std::unique_ptr<client> member_device(std::string user) {
        return device(std::move(user), 0, [](engine_type& e) { e.add_collections(sharing_models{}); });
    }
};

List list(std::string id, std::vector<std::string> members) {
    return {std::move(id), "groceries", std::move(members)};
}
Item item(std::string id, std::string list_id, std::string name = "milk") {
    return {std::move(id), std::move(list_id), std::move(name), false};
}

/// One mutation of `value` (a new record unless `base_version` says otherwise).
template <class T>
mutation upsert(std::uint64_t id, const T& value, std::uint64_t base_version = 0) {
    mutation m;
    m.mutation_id = id;
    m.collection = std::string(model_traits<T>::collection);
    m.id = boost::json::string(key_of(value));
    m.base_version = base_version;
    m.fields = to_json_object(value);
    return m;
}

/// One delete of `key` in `collection`, based on `base_version`.
mutation erase_of(std::uint64_t id, std::string collection, std::string key,
                  std::uint64_t base_version) {
    mutation m;
    m.mutation_id = id;
    m.collection = std::move(collection);
    m.id = boost::json::string(key);
    m.op = mutation_op::remove;
    m.base_version = base_version;
    return m;
}

/// Pushes one mutation as `user` and returns its result (the request itself must succeed).
mutation_result push_one(server::sync_service& service, std::string_view user, mutation m,
                         std::string client = "c1") {
    push_request request;
    request.client_id = std::move(client);
    request.mutations.push_back(std::move(m));
    push_response response;
    const auto d = service.push(user, request, response);
    INFO(d.message);
    REQUIRE_FALSE(d);
    REQUIRE(response.results.size() == 1);
    return response.results[0];
}

/// Every change of `collection` that `user` pulls from 0, page by page.
std::vector<change> pull_all(server::sync_service& service, std::string_view user,
                             std::string collection, std::uint64_t since = 0) {
    std::vector<change> out;
    pull_request request;
    request.collection = std::move(collection);
    request.since = since;
    request.limit = 2;
    for (int pages = 0; pages < 1000; ++pages) {
        pull_response response;
        const auto d = service.pull(user, request, response);
        REQUIRE_FALSE(d);
        for (auto& c : response.changes) out.push_back(std::move(c));
        request.since = response.cursor;
        if (!response.has_more) break;
    }
    return out;
}

std::vector<std::string> live_ids(const std::vector<change>& changes) {
    std::map<std::string, bool> latest;
    for (const auto& c : changes) latest[std::string(c.id.as_string())] = !c.deleted;
    std::vector<std::string> out;
    for (const auto& [id, live] : latest)
        if (live) out.push_back(id);
    return out;
}

std::vector<std::string> ids_of(const std::vector<Item>& items) {
    std::vector<std::string> out;
    for (const auto& i : items) out.push_back(i.id);
    std::sort(out.begin(), out.end());
    return out;
}

using strings = std::vector<std::string>;

} // namespace

TEST_CASE("sharing: a list's members see it and its items, and nobody else does on any route",
          "[sharing][access]") {
    sharing_world w;
    auto& s = w.service;
    CHECK(push_one(s, "alice", upsert(1, list("l-1", {"alice", "bob"}))).status ==
          mutation_status::applied);
    CHECK(push_one(s, "alice", upsert(2, item("t-1", "l-1"))).status == mutation_status::applied);
    CHECK(s.members("l-1") == strings{"alice", "bob"});
    CHECK(s.groups_of("bob") == strings{"l-1"});

    // Members, by pull, list and get.
    for (const char* user : {"alice", "bob"}) {
        CHECK(live_ids(pull_all(s, user, "items")) == strings{"t-1"});
        CHECK(live_ids(pull_all(s, user, "lists")) == strings{"l-1"});
        std::vector<change> listed;
        REQUIRE_FALSE(s.list(user, "items", listed));
        CHECK(listed.size() == 1);
        change one;
        CHECK_FALSE(s.get_record(user, "items", "t-1", one));
    }

    // Never a member: nothing in a pull, a list or a get, and no write gets through.
    CHECK(pull_all(s, "carol", "items").empty());
    CHECK(pull_all(s, "carol", "lists").empty());
    std::vector<change> listed;
    REQUIRE_FALSE(s.list("carol", "items", listed));
    CHECK(listed.empty());
    change out;
    CHECK(s.get_record("carol", "items", "t-1", out).code == errc::not_found);
    CHECK_FALSE(s.get("carol", "items", "t-1"));

    auto edit = item("t-1", "l-1", "stolen");
    auto r = push_one(s, "carol", upsert(1, edit, 2), "carol-phone");
    CHECK(r.status == mutation_status::rejected);
    CHECK(r.error_code == "forbidden");
    CHECK_FALSE(r.server); // the record is not shown to who may not see it
    CHECK(r.error_message.find("l-1") == std::string::npos);

    const auto removal = erase_of(2, "items", "t-1", 2);
    r = push_one(s, "carol", removal, "carol-phone");
    CHECK(r.status == mutation_status::rejected);
    CHECK(r.error_code == "forbidden");

    // An item put in a list carol is not in, and the list itself, are refused too.
    r = push_one(s, "carol", upsert(3, item("t-9", "l-1")), "carol-phone");
    CHECK(r.error_code == "forbidden");
    r = push_one(s, "carol", upsert(4, list("l-1", {"carol"}), 1), "carol-phone");
    CHECK(r.error_code == "forbidden");

    // REST: the same refusals.
    boost::json::object patch{{"name", "stolen"}};
    CHECK(s.put_record("carol", "items", "t-1", patch, std::nullopt, out).code == errc::forbidden);
    CHECK(s.delete_record("carol", "items", "t-1", std::nullopt, out).code == errc::not_found);

    // Nothing changed.
    const auto seen = s.get("alice", "items", "t-1");
    REQUIRE(seen);
    CHECK(seen->value.at("name") == "milk");
    CHECK(s.members("l-1") == strings{"alice", "bob"});
}

TEST_CASE("sharing: bob joins, edits, and leaves, his devices follow, and nothing is lost",
          "[sharing][membership][engine]") {
    sharing_world w;
    auto alice = w.member_device("alice");
    auto bob = w.member_device("bob");
    alice->replica.put(list("l-1", {"alice"}));
    alice->replica.put(item("t-1", "l-1", "milk"));
    alice->replica.put(item("t-2", "l-1", "bread"));
    REQUIRE(alice->sync().error == error_code{});
    REQUIRE(bob->sync().error == error_code{});
    CHECK(bob->replica.list<Item>().empty());

    // Alice shares the list: bob's next round brings the list and both items.
    alice->replica.put(list("l-1", {"alice", "bob"}));
    REQUIRE(alice->sync().error == error_code{});
    REQUIRE(bob->sync().error == error_code{});
    CHECK(ids_of(bob->replica.list<Item>()) == strings{"t-1", "t-2"});
    REQUIRE(bob->replica.get<List>("l-1"));

    // Bob edits an item; alice sees it.
    auto t1 = *bob->replica.get<Item>("t-1");
    t1.bought = true;
    bob->replica.put(t1);
    REQUIRE(bob->sync().error == error_code{});
    const auto alice_round = alice->sync();
    REQUIRE_FALSE(alice_round.error);
    CHECK(alice->replica.get<Item>("t-1")->bought);

    // Bob edits offline while alice revokes him.
    auto t2 = *bob->replica.get<Item>("t-2");
    t2.name = "rye bread";
    bob->replica.put(t2);
    alice->replica.put(list("l-1", {"alice"}));
    REQUIRE(alice->sync().error == error_code{});
    CHECK(w.service.members("l-1") == strings{"alice"});

    // Bob's round: his edit is refused and parked as forbidden, never dropped silently; the
    // records he no longer sees leave his device.
    const auto report = bob->sync();
    CHECK(report.rejected == 1);
    CHECK_FALSE(bob->replica.get<Item>("t-1"));
    CHECK_FALSE(bob->replica.get<List>("l-1"));
    const auto parked = bob->replica.rejected<Item>();
    REQUIRE(parked.size() == 1);
    CHECK(parked[0].key == "t-2");
    CHECK(parked[0].code == "forbidden");
    REQUIRE(parked[0].mine);
    CHECK(parked[0].mine->name == "rye bread");
    CHECK_FALSE(parked[0].server);
    bob->replica.drop_rejected<Item>("t-2");
    CHECK(bob->replica.list<Item>().empty());

    // Alice's data is untouched by it all.
    CHECK(ids_of(alice->replica.list<Item>()) == strings{"t-1", "t-2"});
    CHECK(alice->replica.get<Item>("t-2")->name == "bread");
}

TEST_CASE("sharing: a member who joins gets the group's records and nobody re-downloads",
          "[sharing][membership]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("l-1", {"alice"})));
    for (int i = 0; i < 5; ++i)
        push_one(s, "alice", upsert(2 + i, item("t-" + std::to_string(i), "l-1")));
    const auto alice_cursor = s.last_version();
    CHECK(live_ids(pull_all(s, "bob", "items")).empty());

    // An admin grant: bob's pull from where he was brings the five items; alice's pull from
    // her cursor brings only the list record the grant rewrote.
    REQUIRE_FALSE(s.grant("l-1", "bob"));
    CHECK(s.members("l-1") == strings{"alice", "bob"});
    CHECK(live_ids(pull_all(s, "bob", "items")).size() == 5);
    CHECK(pull_all(s, "alice", "items", alice_cursor).empty());
    const auto lists = pull_all(s, "alice", "lists", alice_cursor);
    REQUIRE(lists.size() == 1);
    CHECK(lists[0].value.at("members").as_array().size() == 2);

    // A record deleted while bob is away is gone when he returns.
    const auto bob_cursor = s.last_version();
    const auto removal = erase_of(10, "items", "t-0", s.get("alice", "items", "t-0")->version);
    CHECK(push_one(s, "alice", removal).status == mutation_status::applied);
    const auto back = pull_all(s, "bob", "items", bob_cursor);
    REQUIRE(back.size() == 1);
    CHECK(back[0].deleted);

    // A revoke tells bob's devices to drop every item they hold, and their deletes.
    const auto before_revoke = s.last_version();
    REQUIRE_FALSE(s.revoke("l-1", "bob"));
    const auto gone = pull_all(s, "bob", "items", before_revoke);
    CHECK(gone.size() == 5);
    CHECK(std::all_of(gone.begin(), gone.end(), [](const change& c) {
        return c.deleted && c.value.empty();
    }));
    // A fresh device of bob's sees nothing of the list.
    CHECK(live_ids(pull_all(s, "bob", "items")).empty());
    CHECK(live_ids(pull_all(s, "bob", "lists")).empty());
}

TEST_CASE("sharing: a leaver's device that was offline drops what was deleted meanwhile",
          "[sharing][membership][engine]") {
    sharing_world w;
    auto alice = w.member_device("alice");
    auto bob = w.member_device("bob");
    alice->replica.put(list("l-1", {"alice", "bob"}));
    alice->replica.put(item("t-1", "l-1"));
    alice->replica.put(item("t-2", "l-1"));
    REQUIRE(alice->sync().error == error_code{});
    REQUIRE(bob->sync().error == error_code{});
    REQUIRE(bob->replica.list<Item>().size() == 2);

    // While bob is offline, alice deletes one item and then removes bob.
    alice->replica.erase<Item>("t-1");
    REQUIRE(alice->sync().error == error_code{});
    alice->replica.put(list("l-1", {"alice"}));
    REQUIRE(alice->sync().error == error_code{});

    REQUIRE(bob->sync().error == error_code{});
    CHECK(bob->replica.list<Item>().empty());
    CHECK(bob->replica.list<List>().empty());
}

TEST_CASE("sharing: a record that moves between groups follows its members",
          "[sharing][membership]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    push_one(s, "alice", upsert(2, list("work", {"alice", "carol"})));
    push_one(s, "alice", upsert(3, item("t-1", "home")));
    const auto cursor = s.last_version();
    CHECK(live_ids(pull_all(s, "bob", "items")) == strings{"t-1"});
    CHECK(live_ids(pull_all(s, "carol", "items")).empty());

    auto moved = item("t-1", "work");
    CHECK(push_one(s, "alice", upsert(4, moved, s.get("alice", "items", "t-1")->version))
              .status == mutation_status::applied);
    const auto for_bob = pull_all(s, "bob", "items", cursor);
    REQUIRE(for_bob.size() == 1);
    CHECK(for_bob[0].deleted); // bob no longer sees it
    CHECK(live_ids(pull_all(s, "carol", "items", cursor)) == strings{"t-1"});

    // Bob may not move a record into a group of his either.
    push_one(s, "bob", upsert(1, list("bobs", {"bob"})), "bob-phone");
    auto r = push_one(s, "bob", upsert(2, item("t-1", "bobs"), 9), "bob-phone");
    CHECK(r.error_code == "forbidden");
}

TEST_CASE("sharing: a record in several groups is seen through any of them",
          "[sharing][membership]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    push_one(s, "alice", upsert(2, list("work", {"alice", "bob", "carol"})));
    CHECK(push_one(s, "alice", upsert(3, Note{"n-1", {"home", "work"}, "hi"})).status ==
          mutation_status::applied);
    CHECK(live_ids(pull_all(s, "bob", "notes")) == strings{"n-1"});
    CHECK(live_ids(pull_all(s, "carol", "notes")) == strings{"n-1"});

    // Leaving one group keeps what the other still shows.
    const auto cursor = s.last_version();
    REQUIRE_FALSE(s.revoke("home", "bob"));
    const auto after = pull_all(s, "bob", "notes", cursor);
    CHECK(live_ids(after) == strings{"n-1"});

    // Writing a note into a group the writer is not in is refused; an empty list too.
    auto r = push_one(s, "carol", upsert(1, Note{"n-2", {"work", "home"}, "x"}), "carol-phone");
    CHECK(r.error_code == "forbidden");
    r = push_one(s, "carol", upsert(2, Note{"n-3", {}, "x"}), "carol-phone");
    CHECK(r.error_code == "invalid_field");
    // A member of one of its groups may edit it without being in the others.
    r = push_one(s, "carol",
                 upsert(3, Note{"n-1", {"home", "work"}, "edited"},
                        s.get("carol", "notes", "n-1")->version),
                 "carol-phone");
    CHECK(r.status == mutation_status::applied);
}

TEST_CASE("sharing: a push to a one-group collection tells the feed range its writes fill alone, "
          "as its writer sees it",
          "[sharing][own-writes]") {
    sharing_world w;
    auto push_all = [&](std::string_view user, std::vector<mutation> ms) {
        push_request request;
        request.client_id = std::string(user) + "-phone";
        request.mutations = std::move(ms);
        push_response response;
        const auto d = w.service.push(user, request, response);
        INFO(d.message);
        REQUIRE_FALSE(d);
        for (const auto& r : response.results) REQUIRE(r.status == mutation_status::applied);
        return response;
    };
    // A membership record's write may copy a group into its writer's channel: no range.
    CHECK_FALSE(push_all("alice", {upsert(1, list("home", {"alice", "bob"}))}).own_writes);
    CHECK_FALSE(push_all("carol", {upsert(1, list("work", {"carol"}))}).own_writes);
    const auto bobs = push_all("bob", {upsert(1, item("b-1", "home"))});
    REQUIRE(bobs.own_writes);
    // Carol writes after Bob, in a group Alice is not in: not in Alice's feed.
    const auto carols = push_all("carol", {upsert(2, item("c-1", "work"))});
    REQUIRE(carols.own_writes);
    CHECK(carols.own_writes->through == carols.results[0].version);

    const auto alices = push_all("alice", {upsert(2, item("a-1", "home")),
                                           upsert(3, item("a-2", "home"))});
    REQUIRE(alices.own_writes);
    CHECK(alices.own_writes->collection == "items");
    CHECK(alices.own_writes->after == bobs.results[0].version);
    CHECK(alices.own_writes->through == alices.results[1].version);
    // What the range promises: Alice's feed above `after` up to `through` is her writes alone.
    pull_request request{"items", alices.own_writes->after, 100};
    pull_response page;
    REQUIRE_FALSE(w.service.pull("alice", request, page));
    std::vector<std::string> ids;
    for (const auto& c : page.changes)
        if (c.version <= alices.own_writes->through) ids.push_back(std::string(c.id.as_string()));
    CHECK(ids == strings{"a-1", "a-2"});

    // Dave joins later: his items feed below the join is the join's own entries (the group's
    // older entries reach him through them), whose last is where his pull ends.
    REQUIRE_FALSE(w.service.grant("home", "dave"));
    pull_response daves_feed;
    REQUIRE_FALSE(w.service.pull("dave", {"items", 0, 100}, daves_feed));
    CHECK(daves_feed.changes.size() == 3);
    const auto daves = push_all("dave", {upsert(1, item("d-1", "home"))});
    REQUIRE(daves.own_writes);
    CHECK(daves.own_writes->after == daves_feed.cursor);
    CHECK(daves.own_writes->after > alices.own_writes->through);

    // A record of several groups may leave its writer's sight by their own write: no range.
    const auto note = push_all("alice", {upsert(4, Note{"n-1", {"home"}, "hello"})});
    CHECK_FALSE(note.own_writes);
}

TEST_CASE("sharing: bad membership input is refused and changes nothing",
          "[sharing][membership][bad-input]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("l-1", {"alice"})));
    const auto version = s.last_version();

    SECTION("a membership record that drops its own writer") {
        auto r = push_one(s, "alice", upsert(2, list("l-1", {"bob"}), version));
        CHECK(r.error_code == "forbidden");
        CHECK(r.error_message.find("writer") != std::string::npos);
        r = push_one(s, "alice", upsert(3, list("l-2", {"bob"})));
        CHECK(r.error_code == "forbidden");
    }
    SECTION("an unknown user") {
        auto r = push_one(s, "alice", upsert(2, list("l-1", {"alice", "zed"}), version));
        CHECK(r.error_code == "invalid_field");
        CHECK(r.error_message.find("zed") != std::string::npos);
        CHECK(s.grant("l-1", "zed").code == errc::invalid_field);
    }
    SECTION("an unknown group") {
        CHECK(s.grant("nope", "bob").code == errc::not_found);
        CHECK(s.revoke("nope", "bob").code == errc::not_found);
        CHECK(s.grant("", "bob").code == errc::invalid_field);
        CHECK(s.members("nope").empty());
    }
    SECTION("an oversized member list") {
        std::vector<std::string> many{"alice"};
        for (int i = 0; i < 1001; ++i) many.push_back("user-" + std::to_string(i));
        auto r = push_one(s, "alice", upsert(2, list("l-1", many), version));
        CHECK(r.error_code == "invalid_field");
        CHECK(r.error_message.find("at most 1000") != std::string::npos);
    }
    SECTION("members that are not a list of names") {
        auto m = upsert(2, list("l-1", {"alice"}), version);
        m.fields["members"] = boost::json::array{"alice", 7};
        auto r = push_one(s, "alice", m);
        CHECK(r.status == mutation_status::rejected);
        m.fields["members"] = boost::json::array{"alice", ""};
        r = push_one(s, "alice", m);
        CHECK(r.status == mutation_status::rejected);
    }
    SECTION("an item without a list") {
        auto r = push_one(s, "alice", upsert(2, item("t-1", "")));
        CHECK(r.error_code == "invalid_field");
        CHECK(r.error_message.find("list_id") != std::string::npos);
    }
    CHECK(s.members("l-1") == strings{"alice"});
    CHECK(s.groups_of("bob").empty());
    CHECK(s.last_version() == version);
    CHECK(live_ids(pull_all(s, "bob", "lists")).empty());
}

TEST_CASE("sharing: a grouped collection needs a store that keeps groups", "[sharing][store]") {
    minimal_server_store store;
    CHECK_THROWS_AS(store.groups_of("bob"), sync_error);
    server::sync_service service(store);
    CHECK_THROWS_AS(service.add_collection<Item>(), std::invalid_argument);
    service.add_collection<Reservation>(); // other scopes are fine
    CHECK(service.grant("l-1", "bob").code == errc::invalid_configuration);
}

TEST_CASE("sharing: a membership change the store fails leaves nothing behind",
          "[sharing][membership][failure]") {
    server::memory_server_store memory;
    server::faulty_server_store store(memory);
    server::sync_service s(store);
    s.add_collections(sharing_models{});
    for (const char* user : {"alice", "bob"}) s.add_user(user);
    push_one(s, "alice", upsert(1, list("l-1", {"alice"})));
    push_one(s, "alice", upsert(2, item("t-1", "l-1")));
    const auto version = s.last_version();

    for (const char* operation : {"add_member", "touch_channel", "commit"}) {
        INFO(operation);
        store.set_fault_hook([op = std::string(operation)](std::string_view at) { return at == op; });
        const auto d = s.grant("l-1", "bob");
        CHECK(d.code == errc::server_error);
        store.set_fault_hook({});
        CHECK(s.members("l-1") == strings{"alice"});
        CHECK(s.last_version() == version);
        CHECK(live_ids(pull_all(s, "bob", "items")).empty());
    }
    REQUIRE_FALSE(s.grant("l-1", "bob"));
    CHECK(live_ids(pull_all(s, "bob", "items")) == strings{"t-1"});
}

namespace {

/// One seed of the churn test: devices of three users edit items of three lists while members
/// come and go and rounds meet faults, in random order; at the end every device holds exactly
/// what its user sees.
void run_churn(std::uint64_t seed, int steps) {
    INFO("seed " << seed << " (OFFSYNC_SEED=" << seed << " OFFSYNC_SHARING_SEEDS=1 replays it)");
    std::mt19937_64 rng(seed);
    auto pick = [&](std::size_t n) { return std::size_t(rng() % n); };
    sharing_world w;
    const std::vector<std::string> users{"alice", "bob", "carol"};
    const std::vector<std::string> lists{"l-0", "l-1", "l-2"};
    struct member_device {
        std::string user;
        std::unique_ptr<client> device;
    };
    std::vector<member_device> devices;
    for (const char* user : {"alice", "alice", "bob", "carol"})
        devices.push_back({user, w.member_device(user)});
    for (const auto& l : lists) devices[0].device->replica.put(list(l, {"alice"}));
    devices[0].device->sync();

    int next_item = 0;
    for (int step = 0; step < steps; ++step) {
        auto& d = devices[pick(devices.size())];
        auto& replica = d.device->replica;
        switch (pick(7)) {
        case 0: { // a new item in a list the device holds
            const auto held = replica.list<List>();
            if (held.empty()) break;
            replica.put(item("i-" + std::to_string(next_item++), held[pick(held.size())].id,
                             "new " + std::to_string(step)));
            break;
        }
        case 1: { // an edit of an item it holds (perhaps moved to another of its lists)
            const auto items = replica.list<Item>();
            const auto held = replica.list<List>();
            if (items.empty()) break;
            auto it = items[pick(items.size())];
            it.name = "edit " + std::to_string(step);
            it.bought = !it.bought;
            if (!held.empty() && pick(4) == 0) it.list_id = held[pick(held.size())].id;
            replica.put(it);
            break;
        }
        case 2: { // a delete
            const auto items = replica.list<Item>();
            if (!items.empty()) replica.erase<Item>(items[pick(items.size())].id);
            break;
        }
        case 3: { // membership: the server grants or revokes (alice stays in every list)
            const auto& user = users[1 + pick(2)];
            const auto& l = lists[pick(lists.size())];
            const bool grant = pick(2) == 0;
            const auto d = grant ? w.service.grant(l, user) : w.service.revoke(l, user);
            REQUIRE_FALSE(d);
            break;
        }
        case 4: // the app drops what the server refused
            for (const auto& r : replica.rejected<Item>()) {
                CHECK(r.code == "forbidden");
                replica.drop_rejected<Item>(r.key);
            }
            break;
        case 5: { // a round that meets a fault: a request or an answer lost, a busy server
            auto& faults = d.device->transport.faults();
            switch (pick(5)) {
            case 0: faults.lose_push_requests = 1; break;
            case 1: faults.lose_push_responses = 1; break; // applied: the retry must replay
            case 2: faults.lose_pull_requests = 1; break;
            case 3: faults.lose_pull_responses = 1; break;
            default: faults.busy = 1; break;
            }
            d.device->sync();
            break;
        }
        default: d.device->sync(); break;
        }
    }

    // Settle: drop refusals and sync until nothing is refused, then every device equals the
    // server's view of its user.
    for (auto& d : devices) d.device->transport.faults() = loopback_faults{};
    for (int round = 0; round < 4; ++round) {
        bool refused = false;
        for (auto& d : devices) {
            for (const auto& r : d.device->replica.rejected<Item>()) {
                CHECK(r.code == "forbidden");
                d.device->replica.drop_rejected<Item>(r.key);
                refused = true;
            }
            REQUIRE_FALSE(d.device->sync().error);
        }
        if (!refused && round > 0) break;
    }
    for (auto& d : devices) {
        INFO(d.user);
        std::vector<change> seen;
        REQUIRE_FALSE(w.service.list(d.user, "items", seen));
        std::map<std::string, boost::json::object> expected;
        for (auto& c : seen) expected[std::string(c.id.as_string())] = c.value;
        std::map<std::string, boost::json::object> held;
        for (const auto& i : d.device->replica.list<Item>()) held[i.id] = to_json_object(i);
        std::string diff;
        for (const auto& [k, v] : expected)
            if (!held.count(k) || held[k] != v) diff += " server:" + k + "=" + json::serialize(v);
        for (const auto& [k, v] : held)
            if (!expected.count(k) || expected[k] != v) diff += " device:" + k + "=" + json::serialize(v);
        INFO("differences:" << diff);
        CHECK(held == expected);
        std::vector<std::string> lists_seen;
        for (const auto& l : d.device->replica.list<List>()) lists_seen.push_back(l.id);
        std::vector<std::string> groups = w.service.groups_of(d.user);
        CHECK(lists_seen == groups);
    }
}

} // namespace

TEST_CASE("sharing: members edit while membership churns and rounds fail, every device ends with "
          "exactly what its user sees",
          "[sharing][convergence]") {
    const char* seeds_env = std::getenv("OFFSYNC_SHARING_SEEDS");
    const int seeds = seeds_env ? std::atoi(seeds_env) : 4;
    std::uint64_t base = std::random_device{}();
    if (const char* s = std::getenv("OFFSYNC_SEED")) base = std::strtoull(s, nullptr, 10);
    for (int i = 0; i < seeds; ++i) run_churn(base + std::uint64_t(i), 200);
}

TEST_CASE("sharing: a refused move keeps the record the user still sees",
          "[sharing][engine][regression]") {
    // Found by the churn test: a move to someone else's group was refused without the record,
    // so dropping the refusal dropped the record from a device whose user still saw it.
    sharing_world w;
    auto alice = w.member_device("alice");
    auto bob = w.member_device("bob");
    alice->replica.put(list("home", {"alice", "bob"}));
    alice->replica.put(list("work", {"alice"}));
    alice->replica.put(item("i-1", "home", "milk"));
    REQUIRE_FALSE(alice->sync().error);
    REQUIRE_FALSE(bob->sync().error);
    auto moved = *bob->replica.get<Item>("i-1");
    moved.list_id = "work";
    bob->replica.put(moved);
    CHECK(bob->sync().rejected == 1);
    const auto refused = bob->replica.rejected<Item>();
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].code == "forbidden");
    REQUIRE(refused[0].server);
    CHECK(refused[0].server->list_id == "home");
    bob->replica.drop_rejected<Item>("i-1");
    REQUIRE(bob->replica.get<Item>("i-1"));
    CHECK(bob->replica.get<Item>("i-1")->list_id == "home");
}

TEST_CASE("sharing: a refused edit of a record taken away and given back is kept when dropped",
          "[sharing][engine][regression]") {
    // Found by the churn test: the removal and the record given back come at one version, and
    // the parked record kept the removal as the server's side.
    sharing_world w;
    auto alice = w.member_device("alice");
    auto bob = w.member_device("bob");
    alice->replica.put(list("home", {"alice", "bob"}));
    alice->replica.put(item("i-1", "home", "milk"));
    REQUIRE_FALSE(alice->sync().error);
    REQUIRE_FALSE(bob->sync().error);
    REQUIRE_FALSE(w.service.revoke("home", "bob"));
    auto edit = *bob->replica.get<Item>("i-1");
    edit.name = "oat milk";
    bob->replica.put(edit);
    CHECK(bob->sync().rejected == 1); // refused, then the removal arrives
    REQUIRE_FALSE(w.service.grant("home", "bob"));
    REQUIRE_FALSE(bob->sync().error); // the record given back, at the version it had
    bob->replica.drop_rejected<Item>("i-1");
    REQUIRE(bob->replica.get<Item>("i-1"));
    CHECK(bob->replica.get<Item>("i-1")->name == "milk");
}

TEST_CASE("sharing: a deleted list's name cannot be founded again to see its items",
          "[sharing][membership][regression]") {
    // Found in review: deleting a membership record removed its group, and anybody could found
    // the name again and be backfilled with the items still in it.
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("l-1", {"alice"})));
    push_one(s, "alice", upsert(2, item("t-1", "l-1")));
    const auto removal = erase_of(3, "lists", "l-1", s.get("alice", "lists", "l-1")->version);
    REQUIRE(push_one(s, "alice", removal).status == mutation_status::applied);
    CHECK(s.members("l-1").empty());
    CHECK(live_ids(pull_all(s, "alice", "items")).empty()); // nobody sees the orphan item

    auto r = push_one(s, "carol", upsert(1, list("l-1", {"carol"})), "carol-phone");
    CHECK(r.error_code == "forbidden");
    CHECK(live_ids(pull_all(s, "carol", "items")).empty());
    CHECK(s.members("l-1").empty());
    // The server may give it to someone.
    REQUIRE_FALSE(s.grant("l-1", "alice"));
    CHECK(live_ids(pull_all(s, "alice", "items")) == strings{"t-1"});
}

TEST_CASE("sharing: a REST write that moves a record out of the writer's groups answers it gone",
          "[sharing][rest][regression]") {
    // Found in review: the answer dereferenced a record the writer could no longer see.
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    push_one(s, "alice", upsert(2, list("work", {"alice"})));
    push_one(s, "alice", upsert(3, Note{"n-1", {"home", "work"}, "hi"}));
    change out;
    boost::json::object patch{{"groups", boost::json::array{"work"}}};
    REQUIRE_FALSE(s.put_record("bob", "notes", "n-1", patch, std::nullopt, out));
    CHECK(out.deleted);
    CHECK(out.value.empty());
    CHECK(live_ids(pull_all(s, "bob", "notes")).empty());
    CHECK(live_ids(pull_all(s, "alice", "notes")) == strings{"n-1"});
}

TEST_CASE("sharing: a removal names no writer and no time, and a former member is not told of "
          "later deletions",
          "[sharing][access][regression]") {
    // Found in review: a removal carried the record's stamp (whose node can name a REST writer
    // of another group), and a former member learned of deletions made after they left: from a
    // pull, from `get`, and from the conflict a write over the tombstone met.
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    push_one(s, "alice", upsert(2, item("i-1", "home")));
    push_one(s, "alice", upsert(3, item("i-2", "home")));
    const auto seen = pull_all(s, "bob", "items");
    REQUIRE(live_ids(seen) == strings{"i-1", "i-2"});
    const auto bob_cursor = s.last_version();
    const auto i1_version = s.get("bob", "items", "i-1")->version;
    REQUIRE_FALSE(s.revoke("home", "bob"));
    // A REST write by carol, a member now, then deletes.
    REQUIRE_FALSE(s.grant("home", "carol"));
    change out;
    REQUIRE_FALSE(
        s.put_record("carol", "items", "i-2", {{"name", "pears"}}, std::nullopt, out));
    auto erase = erase_of(4, "items", "i-1", i1_version);
    erase.stamp = hlc_stamp{1764000000000, 1, "alice-phone"};
    REQUIRE(push_one(s, "alice", erase).status == mutation_status::applied);

    const auto after = pull_all(s, "bob", "items", bob_cursor);
    REQUIRE(after.size() == 2);
    for (const auto& c : after) {
        INFO(c.id);
        CHECK(c.deleted);
        CHECK(c.value.empty());
        CHECK(c.stamp == hlc_stamp{});
    }
    // Nothing tells bob that i-1 was deleted rather than taken from him.
    CHECK_FALSE(s.get("bob", "items", "i-1"));
    CHECK_FALSE(s.get("bob", "items", "i-2"));
    // His writes meet no record: refused as a new record would be, without the tombstone.
    auto r = push_one(s, "bob", upsert(5, item("i-1", "home", "rye"), i1_version), "bob-phone");
    CHECK(r.error_code == "forbidden");
    CHECK_FALSE(r.server);
    auto edit = upsert(6, item("i-1", "home", "rye"), i1_version);
    edit.fields.erase("list_id");
    r = push_one(s, "bob", edit, "bob-phone");
    CHECK(r.error_code == "forbidden");
    CHECK(r.error_message == "items/i-1: not a member of its group"); // as for a live record
    CHECK_FALSE(r.server);
    auto gone = push_one(s, "bob", erase_of(7, "items", "i-1", i1_version), "bob-phone");
    CHECK(gone.status == mutation_status::applied); // nothing there for him: nothing to do
    // Alice, a member throughout, saw the deletion itself.
    const auto alice_i1 = s.get("alice", "items", "i-1");
    REQUIRE(alice_i1);
    CHECK(alice_i1->deleted);
    CHECK(alice_i1->stamp == erase.stamp);
    // A deletion made while bob was a member is his to know, even after he left.
    REQUIRE_FALSE(s.grant("home", "bob"));
    const auto i2 = s.get("alice", "items", "i-2");
    REQUIRE(push_one(s, "alice", erase_of(7, "items", "i-2", i2->version)).status ==
            mutation_status::applied);
    REQUIRE_FALSE(s.revoke("home", "bob"));
    const auto bob_i2 = s.get("bob", "items", "i-2");
    REQUIRE(bob_i2);
    CHECK(bob_i2->deleted);
}

TEST_CASE("sharing: a user who never saw a record gets no tombstone of it from get",
          "[sharing][access][regression]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice"})));
    push_one(s, "alice", upsert(2, item("i-1", "home")));
    const auto v = s.get("alice", "items", "i-1")->version;
    REQUIRE(push_one(s, "alice", erase_of(3, "items", "i-1", v)).status ==
            mutation_status::applied);
    CHECK(s.get("alice", "items", "i-1"));
    CHECK_FALSE(s.get("dave", "items", "i-1"));
    CHECK_FALSE(s.get("dave", "lists", "i-1"));
}

TEST_CASE("sharing: admin_put of some fields of a grouped record keeps its groups",
          "[sharing][admin][regression]") {
    // Found in review: a value without the group field was refused as naming no group.
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice"})));
    push_one(s, "alice", upsert(2, item("i-1", "home")));
    diagnostics error;
    CHECK(s.admin_put("items", {{"id", "i-1"}, {"name", "oats"}}, {}, &error) != 0);
    CHECK_FALSE(error);
    const auto now = s.get("alice", "items", "i-1");
    REQUIRE(now);
    CHECK(now->value.at("name") == "oats");
    CHECK(now->value.at("list_id") == "home");
    // A new record must still name its group, and nothing is written when it does not.
    const auto last = s.last_version();
    CHECK(s.admin_put("items", {{"id", "i-2"}, {"name", "oats"}}, {}, &error) == 0);
    CHECK(error.code == make_error_code(errc::invalid_field));
    CHECK(s.last_version() == last);
}

namespace offsync_test {
/// A second membership collection: its records govern groups by the same names as lists'.
struct Team {
    std::string id;
    std::vector<std::string> members;
};
BOOST_DESCRIBE_STRUCT(Team, (), (id, members))
} // namespace offsync_test

template <>
struct offsync::model_traits<offsync_test::Team> {
    static constexpr std::string_view collection = "teams";
    static constexpr auto key = &offsync_test::Team::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &offsync_test::Team::id;
    static constexpr auto members = &offsync_test::Team::members;
    using conflict_policy = offsync::last_write_wins;
};

TEST_CASE("sharing: one group is governed by one membership record, whatever its collection",
          "[sharing][membership][regression]") {
    // Found in review: group names are one namespace, and a member could write a second
    // membership record for a group in another collection, whose member list then fought the
    // first one's.
    sharing_world w;
    auto& s = w.service;
    s.add_collection<Team>();
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    const auto last = s.last_version();
    auto r = push_one(s, "bob", upsert(1, Team{"home", {"bob"}}), "bob-phone");
    CHECK(r.error_code == "forbidden");
    CHECK_FALSE(r.server);
    CHECK(s.members("home") == strings{"alice", "bob"});
    CHECK(s.last_version() == last);
    // A non-member is told only that it is not theirs.
    r = push_one(s, "carol", upsert(1, Team{"home", {"carol"}}), "carol-phone");
    CHECK(r.error_code == "forbidden");
    CHECK(r.error_message.find("lists") == std::string::npos);
    diagnostics error;
    CHECK(s.admin_put("teams", {{"id", "home"}, {"members", boost::json::array{"carol"}}}, {},
                      &error) == 0);
    CHECK(error.code == make_error_code(errc::forbidden));
    CHECK(s.members("home") == strings{"alice", "bob"});
    // Another name is founded as before.
    CHECK(push_one(s, "bob", upsert(2, Team{"crew", {"bob"}}), "bob-phone").status ==
          mutation_status::applied);
}

TEST_CASE("sharing: membership changes while members write from other threads, no acknowledged "
          "write is lost and everyone ends seeing exactly their groups",
          "[sharing][membership][threads]") {
    // Three members write items of one list from threads of their own while a fourth thread
    // takes two of them off the list and puts them back, through the admin API and through the
    // list record. The service serialises it all: every write is applied or refused whole.
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob", "carol"})), "alice-phone");
    constexpr int writes_per_member = 60;
    struct outcome {
        std::string key, name;
        mutation_result result;
    };
    std::vector<std::vector<outcome>> outcomes(3);
    const std::vector<std::string> writers{"alice", "bob", "carol"};
    std::vector<std::thread> threads;
    for (std::size_t w_i = 0; w_i < writers.size(); ++w_i)
        threads.emplace_back([&, w_i] {
            const auto& user = writers[w_i];
            for (int i = 0; i < writes_per_member; ++i) {
                // Each member writes its own items and the items everybody shares.
                const auto key = (i % 3 == 0 ? std::string("common-") : user + "-") +
                                 std::to_string(i % 5);
                const auto name = user + " " + std::to_string(i);
                const auto base = s.get(user, "items", key);
                mutation m = upsert(std::uint64_t(i + 10), item(key, "home", name),
                                    base && !base->deleted ? base->version : 0);
                push_request request{user + "-phone", {std::move(m)}};
                push_response response;
                if (s.push(user, request, response) || response.results.size() != 1) {
                    outcomes[w_i].push_back({key, name, {}}); // marks a failed request
                    continue;
                }
                outcomes[w_i].push_back({key, name, response.results[0]});
            }
        });
    threads.emplace_back([&] {
        for (int i = 0; i < 40; ++i) {
            const char* who = i % 2 ? "carol" : "bob";
            if (i % 4 < 2) {
                (void)s.revoke("home", who);
            } else if (i % 8 < 4) {
                (void)s.grant("home", who);
            } else { // through the list record, as a client would
                auto current = s.get("alice", "lists", "home");
                if (!current) continue;
                auto members = s.members("home");
                if (std::find(members.begin(), members.end(), who) == members.end())
                    members.push_back(who);
                // No Catch2 assertion off the main thread: they are not thread-safe.
                push_request request{"alice-laptop",
                                     {upsert(std::uint64_t(1000 + i), list("home", members),
                                             current->version)}};
                push_response response;
                (void)s.push("alice", request, response);
            }
        }
    });
    for (auto& t : threads) t.join();

    // Every request was answered; every refusal is one the rules allow: a write while its
    // writer was off the list (forbidden), or a stale base (a conflict).
    std::map<std::string, std::pair<std::uint64_t, std::string>> latest; // key: version, name
    std::set<std::uint64_t> versions;
    std::size_t applied = 0;
    for (std::size_t w_i = 0; w_i < writers.size(); ++w_i) {
        REQUIRE(outcomes[w_i].size() == std::size_t(writes_per_member));
        for (const auto& o : outcomes[w_i]) {
            REQUIRE(o.result.mutation_id != 0); // the request itself succeeded
            if (o.result.status == mutation_status::rejected) {
                CHECK(o.result.error_code == "forbidden");
                CHECK(writers[w_i] != "alice"); // alice never left
                continue;
            }
            if (o.result.status == mutation_status::conflict) continue;
            ++applied;
            CHECK(versions.insert(o.result.version).second); // each write its own version
            auto& l = latest[o.key];
            if (o.result.version > l.first) l = {o.result.version, o.name};
        }
    }
    CHECK(applied >= std::size_t(writes_per_member)); // alice's own writes at least
    // No acknowledged write is lost: each key holds its last acknowledged write, or a later
    // one the server made of it (none here: no server writes to items).
    for (const auto& [key, last] : latest) {
        INFO(key);
        const auto stored = s.get("alice", "items", key);
        REQUIRE(stored);
        CHECK(stored->version == last.first);
        CHECK(stored->value.at("name").as_string() == last.second);
    }

    // Everyone back on the list: all three see the same items, exactly those stored.
    REQUIRE_FALSE(s.grant("home", "bob"));
    REQUIRE_FALSE(s.grant("home", "carol"));
    std::vector<std::string> stored_keys;
    for (const auto& [key, last] : latest) stored_keys.push_back(key);
    for (const auto& user : writers) {
        INFO(user);
        CHECK(live_ids(pull_all(s, user, "items")) == stored_keys);
    }
    // Carol off it for good: from her cursor, a removal of each; from 0, nothing.
    std::uint64_t carol_cursor = 0;
    {
        pull_request r{"items", 0, 5000, ""};
        pull_response page;
        REQUIRE_FALSE(s.pull("carol", r, page));
        carol_cursor = page.cursor;
    }
    REQUIRE_FALSE(s.revoke("home", "carol"));
    const auto gone = pull_all(s, "carol", "items", carol_cursor);
    CHECK(live_ids(gone).empty());
    CHECK(gone.size() == stored_keys.size());
    CHECK(live_ids(pull_all(s, "carol", "items")).empty());
    CHECK(live_ids(pull_all(s, "bob", "items")) == stored_keys);
}

// ---------------------------------------------------------------------------------------------
// Partial sync: pulls that carry a subset (docs/sharing.md "Partial sync").

namespace {
/// Pages `request` to its end as `user`; the changes, and the last cursor in `cursor`.
std::vector<change> pull_pages(server::sync_service& service, std::string_view user,
                               pull_request request, std::uint64_t* cursor = nullptr) {
    std::vector<change> out;
    request.limit = 2;
    for (int pages = 0; pages < 1000; ++pages) {
        pull_response response;
        const auto d = service.pull(user, request, response);
        INFO(d.message);
        REQUIRE_FALSE(d);
        // A page without changes never says more follow: devices refuse that as a server's
        // way to keep them pulling for ever.
        CHECK_FALSE((response.changes.empty() && response.has_more));
        for (auto& c : response.changes) out.push_back(std::move(c));
        // A backfill's pages stop at its `until`, and the last one says so.
        if (request.backfill) {
            CHECK(response.cursor <= request.backfill->until);
            const bool more_past_until =
                response.has_more && response.cursor == request.backfill->until;
            CHECK_FALSE(more_past_until);
        }
        request.since = response.cursor;
        if (!response.has_more) break;
    }
    if (cursor) *cursor = request.since;
    return out;
}
sync_subset groups_subset(std::vector<std::string> groups) {
    sync_subset s;
    s.groups = std::move(groups);
    return s;
}
std::vector<std::string> removed_ids(const std::vector<change>& changes) {
    std::vector<std::string> out;
    for (const auto& c : changes)
        if (c.deleted) {
            CHECK(c.stamp.node.empty()); // a removal names no writer
            CHECK(c.value.empty());
            out.push_back(std::string(c.id.as_string()));
        }
    std::sort(out.begin(), out.end());
    return out;
}
} // namespace

TEST_CASE("partial sync: a device that subscribes to some groups gets only their records, and "
          "widening it backfills only what it lacked",
          "[sharing][partial]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice"})));
    push_one(s, "alice", upsert(2, list("work", {"alice", "bob"})));
    push_one(s, "alice", upsert(3, list("trip", {"alice"})));
    push_one(s, "bob", upsert(1, list("bobs", {"bob"})), "bob-phone");
    push_one(s, "alice", upsert(4, item("h-1", "home")));
    push_one(s, "alice", upsert(5, item("h-2", "home")));
    push_one(s, "alice", upsert(6, item("w-1", "work")));
    push_one(s, "alice", upsert(7, item("t-1", "trip")));
    push_one(s, "bob", upsert(2, item("b-1", "bobs")), "bob-phone");

    pull_request home{"items", 0, 2, "alice-phone"};
    home.subset = groups_subset({"home", "bobs"}); // bobs: not hers, so nothing of it
    std::uint64_t cursor = 0;
    auto first = pull_pages(s, "alice", home, &cursor);
    CHECK(live_ids(first) == strings{"h-1", "h-2"});
    CHECK(cursor > 0);

    // Changes elsewhere reach the device not at all; a record leaving its groups comes as a
    // removal; a record entering them comes whole.
    push_one(s, "alice", upsert(8, item("w-2", "work")));
    push_one(s, "alice", upsert(9, item("h-1", "trip"), s.get("alice", "items", "h-1")->version));
    push_one(s, "alice", upsert(10, item("t-1", "home"), s.get("alice", "items", "t-1")->version));
    home.since = cursor;
    auto next = pull_pages(s, "alice", home, &cursor);
    CHECK(removed_ids(next) == strings{"h-1"});
    CHECK(live_ids(next) == strings{"t-1"});
    for (const auto& c : next) CHECK(c.id != "w-2");

    // Widen to work too: the backfill answers work's records up to the cursor, none of home's.
    pull_request widen{"items", 0, 2, "alice-phone"};
    widen.subset = groups_subset({"home", "work"});
    widen.backfill = subset_backfill{home.subset, cursor};
    std::uint64_t backfill_end = 0;
    auto backfill = pull_pages(s, "alice", widen, &backfill_end);
    CHECK(backfill_end == cursor); // where the device's own cursor takes over
    std::vector<std::string> got;
    for (const auto& c : backfill) {
        CHECK_FALSE(c.deleted); // a backfill sends no removals: the device held none of these
        got.push_back(std::string(c.id.as_string()));
    }
    std::sort(got.begin(), got.end());
    CHECK(got == strings{"w-1", "w-2"});
    // Then the pull goes on from the cursor with the wider subset; a change after the backfill
    // began is not lost between the two.
    push_one(s, "alice", upsert(11, item("w-3", "work")));
    pull_request wide{"items", cursor, 2, "alice-phone"};
    wide.subset = widen.subset;
    CHECK(live_ids(pull_pages(s, "alice", wide)) == strings{"w-3"});

    // Every group of the user's, as before: the same as no subset at all.
    pull_request all{"items", 0, 2, ""};
    all.subset = groups_subset({"home", "trip", "work"});
    CHECK(live_ids(pull_pages(s, "alice", all)) == live_ids(pull_all(s, "alice", "items")));
    // No group: nothing.
    pull_request none{"items", 0, 2, ""};
    none.subset = groups_subset({});
    CHECK(live_ids(pull_pages(s, "alice", none)).empty());
    // Bob's subset cannot reach into alice's groups.
    pull_request probe{"items", 0, 2, ""};
    probe.subset = groups_subset({"home", "trip"});
    CHECK(pull_pages(s, "bob", probe).empty());
}

TEST_CASE("partial sync: a backfill's long run of records the device holds is read past in one "
          "answer",
          "[sharing][partial]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice"})));
    std::uint64_t id = 2;
    for (int i = 0; i < 25; ++i) {
        auto done = item("b-" + std::to_string(i), "home", "bought");
        done.bought = true;
        push_one(s, "alice", upsert(id++, done));
    }
    push_one(s, "alice", upsert(id++, item("open-1", "home", "milk")));
    // The device held the bought items and now wants everything: its backfill brings what it
    // did not hold. Each window of 2 holds held items only, until the last: the server reads
    // on to it rather than answer empty pages that claim more.
    sync_subset held;
    held.where = query<Item>(field(&Item::bought) == true).spec();
    pull_request widen{"items", 0, 2, "alice-phone"};
    widen.backfill = subset_backfill{held, s.last_version()};
    pull_response page;
    REQUIRE_FALSE(s.pull("alice", widen, page));
    CHECK(live_ids(page.changes) == strings{"open-1"});
    CHECK_FALSE(page.has_more);
    CHECK(page.cursor == s.last_version());
    // Nothing to bring at all: one empty page that says nothing more follows.
    pull_request again = widen;
    again.backfill = subset_backfill{sync_subset{}, s.last_version()};
    pull_response none;
    REQUIRE_FALSE(s.pull("alice", again, none));
    CHECK(none.changes.empty());
    CHECK_FALSE(none.has_more);
}

TEST_CASE("partial sync: a query subset sends what matches and removes what stops matching",
          "[sharing][partial]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice", "bob"})));
    push_one(s, "alice", upsert(2, item("h-1", "home", "milk")));
    push_one(s, "alice", upsert(3, item("h-2", "home", "jam")));
    auto bought = item("h-3", "home", "eggs");
    bought.bought = true;
    push_one(s, "alice", upsert(4, bought));

    pull_request open{"items", 0, 2, "bob-phone"};
    open.subset.where = query<Item>(field(&Item::bought) == false).spec();
    std::uint64_t cursor = 0;
    CHECK(live_ids(pull_pages(s, "bob", open, &cursor)) == strings{"h-1", "h-2"});

    // Bob buys the milk from his own device: the echo of his own write, out of his subset,
    // comes as a removal too.
    auto milk = item("h-1", "home", "milk");
    milk.bought = true;
    push_one(s, "bob", upsert(1, milk, s.get("bob", "items", "h-1")->version), "bob-phone");
    open.since = cursor;
    auto next = pull_pages(s, "bob", open, &cursor);
    CHECK(removed_ids(next) == strings{"h-1"});
    CHECK(live_ids(next).empty());

    // A query and groups together; a query on another collection's field is refused.
    pull_request both{"items", 0, 2, ""};
    both.subset = groups_subset({"home"});
    both.subset.where = query<Item>(field(&Item::name) >= std::string("k")).spec();
    CHECK(live_ids(pull_pages(s, "alice", both)) == strings{"h-1"}); // milk; not eggs, not jam

    // Shared and per-user collections take queries too.
    push_one(s, "alice", upsert(5, reservation("r-1", "confirmed", 4)));
    push_one(s, "alice", upsert(6, reservation("r-2", "confirmed", 1)));
    pull_request big{"reservations", 0, 2, ""};
    big.subset.where = query<Reservation>(field(&Reservation::party_size) >= 2).spec();
    const auto parties = pull_pages(s, "alice", big);
    CHECK(live_ids(parties) == strings{"r-1"});
    CHECK(removed_ids(parties) == strings{"r-2"}); // a change out of the subset: a removal
}

TEST_CASE("partial sync: bad subsets are refused and change nothing", "[sharing][partial][bad-input]") {
    sharing_world w;
    auto& s = w.service;
    push_one(s, "alice", upsert(1, list("home", {"alice"})));
    push_one(s, "alice", upsert(2, item("h-1", "home")));
    const auto last = s.last_version();
    auto refused = [&](pull_request r) {
        pull_response response;
        auto d = s.pull("alice", r, response);
        CHECK(response.changes.empty());
        CHECK(s.last_version() == last);
        return d;
    };
    pull_request r{"reservations", 0, 10, ""};
    r.subset = groups_subset({"home"});
    auto d = refused(r);
    CHECK(errc_of(d.code) == errc::invalid_field);
    CHECK(d.message == "subset: 'groups' applies to grouped collections; reservations is not one");

    r = {"items", 0, 10, ""};
    r.subset.where.conditions.push_back({"colour", compare_op::equal, "red"});
    d = refused(r);
    CHECK(errc_of(d.code) == errc::unknown_field);
    CHECK(d.message == "subset: items has no field 'colour'");

    r = {"items", 0, 10, ""};
    r.subset.where.conditions.push_back({"bought", compare_op::equal, "yes"});
    CHECK(errc_of(refused(r).code) == errc::invalid_field);

    r = {"items", 0, 10, ""};
    r.backfill = subset_backfill{groups_subset({"home"}), last + 1};
    d = refused(r);
    CHECK(errc_of(d.code) == errc::cursor_ahead);
    r.backfill->until = 1;
    r.since = 2;
    CHECK(errc_of(refused(r).code) == errc::invalid_field);
    r = {"items", 0, 10, ""};
    r.backfill = subset_backfill{};
    r.backfill->held.where.conditions.push_back({"nope", compare_op::less, 1});
    CHECK(errc_of(refused(r).code) == errc::unknown_field);
}

// ---------------------------------------------------------------------------------------------
// Partial sync on the device: the engine's set_subset.

namespace {
/// Alice's lists `home` and `work` (hers alone), two items in each, written by her phone.
std::unique_ptr<client> alice_with_two_lists(sharing_world& w) {
    auto phone = w.member_device("alice");
    phone->replica.put(list("home", {"alice"}));
    phone->replica.put(list("work", {"alice"}));
    for (const char* id : {"h-1", "h-2"}) phone->replica.put(item(id, "home"));
    for (const char* id : {"w-1", "w-2"}) phone->replica.put(item(id, "work"));
    REQUIRE_FALSE(phone->sync().error);
    return phone;
}
strings held_items(client& d) { return ids_of(d.replica.list<Item>()); }
} // namespace

TEST_CASE("partial sync: a device narrows and widens its subset, it holds exactly the subset, "
          "and a change downloads only what it adds",
          "[sharing][partial][engine]") {
    sharing_world w;
    auto phone = alice_with_two_lists(w);
    auto laptop = w.member_device("alice");
    laptop->engine.set_subset<Item>(groups_subset({"home"}));
    auto report = laptop->sync();
    REQUIRE_FALSE(report.error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2"});
    CHECK(laptop->replica.list<List>().size() == 2); // lists are not subset

    // Wider: the backfill brings work's two items and nothing it holds.
    laptop->engine.set_subset<Item>(groups_subset({"home", "work"}));
    report = laptop->sync();
    REQUIRE_FALSE(report.error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2", "w-1", "w-2"});
    CHECK(report.pulled == 2);

    // Narrower: home's items leave the device; nothing is downloaded.
    laptop->engine.set_subset<Item>(groups_subset({"work"}));
    report = laptop->sync();
    REQUIRE_FALSE(report.error);
    CHECK(held_items(*laptop) == strings{"w-1", "w-2"});
    CHECK(report.pulled == 0);
    CHECK(phone->replica.list<Item>().size() == 4); // eviction is the device's alone

    // Changes on the server follow the subset: a new work item comes, a home item does not,
    // an item moved out of work leaves.
    phone->replica.put(item("w-3", "work"));
    phone->replica.put(item("h-3", "home"));
    phone->replica.put(item("w-2", "home", "moved"));
    REQUIRE_FALSE(phone->sync().error);
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"w-1", "w-3"});

    // An unpushed edit of a record the new subset drops is pushed, not lost, and then leaves.
    auto w1 = *laptop->replica.get<Item>("w-1");
    w1.name = "edited on the laptop";
    laptop->replica.put(w1);
    laptop->engine.set_subset<Item>(groups_subset({"home"}));
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2", "h-3", "w-2"});
    REQUIRE_FALSE(phone->sync().error);
    CHECK(phone->replica.get<Item>("w-1")->name == "edited on the laptop");

    // The laptop's own new record outside its subset is pushed, and leaves it.
    laptop->replica.put(item("w-4", "work", "from the laptop"));
    REQUIRE_FALSE(laptop->sync().error);
    CHECK_FALSE(laptop->replica.get<Item>("w-4"));
    REQUIRE_FALSE(phone->sync().error);
    CHECK(phone->replica.get<Item>("w-4"));

    // Back to everything: what it lacks comes back.
    laptop->engine.set_subset<Item>(sync_subset{});
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == held_items(*phone));
}

TEST_CASE("partial sync: a query subset, a backfill that fails midway, and a restart",
          "[sharing][partial][engine]") {
    sharing_world w;
    auto phone = alice_with_two_lists(w);
    auto laptop = w.member_device("alice");
    laptop->engine.set_subset<Item>(sync_subset{std::nullopt,
                                                query<Item>(field(&Item::bought) == false).spec()});
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2", "w-1", "w-2"});
    // Bought on the phone: gone from the laptop.
    auto h1 = *phone->replica.get<Item>("h-1");
    h1.bought = true;
    phone->replica.put(h1);
    REQUIRE_FALSE(phone->sync().error);
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"h-2", "w-1", "w-2"});

    // Widen to everything while the server's answers get lost: the round fails, the next one
    // finishes the backfill, and nothing is missing or doubled.
    laptop->engine.set_subset<Item>(sync_subset{});
    laptop->transport.faults().lose_pull_responses = 1;
    CHECK(laptop->sync().error);
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2", "w-1", "w-2"});
    CHECK(laptop->replica.get<Item>("h-1")->bought);

    // A restart: a new engine over the same store keeps the subset it held, and a device that
    // sets the same subset again downloads nothing.
    laptop->engine.set_subset<Item>(groups_subset({"work"}));
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"w-1", "w-2"});
    engine_type restarted(w.io.get_executor(), laptop->replica, laptop->transport);
    restarted.add_collections(sharing_models{});
    restarted.set_subset<Item>(groups_subset({"work"}));
    std::optional<sync_report> round;
    restarted.async_sync([&](error_code, sync_report r) { round = std::move(r); });
    w.io.restart();
    w.io.run();
    REQUIRE(round);
    REQUIRE_FALSE(round->error);
    CHECK(round->pulled == 0);
    CHECK(held_items(*laptop) == strings{"w-1", "w-2"});
}

TEST_CASE("partial sync: a subset that does not fit is refused and changes nothing",
          "[sharing][partial][engine][bad-input]") {
    sharing_world w;
    auto phone = alice_with_two_lists(w);
    auto laptop = w.member_device("alice");
    sync_subset bad;
    bad.where.conditions.push_back({"colour", compare_op::equal, "red"});
    try {
        laptop->engine.set_subset<Item>(bad);
        FAIL("an unknown field was taken");
    } catch (const sync_error& e) {
        CHECK(e.code() == errc::unknown_field);
        CHECK(std::string(e.what()) == "subset: items has no field 'colour'");
    }
    bad.where.conditions = {{"bought", compare_op::equal, "no"}};
    CHECK_THROWS_AS(laptop->engine.set_subset<Item>(bad), sync_error);
    CHECK_THROWS_AS(laptop->engine.set_subset("nope", sync_subset{}), std::invalid_argument);
    CHECK(laptop->engine.subset("items").everything());
    REQUIRE_FALSE(laptop->sync().error);
    CHECK(held_items(*laptop) == strings{"h-1", "h-2", "w-1", "w-2"});
}
