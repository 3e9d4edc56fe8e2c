// offsync — wire protocol v1: the messages' JSON form as Boost.JSON documents, both ways.
// Decoding is strict about shape and types, with a message that names the offending member.
// The field names are fixed so that clients in other languages can speak v1; new fields may be
// added, none renamed.
#pragma once

#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/protocol/messages.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <utility>

namespace offsync {

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

} // namespace offsync
