// Live changes without sockets: the event text and its parser, the reconnection delays, and the
// server's registry of streams (who hears of what, coalescing, limits).
#include <offsync/live.hpp>
#include <offsync/protocol/http.hpp>
#include <offsync/server/live_hub.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using offsync::change_hint;
using offsync::live_event;
namespace live = offsync::live;
namespace server = offsync::server;

namespace {

std::vector<live_event> parse_in_pieces(std::string_view text, std::size_t piece) {
    live::event_parser p;
    std::vector<live_event> out;
    for (std::size_t i = 0; i < text.size(); i += piece)
        REQUIRE(p.feed(text.substr(i, piece), out));
    return out;
}

} // namespace

TEST_CASE("live events: what the server writes parses back, in pieces of any size", "[live]") {
    const auto text = live::ready_text(15s) + std::string(live::heartbeat_text) +
                      live::change_text({"reservations", 42}) +
                      live::change_text({"a \"quoted\"\nname", 7}) +
                      live::close_text(offsync::errc::unauthorized, "token revoked");
    for (std::size_t piece : {1u, 2u, 3u, 7u, 64u, 4096u}) {
        INFO("piece " << piece);
        const auto events = parse_in_pieces(text, piece);
        REQUIRE(events.size() == 4);
        CHECK(events[0].name == "ready");
        CHECK(live::parse_ready(events[0].data) == 15s);
        CHECK(events[1].name == "change");
        CHECK(live::parse_change(events[1].data) == change_hint{"reservations", 42});
        // A line break in a name travels escaped in the JSON: one data line still.
        CHECK(live::parse_change(events[2].data) == change_hint{"a \"quoted\"\nname", 7});
        CHECK(events[3].name == "close");
        const auto why = live::parse_close(events[3].data);
        CHECK(why.code == offsync::errc::unauthorized);
        CHECK(why.message == "token revoked");
    }
}

TEST_CASE("live events: the standard's line endings, comments, fields and multi-line data",
          "[live]") {
    const std::string text = ": a comment\r\n"
                             "id: 9\rretry: 100\r"
                             "event: change\r\n"
                             "data: {\"collection\":\r\n"
                             "data:\"c\",\"version\":1}\r\n\r\n"
                             "data: no name\n\n"
                             "event: empty\n\n" // no data: not dispatched
                             "field-without-colon\n"
                             "data\n\n"; // a data field without a value: an empty data line
    const auto events = parse_in_pieces(text, 1);
    REQUIRE(events.size() == 3);
    CHECK(events[0].name == "change");
    CHECK(events[0].data == "{\"collection\":\n\"c\",\"version\":1}");
    CHECK(live::parse_change(events[0].data) == change_hint{"c", 1});
    CHECK(events[1].name == "message");
    CHECK(events[1].data == "no name");
    CHECK(events[2].name == "message");
    CHECK(events[2].data.empty());
}

TEST_CASE("live events: a line over the limit stops the parser", "[live]") {
    live::event_parser p(16);
    std::vector<live_event> out;
    CHECK(p.feed("data: 0123456789\n", out)); // 16 bytes on the line: at the limit
    CHECK_FALSE(p.feed("data: 0123456789abcdef", out));
    // Many short data lines of one event: their sum is bounded too.
    live::event_parser q(16);
    CHECK(q.feed("data: 0123\ndata: 4567\n", out));
    CHECK_FALSE(q.feed("data: 89ab\n", out));
}

TEST_CASE("live events: bad payloads are told apart, never thrown", "[live]") {
    for (std::string_view bad : {"", "null", "[]", "{}", "{\"collection\":\"\",\"version\":1}",
                                 "{\"collection\":1,\"version\":1}",
                                 "{\"collection\":\"c\",\"version\":-1}",
                                 "{\"collection\":\"c\",\"version\":\"1\"}",
                                 "{\"collection\":\"c\"", "{\"collection\":\"c\",\"version\":1.5}"}) {
        INFO(bad);
        CHECK_FALSE(live::parse_change(bad));
    }
    CHECK(live::parse_change("{\"collection\":\"c\",\"version\":18446744073709551615,\"x\":1}") ==
          change_hint{"c", 18446744073709551615ull});
    for (std::string_view bad : {"", "{}", "{\"heartbeat_ms\":0}", "{\"heartbeat_ms\":-5}",
                                 "{\"heartbeat_ms\":\"15\"}", "{\"heartbeat_ms\":86400001}"}) {
        INFO(bad);
        CHECK_FALSE(live::parse_ready(bad));
    }
    const auto unreadable = live::parse_close("not json");
    CHECK(unreadable.code == offsync::errc::server_error);
    const auto unknown = live::parse_close("{\"error\":{\"code\":\"no_such_code\",\"message\":\"m\"}}");
    CHECK(unknown.code == offsync::errc::server_error);
    CHECK(unknown.message == "m");
}

TEST_CASE("live reconnection: doubling to the cap, jitter only shortens, the server's wait wins",
          "[live]") {
    std::mt19937_64 random(7);
    CHECK(live::reconnect_delay(1, 1s, 60s, 0, random) == 1s);
    CHECK(live::reconnect_delay(2, 1s, 60s, 0, random) == 2s);
    CHECK(live::reconnect_delay(4, 1s, 60s, 0, random) == 8s);
    CHECK(live::reconnect_delay(100, 1s, 60s, 0, random) == 60s);
    CHECK(live::reconnect_delay(0, 1s, 60s, 0, random) == 1s);
    for (int i = 0; i < 200; ++i) {
        const auto d = live::reconnect_delay(3, 1s, 60s, 0.5, random);
        CHECK(d > 2s);
        CHECK(d <= 4s);
    }
    CHECK(live::reconnect_delay(1, 1s, 60s, 0.5, random, 30s) == 30s);
    CHECK(live::reconnect_delay(10, 1s, 8s, 0, random, 2s) == 8s);
}

namespace {

struct listener {
    std::shared_ptr<server::live_subscription> sub;
    int wakes = 0;
};

std::unique_ptr<listener> listen(server::live_hub& hub, std::string user, std::string client) {
    auto l = std::make_unique<listener>();
    offsync::diagnostics why;
    auto* raw = l.get();
    l->sub = hub.subscribe(std::move(user), std::move(client), [raw] { ++raw->wakes; }, why);
    REQUIRE(l->sub);
    CHECK(!why);
    return l;
}

server::live_news news_for(std::vector<std::string> users, std::string collection,
                           std::uint64_t version) {
    server::live_news n;
    n.collection = std::move(collection);
    n.version = version;
    n.users = std::move(users);
    return n;
}

} // namespace

TEST_CASE("live hub: news reaches the streams of the users named, and only theirs", "[live]") {
    auto hub = server::live_hub::make();
    auto alice_phone = listen(*hub, "alice", "phone");
    auto alice_laptop = listen(*hub, "alice", "laptop");
    auto bob = listen(*hub, "bob", "phone"); // the same client id, another user
    hub->publish(news_for({"alice"}, "reservations", 5));
    CHECK(alice_phone->sub->take() == std::vector<change_hint>{{"reservations", 5}});
    CHECK(alice_laptop->sub->take() == std::vector<change_hint>{{"reservations", 5}});
    CHECK(bob->sub->take().empty());
    CHECK(bob->wakes == 0);

    // A user nobody streams for, and nobody at all: nothing happens.
    hub->publish(news_for({"carol"}, "reservations", 6));
    hub->publish(news_for({}, "reservations", 7));
    CHECK(alice_phone->sub->take().empty());

    // Everyone: a shared collection.
    auto everyone = news_for({}, "landmarks", 8);
    everyone.everyone = true;
    hub->publish(everyone);
    CHECK(bob->sub->take() == std::vector<change_hint>{{"landmarks", 8}});
    CHECK(alice_laptop->sub->take() == std::vector<change_hint>{{"landmarks", 8}});
}

TEST_CASE("live hub: the writing device is not woken by its own writes", "[live]") {
    auto hub = server::live_hub::make();
    auto phone = listen(*hub, "alice", "phone");
    auto laptop = listen(*hub, "alice", "laptop");
    auto bobs_phone = listen(*hub, "bob", "phone");
    auto n = news_for({"alice", "bob"}, "items", 3);
    n.origin_user = "alice";
    n.origin_client = "phone";
    hub->publish(n);
    CHECK(phone->sub->take().empty());
    CHECK(phone->wakes == 0);
    CHECK(laptop->sub->take() == std::vector<change_hint>{{"items", 3}});
    // Bob's device of the same id is another device.
    CHECK(bobs_phone->sub->take() == std::vector<change_hint>{{"items", 3}});
}

TEST_CASE("live hub: a storm coalesces into one hint per collection and one wake", "[live]") {
    auto hub = server::live_hub::make();
    auto slow = listen(*hub, "alice", "phone");
    for (std::uint64_t v = 1; v <= 10'000; ++v)
        hub->publish(news_for({"alice"}, v % 2 ? "reservations" : "favorites", v));
    // Versions may arrive out of order across commits' announcements: the highest stays.
    hub->publish(news_for({"alice"}, "reservations", 3));
    CHECK(slow->wakes == 1);
    CHECK(slow->sub->take() ==
          std::vector<change_hint>{{"reservations", 9'999}, {"favorites", 10'000}});
    CHECK(slow->sub->take().empty());
    // Taking re-arms the wake.
    hub->publish(news_for({"alice"}, "favorites", 10'001));
    CHECK(slow->wakes == 2);
}

TEST_CASE("too_many_streams: 429, to be retried later, with a stable wire name", "[live]") {
    const offsync::error_code ec = offsync::errc::too_many_streams;
    CHECK(offsync::http_status(ec) == 429);
    CHECK(ec == offsync::condition::retry_later);
    CHECK(std::string(offsync::to_string(offsync::errc::too_many_streams)) == "too_many_streams");
    CHECK(offsync::stream_target("") == "/v1/stream");
    CHECK(offsync::stream_target("a b/ü") == "/v1/stream?client_id=a%20b%2F%C3%BC");
}

TEST_CASE("live hub: limits per user and in all are refused with too_many_streams", "[live]") {
    auto hub = server::live_hub::make({.max_streams = 3, .max_streams_per_user = 2});
    auto a1 = listen(*hub, "alice", "1");
    auto a2 = listen(*hub, "alice", "2");
    offsync::diagnostics why;
    CHECK_FALSE(hub->subscribe("alice", "3", {}, why));
    CHECK(why.code == offsync::errc::too_many_streams);
    CHECK(why.message.find("per user") != std::string::npos);
    CHECK(hub->size_of("alice") == 2);
    auto b1 = listen(*hub, "bob", "1");
    why = {};
    CHECK_FALSE(hub->subscribe("carol", "1", {}, why));
    CHECK(why.code == offsync::errc::too_many_streams);
    CHECK(hub->size() == 3);
    // A stream that ends makes room.
    a1.reset();
    CHECK(hub->size() == 2);
    CHECK(hub->size_of("alice") == 1);
    auto c1 = listen(*hub, "carol", "1");
    CHECK(hub->size() == 3);
    // The refused never joined: news for them reaches nobody, and nothing dangles.
    hub->publish(news_for({"alice", "carol"}, "x", 1));
    CHECK(a2->sub->take().size() == 1);
    CHECK(c1->sub->take().size() == 1);
}

TEST_CASE("live hub: a device's newer stream replaces its older one", "[live]") {
    auto hub = server::live_hub::make({.max_streams = 10, .max_streams_per_user = 2});
    auto old_phone = listen(*hub, "alice", "phone");
    auto laptop = listen(*hub, "alice", "laptop");
    auto bobs_phone = listen(*hub, "bob", "phone");
    auto new_phone = listen(*hub, "alice", "phone"); // at the per-user limit, yet accepted
    CHECK(old_phone->sub->replaced());
    CHECK(old_phone->wakes == 1); // its writer ends it
    CHECK_FALSE(new_phone->sub->replaced());
    CHECK_FALSE(bobs_phone->sub->replaced()); // another user's device of the same id
    CHECK(hub->size_of("alice") == 2);
    CHECK(hub->size() == 3);
    hub->publish(news_for({"alice"}, "x", 1));
    CHECK(old_phone->sub->take().empty());
    CHECK(new_phone->sub->take().size() == 1);
    // The replaced one leaves without taking the new one's place with it.
    old_phone.reset();
    CHECK(hub->size_of("alice") == 2);
    // Streams without a client id never replace each other.
    auto hub2 = server::live_hub::make();
    auto a = listen(*hub2, "alice", "");
    auto b = listen(*hub2, "alice", "");
    CHECK_FALSE(a->sub->replaced());
    CHECK(hub2->size() == 2);
}

TEST_CASE("live hub: a refused user leaves nothing behind", "[live]") {
    auto hub = server::live_hub::make({.max_streams = 10, .max_streams_per_user = 0});
    offsync::diagnostics why;
    for (int i = 0; i < 100; ++i)
        CHECK_FALSE(hub->subscribe("user-" + std::to_string(i), "c", {}, why));
    CHECK(why.code == offsync::errc::too_many_streams);
    CHECK(hub->size() == 0);
}

TEST_CASE("live hub: a subscription outlives the hub's owner, and leaves cleanly", "[live]") {
    std::shared_ptr<server::live_subscription> kept;
    {
        auto hub = server::live_hub::make();
        offsync::diagnostics why;
        kept = hub->subscribe("alice", "phone", {}, why);
        REQUIRE(kept);
        hub->publish(news_for({"alice"}, "x", 1)); // no wake callback: nothing to call
    }
    CHECK(kept->take() == std::vector<change_hint>{{"x", 1}});
    kept.reset();
}
