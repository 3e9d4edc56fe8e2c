// How a described struct becomes a collection (model.hpp): the schema make_schema builds from
// model_traits, who may write which field, the dirty-field mask, record ids in JSON and the
// normal form of a record.
#include <offsync/model.hpp>

#include <catch2/catch.hpp>

#include <boost/describe/class.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace model_test {

/// Members described in another order than declared, an unsigned key among members of its own
/// type, and members of several kinds with non-trivial defaults.
struct book {
    std::uint32_t shelf = 3;
    std::uint32_t isbn = 0;
    std::string title = "untitled";
    std::optional<std::string> subtitle;
    double price = 9.5;
    std::vector<std::string> tags;
    bool lent = false;
};
BOOST_DESCRIBE_STRUCT(book, (), (title, isbn, shelf, lent, price, subtitle, tags))

/// Per-user and declared not client-writable: per-user scope lets the client write anyway.
struct diary_entry {
    std::string id;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(diary_entry, (), (id, text))

/// Per-user with nothing declared.
struct memo {
    std::int64_t id = 0;
    std::string body;
};
BOOST_DESCRIBE_STRUCT(memo, (), (id, body))

/// Shared, declared read-only, no per-user fields: clients write nothing.
struct exchange_rate {
    std::string code;
    double rate = 1.0;
};
BOOST_DESCRIBE_STRUCT(exchange_rate, (), (code, rate))

/// Shared and client-writable with a per-user field.
struct wiki_page {
    std::string slug;
    std::string body;
    bool starred = false;
};
BOOST_DESCRIBE_STRUCT(wiki_page, (), (slug, body, starred))

/// 52 members, the most one BOOST_DESCRIBE_STRUCT lists: dirty bits above 31.
struct wide {
    std::int64_t id = 0;
    int f01 = 0, f02 = 0, f03 = 0, f04 = 0, f05 = 0, f06 = 0, f07 = 0, f08 = 0, f09 = 0, f10 = 0,
        f11 = 0, f12 = 0, f13 = 0, f14 = 0, f15 = 0, f16 = 0, f17 = 0, f18 = 0, f19 = 0, f20 = 0,
        f21 = 0, f22 = 0, f23 = 0, f24 = 0, f25 = 0, f26 = 0, f27 = 0, f28 = 0, f29 = 0, f30 = 0,
        f31 = 0, f32 = 0, f33 = 0, f34 = 0, f35 = 0, f36 = 0, f37 = 0, f38 = 0, f39 = 0, f40 = 0,
        f41 = 0, f42 = 0, f43 = 0, f44 = 0, f45 = 0, f46 = 0, f47 = 0, f48 = 0, f49 = 0, f50 = 0,
        f51 = 51;
};
BOOST_DESCRIBE_STRUCT(wide, (),
                      (id, f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14,
                       f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29,
                       f30, f31, f32, f33, f34, f35, f36, f37, f38, f39, f40, f41, f42, f43, f44,
                       f45, f46, f47, f48, f49, f50, f51))

/// Described, but with no model_traits.
struct untracked {
    int id = 0;
};
BOOST_DESCRIBE_STRUCT(untracked, (), (id))

/// Traits, but not described.
struct undescribed {
    int id = 0;
};

} // namespace model_test

template <>
struct offsync::model_traits<model_test::book> {
    static constexpr std::string_view collection = "books";
    static constexpr auto key = &model_test::book::isbn;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr std::array<std::string_view, 2> per_user_fields{"lent", "shelf"};
};

template <>
struct offsync::model_traits<model_test::diary_entry> {
    static constexpr std::string_view collection = "diary";
    static constexpr auto key = &model_test::diary_entry::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    static constexpr bool client_writable = false;
};

template <>
struct offsync::model_traits<model_test::memo> {
    static constexpr std::string_view collection = "memos";
    static constexpr auto key = &model_test::memo::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

template <>
struct offsync::model_traits<model_test::exchange_rate> {
    static constexpr std::string_view collection = "rates";
    static constexpr auto key = &model_test::exchange_rate::code;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr bool client_writable = false;
};

template <>
struct offsync::model_traits<model_test::wiki_page> {
    static constexpr std::string_view collection = "pages";
    static constexpr auto key = &model_test::wiki_page::slug;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr bool client_writable = true;
    static constexpr std::array<std::string_view, 1> per_user_fields{"starred"};
};

template <>
struct offsync::model_traits<model_test::wide> {
    static constexpr std::string_view collection = "wide";
    static constexpr auto key = &model_test::wide::id;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr std::array<std::string_view, 2> per_user_fields{"f40", "f51"};
};

template <>
struct offsync::model_traits<model_test::undescribed> {
    static constexpr std::string_view collection = "undescribed";
    static constexpr auto key = &model_test::undescribed::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

using namespace offsync;
using namespace model_test;
namespace json = boost::json;
using Catch::Contains;

namespace {

json::object parse_object(std::string_view text) {
    auto jv = json::parse(text);
    REQUIRE(jv.is_object());
    return jv.get_object();
}

/// A hand-built schema of `n` fields: what a schema assembled at run time looks like.
collection_schema schema_with(std::size_t n) {
    collection_schema s;
    s.name = "generated";
    for (std::size_t i = 0; i < n; ++i) s.fields.push_back("f" + std::to_string(i));
    return s;
}

std::vector<std::size_t> writable_fields(const collection_schema& s) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < s.fields.size(); ++i)
        if (s.client_may_write(i)) out.push_back(i);
    return out;
}

} // namespace

TEST_CASE("only a described struct with model_traits is a synced model", "[model]") {
    STATIC_REQUIRE(synced_model<book>);
    STATIC_REQUIRE(synced_model<wide>);
    STATIC_REQUIRE_FALSE(synced_model<untracked>);
    STATIC_REQUIRE_FALSE(synced_model<undescribed>);
    STATIC_REQUIRE_FALSE(synced_model<int>);
    STATIC_REQUIRE(std::is_same_v<key_type_t<book>, std::uint32_t>);
    STATIC_REQUIRE(std::is_same_v<key_type_t<exchange_rate>, std::string>);
}

TEST_CASE("a schema lists the fields in Describe order and finds the key among members of its "
          "type",
          "[model]") {
    const auto& s = schema_of<book>();
    CHECK(s.name == "books");
    CHECK(s.fields == std::vector<std::string>{"title", "isbn", "shelf", "lent", "price",
                                               "subtitle", "tags"});
    // isbn and shelf are both std::uint32_t members: the key is the one the traits point at.
    CHECK(s.key_field == "isbn");
    CHECK(s.key == key_kind::integer); // unsigned integers are integer ids too
    CHECK(s.field_index("title") == std::optional<std::size_t>(0));
    CHECK(s.field_index("tags") == std::optional<std::size_t>(6));
    CHECK_FALSE(s.field_index("Title"));
    CHECK(s.all_fields_mask() == 0x7F);

    const auto& rates = schema_of<exchange_rate>();
    CHECK(rates.key_field == "code");
    CHECK(rates.key == key_kind::string);
}

TEST_CASE("a schema's defaults are a default-constructed record", "[model]") {
    const auto& s = schema_of<book>();
    CHECK(s.defaults == to_json_object(book{}));
    CHECK(s.defaults.size() == s.fields.size());
    CHECK(s.defaults.at("title") == "untitled");
    CHECK(s.defaults.at("isbn") == 0);
    CHECK(s.defaults.at("shelf") == 3);
    CHECK(s.defaults.at("price") == 9.5);
    CHECK(s.defaults.at("subtitle").is_null());
    CHECK(s.defaults.at("tags") == json::array{});
    CHECK(s.defaults.at("lent") == false);
    CHECK(schema_of<wide>().defaults.at("f51") == 51);
}

TEST_CASE("schema_of builds a schema once, make_schema builds an equal one each call", "[model]") {
    CHECK(&schema_of<book>() == &schema_of<book>());
    CHECK(static_cast<const void*>(&schema_of<book>()) !=
          static_cast<const void*>(&schema_of<memo>()));
    const auto fresh = make_schema<book>();
    const auto& once = schema_of<book>();
    CHECK(fresh.name == once.name);
    CHECK(fresh.fields == once.fields);
    CHECK(fresh.key_field == once.key_field);
    CHECK(fresh.per_user_mask == once.per_user_mask);
    CHECK(fresh.defaults == once.defaults);
}

TEST_CASE("who may write which field: scope, client_writable and per-user fields", "[model]") {
    SECTION("shared, nothing declared: read-only but for its per-user fields") {
        const auto& s = schema_of<book>();
        CHECK(s.scope == scope::shared);
        CHECK_FALSE(s.client_writable);
        // per_user_fields names lent and shelf; bits follow the schema's order, not the list's.
        CHECK(s.per_user_mask == ((std::uint64_t{1} << 2) | (std::uint64_t{1} << 3)));
        CHECK(writable_fields(s) == std::vector<std::size_t>{2, 3});
    }
    SECTION("shared and declared read-only: nothing") {
        const auto& s = schema_of<exchange_rate>();
        CHECK_FALSE(s.client_writable);
        CHECK(s.per_user_mask == 0);
        CHECK(writable_fields(s).empty());
    }
    SECTION("shared and declared writable: every field, per-user ones included") {
        const auto& s = schema_of<wiki_page>();
        CHECK(s.client_writable);
        CHECK(s.per_user_mask == std::uint64_t{1} << 2);
        CHECK(writable_fields(s) == std::vector<std::size_t>{0, 1, 2});
    }
    SECTION("per-user, nothing declared: every field") {
        const auto& s = schema_of<memo>();
        CHECK(s.scope == scope::per_user);
        CHECK(s.client_writable);
        CHECK(writable_fields(s) == std::vector<std::size_t>{0, 1});
    }
    SECTION("per-user records are the user's own, even when declared not writable") {
        const auto& s = schema_of<diary_entry>();
        CHECK_FALSE(s.client_writable); // as declared
        CHECK(writable_fields(s) == std::vector<std::size_t>{0, 1});
    }
}

TEST_CASE("a 52-member model, the most Boost.Describe lists, keeps its dirty bits above 31",
          "[model]") {
    const auto& s = schema_of<wide>();
    REQUIRE(s.fields.size() == 52);
    CHECK(s.fields.front() == "id");
    CHECK(s.fields.back() == "f51");
    CHECK(s.key_field == "id");
    CHECK(s.field_index("f40") == std::optional<std::size_t>(40));
    CHECK(s.all_fields_mask() == (std::uint64_t{1} << 52) - 1);
    CHECK(s.per_user_mask == ((std::uint64_t{1} << 40) | (std::uint64_t{1} << 51)));
    CHECK(writable_fields(s) == std::vector<std::size_t>{40, 51});
    CHECK(!s.check_field(51, json::value(7)));
    CHECK_THAT(s.check_field(51, json::value("7")).message, Contains("'f51'"));
}

TEST_CASE("all_fields_mask has one bit per field, up to all 64", "[model]") {
    CHECK(schema_with(0).all_fields_mask() == 0);
    CHECK(schema_with(1).all_fields_mask() == 1);
    CHECK(schema_with(31).all_fields_mask() == 0x7FFF'FFFF);
    CHECK(schema_with(32).all_fields_mask() == 0xFFFF'FFFF);
    CHECK(schema_with(33).all_fields_mask() == 0x1'FFFF'FFFF);
    CHECK(schema_with(63).all_fields_mask() == std::numeric_limits<std::uint64_t>::max() >> 1);
    CHECK(schema_with(64).all_fields_mask() == std::numeric_limits<std::uint64_t>::max());

    // Field 63 as a per-user field of a read-only shared schema.
    auto s = schema_with(64);
    s.scope = scope::shared;
    s.client_writable = false;
    s.per_user_mask = std::uint64_t{1} << 63;
    CHECK(s.client_may_write(63));
    CHECK_FALSE(s.client_may_write(62));
    CHECK_FALSE(s.client_may_write(0));
}

TEST_CASE("check_field accepts each member's type and names the member when it does not",
          "[model]") {
    const auto& s = schema_of<book>();
    auto check = [&](std::string_view field, const json::value& v) {
        auto i = s.field_index(field);
        REQUIRE(i);
        return s.check_field(*i, v);
    };
    auto wrong = [&](std::string_view field, const json::value& v) {
        INFO(std::string(field) << " = " << json::serialize(v));
        const auto d = check(field, v);
        CHECK(d.code == errc::invalid_field);
        CHECK_THAT(d.message, Contains("'" + std::string(field) + "'"));
    };

    CHECK(!check("title", json::value("Dune")));
    CHECK(!check("title", json::value("")));
    wrong("title", json::value(5));
    wrong("title", json::value(nullptr));
    wrong("title", json::value(json::array{"Dune"}));

    CHECK(!check("isbn", json::value(0)));
    CHECK(!check("isbn", json::value(std::uint64_t{4'294'967'295})));
    CHECK(!check("isbn", json::value(5.0))); // an integral double converts
    wrong("isbn", json::value(-1));
    wrong("isbn", json::value(std::int64_t{1} << 32));
    wrong("isbn", json::value(5.5));
    wrong("isbn", json::value("5"));

    CHECK(!check("lent", json::value(true)));
    wrong("lent", json::value(1));
    wrong("lent", json::value("true"));

    CHECK(!check("price", json::value(10.25)));
    CHECK(!check("price", json::value(10))); // an integer is a number too
    wrong("price", json::value("10"));

    CHECK(!check("subtitle", json::value(nullptr)));
    CHECK(!check("subtitle", json::value("A novel")));
    wrong("subtitle", json::value(3));

    CHECK(!check("tags", json::value(json::array{"sf", "classic"})));
    CHECK(!check("tags", json::value(json::array{})));
    wrong("tags", json::value(json::array{"sf", 1}));
    wrong("tags", json::value("sf"));

    // The message says what is wrong.
    CHECK(check("isbn", json::value("5")).message == "field 'isbn' has the wrong type");
    // An index past the last field checks nothing: callers resolve names first.
    CHECK(!s.check_field(s.fields.size(), json::value("anything")));
}

TEST_CASE("string ids are 1 to 256 bytes of JSON string, nothing else", "[model]") {
    const auto& s = schema_of<wiki_page>();
    std::string key = "untouched";
    CHECK(!key_from_json(s, json::value("home"), key));
    CHECK(key == "home");
    CHECK(!key_from_json(s, json::value("x"), key));
    CHECK(key == "x");
    const std::string longest(max_id_length, 'p');
    CHECK(!key_from_json(s, json::value(longest), key));
    CHECK(key == longest);
    // Any bytes a JSON string holds: spaces, slashes, digits.
    CHECK(!key_from_json(s, json::value("a b/c?d"), key));
    CHECK(key == "a b/c?d");
    CHECK(!key_from_json(s, json::value("42"), key));
    CHECK(key == "42");

    key = "untouched";
    for (const json::value& bad :
         {json::value(""), json::value(std::string(max_id_length + 1, 'p')), json::value(42),
          json::value(std::uint64_t{42}), json::value(4.2), json::value(nullptr),
          json::value(false), json::value(json::array{"home"}),
          json::value(json::object{{"slug", "home"}})}) {
        INFO(json::serialize(bad));
        const auto d = key_from_json(s, bad, key);
        CHECK(d.code == errc::invalid_id);
        CHECK_THAT(d.message, Contains("256"));
    }
    CHECK(key == "untouched");
}

TEST_CASE("integer ids are JSON integers that fit an int64", "[model]") {
    const auto& s = schema_of<memo>();
    std::string key = "untouched";
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    constexpr auto min = std::numeric_limits<std::int64_t>::min();

    CHECK(!key_from_json(s, json::value(0), key));
    CHECK(key == "0");
    CHECK(!key_from_json(s, json::value(min), key));
    CHECK(key == "-9223372036854775808");
    CHECK(!key_from_json(s, json::value(max), key));
    CHECK(key == "9223372036854775807");
    // An unsigned JSON integer within range is the same id.
    CHECK(!key_from_json(s, json::value(std::uint64_t(max)), key));
    CHECK(key == "9223372036854775807");
    CHECK(!key_from_json(s, json::parse("-9223372036854775808"), key));
    CHECK(key == "-9223372036854775808");

    key = "untouched";
    for (const json::value& bad :
         {json::value(std::uint64_t(max) + 1),
          json::value(std::numeric_limits<std::uint64_t>::max()),
          json::parse("18446744073709551615"), json::parse("1e3"), json::value(1.0),
          json::value("7"), json::value(""), json::value(nullptr), json::value(true),
          json::value(json::array{7})}) {
        INFO(json::serialize(bad));
        const auto d = key_from_json(s, bad, key);
        CHECK(d.code == errc::invalid_id);
        CHECK_THAT(d.message, Contains("integer"));
    }
    CHECK(key == "untouched");
}

TEST_CASE("key_to_json gives back the id key_from_json read, of the collection's kind",
          "[model]") {
    const auto& ints = schema_of<memo>();
    for (const json::value& id :
         {json::value(0), json::value(-1), json::value(12345),
          json::value(std::numeric_limits<std::int64_t>::min()),
          json::value(std::numeric_limits<std::int64_t>::max())}) {
        INFO(json::serialize(id));
        std::string key;
        REQUIRE(!key_from_json(ints, id, key));
        const auto back = key_to_json(ints, key);
        CHECK(back.is_int64());
        CHECK(back == id);
    }
    // An unsigned id comes back as the same number, signed.
    std::string key;
    REQUIRE(!key_from_json(ints, json::value(std::uint64_t{77}), key));
    CHECK(key_to_json(ints, key).is_int64());
    CHECK(key_to_json(ints, key) == 77);

    const auto& strings = schema_of<wiki_page>();
    for (const char* id : {"home", "42", "-1", " padded ", "caf\xC3\xA9"}) {
        INFO(id);
        REQUIRE(!key_from_json(strings, json::value(id), key));
        const auto back = key_to_json(strings, key);
        CHECK(back.is_string()); // a digit string stays a string
        CHECK(back == json::value(id));
    }
}

TEST_CASE("the key text of a model value", "[model]") {
    book b;
    b.isbn = 4'000'000'000u; // above INT32_MAX: unsigned all the way
    CHECK(key_of(b) == "4000000000");
    wiki_page p;
    p.slug = "home";
    CHECK(key_of(p) == "home");
    memo m;
    m.id = -5;
    CHECK(key_of(m) == "-5");
    // The text key_from_json gives for the same id.
    std::string key;
    REQUIRE(!key_from_json(schema_of<book>(), json::value(b.isbn), key));
    CHECK(key == key_of(b));
}

TEST_CASE("normalize reads missing fields as defaults and drops unknown ones", "[model]") {
    const auto& s = schema_of<book>();
    const auto in = parse_object(R"({"isbn": 7, "title": "Dune", "publisher": "Chilton"})");
    const auto out = normalize(s, in);
    CHECK(out.size() == s.fields.size());
    CHECK(out.at("title") == "Dune");
    CHECK(out.at("isbn") == 7);
    CHECK(out.at("shelf") == 3);
    CHECK(out.at("subtitle").is_null());
    CHECK_FALSE(out.contains("publisher"));
    CHECK(in.size() == 3); // the source is left as it was
    CHECK(normalize(s, json::object{}) == s.defaults);
    // A present null is a value, not a missing field.
    CHECK(normalize(s, parse_object(R"({"title": null})")).at("title").is_null());

    SECTION("a record of exactly the schema's fields is taken over without a copy") {
        auto exact = to_json_object(book{});
        exact["title"] = "Dune";
        const auto* first = &*exact.begin();
        auto taken = normalize(s, std::move(exact));
        CHECK(&*taken.begin() == first);
        CHECK(taken.at("title") == "Dune");
    }
    SECTION("as many fields but one unknown is not of the schema's shape") {
        auto odd = to_json_object(book{});
        odd.erase("price");
        odd["publisher"] = "Chilton";
        odd["shelf"] = 8;
        REQUIRE(odd.size() == s.fields.size());
        auto out2 = normalize(s, std::move(odd));
        CHECK(out2.size() == s.fields.size());
        CHECK(out2.at("price") == 9.5);
        CHECK(out2.at("shelf") == 8);
        CHECK_FALSE(out2.contains("publisher"));
    }
}
