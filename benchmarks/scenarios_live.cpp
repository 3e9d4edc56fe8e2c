// offsync-bench: live changes end to end (docs/benchmarks.md "Live changes"). The server runs in
// its process of its own; in this one, K devices of one user each keep a change stream open and
// pull through background sync on every hint (`background_sync::remote_change`, as
// `device::start_live` wires it), each an engine over a memory store and an HTTP transport. One
// more device of the same user pushes one record at a time. For each push and each listening
// device: the time from the push's acknowledgement to the hint, and to the record in that
// device's store. Then idle streams: the server's memory before and after S more streams open.
#include "metrics.hpp"
#include "output.hpp"
#include "scenarios.hpp"
#include "server_process.hpp"
#include "workload.hpp"

#include <offsync/background.hpp>
#include <offsync/engine.hpp>
#include <offsync/replica.hpp>
#include <offsync/storage/memory.hpp>
#include <offsync/transport/http.hpp>
#include <offsync/transport/http_live.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace offsync_bench {

namespace {

namespace asio = boost::asio;
using engine_type = offsync::basic_sync_engine<offsync::memory_storage, offsync::http_transport>;

offsync::http_transport_config bench_transport(const server_process& server, std::string user) {
    offsync::http_transport_config t;
    t.host = "127.0.0.1";
    t.port = static_cast<std::uint16_t>(std::stoul(server.port()));
    t.connect_timeout = std::chrono::seconds(30);
    t.request_timeout = std::chrono::seconds(60);
    t.token_provider = [user = std::move(user)](bool) { return "bench-" + user; };
    return t;
}

/// Background sync that only hints and the stream's openings drive.
offsync::background_config hints_only() {
    offsync::background_config c;
    c.earliest_begin = std::chrono::hours(24);
    c.interval = std::chrono::hours(24);
    c.debounce = std::chrono::hours(24);
    c.max_round_duration = std::chrono::minutes(5);
    return c;
}

/// One listening device, and when each key reached its stream and its store.
struct listening_device {
    listening_device(asio::io_context& io, const offsync::http_transport_config& t)
        : replica(storage), transport(io.get_executor(), t),
          engine(io.get_executor(), replica, transport), background(engine, hints_only()) {
        engine.add_collection<Reservation>();
        stored_listener = replica.subscribe<Reservation>(
            io.get_executor(), [this](const std::vector<offsync::record_change<Reservation>>& c) {
                const auto now = steady::now();
                for (const auto& change : c)
                    if (change.value) stored.emplace(change.key, now);
            });
        offsync::live_config live;
        live.client_id = engine.client_id();
        live.backoff_base = std::chrono::milliseconds(200);
        live.on_change = [this](const offsync::change_hint&) {
            hints.push_back(steady::now());
            background.remote_change();
        };
        live.on_open = [this] { background.remote_change(); };
        stream.emplace(io.get_executor(), t, std::move(live));
        background.start();
        stream->start();
    }
    ~listening_device() {
        stream->stop();
        background.stop();
    }

    offsync::memory_storage storage;
    offsync::basic_replica<offsync::memory_storage> replica;
    offsync::http_transport transport;
    engine_type engine;
    offsync::background_sync<engine_type> background;
    std::optional<offsync::http_change_stream> stream;
    offsync::subscription stored_listener;
    std::map<std::string, steady::time_point> stored;
    std::vector<steady::time_point> hints;
};

/// Runs `io` until `done` or `limit`; whether done.
template <class Pred>
bool run_until(asio::io_context& io, Pred done, std::chrono::milliseconds limit) {
    const auto deadline = steady::now() + limit;
    io.restart();
    while (!done() && steady::now() < deadline) io.run_one_for(std::chrono::milliseconds(20));
    return done();
}

/// A server database of its own, never one a run before left behind: its records would be
/// in the devices' stores before they are pushed.
std::string fresh_database(const options& o, const std::string& name) {
    const auto path = (o.dir / name).string();
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ignored);
    return path;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto at = static_cast<std::size_t>(p * double(v.size() - 1) + 0.5);
    return v[std::min(at, v.size() - 1)];
}

/// Pushes one record as the writer device and completes with the acknowledgement's time.
steady::time_point push_one(asio::io_context& io, offsync::http_transport& writer,
                            std::uint64_t mutation_id, const std::string& key) {
    auto record = make_reservation(mutation_id);
    record.id = key;
    offsync::push_request request;
    request.client_id = "bench-writer";
    offsync::mutation m;
    m.mutation_id = mutation_id;
    m.collection = "reservations";
    m.id = boost::json::string(key);
    m.stamp = {std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count(),
               0, "bench-writer"};
    m.fields = offsync::to_json_object(record);
    request.mutations.push_back(std::move(m));
    std::optional<steady::time_point> acked;
    offsync::error_code failed;
    writer.async_push(request, [&](offsync::error_code ec, offsync::push_response) {
        acked = steady::now();
        failed = ec;
    });
    if (!run_until(io, [&] { return acked.has_value(); }, std::chrono::seconds(60)) || failed)
        throw std::runtime_error("live: the writer's push failed");
    return *acked;
}

void measure_latency(const options& o, output& out, std::size_t devices, std::size_t& next_id) {
    asio::io_context io;
    server_process server(o, fresh_database(o, "live-" + std::to_string(devices) + ".db"));
    const auto transport = bench_transport(server, "u");
    std::vector<std::unique_ptr<listening_device>> listening;
    for (std::size_t i = 0; i < devices; ++i)
        listening.push_back(std::make_unique<listening_device>(io, transport));
    auto all = [&](auto pred) {
        return std::all_of(listening.begin(), listening.end(),
                           [&](const auto& d) { return pred(*d); });
    };
    if (!run_until(io, [&] { return all([](auto& d) { return d.stream->opened() >= 1; }); },
                   std::chrono::seconds(120)))
        throw std::runtime_error("live: not every stream opened");
    // The openings' rounds end before the first push.
    run_until(io, [&] {
        return all([](auto& d) { return d.background.state().rounds >= 1; });
    }, std::chrono::seconds(60));
    offsync::http_transport writer(io.get_executor(), transport);
    const std::size_t rounds = o.quick ? 5 : devices >= 1000 ? 20 : 50;
    std::vector<double> hint_ms, store_ms;
    std::size_t missed = 0;
    for (std::size_t r = 0; r < rounds; ++r) {
        const auto key = "live-" + std::to_string(++next_id);
        for (auto& d : listening) d->hints.clear();
        const auto acked = push_one(io, writer, next_id, key);
        const bool everywhere = run_until(
            io, [&] { return all([&](auto& d) { return d.stored.count(key) == 1; }); },
            std::chrono::seconds(30));
        for (auto& d : listening) {
            if (!d->hints.empty()) hint_ms.push_back(ms(d->hints.front() - acked));
            if (auto it = d->stored.find(key); it != d->stored.end())
                store_ms.push_back(ms(it->second - acked));
            else
                ++missed;
        }
        if (!everywhere) break;
        // Let the rounds the hint started end before the next push.
        run_until(io, [&] {
            return all([](auto& d) {
                return d.background.state().phase == offsync::background_phase::idle;
            });
        }, std::chrono::seconds(30));
    }
    boost::json::object row;
    row["scenario"] = "live_latency";
    row["mode"] = "http";
    row["server_store"] = o.server_store;
    row["devices"] = devices;
    row["pushes"] = rounds;
    row["samples"] = store_ms.size();
    row["missed"] = missed;
    row["hint_p50_ms"] = percentile(hint_ms, 0.50);
    row["hint_p99_ms"] = percentile(hint_ms, 0.99);
    row["store_p50_ms"] = percentile(store_ms, 0.50);
    row["store_p99_ms"] = percentile(store_ms, 0.99);
    row["store_max_ms"] = percentile(store_ms, 1.0);
    row["server"] = server.stop();
    out.write(std::move(row));
}

/// The server's fan-out alone: K streams that only take hints (no rounds, so the listening
/// side costs nearly nothing on this machine), and the time from each push's acknowledgement
/// to each stream's hint.
void measure_fanout(const options& o, output& out, std::size_t streams_wanted,
                    std::size_t& next_id) {
    asio::io_context io;
    server_process server(o,
                          fresh_database(o, "live-fanout-" + std::to_string(streams_wanted) + ".db"));
    const auto transport = bench_transport(server, "u");
    std::vector<std::unique_ptr<offsync::http_change_stream>> streams;
    std::vector<std::optional<steady::time_point>> heard(streams_wanted);
    for (std::size_t i = 0; i < streams_wanted; ++i) {
        offsync::live_config live;
        live.client_id = "fanout-" + std::to_string(i);
        live.on_change = [&heard, i](const offsync::change_hint&) {
            if (!heard[i]) heard[i] = steady::now();
        };
        streams.push_back(
            std::make_unique<offsync::http_change_stream>(io.get_executor(), transport, live));
        streams.back()->start();
    }
    if (!run_until(io, [&] {
            return std::all_of(streams.begin(), streams.end(),
                               [](const auto& s) { return s->opened() >= 1; });
        }, std::chrono::seconds(120)))
        throw std::runtime_error("live: not every stream opened");
    offsync::http_transport writer(io.get_executor(), transport);
    const std::size_t rounds = o.quick ? 5 : 50;
    std::vector<double> hint_ms;
    std::size_t missed = 0;
    for (std::size_t r = 0; r < rounds; ++r) {
        std::fill(heard.begin(), heard.end(), std::nullopt);
        ++next_id;
        const auto acked = push_one(io, writer, next_id, "fanout-" + std::to_string(next_id));
        run_until(io, [&] {
            return std::all_of(heard.begin(), heard.end(), [](const auto& h) { return h.has_value(); });
        }, std::chrono::seconds(30));
        for (const auto& h : heard) {
            if (h) hint_ms.push_back(ms(*h - acked));
            else ++missed;
        }
    }
    boost::json::object row;
    row["scenario"] = "live_fanout";
    row["mode"] = "http";
    row["server_store"] = o.server_store;
    row["streams"] = streams_wanted;
    row["pushes"] = rounds;
    row["samples"] = hint_ms.size();
    row["missed"] = missed;
    row["hint_p50_ms"] = percentile(hint_ms, 0.50);
    row["hint_p99_ms"] = percentile(hint_ms, 0.99);
    row["hint_max_ms"] = percentile(hint_ms, 1.0);
    for (auto& s : streams) s->stop();
    run_until(io, [] { return false; }, std::chrono::milliseconds(100));
    row["server"] = server.stop();
    out.write(std::move(row));
}

void measure_idle_streams(const options& o, output& out) {
    asio::io_context io;
    server_process server(o, fresh_database(o, "live-idle.db"));
    const auto transport = bench_transport(server, "idle");
    const auto before = server.stats();
    std::vector<std::unique_ptr<offsync::http_change_stream>> streams;
    std::size_t refused = 0;
    for (std::size_t i = 0; i < o.idle_streams; ++i) {
        offsync::live_config live;
        live.client_id = "idle-" + std::to_string(i);
        live.backoff_base = std::chrono::seconds(1);
        live.on_state = [&refused](offsync::live_state s, const offsync::diagnostics&) {
            if (s == offsync::live_state::waiting) ++refused;
        };
        streams.push_back(std::make_unique<offsync::http_change_stream>(io.get_executor(),
                                                                        transport, live));
        streams.back()->start();
    }
    const auto opened = [&] {
        return std::size_t(std::count_if(streams.begin(), streams.end(),
                                          [](const auto& s) { return s->opened() >= 1; }));
    };
    const auto started = steady::now();
    run_until(io, [&] { return opened() == streams.size(); }, std::chrono::seconds(120));
    const double open_s = seconds_since(started);
    // Idle: a moment with nothing but the streams, then the server's memory.
    run_until(io, [] { return false; }, std::chrono::seconds(2));
    const auto after = server.stats();
    const auto held = number_of(after, "streams");
    boost::json::object row;
    row["scenario"] = "live_idle_streams";
    row["mode"] = "http";
    row["streams"] = streams.size();
    row["opened"] = opened();
    row["held_by_server"] = held;
    row["failed_attempts"] = refused;
    row["open_all_s"] = open_s;
    const double delta_kb = number_of(after, "rss_kb") - number_of(before, "rss_kb");
    row["server_rss_before_kb"] = number_of(before, "rss_kb");
    row["server_rss_after_kb"] = number_of(after, "rss_kb");
    row["server_kb_per_stream"] = held > 0 ? delta_kb / held : 0.0;
    for (auto& s : streams) s->stop();
    run_until(io, [] { return false; }, std::chrono::milliseconds(200));
    row["server"] = server.stop();
    out.write(std::move(row));
}

} // namespace

void run_live(const options& o, output& out) {
    raise_descriptor_limit();
    std::size_t next_id = 0;
    for (auto devices : o.devices) {
        std::cerr << "offsync-bench: live latency, " << devices << " devices\n";
        measure_latency(o, out, devices, next_id);
        std::cerr << "offsync-bench: live fan-out, " << devices << " streams\n";
        measure_fanout(o, out, devices, next_id);
    }
    if (o.idle_streams > 0) {
        std::cerr << "offsync-bench: " << o.idle_streams << " idle streams\n";
        measure_idle_streams(o, out);
    }
}

} // namespace offsync_bench
