// offsync — the per-record REST API's own rules, apart from the push path they share: how an id
// in a URL path names a key, and how a write's outcome reads as a REST answer.
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol/messages.hpp>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace offsync::server::detail {

/// The key of an id written in a URL path (already percent-decoded): a string id as is, an
/// integer id as decimal digits (an optional '-', no '+', no leading zeros or other junk).
inline diagnostics key_from_text(const collection_schema& schema, std::string_view text,
                                 std::string& key) {
    if (schema.key == key_kind::string)
        return key_from_json(schema, boost::json::string(text), key);
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || p != text.data() + text.size())
        return {make_error_code(errc::invalid_id), "id must be an integer"};
    key = std::to_string(n);
    if (key != text) return {make_error_code(errc::invalid_id), "id must be an integer"};
    return {};
}

/// A REST write refused the way a push refuses a mutation: the result's own code when it names
/// one, else `invalid_field`.
inline diagnostics refusal_of(const mutation_result& result) {
    if (const auto known = errc_from_string(result.error_code); known && *known != errc::ok)
        return {make_error_code(*known), result.error_message};
    return {make_error_code(errc::invalid_field), result.error_message};
}

/// A REST write that met a newer write: the record `key` was written since `base_version` and
/// is now at `current_version`.
inline diagnostics conflict_of(const collection_schema& schema, std::string_view key,
                               std::uint64_t base_version, std::uint64_t current_version) {
    return {make_error_code(errc::version_conflict),
            schema.name + "/" + std::string(key) + " was written since version " +
                std::to_string(base_version) + "; it is now at version " +
                std::to_string(current_version)};
}

} // namespace offsync::server::detail
