// offsync — partial sync: the part of a collection a device subscribes to, as data the client
// and the server share, and the pure functions that read it from JSON and decide whether a
// record is in it.
//
//     offsync::sync_subset part;
//     part.groups = {"r-1", "r-2"};                        // grouped collections: these groups
//     part.where = offsync::query<Task>(offsync::field(&Task::done) == false).spec();
//     // A time field is ISO 8601 text in JSON: compare it as such, written as data.
//     part.where.conditions.push_back({"date", offsync::compare_op::greater_equal,
//                                      boost::json::value("2026-12-07T00:00:00.000Z")});
//
// A pull that carries a subscription answers only the records in it; a record that changes and
// is not in it comes as a removal, so the device drops it if it held it. A pull that carries a
// backfill (`subset_backfill`) answers, up to a version, the records of the subscription
// the device did not hold under its previous one: changing a subscription never restarts a
// device's pull (docs/sharing.md "Partial sync", docs/protocol.md).
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>
#include <offsync/query_spec.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync {

/// The part of one collection a device syncs. Default-constructed: all of it.
struct sync_subset {
    /// Grouped collections: only records in one of these groups (and only those the user may
    /// see at all). Nullopt: every group of the user's.
    std::optional<std::vector<std::string>> groups;
    /// Only records for which every condition holds (a record whose field is missing or null
    /// matches no condition).
    query_spec where;

    bool everything() const noexcept { return !groups && where.conditions.empty(); }
    friend bool operator==(const sync_subset& a, const sync_subset& b) {
        if (a.groups != b.groups || a.where.conditions.size() != b.where.conditions.size())
            return false;
        for (std::size_t i = 0; i < a.where.conditions.size(); ++i) {
            const auto& x = a.where.conditions[i];
            const auto& y = b.where.conditions[i];
            if (x.field != y.field || x.op != y.op || x.operand != y.operand) return false;
        }
        return true;
    }
};

/// The backfill that follows a change of subscription: the records of the new subscription,
/// with a version up to `until` (the device's cursor when it changed), that the device did not
/// hold: those that match the new subscription and not `held`, the one it had.
struct subset_backfill {
    sync_subset held;
    std::uint64_t until = 0;
};

/// Most groups a subscription may name, and most conditions its query may hold: a subscription
/// travels in a pull's request target, which the server caps (8 KiB by default). A device that
/// needs more groups subscribes to all of them (no `groups`) or to a query on a field.
inline constexpr std::size_t max_subset_groups = 64;
inline constexpr std::size_t max_subset_conditions = 16;

namespace detail {

inline const char* compare_op_wire_name(compare_op op) {
    switch (op) {
    case compare_op::equal: return "==";
    case compare_op::not_equal: return "!=";
    case compare_op::less: return "<";
    case compare_op::less_equal: return "<=";
    case compare_op::greater: return ">";
    case compare_op::greater_equal: return ">=";
    }
    return "==";
}

inline std::optional<compare_op> compare_op_from_wire(std::string_view s) {
    for (auto op : {compare_op::equal, compare_op::not_equal, compare_op::less,
                    compare_op::less_equal, compare_op::greater, compare_op::greater_equal})
        if (s == compare_op_wire_name(op)) return op;
    return std::nullopt;
}

/// The order of two JSON scalars of one kind (strings byte by byte, numbers by value, false
/// before true), as -1, 0 or 1; nullopt when they are not comparable (different kinds, null,
/// arrays, objects).
inline std::optional<int> json_scalar_order(const boost::json::value& a,
                                            const boost::json::value& b) {
    auto sign = [](auto x, auto y) { return x < y ? -1 : y < x ? 1 : 0; };
    if (a.is_string() && b.is_string()) {
        const int c = a.get_string().subview().compare(b.get_string().subview());
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_bool() && b.is_bool()) return sign(int(a.get_bool()), int(b.get_bool()));
    if (!a.is_number() || !b.is_number()) return std::nullopt;
    if (a.is_double() || b.is_double()) return sign(a.to_number<double>(), b.to_number<double>());
    // Integers exactly: a negative int64 is below every uint64.
    const bool a_negative = a.is_int64() && a.get_int64() < 0;
    const bool b_negative = b.is_int64() && b.get_int64() < 0;
    if (a_negative || b_negative) {
        if (!(a_negative && b_negative)) return a_negative ? -1 : 1;
        return sign(a.get_int64(), b.get_int64());
    }
    return sign(a.to_number<std::uint64_t>(), b.to_number<std::uint64_t>());
}

/// Whether `value` (a record's JSON) satisfies `c`.
inline bool condition_holds(const boost::json::object& value, const field_condition& c) {
    const auto* field = value.if_contains(c.field);
    if (!field) return false;
    const auto order = json_scalar_order(*field, c.operand);
    if (!order) return false;
    switch (c.op) {
    case compare_op::equal: return *order == 0;
    case compare_op::not_equal: return *order != 0;
    case compare_op::less: return *order < 0;
    case compare_op::less_equal: return *order <= 0;
    case compare_op::greater: return *order > 0;
    case compare_op::greater_equal: return *order >= 0;
    }
    return false;
}

inline diagnostics subset_error(errc code, std::string message) {
    return {make_error_code(code), "subset: " + std::move(message)};
}

} // namespace detail

/// Whether the record `value` of a collection described by `schema` is in `part`. Visibility
/// (which groups the user is in) is the server's to decide; this is the subscription alone.
inline bool subset_matches(const collection_schema& schema,
                                 const boost::json::object& value, const sync_subset& part) {
    if (part.groups) {
        const auto* named = value.if_contains(schema.group_field);
        bool in_one = false;
        auto subscribed = [&](const boost::json::value& g) {
            const auto* s = g.if_string();
            return s && std::find(part.groups->begin(), part.groups->end(),
                                  std::string_view(*s)) != part.groups->end();
        };
        if (named && named->is_array()) {
            for (const auto& g : named->get_array()) in_one = in_one || subscribed(g);
        } else if (named) {
            in_one = subscribed(*named);
        }
        if (!in_one) return false;
    }
    for (const auto& c : part.where.conditions)
        if (!detail::condition_holds(value, c)) return false;
    return true;
}

/// The wire form: `{"groups": [...], "where": [{"field": F, "op": "<=", "value": V}, ...]}`,
/// each member only when set.
inline boost::json::object to_json(const sync_subset& part) {
    boost::json::object out;
    if (part.groups) {
        boost::json::array groups;
        for (const auto& g : *part.groups) groups.emplace_back(g);
        out["groups"] = std::move(groups);
    }
    if (!part.where.conditions.empty()) {
        boost::json::array where;
        for (const auto& c : part.where.conditions)
            where.push_back(boost::json::object{
                {"field", c.field}, {"op", detail::compare_op_wire_name(c.op)}, {"value", c.operand}});
        out["where"] = std::move(where);
    }
    return out;
}

inline boost::json::object to_json(const subset_backfill& backfill) {
    return {{"held", to_json(backfill.held)}, {"until", backfill.until}};
}

/// Reads a subset's wire form. Its shape only: whether its fields belong to a
/// collection is `check_subset`'s to say. Unknown members are refused, not ignored: a
/// device that asked for a part it did not get would hold the wrong records.
inline diagnostics subset_from_json(const boost::json::value& v, sync_subset& out) {
    using detail::subset_error;
    out = {};
    const auto* o = v.if_object();
    if (!o) return subset_error(errc::malformed_json, "must be a JSON object");
    for (const auto& [key, member] : *o) {
        if (key == "groups") {
            const auto* list = member.if_array();
            if (!list) return subset_error(errc::invalid_field, "'groups' must be a list of names");
            if (list->size() > max_subset_groups)
                return subset_error(errc::invalid_field,
                                          "'groups' names " + std::to_string(list->size()) +
                                              "; at most " + std::to_string(max_subset_groups));
            std::vector<std::string> groups;
            for (const auto& g : *list) {
                const auto* s = g.if_string();
                if (!s || s->empty() || s->size() > max_id_length)
                    return subset_error(errc::invalid_field,
                                              "'groups' must hold names of 1 to " +
                                                  std::to_string(max_id_length) + " bytes");
                groups.emplace_back(s->data(), s->size());
            }
            std::sort(groups.begin(), groups.end());
            groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
            out.groups = std::move(groups);
        } else if (key == "where") {
            const auto* list = member.if_array();
            if (!list) return subset_error(errc::invalid_field, "'where' must be a list of conditions");
            if (list->size() > max_subset_conditions)
                return subset_error(errc::invalid_field,
                                          "'where' holds " + std::to_string(list->size()) +
                                              " conditions; at most " +
                                              std::to_string(max_subset_conditions));
            for (const auto& item : *list) {
                const auto* c = item.if_object();
                if (!c) return subset_error(errc::invalid_field, "a condition must be an object");
                field_condition condition;
                bool have_field = false, have_op = false, have_value = false;
                for (const auto& [ckey, cv] : *c) {
                    if (ckey == "field" && cv.is_string() && !cv.get_string().empty()) {
                        condition.field = std::string(cv.get_string());
                        have_field = true;
                    } else if (ckey == "op" && cv.is_string()) {
                        const auto op = detail::compare_op_from_wire(cv.get_string());
                        if (!op)
                            return subset_error(errc::invalid_field,
                                                      "unknown operator '" +
                                                          std::string(cv.get_string()) +
                                                          "' (==, !=, <, <=, >, >=)");
                        condition.op = *op;
                        have_op = true;
                    } else if (ckey == "value") {
                        if (!cv.is_string() && !cv.is_number() && !cv.is_bool())
                            return subset_error(errc::invalid_field,
                                                      "a condition's value must be a string, "
                                                      "a number or a boolean");
                        condition.operand = cv;
                        have_value = true;
                    } else if (ckey == "field" || ckey == "op") {
                        return subset_error(errc::invalid_field,
                                                  "a condition's '" + std::string(ckey) +
                                                      "' must be a non-empty string");
                    } else {
                        return subset_error(errc::unknown_field,
                                                  "unknown condition member '" +
                                                      std::string(ckey) + "'");
                    }
                }
                if (!have_field || !have_op || !have_value)
                    return subset_error(errc::invalid_field,
                                              "a condition needs 'field', 'op' and 'value'");
                out.where.conditions.push_back(std::move(condition));
            }
        } else {
            return subset_error(errc::unknown_field,
                                      "unknown member '" + std::string(key) +
                                          "' (a subset has 'groups' and 'where')");
        }
    }
    return {};
}

/// Reads a backfill's wire form: `{"held": <subset>, "until": N}`, both required.
inline diagnostics subset_backfill_from_json(const boost::json::value& v,
                                                   subset_backfill& out) {
    using detail::subset_error;
    out = {};
    const auto* o = v.if_object();
    if (!o) return subset_error(errc::malformed_json, "a backfill must be a JSON object");
    bool have_held = false, have_until = false;
    for (const auto& [key, member] : *o) {
        if (key == "held") {
            if (auto d = subset_from_json(member, out.held)) return d;
            have_held = true;
        } else if (key == "until") {
            // How far it may reach (the server's last version) is the server's to check.
            if (!(member.is_uint64() || (member.is_int64() && member.get_int64() >= 0)))
                return subset_error(errc::invalid_field,
                                          "a backfill's 'until' must be a non-negative integer");
            out.until = member.to_number<std::uint64_t>();
            have_until = true;
        } else {
            return subset_error(errc::unknown_field,
                                      "unknown backfill member '" + std::string(key) +
                                          "' (a backfill has 'held' and 'until')");
        }
    }
    if (!have_held || !have_until)
        return subset_error(errc::invalid_field, "a backfill needs 'held' and 'until'");
    return {};
}

/// Whether `part` fits the collection `schema`: `groups` only for a grouped collection, each
/// condition on one of its fields, with a value of that field's type.
inline diagnostics check_subset(const collection_schema& schema, const sync_subset& part) {
    using detail::subset_error;
    if (part.groups && schema.scope != scope::grouped)
        return subset_error(errc::invalid_field,
                                  "'groups' applies to grouped collections; " + schema.name +
                                      " is not one");
    for (const auto& c : part.where.conditions) {
        const auto index = schema.field_index(c.field);
        if (!index)
            return subset_error(errc::unknown_field,
                                      schema.name + " has no field '" + c.field + "'");
        if (!c.operand.is_string() && !c.operand.is_number() && !c.operand.is_bool())
            return subset_error(errc::invalid_field,
                                      "the value compared with '" + c.field +
                                          "' must be a string, a number or a boolean");
        if (schema.check_field && schema.check_field(*index, c.operand))
            return subset_error(errc::invalid_field,
                                      "the value compared with '" + c.field +
                                          "' is not of that field's type");
    }
    return {};
}

} // namespace offsync
