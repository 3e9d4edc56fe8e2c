// offsync — the device's side of partial sync as pure functions: the state a store keeps per
// collection (the subset the device holds, and a backfill under way), its text form, and what
// a change of subset does to it. The engine reads and writes the state; these decide.
#pragma once

#include <offsync/subset.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace offsync::detail {

/// What a device holds of one collection: the records of `subset` its pulls have reached, and,
/// while `backfill` is set, those of `backfill->held` up to `backfill->until` that a backfill
/// from `backfill_cursor` is still filling in to `subset`.
struct device_subset_state {
    sync_subset subset;
    std::optional<subset_backfill> backfill = {};
    std::uint64_t backfill_cursor = 0;
};

/// The stored text: empty for the whole collection with no backfill (what a store that never
/// heard of subsets holds).
inline std::string encode_subset_state(const device_subset_state& s) {
    if (s.subset.everything() && !s.backfill) return {};
    boost::json::object out{{"subset", to_json(s.subset)}};
    if (s.backfill)
        out["backfill"] = boost::json::object{{"held", to_json(s.backfill->held)},
                                              {"until", s.backfill->until},
                                              {"cursor", s.backfill_cursor}};
    return boost::json::serialize(out);
}

/// Reads the stored text; nullopt if it is not one `encode_subset_state` writes (the device
/// then cannot tell what it holds).
inline std::optional<device_subset_state> decode_subset_state(std::string_view text) {
    device_subset_state out;
    if (text.empty()) return out;
    boost::json::error_code ec;
    const auto v = boost::json::parse(text, ec);
    const auto* o = ec ? nullptr : v.if_object();
    if (!o) return std::nullopt;
    const auto* subset = o->if_contains("subset");
    if (!subset || subset_from_json(*subset, out.subset)) return std::nullopt;
    if (const auto* b = o->if_contains("backfill")) {
        const auto* bo = b->if_object();
        const auto* held = bo ? bo->if_contains("held") : nullptr;
        const auto* until = bo ? bo->if_contains("until") : nullptr;
        const auto* cursor = bo ? bo->if_contains("cursor") : nullptr;
        if (!held || !until || !cursor || !until->is_number() || !cursor->is_number())
            return std::nullopt;
        subset_backfill backfill;
        if (subset_from_json(*held, backfill.held)) return std::nullopt;
        boost::system::error_code nec;
        backfill.until = until->to_number<std::uint64_t>(nec);
        if (nec) return std::nullopt;
        out.backfill_cursor = cursor->to_number<std::uint64_t>(nec);
        if (nec) return std::nullopt;
        out.backfill = std::move(backfill);
    }
    return out;
}

/// Whether every record of `narrower` is a record of `wider`, as far as can be told without
/// the records: the same conditions, and groups that `wider` has too (or `wider` has all).
inline bool subset_within(const sync_subset& narrower, const sync_subset& wider) {
    if (wider.everything()) return true;
    // The same conditions: the subsets without their groups are equal.
    if (!(sync_subset{std::nullopt, narrower.where} == sync_subset{std::nullopt, wider.where}))
        return false;
    if (!wider.groups) return true;
    if (!narrower.groups) return false;
    return std::all_of(narrower.groups->begin(), narrower.groups->end(), [&](const auto& g) {
        return std::find(wider.groups->begin(), wider.groups->end(), g) != wider.groups->end();
    });
}

/// What a change of the device's subset to `wanted` does.
struct subset_change {
    device_subset_state next;
    bool restart = false; ///< pull the collection again from 0 (the cursor is reset)
};

/// The state after the device's subset becomes `wanted`, given the stored one (nullopt if it
/// could not be read) and the collection's cursor:
/// - nothing pulled yet (cursor 0): the new subset, from the start;
/// - a state that cannot be read, or a backfill still under way: what the device holds is no
///   one subset, so it pulls the new one again from 0 (what it holds already costs a download,
///   nothing is lost);
/// - else a backfill of what the new subset adds, up to the cursor, unless it adds nothing
///   (`subset_within` the held one).
/// The caller evicts the records the new subset drops.
inline subset_change plan_subset_change(const std::optional<device_subset_state>& stored,
                                        const sync_subset& wanted, std::uint64_t cursor) {
    subset_change out;
    out.next.subset = wanted;
    if (cursor == 0) return out;
    if (!stored || stored->backfill) {
        out.restart = true;
        return out;
    }
    if (!subset_within(wanted, stored->subset))
        out.next.backfill = subset_backfill{stored->subset, cursor};
    return out;
}

} // namespace offsync::detail
