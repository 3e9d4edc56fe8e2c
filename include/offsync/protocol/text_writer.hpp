// offsync — wire protocol v1: the messages the transports and the service send, rendered straight
// to JSON text. The same bytes as `boost::json::serialize(to_json(x))` (protocol/json.hpp) without
// building a document first, which would copy every record's fields once more;
// tests/unit/test_protocol.cpp checks that the two agree.
#pragma once

#include <offsync/hlc.hpp>
#include <offsync/protocol/messages.hpp>

#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <string>
#include <string_view>

namespace offsync {

namespace detail {

/// Appends `text` as a JSON string, escaped as Boost.JSON's serializer escapes it.
inline void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (const char ch : text) {
        const auto u = static_cast<unsigned char>(ch);
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20) {
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 15];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

template <class Integer>
void append_integer(std::string& out, Integer n) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    out.append(digits, end);
}

/// Appends JSON values through one serializer, reused for a whole message.
class json_appender {
public:
    template <class Json>
    void operator()(std::string& out, const Json& v) {
        serializer_.reset(&v);
        char buffer[1024];
        while (!serializer_.done()) {
            const auto chunk = serializer_.read(buffer, sizeof buffer);
            out.append(chunk.data(), chunk.size());
        }
    }

private:
    boost::json::serializer serializer_;
};

inline void append_stamp(std::string& out, const hlc_stamp& s) {
    out += "{\"wall\":";
    append_integer(out, s.wall);
    out += ",\"logical\":";
    append_integer(out, s.logical);
    out += ",\"node\":";
    append_json_string(out, s.node);
    out += '}';
}

inline void append_change(std::string& out, const change& c, json_appender& append) {
    out += "{\"id\":";
    append(out, c.id);
    out += ",\"version\":";
    append_integer(out, c.version);
    out += c.deleted ? ",\"deleted\":true,\"stamp\":" : ",\"deleted\":false,\"stamp\":";
    append_stamp(out, c.stamp);
    if (c.echo) {
        out += ",\"echo\":true}";
        return;
    }
    out += ",\"value\":";
    append(out, c.value);
    out += '}';
}

} // namespace detail

/// `boost::json::serialize(to_json(request))`, rendered directly.
inline std::string to_json_text(const push_request& r) {
    std::string out;
    out.reserve(64 + r.mutations.size() * 256);
    detail::json_appender append;
    out += "{\"client_id\":";
    detail::append_json_string(out, r.client_id);
    out += ",\"mutations\":[";
    bool first = true;
    for (const auto& m : r.mutations) {
        if (!first) out += ',';
        first = false;
        out += "{\"mutation_id\":";
        detail::append_integer(out, m.mutation_id);
        out += ",\"collection\":";
        detail::append_json_string(out, m.collection);
        out += ",\"id\":";
        append(out, m.id);
        out += m.op == mutation_op::upsert ? ",\"op\":\"upsert\"" : ",\"op\":\"delete\"";
        out += ",\"base_version\":";
        detail::append_integer(out, m.base_version);
        out += ",\"stamp\":";
        detail::append_stamp(out, m.stamp);
        if (m.op == mutation_op::upsert) {
            out += ",\"fields\":";
            append(out, m.fields);
        }
        out += '}';
    }
    out += "]}";
    return out;
}

/// `boost::json::serialize(to_json(response))`, rendered directly.
inline std::string to_json_text(const pull_response& r) {
    std::string out;
    out.reserve(64 + r.changes.size() * 256);
    detail::json_appender append;
    out += "{\"changes\":[";
    bool first = true;
    for (const auto& c : r.changes) {
        if (!first) out += ',';
        first = false;
        detail::append_change(out, c, append);
    }
    out += "],\"cursor\":";
    detail::append_integer(out, r.cursor);
    out += r.has_more ? ",\"has_more\":true}" : ",\"has_more\":false}";
    return out;
}

/// `boost::json::serialize(to_json(response))`, rendered directly.
inline std::string to_json_text(const push_response& r) {
    std::string out;
    out.reserve(16 + r.results.size() * 64);
    detail::json_appender append;
    out += "{\"results\":[";
    bool first = true;
    for (const auto& x : r.results) {
        if (!first) out += ',';
        first = false;
        out += "{\"mutation_id\":";
        detail::append_integer(out, x.mutation_id);
        out += ",\"status\":\"";
        out += to_string(x.status);
        out += '"';
        if (x.status == mutation_status::applied) {
            out += ",\"version\":";
            detail::append_integer(out, x.version);
        }
        if (x.server) {
            out += ",\"server\":";
            detail::append_change(out, *x.server, append);
        }
        if (x.status == mutation_status::rejected) {
            out += ",\"error\":{\"code\":";
            detail::append_json_string(out, x.error_code);
            out += ",\"message\":";
            detail::append_json_string(out, x.error_message);
            out += '}';
        }
        out += '}';
    }
    out += ']';
    if (r.own_writes) {
        out += ",\"own_writes\":{\"collection\":";
        detail::append_json_string(out, r.own_writes->collection);
        out += ",\"after\":";
        detail::append_integer(out, r.own_writes->after);
        out += ",\"through\":";
        detail::append_integer(out, r.own_writes->through);
        out += '}';
    }
    out += '}';
    return out;
}

} // namespace offsync
