// todo-server: the to-do app's sync server, over HTTP on a SQLite file.
//
//   todo-server [--port N] [--data FILE] [--tokens FILE]
//
// --port    TCP port on 127.0.0.1 (default 8090; 0 picks a free one)
// --data    the SQLite file of the server's records (default todo-server.db)
// --tokens  lines of "token user" (default: tokens.txt beside this source)
//
// Prints "listening on http://127.0.0.1:PORT" on stdout once it accepts connections; stops
// cleanly on SIGINT or SIGTERM. Exits 2 for a bad command line or tokens file.
#include "model.hpp"

#include <offsync/server.hpp>
#include <offsync/server/sqlite_store.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>

namespace asio = boost::asio;

namespace {

int usage(const std::string& why) {
    std::fprintf(stderr, "todo-server: %s\nusage: todo-server [--port N] [--data FILE] "
                         "[--tokens FILE]\n", why.c_str());
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    unsigned port = 8090;
    std::string data = "todo-server.db", tokens = TODO_TOKENS;
    for (int i = 1; i < argc; i += 2) {
        const std::string_view flag = argv[i];
        if (i + 1 >= argc) return usage("missing value after " + std::string(flag));
        const std::string_view value = argv[i + 1];
        if (flag == "--port") {
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
            if (ec != std::errc{} || end != value.data() + value.size() || port > 65535)
                return usage("--port takes a number from 0 to 65535");
        } else if (flag == "--data") {
            data = value;
        } else if (flag == "--tokens") {
            tokens = value;
        } else {
            return usage("unknown option " + std::string(flag));
        }
    }

    // [snippet: server]
    offsync::server::authenticator auth;
    try {
        auth = offsync::server::token_file_authenticator::load(tokens); // names a bad line
    } catch (const offsync::sync_error& e) {
        return usage(e.what());
    }
    offsync::server::sqlite_server_store store(data); // created on first start
    offsync::server::sync_service service(store);
    service.add_collections(todo::models{});

    asio::io_context io;
    offsync::server::http_server server(io.get_executor(), service, std::move(auth));
    server.listen({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
    server.start();
    std::printf("listening on http://127.0.0.1:%u\n", unsigned(server.local_endpoint().port()));
    std::fflush(stdout);

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
        server.async_shutdown([](boost::system::error_code) {}); // lets requests finish
    });
    io.run();
    // [end snippet]
    return 0;
}
