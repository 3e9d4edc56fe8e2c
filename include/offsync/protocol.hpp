// offsync — wire protocol v1: the messages, and their JSON form. Sans-I/O: no sockets here.
//
// The field names are fixed so that clients in other languages can speak v1; new fields may be
// added, none renamed. docs/protocol.md describes every message with examples.
#pragma once

#include <offsync/error.hpp>
#include <offsync/hlc.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
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
};

struct pull_response {
    std::vector<change> changes;
    std::uint64_t cursor = 0;
    bool has_more = false;
    request_failure failure = {}; ///< set only with an error; never sent
};

/// Most changes a pull page may ask for; a larger `limit` on the wire is refused (400).
inline constexpr std::uint32_t max_pull_limit = 5000;

// ---------------------------------------------------------------------------------------------
// Encoding

inline boost::json::value to_json(const hlc_stamp& s) {
    return boost::json::object{{"wall", s.wall}, {"logical", s.logical}, {"node", s.node}};
}

inline boost::json::value to_json(const change& c) {
    boost::json::object o;
    o.reserve(5);
    o.emplace("id", c.id);
    o.emplace("version", c.version);
    o.emplace("deleted", c.deleted);
    o.emplace("stamp", to_json(c.stamp));
    if (c.echo) o.emplace("echo", true);
    else o.emplace("value", c.value);
    return o;
}

inline boost::json::value to_json(const mutation& m) {
    boost::json::object o;
    o.reserve(7);
    o.emplace("mutation_id", m.mutation_id);
    o.emplace("collection", m.collection);
    o.emplace("id", m.id);
    o.emplace("op", m.op == mutation_op::upsert ? "upsert" : "delete");
    o.emplace("base_version", m.base_version);
    o.emplace("stamp", to_json(m.stamp));
    if (m.op == mutation_op::upsert) o.emplace("fields", m.fields);
    return o;
}

inline boost::json::value to_json(const push_request& r) {
    boost::json::array muts;
    muts.reserve(r.mutations.size());
    for (const auto& m : r.mutations) muts.push_back(to_json(m));
    return boost::json::object{{"client_id", r.client_id}, {"mutations", std::move(muts)}};
}

inline const char* to_string(mutation_status s) {
    switch (s) {
    case mutation_status::applied: return "applied";
    case mutation_status::conflict: return "conflict";
    case mutation_status::rejected: return "rejected";
    }
    return "?";
}

inline boost::json::value to_json(const mutation_result& r) {
    boost::json::object o;
    o.emplace("mutation_id", r.mutation_id);
    o.emplace("status", to_string(r.status));
    if (r.status == mutation_status::applied) o.emplace("version", r.version);
    if (r.server) o.emplace("server", to_json(*r.server));
    if (r.status == mutation_status::rejected)
        o.emplace("error", boost::json::object{{"code", r.error_code}, {"message", r.error_message}});
    return o;
}

inline boost::json::value to_json(const push_response& r) {
    boost::json::array results;
    results.reserve(r.results.size());
    for (const auto& x : r.results) results.push_back(to_json(x));
    boost::json::object o{{"results", std::move(results)}};
    if (r.own_writes)
        o.emplace("own_writes", boost::json::object{{"collection", r.own_writes->collection},
                                             {"after", r.own_writes->after},
                                             {"through", r.own_writes->through}});
    return o;
}

inline boost::json::value to_json(const pull_response& r) {
    boost::json::array changes;
    changes.reserve(r.changes.size());
    for (const auto& c : r.changes) changes.push_back(to_json(c));
    return boost::json::object{
        {"changes", std::move(changes)}, {"cursor", r.cursor}, {"has_more", r.has_more}};
}

// ---------------------------------------------------------------------------------------------
// Rendering straight to text: the same bytes as `boost::json::serialize(to_json(x))`, without building
// a JSON document first (which copies every record's fields once more). The transports and the
// service send these; tests/test_protocol.cpp checks they equal the document form.

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

/// Decodes a successful answer's body (a push or pull response). Fails, with what is wrong,
/// when the body is not JSON or not of the answer's shape.
template <class Response>
diagnostics decode_answer(std::string_view body, Response& out) {
    boost::system::error_code ec;
    auto jv = boost::json::parse(body, ec);
    if (ec) return {make_error_code(errc::bad_response), "response is not JSON: " + ec.message()};
    return from_json(std::move(jv), out);
}

/// `{"error": {"code": "...", "message": "..."}}`
inline boost::json::value error_body(errc code, std::string_view message) {
    return boost::json::object{{"error", boost::json::object{{"code", to_string(code)}, {"message", message}}}};
}

/// The request target of a pull: "/v1/sync/pull?collection=C&since=N&limit=N".
inline std::string pull_target(const pull_request& r) {
    std::string t = "/v1/sync/pull?collection=";
    static constexpr char hex[] = "0123456789ABCDEF";
    auto encode = [&](std::string_view text) {
        for (unsigned char ch : text) {
            if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
                t += char(ch);
            } else {
                t += '%';
                t += hex[ch >> 4];
                t += hex[ch & 15];
            }
        }
    };
    encode(r.collection);
    t += "&since=" + std::to_string(r.since) + "&limit=" + std::to_string(r.limit);
    if (!r.client_id.empty()) {
        t += "&client_id=";
        encode(r.client_id);
    }
    return t;
}

// ---------------------------------------------------------------------------------------------
// Decoding: strict about shape and types, with a message that names the offending member.

namespace detail {

inline diagnostics shape_error(std::string message) {
    return {make_error_code(errc::malformed_json), std::move(message)};
}

inline diagnostics get_uint(const boost::json::object& o, std::string_view key, std::uint64_t& out,
                            bool required = true) {
    const auto* v = o.if_contains(key);
    if (!v) {
        if (!required) return {};
        return shape_error("missing '" + std::string(key) + "'");
    }
    if (v->is_uint64()) out = v->get_uint64();
    else if (v->is_int64() && v->get_int64() >= 0) out = std::uint64_t(v->get_int64());
    else return shape_error("'" + std::string(key) + "' must be a non-negative integer");
    if (out > max_safe_integer)
        return shape_error("'" + std::string(key) + "' exceeds 2^53-1");
    return {};
}

inline diagnostics get_string(const boost::json::object& o, std::string_view key, std::string& out) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return shape_error("'" + std::string(key) + "' must be a string");
    out.assign(v->get_string().data(), v->get_string().size());
    return {};
}

/// Replaces `target` by `source`, keeping the storage of `source`: a move assignment between
/// objects of different storages copies every member instead.
inline void take_over(boost::json::object& target, boost::json::object&& source) noexcept {
    std::destroy_at(&target);
    std::construct_at(&target, std::move(source));
}

/// Reads a member object. From a document being decoded for good (`Object` not const) it is
/// moved out, which saves copying every record of a page; from a borrowed one it is copied.
template <class Object>
diagnostics get_object(Object& o, std::string_view key, boost::json::object& out) {
    auto* v = o.if_contains(key);
    if (!v || !v->is_object()) return shape_error("'" + std::string(key) + "' must be an object");
    if constexpr (std::is_const_v<Object>) {
        out = v->get_object();
    } else {
        take_over(out, std::move(v->get_object()));
    }
    return {};
}

/// `const boost::json::object` for a borrowed document, `boost::json::object` for one decoded for good.
template <class Value>
using object_of = std::conditional_t<std::is_const_v<Value>, const boost::json::object, boost::json::object>;

} // namespace detail

inline diagnostics from_json(const boost::json::value& jv, hlc_stamp& s) {
    const auto* o = jv.if_object();
    if (!o) return detail::shape_error("'stamp' must be an object");
    std::uint64_t wall = 0, logical = 0;
    if (auto d = detail::get_uint(*o, "wall", wall)) return d;
    if (auto d = detail::get_uint(*o, "logical", logical)) return d;
    if (logical > UINT32_MAX) return detail::shape_error("'logical' is out of range");
    if (auto d = detail::get_string(*o, "node", s.node)) return d;
    s.wall = std::int64_t(wall);
    s.logical = std::uint32_t(logical);
    return {};
}

namespace detail {

template <class Value>
diagnostics change_from_json(Value& jv, change& c) {
    auto* o = jv.if_object();
    if (!o) return shape_error("a change must be an object");
    const auto* id = o->if_contains("id");
    if (!id || !(id->is_string() || id->is_int64() || id->is_uint64()))
        return {make_error_code(errc::invalid_id), "'id' must be a string or an integer"};
    c.id = *id;
    if (auto d = get_uint(*o, "version", c.version)) return d;
    const auto* del = o->if_contains("deleted");
    if (!del || !del->is_bool()) return shape_error("'deleted' must be a boolean");
    c.deleted = del->get_bool();
    const auto* stamp = o->if_contains("stamp");
    if (!stamp) return shape_error("missing 'stamp'");
    if (auto d = from_json(*stamp, c.stamp)) return d;
    c.echo = false;
    if (const auto* echo = o->if_contains("echo")) {
        if (!echo->is_bool()) return shape_error("'echo' must be a boolean");
        c.echo = echo->get_bool();
    }
    if (c.echo) {
        c.value.clear();
        return {};
    }
    return get_object(*o, "value", c.value);
}

template <class Value>
diagnostics mutation_from_json(Value& jv, mutation& m) {
    auto* o = jv.if_object();
    if (!o) return shape_error("a mutation must be an object");
    if (auto d = get_uint(*o, "mutation_id", m.mutation_id)) return d;
    if (auto d = get_string(*o, "collection", m.collection)) return d;
    const auto* id = o->if_contains("id");
    if (!id) return {make_error_code(errc::invalid_id), "missing 'id'"};
    m.id = *id;
    const auto* op = o->if_contains("op");
    const auto* op_text = op ? op->if_string() : nullptr;
    if (!op_text) return shape_error("'op' must be a string");
    if (*op_text == "upsert") m.op = mutation_op::upsert;
    else if (*op_text == "delete") m.op = mutation_op::remove;
    else return shape_error("'op' must be \"upsert\" or \"delete\"");
    if (auto d = get_uint(*o, "base_version", m.base_version)) return d;
    const auto* stamp = o->if_contains("stamp");
    if (!stamp) return shape_error("missing 'stamp'");
    if (auto d = from_json(*stamp, m.stamp)) return d;
    m.fields.clear();
    if (m.op == mutation_op::upsert) return get_object(*o, "fields", m.fields);
    return {};
}

template <class Value>
diagnostics push_request_from_json(Value& jv, push_request& r) {
    auto* o = jv.if_object();
    if (!o) return shape_error("the push body must be a JSON object");
    if (auto d = get_string(*o, "client_id", r.client_id)) return d;
    if (!valid_client_id(r.client_id))
        return {make_error_code(errc::invalid_field), client_id_error()};
    auto* muts = o->if_contains("mutations");
    if (!muts || !muts->is_array()) return shape_error("'mutations' must be an array");
    auto& list = muts->get_array();
    r.mutations.clear();
    r.mutations.resize(list.size());
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (auto d = mutation_from_json(list[i], r.mutations[i])) {
            d.message = "mutations[" + std::to_string(i) + "]: " + d.message;
            return d;
        }
    }
    return {};
}

} // namespace detail

inline diagnostics from_json(const boost::json::value& jv, change& c) {
    return detail::change_from_json(jv, c);
}
/// Decodes from a document that is not needed afterwards: its objects are moved, not copied.
inline diagnostics from_json(boost::json::value&& jv, change& c) {
    return detail::change_from_json(jv, c);
}

inline diagnostics from_json(const boost::json::value& jv, mutation& m) {
    return detail::mutation_from_json(jv, m);
}
inline diagnostics from_json(boost::json::value&& jv, mutation& m) {
    return detail::mutation_from_json(jv, m);
}

inline diagnostics from_json(const boost::json::value& jv, push_request& r) {
    return detail::push_request_from_json(jv, r);
}
inline diagnostics from_json(boost::json::value&& jv, push_request& r) {
    return detail::push_request_from_json(jv, r);
}

inline diagnostics from_json(const boost::json::value& jv, mutation_result& r) {
    const auto* o = jv.if_object();
    if (!o) return detail::shape_error("a result must be an object");
    if (auto d = detail::get_uint(*o, "mutation_id", r.mutation_id)) return d;
    std::string status;
    if (auto d = detail::get_string(*o, "status", status)) return d;
    if (status == "applied") {
        r.status = mutation_status::applied;
        if (auto d = detail::get_uint(*o, "version", r.version)) return d;
    } else if (status == "conflict") {
        r.status = mutation_status::conflict;
        if (!o->contains("server")) return detail::shape_error("a conflict carries 'server'");
    } else if (status == "rejected") {
        r.status = mutation_status::rejected;
        boost::json::object err;
        if (auto d = detail::get_object(*o, "error", err)) return d;
        if (auto d = detail::get_string(err, "code", r.error_code)) return d;
        if (auto d = detail::get_string(err, "message", r.error_message)) return d;
    } else {
        return detail::shape_error("unknown result status '" + status + "'");
    }
    r.server.reset();
    if (const auto* s = o->if_contains("server")) {
        r.server.emplace();
        if (auto d = from_json(*s, *r.server)) return d;
    }
    return {};
}

inline diagnostics from_json(const boost::json::value& jv, push_response& r) {
    const auto* o = jv.if_object();
    const auto* results = o ? o->if_contains("results") : nullptr;
    if (!results || !results->is_array())
        return detail::shape_error("a push response carries a 'results' array");
    r.results.resize(results->get_array().size());
    std::size_t i = 0;
    for (const auto& x : results->get_array())
        if (auto d = from_json(x, r.results[i++])) return d;
    r.own_writes.reset();
    if (const auto* range = o->if_contains("own_writes")) {
        const auto* ro = range->if_object();
        if (!ro) return detail::shape_error("'own_writes' must be an object");
        own_writes_range w;
        if (auto d = detail::get_string(*ro, "collection", w.collection)) return d;
        if (auto d = detail::get_uint(*ro, "after", w.after)) return d;
        if (auto d = detail::get_uint(*ro, "through", w.through)) return d;
        if (w.after >= w.through)
            return detail::shape_error("'own_writes' must have 'after' below 'through'");
        r.own_writes = std::move(w);
    }
    return {};
}

/// A push response carries no records worth moving: decoded as a borrowed document.
inline diagnostics from_json(boost::json::value&& jv, push_response& r) {
    return from_json(static_cast<const boost::json::value&>(jv), r);
}

namespace detail {
template <class Value>
diagnostics pull_response_from_json(Value& jv, pull_response& r) {
    auto* o = jv.if_object();
    if (!o) return shape_error("a pull response must be an object");
    auto* changes = o->if_contains("changes");
    if (!changes || !changes->is_array()) return shape_error("'changes' must be an array");
    auto& list = changes->get_array();
    r.changes.resize(list.size());
    for (std::size_t i = 0; i < list.size(); ++i)
        if (auto d = change_from_json(list[i], r.changes[i])) return d;
    if (auto d = get_uint(*o, "cursor", r.cursor)) return d;
    const auto* more = o->if_contains("has_more");
    if (!more || !more->is_bool()) return shape_error("'has_more' must be a boolean");
    r.has_more = more->get_bool();
    return {};
}
} // namespace detail

inline diagnostics from_json(const boost::json::value& jv, pull_response& r) {
    return detail::pull_response_from_json(jv, r);
}
inline diagnostics from_json(boost::json::value&& jv, pull_response& r) {
    return detail::pull_response_from_json(jv, r);
}

/// Reads an error body; an unrecognised shape yields `fallback` with the raw text as message.
inline diagnostics parse_error_body(std::string_view body, errc fallback) {
    boost::system::error_code ec;
    auto jv = boost::json::parse(body, ec);
    if (!ec && jv.is_object()) {
        const auto* err = jv.get_object().if_contains("error");
        if (err && err->is_object()) {
            std::string code, message;
            detail::get_string(err->get_object(), "code", code);
            detail::get_string(err->get_object(), "message", message);
            if (const auto known = errc_from_string(code); known && *known != errc::ok)
                return {make_error_code(*known), message};
            return {make_error_code(fallback), code + ": " + message};
        }
    }
    return {make_error_code(fallback), std::string(body.substr(0, 200))};
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
        }
    }
    if (!have_collection)
        return {make_error_code(errc::unknown_collection), "missing 'collection' parameter"};
    return {};
}

} // namespace offsync
