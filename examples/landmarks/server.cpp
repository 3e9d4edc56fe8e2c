// landmarks-server: the Landmarks sync server over HTTP/1.1.
//
//   landmarks-server [--port N] [--bind ADDR] [--tokens FILE] [--catalog FILE] [--data FILE]
//
// --port     TCP port (default 8080; 0 picks a free one and prints it)
// --bind     address to listen on (default 127.0.0.1)
// --tokens   lines of "token user" (default: tokens.txt beside this source)
// --catalog  the shared landmark catalog, a JSON array (default: catalog.json beside it)
// --data     where the server keeps its records: accepted for the command line of the SQLite
//            server store to come; until then records live in memory and a note says so
//
// Prints one JSON log line per request on stdout; stops cleanly on SIGINT/SIGTERM, letting
// requests in flight finish.
#include "model.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/server/sync_service.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/parse.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace asio = boost::asio;

namespace {

int usage(const char* why) {
    std::fprintf(stderr,
                 "landmarks-server: %s\n"
                 "usage: landmarks-server [--port N] [--bind ADDR] [--tokens FILE] "
                 "[--catalog FILE] [--data FILE]\n",
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

} // namespace

int main(int argc, char** argv) {
    std::string port = "8080", bind = "127.0.0.1", data;
    std::string tokens_path = LANDMARKS_TOKENS, catalog_path = LANDMARKS_CATALOG;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) return usage(("missing value after " + flag).c_str());
        const std::string value = argv[++i];
        if (flag == "--port") port = value;
        else if (flag == "--bind") bind = value;
        else if (flag == "--tokens") tokens_path = value;
        else if (flag == "--catalog") catalog_path = value;
        else if (flag == "--data") data = value;
        else return usage(("unknown option " + flag).c_str());
    }
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

        offsync::server::sync_service service;
        service.add_collection<landmarks::Landmark>();
        service.add_collection<landmarks::Reservation>();
        std::string text;
        if (!read_file(catalog_path, text))
            return usage(("cannot read catalog " + catalog_path).c_str());
        boost::system::error_code ec;
        const auto catalog = boost::json::parse(text, ec);
        if (ec || !catalog.is_array())
            return usage(("catalog " + catalog_path + " is not a JSON array").c_str());
        for (const auto& item : catalog.as_array()) {
            offsync::diagnostics error;
            if (!item.is_object() ||
                !service.admin_put("landmarks", item.as_object(), {}, &error)) {
                std::fprintf(stderr, "landmarks-server: bad catalog entry in %s: %s\n",
                             catalog_path.c_str(),
                             item.is_object() ? error.message.c_str() : "not an object");
                return 2;
            }
        }
        if (!data.empty())
            std::fprintf(stderr,
                         "landmarks-server: note: --data %s is not used yet; records are kept "
                         "in memory until the SQLite server store lands\n",
                         data.c_str());

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
