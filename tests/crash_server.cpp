// A sync server in its own process, for the crash-safety test: the Landmarks collections on a
// SQLite server store, served over HTTP on 127.0.0.1 until it is killed.
//
//   offsync-crash-server DATA_FILE PORT_FILE TOKEN PORT
//
// PORT 0 picks a free port. Once listening it writes the port to PORT_FILE (atomically, by a
// rename), so the test knows when it may connect.
#include "support/models.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/server/sqlite_store.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace asio = boost::asio;

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s DATA_FILE PORT_FILE TOKEN PORT\n", argv[0]);
        return 2;
    }
    try {
        offsync::server::sqlite_server_store store(argv[1]);
        // The test matches every version against a remembered result, so none may be
        // forgotten: the default window keeps each client's 20,000 newest, far more than the
        // test makes, however far apart device restarts put their ids.
        offsync::server::sync_service service(store);
        service.add_collection<offsync_test::Landmark>();
        service.add_collection<offsync_test::Reservation>();
        std::istringstream tokens(std::string(argv[3]) + " alice\n");
        asio::io_context io;
        offsync::server::http_server server(io.get_executor(), service,
                                            offsync::server::token_file_authenticator::parse(tokens));
        const auto port = static_cast<unsigned short>(std::stoul(argv[4]));
        server.listen({asio::ip::make_address("127.0.0.1"), port});
        server.start();
        const std::string port_file = argv[2];
        {
            std::ofstream out(port_file + ".tmp");
            out << server.local_endpoint().port() << '\n';
        }
        std::rename((port_file + ".tmp").c_str(), port_file.c_str());
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crash server: %s\n", e.what());
        return 1;
    }
}
