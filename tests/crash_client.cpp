// A device in its own process, for the crash-safety test: it edits reservations in a SQLite
// store and syncs them over HTTP until it is killed (mode "run"), or syncs until nothing is
// left to push and exits 0 (mode "settle").
//
//   offsync-crash-client run|settle DB_FILE PORT TOKEN SEED
#include "support/models.hpp"

#include <offsync/offsync.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/transport/http.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <thread>

namespace asio = boost::asio;
using offsync_test::Reservation;

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s run|settle DB_FILE PORT TOKEN SEED\n", argv[0]);
        return 2;
    }
    const std::string mode = argv[1], token = argv[4];
    std::mt19937 rng(std::stoul(argv[5]));
    try {
        offsync::sqlite_storage store(argv[2], {offsync::sqlite_durability::full, 5000});
        offsync::basic_replica replica(store);
        asio::io_context io;
        offsync::http_transport_config config;
        config.port = static_cast<std::uint16_t>(std::stoul(argv[3]));
        config.connect_timeout = std::chrono::seconds(2);
        config.request_timeout = std::chrono::seconds(5);
        config.token_provider = [token](bool) { return token; };
        offsync::http_transport transport(io.get_executor(), config);
        offsync::basic_sync_engine engine(io.get_executor(), replica, transport);
        engine.add_collection<Reservation>(offsync::last_write_wins{});
        auto sync = [&] {
            std::optional<offsync::sync_report> out;
            engine.async_sync([&](offsync::error_code, offsync::sync_report r) { out = std::move(r); });
            io.restart();
            io.run();
            return *out;
        };
        if (mode == "settle") {
            for (int i = 0; i < 20; ++i) {
                auto r = sync();
                if (!r.error && replica.pending<Reservation>().dirty == 0) return 0;
            }
            std::fprintf(stderr, "did not settle\n");
            return 1;
        }
        for (unsigned n = 0;; ++n) { // until killed
            for (int e = 0; e < 3; ++e) {
                Reservation r;
                r.id = "r-" + std::to_string(rng() % 6);
                r.landmark_id = 1;
                r.party_size = int(rng() % 9) + 1;
                r.notes = std::string(argv[5]) + "-" + std::to_string(n) + "-" + std::to_string(e);
                replica.put(r);
            }
            // A server that is down (the test kills it too) answers at once: do not spin.
            if (sync().error) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crash client: %s\n", e.what());
        return 1;
    }
}
