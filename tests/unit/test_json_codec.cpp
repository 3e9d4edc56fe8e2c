// The tolerant JSON codec of described structs, the ISO 8601 time codec, and collection schemas.
#include "../support/models.hpp"

#include <offsync/json_codec.hpp>

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <chrono>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace codec_test {

struct inner_part {
    int a = 0;
    std::string b = "b-default";
};
BOOST_DESCRIBE_STRUCT(inner_part, (), (a, b))

/// Optional members, a nested described struct and a container.
struct profile {
    std::optional<std::string> nickname;
    std::optional<int> score = 7;
    std::optional<std::chrono::system_clock::time_point> seen;
    inner_part inner;
    std::vector<int> tags;
};
BOOST_DESCRIBE_STRUCT(profile, (), (nickname, score, seen, inner, tags))

/// A shared, client-writable model whose key is not its first string member.
struct note {
    std::string title;
    std::string slug;
    std::int32_t rank = 0;
    bool pinned = false;
};
BOOST_DESCRIBE_STRUCT(note, (), (title, slug, rank, pinned))

/// A model whose per_user_fields names a member it does not have.
struct broken {
    std::string id;
    bool flag = false;
};
BOOST_DESCRIBE_STRUCT(broken, (), (id, flag))

} // namespace codec_test

template <>
struct offsync::model_traits<codec_test::note> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &codec_test::note::slug;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr bool client_writable = true;
};

template <>
struct offsync::model_traits<codec_test::broken> {
    static constexpr std::string_view collection = "broken";
    static constexpr auto key = &codec_test::broken::id;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr std::array<std::string_view, 1> per_user_fields{"flg"};
};

using namespace offsync;
using namespace offsync_test;
namespace json = boost::json;
using Catch::Contains;
using sys_ms = std::chrono::sys_time<std::chrono::milliseconds>;

namespace {

json::object parse_object(std::string_view text) {
    auto jv = json::parse(text);
    REQUIRE(jv.is_object());
    return jv.get_object();
}

std::chrono::system_clock::time_point at(int y, unsigned mo, unsigned d, int h, int mi, int s,
                                         int ms = 0) {
    using namespace std::chrono;
    return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s} +
           milliseconds{ms};
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Round trips

TEST_CASE("a landmark survives a JSON round trip", "[codec]") {
    auto l = half_dome();
    l.is_favorite = true;
    l.image_name = "halfdome";
    l.latitude = 37.7459;
    l.longitude = -119.5332;

    const auto obj = to_json_object(l);
    CHECK(obj.size() == 11);
    CHECK(obj.at("id") == 1);
    CHECK(obj.at("name") == "Half Dome");
    CHECK(obj.at("is_featured") == true);
    CHECK(obj.at("is_favorite") == true);
    CHECK(obj.at("latitude") == 37.7459);

    // Through text, as it travels.
    const auto text = json::serialize(obj);
    Landmark back;
    auto d = from_json_object(parse_object(text), back);
    CHECK(!d);
    CHECK(back.id == 1);
    CHECK(back.name == l.name);
    CHECK(back.state == l.state);
    CHECK(back.city == l.city);
    CHECK(back.category == l.category);
    CHECK(back.is_featured == l.is_featured);
    CHECK(back.is_favorite == l.is_favorite);
    CHECK(back.image_name == l.image_name);
    CHECK(back.latitude == l.latitude);
    CHECK(back.longitude == l.longitude);
    CHECK(back.description == l.description);
    CHECK(to_json_object(back) == obj);

    // The throwing form agrees.
    CHECK(to_json_object(from_json<Landmark>(json::parse(text))) == obj);
}

TEST_CASE("a reservation survives a JSON round trip, date to the millisecond", "[codec]") {
    auto r = reservation("r-1", "cancelled", 5);
    r.landmark_id = 1001;
    r.date = at(2026, 11, 25, 15, 25, 15, 123);
    r.notes = "window seat, \"please\" \xC3\xA9";

    const auto obj = to_json_object(r);
    CHECK(obj.size() == 6);
    CHECK(obj.at("date") == "2026-11-25T15:25:15.123Z");
    CHECK(obj.at("party_size") == 5);
    CHECK(obj.at("landmark_id") == 1001);

    auto back = from_json<Reservation>(json::parse(json::serialize(obj)));
    CHECK(back.id == "r-1");
    CHECK(back.landmark_id == 1001);
    CHECK(back.date == r.date);
    CHECK(back.party_size == 5);
    CHECK(back.status == "cancelled");
    CHECK(back.notes == r.notes);
}

// ---------------------------------------------------------------------------------------------
// Tolerant decoding

TEST_CASE("decoding is tolerant of missing and unknown members", "[codec]") {
    SECTION("a missing member keeps the default of a fresh value") {
        auto r = from_json<Reservation>(parse_object(R"({"id": "r-7"})"));
        CHECK(r.id == "r-7");
        CHECK(r.landmark_id == 0);
        CHECK(r.party_size == 1);
        CHECK(r.status == "confirmed");
        CHECK(r.notes.empty());
        CHECK(r.date == std::chrono::system_clock::time_point{});
    }
    SECTION("a missing member keeps what the target already holds") {
        auto r = reservation("r-1", "cancelled", 4);
        r.notes = "keep me";
        CHECK(!from_json_object(parse_object(R"({"party_size": 9})"), r));
        CHECK(r.party_size == 9);
        CHECK(r.notes == "keep me");
        CHECK(r.status == "cancelled");
        CHECK(r.id == "r-1");
    }
    SECTION("an unknown member is ignored") {
        Reservation r;
        auto d = from_json_object(
            parse_object(R"({"id": "r-2", "future_field": [1, 2], "party_size": 3})"), r);
        CHECK(!d);
        CHECK(r.id == "r-2");
        CHECK(r.party_size == 3);
    }
    SECTION("an empty object yields the defaults") {
        CHECK(to_json_object(from_json<Landmark>(json::object{})) == to_json_object(Landmark{}));
    }
}

TEST_CASE("a member of the wrong type is invalid_field naming the member", "[codec]") {
    struct bad_case {
        const char* json;
        const char* member;
    };
    const bad_case cases[] = {
        {R"({"party_size": "two"})", "party_size"},
        {R"({"party_size": 3000000000})", "party_size"}, // beyond int32
        {R"({"party_size": 2.5})", "party_size"},        // not an integer
        {R"({"party_size": null})", "party_size"},
        {R"({"status": 5})", "status"},
        {R"({"status": ["cancelled"]})", "status"},
        {R"({"landmark_id": true})", "landmark_id"},
        {R"({"landmark_id": "1"})", "landmark_id"},
        {R"({"date": 1764000000})", "date"},
        {R"({"date": "tomorrow"})", "date"},
        {R"({"id": 17})", "id"},
    };
    for (const auto& c : cases) {
        INFO(c.json);
        Reservation r;
        auto d = from_json_object(parse_object(c.json), r);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains(std::string("'") + c.member + "'"));
        try {
            (void)from_json<Reservation>(json::parse(c.json));
            FAIL("from_json did not throw");
        } catch (const sync_error& e) {
            CHECK(e.code() == errc::invalid_field);
            CHECK_THAT(std::string(e.what()), Contains(c.member));
        }
    }
    // A date's message says what a good one looks like.
    Reservation r;
    auto d = from_json_object(parse_object(R"({"date": "2026-11-25"})"), r);
    CHECK_THAT(d.message, Contains("ISO 8601"));

    // The landmark's bool and double members are strict too.
    Landmark l;
    CHECK(from_json_object(parse_object(R"({"is_favorite": 1})"), l).code == errc::invalid_field);
    CHECK(from_json_object(parse_object(R"({"latitude": "37.7"})"), l).code == errc::invalid_field);
    // An integer is a fine double.
    CHECK(!from_json_object(parse_object(R"({"latitude": 37})"), l));
    CHECK(l.latitude == 37.0);
}

TEST_CASE("from_json throws sync_error on anything but an object", "[codec]") {
    for (const char* text : {"[]", "[1, 2]", "\"r-1\"", "42", "null", "true"}) {
        INFO(text);
        try {
            (void)from_json<Reservation>(json::parse(text));
            FAIL("from_json did not throw");
        } catch (const sync_error& e) {
            CHECK(e.code() == errc::malformed_json);
        }
        Landmark sink;
        CHECK_THROWS_AS(sink = from_json<Landmark>(json::parse(text)), sync_error);
    }
}

// ---------------------------------------------------------------------------------------------
// ISO 8601

TEST_CASE("ISO 8601 times format as UTC with milliseconds", "[codec]") {
    using namespace std::chrono;
    CHECK(format_iso8601(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
    CHECK(format_iso8601(at(2026, 11, 25, 15, 25, 15, 123)) == "2026-11-25T15:25:15.123Z");
    CHECK(format_iso8601(at(2024, 2, 29, 23, 59, 59, 999)) == "2024-02-29T23:59:59.999Z");
    // Below a millisecond is dropped, not rounded.
    CHECK(format_iso8601(at(2026, 1, 2, 3, 4, 5, 6) + microseconds{999}) ==
          "2026-01-02T03:04:05.006Z");
    // Before the epoch, the instant floors towards the past.
    CHECK(format_iso8601(system_clock::time_point{} - milliseconds{1}) ==
          "1969-12-31T23:59:59.999Z");
}

TEST_CASE("ISO 8601 times round trip and accept only UTC", "[codec]") {
    using namespace std::chrono;
    SECTION("format then parse gives the same millisecond") {
        for (auto tp : {at(2026, 11, 25, 15, 25, 15, 123), at(1999, 12, 31, 23, 59, 59, 999),
                        at(2000, 1, 1, 0, 0, 0, 0), at(2024, 2, 29, 12, 0, 0, 1),
                        system_clock::time_point{}}) {
            const auto text = format_iso8601(tp);
            INFO(text);
            auto back = parse_iso8601(text);
            REQUIRE(back);
            CHECK(*back == tp);
        }
        // Sub-millisecond input round trips to its millisecond.
        auto fine = at(2026, 5, 6, 7, 8, 9, 10) + microseconds{456};
        CHECK(parse_iso8601(format_iso8601(fine)) == floor<milliseconds>(fine));
    }
    SECTION("accepted spellings") {
        const auto want = at(2026, 11, 25, 15, 25, 15, 0);
        CHECK(parse_iso8601("2026-11-25T15:25:15Z") == want);
        CHECK(parse_iso8601("2026-11-25T15:25:15z") == want);
        CHECK(parse_iso8601("2026-11-25T15:25:15+00:00") == want);
        CHECK(parse_iso8601("2026-11-25t15:25:15Z") == want);
        CHECK(parse_iso8601("2026-11-25 15:25:15Z") == want);
        CHECK(parse_iso8601("2026-11-25T15:25:15.123+00:00") == want + milliseconds{123});
        CHECK(parse_iso8601("2026-11-25T15:25:15.5Z") == want + milliseconds{500});
        CHECK(parse_iso8601("2026-11-25T15:25:15.12Z") == want + milliseconds{120});
        CHECK(parse_iso8601("2026-11-25T15:25:15.123456789Z") == want + milliseconds{123});
        CHECK(parse_iso8601("2024-02-29T00:00:00Z") == at(2024, 2, 29, 0, 0, 0));
    }
    SECTION("rejected: offsets other than UTC") {
        for (const char* s : {"2026-11-25T15:25:15+01:00", "2026-11-25T15:25:15-05:00",
                              "2026-11-25T15:25:15-00:00", "2026-11-25T15:25:15+0000",
                              "2026-11-25T15:25:15.123+02:00", "2026-11-25T15:25:15+00"}) {
            INFO(s);
            CHECK(!parse_iso8601(s));
        }
    }
    SECTION("rejected: impossible dates and times") {
        for (const char* s :
             {"2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
              "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z",
              "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:61Z"}) {
            INFO(s);
            CHECK(!parse_iso8601(s));
        }
    }
    SECTION("rejected: garbage and missing parts") {
        for (const char* s :
             {"", "garbage", "2026-11-25", "2026-11-25T15:25:15", "2026-11-25T15:25:15.123",
              "2026-11-25T15:25Z", "2026-11-25T15:25:15.Z", "2026-11-25T15:25:15ZZ",
              "2026-11-25T15:25:15Z ", " 2026-11-25T15:25:15Z", "2026/11/25T15:25:15Z",
              "2026-11-25X15:25:15Z", "26-11-25T15:25:15Z", "2026-1-25T15:25:15Z",
              "2026-11-25T15-25-15Z", "2026-11-25T1a:25:15Z", "+2026-11-25T15:25:15Z",
              "2026-11-25T15:25:15.12a3Z"}) {
            INFO(s);
            CHECK(!parse_iso8601(s));
        }
    }
    SECTION("a time member of a described struct decodes only UTC") {
        Reservation r;
        CHECK(!from_json_object(parse_object(R"({"date": "2026-12-24T18:30:00+00:00"})"), r));
        CHECK(r.date == at(2026, 12, 24, 18, 30, 0));
        auto d = from_json_object(parse_object(R"({"date": "2026-12-24T18:30:00+01:00"})"), r);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'date'"));
        CHECK(r.date == at(2026, 12, 24, 18, 30, 0)); // untouched by the failed decode

        // A coarser time point type decodes too.
        sys_ms coarse{};
        std::string why;
        CHECK(field_codec<sys_ms>::decode(json::value("2026-12-24T18:30:00.250Z"), coarse, why));
        CHECK(coarse == at(2026, 12, 24, 18, 30, 0, 250));
        CHECK(field_codec<sys_ms>::encode(coarse) == "2026-12-24T18:30:00.250Z");
    }
}

TEST_CASE("a time outside its type's range is refused, never wrapped into another date",
          "[codec][bad-input]") {
    using namespace std::chrono;
    std::string why;
    SECTION("the system clock's own type: 1677-09-21 to 2262-04-11") {
        using field = field_codec<system_clock::time_point>;
        system_clock::time_point out = at(2026, 1, 1, 0, 0, 0);
        const auto before = out;
        // These wrapped around through a signed overflow: 2300-01-01 read as 1715-06-13.
        for (const char* s : {"2300-01-01T00:00:00.000Z", "9999-12-31T00:00:00.000Z",
                              "1600-01-01T00:00:00.000Z", "0000-01-01T00:00:00.000Z",
                              "2262-04-11T23:47:16.855Z", "1677-09-21T00:12:43.145Z"}) {
            INFO(s);
            why.clear();
            CHECK_FALSE(field::decode(json::value(s), out, why));
            CHECK_THAT(why, Contains("1677-09-21T00:12:43.146Z to 2262-04-11T23:47:16.854Z") &&
                                Contains(s));
            CHECK(out == before);
        }
        // Its very ends are held, and round trip.
        for (const char* s : {"2262-04-11T23:47:16.854Z", "1677-09-21T00:12:43.146Z"}) {
            INFO(s);
            REQUIRE(field::decode(json::value(s), out, why));
            CHECK(field::encode(out) == s);
        }
        // A model's member decodes alike, naming it.
        Reservation r;
        auto d = from_json_object(parse_object(R"({"date": "2300-01-01T00:00:00Z"})"), r);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'date'") && Contains("range of its type"));
    }
    SECTION("a millisecond type holds every four-digit year") {
        sys_ms out{};
        for (const char* s : {"0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                              "1600-02-29T12:00:00.000Z", "2300-01-01T00:00:00.000Z"}) {
            INFO(s);
            REQUIRE(field_codec<sys_ms>::decode(json::value(s), out, why));
            CHECK(field_codec<sys_ms>::encode(out) == s);
        }
        // A year of five digits has no ISO 8601 text here: encoding refuses it.
        const sys_ms far = sys_days{year{10000} / 1 / 1};
        CHECK_THROWS_AS(field_codec<sys_ms>::encode(far), sync_error);
        const sys_ms before_zero = sys_days{year{-1} / 12 / 31};
        CHECK_THROWS_AS(field_codec<sys_ms>::encode(before_zero), sync_error);
        CHECK_FALSE(parse_iso8601(format_iso8601(far)));
        // A coarse type's extreme values (a "never" sentinel) are refused, not overflowed.
        CHECK_THROWS_AS(field_codec<sys_seconds>::encode(sys_seconds::max()), sync_error);
        CHECK_THROWS_AS(field_codec<sys_days>::encode(sys_days::min()), sync_error);
        CHECK(field_codec<sys_days>::encode(sys_days{year{2026} / 12 / 8}) ==
              "2026-12-08T00:00:00.000Z");
    }
    SECTION("a floating-point count holds every four-digit year") {
        using micro_f = duration<double, std::micro>;
        CHECK(time_point_holds<micro_f>(wire_time{sys_days{year{9999} / 12 / 31}}));
        CHECK(time_point_range_text<micro_f>() ==
              "0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z");
    }
    SECTION("a 32-bit count of seconds ends in 2038") {
        using seconds32 = duration<std::int32_t>;
        using field = field_codec<time_point<system_clock, seconds32>>;
        time_point<system_clock, seconds32> out{};
        REQUIRE(field::decode(json::value("2038-01-19T03:14:07Z"), out, why));
        CHECK(out.time_since_epoch().count() == std::numeric_limits<std::int32_t>::max());
        CHECK_FALSE(field::decode(json::value("2038-01-19T03:14:08Z"), out, why));
        CHECK_THAT(why, Contains("2038-01-19T03:14:07.999Z"));
        REQUIRE(field::decode(json::value("1901-12-13T20:45:52Z"), out, why));
        CHECK(out.time_since_epoch().count() == std::numeric_limits<std::int32_t>::min());
        CHECK_FALSE(field::decode(json::value("1901-12-13T20:45:51Z"), out, why));
    }
    SECTION("time_point_holds asks the same question without decoding") {
        CHECK(time_point_holds<system_clock::duration>(wire_time{sys_days{year{2262} / 4 / 11}}));
        CHECK_FALSE(time_point_holds<system_clock::duration>(wire_time{sys_days{year{2262} / 4 / 12}}));
        CHECK_FALSE(time_point_holds<system_clock::duration>(wire_time{sys_days{year{1677} / 9 / 21}}));
        CHECK(time_point_holds<system_clock::duration>(wire_time{sys_days{year{1677} / 9 / 22}}));
        CHECK(time_point_holds<milliseconds>(wire_time{sys_days{year{9999} / 12 / 31}}));
        CHECK(time_point_holds<duration<double>>(wire_time{sys_days{year{9999} / 12 / 31}}));
    }
}

// ---------------------------------------------------------------------------------------------
// std::optional and nested structs

TEST_CASE("optional members are null when empty and decode null or a value", "[codec]") {
    using codec_test::profile;
    SECTION("encoding") {
        profile p;
        auto obj = to_json_object(p);
        CHECK(obj.at("nickname").is_null());
        CHECK(obj.at("score") == 7);
        CHECK(obj.at("seen").is_null());
        CHECK(obj.at("inner") == json::object{{"a", 0}, {"b", "b-default"}});
        CHECK(obj.at("tags") == json::array{});

        p.nickname = "ann";
        p.score.reset();
        p.seen = at(2026, 1, 2, 3, 4, 5, 6);
        p.tags = {3, 1};
        obj = to_json_object(p);
        CHECK(obj.at("nickname") == "ann");
        CHECK(obj.at("score").is_null());
        CHECK(obj.at("seen") == "2026-01-02T03:04:05.006Z");
        CHECK(obj.at("tags") == json::array{3, 1});
    }
    SECTION("decoding null empties, a value fills, absence keeps") {
        profile p;
        p.nickname = "before";
        auto d = from_json_object(parse_object(R"({"nickname": null, "score": 42,
                                                   "seen": "2026-01-02T03:04:05Z"})"),
                                  p);
        CHECK(!d);
        CHECK(!p.nickname);
        REQUIRE(p.score);
        CHECK(*p.score == 42);
        REQUIRE(p.seen);
        CHECK(*p.seen == at(2026, 1, 2, 3, 4, 5));

        CHECK(!from_json_object(parse_object(R"({"nickname": "ann"})"), p));
        CHECK(p.nickname == std::optional<std::string>("ann"));
        CHECK(p.score == std::optional<int>(42)); // absent: kept

        CHECK(!from_json_object(parse_object(R"({"score": null})"), p));
        CHECK(!p.score);
    }
    SECTION("a present value of the wrong type is still an error") {
        profile p;
        auto d = from_json_object(parse_object(R"({"score": "many"})"), p);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'score'"));
        d = from_json_object(parse_object(R"({"seen": "2026-01-02T03:04:05+02:00"})"), p);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'seen'"));
    }
    SECTION("round trip") {
        profile p;
        p.nickname = "zed";
        p.seen = at(2030, 6, 7, 8, 9, 10, 11);
        p.inner = {5, "five"};
        p.tags = {1, 2, 3};
        auto back = from_json<profile>(json::parse(json::serialize(to_json_object(p))));
        CHECK(back.nickname == p.nickname);
        CHECK(back.score == p.score);
        CHECK(back.seen == p.seen);
        CHECK(back.inner.a == 5);
        CHECK(back.inner.b == "five");
        CHECK(back.tags == p.tags);
    }
    SECTION("nested structs decode tolerantly and report the path") {
        codec_test::profile p;
        CHECK(!from_json_object(parse_object(R"({"inner": {"a": 3}})"), p));
        CHECK(p.inner.a == 3);
        CHECK(p.inner.b == "b-default");
        auto d = from_json_object(parse_object(R"({"inner": {"a": "x"}})"), p);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'inner'"));
        CHECK_THAT(d.message, Contains("'a'"));
        d = from_json_object(parse_object(R"({"inner": [1]})"), p);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("must be an object"));
        d = from_json_object(parse_object(R"({"tags": [1, "two"]})"), p);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'tags'"));
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas

TEST_CASE("the landmark schema: shared, integer keys, a per-user favorite", "[codec]") {
    const auto& s = schema_of<Landmark>();
    CHECK(&s == &schema_of<Landmark>()); // built once
    CHECK(s.name == "landmarks");
    CHECK(s.fields == std::vector<std::string>{"id", "name", "state", "city", "category",
                                               "is_featured", "is_favorite", "image_name",
                                               "latitude", "longitude", "description"});
    CHECK(s.key_field == "id");
    CHECK(s.key == key_kind::integer);
    CHECK(s.scope == scope::shared);
    CHECK_FALSE(s.client_writable);
    REQUIRE(s.field_index("is_favorite") == std::optional<std::size_t>(6));
    CHECK(s.per_user_mask == std::uint64_t{1} << 6);
    CHECK(s.all_fields_mask() == 0x7FF);
    CHECK(!s.field_index("nope"));
    CHECK(!s.field_index(""));
    for (std::size_t i = 0; i < s.fields.size(); ++i) {
        INFO(s.fields[i]);
        CHECK(s.client_may_write(i) == (s.fields[i] == "is_favorite"));
    }
    CHECK(s.defaults == to_json_object(Landmark{}));
    CHECK(s.defaults.at("is_favorite") == false);

    CHECK(!s.check_field(6, json::value(true)));
    auto d = s.check_field(6, json::value("yes"));
    CHECK(d.code == errc::invalid_field);
    CHECK_THAT(d.message, Contains("'is_favorite'"));
    CHECK(s.check_field(0, json::value("1")).code == errc::invalid_field);
    CHECK(!s.check_field(8, json::value(12.5)));
}

TEST_CASE("the reservation schema: per-user, string keys, all writable", "[codec]") {
    const auto& s = schema_of<Reservation>();
    CHECK(s.name == "reservations");
    CHECK(s.fields ==
          std::vector<std::string>{"id", "landmark_id", "date", "party_size", "status", "notes"});
    CHECK(s.key_field == "id");
    CHECK(s.key == key_kind::string);
    CHECK(s.scope == scope::per_user);
    CHECK(s.client_writable);
    CHECK(s.per_user_mask == 0);
    CHECK(s.all_fields_mask() == 0x3F);
    for (std::size_t i = 0; i < s.fields.size(); ++i)
        CHECK(s.client_may_write(i));
    CHECK(s.defaults.at("status") == "confirmed");
    CHECK(s.defaults.at("party_size") == 1);
    CHECK(s.defaults.at("date") == "1970-01-01T00:00:00.000Z");

    CHECK(!s.check_field(2, json::value("2026-12-24T00:00:00Z")));
    CHECK(s.check_field(2, json::value("2026-12-24")).code == errc::invalid_field);
    CHECK(s.check_field(3, json::value(std::int64_t{1} << 40)).code == errc::invalid_field);
    CHECK(!s.check_field(3, json::value(12)));
    // An index past the last field checks nothing: the caller resolves names first.
    CHECK(!s.check_field(99, json::value("anything")));
}

TEST_CASE("make_schema finds the key among members of the same type", "[codec]") {
    auto s = make_schema<codec_test::note>();
    CHECK(s.name == "notes");
    CHECK(s.fields == std::vector<std::string>{"title", "slug", "rank", "pinned"});
    CHECK(s.key_field == "slug"); // not "title", the first std::string member
    CHECK(s.key == key_kind::string);
    CHECK(s.scope == scope::shared);
    CHECK(s.client_writable); // declared
    CHECK(s.per_user_mask == 0);
    for (std::size_t i = 0; i < s.fields.size(); ++i)
        CHECK(s.client_may_write(i));

    codec_test::note n;
    n.slug = "hello";
    CHECK(key_of(n) == "hello");
    CHECK(key_of(half_dome()) == "1");
    CHECK(key_of(reservation("r-9")) == "r-9");
    CHECK(key_text(std::int64_t{-12}) == "-12");
}

TEST_CASE("make_schema rejects per_user_fields naming an unknown member", "[codec]") {
    try {
        (void)make_schema<codec_test::broken>();
        FAIL("make_schema did not throw");
    } catch (const std::logic_error& e) {
        CHECK_THAT(std::string(e.what()), Contains("flg"));
    }
}

TEST_CASE("key_from_json validates ids against the schema", "[codec]") {
    const auto& strings = schema_of<Reservation>();
    const auto& ints = schema_of<Landmark>();
    std::string key = "untouched";

    SECTION("string keys") {
        CHECK(!key_from_json(strings, json::value("r-1"), key));
        CHECK(key == "r-1");
        CHECK(key_to_json(strings, key) == "r-1");
        CHECK(key_to_json(strings, "42").is_string());

        std::string longest(max_id_length, 'x');
        CHECK(!key_from_json(strings, json::value(longest), key));
        CHECK(key == longest);
        // Bytes, not characters: 128 two-byte characters fit, 129 do not.
        std::string accents;
        for (int i = 0; i < 128; ++i)
            accents += "\xC3\xA9";
        CHECK(!key_from_json(strings, json::value(accents), key));
        accents += "\xC3\xA9";
        CHECK(key_from_json(strings, json::value(accents), key).code == errc::invalid_id);

        key = "untouched";
        for (const json::value& bad :
             {json::value(""), json::value(std::string(max_id_length + 1, 'x')), json::value(42),
              json::value(nullptr), json::value(true), json::value(json::array{"r-1"}),
              json::value(json::object{{"id", "r-1"}})}) {
            INFO(json::serialize(bad));
            auto d = key_from_json(strings, bad, key);
            CHECK(d.code == errc::invalid_id);
            CHECK_THAT(d.message, Contains("id"));
        }
        CHECK(key == "untouched");
    }
    SECTION("integer keys") {
        CHECK(!key_from_json(ints, json::value(42), key));
        CHECK(key == "42");
        CHECK(key_to_json(ints, key) == 42);
        CHECK(key_to_json(ints, key).is_int64());
        CHECK(!key_from_json(ints, json::value(-7), key));
        CHECK(key == "-7");
        CHECK(key_to_json(ints, key) == -7);
        CHECK(!key_from_json(ints, json::value(std::uint64_t{5}), key));
        CHECK(key == "5");
        CHECK(!key_from_json(ints, json::value(std::uint64_t(INT64_MAX)), key));
        CHECK(key == "9223372036854775807");
        CHECK(key_to_json(ints, key) == INT64_MAX);
        // Through the parser: 2^63 arrives as an unsigned integer that no int64 key holds.
        CHECK(key_from_json(ints, json::parse("9223372036854775808"), key).code ==
              errc::invalid_id);

        key = "untouched";
        for (const json::value& bad :
             {json::value("42"), json::value(4.0), json::value(nullptr), json::value(false),
              json::value(std::uint64_t(INT64_MAX) + 1), json::value(json::array{1})}) {
            INFO(json::serialize(bad));
            auto d = key_from_json(ints, bad, key);
            CHECK(d.code == errc::invalid_id);
            CHECK_THAT(d.message, Contains("integer"));
        }
        CHECK(key == "untouched");
    }
}

TEST_CASE("normalize lays a record over the defaults and drops unknown fields", "[codec]") {
    const auto& s = schema_of<Reservation>();
    auto n = normalize(s, parse_object(R"({"id": "r-1", "status": "cancelled", "extra": 1})"));
    CHECK(n.size() == s.fields.size());
    CHECK(n.at("id") == "r-1");
    CHECK(n.at("status") == "cancelled");
    CHECK(n.at("party_size") == 1);
    CHECK(n.at("notes") == "");
    CHECK(!n.contains("extra"));
    for (const auto& f : s.fields)
        CHECK(n.contains(f));

    CHECK(normalize(s, json::object{}) == s.defaults);
    const auto full = to_json_object(reservation("r-2", "cancelled", 8));
    CHECK(normalize(s, full) == full);
    // Values are copied as they are: normalize does not validate.
    CHECK(normalize(s, parse_object(R"({"party_size": "x"})")).at("party_size") == "x");
}
