// The library tests' own model types. They have the shape of the Landmarks example's (a shared
// catalog with a per-user field, and per-user records with an ask-user policy) because the tests
// tell the same story, but they are the tests' own: the example may change its model without
// changing what the library's tests prove.
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

namespace offsync_test {

/// A record of a shared, read-only catalog, with one field (`is_favorite`) each user holds for
/// themselves: collection "landmarks", integer ids, last-write-wins.
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

/// A per-user record: collection "reservations", string ids, conflicts parked for the user.
struct Reservation {
    std::string id;
    std::int64_t landmark_id = 0;
    std::chrono::system_clock::time_point date;
    std::int32_t party_size = 1;
    std::string status = "confirmed";
    std::string notes;
};
BOOST_DESCRIBE_STRUCT(Reservation, (), (id, landmark_id, date, party_size, status, notes))

} // namespace offsync_test

namespace offsync_test {

/// Sample records.
inline Landmark half_dome() {
    Landmark l;
    l.id = 1;
    l.name = "Half Dome";
    l.state = "California";
    l.city = "Yosemite";
    l.category = "mountains";
    l.is_featured = true;
    l.description = "A granite dome";
    return l;
}

inline Landmark landmark(std::int64_t id, std::string name) {
    Landmark l;
    l.id = id;
    l.name = std::move(name);
    l.state = "Somewhere";
    return l;
}

inline Reservation reservation(std::string id, std::string status = "confirmed",
                               std::int32_t party = 2) {
    Reservation r;
    r.id = std::move(id);
    r.landmark_id = 1;
    r.date = std::chrono::sys_days{std::chrono::year{2026} / 12 / 24};
    r.party_size = party;
    r.status = std::move(status);
    return r;
}

} // namespace offsync_test

template <>
struct offsync::model_traits<offsync_test::Landmark> {
    static constexpr std::string_view collection = "landmarks";
    static constexpr auto key = &offsync_test::Landmark::id;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr std::array<std::string_view, 1> per_user_fields{"is_favorite"};
    using conflict_policy = offsync::last_write_wins;
};

template <>
struct offsync::model_traits<offsync_test::Reservation> {
    static constexpr std::string_view collection = "reservations";
    static constexpr auto key = &offsync_test::Reservation::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    using conflict_policy = offsync::ask_user;
};

// Grouped collections (sharing): lists whose members see them and their items, and notes in
// any number of groups.
namespace offsync_test {

/// A list: its id is its group, and its members are who may see it and its items.
struct List {
    std::string id;
    std::string title;
    std::vector<std::string> members;
};
BOOST_DESCRIBE_STRUCT(List, (), (id, title, members))

/// An item of one list.
struct Item {
    std::string id;
    std::string list_id;
    std::string name;
    bool bought = false;
};
BOOST_DESCRIBE_STRUCT(Item, (), (id, list_id, name, bought))

/// A note in any number of groups.
struct Note {
    std::string id;
    std::vector<std::string> groups;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(Note, (), (id, groups, text))

} // namespace offsync_test

template <>
struct offsync::model_traits<offsync_test::List> {
    static constexpr std::string_view collection = "lists";
    static constexpr auto key = &offsync_test::List::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &offsync_test::List::id;
    static constexpr auto members = &offsync_test::List::members;
    using conflict_policy = offsync::last_write_wins;
};

template <>
struct offsync::model_traits<offsync_test::Item> {
    static constexpr std::string_view collection = "items";
    static constexpr auto key = &offsync_test::Item::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &offsync_test::Item::list_id;
    using conflict_policy = offsync::last_write_wins;
};

template <>
struct offsync::model_traits<offsync_test::Note> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &offsync_test::Note::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &offsync_test::Note::groups;
    using conflict_policy = offsync::last_write_wins;
};
