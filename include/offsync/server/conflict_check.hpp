// offsync — what the sync service does with one pushed mutation, decided from the records it
// touches: refuse it (validation, scope, rights), answer a conflict, or apply it. Pure functions
// of the schema, the mutation and the stored records; the service reads the records, asks, and
// writes what was decided (`sync_service::apply_one`).
#pragma once

#include <offsync/detail/validate.hpp>
#include <offsync/error.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol/messages.hpp>
#include <offsync/server/store.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace offsync::server::detail {

/// Checks an upsert's fields against the schema (known fields, types, the key) and the
/// client's rights (no field read-only to clients). On success `written` is the mask of the
/// schema fields the upsert writes.
inline diagnostics check_upsert(const collection_schema& schema, std::string_view key,
                                const boost::json::object& fields, std::uint64_t& written) {
    written = 0;
    if (auto invalid = offsync::detail::validate_value(schema, key, fields)) return invalid;
    for (const auto& field : fields) {
        const auto i = *schema.field_index(field.key());
        if (!schema.client_may_write(i))
            return {make_error_code(errc::read_only), "field '" + std::string(field.key()) +
                                                          "' of " + schema.name +
                                                          " is read-only to clients"};
        written |= std::uint64_t{1} << i;
    }
    return {};
}

/// Whether a valid upsert (writing the fields `written`) may be inserted without reading its
/// key first: it says its record is new (base version 0), and the collection's rules do not
/// need the existing record, as they do for a shared collection that clients may not write or
/// whose records carry per-user values. A first upload of records made offline is all such
/// mutations. The store still refuses the insert if the key exists, and the general path then
/// decides.
inline bool may_insert_unread(const collection_schema& schema, const mutation& m,
                              std::uint64_t written) {
    const bool shared = schema.scope == scope::shared;
    // A grouped record's access is checked against the record that holds the key, if any.
    return m.op == mutation_op::upsert && m.base_version == 0 && written != 0 &&
           schema.scope != scope::grouped &&
           !(shared && (schema.per_user_mask || !schema.client_writable));
}

/// Whether `m` writes a field that a writer other than `client` wrote after `m.base_version`.
/// Edits to different fields merge; a client's own earlier write (whose acknowledgement it
/// lost) never conflicts with itself. Writing over a tombstone conflicts if the delete is newer
/// than the base; a delete conflicts with a newer write to any field.
inline bool conflicts(const collection_schema& schema, const mutation& m, std::uint64_t written,
                      const server_record* base, const server_record* own,
                      std::string_view client) {
    auto newer = [&](std::uint64_t version, std::string_view writer) {
        return version > m.base_version && writer != client;
    };
    if (!base) return false;
    if (base->deleted) return m.op == mutation_op::upsert && newer(base->version, base->last_writer);
    const bool shared = schema.scope == scope::shared;
    const auto mask = m.op == mutation_op::remove ? schema.all_fields_mask() : written;
    for (std::size_t i = 0; i < schema.fields.size(); ++i) {
        if (!((mask >> i) & 1)) continue;
        const bool per_user = shared && ((schema.per_user_mask >> i) & 1);
        const auto* holder = per_user ? own : base;
        if (holder && i < holder->fields.size() &&
            newer(holder->fields[i].version, holder->fields[i].writer))
            return true;
    }
    return false;
}

/// What to do with one mutation.
enum class mutation_verdict {
    refuse,    ///< rejected: `mutation_check::refusal` says why
    conflict,  ///< answer the record as it is now; write nothing
    unchanged, ///< an upsert that writes no field of a live record: answer its version
    remove,    ///< a delete (a tombstone, unless nothing live is there to delete)
    write,     ///< an upsert of the fields it writes
};

struct mutation_check {
    mutation_verdict verdict = mutation_verdict::write;
    diagnostics refusal;
    /// Whether a refusal carries the record as the client may see it, so that the client can
    /// drop its change (not for a record the client may not see to begin with).
    bool refusal_shows_record = true;
};

/// Decides what the service does with `m` (to the record `key`), pushed by `client`, given its
/// stored records: `base` (the shared or owned record, tombstones included; null if none) and
/// `own` (the user's own values of a shared record's per-user fields; null if none). `invalid`
/// is the upsert's `check_upsert` failure and `written` its fields.
inline mutation_check check_mutation(const collection_schema& schema, std::string_view key,
                                     const mutation& m, std::uint64_t written,
                                     const diagnostics& invalid,
                                     const server_record* base, const server_record* own,
                                     std::string_view client) {
    const bool shared = schema.scope == scope::shared;
    if (invalid) return {mutation_verdict::refuse, invalid};
    if (m.op == mutation_op::remove && shared && !schema.client_writable)
        return {mutation_verdict::refuse,
                {make_error_code(errc::read_only),
                 schema.name + " records cannot be deleted by clients"}};
    if (shared && !schema.client_writable && (!base || base->deleted))
        return {mutation_verdict::refuse,
                {make_error_code(errc::not_found),
                 schema.name + "/" + std::string(key) + " does not exist"},
                false};
    if (conflicts(schema, m, written, base, own, client)) return {mutation_verdict::conflict, {}};
    if (m.op == mutation_op::remove) return {mutation_verdict::remove, {}};
    if (written == 0 && base && !base->deleted) return {mutation_verdict::unchanged, {}};
    return {mutation_verdict::write, {}};
}

} // namespace offsync::server::detail
