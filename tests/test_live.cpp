// Live changes: the service's announcements (who hears of which commit), and change streams
// over real sockets on 127.0.0.1: the device's stream, its reconnection, the server's limits,
// heartbeats, token checks and shutdown. docs/live.md describes what these tests hold it to.
#include "support/device.hpp"

#include <offsync/testing/faulty_server_store.hpp>
#include <offsync/transport/http_live.hpp>

#include <atomic>
#include <set>

using namespace offsync;
using namespace offsync_test;

namespace {

using sharing_models = collections<List, Item, Note>;

/// Hints a subscription of the service's hub got, taken as they come.
struct heard {
    std::shared_ptr<server::live_subscription> sub;
    std::vector<change_hint> hints;
    std::vector<change_hint>& take() {
        auto more = sub->take();
        hints.insert(hints.end(), more.begin(), more.end());
        return hints;
    }
    std::set<std::string> collections() {
        std::set<std::string> out;
        for (const auto& h : take()) out.insert(h.collection);
        hints.clear();
        return out;
    }
};

heard listen(server::sync_service& service, std::string user, std::string client) {
    diagnostics why;
    heard h;
    h.sub = service.live_streams()->subscribe(std::move(user), std::move(client), {}, why);
    REQUIRE(h.sub);
    return h;
}

template <class T>
mutation upsert_of(std::uint64_t id, const T& value) {
    mutation m;
    m.mutation_id = id;
    m.collection = std::string(model_traits<T>::collection);
    m.id = to_json_object(value).at(schema_of<T>().key_field);
    m.fields = to_json_object(value);
    return m;
}

/// Pushes `m` as `user` from device `client`; the request must succeed.
push_response push(server::sync_service& service, std::string_view user, std::string client,
                   mutation m) {
    push_request request;
    request.client_id = std::move(client);
    request.mutations.push_back(std::move(m));
    push_response response;
    const auto d = service.push(user, request, response);
    INFO(d.message);
    REQUIRE_FALSE(d);
    return response;
}

Reservation booking(std::string id, std::string notes = "") {
    Reservation r;
    r.id = std::move(id);
    r.landmark_id = 1;
    r.notes = std::move(notes);
    return r;
}

} // namespace

TEST_CASE("live: each commit is announced to exactly the users who may see it",
          "[live][service]") {
    manual_clock clock;
    auto service = make_service(clock);
    service->add_collections(sharing_models{});
    for (const char* user : {"alice", "bob", "carol"}) service->add_user(user);
    auto alice_phone = listen(*service, "alice", "phone");
    auto alice_laptop = listen(*service, "alice", "laptop");
    auto bob = listen(*service, "bob", "phone");
    auto carol = listen(*service, "carol", "phone");

    // Per-user: the owner's other devices, not the writer, nobody else.
    const auto r = push(*service, "alice", "phone", upsert_of(1, booking("r1")));
    const auto version = r.results.at(0).version;
    CHECK(alice_phone.take().empty());
    CHECK(alice_laptop.take() == std::vector<change_hint>{{"reservations", version}});
    alice_laptop.hints.clear();
    CHECK(bob.take().empty());
    CHECK(carol.take().empty());

    // Shared: everybody, the server being the writer.
    service->admin_put("landmarks", to_json_object(landmark(3, "Yosemite Falls")));
    CHECK(alice_phone.collections() == std::set<std::string>{"landmarks"});
    CHECK(bob.collections() == std::set<std::string>{"landmarks"});
    CHECK(carol.collections() == std::set<std::string>{"landmarks"});
    alice_laptop.collections();

    // Grouped: a list shared with Bob reaches Bob (who joins) and Alice's other device.
    push(*service, "alice", "phone", upsert_of(2, List{"l1", "groceries", {"alice", "bob"}}));
    CHECK(alice_phone.take().empty());
    CHECK(alice_laptop.collections() == std::set<std::string>{"lists"});
    CHECK(bob.collections() == std::set<std::string>{"lists"});
    CHECK(carol.take().empty());

    // Bob's item reaches both of Alice's devices, not Bob's writing one, not Carol.
    push(*service, "bob", "phone", upsert_of(1, Item{"i1", "l1", "milk", false}));
    CHECK(alice_phone.collections() == std::set<std::string>{"items"});
    CHECK(alice_laptop.collections() == std::set<std::string>{"items"});
    CHECK(bob.take().empty());
    CHECK(carol.take().empty());

    // A revoke tells Bob (his devices must drop the list and its items) and the members.
    REQUIRE_FALSE(service->revoke("l1", "bob"));
    CHECK(bob.collections() == std::set<std::string>{"items", "lists"});
    CHECK(alice_phone.collections().count("lists") == 1);
    alice_laptop.collections();
    CHECK(carol.take().empty());

    // From then on, the list's news no longer reaches Bob.
    push(*service, "alice", "laptop", upsert_of(3, Item{"i2", "l1", "bread", false}));
    CHECK(alice_phone.collections() == std::set<std::string>{"items"});
    CHECK(bob.take().empty());
    CHECK(carol.take().empty());

    // A grant tells the joiner.
    REQUIRE_FALSE(service->grant("l1", "carol"));
    CHECK(carol.collections() == std::set<std::string>{"items", "lists"});
    CHECK(bob.take().empty());
}

TEST_CASE("live: a refused or failed request announces nothing", "[live][service]") {
    server::memory_server_store memory;
    server::faulty_server_store store(memory);
    server::sync_service service(store);
    service.add_collection<Reservation>();
    auto laptop = listen(service, "alice", "laptop");

    // Refused as a whole: an unknown collection.
    push_request bad;
    bad.client_id = "phone";
    auto m = upsert_of(1, booking("r1"));
    m.collection = "no_such_collection";
    bad.mutations.push_back(m);
    push_response response;
    CHECK(service.push("alice", bad, response).code == errc::unknown_collection);
    CHECK(laptop.take().empty());

    // The store fails at the commit: rolled back, nothing to announce.
    store.set_fault_hook([](std::string_view op) { return op == "commit"; });
    push_request failing;
    failing.client_id = "phone";
    failing.mutations.push_back(upsert_of(2, booking("r2")));
    CHECK(service.push("alice", failing, response).code == errc::server_error);
    CHECK(laptop.take().empty());

    // A push whose mutation is rejected (a field of the wrong type) writes nothing either.
    store.set_fault_hook(nullptr);
    auto wrong = upsert_of(3, booking("r3"));
    wrong.fields["party_size"] = "many";
    const auto rejected = push(service, "alice", "phone", wrong);
    CHECK(rejected.results.at(0).status == mutation_status::rejected);
    CHECK(laptop.take().empty());

    // And the next good push is announced.
    push(service, "alice", "phone", upsert_of(4, booking("r4")));
    CHECK(laptop.take().size() == 1);
}

// --- Over real sockets.

namespace {

/// An `http_change_stream` of the test's, recording what it hears.
struct stream_probe {
    std::vector<change_hint> hints;
    std::vector<std::pair<live_state, diagnostics>> states;
    int opens = 0;
    std::shared_ptr<std::string> token;
    int refreshes = 0;
    std::unique_ptr<http_change_stream> stream;

    stream_probe(asio::io_context& io, unsigned short port, std::string bearer,
                 std::string client_id, live_config config = {})
        : token(std::make_shared<std::string>(std::move(bearer))) {
        auto t = transport_config(port, token);
        t.token_provider = [this](bool refresh) {
            refreshes += refresh;
            return *token;
        };
        config.client_id = std::move(client_id);
        config.seed = 42;
        if (config.backoff_base == live_config{}.backoff_base) config.backoff_base = 50ms;
        // Three of the tests' 100 ms heartbeats would be too tight on a loaded machine: only
        // the stall test counts on them.
        if (config.stall_timeout == 0ms) config.stall_timeout = 5s;
        config.on_change = [this](const change_hint& h) { hints.push_back(h); };
        config.on_open = [this] { ++opens; };
        config.on_state = [this](live_state s, const diagnostics& d) { states.emplace_back(s, d); };
        stream = std::make_unique<http_change_stream>(io.get_executor(), t, std::move(config));
        stream->start();
    }
    ~stream_probe() { stream->stop(); }

    bool heard(std::string_view collection, std::uint64_t at_least = 0) const {
        for (const auto& h : hints)
            if (h.collection == collection && h.version >= at_least) return true;
        return false;
    }
};

server::http_server_config fast_heartbeat() {
    auto c = test_server_config();
    c.stream_heartbeat = 100ms;
    return c;
}

/// Background sync that never runs a round by itself within a test: only hints and the
/// stream's openings do.
background_config hints_only() {
    background_config c;
    c.earliest_begin = std::chrono::hours(1);
    c.interval = std::chrono::hours(1);
    c.debounce = std::chrono::hours(1);
    return c;
}

} // namespace

TEST_CASE("live over HTTP: another device's edit reaches a listening device, the writer's own "
          "stream stays quiet",
          "[live][http]") {
    http_world w(fast_heartbeat());
    asio::io_context io;
    device_on_disk listening(io, w.port, alice_token);
    listening->start_background(hints_only());
    listening->start_live({.backoff_base = 50ms, .stall_timeout = 5s});
    REQUIRE(run_until(io, [&] { return listening->live() == live_state::live; }, 5s));
    // The opening's round brings what was there before.
    REQUIRE(run_until(io, [&] { return listening->list<Landmark>().size() == 2; }, 5s));

    http_client writer(io, w.port, alice_token, w.clock.as_wall_clock());
    stream_probe writers_stream(io, w.port, alice_token, writer.engine.client_id());
    stream_probe bobs_stream(io, w.port, bob_token, "bobs-phone");
    REQUIRE(run_until(io, [&] { return writers_stream.opens >= 1 && bobs_stream.opens >= 1; }, 5s));

    writer.replica.put(booking("r1", "window table"));
    CHECK(writer.sync().error == error_code{});
    REQUIRE(run_until(io, [&] { return listening->get<Reservation>("r1").has_value(); }, 5s));
    CHECK(listening->get<Reservation>("r1")->notes == "window table");

    // An edit of the server's own reaches every stream; by then any hint of the writer's own
    // push would have come before it on the writer's stream.
    const auto v = w.service.admin_put("landmarks", to_json_object(landmark(3, "Yosemite Falls")));
    REQUIRE(run_until(io, [&] { return writers_stream.heard("landmarks", v) && bobs_stream.heard("landmarks", v); }, 5s));
    CHECK_FALSE(writers_stream.heard("reservations"));
    // Bob may not see Alice's reservations: not even a hint of them.
    CHECK_FALSE(bobs_stream.heard("reservations"));
    REQUIRE(run_until(io, [&] { return listening->list<Landmark>().size() == 3; }, 5s));
    CHECK(listening->live_stream()->opened() >= 1);
}

TEST_CASE("live over HTTP: a storm of commits reaches the stream coalesced, the newest version "
          "last",
          "[live][http]") {
    http_world w(fast_heartbeat());
    asio::io_context io;
    stream_probe laptop(io, w.port, alice_token, "laptop");
    REQUIRE(run_until(io, [&] { return laptop.opens >= 1; }, 5s));
    std::uint64_t last = 0;
    constexpr int commits = 500;
    for (int i = 0; i < commits; ++i)
        last = push(w.service, "alice", "phone", upsert_of(i + 1, booking("r" + std::to_string(i))))
                   .results.at(0)
                   .version;
    REQUIRE(run_until(io, [&] { return laptop.heard("reservations", last); }, 5s));
    CHECK(laptop.hints.size() <= commits);
    for (std::size_t i = 1; i < laptop.hints.size(); ++i)
        CHECK(laptop.hints[i].version > laptop.hints[i - 1].version);
}

TEST_CASE("live over HTTP: past the per-user limit a stream is refused with 429 and waits",
          "[live][http][limits]") {
    server::service_config sc;
    sc.live.max_streams_per_user = 1;
    http_world w(fast_heartbeat(), sc);
    asio::io_context io;
    stream_probe first(io, w.port, alice_token, "phone");
    REQUIRE(run_until(io, [&] { return first.opens >= 1; }, 5s));
    stream_probe second(io, w.port, alice_token, "laptop");
    REQUIRE(run_until(io, [&] { return second.stream->state() == live_state::waiting; }, 5s));
    const auto why = second.stream->last_error();
    CHECK(why.code == errc::too_many_streams);
    CHECK_THAT(why.message, Catch::Matchers::Contains("HTTP 429") &&
                                Catch::Matchers::Contains("per user"));
    // The server asked for 30 s: no second attempt comes meanwhile.
    run_until(io, [] { return false; }, 300ms);
    CHECK(second.opens == 0);
    CHECK(second.stream->state() == live_state::waiting);
    // Another user is not held back by Alice's limit.
    stream_probe bob(io, w.port, bob_token, "phone");
    REQUIRE(run_until(io, [&] { return bob.opens >= 1; }, 5s));
    CHECK(w.srv->streams() == 2);
    CHECK(w.service.live_streams()->size() == 2);
    // The log tells the refusal as it was answered: a 429 with its error, not a stream's 200.
    std::size_t refused = 0, opened = 0;
    for (const auto& line : w.logs()) {
        if (line.find("/v1/stream") == std::string::npos) continue;
        if (line.find("\"status\":429") != std::string::npos &&
            line.find("\"error\":\"too_many_streams\"") != std::string::npos)
            ++refused;
        if (line.find("\"status\":200") != std::string::npos) ++opened;
    }
    CHECK(refused == 1);
    CHECK(opened == 2);
}

TEST_CASE("live over HTTP: bad stream requests are refused and open nothing", "[live][http]") {
    http_world w(fast_heartbeat());
    auto get = [&](std::string target, std::string token) {
        return raw(w.port, request("GET", target, token), 3s);
    };
    CHECK(get("/v1/stream", "").status() == 401);
    CHECK(get("/v1/stream", "not-a-token-0123456789").status() == 401);
    const auto empty_id = get("/v1/stream?client_id=", alice_token);
    CHECK(empty_id.status() == 400);
    CHECK(empty_id.code() == "invalid_field");
    CHECK(get("/v1/stream?client_id=%zz", alice_token).status() == 400);
    CHECK(get("/v1/stream?client_id=" + std::string(300, 'x'), alice_token).status() == 400);
    CHECK(raw(w.port, request("POST", "/v1/stream", alice_token, "{}"), 3s).status() == 405);
    CHECK(w.service.live_streams()->size() == 0);
    CHECK(w.srv->streams() == 0);
}

TEST_CASE("live over HTTP: a server without streams leaves the device on periodic rounds",
          "[live][http][fallback]") {
    auto config = fast_heartbeat();
    config.change_streams = false;
    http_world w(config);
    asio::io_context io;
    device_on_disk d(io, w.port, alice_token);
    background_config periodic;
    periodic.earliest_begin = 0ms;
    periodic.interval = 100ms;
    d->start_background(periodic);
    d->start_live({.backoff_base = 50ms, .stall_timeout = 5s});
    REQUIRE(run_until(io, [&] { return d->live() == live_state::unavailable; }, 5s));
    CHECK_THAT(d->live_stream()->last_error().message,
               Catch::Matchers::Contains("HTTP 404") &&
                   Catch::Matchers::Contains("no change streams"));
    push(w.service, "alice", "phone", upsert_of(1, booking("r1")));
    REQUIRE(run_until(io, [&] { return d->get<Reservation>("r1").has_value(); }, 5s));
    CHECK(d->live() == live_state::unavailable);
    CHECK(d->live_stream()->opened() == 0);
}

TEST_CASE("live over HTTP: a revoked token closes its stream at the next heartbeat",
          "[live][http][auth]") {
    http_world w(fast_heartbeat());
    auto revoked = std::make_shared<std::atomic<bool>>(false);
    auto tokens = test_tokens();
    w.auth = [tokens, revoked](std::string_view token) -> std::optional<std::string> {
        if (*revoked && token == alice_token) return std::nullopt;
        return tokens(token);
    };
    w.stop();
    w.start(); // with the revocable authenticator
    asio::io_context io;
    stream_probe phone(io, w.port, alice_token, "phone",
                       {.backoff_base = 50ms, .backoff_cap = 400ms});
    REQUIRE(run_until(io, [&] { return phone.opens >= 1; }, 5s));
    const int opened_before = phone.opens;
    *revoked = true;
    REQUIRE(run_until(io, [&] {
        for (const auto& [s, d] : phone.states)
            if (s == live_state::waiting && d.code == errc::unauthorized) return true;
        return false;
    }, 5s));
    // The close event said why; the next attempts ask for a fresh token, and are refused.
    REQUIRE(run_until(io, [&] { return phone.refreshes >= 2; }, 5s));
    CHECK(phone.opens == opened_before);
    CHECK(phone.stream->state() != live_state::live);
    CHECK(w.service.live_streams()->size() == 0);
    // A new token (the app's provider) opens it again.
    *revoked = false;
    REQUIRE(run_until(io, [&] { return phone.opens > opened_before; }, 10s));
}

TEST_CASE("live over HTTP: shutdown closes the streams with a word, at once", "[live][http]") {
    auto config = fast_heartbeat();
    config.stream_heartbeat = 10s; // no heartbeat is what ends them
    config.drain_timeout = 5s;
    http_world w(config);
    asio::io_context io;
    stream_probe a(io, w.port, alice_token, "phone");
    stream_probe b(io, w.port, bob_token, "phone");
    REQUIRE(run_until(io, [&] { return a.opens >= 1 && b.opens >= 1; }, 5s));
    // The client side runs while the server drains, so it reads the goodbye.
    std::thread client([&] { run_until(io, [&] { return b.stream->state() == live_state::waiting; }, 5s); });
    const auto started = std::chrono::steady_clock::now();
    CHECK(w.stop());
    const auto took = std::chrono::steady_clock::now() - started;
    client.join();
    CHECK(took < 3s); // well before the drain timeout: the streams ended themselves
    CHECK(b.stream->last_error().message == "the server is shutting down");
    CHECK(b.stream->last_error().code == errc::server_error);
}

TEST_CASE("live over HTTP: streams come back after a server restart", "[live][http]") {
    http_world w(fast_heartbeat());
    asio::io_context io;
    stream_probe phone(io, w.port, alice_token, "phone");
    REQUIRE(run_until(io, [&] { return phone.opens >= 1; }, 5s));
    const int opened_before = phone.opens;
    w.stop();
    REQUIRE(run_until(io, [&] { return phone.stream->state() == live_state::waiting; }, 5s));
    w.start();
    REQUIRE(run_until(io, [&] { return phone.opens > opened_before; }, 10s));
    CHECK(phone.stream->state() == live_state::live);
    const auto v = push(w.service, "alice", "laptop", upsert_of(1, booking("r1"))).results.at(0).version;
    REQUIRE(run_until(io, [&] { return phone.heard("reservations", v); }, 5s));
}

TEST_CASE("live over HTTP: a stalled path is noticed by the missing heartbeats, and the hint "
          "it swallowed is made up by the round at reopening",
          "[live][http][stall]") {
    http_world w(fast_heartbeat());
    asio::io_context io;
    dropping_proxy proxy(io, w.port);
    device_on_disk d(io, proxy.port(), alice_token);
    d->start_background(hints_only());
    std::vector<std::string> lost;
    live_config c;
    c.backoff_base = 50ms; // and the stall timeout: three heartbeats, 300 ms
    c.on_state = [&](live_state s, const diagnostics& why) {
        if (s == live_state::waiting) lost.push_back(why.message);
    };
    d->start_live(c);
    REQUIRE(run_until(io, [&] { return d->live() == live_state::live; }, 5s));
    REQUIRE(run_until(io, [&] { return d->list<Landmark>().size() == 2; }, 5s));

    proxy.stall_open_connections();
    push(w.service, "alice", "laptop", upsert_of(1, booking("r1", "lost hint")));
    // Three heartbeats (300 ms) without a byte: the stream is dropped and opened again, and
    // the round at its opening brings the change whose hint never arrived.
    REQUIRE(run_until(io, [&] { return d->get<Reservation>("r1").has_value(); }, 10s));
    CHECK(d->live_stream()->opened() >= 2);
    REQUIRE_FALSE(lost.empty());
    CHECK_THAT(lost.front(), Catch::Matchers::Contains("stalled"));
    CHECK(proxy.connections >= 3); // the stalled stream, the rounds', the new stream
}

TEST_CASE("live over HTTP: a device's newer stream replaces its older one", "[live][http][limits]") {
    server::service_config sc;
    sc.live.max_streams_per_user = 2;
    http_world w(fast_heartbeat(), sc);
    asio::io_context io;
    // The old stream of a device whose path died unnoticed: it is still registered.
    stream_probe old_stream(io, w.port, alice_token, "phone", {.backoff_base = 10s});
    REQUIRE(run_until(io, [&] { return old_stream.opens >= 1; }, 5s));
    stream_probe laptop(io, w.port, alice_token, "laptop");
    REQUIRE(run_until(io, [&] { return laptop.opens >= 1; }, 5s));
    // The device reconnects: its user is at the limit, yet the new stream opens, in the old
    // one's place.
    stream_probe new_stream(io, w.port, alice_token, "phone");
    REQUIRE(run_until(io, [&] { return new_stream.opens >= 1; }, 5s));
    REQUIRE(run_until(io, [&] { return old_stream.stream->state() == live_state::waiting; }, 5s));
    CHECK(old_stream.stream->last_error().message ==
          "replaced by a newer stream of the same device");
    CHECK(w.service.live_streams()->size_of("alice") == 2);
    const auto v = push(w.service, "alice", "tablet", upsert_of(1, booking("r1"))).results.at(0).version;
    REQUIRE(run_until(io, [&] { return new_stream.heard("reservations", v); }, 5s));
    CHECK_FALSE(old_stream.heard("reservations"));
}
