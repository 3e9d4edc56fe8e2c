// parse_server_url: the server given as a URL, checked where the app configures it.
#include <offsync/transport/server_url.hpp>

#include <catch2/catch.hpp>

using offsync::errc;
using offsync::parse_server_url;

TEST_CASE("server url: host, port and base path", "[server-url]") {
    auto plain = parse_server_url("http://sync.example.com");
    CHECK(plain.host == "sync.example.com");
    CHECK(plain.port == 80);
    CHECK(plain.base_path.empty());

    auto full = parse_server_url("http://127.0.0.1:8090/api/");
    CHECK(full.host == "127.0.0.1");
    CHECK(full.port == 8090);
    CHECK(full.base_path == "/api"); // a trailing slash would double the routes' own

    auto v6 = parse_server_url("http://[::1]:65535/x");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 65535);
    CHECK(v6.base_path == "/x");
    CHECK(parse_server_url("http://[::1]").port == 80);
}

TEST_CASE("server url: what cannot work is refused, saying why", "[server-url][bad-input]") {
    struct bad {
        const char* url;
        const char* why;
    };
    for (const auto& c : {bad{"", "expected http://"},
                          bad{"127.0.0.1:8080", "expected http://"},
                          bad{"ftp://host", "expected http://"},
                          bad{"https://host", "TLS"},
                          bad{"http://", "no host"},
                          bad{"http://:8080", "no host"},
                          bad{"http://host:", "empty port"},
                          bad{"http://host:0", "1 to 65535"},
                          bad{"http://host:65536", "1 to 65535"},
                          bad{"http://host:80x", "1 to 65535"},
                          bad{"http://host:-1", "1 to 65535"},
                          bad{"http://user:pw@host", "user info"},
                          bad{"http://host/p?q=1", "query"},
                          bad{"http://host#f", "fragment"},
                          bad{"http://::1:8080", "brackets"},
                          bad{"http://[::1", "unterminated"},
                          bad{"http://[::1]x", "after the IPv6"}}) {
        INFO(c.url);
        try {
            parse_server_url(c.url);
            FAIL("accepted");
        } catch (const offsync::sync_error& e) {
            CHECK(e.code() == errc::invalid_configuration);
            CHECK_THAT(e.what(), Catch::Contains(c.why) && Catch::Contains(std::string("'") + c.url + "'"));
        }
    }
}
