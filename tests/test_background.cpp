// Background sync on manual time: schedule, expiration, backoff, triggers, stop and state,
// each checked at exact instants with no sleeping. Rounds are real ones, through the engine,
// the loopback transport and the sync service.
#include "support/world.hpp"

#include <offsync/background.hpp>
#include <offsync/testing/manual_timers.hpp>
#include <offsync/transport/http.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <vector>

using namespace offsync_test;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

/// A loopback transport that can say what an HTTP server's `Retry-After` would.
class hinting_transport : public loopback_transport {
public:
    using loopback_transport::loopback_transport;
    std::optional<std::chrono::seconds> hint;
    std::optional<std::chrono::seconds> retry_after() const noexcept { return hint; }
};

static_assert(!retry_after_hint<loopback_transport>);
static_assert(retry_after_hint<hinting_transport>);
static_assert(retry_after_hint<http_transport>);
static_assert(timer_source<steady_timer_source>);
static_assert(timer_source<manual_timer_source>);

/// Round numbers small enough to read in a failing check; jitter off unless a test wants it.
background_config test_config() {
    background_config c;
    c.earliest_begin = 15min;
    c.interval = 15min;
    c.max_round_duration = 30s;
    c.debounce = 2s;
    c.backoff_base = 30s;
    c.backoff_cap = 8min;
    c.jitter = 0.0;
    c.seed = 42;
    return c;
}

/// One device syncing in the background on manual time. `Transport` picks the engine's
/// transport; the default is the loopback the other engine tests use.
template <class Transport = loopback_transport>
struct background_device {
    using engine_t = basic_sync_engine<test_storage, Transport>;
    using background_t = basic_background_sync<engine_t, manual_timer_source>;

    world w;
    manual_timer_source timers;
    test_storage storage;
    basic_replica<test_storage> replica{storage, w.clock.as_wall_clock()};
    Transport transport{w.io.get_executor(), w.service, "alice"};
    engine_t engine{w.io.get_executor(), replica, transport};
    std::vector<background_state> changes;
    /// Manual time of every round's start, as the state changes report it.
    std::vector<manual_timer_source::time_point> round_starts;
    std::unique_ptr<background_t> bg;

    explicit background_device(background_config config = test_config()) {
        engine.template add_collection<Landmark>();
        engine.template add_collection<Reservation>();
        config.on_state_change = [this](const background_state& s) {
            // A follow-up round starts with no idle state between: `rounds` tells it apart.
            if (s.phase == background_phase::running &&
                (changes.empty() || changes.back().phase != background_phase::running ||
                 changes.back().rounds != s.rounds))
                round_starts.push_back(timers.now());
            changes.push_back(s);
        };
        bg = std::make_unique<background_t>(engine, std::move(config), timers);
    }

    // The scheduler goes first and its stop runs before the engine it drives is destroyed.
    ~background_device() {
        bg.reset();
        settle();
    }

    void settle() { manual_timer_source::settle(w.io); }
    void run_for(manual_timer_source::duration d) { timers.run_for(w.io, d); }
    background_state state() const { return bg->state(); }
    /// How far ahead the next round is.
    milliseconds next_in() const {
        auto s = state();
        REQUIRE(s.next_run);
        return std::chrono::duration_cast<milliseconds>(*s.next_run - timers.now());
    }
    std::size_t dirty() { return engine.pending().dirty; }
    bool on_server(const std::string& reservation_id) {
        return w.service.get("alice", "reservations", reservation_id).has_value();
    }
    void start() {
        bg->start();
        settle();
    }
};

} // namespace

TEST_CASE("the first round begins at the earliest begin and the next every interval after",
          "[background]") {
    background_device<> d;
    const auto t0 = d.timers.now();
    d.replica.put(reservation("r-1"));
    d.start();
    CHECK(d.state().started);
    CHECK(d.state().phase == background_phase::idle);
    CHECK(d.next_in() == 15min);

    d.run_for(15min - 1ms);
    CHECK(d.state().rounds == 0);
    CHECK(d.dirty() == 1);

    d.run_for(1ms);
    CHECK(d.state().rounds == 1);
    CHECK(d.dirty() == 0);
    CHECK(d.on_server("r-1"));
    CHECK(d.state().last_success == t0 + 15min);
    CHECK(d.next_in() == 15min);

    d.run_for(45min);
    CHECK(d.state().rounds == 4);
    REQUIRE(d.round_starts.size() == 4);
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(d.round_starts[i] == t0 + 15min * static_cast<int>(i + 1));
    CHECK(d.state().consecutive_failures == 0);
}

TEST_CASE("a zero earliest begin starts the first round at once", "[background]") {
    auto config = test_config();
    config.earliest_begin = 0ms;
    background_device<> d(config);
    d.start();
    CHECK(d.state().rounds == 1);
    CHECK(d.next_in() == 15min);
}

TEST_CASE("an expired round is cancelled, loses nothing, and the next round pushes",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.start();
    // The transport stalls: only the expiration can end the round. Its delay is a real timer
    // that never fires in this test; cancellation completes it.
    d.transport.faults().delay = std::chrono::hours(1);
    d.run_for(15min);
    CHECK(d.state().phase == background_phase::running);
    CHECK(d.state().round_deadline == d.timers.now() + 30s);

    d.run_for(30s - 1ms);
    CHECK(d.state().phase == background_phase::running);
    d.run_for(1ms);
    auto s = d.state();
    CHECK(s.phase == background_phase::idle);
    CHECK(s.rounds == 1);
    CHECK(s.last_error.code == boost::asio::error::timed_out);
    CHECK(s.consecutive_failures == 1);
    CHECK(!s.last_success);
    // Nothing reached the server and nothing was lost: the edit is still dirty.
    CHECK(d.dirty() == 1);
    CHECK(!d.on_server("r-1"));
    // Rescheduled after the expiration, as after any failure.
    CHECK(d.next_in() == 30s);

    d.transport.faults().delay = {};
    d.run_for(30s);
    s = d.state();
    CHECK(s.rounds == 2);
    CHECK(!s.last_error);
    CHECK(s.consecutive_failures == 0);
    CHECK(d.dirty() == 0);
    CHECK(d.on_server("r-1"));
    CHECK(d.replica.get<Reservation>("r-1")->status == "confirmed");
}

TEST_CASE("a round that expires between push and pull keeps the push and pulls next round",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    // Once the push is answered, every further request stalls: the round expires in its pull.
    d.transport.faults().after_server = [&](std::string_view operation) {
        if (operation == "push") d.transport.faults().delay = std::chrono::hours(1);
    };
    d.start();
    d.run_for(15min + 30s);
    CHECK(d.state().last_error.code == boost::asio::error::timed_out);
    CHECK(d.dirty() == 0); // acknowledged before the expiration: stays acknowledged
    CHECK(d.on_server("r-1"));
    CHECK(d.replica.list<Landmark>().empty()); // the pull never applied

    d.transport.faults().after_server = nullptr;
    d.transport.faults().delay = {};
    d.run_for(30s);
    CHECK(!d.state().last_error);
    CHECK(d.replica.list<Landmark>().size() == 2);
    CHECK(d.dirty() == 0);
}

TEST_CASE("failures back off doubling up to the cap and a success resets the backoff",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.transport.faults().lose_push_requests = 1000;
    d.start();
    d.run_for(15min);
    const std::vector<milliseconds> expected{30s, 1min, 2min, 4min, 8min, 8min, 8min};
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("failure " << i + 1);
        CHECK(d.state().consecutive_failures == i + 1);
        CHECK(d.state().last_error.code == errc::transport_failure);
        CHECK(d.next_in() == expected[i]);
        d.run_for(d.next_in());
    }
    CHECK(d.dirty() == 1);

    // The transport recovers: the retry succeeds, and the next round is an interval away.
    d.transport.faults().lose_push_requests = 0;
    const auto failures = d.state().consecutive_failures;
    d.run_for(d.next_in());
    CHECK(d.state().consecutive_failures == 0);
    CHECK(d.state().rounds == failures + 1);
    CHECK(!d.state().last_error);
    CHECK(d.dirty() == 0);
    CHECK(d.next_in() == 15min);

    // A new failure starts again from the base.
    d.replica.put(reservation("r-2"));
    d.transport.faults().lose_push_requests = 1;
    d.run_for(15min);
    CHECK(d.state().consecutive_failures == 1);
    CHECK(d.next_in() == 30s);
}

TEST_CASE("jitter shortens retry delays within bounds, the same for the same seed",
          "[background]") {
    auto delays_for = [](std::uint64_t seed) {
        auto config = test_config();
        config.jitter = 0.5;
        config.seed = seed;
        background_device<> d(config);
        d.replica.put(reservation("r-1"));
        d.transport.faults().lose_push_requests = 1000;
        d.start();
        d.run_for(15min);
        std::vector<milliseconds> delays;
        for (int i = 0; i < 8; ++i) {
            delays.push_back(d.next_in());
            d.run_for(d.next_in());
        }
        return delays;
    };
    const auto first = delays_for(7);
    const std::vector<milliseconds> nominal{30s, 1min, 2min, 4min, 8min, 8min, 8min, 8min};
    for (std::size_t i = 0; i < first.size(); ++i) {
        INFO("failure " << i + 1);
        CHECK(first[i] >= nominal[i] / 2);
        CHECK(first[i] <= nominal[i]);
    }
    CHECK(delays_for(7) == first);
    CHECK(delays_for(8) != first);
    // Devices that failed together spread out instead of retrying in step.
    std::set<milliseconds> distinct(first.begin() + 4, first.end());
    CHECK(distinct.size() > 1);
}

TEST_CASE("a server Retry-After longer than the backoff is honoured, by triggers too",
          "[background]") {
    background_device<hinting_transport> d;
    d.replica.put(reservation("r-1"));
    d.transport.faults().lose_push_requests = 1;
    d.transport.hint = std::chrono::seconds(600);
    d.start();
    d.run_for(15min);
    CHECK(d.state().consecutive_failures == 1);
    CHECK(d.next_in() == 10min);

    // Connectivity news does not override the server's request for quiet.
    d.bg->network_restored();
    d.settle();
    CHECK(d.state().rounds == 1);
    CHECK(d.next_in() == 10min);

    d.transport.hint.reset();
    d.run_for(10min);
    CHECK(d.state().rounds == 2);
    CHECK(d.state().consecutive_failures == 0);
    CHECK(d.dirty() == 0);
}

TEST_CASE("a Retry-After that comes with the failed request's result is honoured",
          "[background]") {
    // The plain loopback keeps no transport-wide hint: the wait travels in the round's report.
    auto config = test_config();
    const bool honour = GENERATE(true, false);
    config.honour_retry_after = honour;
    background_device<> d(config);
    d.replica.put(reservation("r-1"));
    d.transport.faults().busy = 1;
    d.transport.faults().busy_retry_after = std::chrono::seconds(600);
    d.start();
    d.run_for(15min);
    CHECK(d.state().consecutive_failures == 1);
    CHECK(d.state().last_error.code == errc::server_error);
    CHECK(d.state().last_error.code == condition::retry_later);
    // The cause is named, not only the code.
    CHECK_THAT(d.state().last_error.message,
               Catch::Contains("push to 'reservations'") &&
                   Catch::Contains("server busy (injected fault)"));
    CHECK(d.next_in() == (honour ? milliseconds(10min) : milliseconds(30s)));
    d.run_for(d.next_in());
    CHECK(d.state().consecutive_failures == 0);
    CHECK(d.dirty() == 0);
}

TEST_CASE("a Retry-After shorter than the backoff, or one not to honour, leaves the backoff",
          "[background]") {
    auto config = test_config();
    bool honour = GENERATE(true, false);
    config.honour_retry_after = honour;
    background_device<hinting_transport> d(config);
    d.replica.put(reservation("r-1"));
    d.transport.faults().lose_push_requests = 1;
    d.transport.hint = std::chrono::seconds(honour ? 5 : 600);
    d.start();
    d.run_for(15min);
    CHECK(d.next_in() == 30s);
}

TEST_CASE("app_backgrounded and network_restored start a round at once, even in backoff",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.bg->app_backgrounded(); // before start: ignored
    d.settle();
    CHECK(d.state().rounds == 0);

    d.start();
    d.bg->app_backgrounded();
    d.settle();
    CHECK(d.state().rounds == 1);
    CHECK(d.dirty() == 0);
    CHECK(d.next_in() == 15min);

    d.replica.put(reservation("r-2"));
    d.transport.faults().lose_push_requests = 1;
    d.bg->sync_now();
    d.settle();
    CHECK(d.state().consecutive_failures == 1);
    CHECK(d.next_in() == 30s);

    d.run_for(10s);
    d.bg->network_restored();
    d.settle();
    CHECK(d.state().rounds == 3);
    CHECK(d.state().consecutive_failures == 0);
    CHECK(d.on_server("r-2"));
    CHECK(d.next_in() == 15min);
}

TEST_CASE("a burst of local edits makes one round once edits pause for the debounce",
          "[background]") {
    background_device<> d;
    d.start();
    for (int i = 0; i < 5; ++i) {
        d.replica.put(reservation("r-" + std::to_string(i)));
        d.bg->local_edit();
        d.run_for(1s);
    }
    CHECK(d.state().rounds == 0);
    CHECK(d.dirty() == 5);
    d.run_for(1s - 1ms);
    CHECK(d.state().rounds == 0);
    d.run_for(1ms);
    CHECK(d.state().rounds == 1);
    CHECK(d.dirty() == 0);
    CHECK(d.next_in() == 15min);
    d.run_for(15min - 1ms);
    CHECK(d.state().rounds == 1);
}

TEST_CASE("a zero debounce syncs each edit at once", "[background]") {
    auto config = test_config();
    config.debounce = 0ms;
    background_device<> d(config);
    d.start();
    d.replica.put(reservation("r-1"));
    d.bg->local_edit();
    d.settle();
    CHECK(d.state().rounds == 1);
    CHECK(d.on_server("r-1"));
}

TEST_CASE("triggers while a round runs queue exactly one follow-up round", "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    int pushes = 0;
    // The first push is in flight: the app edits and fires every trigger it has.
    d.transport.faults().after_server = [&](std::string_view operation) {
        if (operation != "push" || pushes++ > 0) return;
        d.replica.put(reservation("r-1", "cancelled"));
        d.bg->local_edit();
        d.bg->sync_now();
        d.bg->app_backgrounded();
        d.bg->network_restored();
        d.bg->sync_now();
    };
    d.start();
    d.bg->sync_now();
    d.settle();
    // The debounced edit is still pending; the follow-up already carried the edit.
    CHECK(d.state().rounds == 2);
    CHECK(d.round_starts.size() == 2);
    CHECK(d.dirty() == 0);
    CHECK(d.w.service.get("alice", "reservations", "r-1")->value.at("status") == "cancelled");
    bool saw_follow_up = false;
    for (const auto& s : d.changes) saw_follow_up |= s.follow_up_queued;
    CHECK(saw_follow_up);
    CHECK(!d.state().follow_up_queued);

    // The debounce fires after the follow-up: one more round, then the schedule resumes.
    d.run_for(2s);
    CHECK(d.state().rounds == 3);
    CHECK(d.next_in() == 15min);
    d.run_for(15min);
    CHECK(d.state().rounds == 4);
}

TEST_CASE("a trigger during a round that fails waits for the backoff retry", "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.transport.faults().lose_push_responses = 1;
    d.transport.faults().after_server = [&](std::string_view) {
        d.transport.faults().after_server = nullptr;
        d.bg->sync_now();
    };
    d.start();
    d.bg->sync_now();
    d.settle();
    CHECK(d.state().rounds == 1);
    CHECK(d.state().consecutive_failures == 1);
    CHECK(!d.state().follow_up_queued);
    CHECK(d.next_in() == 30s);
    d.run_for(30s);
    CHECK(d.state().rounds == 2);
    CHECK(d.state().consecutive_failures == 0);
    // The lost response was applied once; the retry got its original outcome.
    CHECK(d.dirty() == 0);
    CHECK(d.state().last_report->conflict_count() == 0);
}

TEST_CASE("stop cancels the running round and every timer, and nothing runs after it",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.start();
    d.bg->local_edit(); // a debounce timer is pending too
    d.transport.faults().delay = std::chrono::hours(1);
    d.bg->sync_now();
    d.settle();
    REQUIRE(d.state().phase == background_phase::running);

    bool stopped = false;
    d.bg->async_stop([&] { stopped = true; });
    d.settle();
    CHECK(stopped);
    auto s = d.state();
    CHECK(s.phase == background_phase::stopped);
    CHECK(s.rounds == 1);
    CHECK(!s.next_run);
    CHECK(d.timers.pending_waits() == 0);
    CHECK(d.dirty() == 1); // the cancelled round lost nothing

    d.transport.faults().delay = {};
    d.bg->sync_now();
    d.bg->local_edit();
    d.bg->start();
    d.run_for(24h);
    CHECK(d.state().rounds == 1);
    CHECK(d.state().phase == background_phase::stopped);

    // The engine is free again: a round the app runs itself works.
    bool synced = false;
    d.engine.async_sync([&](error_code ec, sync_report) { synced = !ec; });
    d.settle();
    CHECK(synced);
    CHECK(d.dirty() == 0);
}

TEST_CASE("stop while idle completes at once, and a second stop too", "[background]") {
    background_device<> d;
    d.start();
    int stops = 0;
    d.bg->async_stop([&] { ++stops; });
    d.bg->stop();
    d.bg->async_stop([&] { ++stops; });
    d.settle();
    CHECK(stops == 2);
    CHECK(d.timers.pending_waits() == 0);
    d.run_for(1h);
    CHECK(d.state().rounds == 0);
}

TEST_CASE("destroying background sync mid-round cancels the round and calls back no more",
          "[background]") {
    background_device<> d;
    d.replica.put(reservation("r-1"));
    d.transport.faults().delay = std::chrono::hours(1);
    d.start();
    d.bg->sync_now();
    d.settle();
    REQUIRE(d.state().phase == background_phase::running);
    const auto changes = d.changes.size();
    d.bg.reset();
    d.settle();
    CHECK(d.changes.size() == changes);
    CHECK(d.timers.pending_waits() == 0);
    d.transport.faults().delay = {};
    bool synced = false;
    d.engine.async_sync([&](error_code ec, sync_report) { synced = !ec; });
    d.settle();
    CHECK(synced);
    CHECK(d.dirty() == 0);
}

TEST_CASE("a bad configuration is rejected naming the field", "[background]") {
    world w;
    auto device = w.device("alice");
    auto rejects = [&](background_config config, const std::string& field) {
        INFO(field);
        CHECK_THROWS_WITH(
            (basic_background_sync<engine_type, manual_timer_source>(device->engine, config)),
            Catch::Contains(field));
    };
    auto c = test_config();
    c.interval = 0ms;
    rejects(c, "interval");
    c = test_config();
    c.interval = -1s;
    rejects(c, "interval");
    c = test_config();
    c.earliest_begin = -1ms;
    rejects(c, "earliest_begin");
    c = test_config();
    c.max_round_duration = 0ms;
    rejects(c, "max_round_duration");
    c = test_config();
    c.debounce = -5ms;
    rejects(c, "debounce");
    c = test_config();
    c.backoff_base = 0ms;
    rejects(c, "backoff_base");
    c = test_config();
    c.backoff_cap = 10s; // below the base of 30 s
    rejects(c, "backoff_cap");
    c = test_config();
    c.jitter = 1.0;
    rejects(c, "jitter");
    c = test_config();
    c.jitter = -0.1;
    rejects(c, "jitter");
    CHECK_THROWS_AS((basic_background_sync<engine_type, manual_timer_source>(
                        device->engine, [] {
                            auto bad = test_config();
                            bad.interval = 0ms;
                            return bad;
                        }())),
                    std::invalid_argument);
    CHECK_NOTHROW(basic_background_sync<engine_type, manual_timer_source>(device->engine,
                                                                          test_config()));
}

TEST_CASE("the state shows phase, schedule, outcome and pending changes", "[background]") {
    background_device<> d;
    auto s = d.state();
    CHECK(s.phase == background_phase::idle);
    CHECK(!s.started);
    CHECK(!s.next_run);
    CHECK(s.rounds == 0);
    CHECK(!s.last_report);

    d.replica.put(reservation("r-1"));
    d.replica.put(reservation("r-2"));
    CHECK(d.state().pending.dirty == 2);

    d.start();
    CHECK(d.changes.back().started);
    CHECK(d.changes.back().pending.dirty == 2);
    CHECK(d.state().next_run == d.timers.now() + 15min);

    d.transport.faults().lose_push_requests = 1;
    d.run_for(15min);
    s = d.state();
    CHECK(s.last_error.code == errc::transport_failure);
    CHECK(!s.last_error.message.empty());
    CHECK(s.consecutive_failures == 1);
    REQUIRE(s.last_report);
    CHECK(s.last_report->error == errc::transport_failure);
    CHECK(s.pending.dirty == 2);

    // The callback saw the round running, then idle again with its outcome.
    bool saw_running = false;
    for (const auto& change : d.changes)
        saw_running |= change.phase == background_phase::running && change.round_deadline;
    CHECK(saw_running);
    CHECK(d.changes.back().phase == background_phase::idle);
    CHECK(d.changes.back().consecutive_failures == 1);

    d.run_for(30s);
    s = d.state();
    CHECK(!s.last_error);
    CHECK(s.last_success == d.timers.now());
    CHECK(s.rounds == 2);
    CHECK(s.pending.dirty == 0);
    CHECK(s.last_report->pushed == 2);
    CHECK(s.last_report->pulled >= 2);
    CHECK(std::string(to_string(s.phase)) == "idle");
}
