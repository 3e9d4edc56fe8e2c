// offsync — typed queries on a model's described fields, and pages of results.
//
//     auto open = replica.find(offsync::field(&Task::done) == false &&
//                              offsync::field(&Task::due) < "2027-01-01");
//
// A query is a conjunction of comparisons of one field with a constant. It is typed (a
// comparison of `done` with a string does not compile) and it is also kept as plain data
// (`query_spec`) so a store can serve it itself: `sqlite_storage` turns it into SQL that an
// index the app declared can serve (docs/app-api.md). Other stores are scanned by the replica.
#pragma once

#include <offsync/json_codec.hpp>
#include <offsync/model.hpp>
#include <offsync/query_spec.hpp>

#include <boost/describe/members.hpp>
#include <boost/json/value.hpp>
#include <boost/mp11/algorithm.hpp>

#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace offsync {

/// Which member types a query may compare: those whose JSON form is a scalar that compares the
/// same way in JSON (SQLite's `json_extract`) and in C++. Strings compare byte by byte.
template <class M>
concept queryable_member =
    std::is_same_v<M, std::string> || std::is_same_v<M, bool> || std::is_integral_v<M> ||
    std::is_floating_point_v<M>;

template <synced_model T>
class query;

namespace detail {
/// The described name of member `pointer` of `T`; throws `sync_error` (`invalid_field`) when
/// `T`'s BOOST_DESCRIBE_STRUCT does not list it.
template <class T, class M>
std::string described_name(M T::*pointer) {
    std::string name;
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    boost::mp11::mp_for_each<members>([&](auto m) {
        if constexpr (std::is_same_v<std::remove_cv_t<decltype(m.pointer)>, M T::*>)
            if (m.pointer == pointer) name = m.name;
    });
    if (name.empty())
        throw sync_error(make_error_code(errc::invalid_field),
                         "a query names a member that BOOST_DESCRIBE_STRUCT does not list");
    return name;
}

template <class M>
bool compare(const M& a, compare_op op, const M& b) {
    switch (op) {
    case compare_op::equal: return a == b;
    case compare_op::not_equal: return !(a == b);
    case compare_op::less: return a < b;
    case compare_op::less_equal: return !(b < a);
    case compare_op::greater: return b < a;
    case compare_op::greater_equal: return !(a < b);
    }
    return false;
}
} // namespace detail

/// One typed comparison, made by `field(&T::member) op value`. Combine with `&&`.
template <synced_model T>
class field_test {
public:
    field_test(field_condition data, std::function<bool(const T&)> test)
        : data_(std::move(data)), test_(std::move(test)) {}
    const field_condition& data() const noexcept { return data_; }
    bool matches(const T& value) const { return test_(value); }

    friend query<T> operator&&(field_test a, field_test b) {
        return query<T>(std::move(a)).and_where(std::move(b));
    }

private:
    field_condition data_;
    std::function<bool(const T&)> test_;
};

/// A member of a model, named in a query: `field(&Task::done) == false`.
template <synced_model T, queryable_member M>
class field_ref {
public:
    explicit field_ref(M T::*pointer) : pointer_(pointer), name_(detail::described_name(pointer)) {}

    const std::string& name() const noexcept { return name_; }

    // The operand converts to the member's type first: `field(&Task::due) < "2027"` compares
    // strings, and the record's value and the store's SQL compare like C++ values.
    friend field_test<T> operator==(const field_ref& f, const M& v) { return f.make(compare_op::equal, v); }
    friend field_test<T> operator!=(const field_ref& f, const M& v) { return f.make(compare_op::not_equal, v); }
    friend field_test<T> operator<(const field_ref& f, const M& v) { return f.make(compare_op::less, v); }
    friend field_test<T> operator<=(const field_ref& f, const M& v) { return f.make(compare_op::less_equal, v); }
    friend field_test<T> operator>(const field_ref& f, const M& v) { return f.make(compare_op::greater, v); }
    friend field_test<T> operator>=(const field_ref& f, const M& v) { return f.make(compare_op::greater_equal, v); }

private:
    field_test<T> make(compare_op op, const M& operand) const {
        field_condition data{name_, op, field_codec<M>::encode(operand)};
        return field_test<T>(std::move(data), [p = pointer_, op, operand](const T& value) {
            return detail::compare(value.*p, op, operand);
        });
    }

    M T::*pointer_;
    std::string name_;
};

/// Names a described member of a model in a query.
template <class T, class M>
    requires synced_model<T> && queryable_member<M>
field_ref<T, M> field(M T::*pointer) {
    return field_ref<T, M>(pointer);
}

/// Every record of `T`'s collection that meets all of its conditions. An empty query matches
/// every live record.
template <synced_model T>
class query {
public:
    query() = default;
    query(field_test<T> c) { conditions_.push_back(std::move(c)); } // NOLINT: a condition is a query

    query& and_where(field_test<T> c) {
        conditions_.push_back(std::move(c));
        return *this;
    }
    friend query operator&&(query q, field_test<T> c) { return std::move(q.and_where(std::move(c))); }

    bool matches(const T& value) const {
        for (const auto& c : conditions_)
            if (!c.matches(value)) return false;
        return true;
    }
    query_spec spec() const {
        query_spec s;
        for (const auto& c : conditions_) s.conditions.push_back(c.data());
        return s;
    }
    bool empty() const noexcept { return conditions_.empty(); }

private:
    std::vector<field_test<T>> conditions_;
};

/// Where a page of results starts and how long it is. Results come in key order, the order of
/// the key's text (so integer keys 10 before 9); `after` is the key text of the last record of
/// the page before (`page::next`), empty for the first page.
struct page_request {
    std::string after;
    std::size_t limit = std::numeric_limits<std::size_t>::max();
};

/// One page of typed records.
template <class T>
struct page {
    std::vector<T> items;
    /// The `after` of the next page; empty when this page is the last.
    std::string next;
};

} // namespace offsync
