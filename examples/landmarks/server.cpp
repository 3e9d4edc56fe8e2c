// landmarks-server: the Landmarks sync server over HTTP/1.1.
//
//   landmarks-server [--port N] [--bind ADDR] [--tokens FILE] [--catalog FILE]
//                    [--data FILE [--check-data] | --in-memory]
//
// --port     TCP port (default 8080; 0 picks a free one and prints it)
// --bind     address to listen on (default 127.0.0.1)
// --tokens   lines of "token user" (default: tokens.txt beside this source)
// --catalog  the shared landmark catalog, a JSON array (default: catalog.json beside it)
// --data     the SQLite file the server keeps its records in (default landmarks-server.db in
//            the working directory); created on first start, carried on after a restart. A
//            file that exists but holds no store (a truncated file) is refused.
// --check-data  check the whole data file when it opens (SQLite's quick_check) and refuse a
//            damaged one
// --in-memory  keep records in memory instead: everything is gone when the server stops
//
// The catalog is merged into the store at every start: a landmark that is missing, or whose
// catalog entry changed, is written; the others keep their versions, so clients pull nothing
// new after a plain restart.
// Prints one JSON log line per request on stdout; stops cleanly on SIGINT/SIGTERM, letting
// requests in flight finish.
#include "model.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/server/sqlite_store.hpp>
#include <offsync/server/sync_service.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/parse.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

namespace asio = boost::asio;

namespace {

int usage(const char* why) {
    std::fprintf(stderr,
                 "landmarks-server: %s\n"
                 "usage: landmarks-server [--port N] [--bind ADDR] [--tokens FILE] "
                 "[--catalog FILE] [--data FILE [--check-data] | --in-memory]\n",
                 why);
    return 2;
}

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::stringstream text;
    text << in.rdbuf();
    out = text.str();
    return true;
}

/// Whether the store already holds this catalog entry as it is (per-user fields aside).
bool unchanged(offsync::server::sync_service& service, const offsync::collection_schema& schema,
               const boost::json::object& entry) {
    const auto* id = entry.if_contains(schema.key_field);
    std::string key;
    if (!id || offsync::key_from_json(schema, *id, key)) return false; // admin_put explains
    const auto stored = service.get("", "landmarks", key);
    if (!stored || stored->deleted) return false;
    const auto wanted = offsync::normalize(schema, entry);
    for (std::size_t i = 0; i < schema.fields.size(); ++i) {
        if ((schema.per_user_mask >> i) & 1) continue;
        const auto& f = schema.fields[i];
        if (stored->value.at(f) != wanted.at(f)) return false;
    }
    return true;
}

} // namespace

int main(int argc, char** argv) {
    std::string port = "8080", bind = "127.0.0.1", data = "landmarks-server.db";
    std::string tokens_path = LANDMARKS_TOKENS, catalog_path = LANDMARKS_CATALOG;
    bool in_memory = false, data_given = false, check_data = false;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--in-memory") {
            in_memory = true;
            continue;
        }
        if (flag == "--check-data") {
            check_data = true;
            continue;
        }
        if (i + 1 >= argc) return usage(("missing value after " + flag).c_str());
        const std::string value = argv[++i];
        if (flag == "--port") port = value;
        else if (flag == "--bind") bind = value;
        else if (flag == "--tokens") tokens_path = value;
        else if (flag == "--catalog") catalog_path = value;
        else if (flag == "--data") data = value, data_given = true;
        else return usage(("unknown option " + flag).c_str());
    }
    if (in_memory && data_given) return usage("--data and --in-memory exclude each other");
    if (in_memory && check_data) return usage("--check-data checks a --data file, not memory");
    unsigned short port_number = 0;
    try {
        const auto n = std::stoul(port);
        if (n > 65535) throw std::out_of_range("port");
        port_number = static_cast<unsigned short>(n);
    } catch (const std::exception&) {
        return usage("--port takes a number from 0 to 65535");
    }

    try {
        std::ifstream tokens_file(tokens_path);
        if (!tokens_file) return usage(("cannot read tokens file " + tokens_path).c_str());
        auto auth = offsync::server::token_file_authenticator::parse(tokens_file, tokens_path);

        std::unique_ptr<offsync::server::server_store> store;
        if (in_memory) store = std::make_unique<offsync::server::memory_server_store>();
        else {
            offsync::server::sqlite_server_config config;
            config.quick_check_on_open = check_data;
            store = std::make_unique<offsync::server::sqlite_server_store>(data, config);
        }
        offsync::server::sync_service service(*store);
        service.add_collections(landmarks::models{}); // the list every device syncs
        // Reservations are shared by user name: every user of the token file may be a member.
        for (const auto& user : auth.users()) service.add_user(user);
        std::string text;
        if (!read_file(catalog_path, text))
            return usage(("cannot read catalog " + catalog_path).c_str());
        boost::system::error_code ec;
        const auto catalog = boost::json::parse(text, ec);
        if (ec || !catalog.is_array())
            return usage(("catalog " + catalog_path + " is not a JSON array").c_str());
        const auto schema = offsync::schema_of<landmarks::Landmark>();
        std::size_t written = 0;
        for (const auto& item : catalog.as_array()) {
            offsync::diagnostics error;
            if (!item.is_object()) error = {{}, "not an object"};
            else if (!unchanged(service, schema, item.as_object()) &&
                     service.admin_put("landmarks", item.as_object(), {}, &error))
                ++written;
            if (error) {
                std::fprintf(stderr, "landmarks-server: bad catalog entry in %s: %s\n",
                             catalog_path.c_str(), error.message.c_str());
                return 2;
            }
        }
        std::fprintf(stderr, "landmarks-server: %s; %zu catalog entries written\n",
                     in_memory ? "records in memory" : ("records in " + data).c_str(), written);

        asio::io_context io;
        offsync::server::http_server_config config;
        config.log = [](const offsync::server::request_log& r) {
            std::printf("%s\n", offsync::server::format_log_line(r).c_str());
            std::fflush(stdout);
        };
        offsync::server::http_server server(io.get_executor(), service, std::move(auth), config);
        server.listen({asio::ip::make_address(bind), port_number});
        server.start();
        std::fprintf(stderr, "landmarks-server: listening on %s:%u with %zu landmarks\n",
                     bind.c_str(), unsigned(server.local_endpoint().port()),
                     catalog.as_array().size());

        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](boost::system::error_code, int) {
            std::fprintf(stderr, "landmarks-server: shutting down\n");
            server.async_shutdown([](boost::system::error_code) {});
        });
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "landmarks-server: %s\n", e.what());
        return 1;
    }
}
