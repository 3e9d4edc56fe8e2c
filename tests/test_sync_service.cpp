// The server's protocol logic: versions, the change feed, idempotency, field-level conflicts,
// scope, validation, and the wire entry points with their error bodies.
#include "support/world.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/errc.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

using namespace offsync_test;
using Catch::Contains;

namespace {

constexpr std::int64_t t0 = 1'764'000'000'000;

/// One client device of one user: a client id and its own mutation sequence.
struct device {
    server::sync_service& service;
    std::string user;
    std::string client;
    std::uint64_t next_id = 1;
    std::int64_t wall = t0;

    /// An upsert of `fields`.
    mutation make(std::string_view collection, json::value id, std::uint64_t base,
                  json::object fields) {
        mutation m;
        m.mutation_id = next_id++;
        m.collection = std::string(collection);
        m.id = std::move(id);
        m.base_version = base;
        m.stamp = hlc_stamp{++wall, 0, client};
        m.fields = std::move(fields);
        return m;
    }
    mutation make_delete(std::string_view collection, json::value id, std::uint64_t base) {
        auto m = make(collection, std::move(id), base, {});
        m.op = mutation_op::remove;
        return m;
    }
    push_response push(std::vector<mutation> ms) {
        push_request request{client, std::move(ms)};
        push_response response;
        auto d = service.push(user, request, response);
        INFO(d.message);
        REQUIRE(!d);
        REQUIRE(response.results.size() == request.mutations.size());
        for (std::size_t i = 0; i < request.mutations.size(); ++i)
            CHECK(response.results[i].mutation_id == request.mutations[i].mutation_id);
        return response;
    }
    mutation_result put(std::string_view collection, json::value id, std::uint64_t base,
                        json::object fields) {
        return push({make(collection, std::move(id), base, std::move(fields))}).results.at(0);
    }
    mutation_result erase(std::string_view collection, json::value id, std::uint64_t base) {
        return push({make_delete(collection, std::move(id), base)}).results.at(0);
    }
    /// Creates a reservation and returns its version.
    std::uint64_t create(const Reservation& r) {
        auto result = put("reservations", json::value(r.id), 0, to_json_object(r));
        REQUIRE(result.status == mutation_status::applied);
        return result.version;
    }
};

pull_response pull_page(server::sync_service& s, std::string_view user, std::string collection,
                        std::uint64_t since = 0, std::uint32_t limit = 500) {
    pull_response page;
    auto d = s.pull(user, {std::move(collection), since, limit}, page);
    INFO(d.message);
    REQUIRE(!d);
    return page;
}

/// Every change from `since` on, following `has_more`.
std::vector<change> pull_all(server::sync_service& s, std::string_view user,
                             const std::string& collection, std::uint64_t since = 0) {
    std::vector<change> all;
    for (;;) {
        auto page = pull_page(s, user, collection, since);
        for (auto& c : page.changes)
            all.push_back(std::move(c));
        since = page.cursor;
        if (!page.has_more)
            return all;
    }
}

const change* find_change(const std::vector<change>& changes, const json::value& id) {
    auto it =
        std::find_if(changes.begin(), changes.end(), [&](const change& c) { return c.id == id; });
    return it == changes.end() ? nullptr : &*it;
}

/// Everything the service holds that two users can observe, as text: to compare before/after.
std::string snapshot(server::sync_service& s) {
    std::string out = std::to_string(s.last_version());
    for (const char* user : {"alice", "bob"})
        for (const char* coll : {"landmarks", "reservations"}) {
            pull_response all;
            all.changes = pull_all(s, user, coll);
            out += '\n';
            out += json::serialize(to_json(all));
        }
    return out;
}

/// Checks a refused request: its code, the HTTP status a server answers it with, a message
/// (naming `message_part`) and no body.
void check_error(const server::wire_answer& r, unsigned status, errc code,
                 std::string_view message_part = {}) {
    INFO(r.error.message);
    CHECK(r.body.empty());
    REQUIRE(r.error);
    CHECK(r.error.code == code);
    CHECK(http_status(r.error.code) == status);
    CHECK(!r.error.message.empty());
    if (!message_part.empty())
        CHECK_THAT(r.error.message, Contains(std::string(message_part)));
}

push_response parse_push_response(const server::wire_answer& r) {
    INFO(r.error.message);
    REQUIRE(!r.error);
    push_response out;
    REQUIRE(!from_json(json::parse(r.body), out));
    return out;
}

pull_response parse_pull_response(const server::wire_answer& r) {
    INFO(r.error.message);
    REQUIRE(!r.error);
    pull_response out;
    REQUIRE(!from_json(json::parse(r.body), out));
    return out;
}

std::string body_of(const push_request& r) {
    return json::serialize(to_json(r));
}

/// A service with the catalog seeded, reservations for alice and bob, and alice's favorite:
/// versions 1 to 5.
struct seeded {
    manual_clock clock;
    std::shared_ptr<server::sync_service> owned;
    server::sync_service& service;
    device alice{service, "alice", "a-phone"};
    device bob{service, "bob", "b-phone"};

    explicit seeded(server::service_config config = {})
        : owned(make_service(clock, std::move(config))), service(*owned) {
        REQUIRE(service.admin_put("landmarks", to_json_object(half_dome())) == 1);
        REQUIRE(service.admin_put("landmarks", to_json_object(landmark(2, "Golden Gate"))) == 2);
        REQUIRE(alice.create(reservation("r-1", "confirmed", 2)) == 3);
        REQUIRE(bob.create(reservation("r-1", "confirmed", 5)) == 4);
        REQUIRE(alice.put("landmarks", 1, 1, {{"is_favorite", true}}).version == 5);
    }
};

} // namespace

// ---------------------------------------------------------------------------------------------
// Versions and the change feed

TEST_CASE("applied versions strictly increase across pushes, users and collections", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device alice{service, "alice", "a-phone"};
    device bob{service, "bob", "b-phone"};
    std::vector<std::uint64_t> versions;

    versions.push_back(service.admin_put("landmarks", to_json_object(half_dome())));
    std::vector<mutation> batch;
    for (int i = 0; i < 5; ++i) {
        auto r = reservation("r-" + std::to_string(i));
        batch.push_back(alice.make("reservations", json::value(r.id), 0, to_json_object(r)));
    }
    for (const auto& result : alice.push(batch).results) {
        CHECK(result.status == mutation_status::applied);
        versions.push_back(result.version);
    }
    versions.push_back(bob.create(reservation("r-0")));
    versions.push_back(alice.put("reservations", "r-0", versions[1], {{"notes", "x"}}).version);
    versions.push_back(alice.put("landmarks", 1, versions[0], {{"is_favorite", true}}).version);
    versions.push_back(alice.erase("reservations", "r-1", versions[2]).version);

    // Through the wire as well.
    push_request wire{"a-laptop",
                      {alice.make("reservations", "r-9", 0, to_json_object(reservation("r-9")))}};
    auto response = parse_push_response(service.handle_push("alice", body_of(wire)));
    REQUIRE(response.results.size() == 1);
    CHECK(response.results[0].status == mutation_status::applied);
    versions.push_back(response.results[0].version);

    REQUIRE(versions.size() == 11);
    CHECK(versions.front() == 1);
    for (std::size_t i = 1; i < versions.size(); ++i) {
        INFO(i);
        CHECK(versions[i] > versions[i - 1]);
    }
    CHECK(service.last_version() == versions.back());
    CHECK(service.get("alice", "reservations", "r-0")->version == versions[7]);
    CHECK(service.get("alice", "reservations", "r-1")->version == versions[9]);
}

TEST_CASE("a pushed body is parsed into an arena that nothing the service keeps points into",
          "[service]") {
    // handle_push parses into one arena released with the request: a record the store kept
    // in it would keep the whole request's memory alive (or, without the shared arena, point
    // into freed memory).
    seeded s;
    auto& service = s.service;
    push_request wire{"a-laptop", {}};
    wire.mutations.push_back(
        s.alice.make("reservations", "r-9", 0, to_json_object(reservation("r-9", "confirmed", 3))));
    wire.mutations.push_back(s.alice.make("reservations", "r-1", 3, {{"notes", "from the wire"}}));
    auto response = parse_push_response(service.handle_push("alice", body_of(wire)));
    REQUIRE(response.results.size() == 2);
    CHECK(response.results[0].status == mutation_status::applied);
    CHECK(response.results[1].status == mutation_status::applied);
    const json::storage_ptr default_storage;
    for (const char* key : {"r-9", "r-1"}) {
        INFO(key);
        const auto stored = service.get("alice", "reservations", key);
        REQUIRE(stored);
        // A copy of a boost::json value keeps the storage of what it copies.
        CHECK(stored->value.storage().get() == default_storage.get());
        for (const auto& field : stored->value)
            if (field.value().is_string())
                CHECK(field.value().storage().get() == default_storage.get());
    }
    CHECK(service.get("alice", "reservations", "r-1")->value.at("notes") == "from the wire");
    CHECK(service.get("alice", "reservations", "r-9")->value.at("party_size") == 3);
}

TEST_CASE("the change feed pages by limit with has_more and a cursor", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device alice{service, "alice", "a-phone"};
    std::set<std::string> created;
    for (int batch = 0; batch < 5; ++batch) {
        std::vector<mutation> ms;
        for (int i = 0; i < 5; ++i) {
            auto r = reservation("r-" + std::to_string(batch * 5 + i));
            created.insert(r.id);
            ms.push_back(alice.make("reservations", json::value(r.id), 0, to_json_object(r)));
        }
        alice.push(ms);
    }
    REQUIRE(created.size() == 25);
    REQUIRE(service.last_version() == 25);

    SECTION("25 records, limit 10: three pages, nothing missed, nothing twice") {
        std::vector<std::string> seen;
        std::uint64_t since = 0, last_version = 0;
        std::vector<std::size_t> sizes;
        std::vector<bool> more;
        for (int guard = 0; guard < 10; ++guard) {
            auto page = pull_page(service, "alice", "reservations", since, 10);
            sizes.push_back(page.changes.size());
            more.push_back(page.has_more);
            for (const auto& c : page.changes) {
                CHECK(c.version > last_version); // ascending, across pages too
                last_version = c.version;
                CHECK(!c.deleted);
                CHECK(c.value.at("id") == c.id);
                seen.emplace_back(c.id.as_string());
            }
            if (!page.changes.empty())
                CHECK(page.cursor == page.changes.back().version);
            CHECK(page.cursor >= since);
            since = page.cursor;
            if (!page.has_more)
                break;
        }
        CHECK(sizes == std::vector<std::size_t>{10, 10, 5});
        CHECK(more == std::vector<bool>{true, true, false});
        CHECK(seen.size() == 25);
        CHECK(std::set<std::string>(seen.begin(), seen.end()) == created);
        CHECK(since == 25);

        // Caught up: an empty page that keeps the cursor.
        auto empty = pull_page(service, "alice", "reservations", since, 10);
        CHECK(empty.changes.empty());
        CHECK(!empty.has_more);
        CHECK(empty.cursor == since);

        // One later edit: the next page holds exactly that record, at its new version.
        auto v = alice.put("reservations", "r-3", 4, {{"status", "cancelled"}}).version;
        auto next = pull_page(service, "alice", "reservations", since, 10);
        REQUIRE(next.changes.size() == 1);
        CHECK(next.changes[0].id == "r-3");
        CHECK(next.changes[0].version == v);
        CHECK(next.changes[0].value.at("status") == "cancelled");
        CHECK(next.cursor == v);
        CHECK(!next.has_more);

        // From scratch, a record appears once, at its latest version.
        auto all = pull_all(service, "alice", "reservations");
        CHECK(all.size() == 25);
        CHECK(all.back().id == "r-3");
        CHECK(std::count_if(all.begin(), all.end(),
                            [](const change& c) { return c.id == "r-3"; }) == 1);
    }
    SECTION("has_more is exact at the page boundary") {
        CHECK(!pull_page(service, "alice", "reservations", 0, 25).has_more);
        CHECK(pull_page(service, "alice", "reservations", 0, 24).has_more);
        CHECK(!pull_page(service, "alice", "reservations", 24, 1).has_more);
        CHECK(pull_page(service, "alice", "reservations", 23, 1).has_more);
    }
    SECTION("the same paging through the wire") {
        std::set<std::string> seen;
        std::uint64_t since = 0;
        int pages = 0;
        for (bool more = true; more && pages < 10; ++pages) {
            auto r = service.handle_pull(
                "alice", "collection=reservations&since=" + std::to_string(since) + "&limit=10");
            auto page = parse_pull_response(r);
            for (const auto& c : page.changes)
                CHECK(seen.insert(std::string(c.id.as_string())).second);
            since = page.cursor;
            more = page.has_more;
        }
        CHECK(pages == 3);
        CHECK(seen == created);
    }
    SECTION("a typed pull clamps its limit") {
        CHECK(pull_page(service, "alice", "reservations", 0, 0).changes.size() == 1);
    }
    SECTION("another user's feed is empty, and a cursor past the writes is fine") {
        auto page = pull_page(service, "bob", "reservations", 0, 10);
        CHECK(page.changes.empty());
        CHECK(!page.has_more);
        CHECK(page.cursor == 0);
        CHECK(pull_page(service, "bob", "reservations", 25, 10).cursor == 25);
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency

TEST_CASE("a replayed mutation id gets its original result and writes nothing", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};

    const auto create =
        phone.make("reservations", "r-1", 0, to_json_object(reservation("r-1", "confirmed", 2)));
    push_request first{"a-phone", {create}};
    push_response original;
    REQUIRE(!service.push("alice", first, original));
    REQUIRE(original.results.size() == 1);
    REQUIRE(original.results[0].status == mutation_status::applied);
    // The results are the outcome a replay repeats. The answer that wrote also told the feed
    // range its writes fill (`own_writes`); a replay writes nothing and tells none, so the
    // client pulls the echoes: slower, never wrong.
    REQUIRE(original.own_writes);
    const auto original_text = json::serialize(to_json(original).at("results"));
    auto results_text = [](const push_response& r) {
        CHECK(!r.own_writes);
        return json::serialize(to_json(r).at("results"));
    };
    const auto v1 = original.results[0].version;

    SECTION("the same request again") {
        push_response again;
        REQUIRE(!service.push("alice", first, again));
        CHECK(results_text(again) == original_text);
        CHECK(service.last_version() == v1);
        CHECK(pull_all(service, "alice", "reservations").size() == 1);
    }
    SECTION("the same id with another payload is still the original outcome") {
        auto altered = create;
        altered.fields["party_size"] = 9;
        push_request retry{"a-phone", {altered}};
        push_response again;
        REQUIRE(!service.push("alice", retry, again));
        CHECK(results_text(again) == original_text);
        CHECK(service.last_version() == v1);
        CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 2);
    }
    SECTION("the same body through the wire: the same answer, byte for byte") {
        auto a = service.handle_push("alice", body_of(first));
        auto b = service.handle_push("alice", body_of(first));
        CHECK(!a.error);
        CHECK(a.body == b.body);
        CHECK(json::serialize(json::parse(a.body).at("results")) == original_text);
        CHECK(!json::parse(a.body).as_object().contains("own_writes"));
        CHECK(service.last_version() == v1);
    }
    SECTION("a replay and a new mutation in one batch") {
        auto edit = phone.make("reservations", "r-1", v1, {{"notes", "late"}});
        auto response = phone.push({create, edit});
        CHECK(json::serialize(to_json(response.results[0])) ==
              json::serialize(to_json(original.results[0])));
        CHECK(response.results[1].status == mutation_status::applied);
        CHECK(response.results[1].version == v1 + 1);
        CHECK(service.last_version() == v1 + 1);
    }
    SECTION("a rejected mutation stays rejected when replayed, even if fixed") {
        auto bad = phone.make("reservations", "r-1", v1, {{"party_size", "many"}});
        auto r1 = phone.push({bad}).results[0];
        CHECK(r1.status == mutation_status::rejected);
        CHECK(r1.error_code == "invalid_field");
        auto fixed = bad;
        fixed.fields["party_size"] = 4;
        auto r2 = phone.push({fixed}).results[0];
        CHECK(json::serialize(to_json(r2)) == json::serialize(to_json(r1)));
        CHECK(service.last_version() == v1);
        CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 2);
    }
    SECTION("a conflict replays as the same conflict, with the server record of then") {
        const auto v2 = laptop.put("reservations", "r-1", v1, {{"status", "cancelled"}}).version;
        auto stale = phone.make("reservations", "r-1", v1, {{"status", "confirmed"}});
        auto r1 = phone.push({stale}).results[0];
        REQUIRE(r1.status == mutation_status::conflict);
        CHECK(r1.server->version == v2);
        laptop.put("reservations", "r-1", v2, {{"notes", "moved again"}});
        const auto now = service.last_version();
        auto r2 = phone.push({stale}).results[0];
        CHECK(json::serialize(to_json(r2)) == json::serialize(to_json(r1)));
        CHECK(service.last_version() == now);
    }
    SECTION("mutation ids belong to one client of one user") {
        // Another client's mutation 1 is a different mutation.
        auto other = laptop.make("reservations", "r-1", v1, {{"notes", "laptop"}});
        REQUIRE(other.mutation_id == create.mutation_id);
        auto r = laptop.push({other}).results[0];
        CHECK(r.status == mutation_status::applied);
        CHECK(r.version == v1 + 1);
        // So is the same client id under another user.
        device bob{service, "bob", "a-phone"};
        auto b = bob.make("reservations", "r-1", 0, to_json_object(reservation("r-1")));
        REQUIRE(b.mutation_id == create.mutation_id);
        auto rb = bob.push({b}).results[0];
        CHECK(rb.status == mutation_status::applied);
        CHECK(rb.version == v1 + 2);
        CHECK(service.get("bob", "reservations", "r-1"));
    }
}

TEST_CASE("a mutation id repeated within one push is applied once", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    device phone{*owned, "alice", "a-phone"};
    auto create = phone.make("reservations", "r-1", 0, to_json_object(reservation("r-1")));
    auto again = create;
    again.fields["party_size"] = 7;
    auto response = phone.push({create, again});
    REQUIRE(response.results[0].status == mutation_status::applied);
    // The second is a retry of the first: its original outcome, nothing written.
    CHECK(json::serialize(to_json(response.results[1])) ==
          json::serialize(to_json(response.results[0])));
    CHECK(owned->last_version() == response.results[0].version);
    CHECK(owned->get("alice", "reservations", "r-1")->value.at("party_size") == 2);
}


TEST_CASE("retries are recognised whether or not the store knows its newest result",
          "[service]") {
    manual_clock clock;
    server::service_config config;
    config.clock = clock.as_wall_clock();
    minimal_server_store plain;
    server::sync_service without(plain, config);
    server::memory_server_store knowing;
    server::sync_service with(knowing, config);
    for (auto* service : {&without, &with}) {
        service->add_collection<Reservation>();
        device phone{*service, "alice", "a-phone"};
        auto r1 = phone.make("reservations", "r-1", 0, to_json_object(reservation("r-1")));
        auto r2 = phone.make("reservations", "r-2", 0, to_json_object(reservation("r-2")));
        phone.push({r1, r2});
        const auto version = service->last_version();
        // A retry of both, older than a new third one: two remembered answers, one write.
        auto r3 = phone.make("reservations", "r-3", 0, to_json_object(reservation("r-3")));
        auto response = phone.push({r1, r2, r3});
        CHECK(response.results[0].version == version - 1);
        CHECK(response.results[1].version == version);
        CHECK(response.results[2].version == version + 1);
        CHECK(service->last_version() == version + 1);
    }
    CHECK(plain.lookups == 5); // every mutation looked up: 2 + 3
    CHECK(knowing.newest_result("alice\na-phone") == 3u);
    CHECK(knowing.newest_result("alice\nsomebody") == 0u);
}

TEST_CASE("a pull that names its client gets that client's own latest writes as echoes",
          "[service][echo]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};
    const auto v1 = phone.put("reservations", "r-1", 0, to_json_object(reservation("r-1"))).version;
    phone.put("reservations", "r-2", 0, to_json_object(reservation("r-2")));
    laptop.put("reservations", "r-3", 0, to_json_object(reservation("r-3")));
    const auto v4 = laptop.put("reservations", "r-1", v1, {{"notes", "laptop"}}).version;
    const auto v5 = phone.erase("reservations", "r-2", v1 + 1).version;
    service.admin_put("reservations", to_json_object(reservation("r-4")), "alice");

    auto pull_as = [&](std::string client) {
        pull_response page;
        pull_request request{"reservations", 0, 100, std::move(client)};
        REQUIRE(!service.pull("alice", request, page));
        return page;
    };
    const auto phone_view = pull_as("a-phone");
    REQUIRE(phone_view.changes.size() == 4);
    for (const auto& c : phone_view.changes) {
        INFO(json::serialize(c.id));
        // r-2's tombstone is the phone's; r-1 (laptop), r-3 (laptop) and r-4 (admin) are not.
        CHECK(c.echo == (c.id == "r-2"));
        if (c.echo) {
            CHECK(c.deleted);
            CHECK(c.version == v5);
            CHECK(c.value.empty());
        } else {
            CHECK_FALSE(c.value.empty());
        }
    }
    const auto laptop_view = pull_as("a-laptop");
    for (const auto& c : laptop_view.changes) {
        INFO(json::serialize(c.id));
        CHECK(c.echo == (c.id == "r-1" || c.id == "r-3"));
        if (c.id == "r-1") CHECK(c.version == v4);
    }
    for (const auto& c : pull_as("").changes) CHECK_FALSE(c.echo); // nobody named: all in full
    // The wire form carries the client in the query.
    auto wire = service.handle_pull("alice", "collection=reservations&since=0&client_id=a-phone");
    CHECK(!wire.error);
    CHECK_THAT(wire.body, Contains("\"echo\":true"));
    CHECK(service.handle_pull("alice", "collection=reservations&client_id=").error.code ==
          errc::invalid_field);

    // A shared collection with per-user fields merges two records per change: never an echo.
    const auto seeded = service.admin_put("landmarks", to_json_object(half_dome()));
    REQUIRE(phone.put("landmarks", 1, seeded, {{"is_favorite", true}}).status ==
            mutation_status::applied);
    pull_response landmarks;
    REQUIRE(!service.pull("alice", {"landmarks", 0, 100, "a-phone"}, landmarks));
    REQUIRE_FALSE(landmarks.changes.empty());
    for (const auto& c : landmarks.changes) CHECK_FALSE(c.echo);
}

TEST_CASE("an applied result carries the record when others wrote fields since its base",
          "[service][echo]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};
    const auto v1 = phone.put("reservations", "r-1", 0, to_json_object(reservation("r-1"))).version;
    // The phone saw every field it did not write: no record in the answer.
    const auto own = phone.put("reservations", "r-1", v1, {{"status", "cancelled"}});
    CHECK_FALSE(own.server);
    // The laptop writes the notes, based on the phone's last write: it has seen everything.
    const auto laptop_write = laptop.put("reservations", "r-1", own.version, {{"notes", "x"}});
    CHECK_FALSE(laptop_write.server);
    // The phone writes another field on its old base: merged, and the answer brings the notes.
    const auto merged = phone.put("reservations", "r-1", own.version, {{"party_size", 5}});
    REQUIRE(merged.status == mutation_status::applied);
    REQUIRE(merged.server);
    CHECK(merged.server->version == merged.version);
    CHECK(merged.server->value.at("notes") == "x");
    CHECK(merged.server->value.at("party_size") == 5);
    CHECK(merged.server->value.at("status") == "cancelled");
    // Nothing to write, but a field written by another since the base: the record again.
    const auto nothing = laptop.put("reservations", "r-1", laptop_write.version, {});
    REQUIRE(nothing.status == mutation_status::applied);
    REQUIRE(nothing.server);
    CHECK(nothing.server->value.at("party_size") == 5);
    // A delete needs no record back.
    const auto removed = phone.erase("reservations", "r-1", merged.version);
    CHECK(removed.status == mutation_status::applied);
    CHECK_FALSE(removed.server);
}

// ---------------------------------------------------------------------------------------------
// Conflicts

TEST_CASE("conflicts are detected per field", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};
    const auto v1 = phone.create(reservation("r-1", "confirmed", 2));

    // Both start from v1.
    auto by_laptop = laptop.put("reservations", "r-1", v1, {{"status", "cancelled"}});
    REQUIRE(by_laptop.status == mutation_status::applied);
    const auto v2 = by_laptop.version;

    SECTION("different fields merge without a conflict") {
        auto r = phone.put("reservations", "r-1", v1, {{"notes", "by the phone"}});
        CHECK(r.status == mutation_status::applied);
        CHECK(r.version == v2 + 1);
        // The phone has not seen the laptop's status: the answer brings the merged record.
        REQUIRE(r.server);
        CHECK(r.server->version == r.version);
        CHECK(r.server->value.at("status") == "cancelled");
        CHECK(r.server->value.at("notes") == "by the phone");
        auto now = service.get("alice", "reservations", "r-1");
        CHECK(now->value.at("status") == "cancelled");
        CHECK(now->value.at("notes") == "by the phone");
        CHECK(now->value.at("party_size") == 2);
    }
    SECTION("the same field conflicts and carries the server record") {
        auto r = phone.put("reservations", "r-1", v1, {{"status", "confirmed"}, {"notes", "n"}});
        CHECK(r.status == mutation_status::conflict);
        REQUIRE(r.server);
        CHECK(r.server->id == "r-1");
        CHECK(r.server->version == v2);
        CHECK(!r.server->deleted);
        CHECK(r.server->stamp.node == "a-laptop");
        CHECK(normalize(schema_of<Reservation>(), r.server->value) == r.server->value);
        CHECK(r.server->value.at("status") == "cancelled");
        CHECK(r.server->value.at("notes") == "");
        // Nothing of the conflicting mutation was written, not even its other field.
        CHECK(service.last_version() == v2);
        CHECK(service.get("alice", "reservations", "r-1")->value.at("notes") == "");

        // Rebased on the server's version, the same edit applies.
        auto rebased = phone.put("reservations", "r-1", v2, {{"status", "confirmed"}});
        CHECK(rebased.status == mutation_status::applied);
        CHECK(service.get("alice", "reservations", "r-1")->value.at("status") == "confirmed");
    }
    SECTION("a base at or above the field's version is not a conflict") {
        CHECK(phone.put("reservations", "r-1", v2, {{"status", "confirmed"}}).status ==
              mutation_status::applied);
    }
    SECTION("through the wire, a conflict is a 200 with status conflict") {
        push_request stale{"a-phone",
                           {phone.make("reservations", "r-1", v1, {{"status", "confirmed"}})}};
        auto r = service.handle_push("alice", body_of(stale));
        auto response = parse_push_response(r);
        REQUIRE(response.results.size() == 1);
        CHECK(response.results[0].status == mutation_status::conflict);
        REQUIRE(response.results[0].server);
        CHECK(response.results[0].server->value.at("status") == "cancelled");
        auto raw = json::parse(r.body).at("results").at(0).as_object();
        CHECK(!raw.contains("version"));
        CHECK(!raw.contains("error"));
    }
}

TEST_CASE("a client's own earlier write is never a conflict with itself", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};
    const auto v1 = phone.create(reservation("r-1", "confirmed", 2));
    // The phone's edit is applied, but its acknowledgement is lost: the phone's base stays v1.
    REQUIRE(phone.put("reservations", "r-1", v1, {{"status", "cancelled"}}).status ==
            mutation_status::applied);
    // The laptop edits another field meanwhile.
    const auto v3 = laptop.put("reservations", "r-1", v1 + 1, {{"notes", "laptop"}}).version;

    SECTION("a new mutation over the same field with the stale base applies") {
        auto r = phone.put("reservations", "r-1", v1, {{"status", "cancelled"}, {"party_size", 3}});
        CHECK(r.status == mutation_status::applied);
        CHECK(r.version == v3 + 1);
        auto now = service.get("alice", "reservations", "r-1");
        CHECK(now->value.at("party_size") == 3);
        CHECK(now->value.at("notes") == "laptop");
    }
    SECTION("but a field another client wrote since the base still conflicts") {
        auto r = phone.put("reservations", "r-1", v1, {{"status", "cancelled"}, {"notes", "p"}});
        CHECK(r.status == mutation_status::conflict);
        CHECK(r.server->version == v3);
        CHECK(service.last_version() == v3);
    }
    SECTION("a delete with the stale base conflicts only because of the laptop's field") {
        auto r = phone.erase("reservations", "r-1", v1);
        CHECK(r.status == mutation_status::conflict);
        CHECK(!service.get("alice", "reservations", "r-1")->deleted);
    }
}

TEST_CASE("deletes are tombstones in the feed", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    const auto v1 = phone.create(reservation("r-1"));
    const auto v2 = phone.create(reservation("r-2"));

    auto del = phone.erase("reservations", "r-1", v1);
    REQUIRE(del.status == mutation_status::applied);
    const auto v3 = del.version;
    CHECK(v3 == v2 + 1);

    auto all = pull_all(service, "alice", "reservations");
    REQUIRE(all.size() == 2);
    const auto* tomb = find_change(all, "r-1");
    REQUIRE(tomb);
    CHECK(tomb->deleted);
    CHECK(tomb->version == v3);
    CHECK(tomb->value.empty());
    CHECK(tomb->stamp.node == "a-phone");
    CHECK(!find_change(all, "r-2")->deleted);

    // A client caught up to v2 sees just the tombstone.
    auto page = pull_page(service, "alice", "reservations", v2);
    REQUIRE(page.changes.size() == 1);
    CHECK(page.changes[0].id == "r-1");
    CHECK(page.changes[0].deleted);

    // On the wire: "deleted": true and an empty value.
    auto wire = json::parse(
        service.handle_pull("alice", "collection=reservations&since=" + std::to_string(v2)).body);
    CHECK(wire.at("changes").at(0).at("deleted") == true);
    CHECK(wire.at("changes").at(0).at("value") == json::object{});

    CHECK(service.get("alice", "reservations", "r-1")->deleted);

    SECTION("deleting again writes nothing and answers the tombstone's version") {
        auto again = phone.erase("reservations", "r-1", v3);
        CHECK(again.status == mutation_status::applied);
        CHECK(again.version == v3);
        CHECK(service.last_version() == v3);
    }
    SECTION("deleting what never existed writes nothing") {
        auto r = phone.erase("reservations", "r-404", 0);
        CHECK(r.status == mutation_status::applied);
        CHECK(service.last_version() == v3);
        CHECK(!service.get("alice", "reservations", "r-404"));
    }
    SECTION("the deleting client may recreate the record") {
        auto r = phone.put("reservations", "r-1", v1, to_json_object(reservation("r-1", "new", 7)));
        CHECK(r.status == mutation_status::applied);
        auto now = service.get("alice", "reservations", "r-1");
        CHECK(!now->deleted);
        CHECK(now->value.at("party_size") == 7);
        CHECK(now->value.at("status") == "new");
        CHECK(pull_all(service, "alice", "reservations").size() == 2);
    }
}

TEST_CASE("a delete and an update of one record conflict", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device phone{service, "alice", "a-phone"};
    device laptop{service, "alice", "a-laptop"};
    const auto v1 = phone.create(reservation("r-1"));

    SECTION("a delete based before an update") {
        const auto v2 = laptop.put("reservations", "r-1", v1, {{"party_size", 4}}).version;
        auto r = phone.erase("reservations", "r-1", v1);
        CHECK(r.status == mutation_status::conflict);
        REQUIRE(r.server);
        CHECK(!r.server->deleted);
        CHECK(r.server->version == v2);
        CHECK(r.server->value.at("party_size") == 4);
        CHECK(service.last_version() == v2);
        CHECK(!service.get("alice", "reservations", "r-1")->deleted);
        // Knowing v2, the delete goes through.
        CHECK(phone.erase("reservations", "r-1", v2).status == mutation_status::applied);
        CHECK(service.get("alice", "reservations", "r-1")->deleted);
    }
    SECTION("an update based before a delete") {
        const auto v2 = laptop.erase("reservations", "r-1", v1).version;
        auto r = phone.put("reservations", "r-1", v1, {{"status", "cancelled"}});
        CHECK(r.status == mutation_status::conflict);
        REQUIRE(r.server);
        CHECK(r.server->deleted);
        CHECK(r.server->version == v2);
        CHECK(r.server->value.empty());
        CHECK(service.last_version() == v2);
        CHECK(service.get("alice", "reservations", "r-1")->deleted);
    }
}

// ---------------------------------------------------------------------------------------------
// Scope

TEST_CASE("per-user records are invisible to other users", "[service]") {
    manual_clock clock;
    auto owned = make_service(clock);
    auto& service = *owned;
    device alice{service, "alice", "a-phone"};
    device bob{service, "bob", "b-phone"};
    const auto va = alice.create(reservation("r-1", "confirmed", 2));

    CHECK(pull_all(service, "bob", "reservations").empty());
    CHECK(!service.get("bob", "reservations", "r-1"));
    auto bob_page = parse_pull_response(service.handle_pull("bob", "collection=reservations"));
    CHECK(bob_page.changes.empty());

    // The same id for bob is bob's own record: no conflict with alice's, even from base 0.
    auto rb = bob.put("reservations", "r-1", 0, to_json_object(reservation("r-1", "confirmed", 5)));
    REQUIRE(rb.status == mutation_status::applied);
    const auto vb = rb.version;
    CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 2);
    CHECK(service.get("alice", "reservations", "r-1")->version == va);
    CHECK(service.get("bob", "reservations", "r-1")->value.at("party_size") == 5);

    auto alice_all = pull_all(service, "alice", "reservations");
    REQUIRE(alice_all.size() == 1);
    CHECK(alice_all[0].version == va);
    CHECK(alice_all[0].value.at("party_size") == 2);
    // Alice's feed after her own write shows nothing of bob's.
    CHECK(pull_page(service, "alice", "reservations", va).changes.empty());

    // Bob's delete is his alone; and a client id that happens to be alice's changes nothing.
    const auto gone = bob.erase("reservations", "r-1", vb);
    REQUIRE(gone.status == mutation_status::applied);
    device impostor{service, "bob", "a-phone"};
    impostor.next_id = 100;
    CHECK(impostor.put("reservations", "r-1", gone.version, {{"notes", "bob's"}}).status ==
          mutation_status::applied);
    auto a = service.get("alice", "reservations", "r-1");
    CHECK(!a->deleted);
    CHECK(a->version == va);
    CHECK(a->value.at("notes") == "");
    CHECK(service.get("bob", "reservations", "r-1")->value.at("notes") == "bob's");
    CHECK(pull_all(service, "alice", "reservations").size() == 1);
    CHECK(!service.get("carol", "reservations", "r-1"));
}

TEST_CASE("the shared catalog: clients write only their own favorite", "[service]") {
    seeded s; // alice favorited landmark 1 at v5
    auto& service = s.service;

    SECTION("a favorite is per user") {
        auto a = service.get("alice", "landmarks", "1");
        CHECK(a->value.at("is_favorite") == true);
        CHECK(a->version == 5);
        CHECK(a->value.at("name") == "Half Dome");
        auto b = service.get("bob", "landmarks", "1");
        CHECK(b->value.at("is_favorite") == false);
        CHECK(b->version == 1);

        REQUIRE(s.bob.put("landmarks", 2, 2, {{"is_favorite", true}}).version == 6);
        CHECK(service.get("alice", "landmarks", "2")->value.at("is_favorite") == false);
        CHECK(service.get("bob", "landmarks", "2")->value.at("is_favorite") == true);

        auto alice_all = pull_all(service, "alice", "landmarks");
        REQUIRE(alice_all.size() == 2);
        CHECK(find_change(alice_all, 1)->value.at("is_favorite") == true);
        CHECK(find_change(alice_all, 2)->value.at("is_favorite") == false);
        auto bob_all = pull_all(service, "bob", "landmarks");
        REQUIRE(bob_all.size() == 2);
        CHECK(find_change(bob_all, 1)->value.at("is_favorite") == false);
        CHECK(find_change(bob_all, 2)->value.at("is_favorite") == true);

        // Each feed carries only its own user's favorites.
        auto bob_new = pull_page(service, "bob", "landmarks", 2);
        REQUIRE(bob_new.changes.size() == 1);
        CHECK(bob_new.changes[0].id == 2);
        CHECK(bob_new.changes[0].version == 6);
        auto alice_new = pull_page(service, "alice", "landmarks", 5);
        CHECK(alice_new.changes.empty());
        auto alice_fav = pull_page(service, "alice", "landmarks", 2);
        REQUIRE(alice_fav.changes.size() == 1);
        CHECK(alice_fav.changes[0].id == 1);
    }
    SECTION("a favorite conflicts only between the user's own devices") {
        device laptop{service, "alice", "a-laptop"};
        auto r = laptop.put("landmarks", 1, 1, {{"is_favorite", false}});
        CHECK(r.status == mutation_status::conflict);
        REQUIRE(r.server);
        CHECK(r.server->value.at("is_favorite") == true);
        CHECK(r.server->version == 5);
        // Bob's favorite from the same stale base is no conflict with alice's.
        CHECK(s.bob.put("landmarks", 1, 1, {{"is_favorite", true}}).status ==
              mutation_status::applied);
        // A catalog edit does not conflict with a favorite based before it.
        auto renamed = to_json_object(half_dome());
        renamed["name"] = "Half Dome (Yosemite)";
        REQUIRE(service.admin_put("landmarks", renamed) != 0);
        CHECK(laptop.put("landmarks", 1, 5, {{"is_favorite", false}}).status ==
              mutation_status::applied);
        auto now = service.get("alice", "landmarks", "1");
        CHECK(now->value.at("is_favorite") == false);
        CHECK(now->value.at("name") == "Half Dome (Yosemite)");
        CHECK(service.get("bob", "landmarks", "1")->value.at("is_favorite") == true);
    }
    SECTION("other fields are read-only: rejected, nothing changed") {
        const auto before = snapshot(service);
        auto r = s.alice.put("landmarks", 1, 5, {{"name", "Mine Now"}});
        CHECK(r.status == mutation_status::rejected);
        CHECK(r.error_code == "read_only");
        CHECK_THAT(r.error_message, Contains("'name'"));
        REQUIRE(r.server);
        CHECK(r.server->version == 5);
        // A mixed patch is rejected whole: the favorite part is not applied either.
        auto mixed = s.alice.put("landmarks", 1, 5, {{"is_favorite", false}, {"city", "X"}});
        CHECK(mixed.status == mutation_status::rejected);
        CHECK(mixed.error_code == "read_only");
        CHECK(snapshot(service) == before);
        CHECK(service.get("alice", "landmarks", "1")->value.at("is_favorite") == true);
    }
    SECTION("clients cannot create or delete landmarks") {
        const auto before = snapshot(service);
        auto created = s.alice.put("landmarks", 99, 0, {{"is_favorite", true}});
        CHECK(created.status == mutation_status::rejected);
        CHECK(created.error_code == "not_found");
        auto named = s.alice.put("landmarks", 99, 0, to_json_object(landmark(99, "Mine")));
        CHECK(named.status == mutation_status::rejected);
        CHECK(named.error_code == "read_only");
        auto deleted = s.alice.erase("landmarks", 1, 5);
        CHECK(deleted.status == mutation_status::rejected);
        CHECK(deleted.error_code == "read_only");
        CHECK(snapshot(service) == before);
        CHECK(!service.get("alice", "landmarks", "99"));
        CHECK(!service.get("bob", "landmarks", "1")->deleted);
    }
    SECTION("a favorite on an erased landmark is not found") {
        const auto tomb = service.admin_erase("landmarks", "2");
        REQUIRE(tomb == 6);
        auto r = s.alice.put("landmarks", 2, tomb, {{"is_favorite", true}});
        CHECK(r.status == mutation_status::rejected);
        CHECK(r.error_code == "not_found");
        CHECK(service.last_version() == tomb);
        CHECK(service.get("alice", "landmarks", "2")->deleted);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, and nothing changed

TEST_CASE("a rejected mutation changes nothing and names the problem", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    struct bad_case {
        json::object fields;
        const char* code;
        const char* part;
    };
    const bad_case cases[] = {
        {{{"party_size", "two"}}, "invalid_field", "'party_size'"},
        {{{"party_size", 2.5}}, "invalid_field", "'party_size'"},
        {{{"party_size", 5'000'000'000}}, "invalid_field", "'party_size'"},
        {{{"status", 5}}, "invalid_field", "'status'"},
        {{{"notes", nullptr}}, "invalid_field", "'notes'"},
        {{{"landmark_id", "1"}}, "invalid_field", "'landmark_id'"},
        {{{"date", "tomorrow"}}, "invalid_field", "'date'"},
        {{{"date", "2026-12-24T10:00:00+01:00"}}, "invalid_field", "'date'"},
        // Past 2262-04-11 a system_clock date wrapped around into 1715 before it was refused.
        {{{"date", "2300-01-01T00:00:00Z"}}, "invalid_field", "range of its type"},
        {{{"date", "1600-01-01T00:00:00Z"}}, "invalid_field", "range of its type"},
        {{{"notes", "fine"}, {"colour", "red"}}, "unknown_field", "'colour'"},
        {{{"id", "r-2"}}, "invalid_id", "does not match"},
        {{{"id", 1}}, "invalid_field", "'id'"},
    };
    for (const auto& c : cases) {
        INFO(json::serialize(c.fields));
        auto r = s.alice.put("reservations", "r-1", 3, c.fields);
        CHECK(r.status == mutation_status::rejected);
        CHECK(r.error_code == c.code);
        CHECK_THAT(r.error_message, Contains(c.part));
        REQUIRE(r.server); // the current record, so the client can drop its change
        CHECK(r.server->version == 3);
        CHECK(snapshot(service) == before);
    }
    // Through the wire: a 200 whose result is rejected, with the error object.
    push_request wire{"a-phone", {s.alice.make("reservations", "r-1", 3, {{"party_size", "x"}})}};
    auto response = service.handle_push("alice", body_of(wire));
    CHECK(!response.error);
    auto result = json::parse(response.body).at("results").at(0);
    CHECK(result.at("status") == "rejected");
    CHECK(result.at("error").at("code") == "invalid_field");
    CHECK(snapshot(service) == before);

    SECTION("in a batch, only the bad mutation is rejected") {
        auto bad = s.alice.make("reservations", "r-1", 3, {{"party_size", "x"}});
        auto good = s.alice.make("reservations", "r-1", 3, {{"notes", "ok"}});
        auto results = s.alice.push({bad, good}).results;
        CHECK(results[0].status == mutation_status::rejected);
        CHECK(results[1].status == mutation_status::applied);
        auto now = service.get("alice", "reservations", "r-1");
        CHECK(now->value.at("party_size") == 2);
        CHECK(now->value.at("notes") == "ok");
    }
}

TEST_CASE("a base version from the future is rejected and skips no conflict check",
          "[service][bad-input]") {
    seeded s;
    auto& service = s.service;
    const auto last = service.last_version();
    const auto before = snapshot(service);
    // An existing record: before the check, a base above every version passed the conflict
    // check and overwrote whatever was written since.
    auto r = s.alice.put("reservations", "r-1", last + 1, {{"notes", "from the future"}});
    CHECK(r.status == mutation_status::rejected);
    CHECK(r.error_code == "invalid_field");
    CHECK_THAT(r.error_message, Contains("reservations/r-1") && Contains("base_version") &&
                                    Contains("above every version"));
    CHECK_FALSE(r.server);
    // A new record with a base it cannot have, and a delete: refused alike.
    auto fresh = s.alice.put("reservations", "r-new", 1'000'000, to_json_object(reservation("r-new")));
    CHECK(fresh.status == mutation_status::rejected);
    auto erase = s.alice.push({s.alice.make_delete("reservations", "r-1", 1'000'000)}).results.at(0);
    CHECK(erase.status == mutation_status::rejected);
    CHECK(snapshot(service) == before);
    CHECK(service.last_version() == last);
    // The newest version itself is a fine base.
    const auto current = service.get("alice", "reservations", "r-1")->version;
    CHECK(current <= last);
    CHECK(s.alice.put("reservations", "r-1", current, {{"notes", "now"}}).status ==
          mutation_status::applied);
}

TEST_CASE("a request-level error rejects the whole push and changes nothing", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    // A valid mutation first: it must not be applied when a later one breaks the request.
    auto valid = [&] {
        return s.alice.make("reservations", "r-2", 0, to_json_object(reservation("r-2")));
    };

    SECTION("unknown collection") {
        push_request req{"a-phone", {valid(), s.alice.make("nope", "x", 0, json::object{})}};
        push_response resp;
        auto d = service.push("alice", req, resp);
        CHECK(d.code == errc::unknown_collection);
        CHECK_THAT(d.message, Contains("mutations[1]"));
        CHECK_THAT(d.message, Contains("'nope'"));
        check_error(service.handle_push("alice", body_of(req)), 404, errc::unknown_collection,
                    "'nope'");
        check_error(service.handle_pull("alice", "collection=nope"), 404, errc::unknown_collection,
                    "'nope'");
        pull_response page;
        CHECK(service.pull("alice", {"nope", 0, 10}, page).code == errc::unknown_collection);
    }
    SECTION("bad ids") {
        const json::value bad_ids[] = {json::value(""),  json::value(std::string(257, 'x')),
                                       json::value(7),   json::value(nullptr),
                                       json::value(1.5), json::value(json::array{"r-2"})};
        for (const auto& id : bad_ids) {
            INFO(json::serialize(id));
            push_request req{"a-phone",
                             {valid(), s.alice.make("reservations", id, 0, {{"notes", "x"}})}};
            push_response resp;
            auto d = service.push("alice", req, resp);
            CHECK(d.code == errc::invalid_id);
            CHECK_THAT(d.message, Contains("mutations[1]"));
            check_error(service.handle_push("alice", body_of(req)), 400, errc::invalid_id);
        }
        // Landmark ids are integers.
        push_request req{"a-phone",
                         {valid(), s.alice.make("landmarks", "1", 1, {{"is_favorite", false}})}};
        check_error(service.handle_push("alice", body_of(req)), 400, errc::invalid_id);
        push_request erase{"a-phone", {s.alice.make_delete("landmarks", "1", 1)}};
        check_error(service.handle_push("alice", body_of(erase)), 400, errc::invalid_id);
    }
    SECTION("a missing id") {
        auto body = json::parse(body_of({"a-phone", {valid(), valid()}}));
        body.at("mutations").at(1).as_object().erase("id");
        check_error(service.handle_push("alice", json::serialize(body)), 400, errc::invalid_id,
                    "mutations[1]: missing 'id'");
    }
    SECTION("malformed JSON") {
        for (std::string body : {std::string(""), std::string("{"), std::string("nul"),
                                 std::string(R"({"client_id": "c", "mutations": [})"),
                                 std::string("\xFF\xFE"), body_of({"a-phone", {valid()}}) + "x"}) {
            INFO(body);
            check_error(service.handle_push("alice", body), 400, errc::malformed_json, "not JSON");
        }
    }
    SECTION("JSON of the wrong shape") {
        auto good = json::parse(body_of({"a-phone", {valid()}})).as_object();
        auto with = [&](std::string_view path, std::optional<json::value> v) {
            auto o = good;
            auto& target = path.substr(0, 2) == "m." ? o["mutations"].as_array()[0].as_object() : o;
            auto key = path.substr(0, 2) == "m." ? path.substr(2) : path;
            if (v)
                target[key] = *v;
            else
                target.erase(key);
            return json::serialize(o);
        };
        struct bad_case {
            std::string body;
            errc code;
            const char* part;
        };
        const bad_case cases[] = {
            {"[]", errc::malformed_json, "object"},
            {"42", errc::malformed_json, "object"},
            {"\"push\"", errc::malformed_json, "object"},
            {"{}", errc::malformed_json, "'client_id'"},
            {with("mutations", std::nullopt), errc::malformed_json, "'mutations'"},
            {with("mutations", json::object{}), errc::malformed_json, "'mutations'"},
            {with("client_id", 5), errc::malformed_json, "'client_id'"},
            {with("client_id", ""), errc::invalid_field, "'client_id'"},
            {with("m.op", "patch"), errc::malformed_json, "'op'"},
            {with("m.stamp", "yesterday"), errc::malformed_json, "'stamp'"},
            {with("m.mutation_id", -1), errc::malformed_json, "'mutation_id'"},
            {with("m.base_version", 9007199254740992), errc::malformed_json, "'base_version'"},
            {with("m.fields", json::array{}), errc::malformed_json, "'fields'"},
            {with("m.collection", nullptr), errc::malformed_json, "'collection'"},
        };
        for (const auto& c : cases) {
            INFO(c.body);
            check_error(service.handle_push("alice", c.body), 400, c.code, c.part);
        }
        // The typed entry point checks the client id too.
        push_request anonymous{"", {valid()}};
        push_response resp;
        CHECK(service.push("alice", anonymous, resp).code == errc::invalid_field);
    }
    CHECK(snapshot(service) == before);
    CHECK(!service.get("alice", "reservations", "r-2"));
}

TEST_CASE("oversized batches and bodies are refused whole", "[service]") {
    server::service_config config;
    config.max_mutations_per_push = 3;
    config.max_body_bytes = 2000;
    seeded s(config);
    auto& service = s.service;
    const auto before = snapshot(service);
    auto batch = [&](int n) {
        std::vector<mutation> ms;
        for (int i = 0; i < n; ++i) {
            auto r = reservation("n-" + std::to_string(i));
            ms.push_back(s.alice.make("reservations", json::value(r.id), 0, to_json_object(r)));
        }
        return push_request{"a-phone", ms};
    };

    SECTION("more mutations than the server accepts") {
        auto four = batch(4);
        push_response resp;
        auto d = service.push("alice", four, resp);
        CHECK(d.code == errc::batch_too_large);
        CHECK_THAT(d.message, Contains("at most 3"));
        check_error(service.handle_push("alice", body_of(four)), 413, errc::batch_too_large);
        CHECK(snapshot(service) == before);
        // The limit itself is fine.
        auto three = parse_push_response(service.handle_push("alice", body_of(batch(3))));
        CHECK(three.results.size() == 3);
        CHECK(service.last_version() == 8);
    }
    SECTION("a body above max_body_bytes, even if it is not JSON") {
        auto big = batch(1);
        big.mutations[0].fields["notes"] = std::string(2000, 'n');
        check_error(service.handle_push("alice", body_of(big)), 413, errc::batch_too_large,
                    "2000 bytes");
        check_error(service.handle_push("alice", std::string(2001, '{')), 413,
                    errc::batch_too_large);
        CHECK(snapshot(service) == before);
        // Exactly at the limit is accepted.
        auto fits = batch(1);
        fits.mutations[0].fields["notes"] = "";
        const auto base = body_of(fits).size();
        fits.mutations[0].fields["notes"] = std::string(2000 - base, 'n');
        REQUIRE(body_of(fits).size() == 2000);
        auto ok = parse_push_response(service.handle_push("alice", body_of(fits)));
        CHECK(ok.results.at(0).status == mutation_status::applied);
    }
}

TEST_CASE("pull errors: a cursor from the future, limits out of range", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    const auto last = service.last_version();
    REQUIRE(last == 5);

    SECTION("a cursor ahead of the server is cursor_ahead, HTTP 400") {
        pull_response page;
        auto d = service.pull("alice", {"reservations", last + 1, 10}, page);
        CHECK(d.code == errc::cursor_ahead);
        CHECK_THAT(d.message, Contains("re-sync"));
        check_error(service.handle_pull("alice", "collection=reservations&since=6"), 400,
                    errc::cursor_ahead);
        check_error(service.handle_pull("bob", "collection=landmarks&since=1000000"), 400,
                    errc::cursor_ahead);
        // At the last version: an empty page.
        auto at_last =
            parse_pull_response(service.handle_pull("alice", "collection=reservations&since=5"));
        CHECK(at_last.changes.empty());
        CHECK(at_last.cursor == 5);
    }
    SECTION("bad query parameters") {
        struct bad_case {
            const char* query;
            unsigned status;
            errc code;
        };
        const bad_case cases[] = {
            {"collection=reservations&limit=0", 400, errc::invalid_field},
            {"collection=reservations&limit=5001", 400, errc::invalid_field},
            {"collection=reservations&limit=-1", 400, errc::invalid_field},
            {"collection=reservations&limit=many", 400, errc::invalid_field},
            {"collection=reservations&since=-1", 400, errc::invalid_field},
            {"collection=reservations&since=x", 400, errc::invalid_field},
            {"collection=reservations&since=9007199254740992", 400, errc::invalid_field},
            {"since=0", 404, errc::unknown_collection},
            {"", 404, errc::unknown_collection},
            {"collection=reserv%ZZations", 404, errc::unknown_collection},
        };
        for (const auto& c : cases) {
            INFO(c.query);
            check_error(service.handle_pull("alice", c.query), c.status, c.code);
        }
        auto ok =
            parse_pull_response(service.handle_pull("alice", "collection=reservations&limit=5000"));
        CHECK(ok.changes.size() == 1);
    }
    CHECK(snapshot(service) == before);
}

// ---------------------------------------------------------------------------------------------
// Status codes and error bodies

TEST_CASE("http_status maps every error to a fitting status", "[service]") {
        struct row {
        errc code;
        unsigned status;
    };
    const row rows[] = {
        {errc::malformed_json, 400},     {errc::invalid_field, 400},
        {errc::unknown_field, 400},      {errc::invalid_id, 400},
        {errc::cursor_ahead, 400},       {errc::unauthorized, 401},
        {errc::read_only, 403},          {errc::forbidden, 403},
        {errc::unknown_collection, 404}, {errc::not_found, 404},
        {errc::version_conflict, 409},   {errc::batch_too_large, 413},
        {errc::storage_failure, 500},    {errc::transport_failure, 500},
        {errc::bad_response, 500},       {errc::server_error, 500},
        {errc::no_such_conflict, 500},   {errc::not_parked, 500},
    };
    for (const auto& r : rows) {
        INFO(to_string(r.code));
        CHECK(http_status(make_error_code(r.code)) == r.status);
    }
    // Errors of other categories are the server's fault.
    CHECK(http_status(boost::system::errc::make_error_code(boost::system::errc::io_error)) == 500);
    CHECK(http_status(error_code(400, boost::system::generic_category())) == 500);
}

TEST_CASE("successful wire answers are protocol v1 JSON", "[service]") {
    seeded s;
    auto& service = s.service;
    auto pull = service.handle_pull("alice", "collection=landmarks&since=0&limit=10");
    CHECK(!pull.error);
    auto page = json::parse(pull.body).as_object();
    CHECK(page.size() == 3);
    CHECK(page.at("changes").as_array().size() == 2);
    CHECK(page.at("cursor") == 5);
    CHECK(page.at("has_more") == false);
    const auto& first = page.at("changes").at(0).as_object();
    for (const char* member : {"id", "version", "deleted", "stamp", "value"})
        CHECK(first.contains(member));
    CHECK(first.at("id").is_int64()); // landmark ids travel as integers
    CHECK(first.at("stamp").at("wall").is_number());

    push_request req{"a-phone", {s.alice.make("reservations", "r-1", 3, {{"notes", "n"}})}};
    auto push = service.handle_push("alice", body_of(req));
    CHECK(!push.error);
    CHECK(json::parse(push.body) == json::parse(R"({"results": [{"mutation_id": )" +
                                                std::to_string(req.mutations[0].mutation_id) +
                                                R"(, "status": "applied", "version": 6}], )"
                                                R"("own_writes": {"collection": "reservations", )"
                                                R"("after": 0, "through": 6}})"));
}

// ---------------------------------------------------------------------------------------------
// Server-side writes

TEST_CASE("admin_put validates what it writes", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    struct bad_case {
        const char* collection;
        json::object value;
        errc code;
    };
    const bad_case cases[] = {
        {"nope", to_json_object(half_dome()), errc::unknown_collection},
        {"landmarks", {{"name", "No id"}}, errc::invalid_id},
        {"landmarks", {{"id", "1"}, {"name", "String id"}}, errc::invalid_id},
        {"landmarks", {{"id", 1.5}}, errc::invalid_id},
        {"landmarks", {{"id", 3}, {"latitude", "north"}}, errc::invalid_field},
        {"landmarks", {{"id", 3}, {"height", 8839}}, errc::unknown_field},
        {"reservations", {{"id", ""}}, errc::invalid_id},
        {"reservations", {{"id", "r-9"}, {"date", "2026-02-30T00:00:00Z"}}, errc::invalid_field},
    };
    for (const auto& c : cases) {
        INFO(c.collection << " " << json::serialize(c.value));
        diagnostics error;
        CHECK(service.admin_put(c.collection, c.value, "alice", &error) == 0);
        CHECK(error.code == c.code);
        CHECK(!error.message.empty());
        // Without an error sink, it still fails cleanly.
        CHECK(service.admin_put(c.collection, c.value) == 0);
    }
    CHECK(snapshot(service) == before);

    SECTION("a valid put gets the next version; per-user fields are not the server's") {
        auto l = landmark(3, "Yosemite Falls");
        l.is_favorite = true;
        diagnostics error;
        CHECK(service.admin_put("landmarks", to_json_object(l), {}, &error) == 6);
        CHECK(!error);
        CHECK(service.last_version() == 6);
        auto seen = service.get("bob", "landmarks", "3");
        REQUIRE(seen);
        CHECK(seen->value.at("name") == "Yosemite Falls");
        CHECK(seen->value.at("is_favorite") == false);
        CHECK(service.get("alice", "landmarks", "3")->value.at("is_favorite") == false);
    }
    SECTION("a per-user put belongs to its owner") {
        CHECK(service.admin_put("reservations", to_json_object(reservation("r-admin")), "bob") ==
              6);
        CHECK(service.get("bob", "reservations", "r-admin"));
        CHECK(!service.get("alice", "reservations", "r-admin"));
    }
    SECTION("admin_erase leaves a tombstone once") {
        CHECK(service.admin_erase("landmarks", "2") == 6);
        CHECK(service.get("bob", "landmarks", "2")->deleted);
        CHECK(service.admin_erase("landmarks", "2") == 0);
        CHECK(service.admin_erase("landmarks", "404") == 0);
        CHECK(service.admin_erase("nope", "1") == 0);
        CHECK(service.admin_erase("reservations", "r-1", "carol") == 0);
        CHECK(service.last_version() == 6);
        CHECK(service.admin_erase("reservations", "r-1", "bob") == 7);
        CHECK(service.get("bob", "reservations", "r-1")->deleted);
        CHECK(!service.get("alice", "reservations", "r-1")->deleted);
    }
}

TEST_CASE("a request without a user is unauthorized and changes nothing", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    push_request req{"a-phone", {s.alice.make("reservations", "r-1", 3, {{"notes", "anon"}})}};
    push_response resp;
    CHECK(service.push("", req, resp).code == errc::unauthorized);
    check_error(service.handle_push("", body_of(req)), 401, errc::unauthorized);
    pull_response page;
    CHECK(service.pull("", {"landmarks", 0, 10}, page).code == errc::unauthorized);
    check_error(service.handle_pull("", "collection=landmarks"), 401, errc::unauthorized);
    // In particular the shared record's favorite, which lives under no user, stays untouched.
    push_request fav{"a-phone", {s.alice.make("landmarks", 1, 1, {{"is_favorite", true}})}};
    CHECK(service.push("", fav, resp).code == errc::unauthorized);
    CHECK(service.get("bob", "landmarks", "1")->value.at("is_favorite") == false);
    CHECK(snapshot(service) == before);
}

TEST_CASE("an upsert with no fields writes nothing", "[service]") {
    seeded s;
    auto& service = s.service;
    const auto before = snapshot(service);
    SECTION("on a per-user record") {
        auto r = s.alice.put("reservations", "r-1", 3, json::object{});
        CHECK(r.status == mutation_status::applied);
        CHECK(r.version == 3);
    }
    SECTION("on a shared record") {
        auto r = s.bob.put("landmarks", 2, 2, json::object{});
        CHECK(r.status == mutation_status::applied);
        CHECK(r.version == 2);
        // Alice's view of landmark 1 is at her favorite's version.
        auto a = s.alice.put("landmarks", 1, 5, json::object{});
        CHECK(a.status == mutation_status::applied);
        CHECK(a.version == 5);
    }
    CHECK(snapshot(service) == before);
}
