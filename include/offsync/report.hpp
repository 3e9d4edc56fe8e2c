// offsync — what a sync round tells the app: its report and its progress events.
#pragma once

#include <offsync/error.hpp>
#include <offsync/protocol.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace offsync {

/// How a conflict ended in a round.
enum class conflict_outcome {
    kept_local,  ///< the local change was re-queued on top of the server's version
    took_server, ///< the server's record replaced the local change (listed as discarded)
    merged,      ///< a policy's merged value replaced both
    deferred,    ///< parked for the user (ask_user)
};

inline const char* to_string(conflict_outcome o) {
    switch (o) {
    case conflict_outcome::kept_local: return "kept_local";
    case conflict_outcome::took_server: return "took_server";
    case conflict_outcome::merged: return "merged";
    case conflict_outcome::deferred: return "deferred";
    }
    return "?";
}

/// One conflict and its outcome. For `took_server` this is the discarded local change.
struct conflict_report {
    std::string collection;
    std::string key;
    conflict_outcome outcome = conflict_outcome::deferred;
    boost::json::object local_value;
    bool local_deleted = false;
    change server;
};

/// One mutation the server rejected; the record is parked with this reason.
struct rejection_report {
    std::string collection;
    std::string key;
    std::string code;
    std::string message;
};

/// The outcome of one sync round. Filled in even when the round fails: what was acknowledged
/// before the failure stays acknowledged.
struct sync_report {
    std::size_t pushed = 0;   ///< mutations sent
    std::size_t applied = 0;  ///< mutations the server applied
    std::size_t pulled = 0;   ///< changes received
    std::size_t kept_local = 0, took_server = 0, merged = 0, deferred = 0;
    std::size_t rejected = 0;
    std::vector<conflict_report> conflicts;   ///< every conflict, whatever its outcome
    std::vector<conflict_report> discarded;   ///< local changes replaced by the server's record
    std::vector<rejection_report> rejections;
    error_code error;          ///< why the round stopped early; empty when it completed
    /// What stopped it and why, for people: "push to 'reservations': cannot connect to
    /// 127.0.0.1:8080: Connection refused".
    std::string error_message;
    /// How long the server asked to wait before the next round, when a request it refused
    /// said so (HTTP `Retry-After`); background sync waits at least that long.
    std::optional<std::chrono::seconds> retry_after;
    std::chrono::steady_clock::duration duration{};

    std::size_t conflict_count() const { return kept_local + took_server + merged + deferred; }
};

/// Progress notifications, delivered on the engine's strand while a round runs.
struct sync_event {
    enum class kind {
        round_started,
        round_finished,
        batch_pushed,       ///< `count` mutations acknowledged in `collection`
        page_pulled,        ///< `count` changes applied in `collection`
        conflict_detected,
        conflict_resolved,  ///< `message` holds the outcome
        mutation_rejected,  ///< `message` holds the server's reason
        error,
    };
    kind what;
    std::string collection;
    std::string key;
    std::size_t count = 0;
    std::string message;
};

} // namespace offsync
