// offsync — last-write-wins: the later hybrid-logical-clock stamp wins.
#pragma once

#include <offsync/conflict/resolution.hpp>

namespace offsync {

/// Keeps whichever side was written later by HLC stamp; exact ties go to the larger client id,
/// so every replica decides the same way. A local win is re-pushed with the server's version as
/// its base. A server win discards the local change, and the round's report lists it.
///
/// Stamps follow causality: an edit made after pulling a write always stamps above it, however
/// far behind the editing device's wall clock is. Suits low-stakes fields such as a favorite flag.
struct last_write_wins {
    resolution operator()(const conflict& c) const {
        return c.local_stamp > c.server.stamp ? resolution::keep_local()
                                              : resolution::take_server();
    }
};

} // namespace offsync
