// Typed queries as predicates and as data, without a store.
#include "../support/models.hpp"

#include <offsync/changes.hpp>
#include <offsync/query.hpp>

#include <catch2/catch.hpp>

using namespace offsync;
using offsync_test::Reservation;
using offsync_test::Landmark;
using offsync_test::reservation;

TEST_CASE("query: comparisons of described fields, as predicates and as data", "[query]") {
    auto q = field(&Reservation::party_size) >= 2 && field(&Reservation::status) == "confirmed";
    CHECK(q.matches(reservation("a", "confirmed", 2)));
    CHECK_FALSE(q.matches(reservation("a", "confirmed", 1)));
    CHECK_FALSE(q.matches(reservation("a", "cancelled", 3)));
    auto spec = q.spec();
    REQUIRE(spec.conditions.size() == 2);
    CHECK(spec.conditions[0].field == "party_size");
    CHECK(spec.conditions[0].op == compare_op::greater_equal);
    CHECK(spec.conditions[0].operand == 2);
    CHECK(spec.conditions[1].field == "status");
    CHECK(spec.conditions[1].operand == "confirmed");

    Landmark l;
    l.is_featured = true;
    l.latitude = 37.5;
    CHECK((field(&Landmark::is_featured) == true).matches(l));
    CHECK((field(&Landmark::latitude) > 37.0 && field(&Landmark::latitude) <= 37.5).matches(l));
    CHECK_FALSE((field(&Landmark::latitude) < 37.5).matches(l));
    CHECK((field(&Landmark::latitude) != 1.0).matches(l));
    CHECK(query<Landmark>{}.matches(l));
    CHECK(query<Landmark>{}.empty());
}

namespace query_test {
struct Sneaky {
    std::string id;
    int hidden = 0; // not described
};
BOOST_DESCRIBE_STRUCT(Sneaky, (), (id))
} // namespace query_test
using query_test::Sneaky;
template <>
struct offsync::model_traits<Sneaky> {
    static constexpr std::string_view collection = "sneaky";
    static constexpr auto key = &Sneaky::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

TEST_CASE("query: a member the description leaves out is refused", "[query][bad-input]") {
    try {
        (void)field(&Sneaky::hidden);
        FAIL("accepted");
    } catch (const sync_error& e) {
        CHECK(e.code() == errc::invalid_field);
        CHECK_THAT(e.what(), Catch::Contains("BOOST_DESCRIBE_STRUCT"));
    }
}

TEST_CASE("query: key texts back to keys, and records that do not decode", "[query][bad-input]") {
    CHECK(key_from_text<Landmark>("42") == 42);
    CHECK(key_from_text<Reservation>("r1") == "r1");
    CHECK_THROWS_AS(key_from_text<Landmark>("4x"), sync_error);
    CHECK_THROWS_AS(key_from_text<Landmark>(""), sync_error);
    CHECK_THROWS_AS(key_from_text<Landmark>("99999999999999999999"), sync_error);

    auto value = to_json_object(reservation("r1"));
    Reservation out;
    CHECK_FALSE(decode_record<Reservation>("r1", value, out));
    CHECK(out.id == "r1");
    value["party_size"] = "many";
    auto d = decode_record<Reservation>("r1", value, out);
    CHECK(d.code == errc::undecodable_record);
    CHECK_THAT(d.message, Catch::Contains("reservations/r1") && Catch::Contains("party_size"));
}
