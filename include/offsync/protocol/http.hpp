// offsync — wire protocol v1 over HTTP: the pull's request target and its query codec, and the
// status that answers each error. Shared by the client's HTTP transport and the server's router;
// the service itself knows no HTTP.
#pragma once

#include <offsync/error.hpp>
#include <offsync/protocol/messages.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace offsync {

namespace detail {

/// Percent-decodes `in` into `out` (a path segment, or with `plus_is_space` a query value,
/// where `+` stands for a space). False on a broken escape: `%` not followed by two hex digits.
inline bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += plus_is_space && in[i] == '+' ? ' ' : in[i];
            continue;
        }
        if (i + 2 >= in.size()) return false;
        unsigned v = 0; // unsigned: from_chars then rejects a sign, as in "%-1"
        auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
        if (ec != std::errc{} || p != in.data() + i + 3) return false;
        out += char(v);
        i += 2;
    }
    return true;
}

/// Appends `text` to `out` percent-encoded: everything but the unreserved characters.
inline void percent_encode(std::string_view text, std::string& out) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (unsigned char ch : text) {
        if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out += char(ch);
        } else {
            out += '%';
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
    }
}

} // namespace detail

/// The request target of a pull: "/v1/sync/pull?collection=C&since=N&limit=N", then the
/// optional `client_id`, `subset` and `backfill`.
inline std::string pull_target(const pull_request& r) {
    std::string t = "/v1/sync/pull?collection=";
    auto encode = [&](std::string_view text) { detail::percent_encode(text, t); };
    encode(r.collection);
    t += "&since=" + std::to_string(r.since) + "&limit=" + std::to_string(r.limit);
    if (!r.client_id.empty()) {
        t += "&client_id=";
        encode(r.client_id);
    }
    // Parameters that older servers ignore appear only when set: a pull of everything reads
    // as it always did.
    if (!r.subset.everything()) {
        t += "&subset=";
        encode(boost::json::serialize(to_json(r.subset)));
    }
    if (r.backfill) {
        t += "&backfill=";
        encode(boost::json::serialize(to_json(*r.backfill)));
    }
    return t;
}

/// Parses a pull target's query string (the part after '?').
inline diagnostics parse_pull_query(std::string_view query, pull_request& r) {
    r = pull_request{};
    bool have_collection = false;
    auto decode = [](std::string_view in, std::string& out) {
        return detail::percent_decode(in, out, true);
    };
    auto number = [](std::string_view v, std::uint64_t& out) {
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        return ec == std::errc{} && p == v.data() + v.size() && !v.empty();
    };
    while (!query.empty()) {
        auto amp = query.find('&');
        auto part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        auto eq = part.find('=');
        auto key = part.substr(0, eq);
        auto val = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        if (key == "collection") {
            if (!decode(val, r.collection) || r.collection.empty())
                return {make_error_code(errc::unknown_collection), "bad 'collection' parameter"};
            have_collection = true;
        } else if (key == "since") {
            if (!number(val, r.since) || r.since > max_safe_integer)
                return {make_error_code(errc::invalid_field),
                        "'since' must be a non-negative integer cursor"};
        } else if (key == "client_id") {
            if (!decode(val, r.client_id) || !detail::valid_client_id(r.client_id))
                return {make_error_code(errc::invalid_field), detail::client_id_error()};
        } else if (key == "limit") {
            std::uint64_t limit = 0;
            if (!number(val, limit) || limit == 0 || limit > max_pull_limit)
                return {make_error_code(errc::invalid_field),
                        "'limit' must be an integer from 1 to " + std::to_string(max_pull_limit)};
            r.limit = std::uint32_t(limit);
        } else if (key == "subset" || key == "backfill") {
            std::string text;
            boost::json::error_code jec;
            boost::json::value jv;
            const bool decoded = decode(val, text);
            if (decoded) jv = boost::json::parse(text, jec);
            if (!decoded || jec)
                return {make_error_code(errc::malformed_json),
                        "'" + std::string(key) + "' must be a JSON object"};
            auto d = key == "subset" ? subset_from_json(jv, r.subset)
                                           : subset_backfill_from_json(
                                                 jv, r.backfill.emplace());
            if (d) return d;
        }
    }
    if (!have_collection)
        return {make_error_code(errc::unknown_collection), "missing 'collection' parameter"};
    return {};
}

/// The request target of a change stream (docs/live.md): "/v1/stream", with the device's
/// client id when it has one, so that its own writes do not wake it.
inline std::string stream_target(std::string_view client_id) {
    std::string t = "/v1/stream";
    if (!client_id.empty()) {
        t += "?client_id=";
        detail::percent_encode(client_id, t);
    }
    return t;
}

/// The HTTP status that answers an offsync error: 400 for a request that can never succeed as
/// sent, 401/403 for who may do what, 404 for what does not exist, 409 for a conflict, 413/431
/// for sizes, 429 for too many change streams, 500 for the server's own failures (and any
/// code that is not offsync's).
inline unsigned http_status(const error_code& ec) {
    switch (errc_of(ec)) {
    case errc::malformed_json:
    case errc::invalid_field:
    case errc::unknown_field:
    case errc::invalid_id:
    case errc::cursor_ahead: return 400;
    case errc::unauthorized: return 401;
    case errc::read_only:
    case errc::forbidden: return 403;
    case errc::unknown_collection:
    case errc::not_found: return 404;
    case errc::version_conflict: return 409;
    case errc::batch_too_large: return 413;
    case errc::method_not_allowed: return 405;
    case errc::unsupported_media_type: return 415;
    case errc::headers_too_large: return 431;
    case errc::too_many_streams:
    case errc::too_many_requests: return 429;
    default: return 500;
    }
}

} // namespace offsync
