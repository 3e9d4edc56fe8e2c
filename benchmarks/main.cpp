// offsync-bench: the benchmark harness. Every scenario runs in process (in-memory stores, the
// service called through the wire format by `loopback_transport`) and end to end (HTTP on
// 127.0.0.1, SQLite client stores, the server in a process of its own: this binary's `serve`
// command). Each measurement is one JSON line; docs/benchmarks.md explains the fields and
// benchmarks/plot.py draws them. The command line: options.hpp.
//
// The pieces: metrics.hpp (time, memory, CPUs), workload.hpp (the records), options.hpp,
// output.hpp (the JSON lines), server_process.hpp and serve.cpp (the server process),
// transports.hpp and modes.hpp (the devices of each mode, the measurement of a round),
// scenarios.hpp with scenarios_rounds.cpp, scenarios_baselines.cpp, scenarios_sharing.cpp and
// scenarios_live.cpp.
#include "metrics.hpp"
#include "options.hpp"
#include "output.hpp"
#include "scenarios.hpp"
#include "server_process.hpp"
#include "workload.hpp"

#include <offsync/uuid.hpp>

#include <exception>
#include <filesystem>
#include <iostream>
#include <string_view>
#include <system_error>

namespace {

namespace fs = std::filesystem;
using namespace offsync_bench;

int bench_main(int argc, char** argv) {
    options o;
    if (auto status = parse_options(argc, argv, o)) return *status;
    if (!o.client_cpus.empty()) pin_to(o.client_cpus);
    bool own_dir = false;
    if (o.dir.empty()) {
        o.dir = fs::temp_directory_path() / ("offsync-bench-" + offsync::make_uuid());
        own_dir = true;
    }
    fs::create_directories(o.dir);
    output out(o);
    out.write(machine_row());
    std::cerr << "offsync-bench: records of " << record_json_bytes()
              << " bytes of JSON; server store " << o.server_store << "; client durability "
              << o.durability << "\n";
    if (o.wants("baseline")) run_baselines(o, out);
    run_rounds(o, out);
    if (o.wants("sharing")) run_sharing(o, out);
    if (o.wants("live") && o.mode != "inproc") run_live(o, out);
    out.write(machine_row());
    if (own_dir) {
        std::error_code ec;
        fs::remove_all(o.dir, ec);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        if (argc > 1 && std::string_view(argv[1]) == "serve") return serve_main(argc, argv);
        return bench_main(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "offsync-bench: " << e.what() << "\n";
        return 1;
    }
}
