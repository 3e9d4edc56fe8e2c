// offsync — whether a JSON value is a record of a collection: what the client checks before it
// stores an edit and the server before it stores a write.
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>

#include <boost/json/object.hpp>

#include <string>
#include <string_view>

namespace offsync::detail {

/// The checks of `validate_value` and `validate_server_value`, which differ in what a field the
/// model does not declare is.
inline diagnostics validate_fields(const collection_schema& schema, std::string_view key,
                                   const boost::json::object& value, bool unknown_is_error) {
    for (const auto& [name, v] : value) {
        auto index = schema.field_index(name);
        if (!index) {
            if (!unknown_is_error) continue;
            return {make_error_code(errc::unknown_field),
                    "unknown field '" + std::string(name) + "' in " + schema.name};
        }
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

/// Validates a JSON value as a record of `schema`: an object with known fields of the right
/// types whose key field, if present, matches `key`.
inline diagnostics validate_value(const collection_schema& schema, std::string_view key,
                                  const boost::json::object& value) {
    return validate_fields(schema, key, value, true);
}

/// Validates a record the server sent, before a device's store takes it: every field the model
/// declares must convert to its member's type, and the key field, if present, must match
/// `key`. A field the model does not declare passes: it is a newer schema's, which an older
/// device keeps and ignores (docs/concepts.md). A value that does not decode would be stored
/// clean and fail every later read of that record, and a good server would never send it
/// again, since the cursor had moved past it.
inline diagnostics validate_server_value(const collection_schema& schema, std::string_view key,
                                         const boost::json::object& value) {
    return validate_fields(schema, key, value, false);
}

/// Throws `sync_error` (`bad_response`) when a record the server sent does not validate
/// (`validate_server_value`): the answer it came in is not applied.
inline void expect_server_value(const collection_schema& schema, std::string_view key,
                                const boost::json::object& value, std::string_view where) {
    if (auto d = validate_server_value(schema, key, value))
        throw sync_error(make_error_code(errc::bad_response),
                         std::string(where) + " " + schema.name + "/" + std::string(key) +
                             " does not decode: " + d.message);
}

} // namespace offsync::detail
