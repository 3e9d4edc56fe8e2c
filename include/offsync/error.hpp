// offsync — error codes, their category, and the exception the throwing overloads use.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <boost/asio/error.hpp>

#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace offsync {

using boost::system::error_code;

/// Errors offsync itself reports. Transport and storage errors of the underlying libraries
/// (Asio, Beast, SQLite) keep their own categories; these cover the sync protocol and the store.
/// Each code has a row in `detail::errc_table` (its wire name and message), in this order: new
/// codes go at the end of both, and a wire name never changes (clients in other languages
/// match on it). To act on a group of codes, compare with a `condition`.
enum class errc {
    ok = 0,
    // Input to the sync service or to a local store that can never succeed as sent.
    malformed_json = 1,   ///< the body is not JSON, or not the expected shape
    invalid_field,        ///< a field has the wrong type or an invalid value
    unknown_field,        ///< a field the collection's model does not declare
    unknown_collection,   ///< no collection of that name is registered
    invalid_id,           ///< the record id is missing, of the wrong type, empty or too long
    batch_too_large,      ///< more mutations in one push than the server accepts
    cursor_ahead,         ///< a pull cursor newer than anything the server has written
    read_only,            ///< a client write to a field or collection clients may not write
    forbidden,            ///< the user may not see or change that record
    unauthorized,         ///< no credentials, or credentials the server does not accept
    not_found,            ///< no such record, or no such route
    version_conflict,     ///< a per-record write whose base version is stale (REST 409)
    // Local store.
    no_such_conflict,     ///< resolve() named a record that has no pending conflict
    not_parked,           ///< drop_rejected() named a record that was not rejected
    storage_failure,      ///< the local store could not read or write
    // Transport.
    transport_failure,    ///< the request did not reach the server or its answer was lost
    bad_response,         ///< the server answered something that is not protocol v1
    server_error,         ///< the server answered with a 5xx
    // HTTP requests the server cannot take as sent (added in December 2026).
    method_not_allowed,     ///< the route has no such method (HTTP 405, `Allow` lists them)
    unsupported_media_type, ///< a body that is not `application/json` (HTTP 415)
    headers_too_large,      ///< request line and headers over the server's limit (HTTP 431)
    // The app's side (added in December 2026).
    invalid_configuration, ///< a setting that cannot work (a bad server URL, a malformed token file)
    undecodable_record,    ///< a stored record does not decode as its model type (a field of the wrong type)
    // Live changes (added in December 2026).
    too_many_streams, ///< the server holds as many change streams as it allows (per user or in all)
    // Limits on the open internet (added in December 2026).
    too_many_requests, ///< a user's requests or an address's connections over the server's limit (HTTP 429, `Retry-After`)
};

/// Groups of codes a caller acts on alike: `if (ec == offsync::condition::retry_later)`.
/// A code belongs to one group at most; `operation_aborted` belongs to none (the caller asked
/// for it).
enum class condition {
    /// The request can never succeed as sent: fix it, or drop it (malformed input, unknown
    /// names, a refused write, a stale base version, a route or method the server lacks).
    bad_request = 1,
    /// The credentials are missing or refused: get new ones before trying again.
    unauthorized,
    /// The server could not be reached, failed, or answered something unreadable: the same
    /// request may succeed later (after `Retry-After`, if the server gave one). Asio's network
    /// errors (refused, reset, aborted, timed out, unreachable, a broken pipe, end of file, a
    /// host not found for now) belong here too; offsync's transports report theirs as
    /// `transport_failure`.
    retry_later,
    /// The local store could not read or write, or was asked about a record it has no
    /// parked state for.
    local_storage,
};

namespace detail {

/// One row per `errc`, in enum order.
struct errc_row {
    errc code;
    const char* wire_name; ///< as sent in `{"error": {"code": ...}}`
    const char* message;   ///< for people
    condition group;       ///< 0: none
};

inline constexpr errc_row errc_table[] = {
    {errc::ok, "ok", "success", condition{}},
    {errc::malformed_json, "malformed_json", "malformed JSON or unexpected shape",
     condition::bad_request},
    {errc::invalid_field, "invalid_field", "a field has an invalid type or value",
     condition::bad_request},
    {errc::unknown_field, "unknown_field", "unknown field", condition::bad_request},
    {errc::unknown_collection, "unknown_collection", "unknown collection", condition::bad_request},
    {errc::invalid_id, "invalid_id", "invalid record id", condition::bad_request},
    {errc::batch_too_large, "batch_too_large", "too many mutations in one push",
     condition::bad_request},
    {errc::cursor_ahead, "cursor_ahead", "pull cursor is ahead of the server",
     condition::bad_request},
    {errc::read_only, "read_only", "field or collection is read-only to clients",
     condition::bad_request},
    {errc::forbidden, "forbidden", "forbidden", condition::bad_request},
    {errc::unauthorized, "unauthorized", "unauthorized", condition::unauthorized},
    {errc::not_found, "not_found", "record not found", condition::bad_request},
    {errc::version_conflict, "version_conflict", "base version is stale", condition::bad_request},
    {errc::no_such_conflict, "no_such_conflict", "no pending conflict for that record",
     condition::local_storage},
    {errc::not_parked, "not_parked", "record is not parked as rejected", condition::local_storage},
    {errc::storage_failure, "storage_failure", "local storage failure", condition::local_storage},
    {errc::transport_failure, "transport_failure", "transport failure", condition::retry_later},
    {errc::bad_response, "bad_response", "server response is not protocol v1",
     condition::retry_later},
    {errc::server_error, "server_error", "server error", condition::retry_later},
    {errc::method_not_allowed, "method_not_allowed", "method not allowed on this route",
     condition::bad_request},
    {errc::unsupported_media_type, "unsupported_media_type", "body is not application/json",
     condition::bad_request},
    {errc::headers_too_large, "headers_too_large", "request headers too large",
     condition::bad_request},
    {errc::invalid_configuration, "invalid_configuration", "invalid configuration",
     condition::bad_request},
    {errc::undecodable_record, "undecodable_record",
     "a stored record does not decode as its model type", condition::local_storage},
    {errc::too_many_streams, "too_many_streams", "too many change streams open",
     condition::retry_later},
    {errc::too_many_requests, "too_many_requests", "too many requests", condition::retry_later},
};

constexpr bool errc_table_in_enum_order() {
    for (std::size_t i = 0; i < std::size(errc_table); ++i)
        if (errc_table[i].code != static_cast<errc>(i)) return false;
    return true;
}
static_assert(errc_table_in_enum_order(), "offsync: detail::errc_table must list every errc in order");

inline const errc_row* row_of(int ev) noexcept {
    return ev >= 0 && static_cast<std::size_t>(ev) < std::size(errc_table) ? &errc_table[ev]
                                                                          : nullptr;
}

class offsync_category final : public boost::system::error_category {
public:
    // A fixed id keeps codes comparable across shared-library boundaries.
    constexpr offsync_category() noexcept : error_category(0x6f6673796e63ULL) {}
    const char* name() const noexcept override { return "offsync"; }
    std::string message(int ev) const override {
        const auto* row = row_of(ev);
        return row ? row->message : "unknown offsync error";
    }
};

class condition_category final : public boost::system::error_category {
public:
    constexpr condition_category() noexcept : error_category(0x6f6673636f6eULL) {}
    const char* name() const noexcept override { return "offsync.condition"; }
    std::string message(int ev) const override {
        switch (static_cast<condition>(ev)) {
        case condition::bad_request: return "the request can never succeed as sent";
        case condition::unauthorized: return "credentials missing or refused";
        case condition::retry_later: return "the request may succeed later";
        case condition::local_storage: return "local storage error";
        }
        return "unknown offsync condition";
    }
    bool equivalent(const boost::system::error_code& code, int cond) const noexcept override;
};

} // namespace detail

/// The category of offsync's own error codes.
inline const boost::system::error_category& offsync_category() noexcept {
    static const detail::offsync_category instance;
    return instance;
}

/// The category of `condition`.
inline const boost::system::error_category& condition_category() noexcept {
    static const detail::condition_category instance;
    return instance;
}

inline error_code make_error_code(errc e) noexcept {
    return error_code(static_cast<int>(e), offsync_category());
}

inline boost::system::error_condition make_error_condition(condition c) noexcept {
    return boost::system::error_condition(static_cast<int>(c), condition_category());
}

/// The wire name of an error ("invalid_field"), as sent in `{"error": {"code": ...}}`.
inline const char* to_string(errc e) noexcept {
    const auto* row = detail::row_of(static_cast<int>(e));
    return row ? row->wire_name : "unknown";
}

/// The code whose wire name is `name`, if offsync knows it.
inline std::optional<errc> errc_from_string(std::string_view name) noexcept {
    for (const auto& row : detail::errc_table)
        if (name == row.wire_name) return row.code;
    return std::nullopt;
}

/// `ec` as one of offsync's codes, or `fallback` if it is of another category.
inline errc errc_of(const error_code& ec, errc fallback = errc::server_error) noexcept {
    return ec.category() == offsync_category() && detail::row_of(ec.value())
               ? static_cast<errc>(ec.value())
               : fallback;
}

inline bool detail::condition_category::equivalent(const boost::system::error_code& code,
                                                   int cond) const noexcept {
    if (code.category() == offsync_category()) {
        const auto* row = row_of(code.value());
        return row && static_cast<int>(row->group) == cond;
    }
    if (static_cast<condition>(cond) != condition::retry_later) return false;
    // The network's own errors, as Asio reports them.
    namespace be = boost::system::errc;
    return code == be::connection_refused || code == be::connection_reset ||
           code == be::connection_aborted || code == be::timed_out ||
           code == be::host_unreachable || code == be::network_unreachable ||
           code == be::network_down || code == be::broken_pipe ||
           code == be::not_connected || code == boost::asio::error::host_not_found ||
           code == boost::asio::error::host_not_found_try_again ||
           code == boost::asio::error::eof;
}

/// An error code together with the human-readable detail the server or store gave for it
/// ("field 'date' must be a string"). The code is for programs, the message for people.
struct diagnostics {
    error_code code;
    std::string message;

    explicit operator bool() const noexcept { return static_cast<bool>(code); }
};

/// Thrown by the throwing overloads; carries the code and the detail message. `what()` is the
/// detail alone ("server URL 'http://h:0': port '0' is not a number from 1 to 65535"), or the
/// code's message when there is no detail: fit to show people as it is.
class sync_error : public boost::system::system_error {
public:
    sync_error(error_code ec, const std::string& what)
        : system_error(ec, what), detail_(what.empty() ? ec.message() : what) {}
    explicit sync_error(const diagnostics& d) : sync_error(d.code, d.message) {}
    const char* what() const noexcept override { return detail_.c_str(); }

private:
    std::string detail_;
};

} // namespace offsync

template <>
struct boost::system::is_error_code_enum<offsync::errc> : std::true_type {};
template <>
struct boost::system::is_error_condition_enum<offsync::condition> : std::true_type {};
