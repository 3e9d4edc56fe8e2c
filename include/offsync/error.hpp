// offsync — error codes, their category, and the exception the throwing overloads use.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace offsync {

using boost::system::error_code;

/// Errors offsync itself reports. Transport and storage errors of the underlying libraries
/// (Asio, Beast, SQLite) keep their own categories; these cover the sync protocol and the store.
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
    not_found,            ///< no such record
    version_conflict,     ///< a per-record write whose base version is stale (REST 409)
    // Local store.
    no_such_conflict,     ///< resolve() named a record that has no pending conflict
    not_parked,           ///< drop_rejected() named a record that was not rejected
    storage_failure,      ///< the local store could not read or write
    // Transport.
    transport_failure,    ///< the request did not reach the server or its answer was lost
    bad_response,         ///< the server answered something that is not protocol v1
    server_error,         ///< the server answered with a 5xx
};

namespace detail {
class offsync_category final : public boost::system::error_category {
public:
    // A fixed id keeps codes comparable across shared-library boundaries.
    constexpr offsync_category() noexcept : error_category(0x6f6673796e63ULL) {}
    const char* name() const noexcept override { return "offsync"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::ok: return "success";
        case errc::malformed_json: return "malformed JSON or unexpected shape";
        case errc::invalid_field: return "a field has an invalid type or value";
        case errc::unknown_field: return "unknown field";
        case errc::unknown_collection: return "unknown collection";
        case errc::invalid_id: return "invalid record id";
        case errc::batch_too_large: return "too many mutations in one push";
        case errc::cursor_ahead: return "pull cursor is ahead of the server";
        case errc::read_only: return "field or collection is read-only to clients";
        case errc::forbidden: return "forbidden";
        case errc::unauthorized: return "unauthorized";
        case errc::not_found: return "record not found";
        case errc::version_conflict: return "base version is stale";
        case errc::no_such_conflict: return "no pending conflict for that record";
        case errc::not_parked: return "record is not parked as rejected";
        case errc::storage_failure: return "local storage failure";
        case errc::transport_failure: return "transport failure";
        case errc::bad_response: return "server response is not protocol v1";
        case errc::server_error: return "server error";
        }
        return "unknown offsync error";
    }
};
} // namespace detail

/// The category of offsync's own error codes.
inline const boost::system::error_category& offsync_category() noexcept {
    static const detail::offsync_category instance;
    return instance;
}

inline error_code make_error_code(errc e) noexcept {
    return error_code(static_cast<int>(e), offsync_category());
}

/// The wire name of an error ("invalid_field"), as sent in `{"error": {"code": ...}}`.
inline const char* to_string(errc e) noexcept {
    switch (e) {
    case errc::ok: return "ok";
    case errc::malformed_json: return "malformed_json";
    case errc::invalid_field: return "invalid_field";
    case errc::unknown_field: return "unknown_field";
    case errc::unknown_collection: return "unknown_collection";
    case errc::invalid_id: return "invalid_id";
    case errc::batch_too_large: return "batch_too_large";
    case errc::cursor_ahead: return "cursor_ahead";
    case errc::read_only: return "read_only";
    case errc::forbidden: return "forbidden";
    case errc::unauthorized: return "unauthorized";
    case errc::not_found: return "not_found";
    case errc::version_conflict: return "version_conflict";
    case errc::no_such_conflict: return "no_such_conflict";
    case errc::not_parked: return "not_parked";
    case errc::storage_failure: return "storage_failure";
    case errc::transport_failure: return "transport_failure";
    case errc::bad_response: return "bad_response";
    case errc::server_error: return "server_error";
    }
    return "unknown";
}

/// An error code together with the human-readable detail the server or store gave for it
/// ("field 'date' must be a string"). The code is for programs, the message for people.
struct diagnostics {
    error_code code;
    std::string message;

    explicit operator bool() const noexcept { return static_cast<bool>(code); }
};

/// Thrown by the throwing overloads; carries the code and the detail message.
class sync_error : public boost::system::system_error {
public:
    sync_error(error_code ec, const std::string& what) : system_error(ec, what) {}
    explicit sync_error(const diagnostics& d) : system_error(d.code, d.message) {}
};

} // namespace offsync

template <>
struct boost::system::is_error_code_enum<offsync::errc> : std::true_type {};
