// A consumer's program: its own model type, a device on a SQLite file and a server in memory,
// one round of sync. Exits 0 only if the record arrived. docs/getting-started.md shows the part
// between the snippet markers.
// [snippet: getting-started]
#include <offsync/offsync.hpp>
#include <offsync/storage/sqlite.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/describe/class.hpp>

#include <optional>
#include <string>

// 1. Your type, described, and its traits: collection name, key, scope.
struct Note {
    std::string id;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(Note, (), (id, text))

template <>
struct offsync::model_traits<Note> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &Note::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

// 2. A device: a SQLite store, a replica over it, a transport and an engine. Here the server
// is in the same process (loopback_transport); an app uses http_transport instead.
bool sync_a_note(const std::string& database_file) {
    offsync::server::sync_service service;
    service.add_collection<Note>();

    offsync::sqlite_storage store(database_file);
    offsync::basic_replica replica(store);
    replica.put(Note{"n-1", "written offline"}); // works with no network

    boost::asio::io_context io;
    offsync::loopback_transport transport(io.get_executor(), service, "alice");
    offsync::basic_sync_engine engine(io.get_executor(), replica, transport);
    engine.add_collection<Note>();

    // 3. One round: push what is dirty, pull what changed.
    std::optional<offsync::sync_report> report;
    engine.async_sync([&](offsync::error_code, offsync::sync_report r) { report = r; });
    io.run();

    const auto on_server = service.get("alice", "notes", "n-1");
    return report && !report->error && on_server &&
           on_server->value.at("text") == "written offline";
}
// [end snippet]

#include <cstdio>
#include <filesystem>

int main() {
    const auto file = std::filesystem::temp_directory_path() /
                      ("offsync-consumer-" + offsync::make_uuid() + ".db");
    const bool arrived = sync_a_note(file.string());
    std::puts(arrived ? "consumer: the note reached the server"
                      : "consumer: the note did not reach the server");
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(file.string() + suffix, ec);
    return arrived ? 0 : 1;
}
