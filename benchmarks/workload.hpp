// offsync-bench: the records every scenario moves, shaped like a Landmarks reservation (about
// 170 bytes of JSON each), and the app edits that make them dirty.
#pragma once

#include <offsync/conflict/ask_user.hpp>
#include <offsync/detail/replica_logic.hpp>
#include <offsync/json_codec.hpp>
#include <offsync/model.hpp>

#include <boost/describe/class.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace offsync_bench {

/// The benchmark's own record type: the first Landmarks reservation, per user. The example's
/// model may change (its reservations became shareable); this one stays, so that figures
/// compare across commits.
struct Reservation {
    std::string id;
    std::int64_t landmark_id = 0;
    std::chrono::system_clock::time_point date;
    std::int32_t party_size = 1;
    std::string status = "confirmed";
    std::string notes;
};
BOOST_DESCRIBE_STRUCT(Reservation, (), (id, landmark_id, date, party_size, status, notes))

} // namespace offsync_bench

template <>
struct offsync::model_traits<offsync_bench::Reservation> {
    static constexpr std::string_view collection = "reservations";
    static constexpr auto key = &offsync_bench::Reservation::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    using conflict_policy = offsync::ask_user;
};

namespace offsync_bench {

/// A reservation that belongs to a group: the workload's record with the group it is in
/// (sharing, docs/sharing.md).
struct GroupedReservation {
    std::string id;
    std::string group;
    std::int64_t landmark_id = 0;
    std::chrono::system_clock::time_point date;
    std::int32_t party_size = 1;
    std::string status = "confirmed";
    std::string notes;
};
BOOST_DESCRIBE_STRUCT(GroupedReservation, (),
                      (id, group, landmark_id, date, party_size, status, notes))

} // namespace offsync_bench

template <>
struct offsync::model_traits<offsync_bench::GroupedReservation> {
    static constexpr std::string_view collection = "group_reservations";
    static constexpr auto key = &offsync_bench::GroupedReservation::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &offsync_bench::GroupedReservation::group;
};

namespace offsync_bench {

/// Record `i` of a workload; `variant` > 0 is the same record after `variant` edits.
inline Reservation make_reservation(std::size_t i, int variant = 0) {
    Reservation r;
    char id[32];
    std::snprintf(id, sizeof id, "r-%09zu", i);
    r.id = id;
    r.landmark_id = std::int64_t(i % 5000) + 1;
    r.date = std::chrono::sys_days{std::chrono::year{2026} / 12 / 24} +
             std::chrono::days(i % 365) + std::chrono::hours(i % 24);
    r.party_size = std::int32_t(1 + i % 8);
    r.status = variant % 2 ? "cancelled" : "confirmed";
    r.notes = "window seat, vegetarian menu, arriving by train " + std::to_string(i % 997);
    if (variant) r.notes += " (edit " + std::to_string(variant) + ")";
    return r;
}

/// Records per group in the sharing scenarios: the issue's "1 of 1,000 groups of a
/// 1,000,000-record collection".
constexpr std::size_t group_size = 1000;

/// The group of grouped record `i`: groups of `group_size` consecutive records.
inline std::string group_name(std::size_t i) { return "g-" + std::to_string(i / group_size); }

/// Grouped record `i`: record `i` in its group.
inline GroupedReservation make_grouped_reservation(std::size_t i, int variant = 0) {
    auto r = make_reservation(i, variant);
    return {std::move(r.id), group_name(i), r.landmark_id, r.date, r.party_size,
            std::move(r.status), std::move(r.notes)};
}

inline std::size_t record_json_bytes() {
    return boost::json::serialize(offsync::to_json_object(make_reservation(123456))).size();
}

/// Writes `count` records (ids first, first + stride, ...) into a store as app edits, 10,000 per
/// transaction: the setup of a scenario, not part of what it measures.
/// `Model` is `Reservation` or `GroupedReservation`.
template <class Model = Reservation, class Storage>
void edit_records(Storage& storage, std::size_t first, std::size_t count, std::size_t stride,
                  int variant, std::int64_t now_ms) {
    const auto& schema = offsync::schema_of<Model>();
    std::size_t done = 0;
    while (done < count) {
        auto txn = storage.begin();
        const std::size_t end = std::min(count, done + 10'000);
        for (; done < end; ++done) {
            const auto i = first + done * stride;
            Model r;
            if constexpr (std::is_same_v<Model, GroupedReservation>)
                r = make_grouped_reservation(i, variant);
            else
                r = make_reservation(i, variant);
            offsync::detail::local_edit(txn, schema, r.id, offsync::to_json_object(r), now_ms);
        }
        txn.commit();
    }
}

} // namespace offsync_bench
