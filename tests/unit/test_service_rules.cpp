// The sync service's decisions, without a service: what one pushed mutation does
// (server/conflict_check.hpp), how two feed pages merge (server/change_feed.hpp), remembered
// results (server/idempotency.hpp), a record as a user sees it (server/record_view.hpp) and the
// REST API's rules (server/rest_rules.hpp).
#include <offsync/server/change_feed.hpp>
#include <offsync/server/conflict_check.hpp>
#include <offsync/server/idempotency.hpp>
#include <offsync/server/record_view.hpp>
#include <offsync/server/rest_rules.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace offsync;
using namespace offsync::server;
using namespace offsync::server::detail;

namespace {

/// A collection of three fields, by hand: "id" (the key), "name" (a string) and "stars" (an
/// integer).
collection_schema schema_of(scope sc = scope::per_user, bool client_writable = true,
                            std::uint64_t per_user_mask = 0) {
    collection_schema s;
    s.name = "places";
    s.fields = {"id", "name", "stars"};
    s.key_field = "id";
    s.key = key_kind::string;
    s.scope = sc;
    s.client_writable = client_writable;
    s.per_user_mask = per_user_mask;
    s.defaults = {{"id", ""}, {"name", ""}, {"stars", 0}};
    s.check_field = [](std::size_t i, const boost::json::value& v) -> diagnostics {
        const bool ok = i == 2 ? v.is_int64() : v.is_string();
        if (ok) return {};
        return {make_error_code(errc::invalid_field), "wrong type"};
    };
    return s;
}

constexpr std::uint64_t name_bit = 1u << 1, stars_bit = 1u << 2;

/// A stored record whose fields were written at `versions` by `writers`.
server_record stored(std::string key, std::vector<field_stamp> fields, bool deleted = false) {
    server_record r;
    r.key = std::move(key);
    r.deleted = deleted;
    for (const auto& f : fields) {
        if (f.version > r.version) {
            r.version = f.version;
            r.last_writer = f.writer;
        }
    }
    if (!deleted) {
        r.value = {{"id", r.key}, {"name", "Dome"}, {"stars", 4}};
        r.fields = std::move(fields);
    }
    return r;
}

server_record tombstone_at(std::string key, std::uint64_t version, std::string writer) {
    server_record r;
    r.key = std::move(key);
    r.deleted = true;
    r.version = version;
    r.last_writer = std::move(writer);
    return r;
}

mutation upsert(boost::json::object fields, std::uint64_t base_version = 0) {
    mutation m;
    m.collection = "places";
    m.id = "p1";
    m.op = mutation_op::upsert;
    m.fields = std::move(fields);
    m.base_version = base_version;
    return m;
}

mutation removal(std::uint64_t base_version) {
    mutation m;
    m.collection = "places";
    m.id = "p1";
    m.op = mutation_op::remove;
    m.base_version = base_version;
    return m;
}

} // namespace

TEST_CASE("check_upsert: fields, types, key and rights", "[service-rules]") {
    const auto s = schema_of();
    std::uint64_t written = 99;
    SECTION("known fields of the right types: the mask of what it writes") {
        CHECK_FALSE(check_upsert(s, "p1", {{"name", "Dome"}, {"stars", 5}}, written));
        CHECK(written == (name_bit | stars_bit));
        CHECK_FALSE(check_upsert(s, "p1", {}, written));
        CHECK(written == 0);
    }
    SECTION("an unknown field") {
        const auto d = check_upsert(s, "p1", {{"colour", "red"}}, written);
        CHECK(d.code == errc::unknown_field);
        CHECK(d.message.find("colour") != std::string::npos);
    }
    SECTION("a field of the wrong type") {
        CHECK(check_upsert(s, "p1", {{"stars", "five"}}, written).code == errc::invalid_field);
    }
    SECTION("a key field that names another record") {
        CHECK(check_upsert(s, "p1", {{"id", "p2"}}, written).code == errc::invalid_id);
        CHECK_FALSE(check_upsert(s, "p1", {{"id", "p1"}}, written));
    }
    SECTION("a shared catalog: only its per-user fields are the client's to write") {
        const auto catalog = schema_of(scope::shared, false, stars_bit);
        const auto d = check_upsert(catalog, "p1", {{"name", "Mine"}}, written);
        CHECK(d.code == errc::read_only);
        CHECK(d.message.find("'name'") != std::string::npos);
        CHECK_FALSE(check_upsert(catalog, "p1", {{"stars", 1}}, written));
        CHECK(written == stars_bit);
    }
}

TEST_CASE("may_insert_unread: only new records whose rules need no lookup", "[service-rules]") {
    const auto s = schema_of();
    CHECK(may_insert_unread(s, upsert({{"name", "x"}}), name_bit));
    CHECK_FALSE(may_insert_unread(s, upsert({{"name", "x"}}, 3), name_bit)); // not new
    CHECK_FALSE(may_insert_unread(s, upsert({}), 0));                       // writes nothing
    CHECK_FALSE(may_insert_unread(s, removal(0), 0));
    CHECK(may_insert_unread(schema_of(scope::shared, true), upsert({{"name", "x"}}), name_bit));
    CHECK_FALSE(
        may_insert_unread(schema_of(scope::shared, false), upsert({{"name", "x"}}), name_bit));
    CHECK_FALSE(may_insert_unread(schema_of(scope::shared, true, stars_bit),
                                  upsert({{"name", "x"}}), name_bit));
}

TEST_CASE("conflicts: a field written since the base by another writer", "[service-rules]") {
    const auto s = schema_of();
    // Field 1 (name) written by the phone at 5, field 2 (stars) by the laptop at 7.
    const auto rec = stored("p1", {{1, "phone"}, {5, "phone"}, {7, "laptop"}});
    SECTION("no record: nothing to conflict with") {
        CHECK_FALSE(conflicts(s, upsert({{"name", "x"}}, 3), name_bit, nullptr, nullptr, "phone"));
    }
    SECTION("edits to different fields merge") {
        CHECK_FALSE(conflicts(s, upsert({{"name", "x"}}, 5), name_bit, &rec, nullptr, "phone"));
        CHECK(conflicts(s, upsert({{"stars", 1}}, 5), stars_bit, &rec, nullptr, "phone"));
    }
    SECTION("a writer's own later write is never a conflict with itself") {
        CHECK_FALSE(conflicts(s, upsert({{"name", "x"}}, 1), name_bit, &rec, nullptr, "phone"));
        CHECK(conflicts(s, upsert({{"name", "x"}}, 1), name_bit, &rec, nullptr, "laptop"));
    }
    SECTION("a base at or after the write is no conflict") {
        CHECK_FALSE(conflicts(s, upsert({{"stars", 1}}, 7), stars_bit, &rec, nullptr, "phone"));
    }
    SECTION("a delete conflicts with a newer write to any field") {
        CHECK(conflicts(s, removal(5), 0, &rec, nullptr, "phone"));
        CHECK_FALSE(conflicts(s, removal(7), 0, &rec, nullptr, "phone"));
    }
    SECTION("over a tombstone: an upsert conflicts with a newer delete, a delete never") {
        const auto gone = tombstone_at("p1", 9, "laptop");
        CHECK(conflicts(s, upsert({{"name", "x"}}, 7), name_bit, &gone, nullptr, "phone"));
        CHECK_FALSE(conflicts(s, upsert({{"name", "x"}}, 9), name_bit, &gone, nullptr, "phone"));
        CHECK_FALSE(conflicts(s, upsert({{"name", "x"}}, 7), name_bit, &gone, nullptr, "laptop"));
        CHECK_FALSE(conflicts(s, removal(7), 0, &gone, nullptr, "phone"));
    }
    SECTION("a per-user field of a shared record is checked in the user's own record") {
        const auto shared = schema_of(scope::shared, false, stars_bit);
        const auto own = stored("p1", {{0, ""}, {0, ""}, {8, "tablet"}});
        CHECK(conflicts(shared, upsert({{"stars", 1}}, 7), stars_bit, &rec, &own, "phone"));
        CHECK_FALSE(conflicts(shared, upsert({{"stars", 1}}, 8), stars_bit, &rec, &own, "phone"));
        // No own values yet: the shared record's stamp of the field does not count.
        CHECK_FALSE(
            conflicts(shared, upsert({{"stars", 1}}, 0), stars_bit, &rec, nullptr, "phone"));
    }
}

TEST_CASE("check_mutation: every verdict", "[service-rules]") {
    const auto s = schema_of();
    const auto rec = stored("p1", {{1, "phone"}, {5, "phone"}, {7, "laptop"}});
    const diagnostics valid;
    auto verdict_of = [](const mutation_check& c) { return c.verdict; };
    SECTION("an invalid upsert is refused with its own reason, showing the record") {
        const diagnostics invalid{make_error_code(errc::unknown_field), "unknown field 'x'"};
        const auto c = check_mutation(s, "p1", upsert({{"x", 1}}), 0, invalid, &rec, nullptr, "a");
        CHECK(c.verdict == mutation_verdict::refuse);
        CHECK(c.refusal.code == errc::unknown_field);
        CHECK(c.refusal_shows_record);
    }
    SECTION("a shared catalog: no deletes, no records made up by clients") {
        const auto catalog = schema_of(scope::shared, false, stars_bit);
        auto c = check_mutation(catalog, "p1", removal(7), 0, valid, &rec, nullptr, "a");
        CHECK(c.verdict == mutation_verdict::refuse);
        CHECK(c.refusal.code == errc::read_only);
        CHECK(c.refusal_shows_record);
        c = check_mutation(catalog, "p9", upsert({{"stars", 1}}), stars_bit, valid, nullptr,
                           nullptr, "a");
        CHECK(c.verdict == mutation_verdict::refuse);
        CHECK(c.refusal.code == errc::not_found);
        CHECK(c.refusal.message == "places/p9 does not exist");
        CHECK_FALSE(c.refusal_shows_record);
        const auto gone = tombstone_at("p1", 9, "server");
        c = check_mutation(catalog, "p1", upsert({{"stars", 1}}, 9), stars_bit, valid, &gone,
                           nullptr, "a");
        CHECK(c.refusal.code == errc::not_found);
    }
    SECTION("a conflict") {
        CHECK(verdict_of(check_mutation(s, "p1", upsert({{"stars", 1}}, 5), stars_bit, valid,
                                        &rec, nullptr, "phone")) == mutation_verdict::conflict);
        CHECK(verdict_of(check_mutation(s, "p1", removal(5), 0, valid, &rec, nullptr,
                                        "phone")) == mutation_verdict::conflict);
    }
    SECTION("a delete, of a live record or of none") {
        CHECK(verdict_of(check_mutation(s, "p1", removal(7), 0, valid, &rec, nullptr, "a")) ==
              mutation_verdict::remove);
        CHECK(verdict_of(check_mutation(s, "p1", removal(0), 0, valid, nullptr, nullptr, "a")) ==
              mutation_verdict::remove);
    }
    SECTION("an upsert that writes no field of a live record changes nothing") {
        CHECK(verdict_of(check_mutation(s, "p1", upsert({}, 7), 0, valid, &rec, nullptr, "a")) ==
              mutation_verdict::unchanged);
        // Of no record, or of a tombstone: it makes the record, with the defaults.
        CHECK(verdict_of(check_mutation(s, "p1", upsert({}), 0, valid, nullptr, nullptr, "a")) ==
              mutation_verdict::write);
        const auto gone = tombstone_at("p1", 9, "a");
        CHECK(verdict_of(check_mutation(s, "p1", upsert({}, 9), 0, valid, &gone, nullptr, "a")) ==
              mutation_verdict::write);
    }
    SECTION("an upsert to write") {
        CHECK(verdict_of(check_mutation(s, "p1", upsert({{"name", "x"}}, 5), name_bit, valid,
                                        &rec, nullptr, "phone")) == mutation_verdict::write);
    }
}

TEST_CASE("feed_merge: two pages in version order, within the limit", "[service-rules]") {
    auto page = [](std::vector<std::pair<std::string, std::uint64_t>> rows) {
        std::vector<server_record> out;
        for (auto& [key, version] : rows) {
            server_record r;
            r.key = key;
            r.version = version;
            out.push_back(std::move(r));
        }
        return out;
    };
    auto walk = [](feed_merge& merge) {
        std::vector<std::string> seen;
        while (auto step = merge.next())
            seen.push_back(step->record.key + (step->second ? "'" : ""));
        return seen;
    };
    SECTION("interleaved, ties to the second page, the same key from both") {
        auto shared = page({{"a", 1}, {"b", 4}, {"c", 6}});
        auto own = page({{"b", 2}, {"d", 4}});
        feed_merge merge(shared, own, 10);
        CHECK(walk(merge) == std::vector<std::string>{"a", "b'", "d'", "b", "c"});
        CHECK_FALSE(merge.has_more());
    }
    SECTION("the limit ends the page and says more follow") {
        auto shared = page({{"a", 1}, {"b", 3}});
        auto own = page({{"x", 2}});
        feed_merge merge(shared, own, 2);
        CHECK(walk(merge) == std::vector<std::string>{"a", "x'"});
        CHECK(merge.has_more());
        CHECK_FALSE(merge.next()); // stays ended
    }
    SECTION("one page empty, or both") {
        auto shared = page({{"a", 1}, {"b", 2}});
        std::vector<server_record> none;
        feed_merge merge(shared, none, 5);
        CHECK(walk(merge) == std::vector<std::string>{"a", "b"});
        std::vector<server_record> empty1, empty2;
        feed_merge nothing(empty1, empty2, 5);
        CHECK_FALSE(nothing.next());
        CHECK_FALSE(nothing.has_more());
    }
}

TEST_CASE("remembered_results: a retried mutation is answered as the first time",
          "[service-rules]") {
    memory_server_store store;
    auto result = [](std::uint64_t id, std::uint64_t version) {
        mutation_result r;
        r.mutation_id = id;
        r.version = version;
        return r;
    };
    store.begin();
    {
        remembered_results phone(store, "alice\nphone");
        CHECK_FALSE(phone.recall(1));
        phone.remember(result(1, 10));
        phone.remember(result(2, 11));
        // Within the same push, a repeated id is found.
        REQUIRE(phone.recall(2));
        CHECK(phone.recall(2)->version == 11);
        CHECK_FALSE(phone.recall(3));
        // Another client of the same user, and the same client id of another user, share none.
        remembered_results laptop(store, "alice\nlaptop");
        CHECK_FALSE(laptop.recall(1));
        remembered_results impostor(store, "bob\nphone");
        CHECK_FALSE(impostor.recall(1));
    }
    store.commit();
    store.begin();
    {
        remembered_results phone(store, "alice\nphone");
        REQUIRE(phone.recall(1));
        CHECK(phone.recall(1)->version == 10);
        for (std::uint64_t id = 3; id <= 6; ++id) phone.remember(result(id, 9 + id));
        phone.keep_newest(3);
        CHECK_FALSE(phone.recall(1)); // forgotten: beyond the window
        CHECK_FALSE(phone.recall(3));
        for (std::uint64_t id = 4; id <= 6; ++id) CHECK(phone.recall(id));
    }
    store.commit();
}

TEST_CASE("record views: overlays, tombstones, echoes and unseen writes", "[service-rules]") {
    const auto catalog = schema_of(scope::shared, false, stars_bit);
    auto base = stored("p1", {{1, "server"}, {3, "server"}, {3, "server"}});
    SECTION("no record, no view") { CHECK_FALSE(view_of(catalog, nullptr, nullptr)); }
    SECTION("the user's own values over the shared record, else the defaults") {
        auto mine = view_of(catalog, &base, nullptr);
        REQUIRE(mine);
        CHECK(mine->value.at("stars") == 0); // the default, not the shared record's 4
        CHECK(mine->value.at("name") == "Dome");
        CHECK(mine->version == 3);
        auto own = stored("p1", {{0, ""}, {0, ""}, {8, "phone"}});
        own.value = {{"stars", 5}};
        mine = view_of(catalog, &base, &own);
        CHECK(mine->value.at("stars") == 5);
        CHECK(mine->version == 8); // the newer of the two
    }
    SECTION("a tombstone has no value") {
        const auto gone = tombstone_at("p1", 9, "server");
        auto v = view_of(catalog, &gone, nullptr);
        REQUIRE(v);
        CHECK(v->deleted);
        CHECK(v->value.empty());
        CHECK(v->version == 9);
    }
    SECTION("an echo tells the version, never the value") {
        const auto echo = echo_of(catalog, base);
        CHECK(echo.echo);
        CHECK(echo.value.empty());
        CHECK(echo.version == 3);
        CHECK(echo.id == "p1");
    }
    SECTION("unseen writes: only another writer's fields newer than the base") {
        const auto s = schema_of();
        const auto rec = stored("p1", {{1, "phone"}, {5, "phone"}, {7, "laptop"}});
        CHECK_FALSE(unseen_writes(s, rec, 7, "phone"));
        CHECK(unseen_writes(s, rec, 1, "laptop"));
        CHECK_FALSE(unseen_writes(s, stored("p1", {{1, "phone"}, {5, "phone"}}), 1, "phone"));
        auto seen = unseen_writes(s, rec, 5, "phone");
        REQUIRE(seen);
        CHECK(seen->value.at("stars") == 4);
    }
}

TEST_CASE("REST rules: ids in paths, refusals and conflicts", "[service-rules]") {
    auto numbered = schema_of();
    numbered.key = key_kind::integer;
    std::string key;
    SECTION("a string id is the key as it is") {
        CHECK_FALSE(key_from_text(schema_of(), "Half Dome/1", key));
        CHECK(key == "Half Dome/1");
        CHECK(key_from_text(schema_of(), "", key).code == errc::invalid_id);
    }
    SECTION("an integer id: decimal digits, nothing else") {
        CHECK_FALSE(key_from_text(numbered, "42", key));
        CHECK(key == "42");
        CHECK_FALSE(key_from_text(numbered, "-7", key));
        CHECK(key == "-7");
        for (const char* bad : {"", "+7", "007", "4x", " 4", "1e3", "99999999999999999999"}) {
            INFO(bad);
            CHECK(key_from_text(numbered, bad, key).code == errc::invalid_id);
        }
    }
    SECTION("a refused write keeps the code the push path gave it") {
        mutation_result r;
        r.status = mutation_status::rejected;
        r.error_code = "read_only";
        r.error_message = "field 'name' of places is read-only to clients";
        CHECK(refusal_of(r).code == errc::read_only);
        CHECK(refusal_of(r).message == r.error_message);
        r.error_code = "no_such_code";
        CHECK(refusal_of(r).code == errc::invalid_field);
        r.error_code = "ok";
        CHECK(refusal_of(r).code == errc::invalid_field);
    }
    SECTION("a conflict names the record and both versions") {
        const auto d = conflict_of(schema_of(), "p1", 3, 8);
        CHECK(d.code == errc::version_conflict);
        CHECK(d.message == "places/p1 was written since version 3; it is now at version 8");
    }
}
