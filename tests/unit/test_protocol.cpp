// Wire protocol v1: message round trips, strict decoding, the pull query, error bodies.
#include "../support/models.hpp"

#include <offsync/protocol.hpp>

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using namespace offsync;
using namespace offsync_test;
namespace json = boost::json;
using Catch::Contains;

namespace {

/// Encodes to text and back, as the message travels.
template <class T>
T through_wire(const T& in) {
    auto text = json::serialize(to_json(in));
    T out;
    auto d = from_json(json::parse(text), out);
    INFO(text << " -> " << d.message);
    REQUIRE(!d);
    return out;
}

template <class T>
diagnostics decode(std::string_view text, T& out) {
    return from_json(json::parse(text), out);
}

hlc_stamp stamp(std::int64_t wall, std::uint32_t logical = 0, std::string node = "c-1") {
    return hlc_stamp{wall, logical, std::move(node)};
}

change sample_change() {
    change c;
    c.id = "r-1";
    c.version = 42;
    c.deleted = false;
    c.stamp = stamp(1'764'000'000'123, 2, "phone");
    c.value = to_json_object(reservation("r-1", "cancelled", 3));
    return c;
}

void check_same(const change& a, const change& b) {
    CHECK(a.id == b.id);
    CHECK(a.version == b.version);
    CHECK(a.deleted == b.deleted);
    CHECK(a.stamp == b.stamp);
    CHECK(a.value == b.value);
}

/// A valid mutation as JSON, with one member replaced (or removed, when `value` is absent).
std::string mutation_with(std::string_view member, std::optional<json::value> value) {
    json::object m{{"mutation_id", 17},
                   {"collection", "reservations"},
                   {"id", "r-1"},
                   {"op", "upsert"},
                   {"base_version", 40},
                   {"stamp", {{"wall", 1764000000000}, {"logical", 0}, {"node", "c-1"}}},
                   {"fields", {{"status", "cancelled"}}}};
    if (value)
        m[member] = *value;
    else
        m.erase(member);
    return json::serialize(m);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Round trips

TEST_CASE("an HLC stamp round trips and stays JavaScript-safe", "[protocol]") {
    auto s = stamp(1'764'000'000'123, 7, "3f2c-node");
    auto jv = to_json(s);
    CHECK(jv == json::parse(R"({"wall": 1764000000123, "logical": 7, "node": "3f2c-node"})"));
    CHECK(through_wire(s) == s);

    auto biggest = stamp(std::int64_t(max_safe_integer), UINT32_MAX, "");
    CHECK(through_wire(biggest) == biggest);
}

TEST_CASE("a push request round trips, upserts with fields and deletes without", "[protocol]") {
    push_request r;
    r.client_id = "3f2c-client";
    mutation up;
    up.mutation_id = 17;
    up.collection = "reservations";
    up.id = "r-1";
    up.op = mutation_op::upsert;
    up.base_version = 40;
    up.stamp = stamp(1'764'000'000'000, 1, "3f2c-client");
    up.fields = {{"status", "cancelled"}, {"party_size", 4}};
    mutation del;
    del.mutation_id = 18;
    del.collection = "landmarks";
    del.id = 1001; // integer ids travel as integers
    del.op = mutation_op::remove;
    del.base_version = 41;
    del.stamp = stamp(1'764'000'000'001, 0, "3f2c-client");
    del.fields = {{"ignored", true}}; // a delete carries no fields on the wire
    r.mutations = {up, del};

    auto jv = to_json(r);
    const auto& muts = jv.at("mutations").as_array();
    REQUIRE(muts.size() == 2);
    CHECK(muts[0].at("op") == "upsert");
    CHECK(muts[0].at("fields") == json::object{{"status", "cancelled"}, {"party_size", 4}});
    CHECK(muts[1].at("op") == "delete");
    CHECK(!muts[1].as_object().contains("fields"));
    CHECK(muts[1].at("id") == 1001);

    auto back = through_wire(r);
    CHECK(back.client_id == r.client_id);
    REQUIRE(back.mutations.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& a = back.mutations[i];
        const auto& b = r.mutations[i];
        CHECK(a.mutation_id == b.mutation_id);
        CHECK(a.collection == b.collection);
        CHECK(a.id == b.id);
        CHECK(a.op == b.op);
        CHECK(a.base_version == b.base_version);
        CHECK(a.stamp == b.stamp);
    }
    CHECK(back.mutations[0].fields == up.fields);
    CHECK(back.mutations[1].fields.empty());
    CHECK(back.mutations[1].id.is_int64());

    // An empty batch is a valid request.
    push_request empty{"c", {}};
    CHECK(through_wire(empty).mutations.empty());
}

TEST_CASE("a push response round trips applied, conflict and rejected results", "[protocol]") {
    push_response r;
    mutation_result applied;
    applied.mutation_id = 17;
    applied.status = mutation_status::applied;
    applied.version = 42;
    mutation_result conflict;
    conflict.mutation_id = 18;
    conflict.status = mutation_status::conflict;
    conflict.server = sample_change();
    mutation_result rejected;
    rejected.mutation_id = 19;
    rejected.status = mutation_status::rejected;
    rejected.error_code = "invalid_field";
    rejected.error_message = "field 'party_size' has the wrong type";
    rejected.server = sample_change();
    mutation_result rejected_bare = rejected;
    rejected_bare.mutation_id = 20;
    rejected_bare.server.reset();
    r.results = {applied, conflict, rejected, rejected_bare};

    auto jv = to_json(r);
    const auto& results = jv.at("results").as_array();
    REQUIRE(results.size() == 4);
    CHECK(results[0] == json::parse(R"({"mutation_id": 17, "status": "applied", "version": 42})"));
    CHECK(results[1].at("status") == "conflict");
    CHECK(!results[1].as_object().contains("version"));
    CHECK(!results[1].as_object().contains("error"));
    CHECK(results[1].at("server").at("version") == 42);
    CHECK(results[2].at("error") ==
          json::object{{"code", "invalid_field"},
                       {"message", "field 'party_size' has the wrong type"}});
    CHECK(!results[3].as_object().contains("server"));

    auto back = through_wire(r);
    REQUIRE(back.results.size() == 4);
    CHECK(back.results[0].status == mutation_status::applied);
    CHECK(back.results[0].mutation_id == 17);
    CHECK(back.results[0].version == 42);
    CHECK(!back.results[0].server);
    CHECK(back.results[1].status == mutation_status::conflict);
    CHECK(back.results[1].mutation_id == 18);
    REQUIRE(back.results[1].server);
    check_same(*back.results[1].server, sample_change());
    CHECK(back.results[2].status == mutation_status::rejected);
    CHECK(back.results[2].error_code == "invalid_field");
    CHECK(back.results[2].error_message == rejected.error_message);
    REQUIRE(back.results[2].server);
    check_same(*back.results[2].server, sample_change());
    CHECK(!back.results[3].server);
    CHECK(back.results[3].mutation_id == 20);
}

TEST_CASE("a push response's own-writes range round trips and is checked", "[protocol]") {
    push_response r;
    mutation_result applied;
    applied.mutation_id = 17;
    applied.version = 42;
    r.results = {applied};
    CHECK(!through_wire(r).own_writes); // optional: absent unless told
    CHECK(!json::parse(to_json_text(r)).as_object().contains("own_writes"));

    r.own_writes = own_writes_range{"reservations", 40, 42};
    const auto text = to_json_text(r);
    CHECK(json::parse(text) == to_json(r)); // the direct rendering says the same
    CHECK(json::parse(text).at("own_writes") ==
          json::parse(R"({"collection": "reservations", "after": 40, "through": 42})"));
    auto back = through_wire(r);
    REQUIRE(back.own_writes);
    CHECK(back.own_writes->collection == "reservations");
    CHECK(back.own_writes->after == 40);
    CHECK(back.own_writes->through == 42);
    REQUIRE(back.results.size() == 1);

    // A malformed range is a bad answer, not a range to trust.
    const std::string results =
        R"("results": [{"mutation_id": 17, "status": "applied", "version": 42}])";
    for (const char* bad : {
             R"("own_writes": 7)",
             R"("own_writes": {"after": 40, "through": 42})",
             R"("own_writes": {"collection": 3, "after": 40, "through": 42})",
             R"("own_writes": {"collection": "reservations", "after": -1, "through": 42})",
             R"("own_writes": {"collection": "reservations", "after": 40})",
             R"("own_writes": {"collection": "reservations", "after": 42, "through": 42})",
             R"("own_writes": {"collection": "reservations", "after": 50, "through": 42})",
         }) {
        INFO(bad);
        push_response out;
        CHECK(decode("{" + results + ", " + bad + "}", out));
    }
}

TEST_CASE("a change and a pull response round trip, tombstones included", "[protocol]") {
    auto live = sample_change();
    check_same(through_wire(live), live);

    change tomb;
    tomb.id = 7;
    tomb.version = 43;
    tomb.deleted = true;
    tomb.stamp = stamp(1'764'000'000'500, 0, "laptop");
    auto tomb_json = to_json(tomb);
    CHECK(tomb_json.at("deleted") == true);
    CHECK(tomb_json.at("value") == json::object{});
    check_same(through_wire(tomb), tomb);

    pull_response page;
    page.changes = {live, tomb};
    page.cursor = 43;
    page.has_more = true;
    auto back = through_wire(page);
    REQUIRE(back.changes.size() == 2);
    check_same(back.changes[0], live);
    check_same(back.changes[1], tomb);
    CHECK(back.cursor == 43);
    CHECK(back.has_more);

    pull_response last;
    last.cursor = max_safe_integer;
    auto back_last = through_wire(last);
    CHECK(back_last.changes.empty());
    CHECK(back_last.cursor == max_safe_integer);
    CHECK(!back_last.has_more);
}

TEST_CASE("a document decoded for good gives up its records, a borrowed one keeps them",
          "[protocol]") {
    pull_response page;
    page.changes = {sample_change(), sample_change()};
    page.changes[1].id = "r-2";
    page.cursor = 42;
    const auto document = to_json(page);

    auto borrowed = document;
    pull_response copied;
    REQUIRE(!from_json(borrowed, copied));
    CHECK(borrowed == document); // untouched

    auto owned = document;
    pull_response moved;
    REQUIRE(!from_json(std::move(owned), moved));
    REQUIRE(moved.changes.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) check_same(moved.changes[i], copied.changes[i]);
    CHECK(moved.cursor == 42);

    push_request request;
    request.client_id = "c-1";
    mutation m;
    m.mutation_id = 3;
    m.collection = "reservations";
    m.id = "r-1";
    m.stamp = stamp(5);
    m.fields = {{"status", "cancelled"}};
    request.mutations = {m};
    push_request decoded;
    REQUIRE(!from_json(json::value(to_json(request)), decoded));
    CHECK(decoded.mutations.at(0).fields == m.fields);

    // A bad document fails the same way both ways.
    const auto bad = json::parse(R"({"changes":[{"id":"r-1"}],"cursor":1,"has_more":false})");
    pull_response a, b;
    const auto by_copy = from_json(bad, a);
    const auto by_move = from_json(json::value(bad), b);
    CHECK(by_copy);
    CHECK(by_copy.code == by_move.code);
    CHECK(by_copy.message == by_move.message);
}

TEST_CASE("normalize takes over a value of the schema's shape and fixes any other",
          "[protocol]") {
    const auto& schema = schema_of<Reservation>();
    auto exact = to_json_object(reservation("r-1", "cancelled", 3));
    CHECK(normalize(schema, json::object(exact)) == exact);
    auto missing = exact;
    missing.erase("notes");
    auto extra = exact;
    extra["unknown"] = 1;
    CHECK(normalize(schema, std::move(missing)) == normalize(schema, exact));
    CHECK(normalize(schema, std::move(extra)) == exact);
    auto renamed = exact; // the right size, a wrong field
    renamed.erase("notes");
    renamed["unknown"] = 1;
    auto fixed = normalize(schema, std::move(renamed));
    CHECK_FALSE(fixed.contains("unknown"));
    CHECK(fixed.at("notes") == schema.defaults.at("notes"));
}

TEST_CASE("messages rendered straight to text are their JSON documents, byte for byte",
          "[protocol]") {
    std::string awkward = "q\"b\\s/\b\f\n\r\t";
    awkward += '\x01';
    awkward += '\x1f';
    awkward += "\xc3\xa9";
    awkward += '\x7f';

    push_request push;
    push.client_id = awkward;
    mutation upsert;
    upsert.mutation_id = 1;
    upsert.collection = "reservations";
    upsert.id = "r-" + awkward;
    upsert.stamp = stamp(-5, 3, awkward);
    upsert.fields = to_json_object(reservation("r-1"));
    upsert.fields["notes"] = awkward;
    upsert.fields["ratio"] = 1.5;
    upsert.fields["nested"] = json::array{1, "two", nullptr, json::object{{"three", false}}};
    mutation remove;
    remove.mutation_id = max_safe_integer;
    remove.collection = awkward;
    remove.id = 42;
    remove.op = mutation_op::remove;
    remove.base_version = 7;
    remove.stamp = stamp(1);
    push.mutations = {upsert, remove};
    CHECK(to_json_text(push) == json::serialize(to_json(push)));
    push.mutations.clear();
    CHECK(to_json_text(push) == json::serialize(to_json(push)));
    for (int byte = 0; byte < 256; ++byte) {
        push.client_id = std::string(1, char(byte));
        CAPTURE(byte);
        CHECK(to_json_text(push) == json::serialize(to_json(push)));
    }

    pull_response page;
    change tomb;
    tomb.id = -3;
    tomb.version = 43;
    tomb.deleted = true;
    tomb.stamp = stamp(9, 0, awkward);
    page.changes = {sample_change(), tomb};
    page.changes[0].value["notes"] = awkward;
    page.cursor = 43;
    page.has_more = true;
    CHECK(to_json_text(page) == json::serialize(to_json(page)));
    page.changes.clear();
    page.has_more = false;
    CHECK(to_json_text(page) == json::serialize(to_json(page)));

    push_response answers;
    mutation_result applied;
    applied.mutation_id = 5;
    applied.version = 77;
    mutation_result conflict;
    conflict.mutation_id = 6;
    conflict.status = mutation_status::conflict;
    conflict.server = sample_change();
    mutation_result rejected;
    rejected.mutation_id = 7;
    rejected.status = mutation_status::rejected;
    rejected.error_code = "invalid_field";
    rejected.error_message = awkward;
    auto rejected_with_record = rejected;
    rejected_with_record.server = tomb;
    answers.results = {applied, conflict, rejected, rejected_with_record};
    CHECK(to_json_text(answers) == json::serialize(to_json(answers)));
    answers.results.clear();
    CHECK(to_json_text(answers) == json::serialize(to_json(answers)));
}

TEST_CASE("an echo marker travels without a value, and a pull names its client", "[protocol]") {
    change echo;
    echo.id = "r-1";
    echo.version = 9;
    echo.stamp = stamp(5, 0, "phone");
    echo.echo = true;
    const auto document = to_json(echo);
    CHECK(document.at("echo") == true);
    CHECK_FALSE(document.as_object().contains("value"));
    pull_response page;
    page.changes = {echo, sample_change()};
    CHECK(to_json_text(page) == json::serialize(to_json(page)));
    auto back = through_wire(page);
    CHECK(back.changes[0].echo);
    CHECK(back.changes[0].value.empty());
    CHECK(back.changes[0].version == 9);
    CHECK_FALSE(back.changes[1].echo);
    check_same(back.changes[1], sample_change());
    // "echo": false is an ordinary change, which needs its value.
    change plain;
    CHECK(!decode(R"({"id":"r-1","version":1,"deleted":false,"stamp":{"wall":1,"logical":0,)"
                  R"("node":"n"},"echo":false,"value":{}})",
                  plain));
    CHECK(decode(R"({"id":"r-1","version":1,"deleted":false,"stamp":{"wall":1,"logical":0,)"
                 R"("node":"n"},"echo":false})",
                 plain));

    pull_request named{"reservations", 7, 100, "c 1/é"};
    const auto target = pull_target(named);
    CHECK_THAT(target, Contains("&client_id=c%201%2F%C3%A9"));
    pull_request parsed;
    REQUIRE(!parse_pull_query(target.substr(target.find('?') + 1), parsed));
    CHECK(parsed.client_id == "c 1/é");
    CHECK(parsed.since == 7);
    pull_request anonymous{"reservations", 7, 100, ""};
    CHECK(pull_target(anonymous).find("client_id") == std::string::npos);
    CHECK(parse_pull_query("collection=r&client_id=", parsed).code == errc::invalid_field);
    CHECK(parse_pull_query("collection=r&client_id=" + std::string(129, 'c'), parsed).code ==
          errc::invalid_field);
    CHECK(!parse_pull_query("collection=r&client_id=" + std::string(128, 'c'), parsed));
}

// ---------------------------------------------------------------------------------------------
// Strict decoding

TEST_CASE("a mutation that breaks the shape is malformed_json naming the member", "[protocol]") {
    struct bad_case {
        const char* member;
        std::optional<json::value> value; // nullopt: removed
        errc code;
        const char* message;
    };
    const bad_case cases[] = {
        {"mutation_id", std::nullopt, errc::malformed_json, "missing 'mutation_id'"},
        {"mutation_id", json::value(-1), errc::malformed_json,
         "'mutation_id' must be a non-negative"},
        {"mutation_id", json::value(1.5), errc::malformed_json, "'mutation_id' must be"},
        {"mutation_id", json::value("17"), errc::malformed_json, "'mutation_id' must be"},
        {"mutation_id", json::value(max_safe_integer + 1), errc::malformed_json,
         "'mutation_id' exceeds 2^53-1"},
        {"mutation_id", json::value(UINT64_MAX), errc::malformed_json, "'mutation_id' exceeds"},
        {"collection", std::nullopt, errc::malformed_json, "'collection' must be a string"},
        {"collection", json::value(3), errc::malformed_json, "'collection' must be a string"},
        {"id", std::nullopt, errc::invalid_id, "missing 'id'"},
        {"op", std::nullopt, errc::malformed_json, "'op' must be a string"},
        {"op", json::value("patch"), errc::malformed_json, "'op' must be \"upsert\" or"},
        {"op", json::value("UPSERT"), errc::malformed_json, "'op'"},
        {"base_version", std::nullopt, errc::malformed_json, "missing 'base_version'"},
        {"base_version", json::value(-40), errc::malformed_json, "'base_version' must be"},
        {"base_version", json::value(max_safe_integer + 1), errc::malformed_json,
         "'base_version' exceeds"},
        {"stamp", std::nullopt, errc::malformed_json, "missing 'stamp'"},
        {"stamp", json::value(1764000000000), errc::malformed_json, "'stamp' must be an object"},
        {"stamp", json::value("1764000000000-0-c"), errc::malformed_json, "'stamp' must be"},
        {"stamp", json::value({{"logical", 0}, {"node", "c"}}), errc::malformed_json,
         "missing 'wall'"},
        {"stamp", json::value({{"wall", -5}, {"logical", 0}, {"node", "c"}}), errc::malformed_json,
         "'wall' must be a non-negative"},
        {"stamp", json::value({{"wall", max_safe_integer + 1}, {"logical", 0}, {"node", "c"}}),
         errc::malformed_json, "'wall' exceeds"},
        {"stamp",
         json::value({{"wall", 1}, {"logical", std::uint64_t(UINT32_MAX) + 1}, {"node", "c"}}),
         errc::malformed_json, "'logical' is out of range"},
        {"stamp", json::value({{"wall", 1}, {"logical", 0}}), errc::malformed_json,
         "'node' must be a string"},
        {"stamp", json::value({{"wall", 1}, {"logical", 0}, {"node", 5}}), errc::malformed_json,
         "'node' must be a string"},
        {"fields", std::nullopt, errc::malformed_json, "'fields' must be an object"},
        {"fields", json::value(json::array{}), errc::malformed_json, "'fields' must be an object"},
        {"fields", json::value(nullptr), errc::malformed_json, "'fields' must be an object"},
    };
    for (const auto& c : cases) {
        const auto text = mutation_with(c.member, c.value);
        INFO(text);
        mutation m;
        auto d = decode(text, m);
        CHECK(d.code == c.code);
        CHECK_THAT(d.message, Contains(c.message));

        // Inside a push, the message also says which mutation.
        push_request r;
        auto body = R"({"client_id": "c", "mutations": [)" +
                    mutation_with("op", json::value("upsert")) + "," + text + "]}";
        d = decode(body, r);
        CHECK(d.code == c.code);
        CHECK_THAT(d.message, Contains("mutations[1]: "));
        CHECK_THAT(d.message, Contains(c.message));
    }

    SECTION("the limits themselves are accepted") {
        mutation m;
        CHECK(!decode(mutation_with("mutation_id", json::value(max_safe_integer)), m));
        CHECK(m.mutation_id == max_safe_integer);
        CHECK(!decode(mutation_with("base_version", json::value(0)), m));
        CHECK(m.base_version == 0);
    }
    SECTION("a delete needs no fields, and drops any it had") {
        mutation m;
        m.fields = {{"stale", 1}};
        auto text = mutation_with("op", json::value("delete"));
        CHECK(!decode(text, m));
        CHECK(m.op == mutation_op::remove);
        CHECK(m.fields.empty());
        auto obj = json::parse(text).as_object();
        obj.erase("fields");
        CHECK(!from_json(obj, m));
    }
    SECTION("the id's type is the service's business, not the decoder's") {
        mutation m;
        CHECK(!decode(mutation_with("id", json::value(nullptr)), m));
        CHECK(m.id.is_null());
    }
    SECTION("a mutation that is not an object") {
        mutation m;
        CHECK(decode("[1]", m).code == errc::malformed_json);
        CHECK(decode("\"m\"", m).code == errc::malformed_json);
    }
}

TEST_CASE("a push request that breaks the shape names what is wrong", "[protocol]") {
    const auto good = mutation_with("op", json::value("upsert"));
    struct bad_case {
        std::string body;
        errc code;
        const char* message;
    };
    const bad_case cases[] = {
        {"[]", errc::malformed_json, "must be a JSON object"},
        {"42", errc::malformed_json, "must be a JSON object"},
        {R"({"mutations": []})", errc::malformed_json, "'client_id' must be a string"},
        {R"({"client_id": 7, "mutations": []})", errc::malformed_json, "'client_id'"},
        {R"({"client_id": "", "mutations": []})", errc::invalid_field,
         "'client_id' must be 1 to 128"},
        {R"({"client_id": ")" + std::string(129, 'c') + R"(", "mutations": []})",
         errc::invalid_field, "'client_id'"},
        {R"({"client_id": "c"})", errc::malformed_json, "'mutations' must be an array"},
        {R"({"client_id": "c", "mutations": {}})", errc::malformed_json, "'mutations'"},
        {R"({"client_id": "c", "mutations": [)" + good + R"(, 5]})", errc::malformed_json,
         "mutations[1]: a mutation must be an object"},
    };
    for (const auto& c : cases) {
        INFO(c.body);
        push_request r;
        auto d = decode(c.body, r);
        CHECK(d.code == c.code);
        CHECK_THAT(d.message, Contains(c.message));
    }
    push_request r;
    CHECK(!decode(R"({"client_id": ")" + std::string(128, 'c') + R"(", "mutations": []})", r));
    CHECK(r.client_id.size() == 128);
    // Unknown members are tolerated: newer clients may add some.
    CHECK(!decode(R"({"client_id": "c", "mutations": [], "app_version": "2.0"})", r));
}

TEST_CASE("a change, a result or a page that breaks the shape is an error", "[protocol]") {
    const auto good_change = json::serialize(to_json(sample_change()));
    auto change_with = [&](std::string_view member, std::optional<json::value> v) {
        auto o = json::parse(good_change).as_object();
        if (v)
            o[member] = *v;
        else
            o.erase(member);
        return json::serialize(o);
    };
    SECTION("changes") {
        struct bad_case {
            std::string body;
            errc code;
            const char* message;
        };
        const bad_case cases[] = {
            {change_with("id", std::nullopt), errc::invalid_id, "'id'"},
            {change_with("id", json::value(true)), errc::invalid_id, "'id'"},
            {change_with("id", json::value(1.5)), errc::invalid_id, "'id'"},
            {change_with("id", json::value(nullptr)), errc::invalid_id, "'id'"},
            {change_with("version", std::nullopt), errc::malformed_json, "missing 'version'"},
            {change_with("version", json::value(-1)), errc::malformed_json, "'version'"},
            {change_with("version", json::value(max_safe_integer + 1)), errc::malformed_json,
             "'version' exceeds 2^53-1"},
            {change_with("deleted", std::nullopt), errc::malformed_json, "'deleted'"},
            {change_with("deleted", json::value(0)), errc::malformed_json,
             "'deleted' must be a boolean"},
            {change_with("stamp", std::nullopt), errc::malformed_json, "missing 'stamp'"},
            {change_with("stamp", json::value(json::array{})), errc::malformed_json,
             "'stamp' must be an object"},
            {change_with("value", std::nullopt), errc::malformed_json, "'value' must be an object"},
            {change_with("value", json::value("x")), errc::malformed_json, "'value'"},
            {change_with("echo", json::value(1)), errc::malformed_json,
             "'echo' must be a boolean"},
            {"[]", errc::malformed_json, "a change must be an object"},
        };
        for (const auto& c : cases) {
            INFO(c.body);
            change out;
            auto d = decode(c.body, out);
            CHECK(d.code == c.code);
            CHECK_THAT(d.message, Contains(c.message));
        }
        change out;
        CHECK(!decode(change_with("id", json::value(-3)), out));
        CHECK(out.id == -3);
    }
    SECTION("results") {
        struct bad_case {
            std::string body;
            const char* message;
        };
        const bad_case cases[] = {
            {R"({"status": "applied", "version": 1})", "missing 'mutation_id'"},
            {R"({"mutation_id": -1, "status": "applied", "version": 1})", "'mutation_id'"},
            {R"({"mutation_id": 1, "version": 1})", "'status' must be a string"},
            {R"({"mutation_id": 1, "status": "done"})", "unknown result status 'done'"},
            {R"({"mutation_id": 1, "status": "applied"})", "missing 'version'"},
            {R"({"mutation_id": 1, "status": "applied", "version": 9007199254740992})",
             "'version' exceeds"},
            {R"({"mutation_id": 1, "status": "conflict"})", "a conflict carries 'server'"},
            {R"({"mutation_id": 1, "status": "conflict", "server": 5})", "must be an object"},
            {R"({"mutation_id": 1, "status": "rejected"})", "'error' must be an object"},
            {R"({"mutation_id": 1, "status": "rejected", "error": {"message": "m"}})",
             "'code' must be a string"},
            {R"({"mutation_id": 1, "status": "rejected", "error": {"code": "c"}})",
             "'message' must be a string"},
            {R"({"mutation_id": 1, "status": "rejected", "error": {"code": "c", "message": "m"},
                 "server": {"id": "r-1"}})",
             "'version'"},
            {"null", "a result must be an object"},
        };
        for (const auto& c : cases) {
            INFO(c.body);
            mutation_result out;
            auto d = decode(c.body, out);
            CHECK(d.code == errc::malformed_json);
            CHECK_THAT(d.message, Contains(c.message));
        }
        push_response r;
        CHECK(decode("{}", r).code == errc::malformed_json);
        CHECK(decode("[]", r).code == errc::malformed_json);
        CHECK(decode(R"({"results": {}})", r).code == errc::malformed_json);
        CHECK(decode(R"({"results": [{"mutation_id": 1, "status": "nope"}]})", r).code ==
              errc::malformed_json);
    }
    SECTION("pages") {
        struct bad_case {
            std::string body;
            errc code;
            const char* message;
        };
        const bad_case cases[] = {
            {R"({"cursor": 1, "has_more": false})", errc::malformed_json,
             "'changes' must be an array"},
            {R"({"changes": {}, "cursor": 1, "has_more": false})", errc::malformed_json,
             "'changes'"},
            {R"({"changes": [], "has_more": false})", errc::malformed_json, "missing 'cursor'"},
            {R"({"changes": [], "cursor": "1", "has_more": false})", errc::malformed_json,
             "'cursor'"},
            {R"({"changes": [], "cursor": 9007199254740992, "has_more": false})",
             errc::malformed_json, "'cursor' exceeds 2^53-1"},
            {R"({"changes": [], "cursor": 1})", errc::malformed_json,
             "'has_more' must be a boolean"},
            {R"({"changes": [], "cursor": 1, "has_more": "no"})", errc::malformed_json,
             "'has_more'"},
            {R"({"changes": [{"id": false}], "cursor": 1, "has_more": false})", errc::invalid_id,
             "'id'"},
            {"[]", errc::malformed_json, "must be an object"},
        };
        for (const auto& c : cases) {
            INFO(c.body);
            pull_response out;
            auto d = decode(c.body, out);
            CHECK(d.code == c.code);
            CHECK_THAT(d.message, Contains(c.message));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pull query

TEST_CASE("parse_pull_query reads a good query", "[protocol]") {
    pull_request r;
    CHECK(!parse_pull_query("collection=reservations&since=41&limit=500", r));
    CHECK(r.collection == "reservations");
    CHECK(r.since == 41);
    CHECK(r.limit == 500);

    // Any order; unknown parameters are ignored; defaults for what is left out.
    r = {"stale", 99, 7};
    CHECK(!parse_pull_query("limit=10&trace=1&collection=landmarks", r));
    CHECK(r.collection == "landmarks");
    CHECK(r.since == 0);
    CHECK(r.limit == 10);

    CHECK(!parse_pull_query("collection=landmarks", r));
    CHECK(r.since == 0);
    CHECK(r.limit == pull_request{}.limit);

    // The edges of the ranges.
    CHECK(!parse_pull_query("collection=c&since=9007199254740991&limit=5000", r));
    CHECK(r.since == max_safe_integer);
    CHECK(r.limit == max_pull_limit);
    CHECK(!parse_pull_query("collection=c&since=0&limit=1", r));
    CHECK(r.limit == 1);

    // Percent-encoding and '+' for space.
    CHECK(!parse_pull_query("collection=my%20stuff%2Fv%c3%a9", r));
    CHECK(r.collection == "my stuff/v\xC3\xA9");
    CHECK(!parse_pull_query("collection=a+b", r));
    CHECK(r.collection == "a b");
    CHECK(!parse_pull_query("collection=%41", r));
    CHECK(r.collection == "A");
}

TEST_CASE("parse_pull_query rejects bad parameters with a fitting code", "[protocol]") {
    struct bad_case {
        const char* query;
        errc code;
        const char* message;
    };
    const bad_case cases[] = {
        {"", errc::unknown_collection, "missing 'collection'"},
        {"since=1&limit=2", errc::unknown_collection, "missing 'collection'"},
        {"collection=", errc::unknown_collection, "'collection'"},
        {"collection", errc::unknown_collection, "'collection'"},
        {"collection=c&since=abc", errc::invalid_field, "'since'"},
        {"collection=c&since=-1", errc::invalid_field, "'since'"},
        {"collection=c&since=+1", errc::invalid_field, "'since'"},
        {"collection=c&since=1x", errc::invalid_field, "'since'"},
        {"collection=c&since= 1", errc::invalid_field, "'since'"},
        {"collection=c&since=", errc::invalid_field, "'since'"},
        {"collection=c&since", errc::invalid_field, "'since'"},
        {"collection=c&since=1.5", errc::invalid_field, "'since'"},
        {"collection=c&since=9007199254740992", errc::invalid_field, "'since'"},
        {"collection=c&since=99999999999999999999999", errc::invalid_field, "'since'"},
        {"collection=c&limit=0", errc::invalid_field, "'limit' must be an integer from 1 to 5000"},
        {"collection=c&limit=5001", errc::invalid_field, "'limit'"},
        {"collection=c&limit=4294967297", errc::invalid_field, "'limit'"},
        {"collection=c&limit=-5", errc::invalid_field, "'limit'"},
        {"collection=c&limit=ten", errc::invalid_field, "'limit'"},
        {"collection=c&limit=", errc::invalid_field, "'limit'"},
        {"collection=%", errc::unknown_collection, "'collection'"},
        {"collection=a%4", errc::unknown_collection, "'collection'"},
        {"collection=a%zz", errc::unknown_collection, "'collection'"},
        {"collection=a%4g", errc::unknown_collection, "'collection'"},
        {"collection=a%g4", errc::unknown_collection, "'collection'"},
        {"collection=a%-1b", errc::unknown_collection, "'collection'"},
        {"collection=a%+1b", errc::unknown_collection, "'collection'"},
        {"collection=a% 1b", errc::unknown_collection, "'collection'"},
    };
    for (const auto& c : cases) {
        INFO(c.query);
        pull_request r;
        auto d = parse_pull_query(c.query, r);
        CHECK(d.code == c.code);
        CHECK_THAT(d.message, Contains(c.message));
    }
}

TEST_CASE("pull_target and parse_pull_query agree", "[protocol]") {
    const pull_request requests[] = {
        {"reservations", 41, 500},
        {"landmarks", 0, 1},
        {"my stuff", max_safe_integer, max_pull_limit},
        {"a&b=c?d%e+f#g/h", 7, 9},
        {"caf\xC3\xA9-\xE2\x98\x95", 12, 34},
        {"keep-these_.~", 1, 2},
    };
    for (const auto& want : requests) {
        const auto target = pull_target(want);
        INFO(target);
        const std::string prefix = "/v1/sync/pull?";
        REQUIRE(target.rfind(prefix, 0) == 0);
        const auto query = target.substr(prefix.size());
        // Only unreserved characters and escapes in the collection: no stray separators.
        CHECK(std::count(query.begin(), query.end(), '&') == 2);
        CHECK(std::count(query.begin(), query.end(), '=') == 3);
        CHECK(query.find(' ') == std::string::npos);
        pull_request got{"stale", 5, 5};
        auto d = parse_pull_query(query, got);
        CHECK(!d);
        CHECK(got.collection == want.collection);
        CHECK(got.since == want.since);
        CHECK(got.limit == want.limit);
    }
    CHECK(pull_target({"reservations", 41, 500}) ==
          "/v1/sync/pull?collection=reservations&since=41&limit=500");
    CHECK(pull_target({"a b+c", 0, 1}) == "/v1/sync/pull?collection=a%20b%2Bc&since=0&limit=1");
}

// ---------------------------------------------------------------------------------------------
// Error bodies

TEST_CASE("error bodies round trip through parse_error_body", "[protocol]") {
    for (int e = 1; e <= int(errc::server_error); ++e) {
        const auto code = errc(e);
        INFO(to_string(code));
        auto body = error_body(code, "detail for people");
        CHECK(body == json::object{{"error", json::object{{"code", to_string(code)},
                                                          {"message", "detail for people"}}}});
        auto d = parse_error_body(json::serialize(body), errc::bad_response);
        CHECK(d.code == code);
        CHECK(d.message == "detail for people");
        CHECK(d.code.category() == offsync_category());
    }
}

TEST_CASE("parse_error_body falls back on what it does not recognise", "[protocol]") {
    SECTION("an unknown code keeps the code and the message") {
        auto d = parse_error_body(R"({"error": {"code": "teapot", "message": "short and stout"}})",
                                  errc::server_error);
        CHECK(d.code == errc::server_error);
        CHECK(d.message == "teapot: short and stout");
    }
    SECTION("'ok' is not an error code") {
        auto d =
            parse_error_body(R"({"error": {"code": "ok", "message": "m"}})", errc::bad_response);
        CHECK(d.code == errc::bad_response);
    }
    SECTION("a code with no message") {
        auto d = parse_error_body(R"({"error": {"code": "not_found"}})", errc::bad_response);
        CHECK(d.code == errc::not_found);
        CHECK(d.message.empty());
    }
    SECTION("not JSON, or the wrong shape: the raw text, cut to 200 bytes") {
        for (std::string body : {std::string("<html>Bad Gateway</html>"), std::string(""),
                                 std::string(R"({"error": "nope"})"), std::string("[1,2]"),
                                 std::string(R"({"message": "m"})")}) {
            INFO(body);
            auto d = parse_error_body(body, errc::server_error);
            CHECK(d.code == errc::server_error);
            CHECK(d.message == body);
        }
        std::string huge(1000, 'x');
        auto d = parse_error_body(huge, errc::bad_response);
        CHECK(d.code == errc::bad_response);
        CHECK(d.message == std::string(200, 'x'));
    }
}

// ---------------------------------------------------------------------------------------------
// Error codes

TEST_CASE("every offsync error has a distinct wire name and a message", "[protocol]") {
    std::vector<std::string> names;
    for (int e = 0; e <= int(errc::server_error); ++e) {
        const auto code = errc(e);
        const std::string name = to_string(code);
        INFO(name);
        CHECK(name != "unknown");
        CHECK(std::find(names.begin(), names.end(), name) == names.end());
        names.push_back(name);
        const auto ec = make_error_code(code);
        CHECK(ec.category() == offsync_category());
        CHECK(&ec.category() == &offsync_category());
        CHECK(std::string(ec.category().name()) == "offsync");
        CHECK(!ec.message().empty());
        CHECK(ec.message() != "unknown offsync error");
        CHECK(static_cast<bool>(ec) == (code != errc::ok));
    }
    CHECK(std::string(to_string(errc(999))) == "unknown");
    CHECK(make_error_code(errc(999)).message() == "unknown offsync error");
    // Enum values compare with error codes directly.
    error_code ec = errc::not_found;
    CHECK(ec == errc::not_found);
    CHECK(ec != errc::forbidden);
    // sync_error carries the code and the detail.
    sync_error from_diag(
        diagnostics{make_error_code(errc::read_only), "field 'name' is read-only"});
    CHECK(from_diag.code() == errc::read_only);
    CHECK_THAT(std::string(from_diag.what()), Contains("field 'name' is read-only"));
    diagnostics none;
    CHECK(!none);
    CHECK(diagnostics{make_error_code(errc::invalid_id), ""});
}
