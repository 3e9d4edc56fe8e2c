// offsync-bench serve: the server process of the end-to-end mode (server_process.hpp). An
// `http_server` on 127.0.0.1 and an ephemeral port, on `--threads` threads, over the store of
// `--store` (and `--db`), on the CPUs of `--cpus`; every token `bench-<user>` authenticates
// `<user>`. Counts what its request log reports, for the parent's `stats`.
#include "metrics.hpp"
#include "server_process.hpp"

#include <offsync/server/http_server.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace offsync_bench {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;

/// Every token `bench-<user>` authenticates `<user>`: as many users as a scenario wants.
std::optional<std::string> bench_auth(std::string_view token) {
    if (token.substr(0, 6) != "bench-" || token.size() == 6) return std::nullopt;
    return std::string(token.substr(6));
}

/// Request counters the server's log feeds, from any of its threads.
struct counters {
    std::atomic<std::uint64_t> requests{0}, bytes_in{0}, bytes_out{0}, busy_us{0};
};

/// Prints the counters and this process's memory, CPU time and page faults as one JSON line.
void print_stats(const counters& c, std::size_t streams) {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    json::object o{{"requests", c.requests.load()},
                   {"bytes_in", c.bytes_in.load()},
                   {"bytes_out", c.bytes_out.load()},
                   {"busy_us", c.busy_us.load()},
                   {"streams", streams},
                   {"hwm_kb", status_kb("VmHWM")},
                   {"rss_kb", status_kb("VmRSS")},
                   {"maxrss_kb", ru.ru_maxrss},
                   {"page_faults", ru.ru_minflt + ru.ru_majflt},
                   {"cpu_s", double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                 double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6}};
    std::printf("%s\n", json::serialize(o).c_str());
    std::fflush(stdout);
}

} // namespace

int serve_main(int argc, char** argv) {
    int threads = 2;
    std::string store = "memory", db;
    // The live scenario's devices are all one user's; the process holds every stream it is
    // asked for, up to its descriptors.
    offsync::server::service_config service_config;
    service_config.live.max_streams = 1'000'000;
    service_config.live.max_streams_per_user = 1'000'000;
    raise_descriptor_limit();
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--cpus") pin_to(argv[i + 1]); // before any thread starts
        else if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--store") store = argv[i + 1];
        else if (a == "--db") db = argv[i + 1];
    }
    auto state = make_server_state(store, db, service_config);
    counters count;
    offsync::server::http_server_config config;
    // Every device of the live scenario syncs at once, beside its stream: admit them all (a
    // real server sizes this to its devices; past it, a 503 with Retry-After spreads them).
    config.max_connections = 1'000'000;
    // And every one comes from 127.0.0.1 as one user, at rates a bench is for.
    config.max_connections_per_address = 0;
    config.max_requests_per_user_per_second = 0;
    config.log = [&](const offsync::server::request_log& r) {
        ++count.requests;
        count.bytes_in += r.request_bytes;
        count.bytes_out += r.response_bytes;
        count.busy_us += std::uint64_t(r.duration.count());
    };
    asio::io_context io(threads);
    offsync::server::http_server srv(io.get_executor(), *state.service, bench_auth, config);
    srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    std::printf("port %u\n", unsigned(srv.local_endpoint().port()));
    std::fflush(stdout);
    auto work = asio::make_work_guard(io);
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back([&] { io.run(); });
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line == "stats") {
            print_stats(count, srv.streams());
        } else if (line == "reset") {
            reset_peak_rss();
            std::printf("ok\n");
            std::fflush(stdout);
        } else if (line.rfind("grant ", 0) == 0) {
            // "grant GROUP USER": an admin's grant, the group and the user made first.
            const auto space = line.find(' ', 6);
            const auto group = line.substr(6, space == std::string::npos ? 0 : space - 6);
            const auto user = space == std::string::npos ? std::string() : line.substr(space + 1);
            state.service->add_user(user);
            auto d = state.service->create_group(group);
            if (!d) d = state.service->grant(group, user);
            std::printf("%s\n", d ? ("error " + d.message).c_str() : "ok");
            std::fflush(stdout);
        } else if (line == "quit") {
            break;
        }
    }
    srv.async_shutdown([&](offsync::error_code) { work.reset(); });
    for (auto& t : pool) t.join();
    print_stats(count, 0);
    return 0;
}

} // namespace offsync_bench
