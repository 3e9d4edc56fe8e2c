// The one percent-decoder, as path segments and query values use it, and the named limits.
#include <offsync/protocol.hpp>

#include <catch2/catch.hpp>

#include <string>

using offsync::detail::percent_decode;

TEST_CASE("percent_decode: escapes, plus signs and broken escapes", "[protocol][unit]") {
    std::string out = "left over";
    CHECK(percent_decode("", out, false));
    CHECK(out.empty());
    CHECK(percent_decode("r-1%2Fa%20b", out, false));
    CHECK(out == "r-1/a b");
    CHECK(percent_decode("%e2%82%AC", out, false)); // either case of hex digit
    CHECK(out == "\xe2\x82\xac");
    CHECK(percent_decode("%00", out, false));
    CHECK(out == std::string(1, '\0'));
    // '+' is a space in a query value, itself in a path segment.
    CHECK(percent_decode("a+b%2B", out, true));
    CHECK(out == "a b+");
    CHECK(percent_decode("a+b", out, false));
    CHECK(out == "a+b");
    for (const char* broken : {"%", "%2", "a%", "%zz", "%-1", "%+1", "%2g", "ab%4"}) {
        INFO(broken);
        CHECK(!percent_decode(broken, out, false));
        CHECK(!percent_decode(broken, out, true));
    }
}

TEST_CASE("client ids: 1 to max_client_id_length bytes, in pushes and pulls",
          "[protocol][unit]") {
    using offsync::max_client_id_length;
    CHECK(offsync::detail::valid_client_id(std::string(max_client_id_length, 'c')));
    CHECK(!offsync::detail::valid_client_id(std::string(max_client_id_length + 1, 'c')));
    CHECK(!offsync::detail::valid_client_id(""));
    offsync::pull_request r;
    const auto at_limit = "collection=c&client_id=" + std::string(max_client_id_length, 'c');
    CHECK(!offsync::parse_pull_query(at_limit, r));
    CHECK(r.client_id.size() == max_client_id_length);
    auto d = offsync::parse_pull_query(at_limit + "c", r);
    CHECK(d.code == offsync::errc::invalid_field);
    CHECK(d.message == "'client_id' must be 1 to 128 bytes");
    CHECK(offsync::parse_pull_query("collection=c&client_id=%zz", r).code ==
          offsync::errc::invalid_field);
    CHECK(!offsync::parse_pull_query("collection=a%2Bb+c", r));
    CHECK(r.collection == "a+b c");
}
