// offsync — what a client store keeps per record, per parked record, and per collection: the
// data of the StoragePolicy concept, which the rules in detail/ work on.
#pragma once

#include <offsync/hlc.hpp>
#include <offsync/protocol.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace offsync {

/// Why a record is held back from pushes.
enum class park_state : std::uint8_t {
    none,     ///< pushable when dirty
    conflict, ///< an ask-user conflict waits for resolve()
    rejected, ///< the server rejected its last mutation; waits for a new edit or drop_rejected()
};

/// One record of a client store with its sync metadata.
struct local_record {
    boost::json::object value;             ///< every field; empty while `deleted`
    bool deleted = false;           ///< deleted locally (a pending delete) or never to be shown
    bool delete_pending = false;    ///< a local delete the server has not acknowledged
    std::uint64_t base_version = 0; ///< server version the local copy derives from; 0 = never synced
    std::uint64_t dirty_mask = 0;   ///< fields edited since `base_version` (bit i = schema field i)
    std::uint64_t generation = 0;   ///< bumped by every local edit: guards acknowledgements
    hlc_stamp modified_at;          ///< stamp of the last local edit
    std::int64_t last_synced_ms = 0;
    /// The mutation id last sent for this record and the generation it carried. A retry of the
    /// same generation reuses the id, so the server recognises it (idempotency).
    std::uint64_t sent_mutation_id = 0;
    std::uint64_t sent_generation = 0;
    park_state parked = park_state::none;

    bool dirty() const noexcept { return dirty_mask != 0 || delete_pending; }
    bool pushable() const noexcept { return dirty() && parked == park_state::none; }
};

/// A record held back from pushes, with what the app needs to show and decide: an ask-user
/// conflict (local and server versions) or a rejection (the server's reason).
struct parked_record {
    std::string collection;
    std::string key;
    park_state kind = park_state::conflict;
    boost::json::object local_value;     ///< the local version when it was parked (kept current by edits)
    bool local_deleted = false;
    std::optional<change> server; ///< the server's record; refreshed by pulls while parked
    std::string error_code;       ///< rejection: the server's code ("invalid_field")
    std::string error_message;    ///< rejection: the server's message
    std::int64_t detected_at_ms = 0;
};

/// What waits to be synced in one collection, for progress and status lines.
struct pending_counts {
    std::size_t dirty = 0;     ///< records with unpushed local changes, parked ones excluded
    std::size_t conflicts = 0; ///< records parked by an ask-user conflict
    std::size_t rejected = 0;  ///< records parked by a server rejection
};

} // namespace offsync
