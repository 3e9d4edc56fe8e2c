// offsync — server-wins: the server's record is taken, the local change reported as discarded.
#pragma once

#include <offsync/conflict/resolution.hpp>

namespace offsync {

/// Always adopts the server's record. The local change it drops is never dropped silently: the
/// round's report lists it under `discarded`, with its value, so the app can tell the user.
struct server_wins {
    resolution operator()(const conflict&) const { return resolution::take_server(); }
};

} // namespace offsync
