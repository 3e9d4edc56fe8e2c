// Hybrid logical clock stamps (hlc.hpp): issuing, observing, ordering.
#include <offsync/hlc.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using namespace offsync;

namespace {

hlc_stamp stamp(std::int64_t wall, std::uint32_t logical = 0, std::string node = "c-1") {
    return hlc_stamp{wall, logical, std::move(node)};
}

} // namespace

TEST_CASE("hlc_tick issues strictly increasing stamps whatever the physical clock does",
          "[hlc]") {
    hlc_state state;
    const std::vector<std::int64_t> physical = {1000, 1000, 1000, 1005, 1004, 900,  900,
                                                1005, 1006, 1006, 0,    2000, 1999, 2001};
    std::optional<hlc_stamp> last;
    for (auto p : physical) {
        auto s = hlc_tick(state, p, "n");
        INFO("physical " << p << " -> " << s.wall << "." << s.logical);
        CHECK(s.node == "n");
        CHECK(s.wall >= p);
        CHECK(state.wall == s.wall);
        CHECK(state.logical == s.logical);
        if (last)
            CHECK(*last < s);
        last = s;
    }
}

TEST_CASE("hlc_tick: a standing or backward clock advances the logical counter",
          "[hlc]") {
    hlc_state state;
    auto a = hlc_tick(state, 1000, "n");
    CHECK(a.wall == 1000);
    CHECK(a.logical == 0);
    auto b = hlc_tick(state, 1000, "n"); // standing still
    CHECK(b.wall == 1000);
    CHECK(b.logical == 1);
    auto c = hlc_tick(state, 400, "n"); // went backwards
    CHECK(c.wall == 1000);
    CHECK(c.logical == 2);
    auto d = hlc_tick(state, 1001, "n"); // moved on: the counter restarts
    CHECK(d.wall == 1001);
    CHECK(d.logical == 0);
    CHECK((a < b && b < c && c < d));
}

TEST_CASE("hlc_observe makes later local stamps order after what was seen", "[hlc]") {
    SECTION("a stamp from the future") {
        hlc_state state;
        hlc_tick(state, 1000, "mine");
        const auto seen = stamp(5000, 3, "fast-clock");
        hlc_observe(state, seen, 1001);
        CHECK(state.wall == 5000);
        CHECK(state.logical == 4);
        auto next = hlc_tick(state, 1002, "mine"); // our clock is still far behind
        CHECK(seen < next);
        CHECK(next.wall == 5000);
        CHECK(next.logical == 5);
        auto later = hlc_tick(state, 6000, "mine"); // our clock catches up
        CHECK(later.wall == 6000);
        CHECK(later.logical == 0);
    }
    SECTION("a stamp from the past changes only the counter's base") {
        hlc_state state{2000, 4};
        hlc_observe(state, stamp(1000, 9), 1500);
        CHECK(state == hlc_state{2000, 5});
        hlc_observe(state, stamp(1000, 9), 3000); // the physical clock moved past both
        CHECK(state == hlc_state{3000, 0});
    }
    SECTION("the same wall: the larger counter plus one") {
        hlc_state state{2000, 4};
        hlc_observe(state, stamp(2000, 9), 1000);
        CHECK(state == hlc_state{2000, 10});
        hlc_observe(state, stamp(2000, 1), 2000);
        CHECK(state == hlc_state{2000, 11});
    }
    SECTION("always above both the state and the stamp seen") {
        const std::int64_t walls[] = {0, 999, 1000, 1001, 5000};
        const std::uint32_t logicals[] = {0, 1, 7};
        for (auto sw : walls)
            for (auto sl : logicals)
                for (auto seen_wall : walls)
                    for (auto seen_logical : logicals)
                        for (auto phys : walls) {
                            hlc_state state{sw, sl};
                            const auto before = hlc_stamp{sw, sl, ""};
                            const auto seen = hlc_stamp{seen_wall, seen_logical, ""};
                            hlc_observe(state, seen, phys);
                            const auto after = hlc_stamp{state.wall, state.logical, ""};
                            INFO(sw << "." << sl << " seen " << seen_wall << "." << seen_logical
                                    << " at " << phys);
                            CHECK(before < after);
                            CHECK(seen < after);
                            CHECK(after.wall >= phys);
                        }
    }
}

TEST_CASE("stamps order by wall, then logical, then node", "[hlc]") {
    CHECK(stamp(1, 9, "z") < stamp(2, 0, "a"));
    CHECK(stamp(2, 0, "z") < stamp(2, 1, "a"));
    CHECK(stamp(2, 1, "a") < stamp(2, 1, "b"));
    CHECK(stamp(2, 1, "a") == stamp(2, 1, "a"));
    CHECK(stamp(2, 1, "a") != stamp(2, 1, "b"));
}

TEST_CASE("a counter at its limit moves the stamp to the next millisecond, never wraps",
          "[hlc]") {
    hlc_state state{1000, UINT32_MAX - 1};
    auto a = hlc_tick(state, 900, "n");
    CHECK(a.wall == 1000);
    CHECK(a.logical == UINT32_MAX);
    auto b = hlc_tick(state, 900, "n");
    CHECK(b.wall == 1001);
    CHECK(b.logical == 0);
    CHECK(a < b);
    hlc_state seen_at_limit{1000, 0};
    hlc_observe(seen_at_limit, stamp(1000, UINT32_MAX), 1000);
    CHECK(seen_at_limit == hlc_state{1001, 0});
}

TEST_CASE("system_wall_ms reads the system clock in milliseconds", "[hlc]") {
    const auto before = system_wall_ms();
    const auto after = system_wall_ms();
    CHECK(before > 1'600'000'000'000); // after September 2020
    CHECK(after >= before);
}
