// offsync — hybrid logical clock stamps, which order last-write-wins decisions.
#pragma once

#include <algorithm>
#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>

namespace offsync {

/// A hybrid logical clock stamp: physical milliseconds, a logical counter for events within one
/// millisecond (or while the physical clock lags a stamp already seen), and the writer's client
/// id to break exact ties deterministically. Stamps are totally ordered by (wall, logical, node).
///
/// Why not plain timestamps: a client that has seen a write always stamps its own later edits
/// above it, even if its wall clock runs behind the writer's. Concurrent edits from clients that
/// have not seen each other are still ordered by wall time, so a clock that runs fast wins those.
///
/// On the wire a stamp is `{"wall": <ms since 1970>, "logical": <n>, "node": "<client id>"}`;
/// both numbers stay below 2^53 so JavaScript clients read them exactly.
struct hlc_stamp {
    std::int64_t wall = 0;      ///< milliseconds since the Unix epoch
    std::uint32_t logical = 0;  ///< counter within `wall`
    std::string node;           ///< client id of the writer (tie-break only)

    friend auto operator<=>(const hlc_stamp&, const hlc_stamp&) = default;
    friend bool operator==(const hlc_stamp&, const hlc_stamp&) = default;
};

/// A source of physical time in milliseconds since the Unix epoch. Tests substitute a manual or
/// skewed clock; the default reads `std::chrono::system_clock`.
using wall_clock = std::function<std::int64_t()>;

inline std::int64_t system_wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The state of one replica's clock: the highest (wall, logical) it has issued or observed.
/// Persisted by the store so a restarted client never issues a stamp below one it issued before.
struct hlc_state {
    std::int64_t wall = 0;
    std::uint32_t logical = 0;

    friend bool operator==(const hlc_state&, const hlc_state&) = default;
};

/// Advances the logical counter; at its limit the stamp moves to the next millisecond instead
/// of wrapping, which would order a later stamp before an earlier one.
inline void bump(hlc_state& state) {
    if (state.logical == UINT32_MAX) {
        ++state.wall;
        state.logical = 0;
    } else {
        ++state.logical;
    }
}

/// Issues a stamp for a local event and advances `state`.
inline hlc_stamp hlc_tick(hlc_state& state, std::int64_t physical_ms, const std::string& node) {
    if (physical_ms > state.wall) {
        state.wall = physical_ms;
        state.logical = 0;
    } else {
        bump(state);
    }
    return hlc_stamp{state.wall, state.logical, node};
}

/// Folds a stamp received from elsewhere into `state`, so later local stamps order after it.
inline void hlc_observe(hlc_state& state, const hlc_stamp& seen, std::int64_t physical_ms) {
    const auto wall = std::max({state.wall, seen.wall, physical_ms});
    if (wall == physical_ms && wall != state.wall && wall != seen.wall) {
        state.wall = wall;
        state.logical = 0;
        return;
    }
    std::uint32_t logical = 0;
    if (wall == state.wall && wall == seen.wall) logical = std::max(state.logical, seen.logical);
    else if (wall == state.wall) logical = state.logical;
    else logical = seen.logical;
    state.wall = wall;
    state.logical = logical;
    bump(state);
}

} // namespace offsync
