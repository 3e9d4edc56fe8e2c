// offsync — who may see and write a record of a grouped collection, and what a write to a
// membership record does to its group: pure functions of the records, the mutation and the
// writer's groups. The sync service reads those from its store and carries out the verdicts
// (docs/sharing.md).
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol/messages.hpp>
#include <offsync/server/store.hpp>

#include <boost/json/object.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync::server::detail {

/// The channel of a group and the channel of a user (see `server_store::touch_channel`).
/// Distinct prefixes keep a group and a user of the same name apart.
inline std::string group_channel(std::string_view group) {
    return "group:" + std::string(group);
}
inline std::string user_channel(std::string_view user) {
    return "user:" + std::string(user);
}

/// Whether `sorted` (ascending) holds `name`.
inline bool holds(const std::vector<std::string>& sorted, std::string_view name) {
    return std::binary_search(sorted.begin(), sorted.end(), name, std::less<>{});
}

/// The names of a JSON array of strings, sorted and without repeats; `what` names the field in
/// errors. Each name is a non-empty string of at most `max_id_length` bytes.
inline diagnostics names_in(const boost::json::value& v, std::string_view what,
                            std::size_t max_names, std::vector<std::string>& out) {
    out.clear();
    const auto* list = v.if_array();
    if (!list)
        return {make_error_code(errc::invalid_field),
                "field '" + std::string(what) + "' must be a list of names"};
    for (const auto& item : *list) {
        const auto* s = item.if_string();
        if (!s || s->empty() || s->size() > max_id_length)
            return {make_error_code(errc::invalid_field),
                    "field '" + std::string(what) + "' must hold names of 1 to " +
                        std::to_string(max_id_length) + " bytes"};
        out.emplace_back(s->data(), s->size());
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    if (out.size() > max_names)
        return {make_error_code(errc::invalid_field),
                "field '" + std::string(what) + "' names " + std::to_string(out.size()) +
                    "; at most " + std::to_string(max_names)};
    return {};
}

/// The groups a record's value names (sorted, without repeats). A grouped record names at
/// least one group: one that names none could be seen by nobody.
inline diagnostics groups_in(const collection_schema& schema, const boost::json::object& value,
                             std::size_t max_groups, std::vector<std::string>& out) {
    out.clear();
    const auto* v = value.if_contains(schema.group_field);
    if (!v) v = schema.defaults.if_contains(schema.group_field);
    if (schema.group_is_list) {
        if (v)
            if (auto d = names_in(*v, schema.group_field, max_groups, out)) return d;
    } else if (const auto* s = v ? v->if_string() : nullptr; s && !s->empty()) {
        if (s->size() > max_id_length)
            return {make_error_code(errc::invalid_field),
                    "field '" + schema.group_field + "' is longer than " +
                        std::to_string(max_id_length) + " bytes"};
        out.emplace_back(s->data(), s->size());
    }
    if (out.empty())
        return {make_error_code(errc::invalid_field),
                "a record of " + schema.name + " must name its group in '" + schema.group_field +
                    "'"};
    return {};
}

/// Whether a user in `user_groups` (sorted) may see a record in `record_groups` (sorted).
inline bool may_see(const std::vector<std::string>& record_groups,
                    const std::vector<std::string>& user_groups) {
    auto a = record_groups.begin();
    auto b = user_groups.begin();
    while (a != record_groups.end() && b != user_groups.end()) {
        if (*a == *b) return true;
        if (*a < *b) ++a;
        else ++b;
    }
    return false;
}

/// The groups of a stored record: none for a tombstone, a missing record, or (never written by
/// offsync) a value without valid groups.
inline std::vector<std::string> stored_groups(const collection_schema& schema,
                                              const server_record* rec) {
    std::vector<std::string> out;
    if (rec && !rec->deleted && groups_in(schema, rec->value, ~std::size_t{0}, out)) out.clear();
    return out;
}

/// What a permitted write does to its record's groups.
struct group_write {
    std::vector<std::string> before; ///< the record's groups now (none if it is new or deleted)
    std::vector<std::string> after;  ///< its groups once written (none for a delete)
};

/// Decides whether a user whose groups are `user_groups` (sorted) may apply `m` to the record
/// `base` (null if none) of a grouped collection:
/// - the record exists: the user is a member of one of its groups;
/// - every group the write adds is one of the user's, or (a membership record) the group the
///   record founds, `founding` (empty if none may be founded: the group exists already);
/// - a written record names at least one group.
/// A refusal never names the record's other groups. On success `out` tells the groups before
/// and after.
inline diagnostics check_group_write(const collection_schema& schema, std::string_view key,
                                     const mutation& m, const server_record* base,
                                     const std::vector<std::string>& user_groups,
                                     std::string_view founding, std::size_t max_groups,
                                     group_write& out) {
    out.before = stored_groups(schema, base);
    out.after.clear();
    if (!out.before.empty() && !may_see(out.before, user_groups))
        return {make_error_code(errc::forbidden),
                schema.name + "/" + std::string(key) + ": not a member of its group"};
    if (m.op == mutation_op::remove) return {};
    if (m.fields.contains(schema.group_field) || out.before.empty()) {
        // A record that exists keeps its groups unless the write names new ones; a new one
        // names them, or takes the field's default (which names none: refused).
        boost::json::object value;
        if (const auto* v = m.fields.if_contains(schema.group_field))
            value.emplace(schema.group_field, *v);
        if (auto d = groups_in(schema, value, max_groups, out.after)) return d;
    } else {
        out.after = out.before;
    }
    for (const auto& g : out.after) {
        if (holds(out.before, g) || holds(user_groups, g) || g == founding) continue;
        return {make_error_code(errc::forbidden),
                schema.name + "/" + std::string(key) + ": not a member of group '" + g + "'"};
    }
    return {};
}

/// The members a write leaves a membership record with, checked: every name a known user, at
/// most `max_members`, and the writer among them (a membership record cannot remove its own
/// writer: a user leaves a group by a write of another member or of the server). A delete
/// leaves none. `current` is the record's members now.
inline diagnostics check_members(const collection_schema& schema, const mutation& m,
                                 std::string_view writer,
                                 const std::function<bool(std::string_view)>& known_user,
                                 std::size_t max_members, const std::vector<std::string>& current,
                                 bool record_exists, std::vector<std::string>& after) {
    after.clear();
    if (m.op == mutation_op::remove) return {};
    const auto* v = m.fields.if_contains(schema.members_field);
    if (!v) {
        if (record_exists) {
            after = current;
            return {};
        }
        v = schema.defaults.if_contains(schema.members_field);
    }
    if (v)
        if (auto d = names_in(*v, schema.members_field, max_members, after)) return d;
    for (const auto& user : after)
        if (!known_user || !known_user(user))
            return {make_error_code(errc::invalid_field),
                    "field '" + schema.members_field + "': '" + user + "' is not a known user"};
    if (!holds(after, writer))
        return {make_error_code(errc::forbidden),
                "field '" + schema.members_field + "' must list its writer '" +
                    std::string(writer) + "'"};
    return {};
}

/// Who joins and who leaves a group when its members go from `before` to `after` (both
/// sorted).
struct membership_diff {
    std::vector<std::string> joined, left;
};
inline membership_diff diff_members(const std::vector<std::string>& before,
                                    const std::vector<std::string>& after) {
    membership_diff d;
    std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                        std::back_inserter(d.joined));
    std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                        std::back_inserter(d.left));
    return d;
}

} // namespace offsync::server::detail
