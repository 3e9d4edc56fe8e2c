// offsync — wire protocol v1: the messages a client and a server exchange, and the limits on
// them. Plain structs: their JSON form is in protocol/json.hpp (a DOM codec) and
// protocol/text_writer.hpp (rendering straight to text), the HTTP framing in protocol/http.hpp.
// docs/protocol.md describes every message with examples.
#pragma once

#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/subset.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync {

/// Largest integer a JavaScript client reads exactly; versions, cursors and stamps stay below.
inline constexpr std::uint64_t max_safe_integer = (std::uint64_t{1} << 53) - 1;

/// Longest `client_id` a push or a pull may carry, in bytes.
inline constexpr std::size_t max_client_id_length = 128;


namespace detail {

inline bool valid_client_id(std::string_view id) noexcept {
    return !id.empty() && id.size() <= max_client_id_length;
}

inline std::string client_id_error() {
    return "'client_id' must be 1 to " + std::to_string(max_client_id_length) + " bytes";
}

} // namespace detail

enum class mutation_op { upsert, remove };

/// One local change sent in a push. `fields` holds the dirty fields (a patch) or every field
/// (a new record, or a record that must be recreated); a remove carries none.
struct mutation {
    std::uint64_t mutation_id = 0; ///< per client, strictly increasing; the idempotency key
    std::string collection;
    boost::json::value id;
    mutation_op op = mutation_op::upsert;
    std::uint64_t base_version = 0; ///< server version the local copy derives from; 0 = new
    hlc_stamp stamp;
    boost::json::object fields;
};

struct push_request {
    std::string client_id;
    std::vector<mutation> mutations;
};

/// A record as the server holds it now: what a pull returns and what a conflict carries.
struct change {
    boost::json::value id;
    std::uint64_t version = 0;
    bool deleted = false;
    hlc_stamp stamp;
    boost::json::object value; ///< every field of the record; empty for a tombstone or an echo
    /// The echo of the pulling client's own write: the record's latest write is that client's,
    /// so it holds the value already and none is sent (only in answer to a pull that names the
    /// client, for collections without per-user fields).
    bool echo = false;
};

enum class mutation_status { applied, conflict, rejected };

struct mutation_result {
    std::uint64_t mutation_id = 0;
    mutation_status status = mutation_status::applied;
    std::uint64_t version = 0;    ///< the new version, when applied
    std::optional<change> server; ///< the server's record, on a conflict (and a rejection, when
                                  ///< one exists, so the client can drop its change)
    std::string error_code;       ///< on a rejection: the errc's wire name
    std::string error_message;
};

/// A range of a collection's feed that holds nothing but one push's own writes. Sent with the
/// push's answer: in the feed of `collection` as the pushing client sees it, every change with
/// a version above `after` and up to `through` is one of the answer's `applied` writes. A
/// client whose cursor is at `after` or beyond, and which stored every `applied` write of the
/// answer at its version, may move its cursor to `through` in the same transaction instead of
/// pulling the echoes of those writes. A client may ignore it; a server may leave it out.
struct own_writes_range {
    std::string collection;
    std::uint64_t after = 0;
    std::uint64_t through = 0;
};

/// Why a request failed, as the transport that carried it saw it. Not part of the wire format:
/// a transport that completes an operation with an error fills it in the response it completes
/// with, so that the detail and the server's `Retry-After` travel with that operation's result.
struct request_failure {
    /// The cause, for people: "cannot resolve sync.example.com: Host not found", "HTTP 503:
    /// too many connections". Empty if the transport gave none.
    std::string message;
    /// How long the server asked the client to wait before trying again, if it did.
    std::optional<std::chrono::seconds> retry_after;
};

struct push_response {
    std::vector<mutation_result> results; ///< one per mutation, in request order
    std::optional<own_writes_range> own_writes;
    request_failure failure = {}; ///< set only with an error; never sent
};

struct pull_request {
    std::string collection;
    std::uint64_t since = 0;
    std::uint32_t limit = 500;
    /// The pulling client, if it wants the echoes of its own writes as markers without values
    /// (`change::echo`); empty for every change in full. (Initialised so that the older
    /// three-member form `{collection, since, limit}` stays warning-free.)
    std::string client_id = {};
    /// The part of the collection the device syncs (partial sync); everything by default.
    sync_subset subset = {};
    /// Set while the device fills in what a new subscription adds (see `subset_backfill`).
    std::optional<subset_backfill> backfill = {};
};

struct pull_response {
    std::vector<change> changes;
    std::uint64_t cursor = 0;
    bool has_more = false;
    request_failure failure = {}; ///< set only with an error; never sent
};

/// Most changes a pull page may ask for; a larger `limit` on the wire is refused (400).
inline constexpr std::uint32_t max_pull_limit = 5000;

inline const char* to_string(mutation_status s) {
    switch (s) {
    case mutation_status::applied: return "applied";
    case mutation_status::conflict: return "conflict";
    case mutation_status::rejected: return "rejected";
    }
    return "?";
}

} // namespace offsync
