// offsync — whether a JSON value is a record of a collection: what the client checks before it
// stores an edit and the server before it stores a write.
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>

#include <boost/json/object.hpp>

#include <string>
#include <string_view>

namespace offsync::detail {

/// Validates a JSON value as a record of `schema`: an object with known fields of the right
/// types whose key field, if present, matches `key`.
inline diagnostics validate_value(const collection_schema& schema, std::string_view key,
                                  const boost::json::object& value) {
    for (const auto& [name, v] : value) {
        auto index = schema.field_index(name);
        if (!index)
            return {make_error_code(errc::unknown_field),
                    "unknown field '" + std::string(name) + "' in " + schema.name};
        if (auto d = schema.check_field(*index, v)) return d;
        if (name == schema.key_field) {
            std::string k;
            if (key_from_json(schema, v, k) || k != key)
                return {make_error_code(errc::invalid_id),
                        "field '" + schema.key_field + "' does not match the record id"};
        }
    }
    return {};
}

} // namespace offsync::detail
