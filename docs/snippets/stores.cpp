// offsync documentation snippets for docs/server.md and docs/storage.md. Every region between
// `// [snippet: NAME]` and `// [end snippet]` appears verbatim in those pages; the build
// compiles this program and ctest runs it: it opens each store in a temporary folder and starts
// the page's server (then lets it go: serving is docs/snippets/app_api.cpp's part).

#include <offsync/replica.hpp>
#include <offsync/server.hpp>
#include <offsync/server/sqlite_store.hpp>
#include <offsync/storage/sqlite.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/describe/class.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace asio = boost::asio;

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

namespace {

void client_store() {
    // [snippet: client-store]
    offsync::sqlite_storage store("app-data/offsync.db",
                                  {offsync::sqlite_durability::full, /*busy_timeout_ms=*/5000});
    offsync::basic_replica replica(store);
    // [end snippet]
    replica.put(Note{"n1", "kept on disk"});
}

void server_store() {
    // [snippet: server-store]
    offsync::server::sqlite_server_store store("server-data/sync.db");   // durability full
    offsync::server::sync_service service(store);                         // store outlives service
    service.add_collection<Note>();
    // [end snippet]
}

void own_server() {
    std::ofstream("tokens.txt") << "note-app-token-0123456789 alice\n";
    // [snippet: own-server]
    offsync::server::sqlite_server_store store("sync.db");
    offsync::server::sync_service service(store);
    service.add_collection<Note>();                 // every synced model type

    asio::io_context io;
    auto tokens = offsync::server::token_file_authenticator::load("tokens.txt"); // throws if bad
    offsync::server::http_server server(io.get_executor(), service, std::move(tokens));
    server.listen({asio::ip::make_address("127.0.0.1"), 0}); // 0: a free port; 0.0.0.0: all
    server.start();
    std::printf("listening on port %u\n", unsigned(server.local_endpoint().port()));
    // [end snippet]
}

} // namespace

int main() {
    const auto dir = std::filesystem::temp_directory_path() / "offsync-doc-stores";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "app-data");
    std::filesystem::create_directories(dir / "server-data");
    std::filesystem::current_path(dir);
    int status = 0;
    try {
        client_store();
        server_store();
        own_server();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stores snippet: %s\n", e.what());
        status = 1;
    }
    std::filesystem::current_path(std::filesystem::temp_directory_path());
    std::filesystem::remove_all(dir);
    return status;
}
