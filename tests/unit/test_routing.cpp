// The HTTP server's router (`server::detail::route`, `read_error`), without sockets: which
// requests reach the service, and the status, headers and error body of every refusal.
#include "../support/models.hpp"

#include <offsync/server/http_server.hpp>
#include <offsync/testing/faulty_server_store.hpp>

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include <optional>
#include <string>
#include <string_view>

using namespace offsync;
using namespace offsync_test;
using server::detail::http_request;
using server::detail::route;
using server::detail::routed;
namespace http = boost::beast::http;
namespace json = boost::json;
using Catch::Contains;

namespace {

/// A service with the tests' collections, one landmark, and two users' tokens.
struct router_world {
    server::sync_service service;
    server::authenticator auth = [](std::string_view token) -> std::optional<std::string> {
        if (token == "alice-token") return "alice";
        if (token == "bob-token") return "bob";
        return std::nullopt;
    };

    router_world() {
        service.add_collection<Landmark>();
        service.add_collection<Reservation>();
        service.admin_put("landmarks", to_json_object(half_dome()));
    }

    routed answer(http::verb method, std::string_view target, std::string_view token = "alice-token",
                  std::string body = {}, std::string_view content_type = "application/json",
                  bool stopping = false) {
        http_request req{method, std::string(target), 11};
        if (!token.empty()) req.set(http::field::authorization, "Bearer " + std::string(token));
        if (!content_type.empty()) req.set(http::field::content_type, content_type);
        req.body() = std::move(body);
        req.prepare_payload();
        return route(service, auth, req, stopping);
    }
};

json::object body_of(const routed& r) {
    auto jv = json::parse(r.response.body());
    REQUIRE(jv.is_object());
    return jv.as_object();
}

/// An error answer: its status, `{"error": {"code", "message"}}` and the log's error code.
void check_refusal(const routed& r, unsigned status, std::string_view code) {
    INFO(r.response.body());
    CHECK(r.response.result_int() == status);
    CHECK(r.response[http::field::content_type] == "application/json");
    const auto body = body_of(r);
    REQUIRE(body.contains("error"));
    CHECK(body.at("error").at("code").as_string() == code);
    CHECK(!body.at("error").at("message").as_string().empty());
    CHECK(r.error == code);
}

std::string push_of(std::string_view client, std::string_view id, std::int64_t party) {
    return R"({"client_id": ")" + std::string(client) +
           R"(", "mutations": [{"mutation_id": 1, "collection": "reservations", "id": ")" +
           std::string(id) + R"(", "op": "upsert", "base_version": 0, "stamp": {"wall": 1, )"
           R"("logical": 0, "node": "p"}, "fields": {"party_size": )" +
           std::to_string(party) + "}}]}";
}

} // namespace

TEST_CASE("routing: health answers without a token, and says when the server drains",
          "[routing]") {
    router_world w;
    auto ok = w.answer(http::verb::get, "/healthz", "");
    CHECK(ok.response.result_int() == 200);
    CHECK(body_of(ok).at("status") == "ok");
    CHECK(body_of(ok).at("last_version") == w.service.last_version());
    auto draining = w.answer(http::verb::get, "/healthz", "", {}, "", true);
    CHECK(draining.response.result_int() == 503);
    CHECK(body_of(draining).at("status") == "stopping");
    auto posted = w.answer(http::verb::post, "/healthz", "");
    check_refusal(posted, 405, "method_not_allowed");
    CHECK(posted.response[http::field::allow] == "GET");
}

TEST_CASE("routing: health is not ready while the store cannot be read", "[routing][ops]") {
    server::memory_server_store memory;
    server::faulty_server_store store(memory);
    server::service_config no_cache;
    no_cache.health_check_interval = std::chrono::milliseconds::zero();
    server::sync_service service(store, no_cache);
    service.add_collection<Landmark>();
    server::authenticator nobody = [](std::string_view) { return std::optional<std::string>(); };
    auto health = [&](bool stopping = false) {
        http_request req{http::verb::get, "/healthz", 11};
        return route(service, nobody, req, stopping);
    };
    CHECK(health().response.result_int() == 200);
    bool failing = true;
    store.set_fault_hook([&](std::string_view op) { return failing && op == "check_readable"; });
    auto down = health();
    CHECK(down.response.result_int() == 503);
    CHECK(body_of(down).at("status") == "unavailable");
    CHECK(body_of(down).at("storage") == "failed");
    // The store's message (it may name a file) is not told to whoever asks.
    CHECK(down.response.body().find("injected") == std::string::npos);
    CHECK(body_of(health(true)).at("status") == "stopping");
    // Stopping answers without reading the store.
    int reads = 0;
    store.set_fault_hook([&](std::string_view op) {
        reads += op == "check_readable";
        return false;
    });
    CHECK(health(true).response.result_int() == 503);
    CHECK(reads == 0);
    // A verdict is kept for the interval: many health checks, one read.
    server::memory_server_store other_memory;
    server::faulty_server_store counted(other_memory);
    int counted_reads = 0;
    counted.set_fault_hook([&](std::string_view op) {
        counted_reads += op == "check_readable";
        return false;
    });
    server::sync_service cached(counted); // the default interval, 1 s
    for (int i = 0; i < 50; ++i) CHECK_FALSE(cached.check_storage());
    CHECK(counted_reads == 1);
    failing = false;
    auto back = health();
    CHECK(back.response.result_int() == 200);
    CHECK(body_of(back).at("storage") == "ready");
}

TEST_CASE("routing: everything else needs an accepted Bearer token, and reveals nothing without",
          "[routing]") {
    router_world w;
    for (const char* target : {"/v1/sync/pull?collection=landmarks", "/v1/landmarks",
                               "/v1/no-such-collection/1", "/nowhere"}) {
        INFO(target);
        auto missing = w.answer(http::verb::get, target, "");
        check_refusal(missing, 401, "unauthorized");
        CHECK(missing.response[http::field::www_authenticate] == "Bearer");
        CHECK_THAT(std::string(body_of(missing).at("error").at("message").as_string()),
                   Contains("missing"));
        CHECK(missing.user.empty());
        auto wrong = w.answer(http::verb::get, target, "mallory-token");
        check_refusal(wrong, 401, "unauthorized");
        CHECK_THAT(std::string(body_of(wrong).at("error").at("message").as_string()),
                   Contains("not accepted"));
    }
    SECTION("another scheme is no token; the scheme's case does not matter") {
        http_request req{http::verb::get, "/v1/landmarks", 11};
        req.set(http::field::authorization, "Basic YWxpY2U6cHc=");
        check_refusal(route(w.service, w.auth, req, false), 401, "unauthorized");
        req.set(http::field::authorization, "bearer   alice-token ");
        auto r = route(w.service, w.auth, req, false);
        CHECK(r.response.result_int() == 200);
        CHECK(r.user == "alice");
    }
    SECTION("no authenticator accepts nobody") {
        http_request req{http::verb::get, "/v1/landmarks", 11};
        req.set(http::field::authorization, "Bearer alice-token");
        check_refusal(route(w.service, server::authenticator{}, req, false), 401, "unauthorized");
    }
}

TEST_CASE("routing: the sync endpoints take their method and media type, and map the service's "
          "refusals to statuses",
          "[routing]") {
    router_world w;
    const auto before = w.service.last_version();
    SECTION("push") {
        auto ok = w.answer(http::verb::post, "/v1/sync/push", "alice-token", push_of("p", "r-1", 2));
        CHECK(ok.response.result_int() == 200);
        CHECK(body_of(ok).at("results").at(0).at("status") == "applied");
        CHECK(ok.user == "alice");
        CHECK(ok.error.empty());
        auto got = w.answer(http::verb::get, "/v1/sync/push");
        check_refusal(got, 405, "method_not_allowed");
        CHECK(got.response[http::field::allow] == "POST");
        check_refusal(w.answer(http::verb::post, "/v1/sync/push", "alice-token",
                               push_of("p", "r-2", 2), "text/plain"),
                      415, "unsupported_media_type");
        check_refusal(w.answer(http::verb::post, "/v1/sync/push", "alice-token", "{nope"), 400,
                      "malformed_json");
        check_refusal(w.answer(http::verb::post, "/v1/sync/push", "alice-token",
                               push_of("", "r-2", 2)),
                      400, "invalid_field");
        CHECK(w.service.last_version() == before + 1); // only the good push wrote
    }
    SECTION("a media type with parameters and in another case is JSON") {
        auto ok = w.answer(http::verb::post, "/v1/sync/push", "alice-token", push_of("p", "r-1", 2),
                           "Application/JSON; charset=utf-8");
        CHECK(ok.response.result_int() == 200);
    }
    SECTION("pull") {
        auto ok = w.answer(http::verb::get, "/v1/sync/pull?collection=landmarks&since=0");
        CHECK(ok.response.result_int() == 200);
        CHECK(body_of(ok).at("changes").as_array().size() == 1);
        auto posted = w.answer(http::verb::post, "/v1/sync/pull?collection=landmarks");
        check_refusal(posted, 405, "method_not_allowed");
        CHECK(posted.response[http::field::allow] == "GET");
        check_refusal(w.answer(http::verb::get, "/v1/sync/pull?collection=landmarks&since=x"), 400,
                      "invalid_field");
        check_refusal(w.answer(http::verb::get, "/v1/sync/pull?collection=nope"), 404,
                      "unknown_collection");
        check_refusal(w.answer(http::verb::get, "/v1/sync/pull?collection=landmarks&since=99"),
                      400, "cursor_ahead");
        check_refusal(w.answer(http::verb::get, "/v1/sync/pull"), 404, "unknown_collection");
    }
}

TEST_CASE("routing: REST paths, their segments and their methods", "[routing]") {
    router_world w;
    REQUIRE(w.answer(http::verb::post, "/v1/sync/push", "alice-token", push_of("p", "r-1", 2))
                .response.result_int() == 200);
    SECTION("paths that name nothing") {
        for (const char* target : {"/v2/landmarks", "/v1/", "/v1/landmarks/1/more", "/"})
            check_refusal(w.answer(http::verb::get, target), 404, "not_found");
        check_refusal(w.answer(http::verb::get, "/v1/%zz"), 404, "unknown_collection");
        check_refusal(w.answer(http::verb::get, "/v1/nope"), 404, "unknown_collection");
        check_refusal(w.answer(http::verb::get, "/v1/reservations/%zz"), 400, "invalid_id");
        check_refusal(w.answer(http::verb::get, "/v1/reservations/"), 400, "invalid_id");
        check_refusal(w.answer(http::verb::get, "/v1/landmarks/abc"), 400, "invalid_id");
    }
    SECTION("a collection: GET only") {
        auto list = w.answer(http::verb::get, "/v1/reservations");
        CHECK(list.response.result_int() == 200);
        CHECK(body_of(list).at("records").as_array().size() == 1);
        // Another user's records are not listed.
        auto bobs = w.answer(http::verb::get, "/v1/reservations", "bob-token");
        CHECK(body_of(bobs).at("records").as_array().empty());
        auto posted = w.answer(http::verb::post, "/v1/reservations");
        check_refusal(posted, 405, "method_not_allowed");
        CHECK(posted.response[http::field::allow] == "GET");
    }
    SECTION("a record: GET, PUT, DELETE, with ETag and If-Match") {
        auto got = w.answer(http::verb::get, "/v1/reservations/r%2D1"); // percent-decoded
        REQUIRE(got.response.result_int() == 200);
        const auto version = body_of(got).at("version").as_int64();
        CHECK(got.response[http::field::etag] == '"' + std::to_string(version) + '"');
        check_refusal(w.answer(http::verb::get, "/v1/reservations/r-9"), 404, "not_found");
        check_refusal(w.answer(http::verb::get, "/v1/reservations/r-1", "bob-token"), 404,
                      "not_found");

        auto put = [&](std::string body, std::string if_match, std::string_view type =
                                                                   "application/json") {
            http_request req{http::verb::put, "/v1/reservations/r-1", 11};
            req.set(http::field::authorization, "Bearer alice-token");
            req.set(http::field::content_type, type);
            if (!if_match.empty()) req.set(http::field::if_match, if_match);
            req.body() = std::move(body);
            req.prepare_payload();
            return route(w.service, w.auth, req, false);
        };
        auto updated = put(R"({"party_size": 5})", '"' + std::to_string(version) + '"');
        REQUIRE(updated.response.result_int() == 200);
        CHECK(body_of(updated).at("value").at("party_size") == 5);
        const auto now = body_of(updated).at("version").as_int64();
        CHECK(updated.response[http::field::etag] == '"' + std::to_string(now) + '"');

        auto stale = put(R"({"party_size": 6})", std::to_string(version)); // quotes optional
        check_refusal(stale, 409, "version_conflict");
        CHECK(body_of(stale).at("server").at("value").at("party_size") == 5);
        CHECK(stale.response[http::field::etag] == '"' + std::to_string(now) + '"');

        check_refusal(put(R"({"party_size": 6})", "\"v1\""), 400, "invalid_field");
        check_refusal(put(R"({"party_size": 6})", "\"9007199254740992\""), 400, "invalid_field");
        check_refusal(put(R"({"party_size": 6})", "", "text/plain"), 415,
                      "unsupported_media_type");
        check_refusal(put("{oops", ""), 400, "malformed_json");
        check_refusal(put("[1, 2]", ""), 400, "malformed_json");
        check_refusal(put(R"({"party_size": "six"})", ""), 400, "invalid_field");
        check_refusal(put(R"({"colour": "red"})", ""), 400, "unknown_field");
        CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 5);

        auto patched = w.answer(http::verb::patch, "/v1/reservations/r-1");
        check_refusal(patched, 405, "method_not_allowed");
        CHECK(patched.response[http::field::allow] == "GET, PUT, DELETE");

        auto removed = w.answer(http::verb::delete_, "/v1/reservations/r-1");
        REQUIRE(removed.response.result_int() == 200);
        CHECK(body_of(removed).at("deleted") == true);
        check_refusal(w.answer(http::verb::delete_, "/v1/reservations/r-1"), 404, "not_found");
        check_refusal(w.answer(http::verb::get, "/v1/reservations/r-1"), 404, "not_found");
    }
    SECTION("a client may not write a shared catalog's shared fields") {
        http_request req{http::verb::put, "/v1/landmarks/1", 11};
        req.set(http::field::authorization, "Bearer alice-token");
        req.set(http::field::content_type, "application/json");
        req.body() = R"({"name": "Mine"})";
        req.prepare_payload();
        check_refusal(route(w.service, w.auth, req, false), 403, "read_only");
        CHECK(w.service.get("alice", "landmarks", "1")->value.at("name") == "Half Dome");
    }
}

TEST_CASE("routing: a request Beast could not read is answered by what went wrong",
          "[routing]") {
    using server::detail::read_error;
    check_refusal(read_error(http::error::body_limit), 413, "batch_too_large");
    check_refusal(read_error(http::error::header_limit), 431, "headers_too_large");
    check_refusal(read_error(http::error::bad_method), 400, "malformed_json");
}

TEST_CASE("routing: framing the server will not trust is refused before routing",
          "[routing][bad-input]") {
    using server::detail::framing_refusal;
    auto with_encoding = [](std::string_view te) {
        http_request req{http::verb::post, "/v1/sync/push", 11};
        req.set(http::field::transfer_encoding, te);
        return req;
    };
    // Beast reads these bodies as empty: trusting them would parse the body as a request.
    for (const char* te : {"gzip", "identity", "xchunked", "chunked, identity", "gzip, chunked",
                           ""}) {
        INFO("Transfer-Encoding: " << te);
        auto refused = framing_refusal(with_encoding(te));
        REQUIRE(refused);
        check_refusal(*refused, 400, "malformed_json");
        CHECK_THAT(std::string(body_of(*refused).at("error").at("message").as_string()),
                   Contains("Transfer-Encoding"));
    }
    CHECK_FALSE(framing_refusal(with_encoding("chunked")));
    // HTTP/1.0 has no transfer codings at all.
    auto old_chunked = with_encoding("chunked");
    old_chunked.version(10);
    REQUIRE(framing_refusal(old_chunked));
    check_refusal(*framing_refusal(old_chunked), 400, "malformed_json");
    CHECK_FALSE(framing_refusal(with_encoding(" Chunked ")));
    CHECK_FALSE(framing_refusal(http_request{http::verb::get, "/v1/landmarks", 11}));
    CHECK_FALSE(framing_refusal(http_request{http::verb::get, "/v1/landmarks", 10}));
    for (unsigned version : {9u, 12u, 20u}) {
        INFO("version " << version);
        auto refused = framing_refusal(http_request{http::verb::get, "/v1/landmarks", version});
        REQUIRE(refused);
        check_refusal(*refused, 400, "malformed_json");
    }
}

TEST_CASE("routing: a change stream needs HTTP/1.1", "[routing][live]") {
    router_world w;
    http_request req{http::verb::get, "/v1/stream", 10};
    req.set(http::field::authorization, "Bearer alice-token");
    auto r = route(w.service, w.auth, req, false);
    check_refusal(r, 400, "malformed_json");
    CHECK_FALSE(r.stream);
    req.version(11);
    CHECK(route(w.service, w.auth, req, false).stream);
}

TEST_CASE("limits: a user's requests are a token bucket, and idle users are forgotten",
          "[routing][limits]") {
    using server::detail::request_rate_limiter;
    using namespace std::chrono_literals;
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
    request_rate_limiter limit(2.0, 3.0, 4); // 2 a second, bursts of 3
    CHECK(limit.enabled());
    for (int i = 0; i < 3; ++i) CHECK_FALSE(limit.admit("alice", t0));
    auto refused = limit.admit("alice", t0);
    REQUIRE(refused);
    CHECK(*refused == 1s); // half a second, said in whole seconds
    CHECK_FALSE(limit.admit("bob", t0)); // another user has a bucket of their own
    CHECK(limit.admit("alice", t0 + 100ms)); // 0.2 of a token
    CHECK_FALSE(limit.admit("alice", t0 + 500ms)); // one token refilled
    CHECK(limit.admit("alice", t0 + 500ms));
    // A long wait refills to the burst, never beyond.
    const auto later = t0 + 1h;
    for (int i = 0; i < 3; ++i) CHECK_FALSE(limit.admit("alice", later));
    CHECK(limit.admit("alice", later));
    // A slow rate says how many seconds.
    request_rate_limiter slow(0.1, 1.0);
    CHECK_FALSE(slow.admit("carol", t0));
    CHECK(slow.admit("carol", t0) == std::optional<std::chrono::seconds>(10s));
    // Memory: users whose buckets have refilled are dropped to make room.
    for (int i = 0; i < 100; ++i)
        CHECK_FALSE(limit.admit("user-" + std::to_string(i), later + std::chrono::seconds(10 * i)));
    CHECK(limit.tracked() <= 5);
    // No limit: everything passes, nothing is kept.
    request_rate_limiter none(0, 0);
    CHECK_FALSE(none.enabled());
    for (int i = 0; i < 10'000; ++i) CHECK_FALSE(none.admit("alice", t0));
    CHECK(none.tracked() == 0);
}

TEST_CASE("limits: connections are counted per address", "[routing][limits]") {
    server::detail::address_counter counter(2);
    CHECK(counter.open("10.0.0.1"));
    CHECK(counter.open("10.0.0.1"));
    CHECK_FALSE(counter.open("10.0.0.1"));
    CHECK(counter.open("10.0.0.2"));
    counter.close("10.0.0.1");
    CHECK(counter.open("10.0.0.1"));
    counter.close("10.0.0.1");
    counter.close("10.0.0.1");
    counter.close("10.0.0.2");
    CHECK(counter.addresses() == 0);
    counter.close("10.0.0.9"); // never opened: nothing happens
    server::detail::address_counter unlimited(0);
    for (int i = 0; i < 1000; ++i) CHECK(unlimited.open("10.0.0.1"));
    CHECK(unlimited.addresses() == 0);
}

TEST_CASE("routing: a request the user's limit refuses is answered 429 with Retry-After",
          "[routing][limits]") {
    router_world w;
    int asked = 0;
    server::detail::request_admission refuse_alice =
        [&](std::string_view user) -> std::optional<std::chrono::seconds> {
        ++asked;
        if (user == "alice") return std::chrono::seconds(3);
        return std::nullopt;
    };
    http_request pull{http::verb::get, "/v1/sync/pull?collection=landmarks", 11};
    pull.set(http::field::authorization, "Bearer alice-token");
    auto r = route(w.service, w.auth, pull, false, true, refuse_alice);
    check_refusal(r, 429, "too_many_requests");
    CHECK(r.response[http::field::retry_after] == "3");
    CHECK(r.user == "alice");
    pull.set(http::field::authorization, "Bearer bob-token");
    CHECK(route(w.service, w.auth, pull, false, true, refuse_alice).response.result_int() == 200);
    // Neither health nor a refused token is counted against anyone.
    const int before = asked;
    http_request health{http::verb::get, "/healthz", 11};
    CHECK(route(w.service, w.auth, health, false, true, refuse_alice).response.result_int() == 200);
    pull.set(http::field::authorization, "Bearer mallory-token");
    CHECK(route(w.service, w.auth, pull, false, true, refuse_alice).response.result_int() == 401);
    CHECK(asked == before);
    CHECK(offsync::http_status(make_error_code(errc::too_many_requests)) == 429);
    CHECK(error_code(errc::too_many_requests) == condition::retry_later);
}
