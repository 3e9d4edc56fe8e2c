// offsync — what a conflict policy is shown and what it may decide.
#pragma once

#include <offsync/model.hpp>
#include <offsync/protocol.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <string_view>

namespace offsync {

/// A push the server refused because the record moved since the client's base version.
/// Everything a policy may look at; references are valid only during the policy call.
struct conflict {
    const collection_schema& schema;
    std::string_view key;
    const boost::json::object& local_value; ///< the local record (empty when deleted locally)
    bool local_deleted;
    const hlc_stamp& local_stamp;    ///< stamp of the last local edit
    std::uint64_t local_dirty_mask;  ///< the fields the client changed (schema field bits)
    const change& server;            ///< the server's current record (maybe a tombstone)
};

/// A policy's decision.
struct resolution {
    enum class kind {
        keep_local,  ///< re-push the local change, rebased on the server's version
        take_server, ///< adopt the server's record; the local change is reported as discarded
        merged,      ///< adopt `merged_value` and push it
        defer,       ///< park the record and keep a conflict record until the app resolves it
    };
    kind decision = kind::defer;
    boost::json::object merged_value;

    static resolution keep_local() { return {kind::keep_local, {}}; }
    static resolution take_server() { return {kind::take_server, {}}; }
    static resolution defer() { return {kind::defer, {}}; }
    static resolution merged(boost::json::object value) { return {kind::merged, std::move(value)}; }
};

} // namespace offsync
