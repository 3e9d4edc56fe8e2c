// offsync-bench: the two modes a scenario runs in, the devices they make, and the measurement
// of one round.
//
// - `inproc_mode`: in-memory client stores; the sync service in this process, reached through
//   `loopback_transport` (the wire format, no socket), whose observer times each request.
// - `http_mode`: SQLite client stores; `http_transport` to the server process on 127.0.0.1
//   (server_process.hpp), whose counters give the server's share.
#pragma once

#include "metrics.hpp"
#include "options.hpp"
#include "server_process.hpp"
#include "transports.hpp"

#include <offsync/engine.hpp>
#include <offsync/replica.hpp>
#include <offsync/storage/memory.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/uuid.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace offsync_bench {

/// One client: its store, replica, transport and engine, and what its transport recorded.
template <class Storage, class Transport>
struct device {
    /// `make_transport(times)` returns the transport, which records into `times`.
    template <class MakeTransport>
    device(boost::asio::io_context& io, std::unique_ptr<Storage> s, offsync::engine_config config,
           MakeTransport&& make_transport)
        : storage(std::move(s)), replica(*storage), transport(make_transport(times)),
          engine(io.get_executor(), replica, transport, std::move(config)), io_(io) {}

    /// One round, run to completion on the io_context; returns its report and duration.
    std::pair<offsync::sync_report, steady::duration> sync() {
        times.first_pull.reset();
        std::optional<offsync::sync_report> out;
        const auto start = started = steady::now();
        engine.async_sync([&](offsync::error_code, offsync::sync_report r) { out = std::move(r); });
        io_.restart();
        io_.run();
        const auto took = steady::now() - start;
        if (!out) throw std::runtime_error("round did not complete");
        if (out->error) throw std::runtime_error("round failed: " + out->error_message);
        return {std::move(*out), took};
    }

    phase_times times; ///< before the transport, which holds on to it
    std::unique_ptr<Storage> storage;
    offsync::basic_replica<Storage> replica;
    Transport transport;
    offsync::basic_sync_engine<Storage, Transport> engine;
    boost::asio::io_context& io_;
    steady::time_point started; ///< when the last round began
};

/// `c` with the batch and page sizes of the command line.
inline offsync::engine_config with_options(offsync::engine_config c, const options& o) {
    c.push_batch_size = o.batch;
    c.pull_page_size = o.page;
    return c;
}

/// In process: the service in this process, in-memory client stores.
struct inproc_mode {
    using storage_type = offsync::memory_storage;
    using transport_type = offsync::loopback_transport;
    using device_type = device<storage_type, transport_type>;
    static constexpr const char* name = "inproc";

    explicit inproc_mode(const options& o) : opts(o) {
        service = make_server_state("memory", {}).service;
    }
    std::unique_ptr<device_type> make_device(const std::string& user,
                                             offsync::engine_config config = {}) {
        return std::make_unique<device_type>(
            io, std::make_unique<storage_type>(), with_options(std::move(config), opts),
            [&](phase_times& times) {
                transport_type t(io.get_executor(), *service, user);
                // One request at a time, as this mode has always been measured: in one thread
                // a second request in flight overlaps nothing, and the figures stay comparable.
                t.set_max_requests_in_flight(1);
                t.set_observer([&times](const offsync::loopback_exchange& e) { times.add(e); });
                return t;
            });
    }
    boost::json::object server_stats() { return {}; }
    void reset_server_peak() {}
    const char* server_store() const { return "memory"; }
    const char* client_store() const { return "memory"; }

    const options& opts;
    boost::asio::io_context io;
    std::unique_ptr<offsync::server::sync_service> service;
};

/// End to end: the server in a child process over HTTP, SQLite client stores.
struct http_mode {
    using storage_type = offsync::sqlite_storage;
    using transport_type = timed_http_transport;
    using device_type = device<storage_type, transport_type>;
    static constexpr const char* name = "http";

    explicit http_mode(const options& o)
        : opts(o), server(o, (o.dir / ("server-" + offsync::make_uuid() + ".db")).string()) {}
    std::unique_ptr<device_type> make_device(const std::string& user,
                                             offsync::engine_config engine = {}) {
        offsync::http_transport_config config;
        config.host = "127.0.0.1";
        config.port = static_cast<std::uint16_t>(std::stoul(server.port()));
        config.token_provider = [user](bool) { return "bench-" + user; };
        const auto file = (opts.dir / ("client-" + offsync::make_uuid() + ".db")).string();
        files.push_back(file);
        offsync::sqlite_config sc;
        sc.durability = opts.durability == "normal" ? offsync::sqlite_durability::normal
                                                    : offsync::sqlite_durability::full;
        return std::make_unique<device_type>(
            io, std::make_unique<storage_type>(file, sc), with_options(std::move(engine), opts),
            [&](phase_times& times) {
                return transport_type(io.get_executor(), std::move(config), times);
            });
    }
    boost::json::object server_stats() { return server.stats(); }
    void reset_server_peak() { server.reset_peak(); }
    const char* server_store() const { return opts.server_store.c_str(); }
    const char* client_store() const { return "sqlite"; }
    ~http_mode() {
        std::error_code ec;
        for (auto& f : files)
            for (const char* suffix : {"", "-wal", "-shm"})
                std::filesystem::remove(f + suffix, ec);
    }

    const options& opts;
    boost::asio::io_context io;
    server_process server;
    std::vector<std::string> files;
};

/// Measures one round of `dev` and fills a row: rate, bytes, phases, peak RSS of both ends.
template <class Mode, class Device>
boost::json::object measure_round(Mode& mode, Device& dev, const char* scenario,
                                  std::size_t records, offsync::sync_report* report_out = nullptr) {
    mode.reset_server_peak();
    reset_peak_rss();
    auto before = mode.server_stats();
    dev.times = {};
    const double cpu_before = cpu_seconds();
    const auto faults_before = page_faults();
    auto [report, took] = dev.sync();
    const double cpu_used = cpu_seconds() - cpu_before;
    const auto faults = page_faults() - faults_before;
    auto after = mode.server_stats();
    const auto& t = dev.times;
    auto delta = [&](const char* key) { return number_of(after, key) - number_of(before, key); };
    const double secs = std::chrono::duration<double>(took).count();
    const bool inproc = std::string_view(Mode::name) == "inproc";
    const double server_ms = inproc ? ms(t.server) : delta("busy_us") / 1000.0;
    const double bytes = inproc ? double(t.bytes) : delta("bytes_in") + delta("bytes_out");
    boost::json::object row;
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
    boost::json::object phases;
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
    boost::json::object rss;
    rss["bench_mb"] = peak_rss_mb();
    if (!inproc) rss["server_mb"] = number_of(after, "hwm_kb") / 1024.0;
    row["peak_rss_mb"] = std::move(rss);
    boost::json::object cpu;
    cpu["bench_ms"] = cpu_used * 1000;
    if (!inproc) cpu["server_ms"] = delta("cpu_s") * 1000;
    row["cpu_ms"] = std::move(cpu);
    boost::json::object faulted;
    faulted["bench"] = faults;
    if (!inproc) faulted["server"] = delta("page_faults");
    row["page_faults"] = std::move(faulted);
    row["load_avg"] = load_average();
    if (report_out) *report_out = std::move(report);
    return row;
}

} // namespace offsync_bench
