// offsync — a query as plain data: comparisons of a described field with a JSON constant, all
// of which must hold. Typed queries (query.hpp) produce it; stores serve it as SQL, and a
// device's subscription (subscription.hpp) carries it to the server, which evaluates it on JSON.
#pragma once

#include <boost/json/value.hpp>

#include <string>
#include <vector>

namespace offsync {

/// How a field is compared with a constant.
enum class compare_op { equal, not_equal, less, less_equal, greater, greater_equal };

/// One comparison as data: `field op operand`, the operand in its JSON form. A record whose
/// field is missing or null never matches (SQL's rule, which every store follows).
struct field_condition {
    std::string field;
    compare_op op = compare_op::equal;
    boost::json::value operand;
};

/// A query as data, for stores that serve queries themselves: every condition must hold.
struct query_spec {
    std::vector<field_condition> conditions;
};

} // namespace offsync
