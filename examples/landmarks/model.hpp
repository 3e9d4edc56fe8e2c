// The Landmarks example's model types: a shared catalog of landmarks with a per-user favorite
// flag, and reservations shared with the party that goes. The library knows nothing about
// them; these traits are all it takes to sync them.
#pragma once

#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/model.hpp>

#include <boost/describe/class.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace landmarks {

/// A landmark of the shared catalog. Clients may not edit the catalog, except `is_favorite`,
/// which every user holds for themselves.
struct Landmark {
    std::int64_t id = 0;
    std::string name;
    std::string state;
    std::string city;
    std::string category;
    bool is_featured = false;
    bool is_favorite = false;
    std::string image_name;
    double latitude = 0;
    double longitude = 0;
    std::string description;
};
BOOST_DESCRIBE_STRUCT(Landmark, (),
                      (id, name, state, city, category, is_featured, is_favorite, image_name,
                       latitude, longitude, description))

/// A reservation to visit a landmark, seen and edited by its members: whoever booked it, and
/// those they share it with (docs/sharing.md). Each reservation is its own group, so its id is
/// global: random ids keep two users' bookings apart. A conflict between two writers is for a
/// person to decide.
struct Reservation {
    std::string id;
    std::int64_t landmark_id = 0;
    std::chrono::system_clock::time_point date;
    std::int32_t party_size = 1;
    std::string status = "confirmed"; ///< "confirmed" or "cancelled"
    std::string notes;
    std::vector<std::string> members; ///< the users who see it; its writer is always one
};
BOOST_DESCRIBE_STRUCT(Reservation, (),
                      (id, landmark_id, date, party_size, status, notes, members))

} // namespace landmarks

template <>
struct offsync::model_traits<landmarks::Landmark> {
    static constexpr std::string_view collection = "landmarks";
    static constexpr auto key = &landmarks::Landmark::id;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr std::array<std::string_view, 1> per_user_fields{"is_favorite"};
    using conflict_policy = offsync::last_write_wins;
};

template <>
struct offsync::model_traits<landmarks::Reservation> {
    static constexpr std::string_view collection = "reservations";
    static constexpr auto key = &landmarks::Reservation::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &landmarks::Reservation::id;     // its own group...
    static constexpr auto members = &landmarks::Reservation::members; // ...whose members these are
    using conflict_policy = offsync::ask_user;
};

namespace landmarks {
/// Every collection of the app, in sync order: the server serves this list and each device
/// syncs it (offsync::collections), so the two cannot drift apart.
using models = offsync::collections<Landmark, Reservation>;
} // namespace landmarks
