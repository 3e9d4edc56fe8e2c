// offsync — how a user sees a stored record: the shared or owned record with the user's own
// values of per-user fields laid over it, the echo that tells a client its own write is the
// latest, and the fields an acknowledgement must carry back. Pure functions of stored records.
#pragma once

#include <offsync/model.hpp>
#include <offsync/protocol/messages.hpp>
#include <offsync/server/store.hpp>

#include <optional>
#include <string_view>

namespace offsync::server::detail {

/// The record as a user sees it: `base` (the shared or owned record) with the user's own values
/// of per-user fields (`own`) laid over it. A field the stored record lacks (the model gained it
/// since) reads as its default. Nullopt without a base.
inline std::optional<change> view_of(const collection_schema& schema, const server_record* base,
                                     const server_record* own) {
    if (!base) return std::nullopt;
    change out;
    out.id = key_to_json(schema, base->key);
    out.version = base->version;
    out.deleted = base->deleted;
    out.stamp = base->stamp;
    if (base->deleted) return out;
    out.value = base->value;
    if (schema.scope == scope::shared && schema.per_user_mask) {
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            if (!((schema.per_user_mask >> i) & 1)) continue;
            const auto& f = schema.fields[i];
            const auto* v = own && !own->deleted ? own->value.if_contains(f) : nullptr;
            out.value[f] = v ? *v : schema.defaults.at(f);
        }
        if (own && own->version > out.version) {
            out.version = own->version;
            out.stamp = own->stamp;
        }
    }
    return out;
}

/// `view_of` a record with no per-user values laid over it, taking its value over (a feed page
/// is read once: its values need not be copied).
inline change view_of(const collection_schema& schema, server_record&& base) {
    change out;
    out.id = key_to_json(schema, base.key);
    out.version = base.version;
    out.deleted = base.deleted;
    out.stamp = std::move(base.stamp);
    if (!base.deleted) out.value = std::move(base.value);
    return out;
}

/// A change that tells the client its own write is the record's latest: no value.
inline change echo_of(const collection_schema& schema, const server_record& rec) {
    change out;
    out.id = key_to_json(schema, rec.key);
    out.version = rec.version;
    out.deleted = rec.deleted;
    out.stamp = rec.stamp;
    out.echo = true;
    return out;
}

/// The record `rec` as its writer `client` should now hold it, if it holds fields another
/// writer wrote after `base_version` (edits to other fields merge without a conflict): an
/// acknowledgement carries it, so that after every acknowledgement the client holds the record
/// exactly as the server does at that version. That is what lets a later pull answer the
/// client's own writes with echo markers. Nullopt when the client has seen every field.
inline std::optional<change> unseen_writes(const collection_schema& schema,
                                           const server_record& rec, std::uint64_t base_version,
                                           std::string_view client) {
    for (const auto& f : rec.fields)
        if (f.version > base_version && f.writer != client) return view_of(schema, &rec, nullptr);
    return std::nullopt;
}

/// A record gone for the pulling device though not deleted (the user no longer sees it, or it
/// left the device's subscription): a tombstone at `version` with a blank stamp, which names no
/// writer and no time.
inline change removal_of(boost::json::value id, std::uint64_t version) {
    change gone;
    gone.id = std::move(id);
    gone.version = version;
    gone.deleted = true;
    return gone;
}

/// What the pull's subscription makes of a change `c` the user may see (`value`: the record's
/// value, which an echo does not carry). Without a backfill every change is kept, and a live
/// record outside the subscription becomes a removal, so a device that held it drops it. In a
/// backfill only the live records the device did not hold are kept: in the subscription and
/// not in the one it held.
inline bool keep_for_subset(const collection_schema& schema, const pull_request& request,
                                  change& c, const boost::json::object& value) {
    if (c.deleted) return !request.backfill;
    const bool in_part = request.subset.everything() ||
                         subset_matches(schema, value, request.subset);
    if (request.backfill) return in_part && !subset_matches(schema, value, request.backfill->held);
    if (!in_part) c = removal_of(std::move(c.id), c.version);
    return true;
}

/// A backfill's last page ends at its `until`, where the device's own cursor takes over; a
/// page that reaches `until` is the last, whatever follows it in the feed.
inline void end_backfill_page(const pull_request& request, pull_response& page) {
    if (!request.backfill) return;
    if (page.cursor >= request.backfill->until) page.has_more = false;
    if (!page.has_more) page.cursor = request.backfill->until;
}

} // namespace offsync::server::detail
