// offsync-bench: the baselines, the bounds a round is measured against: the codec, raw SQLite,
// the sync service alone and one HTTP request per record.
#include "metrics.hpp"
#include "scenarios.hpp"
#include "server_process.hpp"
#include "workload.hpp"

#include <offsync/json_codec.hpp>
#include <offsync/protocol.hpp>
#include <offsync/uuid.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace offsync_bench {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace offsync;

/// Removes a SQLite file and its WAL files.
void remove_database(const std::string& file) {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file + suffix, ec);
}

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
    remove_database(file);
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
        failures += bool(answer.error);
        bytes += answer.body.size();
    }
    const double secs = seconds_since(start);
    const double cpu = cpu_seconds() - cpu_before;
    state.service.reset(); // before the store it uses
    state.store.reset();
    remove_database(file);
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
    server_process server(o, (o.dir / ("naive-" + make_uuid() + ".db")).string());
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
            {"peak_rss_mb", json::object{{"server_mb", number_of(stats, "hwm_kb") / 1024.0}}}};
}

} // namespace

void run_baselines(const options& o, output& out) {
    for (auto n : o.n) {
        out.write(baseline_codec(n));
        out.write(baseline_sqlite(o, n));
        out.write(baseline_service(o, n));
        if (o.mode != "inproc") out.write(baseline_naive_http(o, n));
    }
}

} // namespace offsync_bench
