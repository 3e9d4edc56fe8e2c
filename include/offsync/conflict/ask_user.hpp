// offsync — ask-user: park the record and keep a conflict record until the app decides.
#pragma once

#include <offsync/conflict/resolution.hpp>

namespace offsync {

/// Defers every conflict to the user. The store persists a conflict record (local value, server
/// record, time detected) and parks the record: it is neither pushed nor overwritten by pulls
/// until `basic_replica::resolve` is called with keep-mine, use-server or a merged value. Pulls
/// that arrive meanwhile refresh the conflict record's server side, so the user decides against
/// the newest server version and keep-mine does not conflict again unless the server moves
/// once more.
struct ask_user {
    resolution operator()(const conflict&) const { return resolution::defer(); }
};

} // namespace offsync
