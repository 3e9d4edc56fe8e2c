// Partial sync's subscriptions as data: their wire form, its bad inputs, and which records
// they hold. No store, no server.
#include "../support/models.hpp"

#include <offsync/protocol/http.hpp>
#include <offsync/query.hpp>
#include <offsync/subset.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <catch2/catch.hpp>

using namespace offsync;
namespace json = boost::json;
using offsync_test::Item;
using offsync_test::Note;
using offsync_test::Reservation;

namespace {
diagnostics parse(std::string_view text, sync_subset& out) {
    return subset_from_json(json::parse(text), out);
}
std::string error_of(std::string_view text) {
    sync_subset s;
    auto d = parse(text, s);
    return d ? d.message : "";
}
} // namespace

TEST_CASE("subset: the wire form reads back as it was written", "[subset]") {
    sync_subset part;
    part.groups = std::vector<std::string>{"home", "work"};
    part.where = (field(&Reservation::notes) >= std::string("2026-12-07") &&
                  field(&Reservation::party_size) < 4)
                     .spec();
    const auto wire = to_json(part);
    CHECK(json::serialize(wire) ==
          R"({"groups":["home","work"],"where":[{"field":"notes","op":">=","value":"2026-12-07"},)"
          R"({"field":"party_size","op":"<","value":4}]})");
    sync_subset back;
    REQUIRE_FALSE(subset_from_json(wire, back));
    CHECK(back == part);
    CHECK(to_json(sync_subset{}).empty());
    CHECK(sync_subset{}.everything());
    CHECK_FALSE(part.everything());

    // Groups are a set: sorted, repeats dropped.
    REQUIRE_FALSE(parse(R"({"groups": ["b", "a", "b"]})", back));
    CHECK(*back.groups == std::vector<std::string>{"a", "b"});
    // An empty list of groups is a subscription to no group at all, not to every one.
    REQUIRE_FALSE(parse(R"({"groups": []})", back));
    REQUIRE(back.groups);
    CHECK(back.groups->empty());
    CHECK_FALSE(back.everything());

    // In a pull's target, and back.
    pull_request request{"reservations", 7, 100, "phone-1"};
    request.subset = part;
    request.backfill = subset_backfill{sync_subset{}, 7};
    request.backfill->held.groups = std::vector<std::string>{"home"};
    const auto target = pull_target(request);
    CHECK(target.find("&subset=%7B%22groups%22") != std::string::npos);
    pull_request parsed;
    REQUIRE_FALSE(parse_pull_query(target.substr(target.find('?') + 1), parsed));
    CHECK(parsed.subset == part);
    REQUIRE(parsed.backfill);
    CHECK(parsed.backfill->until == 7);
    CHECK(parsed.backfill->held == request.backfill->held);
    // A pull of everything reads as it always did.
    CHECK(pull_target(pull_request{"reservations", 7, 100}) ==
          "/v1/sync/pull?collection=reservations&since=7&limit=100");
}

TEST_CASE("subset: bad input is refused with the reason", "[subset][bad-input]") {
    CHECK(error_of(R"([])") == "subset: must be a JSON object");
    CHECK(error_of(R"({"group": ["a"]})").find("unknown member 'group'") != std::string::npos);
    CHECK(error_of(R"({"groups": "a"})").find("'groups' must be a list") != std::string::npos);
    CHECK(error_of(R"({"groups": [""]})").find("names of 1 to 256 bytes") != std::string::npos);
    CHECK(error_of(R"({"groups": [1]})").find("names of 1 to 256 bytes") != std::string::npos);
    CHECK(error_of(R"({"groups": [")" + std::string(257, 'g') + R"("]})")
              .find("names of 1 to 256") != std::string::npos);
    json::array many;
    for (std::size_t i = 0; i <= max_subset_groups; ++i) many.emplace_back("g" + std::to_string(i));
    CHECK(error_of(json::serialize(json::object{{"groups", many}})).find("at most 64") !=
          std::string::npos);
    CHECK(error_of(R"({"where": {}})").find("list of conditions") != std::string::npos);
    CHECK(error_of(R"({"where": [1]})").find("must be an object") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "notes", "op": "~", "value": "x"}]})")
              .find("unknown operator '~'") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "notes", "op": "==", "value": null}]})")
              .find("a string, a number or a boolean") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "notes", "op": "==", "value": [1]}]})")
              .find("a string, a number or a boolean") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "notes", "op": "=="}]})")
              .find("needs 'field', 'op' and 'value'") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "", "op": "==", "value": 1}]})")
              .find("non-empty string") != std::string::npos);
    CHECK(error_of(R"({"where": [{"field": "notes", "op": "==", "value": 1, "or": 2}]})")
              .find("unknown condition member 'or'") != std::string::npos);
    sync_subset s;
    CHECK(errc_of(parse(R"({"groups": [], "limit": 3})", s).code) == errc::unknown_field);

    subset_backfill b;
    auto backfill_error = [&](std::string_view text) {
        auto d = subset_backfill_from_json(json::parse(text), b);
        return d ? d.message : "";
    };
    CHECK(backfill_error(R"({"held": {}})").find("needs 'held' and 'until'") != std::string::npos);
    CHECK(backfill_error(R"({"held": {}, "until": -1})").find("non-negative") != std::string::npos);
    CHECK(backfill_error(R"({"held": {}, "until": 1.5})").find("non-negative") != std::string::npos);
    CHECK(backfill_error(R"({"held": {"x": 1}, "until": 1})").find("unknown member 'x'") !=
          std::string::npos);
    CHECK(backfill_error(R"({"held": {}, "until": 1, "from": 0})").find("unknown backfill member") !=
          std::string::npos);
    CHECK(backfill_error(R"({"held": {}, "until": 4})").empty());

    // In a pull's target: malformed JSON, a bad escape, a bad member.
    pull_request r;
    CHECK(errc_of(parse_pull_query("collection=items&subset=%7B", r).code) ==
          errc::malformed_json);
    CHECK(errc_of(parse_pull_query("collection=items&subset=%zz", r).code) ==
          errc::malformed_json);
    CHECK(errc_of(parse_pull_query("collection=items&backfill=%7B%7D", r).code) ==
          errc::invalid_field);
    CHECK(errc_of(parse_pull_query("collection=items&subset=%7B%22x%22%3A1%7D", r).code) ==
          errc::unknown_field);
}

TEST_CASE("subset: checked against the collection it is for", "[subset][bad-input]") {
    const auto& items = schema_of<Item>();
    const auto& reservations = schema_of<Reservation>();
    sync_subset part;
    part.groups = std::vector<std::string>{"home"};
    CHECK_FALSE(check_subset(items, part));
    auto d = check_subset(reservations, part);
    REQUIRE(d);
    CHECK(d.message.find("grouped collections; reservations is not one") != std::string::npos);

    sync_subset on_field;
    on_field.where.conditions.push_back({"nope", compare_op::equal, 1});
    d = check_subset(reservations, on_field);
    REQUIRE(d);
    CHECK(errc_of(d.code) == errc::unknown_field);
    CHECK(d.message.find("no field 'nope'") != std::string::npos);
    on_field.where.conditions = {{"party_size", compare_op::equal, "two"}};
    d = check_subset(reservations, on_field);
    REQUIRE(d);
    CHECK(d.message.find("not of that field's type") != std::string::npos);
    on_field.where.conditions = {{"party_size", compare_op::equal, 2}, {"notes", compare_op::less, "2027"}};
    CHECK_FALSE(check_subset(reservations, on_field));
    // A list field is not compared with a scalar.
    sync_subset on_list;
    on_list.where.conditions = {{"groups", compare_op::equal, "a"}};
    CHECK(check_subset(schema_of<Note>(), on_list));
}

TEST_CASE("subset: which records it holds", "[subset]") {
    const auto& items = schema_of<Item>();
    const auto& notes = schema_of<Note>();
    const auto& reservations = schema_of<Reservation>();
    sync_subset part;
    part.groups = std::vector<std::string>{"home", "trip"};
    CHECK(subset_matches(items, {{"id", "1"}, {"list_id", "home"}}, part));
    CHECK_FALSE(subset_matches(items, {{"id", "1"}, {"list_id", "work"}}, part));
    CHECK_FALSE(subset_matches(items, {{"id", "1"}}, part));
    CHECK(subset_matches(notes, {{"groups", json::array{"work", "trip"}}}, part));
    CHECK_FALSE(subset_matches(notes, {{"groups", json::array{"work"}}}, part));
    CHECK_FALSE(subset_matches(notes, {{"groups", json::array{}}}, part));
    CHECK(subset_matches(items, {{"list_id", "anything"}}, sync_subset{}));

    sync_subset dated; // notes that start with a date, as an app might keep one
    dated.where = (field(&Reservation::notes) >= std::string("2026-12-07") &&
                   field(&Reservation::party_size) != 0)
                      .spec();
    CHECK(subset_matches(reservations, {{"notes", "2026-12-07"}, {"party_size", 2}}, dated));
    CHECK(subset_matches(reservations, {{"notes", "2027-01-01 x"}, {"party_size", 1}}, dated));
    CHECK_FALSE(subset_matches(reservations, {{"notes", "2026-12-06"}, {"party_size", 2}}, dated));
    CHECK_FALSE(subset_matches(reservations, {{"notes", "2026-12-08"}, {"party_size", 0}}, dated));
    // Missing or null fields, and values of another kind, match no condition.
    CHECK_FALSE(subset_matches(reservations, {{"party_size", 2}}, dated));
    CHECK_FALSE(subset_matches(reservations, {{"notes", nullptr}, {"party_size", 2}}, dated));
    CHECK_FALSE(subset_matches(reservations, {{"notes", 20261207}, {"party_size", 2}}, dated));
}

TEST_CASE("subset: JSON scalars compare as the typed query compares them", "[subset]") {
    using detail::json_scalar_order;
    CHECK(json_scalar_order(json::value("a"), json::value("b")) == -1);
    CHECK(json_scalar_order(json::value("b"), json::value("a")) == 1);
    CHECK(json_scalar_order(json::value("\xc3\xa9"), json::value("z")) == 1); // bytes, unsigned
    CHECK(json_scalar_order(json::value(false), json::value(true)) == -1);
    CHECK(json_scalar_order(json::value(-1), json::value(std::uint64_t(1) << 63)) == -1);
    CHECK(json_scalar_order(json::value(std::uint64_t(1) << 63), json::value(-1)) == 1);
    CHECK(json_scalar_order(json::value(-5), json::value(-2)) == -1);
    CHECK(json_scalar_order(json::value(std::uint64_t(9007199254740993)),
                            json::value(std::int64_t(9007199254740992))) == 1); // exact
    CHECK(json_scalar_order(json::value(2), json::value(2.5)) == -1);
    CHECK(json_scalar_order(json::value(3), json::value(3.0)) == 0);
    CHECK_FALSE(json_scalar_order(json::value(1), json::value("1")));
    CHECK_FALSE(json_scalar_order(json::value(nullptr), json::value(nullptr)));
    CHECK_FALSE(json_scalar_order(json::value(json::array{}), json::value(json::array{})));
    CHECK_FALSE(json_scalar_order(json::value(true), json::value(1)));
}

#include <offsync/detail/subset_state.hpp>

TEST_CASE("subset: the device's state, stored and changed", "[subset]") {
    using namespace offsync::detail;
    sync_subset home;
    home.groups = std::vector<std::string>{"home"};
    sync_subset both;
    both.groups = std::vector<std::string>{"home", "work"};

    CHECK(encode_subset_state({}).empty());
    REQUIRE(decode_subset_state(""));
    CHECK(decode_subset_state("")->subset.everything());
    device_subset_state s{both, subset_backfill{home, 42}, 7};
    const auto text = encode_subset_state(s);
    const auto back = decode_subset_state(text);
    REQUIRE(back);
    CHECK(back->subset == both);
    REQUIRE(back->backfill);
    CHECK(back->backfill->held == home);
    CHECK(back->backfill->until == 42);
    CHECK(back->backfill_cursor == 7);
    for (const char* broken : {"{", "[]", "{}", R"({"subset": 1})", R"({"subset": {"x": 1}})",
                               R"({"subset": {}, "backfill": {"held": {}}})",
                               R"({"subset": {}, "backfill": {"held": {}, "until": -1, "cursor": 0}})"})
        CHECK_FALSE(decode_subset_state(broken));

    CHECK(subset_within(home, both));
    CHECK_FALSE(subset_within(both, home));
    CHECK(subset_within(both, sync_subset{}));
    CHECK_FALSE(subset_within(sync_subset{}, both));
    sync_subset open_home = home;
    open_home.where.conditions.push_back({"bought", compare_op::equal, false});
    CHECK_FALSE(subset_within(open_home, home)); // could tell, but does not try: a backfill
    CHECK_FALSE(subset_within(home, open_home));

    // Never pulled: the new subset from the start.
    auto c = plan_subset_change(device_subset_state{home}, both, 0);
    CHECK_FALSE(c.restart);
    CHECK_FALSE(c.next.backfill);
    // Widening: a backfill of what it adds, up to the cursor.
    c = plan_subset_change(device_subset_state{home}, both, 30);
    CHECK_FALSE(c.restart);
    REQUIRE(c.next.backfill);
    CHECK(c.next.backfill->held == home);
    CHECK(c.next.backfill->until == 30);
    CHECK(c.next.subset == both);
    // Narrowing: nothing to fetch.
    c = plan_subset_change(device_subset_state{both}, home, 30);
    CHECK_FALSE(c.restart);
    CHECK_FALSE(c.next.backfill);
    // A state that cannot be read, or a change during a backfill: from 0.
    CHECK(plan_subset_change(std::nullopt, home, 30).restart);
    CHECK(plan_subset_change(device_subset_state{both, subset_backfill{home, 9}, 3}, home, 30).restart);
}
