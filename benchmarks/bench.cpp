// offsync-bench: the benchmark harness. Every scenario runs in process (in-memory stores, the
// service called through the wire format) and end to end (HTTP on 127.0.0.1, SQLite client
// stores, the server in a process of its own: this binary's `serve` command). Each measurement
// is one JSON line; docs/benchmarks.md explains the fields and benchmarks/plot.py draws them.
//
//   offsync-bench [--quick] [--scenario all|push,pull,incremental,conflict,clients,baseline]
//                 [--mode inproc|http|both] [--n 1000,100000] [--k 10,1000] [--clients 1,4,16]
//                 [--conflicts 1000] [--batch 1000] [--page 1000] [--durability full|normal]
//                 [--naive-max 20000] [--dir DIR] [--out FILE (rewritten)]
//                 [--client-cpus 0] [--server-cpus 1]   (pin each process to those CPUs)
//                 [--server-threads 2]                  (the server process's I/O threads)
//   offsync-bench serve [--threads 2] [--store memory|sqlite] [--db FILE] [--cpus LIST]
//                                                                          (internal)
#include "../examples/landmarks/model.hpp"

#include <offsync/offsync.hpp>
#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/transport/http.hpp>

#include <offsync/server/sqlite_store.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>

#include <sqlite3.h>

#include <malloc.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace offsync;
using landmarks::Reservation;
using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
    return std::chrono::duration<double>(steady::now() - t).count();
}
double ms(steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// ---------------------------------------------------------------------------------------------
// Memory: peak resident set of this process, resettable so each scenario reports its own.

long status_kb(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t n = std::strlen(field);
    while (std::getline(in, line))
        if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
            return std::atol(line.c_str() + n + 1);
    return -1;
}

/// Returns freed heap to the system and restarts the peak (VmHWM) from the current RSS.
/// Linux only; if clear_refs is not writable the peak stays the process's lifetime peak.
void reset_peak_rss() {
    malloc_trim(0);
    std::ofstream("/proc/self/clear_refs") << "5";
}
double peak_rss_mb() { return double(status_kb("VmHWM")) / 1024.0; }

/// CPU time (user + system) this process has used, in seconds: less disturbed than wall time
/// by other work on a shared machine.
double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// Page faults (minor and major) this process has taken: on a virtual machine each costs
/// microseconds, and a round that touches new memory or new code pays them.
std::int64_t page_faults() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/// The system's 1-minute load average, recorded with every row as a noise indicator.
double load_average() {
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

// ---------------------------------------------------------------------------------------------
// Records shaped like a Landmarks reservation, about 150 bytes of JSON each.

Reservation make_reservation(std::size_t i, int variant = 0) {
    Reservation r;
    char id[32];
    std::snprintf(id, sizeof id, "r-%09zu", i);
    r.id = id;
    r.landmark_id = std::int64_t(i % 5000) + 1;
    r.date = std::chrono::sys_days{std::chrono::year{2026} / 12 / 24} +
             std::chrono::days(i % 365) + std::chrono::hours(i % 24);
    r.party_size = std::int32_t(1 + i % 8);
    r.status = variant % 2 ? "cancelled" : "confirmed";
    r.notes = "window seat, vegetarian menu, arriving by train " + std::to_string(i % 997);
    if (variant) r.notes += " (edit " + std::to_string(variant) + ")";
    return r;
}

std::size_t record_json_bytes() {
    return json::serialize(to_json_object(make_reservation(123456))).size();
}

/// Writes `count` records (ids first, first + stride, ...) into a store as app edits, 10,000 per
/// transaction: the setup of a scenario, not part of what it measures.
template <class Storage>
void edit_records(Storage& storage, std::size_t first, std::size_t count, std::size_t stride,
                  int variant, std::int64_t now_ms) {
    const auto& schema = schema_of<Reservation>();
    std::size_t done = 0;
    while (done < count) {
        auto txn = storage.begin();
        const std::size_t end = std::min(count, done + 10'000);
        for (; done < end; ++done) {
            auto r = make_reservation(first + done * stride, variant);
            detail::local_edit(txn, schema, r.id, to_json_object(r), now_ms);
        }
        txn.commit();
    }
}

// ---------------------------------------------------------------------------------------------
// Transports that time what they carry.

struct phase_times {
    steady::duration push{}, pull{};             ///< inside the transport, per direction
    steady::duration encode{}, server{}, decode{}; ///< in process only: the split of the above
    std::size_t bytes = 0, requests = 0;
    std::optional<steady::time_point> first_pull;  ///< when the round's pull phase began
};

/// Calls a sync service in this process through the wire format (as loopback_transport does),
/// timing the client's encoding, the service, and the client's decoding apart.
class inproc_transport {
public:
    using executor_type = asio::any_io_executor;
    inproc_transport(executor_type ex, server::sync_service& service, std::string user)
        : ex_(std::move(ex)), service_(&service), user_(std::move(user)) {}
    executor_type get_executor() const noexcept { return ex_; }
    phase_times times;

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, push_response)>(
            [this](auto handler, const push_request* r) {
                push_response out;
                // As loopback_transport and http_transport encode it.
                auto ec = exchange(true, [&] { return to_json_text(*r); }, out);
                finish(std::move(handler), ec, std::move(out));
            },
            token, &request);
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, pull_response)>(
            [this](auto handler, const pull_request* r) {
                pull_response out;
                auto ec = exchange(false,
                                   [&] {
                                       auto t = pull_target(*r);
                                       return t.substr(t.find('?') + 1);
                                   },
                                   out);
                finish(std::move(handler), ec, std::move(out));
            },
            token, &request);
    }

private:
    template <class Encode, class Response>
    error_code exchange(bool push, Encode encode, Response& out) {
        const auto t0 = steady::now();
        if (!push && !times.first_pull) times.first_pull = t0;
        auto payload = encode();
        const auto t1 = steady::now();
        auto answer = push ? service_->handle_push(user_, payload)
                           : service_->handle_pull(user_, payload);
        const auto t2 = steady::now();
        error_code ec;
        if (answer.status != 200) {
            ec = parse_error_body(answer.body, errc::server_error).code;
        } else {
            boost::system::error_code pec;
            auto jv = json::parse(answer.body, pec);
            if (pec || from_json(jv, out)) ec = make_error_code(errc::bad_response);
        }
        const auto t3 = steady::now();
        times.encode += t1 - t0;
        times.server += t2 - t1;
        times.decode += t3 - t2;
        (push ? times.push : times.pull) += t3 - t0;
        times.bytes += payload.size() + answer.body.size();
        ++times.requests;
        return ec;
    }

    template <class Handler, class Response>
    void finish(Handler handler, error_code ec, Response out) {
        auto ex = asio::get_associated_executor(handler, ex_);
        asio::post(ex, [h = std::move(handler), ec, out = std::move(out)]() mutable {
            std::move(h)(ec, std::move(out));
        });
    }

    executor_type ex_;
    server::sync_service* service_;
    std::string user_;
};

/// Wraps http_transport and times its operations: the time during which at least one of a
/// kind was outstanding (pushes overlap when pipelined; that time counts once).
class timed_http_transport {
public:
    using executor_type = asio::any_io_executor;
    timed_http_transport(executor_type ex, http_transport_config config)
        : inner_(std::move(ex), std::move(config)) {}
    executor_type get_executor() const noexcept { return inner_.get_executor(); }
    std::size_t max_requests_in_flight() const noexcept { return inner_.max_requests_in_flight(); }
    phase_times times;

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, push_response)>(
            [this](auto handler, const push_request* r) {
                inner_.async_push(*r, wrap<push_response>(std::move(handler), pushes_));
            },
            token, &request);
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, pull_response)>(
            [this](auto handler, const pull_request* r) {
                if (!times.first_pull) times.first_pull = steady::now();
                inner_.async_pull(*r, wrap<pull_response>(std::move(handler), pulls_));
            },
            token, &request);
    }

private:
    /// Operations of one kind outstanding, and since when one has been.
    struct busy {
        explicit busy(steady::duration phase_times::*total) : total(total) {}
        steady::duration phase_times::*total;
        std::size_t outstanding = 0;
        steady::time_point since;
    };

    template <class Response, class Handler>
    auto wrap(Handler handler, busy& kind) {
        if (kind.outstanding++ == 0) kind.since = steady::now();
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto ex = asio::get_associated_executor(handler, inner_.get_executor());
        return asio::bind_cancellation_slot(
            slot, asio::bind_executor(ex, [this, &kind, h = std::move(handler)](
                                              error_code ec, Response r) mutable {
                if (--kind.outstanding == 0) times.*kind.total += steady::now() - kind.since;
                ++times.requests;
                std::move(h)(ec, std::move(r));
            }));
    }

    http_transport inner_;
    busy pushes_{&phase_times::push};
    busy pulls_{&phase_times::pull};
};

// ---------------------------------------------------------------------------------------------
// The server process: `offsync-bench serve`. Reads commands on stdin, answers on stdout:
// `stats` (cumulative request counters and memory), `reset` (restart the peak RSS), `quit`.

/// The CPUs that `--client-cpus` and `--server-cpus` named ("" = wherever the system puts it).
std::string client_cpus, server_cpus;
/// The server process's I/O threads (`--server-threads`).
int server_threads = 2;

/// Keeps this process, and the threads it starts from now on, on the CPUs of `list`
/// (comma-separated numbers). The harness's two processes can then be placed apart: on a
/// machine whose cores differ in speed, where each lands decides the figures.
void pin_to(const std::string& list) {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        std::size_t used = 0;
        int cpu = -1;
        try {
            cpu = std::stoi(item, &used);
        } catch (const std::exception&) {
        }
        if (cpu < 0 || cpu >= CPU_SETSIZE || used != item.size())
            throw std::invalid_argument("'" + list + "' is not a list of CPU numbers");
        CPU_SET(cpu, &set);
    }
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        throw std::runtime_error("cannot run on CPUs " + list + ": " + std::strerror(errno));
}

/// How long a fixed loop of integer arithmetic takes on each CPU this process may use, in ms.
/// Written before and after the measurements: the cores of a shared virtual machine do not
/// always run at the same speed (on the project machine one of the two sometimes runs the loop
/// at half the speed of the other), and the figures follow.
json::object machine_row() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    json::object loop_ms;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) continue;
        const auto start = steady::now();
        volatile std::uint64_t sink = 0;
        for (std::uint64_t i = 0; i < 100'000'000; ++i) sink = sink + i * i;
        loop_ms[std::to_string(cpu)] = ms(steady::now() - start);
    }
    sched_setaffinity(0, sizeof allowed, &allowed);
    return {{"scenario", "machine"}, {"cpu_loop_ms", std::move(loop_ms)},
            {"load_avg", load_average()}};
}

struct server_state {
    std::unique_ptr<server::sqlite_server_store> store;
    std::unique_ptr<server::sync_service> service;
};

/// The one place that picks the server's storage.
server_state make_server_state(const std::string& store, const std::string& db) {
    server_state s;
    if (store == "sqlite") {
        s.store = std::make_unique<server::sqlite_server_store>(db);
        s.service = std::make_unique<server::sync_service>(*s.store);
    } else {
        s.service = std::make_unique<server::sync_service>();
    }
    s.service->add_collection<Reservation>();
    return s;
}

/// Every token `bench-<user>` authenticates `<user>`: as many users as a scenario wants.
std::optional<std::string> bench_auth(std::string_view token) {
    if (token.substr(0, 6) != "bench-" || token.size() == 6) return std::nullopt;
    return std::string(token.substr(6));
}

int serve_main(int argc, char** argv) {
    int threads = 2;
    std::string store = "memory", db;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--cpus") pin_to(argv[i + 1]); // before any thread starts
        else if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--store") store = argv[i + 1];
        else if (a == "--db") db = argv[i + 1];
    }
    auto state = make_server_state(store, db);
    std::atomic<std::uint64_t> requests{0}, bytes_in{0}, bytes_out{0}, busy_us{0};
    server::http_server_config config;
    config.log = [&](const server::request_log& r) {
        ++requests;
        bytes_in += r.request_bytes;
        bytes_out += r.response_bytes;
        busy_us += std::uint64_t(r.duration.count());
    };
    asio::io_context io(threads);
    server::http_server srv(io.get_executor(), *state.service, bench_auth, config);
    srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    std::printf("port %u\n", unsigned(srv.local_endpoint().port()));
    std::fflush(stdout);
    auto work = asio::make_work_guard(io);
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back([&] { io.run(); });
    auto stats = [&] {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        json::object o{{"requests", requests.load()},
                       {"bytes_in", bytes_in.load()},
                       {"bytes_out", bytes_out.load()},
                       {"busy_us", busy_us.load()},
                       {"hwm_kb", status_kb("VmHWM")},
                       {"rss_kb", status_kb("VmRSS")},
                       {"maxrss_kb", ru.ru_maxrss},
                       {"page_faults", ru.ru_minflt + ru.ru_majflt},
                       {"cpu_s", double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                     double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6}};
        std::printf("%s\n", json::serialize(o).c_str());
        std::fflush(stdout);
    };
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line == "stats") {
            stats();
        } else if (line == "reset") {
            reset_peak_rss();
            std::printf("ok\n");
            std::fflush(stdout);
        } else if (line == "quit") {
            break;
        }
    }
    srv.async_shutdown([&](error_code) { work.reset(); });
    for (auto& t : pool) t.join();
    stats();
    return 0;
}

/// The parent's handle on a `serve` child.
class server_process {
public:
    server_process(const std::string& store, const std::string& db) {
        int to_child[2], from_child[2];
        if (pipe(to_child) || pipe(from_child)) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
        posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
        posix_spawn_file_actions_addclose(&fa, to_child[1]);
        posix_spawn_file_actions_addclose(&fa, from_child[0]);
        const auto self = fs::read_symlink("/proc/self/exe").string();
        std::vector<std::string> args{self, "serve", "--store", store};
        if (!db.empty()) args.insert(args.end(), {"--db", db});
        if (!server_cpus.empty()) args.insert(args.end(), {"--cpus", server_cpus});
        args.insert(args.end(), {"--threads", std::to_string(server_threads)});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, self.c_str(), &fa, nullptr, argv.data(), environ) != 0)
            throw std::runtime_error("cannot spawn the server process");
        posix_spawn_file_actions_destroy(&fa);
        close(to_child[0]);
        close(from_child[1]);
        in_ = fdopen(to_child[1], "w");
        out_ = fdopen(from_child[0], "r");
        auto first = read_line();
        if (first.rfind("port ", 0) != 0) throw std::runtime_error("server did not start");
        port_ = first.substr(5);
    }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;
    ~server_process() {
        if (pid_ > 0) stop();
    }

    const std::string& port() const noexcept { return port_; }

    json::object stats() {
        send("stats");
        return json::parse(read_line()).as_object();
    }
    void reset_peak() {
        send("reset");
        read_line();
    }
    /// Stops the child; returns its last stats, with its lifetime peak from wait4.
    json::object stop() {
        send("quit");
        json::object last;
        try {
            last = json::parse(read_line()).as_object();
        } catch (const std::exception&) {
        }
        int status = 0;
        rusage ru{};
        wait4(pid_, &status, 0, &ru);
        pid_ = -1;
        last["wait4_maxrss_kb"] = ru.ru_maxrss;
        std::fclose(in_);
        std::fclose(out_);
        return last;
    }

private:
    void send(const char* command) {
        std::fprintf(in_, "%s\n", command);
        std::fflush(in_);
    }
    std::string read_line() {
        std::string s;
        int ch;
        while ((ch = std::fgetc(out_)) != EOF && ch != '\n') s += char(ch);
        if (ch == EOF && s.empty()) throw std::runtime_error("the server process went away");
        return s;
    }

    pid_t pid_ = -1;
    FILE* in_ = nullptr;
    FILE* out_ = nullptr;
    std::string port_;
};

// ---------------------------------------------------------------------------------------------
// Devices and the two modes.

struct options {
    bool quick = false;
    std::string scenario = "all";
    std::string mode = "both";
    std::vector<std::size_t> n{1000, 10'000, 100'000};
    std::vector<std::size_t> k{10, 1000};
    std::vector<std::size_t> clients{1, 4, 16};
    std::vector<std::size_t> conflicts{1000};
    std::size_t batch = engine_config{}.push_batch_size; // the engine's defaults
    std::uint32_t page = engine_config{}.pull_page_size;
    std::size_t naive_max = 20'000;
    std::string durability = "full";
    std::string server_store = "sqlite"; // the targets: SQLite at both ends
    fs::path dir;
    std::string out;

    /// `scenario` is "all" or a comma-separated list of names.
    bool wants(std::string_view s) const {
        if (scenario == "all") return true;
        std::stringstream in(scenario);
        std::string item;
        while (std::getline(in, item, ','))
            if (item == s) return true;
        return false;
    }
};

template <class Storage, class Transport>
struct device {
    template <class... TransportArgs>
    device(asio::io_context& io, std::unique_ptr<Storage> s, engine_config config,
           TransportArgs&&... targs)
        : storage(std::move(s)), replica(*storage), transport(std::forward<TransportArgs>(targs)...),
          engine(io.get_executor(), replica, transport, std::move(config)), io_(io) {}

    /// One round, run to completion on the io_context; returns its report and duration.
    std::pair<sync_report, steady::duration> sync() {
        transport.times.first_pull.reset();
        std::optional<sync_report> out;
        const auto start = started = steady::now();
        engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        io_.restart();
        io_.run();
        const auto took = steady::now() - start;
        if (!out) throw std::runtime_error("round did not complete");
        if (out->error) throw std::runtime_error("round failed: " + out->error_message);
        return {std::move(*out), took};
    }

    std::unique_ptr<Storage> storage;
    basic_replica<Storage> replica;
    Transport transport;
    basic_sync_engine<Storage, Transport> engine;
    asio::io_context& io_;
    steady::time_point started; ///< when the last round began
};

engine_config make_engine_config(const options& o) {
    engine_config c;
    c.push_batch_size = o.batch;
    c.pull_page_size = o.page;
    return c;
}

/// In process: the service in this process, in-memory client stores.
struct inproc_mode {
    using storage_type = memory_storage;
    using transport_type = inproc_transport;
    using device_type = device<storage_type, transport_type>;
    static constexpr const char* name = "inproc";

    explicit inproc_mode(const options& o) : opts(o) {
        service = make_server_state("memory", {}).service;
    }
    std::unique_ptr<device_type> make_device(const std::string& user) {
        return std::make_unique<device_type>(io, std::make_unique<memory_storage>(),
                                             make_engine_config(opts), io.get_executor(),
                                             *service, user);
    }
    json::object server_stats() { return {}; }
    void reset_server_peak() {}
    const char* server_store() const { return "memory"; }
    const char* client_store() const { return "memory"; }

    const options& opts;
    asio::io_context io;
    std::unique_ptr<server::sync_service> service;
};

/// End to end: the server in a child process over HTTP, SQLite client stores.
struct http_mode {
    using storage_type = sqlite_storage;
    using transport_type = timed_http_transport;
    using device_type = device<storage_type, transport_type>;
    static constexpr const char* name = "http";

    explicit http_mode(const options& o)
        : opts(o), server(o.server_store, (o.dir / ("server-" + make_uuid() + ".db")).string()) {}
    std::unique_ptr<device_type> make_device(const std::string& user) {
        http_transport_config config;
        config.host = "127.0.0.1";
        config.port = server.port();
        config.token_provider = [user](bool) { return "bench-" + user; };
        const auto file = (opts.dir / ("client-" + make_uuid() + ".db")).string();
        files.push_back(file);
        sqlite_config sc;
        sc.durability =
            opts.durability == "normal" ? sqlite_durability::normal : sqlite_durability::full;
        return std::make_unique<device_type>(io, std::make_unique<sqlite_storage>(file, sc),
                                             make_engine_config(opts), io.get_executor(),
                                             std::move(config));
    }
    json::object server_stats() { return server.stats(); }
    void reset_server_peak() { server.reset_peak(); }
    const char* server_store() const { return opts.server_store.c_str(); }
    const char* client_store() const { return "sqlite"; }
    ~http_mode() {
        std::error_code ec;
        for (auto& f : files)
            for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(f + suffix, ec);
    }

    const options& opts;
    asio::io_context io;
    server_process server;
    std::vector<std::string> files;
};

// ---------------------------------------------------------------------------------------------
// Output.

class output {
public:
    explicit output(const std::string& path) {
        if (!path.empty()) {
            file_.open(path, std::ios::trunc);
            if (!file_) throw std::runtime_error("cannot write " + path);
        }
    }
    void write(json::object row) {
        if (!client_cpus.empty()) row["client_cpus"] = client_cpus;
        if (!server_cpus.empty()) row["server_cpus"] = server_cpus;
        row["server_threads"] = server_threads;
        auto text = json::serialize(row);
        std::cout << text << std::endl;
        if (file_.is_open()) file_ << text << std::endl;
    }

private:
    std::ofstream file_;
};

double u64(const json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return double(v->get_int64());
    if (v->is_uint64()) return double(v->get_uint64());
    if (v->is_double()) return v->get_double();
    return 0;
}

/// Measures one round of `dev` and fills a row: rate, bytes, phases, peak RSS of both ends.
template <class Mode, class Device>
json::object measure_round(Mode& mode, Device& dev, const char* scenario, std::size_t records,
                           sync_report* report_out = nullptr) {
    mode.reset_server_peak();
    reset_peak_rss();
    auto before = mode.server_stats();
    dev.transport.times = {};
    const double cpu_before = cpu_seconds();
    const auto faults_before = page_faults();
    auto [report, took] = dev.sync();
    const double cpu_used = cpu_seconds() - cpu_before;
    const auto faults = page_faults() - faults_before;
    auto after = mode.server_stats();
    const auto& t = dev.transport.times;
    const double secs = std::chrono::duration<double>(took).count();
    const bool inproc = std::string_view(Mode::name) == "inproc";
    const double server_ms =
        inproc ? ms(t.server) : (u64(after, "busy_us") - u64(before, "busy_us")) / 1000.0;
    const double bytes =
        inproc ? double(t.bytes)
               : u64(after, "bytes_in") - u64(before, "bytes_in") + u64(after, "bytes_out") -
                     u64(before, "bytes_out");
    json::object row;
    row["scenario"] = scenario;
    row["mode"] = Mode::name;
    row["server_store"] = mode.server_store();
    row["client_store"] = mode.client_store();
    row["records"] = records;
    row["seconds"] = secs;
    row["records_per_s"] = secs > 0 ? double(records) / secs : 0.0;
    row["bytes"] = bytes;
    row["bytes_per_s"] = secs > 0 ? bytes / secs : 0.0;
    row["round_ms"] = ms(took);
    // The push phase ends where the first pull begins.
    if (t.first_pull) {
        row["push_phase_ms"] = ms(*t.first_pull - dev.started);
        row["pull_phase_ms"] = ms(took) - ms(*t.first_pull - dev.started);
    }
    row["pushed"] = report.pushed;
    row["pulled"] = report.pulled;
    row["requests"] = t.requests;
    json::object phases;
    const double transport_ms = ms(t.push) + ms(t.pull);
    if (inproc) {
        phases["encode_ms"] = ms(t.encode);
        phases["decode_ms"] = ms(t.decode);
    }
    phases["transport_ms"] = transport_ms;
    phases["transport_push_ms"] = ms(t.push);
    phases["transport_pull_ms"] = ms(t.pull);
    phases["server_ms"] = server_ms;
    if (!inproc) phases["network_and_codec_ms"] = transport_ms - server_ms;
    phases["client_apply_ms"] = ms(took) - transport_ms;
    row["phases"] = std::move(phases);
    json::object rss;
    rss["bench_mb"] = peak_rss_mb();
    if (!inproc) rss["server_mb"] = u64(after, "hwm_kb") / 1024.0;
    row["peak_rss_mb"] = std::move(rss);
    json::object cpu;
    cpu["bench_ms"] = cpu_used * 1000;
    if (!inproc) cpu["server_ms"] = (u64(after, "cpu_s") - u64(before, "cpu_s")) * 1000;
    row["cpu_ms"] = std::move(cpu);
    json::object faulted;
    faulted["bench"] = faults;
    if (!inproc) faulted["server"] = u64(after, "page_faults") - u64(before, "page_faults");
    row["page_faults"] = std::move(faulted);
    row["load_avg"] = load_average();
    if (report_out) *report_out = std::move(report);
    return row;
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

template <class Mode>
void run_sessions(const options& o, output& out) {
    const auto now = system_wall_ms();
    for (auto n : o.n) {
        if (!(o.wants("push") || o.wants("pull") || o.wants("incremental"))) break;
        Mode mode(o);
        // Push: N dirty records to an empty server. The round pushes, then pulls its own N
        // writes back (the feed does not know who wrote what): both phases are reported.
        auto writer = mode.make_device("bench");
        writer->engine.template add_collection<Reservation>();
        const auto t_edit = steady::now();
        edit_records(*writer->storage, 0, n, 1, 0, now);
        const double edit_s = seconds_since(t_edit);
        {
            auto row = measure_round(mode, *writer, "push", n);
            row["n"] = n;
            row["k"] = n;
            row["local_edit_s"] = edit_s;
            if (o.wants("push")) out.write(row);
        }
        // Pull: N records into an empty client.
        auto reader = mode.make_device("bench");
        reader->engine.template add_collection<Reservation>();
        {
            auto row = measure_round(mode, *reader, "pull", n);
            row["n"] = n;
            row["k"] = n;
            if (o.wants("pull")) out.write(row);
        }
        // Incremental: k changes in a store of N; the writer's round, then the reader's.
        if (o.wants("incremental")) {
            int variant = 1;
            for (auto k : o.k) {
                if (k > n) continue;
                edit_records(*writer->storage, 0, k, n / k, variant++, now + 1);
                auto row = measure_round(mode, *writer, "incremental", k);
                row["n"] = n;
                row["k"] = k;
                row["side"] = "writer";
                out.write(row);
                auto rrow = measure_round(mode, *reader, "incremental", k);
                rrow["n"] = n;
                rrow["k"] = k;
                rrow["side"] = "reader";
                out.write(rrow);
            }
            // A round with nothing to do: the floor under every incremental round.
            auto row = measure_round(mode, *reader, "incremental", 0);
            row["n"] = n;
            row["k"] = 0;
            row["side"] = "idle";
            out.write(row);
        }
    }
}

/// Conflict-heavy: two devices of one user hold the same k records; both edit the same field;
/// the first syncs; the second's round meets k conflicts.
template <class Mode>
void run_conflicts(const options& o, output& out) {
    const auto now = system_wall_ms();
    for (auto k : o.conflicts) {
        for (const char* policy : {"last_write_wins", "ask_user"}) {
            Mode mode(o);
            const std::string user = std::string("conflict-") + policy;
            auto add = [&](auto& dev) {
                if (std::string_view(policy) == "ask_user")
                    dev->engine.template add_collection<Reservation>(ask_user{});
                else
                    dev->engine.template add_collection<Reservation>(last_write_wins{});
            };
            auto first = mode.make_device(user);
            auto second = mode.make_device(user);
            add(first);
            add(second);
            edit_records(*first->storage, 0, k, 1, 0, now);
            first->sync();
            second->sync();
            edit_records(*first->storage, 0, k, 1, 1, now + 1000);
            // The second device's edits are later: under last-write-wins it wins each conflict
            // and re-pushes, the costlier outcome.
            edit_records(*second->storage, 0, k, 1, 3, now + 2000);
            first->sync();
            sync_report report;
            auto row = measure_round(mode, *second, "conflict", k, &report);
            row["n"] = k;
            row["k"] = k;
            row["policy"] = policy;
            row["conflicts"] = report.conflict_count();
            row["kept_local"] = report.kept_local;
            row["deferred"] = report.deferred;
            out.write(row);
        }
    }
}

/// C clients (each its own user and store, n/C dirty records each) sync at once.
template <class Mode>
void run_clients(const options& o, output& out) {
    const auto now = system_wall_ms();
    const std::size_t n = o.n.empty() ? 1000 : std::min<std::size_t>(o.n.front() * 10, 100'000);
    for (auto c : o.clients) {
        Mode mode(o);
        std::vector<std::unique_ptr<typename Mode::device_type>> devices;
        const std::size_t each = std::max<std::size_t>(1, n / c);
        for (std::size_t i = 0; i < c; ++i) {
            devices.push_back(mode.make_device("client-" + std::to_string(i)));
            devices.back()->engine.template add_collection<Reservation>(last_write_wins{});
            edit_records(*devices.back()->storage, 0, each, 1, 0, now);
        }
        mode.reset_server_peak();
        reset_peak_rss();
        auto before = mode.server_stats();
        std::size_t done = 0, failed = 0;
        std::vector<double> latencies;
        const double cpu_before = cpu_seconds();
        const auto start = steady::now();
        for (auto& d : devices)
            d->engine.async_sync([&, t0 = steady::now()](error_code ec, sync_report) {
                ++done;
                failed += ec ? 1 : 0;
                latencies.push_back(seconds_since(t0) * 1000);
            });
        mode.io.restart();
        std::vector<std::thread> threads;
        for (int i = 0; i < 2; ++i) threads.emplace_back([&] { mode.io.run(); });
        for (auto& t : threads) t.join();
        const double secs = seconds_since(start);
        auto after = mode.server_stats();
        std::sort(latencies.begin(), latencies.end());
        json::object row;
        row["scenario"] = "clients";
        row["mode"] = Mode::name;
        row["server_store"] = mode.server_store();
        row["client_store"] = mode.client_store();
        row["clients"] = c;
        row["n"] = each * c;
        row["k"] = each;
        row["records"] = each * c;
        row["failed"] = failed;
        row["seconds"] = secs;
        row["records_per_s"] = double(each * c) / secs;
        row["round_ms_p50"] = latencies.empty() ? 0.0 : latencies[latencies.size() / 2];
        row["round_ms_max"] = latencies.empty() ? 0.0 : latencies.back();
        if (std::string_view(Mode::name) == "http") {
            const double bytes = u64(after, "bytes_in") - u64(before, "bytes_in") +
                                 u64(after, "bytes_out") - u64(before, "bytes_out");
            row["bytes"] = bytes;
            row["bytes_per_s"] = bytes / secs;
            row["phases"] = json::object{
                {"server_ms", (u64(after, "busy_us") - u64(before, "busy_us")) / 1000.0}};
            row["peak_rss_mb"] = json::object{{"bench_mb", peak_rss_mb()},
                                              {"server_mb", u64(after, "hwm_kb") / 1024.0}};
        } else {
            row["peak_rss_mb"] = json::object{{"bench_mb", peak_rss_mb()}};
        }
        json::object cpu{{"bench_ms", (cpu_seconds() - cpu_before) * 1000}};
        if (std::string_view(Mode::name) == "http")
            cpu["server_ms"] = (u64(after, "cpu_s") - u64(before, "cpu_s")) * 1000;
        row["cpu_ms"] = std::move(cpu);
        row["load_avg"] = load_average();
        if (done != devices.size()) throw std::runtime_error("a client's round did not complete");
        out.write(row);
    }
}

// ---------------------------------------------------------------------------------------------
// Baselines: the bounds a scenario is measured against.

/// Raw SQLite: the same rows inserted in one transaction, the storage bound.
json::object baseline_sqlite(const options& o, std::size_t n) {
    const auto file = (o.dir / ("raw-" + make_uuid() + ".db")).string();
    sqlite3* db = nullptr;
    sqlite3_open(file.c_str(), &db);
    sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
    sqlite3_exec(db,
                 o.durability == "normal" ? "PRAGMA synchronous = NORMAL"
                                          : "PRAGMA synchronous = FULL",
                 nullptr, nullptr, nullptr);
    sqlite3_exec(db,
                 "CREATE TABLE records (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                 "version INTEGER NOT NULL) WITHOUT ROWID",
                 nullptr, nullptr, nullptr);
    std::vector<std::string> values;
    std::vector<std::string> keys;
    values.reserve(n);
    keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        auto r = make_reservation(i);
        keys.push_back(r.id);
        values.push_back(json::serialize(to_json_object(r)));
    }
    reset_peak_rss();
    const auto start = steady::now();
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO records VALUES (?1, ?2, ?3)", -1, &st, nullptr);
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < n; ++i) {
        sqlite3_bind_text(st, 1, keys[i].data(), int(keys[i].size()), SQLITE_STATIC);
        sqlite3_bind_text(st, 2, values[i].data(), int(values[i].size()), SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, std::int64_t(i + 1));
        sqlite3_step(st);
        sqlite3_reset(st);
        bytes += values[i].size();
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    sqlite3_finalize(st);
    const double secs = seconds_since(start);
    sqlite3_close(db);
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file + suffix, ec);
    return {{"scenario", "baseline_sqlite"}, {"mode", "baseline"}, {"n", n},  {"k", n},
            {"records", n},  {"seconds", secs},  {"records_per_s", double(n) / secs},
            {"bytes", bytes}, {"bytes_per_s", double(bytes) / secs}};
}

/// The sync service alone, in this process: the same records as push requests of `o.batch` new
/// records each, already rendered as the client sends them, each answered by
/// `sync_service::handle_push` on the server store of `--server-store` (a SQLite file at `full`
/// durability by default). No HTTP and no client: the bound the server puts on a push round.
json::object baseline_service(const options& o, std::size_t n) {
    const auto file = (o.dir / ("service-" + make_uuid() + ".db")).string();
    auto state = make_server_state(o.server_store, file);
    const std::string client = make_uuid();
    std::vector<std::string> bodies;
    std::size_t bytes = 0;
    for (std::size_t first = 0, id = 1; first < n; first += o.batch) {
        push_request request{client, {}};
        for (std::size_t i = first; i < std::min(n, first + o.batch); ++i, ++id) {
            const auto r = make_reservation(i);
            mutation m;
            m.mutation_id = id;
            m.collection = "reservations";
            m.id = json::value(r.id);
            m.stamp = hlc_stamp{1'764'000'000'000 + std::int64_t(i), 0, client};
            m.fields = to_json_object(r);
            request.mutations.push_back(std::move(m));
        }
        bodies.push_back(to_json_text(request));
        bytes += bodies.back().size();
    }
    reset_peak_rss();
    std::size_t failures = 0;
    const double cpu_before = cpu_seconds();
    const auto start = steady::now();
    for (const auto& body : bodies) {
        const auto answer = state.service->handle_push("bench-user", body);
        failures += answer.status != 200;
        bytes += answer.body.size();
    }
    const double secs = seconds_since(start);
    const double cpu = cpu_seconds() - cpu_before;
    state.service.reset(); // before the store it uses
    state.store.reset();
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file + suffix, ec);
    return {{"scenario", "baseline_service"}, {"mode", "baseline"}, {"server_store", o.server_store},
            {"n", n}, {"k", n}, {"records", n}, {"batch", o.batch}, {"failed", failures},
            {"seconds", secs}, {"records_per_s", double(n) / secs}, {"bytes", bytes},
            {"bytes_per_s", double(bytes) / secs}, {"cpu_ms", json::object{{"server_ms", cpu * 1000}}}};
}

/// JSON encode and decode of the same records, the codec bound.
json::object baseline_codec(std::size_t n) {
    std::vector<Reservation> records;
    records.reserve(n);
    for (std::size_t i = 0; i < n; ++i) records.push_back(make_reservation(i));
    std::vector<std::string> texts(n);
    std::size_t bytes = 0;
    const auto start = steady::now();
    for (std::size_t i = 0; i < n; ++i) {
        texts[i] = json::serialize(to_json_object(records[i]));
        bytes += texts[i].size();
    }
    const auto mid = steady::now();
    std::size_t check = 0;
    for (std::size_t i = 0; i < n; ++i) check += from_json<Reservation>(json::parse(texts[i])).notes.size();
    const auto end = steady::now();
    const double secs = std::chrono::duration<double>(end - start).count();
    return {{"scenario", "baseline_codec"}, {"mode", "baseline"}, {"n", n}, {"k", n},
            {"records", n}, {"seconds", secs}, {"records_per_s", double(n) / secs},
            {"bytes", bytes}, {"bytes_per_s", double(bytes) / secs},
            {"phases", json::object{{"encode_ms", ms(mid - start)}, {"decode_ms", ms(end - mid)}}},
            {"check", check}};
}

/// One HTTP request per dirty record (PUT /v1/reservations/{id}), the seed's way: the naive
/// bound. At most `naive_max` requests; the rate is what counts.
json::object baseline_naive_http(const options& o, std::size_t n) {
    namespace http = boost::beast::http;
    const std::size_t count = std::min(n, o.naive_max);
    server_process server(o.server_store, (o.dir / ("naive-" + make_uuid() + ".db")).string());
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"),
                    static_cast<unsigned short>(std::stoi(server.port()))});
    boost::beast::flat_buffer buffer;
    std::size_t bytes = 0, failures = 0;
    const auto start = steady::now();
    for (std::size_t i = 0; i < count; ++i) {
        auto r = make_reservation(i);
        http::request<http::string_body> req{http::verb::put, "/v1/reservations/" + r.id, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer bench-naive");
        req.set(http::field::content_type, "application/json");
        req.body() = json::serialize(to_json_object(r));
        req.prepare_payload();
        http::write(socket, req);
        http::response<http::string_body> res;
        http::read(socket, buffer, res);
        bytes += req.body().size() + res.body().size();
        failures += res.result_int() != 200;
    }
    const double secs = seconds_since(start);
    auto stats = server.stats();
    return {{"scenario", "baseline_naive_http"},
            {"mode", "http"},
            {"server_store", o.server_store},
            {"n", n},
            {"k", count},
            {"records", count},
            {"failed", failures},
            {"seconds", secs},
            {"records_per_s", double(count) / secs},
            {"bytes", bytes},
            {"bytes_per_s", double(bytes) / secs},
            {"peak_rss_mb", json::object{{"server_mb", u64(stats, "hwm_kb") / 1024.0}}}};
}

// ---------------------------------------------------------------------------------------------

std::vector<std::size_t> parse_list(const std::string& s) {
    std::vector<std::size_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(std::stoull(item));
    return out;
}

void usage() {
    std::cerr
        << "usage: offsync-bench [--quick] [--scenario all|push,pull,incremental,conflict,"
           "clients,baseline]\n"
           "                     [--mode inproc|http|both] [--n LIST] [--k LIST] "
           "[--clients LIST]\n"
           "                     [--conflicts LIST] [--batch N] [--page N] "
           "[--durability full|normal]\n"
           "                     [--server-store memory|sqlite] [--naive-max N] [--dir DIR] "
           "[--out FILE]\n"
           "                     [--client-cpus LIST] [--server-cpus LIST] "
           "[--server-threads N]\n"
           "LIST is comma-separated, e.g. --n 1000,100000. Output: one JSON line per "
           "measurement.\n";
}

template <class Mode>
void run_mode(const options& o, output& out) {
    if (o.wants("push") || o.wants("pull") || o.wants("incremental")) run_sessions<Mode>(o, out);
    if (o.wants("conflict")) run_conflicts<Mode>(o, out);
    if (o.wants("clients")) run_clients<Mode>(o, out);
}

int bench_main(int argc, char** argv) {
    options o;
    bool n_set = false, k_set = false, c_set = false, conf_set = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--quick") o.quick = true;
        else if (a == "--scenario") o.scenario = value();
        else if (a == "--mode") o.mode = value();
        else if (a == "--n") o.n = parse_list(value()), n_set = true;
        else if (a == "--k") o.k = parse_list(value()), k_set = true;
        else if (a == "--clients") o.clients = parse_list(value()), c_set = true;
        else if (a == "--conflicts") o.conflicts = parse_list(value()), conf_set = true;
        else if (a == "--batch") o.batch = std::stoul(value());
        else if (a == "--page") o.page = std::uint32_t(std::stoul(value()));
        else if (a == "--durability") o.durability = value();
        else if (a == "--server-store") o.server_store = value();
        else if (a == "--naive-max") o.naive_max = std::stoul(value());
        else if (a == "--dir") o.dir = value();
        else if (a == "--out") o.out = value();
        else if (a == "--client-cpus") client_cpus = value();
        else if (a == "--server-cpus") server_cpus = value();
        else if (a == "--server-threads") server_threads = std::max(1, std::stoi(value()));
        else if (a == "--help" || a == "-h") return usage(), 0;
        else {
            usage();
            return 2;
        }
    }
    if (o.quick) {
        if (!n_set) o.n = {2000};
        if (!k_set) o.k = {10, 100};
        if (!c_set) o.clients = {4};
        if (!conf_set) o.conflicts = {100};
        o.naive_max = std::min<std::size_t>(o.naive_max, 300);
    }
    static const char* scenarios[] = {"all",      "push",    "pull",    "incremental",
                                      "conflict", "clients", "baseline"};
    bool known = true;
    {
        std::stringstream in(o.scenario);
        std::string item;
        while (std::getline(in, item, ','))
            known = known && std::find(std::begin(scenarios), std::end(scenarios), item) !=
                                 std::end(scenarios);
    }
    if (!known || (o.mode != "inproc" && o.mode != "http" && o.mode != "both")) {
        usage();
        return 2;
    }
    if (!client_cpus.empty()) pin_to(client_cpus);
    bool own_dir = false;
    if (o.dir.empty()) {
        o.dir = fs::temp_directory_path() / ("offsync-bench-" + make_uuid());
        own_dir = true;
    }
    fs::create_directories(o.dir);
    output out(o.out);
    out.write(machine_row());
    std::cerr << "offsync-bench: records of " << record_json_bytes()
              << " bytes of JSON; server store " << o.server_store << "; client durability "
              << o.durability << "\n";
    if (o.wants("baseline"))
        for (auto n : o.n) {
            out.write(baseline_codec(n));
            out.write(baseline_sqlite(o, n));
            out.write(baseline_service(o, n));
            if (o.mode != "inproc") out.write(baseline_naive_http(o, n));
        }
    if (o.mode != "http") run_mode<inproc_mode>(o, out);
    if (o.mode != "inproc") run_mode<http_mode>(o, out);
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
