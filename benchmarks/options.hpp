// offsync-bench: its command line. usage() prints it:
//
//   usage: offsync-bench [--quick] [--scenario all|push,pull,incremental,conflict,clients,
//                                   baseline,listeners,sharing,live]
//                        [--mode inproc|http|both] [--n LIST] [--k LIST] [--clients LIST]
//                        [--listeners LIST] [--devices LIST] [--idle-streams N]
//                        [--conflicts LIST] [--batch N] [--page N] [--durability full|normal]
//                        [--server-store memory|sqlite] [--naive-max N] [--dir DIR] [--out FILE]
//                        [--client-cpus LIST] [--server-cpus LIST] [--server-threads N]
//   LIST is comma-separated, e.g. --n 1000,100000. Output: one JSON line per measurement.
//
// The defaults and what each option means: the struct below and docs/benchmarks.md. The end-to-end
// mode starts this binary again as its server, `offsync-bench serve [--threads N] [--store
// memory|sqlite] [--db FILE] [--cpus LIST]` (internal; server_process.hpp).
#pragma once

#include <offsync/engine.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offsync_bench {

struct options {
    bool quick = false;                ///< --quick: small sizes, every scenario, seconds
    std::string scenario = "all";      ///< "all" or a comma-separated list of names
    std::string mode = "both";         ///< inproc, http or both
    std::vector<std::size_t> n{1000, 10'000, 100'000}; ///< store sizes
    std::vector<std::size_t> k{10, 1000};              ///< changes per incremental round
    std::vector<std::size_t> clients{1, 4, 16};        ///< clients syncing at once
    std::vector<std::size_t> conflicts{1000};          ///< conflicting records per round
    std::vector<std::size_t> listeners{0, 1, 10};      ///< change listeners of a pull
    std::vector<std::size_t> devices{1, 100, 1000};    ///< live: devices on change streams
    std::size_t idle_streams = 10'000;                 ///< live: idle streams held at once
    std::size_t batch = offsync::engine_config{}.push_batch_size; // the engine's defaults
    std::uint32_t page = offsync::engine_config{}.pull_page_size;
    std::size_t naive_max = 20'000;    ///< requests of the one-request-per-record baseline
    std::string durability = "full";   ///< the client SQLite stores'
    std::string server_store = "sqlite"; // the targets: SQLite at both ends
    std::filesystem::path dir;         ///< where the databases go ("" = a temporary directory)
    std::string out;                   ///< a file the rows also go to, rewritten
    std::string client_cpus;           ///< CPUs of this process ("" = wherever the system puts it)
    std::string server_cpus;           ///< CPUs of the server process
    int server_threads = 2;            ///< the server process's I/O threads

    /// Whether scenario `s` was asked for.
    bool wants(std::string_view s) const;
};

/// Prints the usage above to `out`.
void usage(std::ostream& out);

/// Reads the command line into `o`, with --quick's sizes where no size was given. Returns the
/// exit status when the program must stop instead (0 after --help, 2 after printing the usage
/// for an unknown option, scenario or mode); throws `std::invalid_argument` for a missing or
/// unreadable value.
std::optional<int> parse_options(int argc, char** argv, options& o);

} // namespace offsync_bench
