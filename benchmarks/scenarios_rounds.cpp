// offsync-bench: the scenarios that measure whole sync rounds, in either mode (modes.hpp).
#include "modes.hpp"
#include "scenarios.hpp"
#include "workload.hpp"

#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace offsync_bench {

namespace {

namespace json = boost::json;
using namespace offsync;

/// Push, pull and incremental: for each N, one writer and one reader of the same user.
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
    const bool http = std::string_view(Mode::name) == "http";
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
        // Two threads run the io_context, so two rounds can complete at once.
        std::mutex results_mutex;
        const double cpu_before = cpu_seconds();
        const auto start = steady::now();
        for (auto& d : devices)
            d->engine.async_sync([&, t0 = steady::now()](error_code ec, sync_report) {
                std::lock_guard lock(results_mutex);
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
        auto delta = [&](const char* key) {
            return number_of(after, key) - number_of(before, key);
        };
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
        if (http) {
            const double bytes = delta("bytes_in") + delta("bytes_out");
            row["bytes"] = bytes;
            row["bytes_per_s"] = bytes / secs;
            row["phases"] = json::object{{"server_ms", delta("busy_us") / 1000.0}};
            row["peak_rss_mb"] = json::object{{"bench_mb", peak_rss_mb()},
                                              {"server_mb", number_of(after, "hwm_kb") / 1024.0}};
        } else {
            row["peak_rss_mb"] = json::object{{"bench_mb", peak_rss_mb()}};
        }
        json::object cpu{{"bench_ms", (cpu_seconds() - cpu_before) * 1000}};
        if (http) cpu["server_ms"] = delta("cpu_s") * 1000;
        row["cpu_ms"] = std::move(cpu);
        row["load_avg"] = load_average();
        if (done != devices.size()) throw std::runtime_error("a client's round did not complete");
        out.write(row);
    }
}

/// Change listeners: a device pulls N records while L subscriptions (--listeners) on its
/// collection hear of them on an app thread of their own. Reports the pull's rate (to set
/// against L = 0) and the time from a page's commit to the callback that hears of it.
template <class Mode>
void run_listeners(const options& o, output& out) {
    const auto now = system_wall_ms();
    for (auto n : o.n) {
        Mode mode(o);
        auto writer = mode.make_device("listeners");
        writer->engine.template add_collection<Reservation>();
        edit_records(*writer->storage, 0, n, 1, 0, now);
        writer->sync();
        for (std::size_t listeners : o.listeners) {
            // The app's thread, where callbacks run.
            boost::asio::io_context app;
            auto work = boost::asio::make_work_guard(app);
            std::thread app_thread([&] { app.run(); });

            std::atomic<std::int64_t> last_commit_ns{0};
            offsync::engine_config config;
            config.on_event = [&](const sync_event& e) {
                if (e.what == sync_event::kind::page_pulled)
                    last_commit_ns = steady::now().time_since_epoch().count();
            };
            auto reader = mode.make_device("listeners", std::move(config));
            reader->engine.template add_collection<Reservation>();
            std::mutex mutex;
            std::vector<double> latencies;
            std::size_t heard = 0, deliveries = 0;
            std::vector<offsync::subscription> subscriptions;
            for (std::size_t i = 0; i < listeners; ++i)
                subscriptions.push_back(reader->replica.template subscribe<Reservation>(
                    app.get_executor(), [&](const std::vector<record_change<Reservation>>& changes) {
                        // From the page_pulled event, which the engine emits just after the
                        // commit; a delivery that beats the event to it counts as 0.
                        const auto at = steady::now().time_since_epoch().count();
                        const auto committed = last_commit_ns.load();
                        std::lock_guard lock(mutex);
                        latencies.push_back(committed == 0 || at < committed
                                                ? 0.0
                                                : double(at - committed) / 1e6);
                        heard += changes.size();
                        ++deliveries;
                    }));
            auto row = measure_round(mode, *reader, "listeners", n);
            // Every listener hears every record: wait (bounded) for the last deliveries.
            const auto deadline = steady::now() + std::chrono::seconds(30);
            while (steady::now() < deadline) {
                {
                    std::lock_guard lock(mutex);
                    if (heard >= n * listeners) break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            subscriptions.clear();
            work.reset();
            app_thread.join();
            std::sort(latencies.begin(), latencies.end());
            row["n"] = n;
            row["k"] = n;
            row["listeners"] = listeners;
            row["heard"] = heard;
            row["deliveries"] = deliveries;
            if (!latencies.empty()) {
                row["callback_ms_p50"] = latencies[latencies.size() / 2];
                row["callback_ms_max"] = latencies.back();
            }
            if (heard != n * listeners)
                throw std::runtime_error("listeners: " + std::to_string(heard) + " of " +
                                         std::to_string(n * listeners) + " changes heard");
            out.write(row);
        }
    }
}

template <class Mode>
void run_mode(const options& o, output& out) {
    if (o.wants("push") || o.wants("pull") || o.wants("incremental")) run_sessions<Mode>(o, out);
    if (o.wants("conflict")) run_conflicts<Mode>(o, out);
    if (o.wants("clients")) run_clients<Mode>(o, out);
    if (o.wants("listeners")) run_listeners<Mode>(o, out);
}

} // namespace

void run_rounds(const options& o, output& out) {
    if (o.mode != "http") run_mode<inproc_mode>(o, out);
    if (o.mode != "inproc") run_mode<http_mode>(o, out);
}

} // namespace offsync_bench
