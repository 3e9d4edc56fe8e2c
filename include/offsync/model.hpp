// offsync — how a user's struct becomes a synced collection.
#pragma once

#include <offsync/json_codec.hpp>

#include <boost/describe/members.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync {

/// Who may see a collection's records.
enum class scope {
    shared,   ///< one record for everybody (a catalog); read-only to clients unless declared
    per_user, ///< every user has records of their own, invisible to other users
    /// Each record belongs to one or more groups, named by a field of the model
    /// (`model_traits<T>::group`), and is seen and written by the groups' members
    /// (docs/sharing.md).
    grouped,
};

/// Specialise for each synced type. Required members:
///
/// ```
/// template <> struct offsync::model_traits<Reservation> {
///     static constexpr std::string_view collection = "reservations"; // wire name
///     static constexpr auto key = &Reservation::id;   // std::string or integer member
///     static constexpr offsync::scope scope = offsync::scope::per_user;
///     using conflict_policy = offsync::ask_user;       // the default policy (optional)
/// };
/// ```
///
/// Optional, for shared collections: `static constexpr bool client_writable = true;` lets clients
/// write every field; `static constexpr std::array<std::string_view, N> per_user_fields` names
/// fields every user holds a value of their own for (a favorite flag on a shared catalog).
/// Clients may write those even when the collection is otherwise read-only.
///
/// For grouped collections: `static constexpr auto group = &Task::list_id;` names the member
/// that holds a record's group (a `std::string`) or groups (a `std::vector<std::string>`).
/// A collection whose records grant access declares `static constexpr auto members =
/// &TaskList::members;` (a `std::vector<std::string>` of user names) with `group` its key: each
/// record then is its group's membership, and writing it grants and revokes access
/// (docs/sharing.md).
///
/// The type itself must be described with `BOOST_DESCRIBE_STRUCT` (at most 64 members); its
/// members convert through `field_codec`, so no per-field JSON code is written by hand.
template <class T>
struct model_traits;

template <class T>
concept synced_model = described_struct<T> && requires {
    { model_traits<T>::collection } -> std::convertible_to<std::string_view>;
    model_traits<T>::key;
    { model_traits<T>::scope } -> std::convertible_to<scope>;
};

/// The model types an app syncs, named once and used at both ends: the device
/// (`offsync::device<app_models>`) and the server (`sync_service::add_collections(app_models{})`)
/// then cannot disagree on which collections exist.
///
/// ```
/// using app_models = offsync::collections<Task, Comment>;
/// ```
template <synced_model... T>
struct collections {
    static constexpr std::size_t size = sizeof...(T);
    /// Calls `f.template operator()<T>()` for each model type, in order.
    template <class F>
    static void for_each(F&& f) {
        (f.template operator()<T>(), ...);
    }
};

/// Whether `T` is one of the types of a `collections` list.
template <class T, class List>
inline constexpr bool is_listed_v = false;
template <class T, class... U>
inline constexpr bool is_listed_v<T, collections<U...>> = (std::is_same_v<T, U> || ...);

/// Whether a collection's record ids are JSON strings or JSON integers.
enum class key_kind { string, integer };

/// Longest string id accepted, in bytes.
inline constexpr std::size_t max_id_length = 256;

/// A type-erased description of one collection, built from its model type by `make_schema<T>()`.
/// Both ends use it: the client to diff edits into a dirty field mask, the server to validate
/// patches and enforce scope. Field i of `fields` is bit i of a dirty mask.
struct collection_schema {
    std::string name;
    std::vector<std::string> fields;
    std::string key_field;
    key_kind key = key_kind::string;
    offsync::scope scope = scope::per_user;
    bool client_writable = true;
    std::uint64_t per_user_mask = 0;
    /// Grouped collections: the field naming a record's group, and whether it holds a list of
    /// groups rather than one.
    std::string group_field;
    bool group_is_list = false;
    /// Grouped collections whose records are their group's membership: the field listing the
    /// members (user names). Empty otherwise.
    std::string members_field;
    boost::json::object defaults; ///< a default-constructed record: what a missing field reads as
    /// Checks one field's JSON against the member's type; empty diagnostics when it converts.
    std::function<diagnostics(std::size_t field_index, const boost::json::value&)> check_field;

    std::optional<std::size_t> field_index(std::string_view field) const {
        for (std::size_t i = 0; i < fields.size(); ++i)
            if (fields[i] == field) return i;
        return std::nullopt;
    }
    std::uint64_t all_fields_mask() const {
        return fields.size() >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << fields.size()) - 1;
    }
    /// Whether a client may write `field` of this collection.
    bool client_may_write(std::size_t field_index) const {
        if (scope != scope::shared || client_writable) return true;
        return (per_user_mask >> field_index) & 1;
    }
};

namespace detail {
template <class T>
constexpr bool has_per_user_fields = requires { model_traits<T>::per_user_fields; };
template <class T>
constexpr bool has_client_writable = requires { model_traits<T>::client_writable; };
template <class T>
constexpr bool has_group = requires { model_traits<T>::group; };
template <class T>
constexpr bool has_members = requires { model_traits<T>::members; };
template <class T, auto Member>
using member_type_t = std::remove_cvref_t<decltype(std::declval<T&>().*Member)>;

/// The name of the described member `pointer` points to.
template <class T, class Pointer>
std::string member_name(Pointer pointer) {
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    std::string name;
    boost::mp11::mp_for_each<members>([&](auto m) {
        if constexpr (std::is_same_v<std::remove_cv_t<decltype(m.pointer)>, Pointer>)
            if (m.pointer == pointer) name = m.name;
    });
    return name;
}
} // namespace detail

/// Builds the schema of a model type from its traits and its Boost.Describe members.
template <synced_model T>
collection_schema make_schema() {
    using traits = model_traits<T>;
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    static_assert(boost::mp11::mp_size<members>::value <= 64,
                  "offsync tracks dirty fields in a 64-bit mask: at most 64 members");
    using key_type = std::remove_cvref_t<decltype(std::declval<T&>().*traits::key)>;
    static_assert(std::is_same_v<key_type, std::string> || std::is_integral_v<key_type>,
                  "a record key must be a std::string or an integer member");

    collection_schema s;
    s.name = std::string(traits::collection);
    s.scope = traits::scope;
    s.key = std::is_integral_v<key_type> ? key_kind::integer : key_kind::string;
    if constexpr (detail::has_client_writable<T>)
        s.client_writable = traits::client_writable;
    else
        s.client_writable = traits::scope != scope::shared;
    static_assert(!detail::has_members<T> || detail::has_group<T>,
                  "a model with `members` is grouped: declare `group` (its key member) too");
    if constexpr (detail::has_group<T>) {
        using group_type = detail::member_type_t<T, traits::group>;
        static_assert(std::is_same_v<group_type, std::string> ||
                          std::is_same_v<group_type, std::vector<std::string>>,
                      "`group` must name a std::string or std::vector<std::string> member");
        static_assert(traits::scope == scope::grouped,
                      "a model that declares `group` must have scope::grouped");
        s.group_field = detail::member_name<T>(traits::group);
        s.group_is_list = !std::is_same_v<group_type, std::string>;
        if constexpr (detail::has_members<T>) {
            static_assert(std::is_same_v<detail::member_type_t<T, traits::members>,
                                         std::vector<std::string>>,
                          "`members` must name a std::vector<std::string> member");
            static_assert(std::is_same_v<decltype(traits::group), decltype(traits::key)>,
                          "a membership model's `group` must be its key member");
            if constexpr (std::is_same_v<decltype(traits::group), decltype(traits::key)>)
                static_assert(traits::group == traits::key,
                              "a membership model's `group` must be its key member");
            s.members_field = detail::member_name<T>(traits::members);
        }
    } else {
        static_assert(traits::scope != scope::grouped,
                      "a grouped collection must declare `group` (the member naming its group)");
    }
    boost::mp11::mp_for_each<members>([&](auto m) {
        s.fields.emplace_back(m.name);
        if constexpr (std::is_same_v<decltype(m.pointer), decltype(traits::key)>)
            if (m.pointer == traits::key) s.key_field = m.name;
    });
    if constexpr (detail::has_per_user_fields<T>) {
        for (std::string_view f : traits::per_user_fields) {
            auto i = s.field_index(f);
            if (!i) throw std::logic_error("per_user_fields names an unknown member: " +
                                           std::string(f));
            s.per_user_mask |= std::uint64_t{1} << *i;
        }
    }
    s.defaults = to_json_object(T{});
    s.check_field = [](std::size_t index, const boost::json::value& jv) {
        diagnostics result;
        std::size_t i = 0;
        boost::mp11::mp_for_each<members>([&](auto m) {
            if (i++ != index) return;
            using member_type = std::remove_cvref_t<decltype(std::declval<T&>().*m.pointer)>;
            member_type scratch{};
            std::string why;
            if (!field_codec<member_type>::decode(jv, scratch, why))
                result = {make_error_code(errc::invalid_field),
                          std::string("field '") + m.name + "' " + why};
        });
        return result;
    };
    return s;
}

/// The schema of a model type, built once per program.
template <synced_model T>
const collection_schema& schema_of() {
    static const collection_schema schema = make_schema<T>();
    return schema;
}

/// The C++ type of a model's key member.
template <synced_model T>
using key_type_t = std::remove_cvref_t<decltype(std::declval<T&>().*model_traits<T>::key)>;

/// The key text of a key value: the string itself, or an integer's decimal digits.
template <class K>
std::string key_text(const K& key) {
    if constexpr (std::is_integral_v<K>) return std::to_string(key);
    else return std::string(key);
}

/// Every field of `in` that the schema knows, over the schema's defaults: what a record of this
/// schema reads as when `in` comes from an older or newer peer (missing = default, unknown
/// dropped).
inline boost::json::object normalize(const collection_schema& schema, const boost::json::object& in) {
    boost::json::object out = schema.defaults;
    for (const auto& f : schema.fields)
        if (const auto* v = in.if_contains(f)) out[f] = *v;
    return out;
}

/// `normalize`, taking `in` over: a value already of the schema's shape (every field, nothing
/// else: what a peer on the same model sends) is returned as it is, without a copy.
inline boost::json::object normalize(const collection_schema& schema, boost::json::object&& in) {
    bool exact = in.size() == schema.fields.size();
    for (std::size_t i = 0; exact && i < schema.fields.size(); ++i)
        exact = in.contains(schema.fields[i]);
    if (exact) return std::move(in);
    return normalize(schema, static_cast<const boost::json::object&>(in));
}

/// Validates an id's JSON form against the schema and returns its text form, the key the
/// stores index by: the string itself, or the integer's decimal digits.
inline diagnostics key_from_json(const collection_schema& schema, const boost::json::value& id,
                                 std::string& key) {
    if (schema.key == key_kind::string) {
        const auto* s = id.if_string();
        if (!s || s->empty() || s->size() > max_id_length)
            return {make_error_code(errc::invalid_id),
                    "id must be a non-empty string of at most " +
                        std::to_string(max_id_length) + " bytes"};
        key.assign(s->data(), s->size());
        return {};
    }
    if (id.is_int64()) {
        key = std::to_string(id.get_int64());
        return {};
    }
    if (id.is_uint64() && id.get_uint64() <= std::uint64_t(INT64_MAX)) {
        key = std::to_string(id.get_uint64());
        return {};
    }
    return {make_error_code(errc::invalid_id), "id must be an integer"};
}

/// The id's JSON form for a key text produced by `key_from_json`.
inline boost::json::value key_to_json(const collection_schema& schema, std::string_view key) {
    if (schema.key == key_kind::string) return boost::json::value(boost::json::string(key));
    return boost::json::value(std::stoll(std::string(key)));
}

/// The key text of a model value.
template <synced_model T>
std::string key_of(const T& value) {
    return key_text(value.*model_traits<T>::key);
}

} // namespace offsync
