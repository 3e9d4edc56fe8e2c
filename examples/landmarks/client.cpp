// landmarks: one Landmarks device on the command line. Its data lives in one SQLite file; every
// command but `sync` and `watch` works offline; they reconcile the file with a landmarks-server.
//
//   landmarks [--db FILE] [--server HOST:PORT] [--token TOKEN] [--user NAME]
//             [--timeout SECONDS] [--json] COMMAND [ARGS]
//
//   list [landmarks|favorites|reservations]  favorite ID  unfavorite ID
//   reserve LANDMARK-ID [--party N] [--date YYYY-MM-DD] [--notes TEXT] [--id RID]
//   cancel RID  share RID USER...  unshare RID USER...  members RID
//   sync  status  conflicts  resolve RID keep-mine|use-server
//   watch [--interval SECONDS] [--rounds N] [--no-stream]  help
//
// Exit status, for scripts (also printed by `landmarks help`):
//   0  success
//   1  `sync` completed, but conflicts or rejected changes wait for the user
//   2  usage error: unknown command or option, a malformed value
//   3  the server is unreachable or failing; local edits are kept for the next sync
//   4  no token, or the server refused it (401)
//   5  unknown id: no such landmark, reservation or pending conflict
//   6  local storage error: the --db file cannot be opened, read or written
//
// With --json every command prints exactly one JSON document on stdout, errors included
// (`{"command", "exit_code", "error": {"code", "message"}}`); people's messages go to stderr.
//
// How it is put together: `device` owns an `offsync::device` (the SQLite store, its replica, the
// HTTP transport and the sync engine, built from landmarks::models), the io_context its rounds
// run on, and a small table of the program's own state (the last sync); `session` runs rounds; `status_of()` gathers
// what a status display shows. Each command is a function in the `commands` table. `watch`
// holds one session and drives its rounds with offsync's background sync on the session's
// io_context, recording each round with `record_round()`.
#include "model.hpp"

#include <offsync/device.hpp>
#include <offsync/subset.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using landmarks::Landmark;
using landmarks::Reservation;
using facade_type = offsync::device<landmarks::models>;
using store_type = facade_type::storage_type;
using replica_type = facade_type::replica_type;

enum exit_status : int {
    exit_ok = 0,
    exit_attention = 1,
    exit_usage = 2,
    exit_unreachable = 3,
    exit_auth = 4,
    exit_not_found = 5,
    exit_storage = 6,
};

const char* const usage_text = R"(usage: landmarks [OPTIONS] COMMAND [ARGS]

One Landmarks device: its data lives in a local SQLite file. Every command but
sync and watch works offline; sync pushes local changes to the server and pulls
its changes, watch keeps doing so in the background.

commands:
  list [landmarks|favorites|reservations]
                               show the local data (default: landmarks; * = favorite)
  favorite ID                  mark landmark ID as a favorite
  unfavorite ID                unmark it
  reserve LANDMARK-ID [--party N] [--date YYYY-MM-DD] [--notes TEXT] [--id RID]
                               book a visit (a new reservation: party of 1, today,
                               unless given; needs --user), or with --id RID create
                               or change reservation RID
  cancel RID                   cancel reservation RID
  share RID USER...            share reservation RID with users: they see and edit it
  unshare RID USER...          stop sharing it with them: their devices drop it
  members RID                  who shares reservation RID
  sync-from YYYY-MM-DD|all     this device keeps only reservations dated from that day
                               on: the next sync drops the older ones (the server keeps
                               them; unsynced edits stay until pushed), and `all`
                               brings them back
  sync                         push local changes, then pull the server's
  status                       changes waiting to sync, conflicts, rejections, last sync
  conflicts                    conflicts waiting for you: your fields and the server's
  resolve RID keep-mine|use-server
                               settle a conflict (keep-mine keeps the fields you changed),
                               or drop a change the server rejected (use-server)
  watch [--interval SECONDS] [--rounds N] [--no-stream]
                               sync in the background every SECONDS (default 30), at once
                               on start, with backoff while the server is unreachable,
                               and within milliseconds of another device's change (the
                               server's change stream; --no-stream: periodic rounds only);
                               a live status line; stops on Ctrl-C or after N rounds
  help                         this text

options:
  --db FILE           the device's SQLite file (env LANDMARKS_DB; default landmarks.db)
  --server HOST:PORT  the sync server (env LANDMARKS_SERVER; default 127.0.0.1:8080)
  --token TOKEN       bearer token for sync (env LANDMARKS_TOKEN)
  --user NAME         the user the token signs in as (env LANDMARKS_USER): a new
                      reservation's first member; share and unshare keep you in
  --timeout SECONDS   bound on connecting and on each request (default 10)
  --json              print one JSON document per command instead of text

exit status:
  0  success
  1  sync completed, but conflicts or rejected changes wait for you
  2  usage error
  3  server unreachable or failing (local edits are kept for the next sync)
  4  no token, or the server refused it (401)
  5  unknown id: no such landmark, reservation or pending conflict
  6  local storage error (the --db file)
)";

/// Why a command stopped: its exit status, a stable code for --json, and a message for people.
struct failure {
    int status;
    std::string code;
    std::string message;
};

[[noreturn]] void fail(int status, std::string code, std::string message) {
    throw failure{status, std::move(code), std::move(message)};
}
[[noreturn]] void usage_error(std::string message) {
    fail(exit_usage, "usage", std::move(message));
}

/// A system_error's own message, without the " : <code message> [category:value]" Boost adds.
std::string plain_message(const boost::system::system_error& e) {
    std::string what = e.what();
    const auto pos = what.rfind(": " + e.code().message());
    return pos == std::string::npos || pos == 0 ? what : what.substr(0, pos);
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    const int n = std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    if (n < 0) return {};
    if (std::size_t(n) < sizeof buf) return std::string(buf, std::size_t(n));
    std::string out(std::size_t(n) + 1, '\0');
    va_start(args, fmt);
    std::vsnprintf(out.data(), out.size(), fmt, args);
    va_end(args);
    out.resize(std::size_t(n));
    return out;
}

/// Names as a person reads them: "alice, bob".
std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

// --- command line -------------------------------------------------------------------------

struct options {
    std::string db;
    std::string server;
    std::string token;
    std::string user; ///< who the token signs in as; empty if not given
    bool json = false;
    std::chrono::milliseconds timeout{10'000};
    // reserve's own options
    std::optional<std::int32_t> party;
    std::optional<std::chrono::sys_days> date;
    std::optional<std::string> notes;
    std::optional<std::string> reservation_id;
    // watch's own options
    std::chrono::seconds interval{30};
    std::optional<std::size_t> rounds;
    bool stream = true; ///< keep the server's change stream open
    std::vector<std::string> args; ///< the command and its operands
};

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

std::optional<long long> parse_integer(std::string_view text) {
    if (text.empty() || text.size() > 18) return std::nullopt;
    long long n = 0;
    bool negative = text[0] == '-';
    if (negative) text.remove_prefix(1);
    if (text.empty()) return std::nullopt;
    for (char ch : text) {
        if (ch < '0' || ch > '9') return std::nullopt;
        n = n * 10 + (ch - '0');
    }
    return negative ? -n : n;
}

std::optional<std::chrono::sys_days> parse_day(std::string_view text) {
    using namespace std::chrono;
    if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
    auto y = parse_integer(text.substr(0, 4)), m = parse_integer(text.substr(5, 2)),
         d = parse_integer(text.substr(8, 2));
    if (!y || !m || !d || *m < 1 || *d < 1) return std::nullopt;
    const year_month_day ymd{year{int(*y)}, month{unsigned(*m)}, day{unsigned(*d)}};
    if (!ymd.ok()) return std::nullopt;
    // A reservation's date is a system_clock time point: a day it cannot hold is refused
    // here rather than wrapped into another date.
    if (!offsync::time_point_holds<system_clock::duration>(offsync::wire_time{sys_days{ymd}}))
        return std::nullopt;
    return sys_days{ymd};
}

std::string format_day(std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    const year_month_day ymd{floor<days>(tp)};
    return format("%04d-%02u-%02u", int(ymd.year()), unsigned(ymd.month()), unsigned(ymd.day()));
}

/// A user name as a token file has them: 1 to 256 printable ASCII bytes, no spaces.
bool valid_user_name(std::string_view name) {
    if (name.empty() || name.size() > offsync::max_id_length) return false;
    return std::all_of(name.begin(), name.end(),
                       [](unsigned char ch) { return ch >= 0x21 && ch <= 0x7e; });
}

options parse_command_line(int argc, char** argv) {
    options o;
    o.db = env_or("LANDMARKS_DB", "landmarks.db");
    o.server = env_or("LANDMARKS_SERVER", "127.0.0.1:8080");
    o.token = env_or("LANDMARKS_TOKEN", "");
    o.user = env_or("LANDMARKS_USER", "");
    bool interval_given = false;
    bool stream_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--") {
            for (++i; i < argc; ++i) o.args.push_back(argv[i]);
            break;
        }
        if (arg == "-h" || arg == "--help") {
            o.args.insert(o.args.begin(), "help");
            continue;
        }
        if (arg == "--json") {
            o.json = true;
            continue;
        }
        if (!arg.starts_with("--")) {
            o.args.push_back(arg);
            continue;
        }
        std::string name = arg, value;
        bool has_value = false;
        if (auto eq = arg.find('='); eq != std::string::npos) {
            name = arg.substr(0, eq);
            value = arg.substr(eq + 1);
            has_value = true;
        }
        auto take = [&] {
            if (has_value) return value;
            if (i + 1 >= argc) usage_error("missing value after " + name);
            return std::string(argv[++i]);
        };
        if (name == "--db") o.db = take();
        else if (name == "--server") o.server = take();
        else if (name == "--token") o.token = take();
        else if (name == "--user") {
            o.user = take();
            if (!valid_user_name(o.user))
                usage_error("--user takes a user name of 1 to 256 printable bytes, not '" +
                            o.user + "'");
        }
        else if (name == "--timeout") {
            auto v = take();
            auto n = parse_integer(v);
            if (!n || *n < 1 || *n > 3600)
                usage_error("--timeout takes seconds from 1 to 3600, not '" + v + "'");
            o.timeout = std::chrono::seconds(*n);
        } else if (name == "--party") {
            auto v = take();
            auto n = parse_integer(v);
            if (!n || *n < 1 || *n > 99)
                usage_error("--party takes a number from 1 to 99, not '" + v + "'");
            o.party = std::int32_t(*n);
        } else if (name == "--date") {
            auto v = take();
            o.date = parse_day(v);
            if (!o.date)
                usage_error("--date takes a day as YYYY-MM-DD, from 1677-09-22 to 2262-04-11, "
                            "not '" + v + "'");
        } else if (name == "--notes") o.notes = take();
        else if (name == "--id") {
            auto v = take();
            if (v.empty() || v.size() > offsync::max_id_length)
                usage_error("--id takes a reservation id of 1 to 256 bytes");
            o.reservation_id = v;
        } else if (name == "--interval") {
            auto v = take();
            auto n = parse_integer(v);
            if (!n || *n < 1 || *n > 86400)
                usage_error("--interval takes seconds from 1 to 86400, not '" + v + "'");
            o.interval = std::chrono::seconds(*n);
            interval_given = true;
        } else if (name == "--rounds") {
            auto v = take();
            auto n = parse_integer(v);
            if (!n || *n < 1 || *n > 1'000'000)
                usage_error("--rounds takes a number from 1 to 1000000, not '" + v + "'");
            o.rounds = std::size_t(*n);
        } else if (name == "--no-stream") {
            o.stream = false;
            stream_given = true;
        } else usage_error("unknown option " + name);
    }
    const bool reserve = !o.args.empty() && o.args[0] == "reserve";
    if (!reserve && (o.party || o.date || o.notes || o.reservation_id))
        usage_error("--party, --date, --notes and --id belong to the reserve command");
    const bool watch = !o.args.empty() && o.args[0] == "watch";
    if (!watch && (interval_given || o.rounds || stream_given))
        usage_error("--interval, --rounds and --no-stream belong to the watch command");
    if (o.db.empty()) usage_error("--db takes a file name");
    return o;
}

/// "HOST:PORT" (or "[V6-ADDRESS]:PORT") into a transport's host and port.
std::pair<std::string, std::uint16_t> split_server(const std::string& server) {
    const auto colon = server.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == server.size())
        usage_error("--server takes HOST:PORT, not '" + server + "'");
    std::string host = server.substr(0, colon), port = server.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    auto n = parse_integer(port);
    if (!n || *n < 1 || *n > 65535)
        usage_error("--server: the port must be 1 to 65535, not '" + port + "'");
    return {host, static_cast<std::uint16_t>(*n)};
}

// --- the device: its store and the program's own state ------------------------------------

/// One device's data: the offsync store in the --db file, the replica the commands edit it
/// through, and the table `landmarks_cli_state` (key, value) this program keeps beside offsync's
/// tables for what offsync does not track: when the last sync ran and how it ended.
class device {
public:
    explicit device(const options& o) : path_(o.db), facade_(open(io_, o)) {
        exec("CREATE TABLE IF NOT EXISTS landmarks_cli_state (key TEXT PRIMARY KEY, value) "
             "WITHOUT ROWID");
        // offsync keeps the subset a device held, but the app says at every start which
        // one it wants: this program keeps its choice (`sync-from`) with its own state.
        if (const auto from = reservations_from())
            facade_->set_subset<landmarks::Reservation>(reservations_subset(*from));
    }

    /// The first day of the reservations this device syncs (`sync-from`), if it is set.
    std::optional<std::chrono::sys_days> reservations_from() {
        const auto day = state("reservations_from");
        return day && !day->empty() ? parse_day(*day) : std::nullopt;
    }
    /// The reservations dated from `first_day` on. A time field is ISO 8601 text in JSON, of
    /// one width, so it compares as text: the condition is written as data.
    static offsync::sync_subset reservations_subset(std::chrono::sys_days first_day) {
        offsync::sync_subset part;
        part.where.conditions.push_back({"date", offsync::compare_op::greater_equal,
                                         json::value(offsync::format_iso8601(first_day))});
        return part;
    }

    const std::string& path() const noexcept { return path_; }
    store_type& store() noexcept { return facade_->storage(); }
    replica_type& replica() noexcept { return facade_->replica(); }
    facade_type& facade() noexcept { return *facade_; }
    /// Where rounds run: `session` runs it until they end.
    asio::io_context& io() noexcept { return io_; }

    std::optional<std::string> state(const char* key) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db(), "SELECT value FROM landmarks_cli_state WHERE key = ?1", -1,
                               &st, nullptr) != SQLITE_OK)
            storage_failure();
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        std::optional<std::string> out;
        const int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
            out = text ? text : "";
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) storage_failure();
        return out;
    }

    /// Writes several keys in one transaction.
    void set_state(const std::vector<std::pair<std::string, std::string>>& values) {
        exec("BEGIN IMMEDIATE");
        for (const auto& [key, value] : values) {
            sqlite3_stmt* st = nullptr;
            if (sqlite3_prepare_v2(db(),
                                   "INSERT OR REPLACE INTO landmarks_cli_state VALUES (?1, ?2)", -1,
                                   &st, nullptr) != SQLITE_OK) {
                rollback();
                storage_failure();
            }
            sqlite3_bind_text(st, 1, key.c_str(), int(key.size()), SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, value.c_str(), int(value.size()), SQLITE_TRANSIENT);
            const int rc = sqlite3_step(st);
            sqlite3_finalize(st);
            if (rc != SQLITE_DONE) {
                rollback();
                storage_failure();
            }
        }
        exec("COMMIT");
    }

private:
    static std::unique_ptr<facade_type> open(asio::io_context& io, const options& o) {
        offsync::device_config config;
        config.database = o.db;
        config.server = server_url(o.server);
        config.token = o.token;
        config.transport.connect_timeout = o.timeout;
        config.transport.request_timeout = o.timeout;
        config.transport.user_agent = "landmarks-cli";
        try {
            return std::make_unique<facade_type>(io.get_executor(), std::move(config));
        } catch (const boost::system::system_error& e) {
            fail(exit_storage, "storage", plain_message(e));
        } catch (const std::exception& e) {
            fail(exit_storage, "storage", o.db + ": " + e.what());
        }
    }

    /// `--server` as a URL. Only `sync` and `watch` talk to the server, and they check the
    /// address first (a malformed one is a usage error there); every other command works
    /// offline whatever it says, so it gets an address that parses and is never used.
    static std::string server_url(const std::string& server) {
        try {
            auto [host, port] = split_server(server);
            if (host.find(':') != std::string::npos) host = "[" + host + "]";
            return "http://" + host + ":" + std::to_string(port);
        } catch (const failure&) {
            return "http://127.0.0.1:1";
        }
    }

    // The store's connection; used only between the store's own transactions (one thread).
    sqlite3* db() noexcept { return store().native_handle(); }

    [[noreturn]] void storage_failure() {
        fail(exit_storage, "storage", path_ + ": " + sqlite3_errmsg(db()));
    }
    void exec(const char* sql) {
        if (sqlite3_exec(db(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) storage_failure();
    }
    void rollback() noexcept { sqlite3_exec(db(), "ROLLBACK", nullptr, nullptr, nullptr); }

    std::string path_;
    asio::io_context io_; // before the facade, whose pieces hold its executor
    std::unique_ptr<facade_type> facade_;
};

/// Where a record stands with the server.
const char* sync_state(const offsync::local_record& r) {
    switch (r.parked) {
    case offsync::park_state::conflict: return "conflict";
    case offsync::park_state::rejected: return "rejected";
    case offsync::park_state::none: break;
    }
    return r.dirty() ? "pending" : "synced";
}

template <class T>
struct entry {
    T value;
    const char* state;
};

template <class T>
std::vector<entry<T>> entries(device& d) {
    std::vector<entry<T>> out;
    for (auto& [key, rec] : d.store().list(offsync::schema_of<T>().name))
        out.push_back({offsync::from_json<T>(rec.value), sync_state(rec)});
    return out;
}

std::int64_t parse_landmark_id(const std::string& text) {
    auto n = parse_integer(text);
    if (!n) usage_error("a landmark id is a number, not '" + text + "'");
    return *n;
}

Landmark find_landmark(device& d, std::int64_t id) {
    if (auto l = d.replica().get<Landmark>(id)) return *l;
    const auto count = d.store().list("landmarks").size();
    if (count == 0)
        fail(exit_not_found, "unknown_landmark",
             format("no landmark %lld here: this device has no catalog yet; run `landmarks sync` "
                    "once while online to fetch it",
                    static_cast<long long>(id)));
    fail(exit_not_found, "unknown_landmark",
         format("no landmark %lld in the catalog (%zu landmarks; `landmarks list` shows them)",
                static_cast<long long>(id), count));
}

Reservation find_reservation(device& d, const std::string& id) {
    if (auto r = d.replica().get<Reservation>(id)) return *r;
    fail(exit_not_found, "unknown_reservation",
         "no reservation '" + id + "' (`landmarks list reservations` shows them)");
}

std::string landmark_name(device& d, std::int64_t id) {
    auto l = d.replica().get<Landmark>(id);
    return l ? l->name : format("landmark %lld", static_cast<long long>(id));
}

std::string describe(device& d, const Reservation& r) {
    return format("%s on %s, party of %d, %s", landmark_name(d, r.landmark_id).c_str(),
                  format_day(r.date).c_str(), int(r.party_size), r.status.c_str()) +
           (r.notes.empty() ? "" : ", notes \"" + r.notes + "\"");
}

// --- talking to the server ----------------------------------------------------------------

/// Rounds with the server: the device's engine, run to their end on the device's io_context.
class session {
public:
    session(device& d, const options&) : device_(d) {}

    asio::io_context& io() noexcept { return device_.io(); }

    /// The engine, for code that starts rounds itself on `io()` (`round()` runs one to its end).
    facade_type::engine_type& engine() noexcept { return device_.facade().engine(); }

    /// Runs one round to its end and returns its report.
    offsync::sync_report round() {
        std::optional<offsync::sync_report> out;
        device_.facade().async_sync(
            [&](offsync::error_code, offsync::sync_report r) { out = std::move(r); });
        io().restart();
        io().run();
        return std::move(*out);
    }

    /// Where and how the device's transport reaches the server (the change stream opens its
    /// own connection with the same settings).
    const offsync::http_transport_config& transport_config() noexcept {
        return device_.facade().transport().config();
    }

    /// The transport's detail for the last failed request (the report's message is shorter).
    const offsync::diagnostics& transport_error() noexcept {
        return device_.facade().transport().last_error();
    }

private:
    device& device_;
};

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_time_ms(std::int64_t ms) {
    return offsync::format_iso8601(std::chrono::system_clock::time_point(
        std::chrono::milliseconds(ms)));
}

std::string ago(std::int64_t ms) {
    const auto s = std::max<std::int64_t>(0, (now_ms() - ms) / 1000);
    if (s < 60) return format("%lld s ago", static_cast<long long>(s));
    if (s < 3600) return format("%lld min ago", static_cast<long long>(s / 60));
    if (s < 86400) return format("%lld h ago", static_cast<long long>(s / 3600));
    return format("%lld days ago", static_cast<long long>(s / 86400));
}

/// How a failed round maps onto the exit status and the message people read.
failure classify(const offsync::sync_report& r, const offsync::diagnostics& transport,
                 const std::string& server) {
    using offsync::errc;
    const auto& ec = r.error;
    std::string detail = transport ? transport.message : r.error_message;
    while (!detail.empty() && (detail.back() == ' ' || detail.back() == ':')) detail.pop_back();
    if (ec == offsync::make_error_code(errc::unauthorized))
        return {exit_auth, "unauthorized",
                "the server at " + server + " refused the token (401 Unauthorized): check "
                "--token or LANDMARKS_TOKEN"};
    if (ec == offsync::make_error_code(errc::transport_failure))
        return {exit_unreachable, "unreachable",
                "cannot reach the server at " + server + ": " + detail};
    if (ec == offsync::make_error_code(errc::storage_failure))
        return {exit_storage, "storage", "local storage: " + r.error_message};
    return {exit_unreachable, "server_error",
            "the server at " + server + " failed the sync: " +
                (detail.empty() ? ec.message() : detail)};
}

/// Remembers how a round ended, for `status`.
void record_round(device& d, const options& o, const offsync::sync_report& r,
                  const failure* error) {
    const auto at = std::to_string(now_ms());
    std::vector<std::pair<std::string, std::string>> values{
        {"last_sync_at", at},
        {"last_sync_server", o.server},
        {"last_sync_result", error ? error->code : "ok"},
        {"last_sync_message", error ? error->message : ""},
        {"last_sync_pushed", std::to_string(r.pushed)},
        {"last_sync_pulled", std::to_string(r.pulled)},
    };
    if (!error) values.emplace_back("last_success_at", at);
    d.set_state(values);
}

/// What waits on this device: the numbers a status display shows.
struct device_status {
    offsync::pending_counts landmarks, reservations;
    std::size_t dirty() const { return landmarks.dirty + reservations.dirty; }
    std::size_t conflicts() const { return landmarks.conflicts + reservations.conflicts; }
    std::size_t rejected() const { return landmarks.rejected + reservations.rejected; }
};

device_status status_of(device& d) {
    return {d.replica().pending<Landmark>(), d.replica().pending<Reservation>()};
}

json::object counts_json(const offsync::pending_counts& p) {
    return {{"dirty", p.dirty}, {"conflicts", p.conflicts}, {"rejected", p.rejected}};
}

// --- commands -------------------------------------------------------------------------------

/// A command's output: text for people, printed as it goes, or one JSON document at the end.
struct output {
    bool json = false;
    json::object doc;
    void text(const std::string& line) {
        if (!json) std::printf("%s\n", line.c_str());
    }
};

struct context {
    const options& opt;
    device& dev;
    output& out;
};

void expect_operands(const context& c, std::size_t n, const char* synopsis) {
    if (c.opt.args.size() != n + 1) usage_error(std::string("usage: landmarks ") + synopsis);
}

int list_landmarks(context& c, bool favorites_only) {
    auto all = entries<Landmark>(c.dev);
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.value.id < b.value.id; });
    json::array items;
    std::vector<std::string> rows;
    std::size_t favorites = 0;
    for (const auto& [l, state] : all) {
        favorites += l.is_favorite;
        if (favorites_only && !l.is_favorite) continue;
        auto item = offsync::to_json_object(l);
        item["sync"] = state;
        items.push_back(std::move(item));
        const std::string where = l.city + ", " + l.state;
        const std::string note = std::string_view(state) == "synced" ? "" : format("  (%s)", state);
        rows.push_back(format("%4lld  %-2s %-26s %-36s %s%s", static_cast<long long>(l.id),
                              l.is_favorite ? "*" : "", l.name.c_str(), where.c_str(),
                              l.category.c_str(), note.c_str()));
    }
    if (!rows.empty())
        c.out.text(format("%4s %-3s %-26s %-36s %s", "ID", "FAV", "NAME", "LOCATION", "CATEGORY"));
    for (const auto& row : rows) c.out.text(row);
    c.out.doc["landmarks"] = std::move(items);
    if (all.empty())
        c.out.text("No landmarks on this device yet: run `landmarks sync` to fetch the catalog.");
    else if (favorites_only && rows.empty())
        c.out.text("No favorites yet: `landmarks favorite ID` marks one.");
    else
        c.out.text(format("%zu landmarks, %zu favorites (*).", all.size(), favorites));
    return exit_ok;
}

int list_reservations(context& c) {
    auto all = entries<Reservation>(c.dev);
    json::array items;
    if (!all.empty())
        c.out.text(format("%-14s %-26s %-10s %5s  %-9s  %-16s %s", "ID", "LANDMARK", "DATE",
                          "PARTY", "STATUS", "MEMBERS", "NOTES"));
    for (const auto& [r, state] : all) {
        auto item = offsync::to_json_object(r);
        const auto name = landmark_name(c.dev, r.landmark_id);
        item["landmark_name"] = name;
        item["day"] = format_day(r.date);
        item["sync"] = state;
        items.push_back(std::move(item));
        const std::string note = std::string_view(state) == "synced" ? "" : format("  (%s)", state);
        c.out.text(format("%-14s %-26s %-10s %5d  %-9s  %-16s %s%s", r.id.c_str(), name.c_str(),
                          format_day(r.date).c_str(), int(r.party_size), r.status.c_str(),
                          joined(r.members).c_str(),
                          r.notes.empty() ? "" : ("\"" + r.notes + "\"").c_str(), note.c_str()));
    }
    c.out.doc["reservations"] = std::move(items);
    if (all.empty()) c.out.text("No reservations: `landmarks reserve LANDMARK-ID` books a visit.");
    return exit_ok;
}

int cmd_list(context& c) {
    if (c.opt.args.size() > 2) usage_error("usage: landmarks list [landmarks|favorites|reservations]");
    const std::string what = c.opt.args.size() == 2 ? c.opt.args[1] : "landmarks";
    if (what == "landmarks") return list_landmarks(c, false);
    if (what == "favorites") return list_landmarks(c, true);
    if (what == "reservations") return list_reservations(c);
    usage_error("list shows landmarks, favorites or reservations, not '" + what + "'");
}

int set_favorite(context& c, bool on) {
    expect_operands(c, 1, on ? "favorite LANDMARK-ID" : "unfavorite LANDMARK-ID");
    auto l = find_landmark(c.dev, parse_landmark_id(c.opt.args[1]));
    bool changed = false;
    if (l.is_favorite != on) {
        l.is_favorite = on;
        changed = c.dev.replica().put(l);
    }
    c.out.doc["id"] = l.id;
    c.out.doc["name"] = l.name;
    c.out.doc["is_favorite"] = on;
    c.out.doc["changed"] = changed;
    if (changed)
        c.out.text(l.name + (on ? " is now a favorite" : " is no longer a favorite") +
                   " (waits for the next sync).");
    else
        c.out.text(l.name + (on ? " is already a favorite." : " is not a favorite."));
    return exit_ok;
}

int cmd_favorite(context& c) { return set_favorite(c, true); }
int cmd_unfavorite(context& c) { return set_favorite(c, false); }

/// A fresh reservation id: 48 random bits, since ids are global (every reservation is a group
/// of its own, and a booking whose id another user's holds would be refused).
std::string new_reservation_id(device& d) {
    std::random_device seed;
    std::mt19937_64 rng((std::uint64_t(seed()) << 32) ^ seed());
    for (;;) {
        auto id = format("r-%012llx", static_cast<unsigned long long>(rng() & 0xffffffffffffULL));
        if (!d.replica().get<Reservation>(id)) return id;
    }
}

/// The --user a command needs, or a usage error saying why it needs one.
const std::string& user_of(context& c, const char* why) {
    if (c.opt.user.empty())
        usage_error(std::string(why) +
                    " needs --user NAME (or LANDMARKS_USER): the user your token signs in as");
    return c.opt.user;
}

int cmd_reserve(context& c) {
    expect_operands(c, 1,
                    "reserve LANDMARK-ID [--party N] [--date YYYY-MM-DD] [--notes TEXT] [--id RID]");
    const auto landmark = find_landmark(c.dev, parse_landmark_id(c.opt.args[1]));
    std::optional<Reservation> existing;
    if (c.opt.reservation_id) existing = c.dev.replica().get<Reservation>(*c.opt.reservation_id);
    Reservation r;
    if (existing) {
        r = *existing;
    } else {
        r.members = {user_of(c, "a new reservation")}; // its first member: who booked it
        r.id = c.opt.reservation_id ? *c.opt.reservation_id : new_reservation_id(c.dev);
        r.date = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
    }
    r.landmark_id = landmark.id;
    r.status = "confirmed";
    if (c.opt.party) r.party_size = *c.opt.party;
    if (c.opt.date) r.date = *c.opt.date;
    if (c.opt.notes) r.notes = *c.opt.notes;
    const bool changed = c.dev.replica().put(r);
    auto item = offsync::to_json_object(r);
    item["landmark_name"] = landmark.name;
    item["day"] = format_day(r.date);
    c.out.doc["reservation"] = std::move(item);
    c.out.doc["created"] = !existing;
    c.out.doc["changed"] = changed;
    const auto what = describe(c.dev, r);
    if (!existing) c.out.text("Reserved " + r.id + ": " + what + " (waits for the next sync).");
    else if (changed) c.out.text("Changed " + r.id + ": " + what + " (waits for the next sync).");
    else c.out.text("No change to " + r.id + ": " + what + ".");
    return exit_ok;
}

int cmd_cancel(context& c) {
    expect_operands(c, 1, "cancel RESERVATION-ID");
    auto r = find_reservation(c.dev, c.opt.args[1]);
    const bool changed = r.status != "cancelled";
    if (changed) {
        r.status = "cancelled";
        c.dev.replica().put(r);
    }
    c.out.doc["id"] = r.id;
    c.out.doc["changed"] = changed;
    c.out.text((changed ? "Cancelled " : "Already cancelled: ") + r.id + " (" +
               describe(c.dev, r) + ")" + (changed ? "; waits for the next sync." : "."));
    return exit_ok;
}

/// `share` and `unshare`: adds or removes users from a reservation's members, locally; the
/// next sync tells the server, which grants or revokes their access. The server refuses a
/// member list that drops its writer or names an unknown user (the sync then reports the
/// change rejected, and `resolve RID use-server` drops it).
int change_members(context& c, bool share) {
    const char* usage = share ? "share RESERVATION-ID USER..." : "unshare RESERVATION-ID USER...";
    if (c.opt.args.size() < 3) usage_error(std::string("usage: landmarks ") + usage);
    std::vector<std::string> users(c.opt.args.begin() + 2, c.opt.args.end());
    for (const auto& u : users)
        if (!valid_user_name(u))
            usage_error("a user name is 1 to 256 printable bytes, not '" + u + "'");
    if (!share) {
        const auto& me = user_of(c, "unshare");
        if (std::find(users.begin(), users.end(), me) != users.end())
            usage_error("you cannot unshare a reservation with yourself ('" + me +
                        "'): every reservation keeps its writer as a member; cancel it instead");
    }
    auto r = find_reservation(c.dev, c.opt.args[1]);
    std::vector<std::string> changed_for;
    for (const auto& u : users) {
        auto at = std::find(r.members.begin(), r.members.end(), u);
        if (share && at == r.members.end()) r.members.push_back(u);
        else if (!share && at != r.members.end()) r.members.erase(at);
        else continue;
        if (std::find(changed_for.begin(), changed_for.end(), u) == changed_for.end())
            changed_for.push_back(u);
    }
    if (!changed_for.empty()) c.dev.replica().put(r);
    json::array members;
    for (const auto& m : r.members) members.emplace_back(m);
    c.out.doc["id"] = r.id;
    c.out.doc["members"] = std::move(members);
    c.out.doc["changed"] = !changed_for.empty();
    if (changed_for.empty())
        c.out.text(r.id + " is " + (share ? "already" : "not") + " shared with " + joined(users) +
                   "; its members: " + joined(r.members) + ".");
    else
        c.out.text((share ? "Shared " : "Unshared ") + r.id + " with " +
                   joined(changed_for) + "; its members: " + joined(r.members) +
                   " (waits for the next sync).");
    return exit_ok;
}

/// `sync-from DAY|all`: which reservations this device syncs (partial sync, docs/sharing.md).
/// It takes effect at the next sync, which drops the reservations dated before DAY (an
/// unsynced edit of one stays until it is pushed) or, after `all`, brings them back.
int cmd_sync_from(context& c) {
    expect_operands(c, 1, "sync-from YYYY-MM-DD|all");
    const auto& arg = c.opt.args[1];
    std::optional<std::chrono::sys_days> from;
    if (arg != "all") {
        from = parse_day(arg);
        if (!from) usage_error("sync-from takes a day as YYYY-MM-DD or 'all', not '" + arg + "'");
    }
    const auto before = c.dev.reservations_from();
    const bool changed = before != from;
    if (changed) {
        c.dev.facade().set_subset<landmarks::Reservation>(
            from ? device::reservations_subset(*from) : offsync::sync_subset{});
        c.dev.set_state({{"reservations_from", from ? format_day(*from) : std::string()}});
    }
    c.out.doc["reservations_from"] = from ? json::value(format_day(*from)) : json::value(nullptr);
    c.out.doc["changed"] = changed;
    const auto what = from ? "reservations dated from " + format_day(*from) + " on"
                           : std::string("all reservations");
    c.out.text(std::string(changed ? "This device now syncs " : "This device already syncs ") +
               what + (changed ? " (from the next sync)." : "."));
    return exit_ok;
}

int cmd_share(context& c) { return change_members(c, true); }
int cmd_unshare(context& c) { return change_members(c, false); }

int cmd_members(context& c) {
    expect_operands(c, 1, "members RESERVATION-ID");
    const auto r = find_reservation(c.dev, c.opt.args[1]);
    json::array members;
    for (const auto& m : r.members) members.emplace_back(m);
    c.out.doc["id"] = r.id;
    c.out.doc["members"] = std::move(members);
    c.out.text(r.id + " (" + describe(c.dev, r) + ") is shared by: " + joined(r.members) + ".");
    return exit_ok;
}

std::string plural(std::size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

int cmd_sync(context& c) {
    expect_operands(c, 0, "sync");
    split_server(c.opt.server); // a malformed address is a usage error, whatever else is wrong
    if (c.opt.token.empty())
        fail(exit_auth, "no_token",
             "sync needs a token: pass --token TOKEN or set LANDMARKS_TOKEN");
    session s(c.dev, c.opt);
    const auto r = s.round();
    std::optional<failure> error;
    if (r.error) error = classify(r, s.transport_error(), c.opt.server);
    record_round(c.dev, c.opt, r, error ? &*error : nullptr);
    const auto st = status_of(c.dev);

    auto& doc = c.out.doc;
    doc["server"] = c.opt.server;
    doc["pushed"] = r.pushed;
    doc["applied"] = r.applied;
    doc["pulled"] = r.pulled;
    doc["duration_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(r.duration).count();
    json::array conflicts, rejections;
    for (const auto& k : r.conflicts)
        conflicts.push_back({{"collection", k.collection}, {"id", k.key},
                             {"outcome", offsync::to_string(k.outcome)}});
    for (const auto& k : r.rejections)
        rejections.push_back({{"collection", k.collection}, {"id", k.key},
                              {"code", k.code}, {"message", k.message}});
    doc["conflicts"] = std::move(conflicts);
    doc["rejections"] = std::move(rejections);
    doc["waiting"] = {{"dirty", st.dirty()}, {"conflicts", st.conflicts()},
                      {"rejected", st.rejected()}};
    if (error) {
        doc["error"] = {{"code", error->code}, {"message", error->message}};
        std::fprintf(stderr, "landmarks: %s\n", error->message.c_str());
        if (error->status == exit_unreachable)
            std::fprintf(stderr,
                         "landmarks: nothing is lost: %s on this device for the next sync\n",
                         plural(st.dirty(), "local change waits", "local changes wait").c_str());
        return error->status;
    }

    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.duration).count();
    c.out.text(format("Synced with %s in %lld ms: pushed %zu (%zu applied), pulled %zu.",
                      c.opt.server.c_str(), static_cast<long long>(ms), r.pushed, r.applied,
                      r.pulled));
    for (const auto& k : r.conflicts) {
        if (k.outcome == offsync::conflict_outcome::deferred)
            c.out.text("  conflict: " + k.collection + "/" + k.key +
                       " was changed on another device too; it waits for you");
        else
            c.out.text("  conflict: " + k.collection + "/" + k.key + " settled by its policy: " +
                       offsync::to_string(k.outcome));
    }
    for (const auto& k : r.rejections)
        c.out.text("  rejected: " + k.collection + "/" + k.key + ": " + k.message);
    if (st.conflicts() || st.rejected()) {
        c.out.text(format("Waiting for you: %s, %s (`landmarks conflicts`, `landmarks status`).",
                          plural(st.conflicts(), "conflict", "conflicts").c_str(),
                          plural(st.rejected(), "rejected change", "rejected changes").c_str()));
        return exit_attention;
    }
    c.out.text(st.dirty() ? plural(st.dirty(), "change still waits", "changes still wait") +
                                " to be pushed."
                          : "Everything is in sync.");
    return exit_ok;
}

int cmd_status(context& c) {
    expect_operands(c, 0, "status");
    const auto st = status_of(c.dev);
    auto& doc = c.out.doc;
    const auto client_id = c.dev.store().begin().client_id();
    doc["db"] = c.dev.path();
    doc["client_id"] = client_id;
    doc["server"] = c.opt.server;
    doc["landmarks"] = c.dev.store().list("landmarks").size();
    doc["reservations"] = c.dev.store().list("reservations").size();
    // The first day of the reservations this device syncs (`sync-from`); null: all of them.
    const auto from = c.dev.reservations_from();
    doc["reservations_from"] = from ? json::value(format_day(*from)) : json::value(nullptr);
    doc["pending"] = {{"landmarks", counts_json(st.landmarks)},
                      {"reservations", counts_json(st.reservations)}};
    doc["dirty"] = st.dirty();
    doc["conflicts"] = st.conflicts();
    doc["rejected"] = st.rejected();

    const auto at = c.dev.state("last_sync_at");
    const auto ok_at = c.dev.state("last_success_at");
    const auto result = c.dev.state("last_sync_result").value_or("");
    const auto message = c.dev.state("last_sync_message").value_or("");
    // Milliseconds since the epoch; 0 = never.
    const std::int64_t at_ms = at ? parse_integer(*at).value_or(0) : 0;
    const std::int64_t ok_ms = ok_at ? parse_integer(*ok_at).value_or(0) : 0;
    if (at_ms)
        doc["last_sync"] = {{"at", format_time_ms(at_ms)},
                            {"server", c.dev.state("last_sync_server").value_or("")},
                            {"result", result},
                            {"message", message}};
    else
        doc["last_sync"] = nullptr;
    doc["last_success_at"] = ok_ms ? json::value(format_time_ms(ok_ms)) : json::value(nullptr);

    json::array rejections;
    for (const auto& p : c.dev.replica().rejected())
        rejections.push_back({{"collection", p.collection}, {"id", p.key},
                              {"code", p.error_code}, {"message", p.error_message}});
    doc["rejections"] = rejections;

    c.out.text("Device       " + c.dev.path() + " (client " + client_id + ")");
    c.out.text("Data         " + plural(doc["landmarks"].as_uint64(), "landmark", "landmarks") +
               ", " + plural(doc["reservations"].as_uint64(), "reservation", "reservations") +
               (from ? " (syncing those dated from " + format_day(*from) + " on)" : ""));
    if (at_ms)
        c.out.text("Last sync    " + format_time_ms(at_ms) + " (" + ago(at_ms) + ") with " +
                   c.dev.state("last_sync_server").value_or("?") + ": " +
                   (result == "ok" ? std::string("ok") : "failed: " + message));
    else
        c.out.text("Last sync    never");
    if (at_ms && result != "ok")
        c.out.text("Last success " + (ok_ms ? format_time_ms(ok_ms) + " (" + ago(ok_ms) + ")"
                                           : std::string("never")));
    c.out.text(format("To push      %s (landmarks %zu, reservations %zu)",
                      plural(st.dirty(), "change", "changes").c_str(), st.landmarks.dirty,
                      st.reservations.dirty));
    c.out.text(format("Conflicts    %zu%s", st.conflicts(),
                      st.conflicts() ? " (`landmarks conflicts` shows them)" : ""));
    c.out.text(format("Rejected     %zu", st.rejected()));
    for (const auto& p : c.dev.replica().rejected())
        c.out.text("  " + p.collection + "/" + p.key + ": " + p.error_code + ": " +
                   p.error_message);
    return exit_ok;
}

std::string show_value(const json::value* v) {
    if (!v) return "-";
    if (const auto* s = v->if_string()) {
        // ISO 8601 times of whole days read better as days.
        if (s->size() == 24 && s->ends_with("T00:00:00.000Z")) return std::string(s->subview(0, 10));
        return "\"" + std::string(*s) + "\"";
    }
    return json::serialize(*v);
}

int cmd_conflicts(context& c) {
    expect_operands(c, 0, "conflicts");
    json::array items;
    const auto all = c.dev.replica().conflicts();
    for (const auto& p : all) {
        const auto& schema = p.collection == "landmarks" ? offsync::schema_of<Landmark>()
                                                         : offsync::schema_of<Reservation>();
        std::uint64_t mask = 0;
        if (auto rec = c.dev.store().begin().load(p.collection, p.key)) mask = rec->dirty_mask;
        const bool server_deleted = !p.server || p.server->deleted;
        json::array changed, differing;
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            const auto& f = schema.fields[i];
            const auto* mine = p.local_deleted ? nullptr : p.local_value.if_contains(f);
            const auto* theirs = server_deleted ? nullptr : p.server->value.if_contains(f);
            if ((mask >> i) & 1) changed.push_back(json::string(f));
            if (!mine || !theirs || *mine != *theirs) differing.push_back(json::string(f));
        }
        json::object item{{"collection", p.collection},
                          {"id", p.key},
                          {"detected_at", format_time_ms(p.detected_at_ms)},
                          {"mine", p.local_deleted ? json::value(nullptr) : json::value(p.local_value)},
                          {"server", server_deleted ? json::value(nullptr)
                                                    : json::value(p.server->value)},
                          {"server_version", p.server ? p.server->version : 0},
                          {"changed_here", changed},
                          {"differing", differing}};
        items.push_back(std::move(item));

        std::string title = p.collection + "/" + p.key;
        if (p.collection == "reservations" && !p.local_deleted) {
            Reservation r;
            if (!offsync::from_json_object(p.local_value, r))
                title += " (" + landmark_name(c.dev, r.landmark_id) + ")";
        }
        c.out.text("Conflict on " + title + ", found " + format_time_ms(p.detected_at_ms) + ":");
        c.out.text(format("    %-12s %-28s %s", "FIELD", "YOURS", "SERVER"));
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            const auto& f = schema.fields[i];
            const auto* mine = p.local_deleted ? nullptr : p.local_value.if_contains(f);
            const auto* theirs = server_deleted ? nullptr : p.server->value.if_contains(f);
            const bool here = (mask >> i) & 1;
            if (!here && mine && theirs && *mine == *theirs) continue;
            c.out.text(format("  %s %-12s %-28s %s", here ? "*" : " ", f.c_str(),
                              show_value(mine).c_str(), show_value(theirs).c_str()));
        }
        if (p.local_deleted) c.out.text("    (deleted on this device)");
        if (server_deleted) c.out.text("    (deleted on the server)");
        c.out.text("  * = changed on this device. keep-mine keeps those fields and takes the "
                   "server's others;\n    use-server takes the server's version.");
        c.out.text("  landmarks resolve " + p.key + " keep-mine    or    landmarks resolve " +
                   p.key + " use-server");
    }
    c.out.doc["conflicts"] = std::move(items);
    if (all.empty()) c.out.text("No conflicts wait for you.");
    return exit_ok;
}

int cmd_resolve(context& c) {
    expect_operands(c, 2, "resolve RESERVATION-ID keep-mine|use-server");
    const auto& key = c.opt.args[1];
    const auto& how = c.opt.args[2];
    offsync::resolve_choice choice;
    if (how == "keep-mine") choice = offsync::resolve_choice::keep_mine;
    else if (how == "use-server") choice = offsync::resolve_choice::use_server;
    else usage_error("resolve takes keep-mine or use-server, not '" + how + "'");

    std::optional<offsync::parked_record> found;
    for (auto& p : c.dev.replica().conflicts())
        if (p.key == key) found = std::move(p);
    if (!found) {
        // A change the server refused (a reservation no longer shared with this user, a
        // member list it would not take): it cannot be kept, only dropped for the server's.
        for (auto& p : c.dev.replica().rejected())
            if (p.key == key) found = std::move(p);
        if (found && choice == offsync::resolve_choice::keep_mine)
            fail(exit_usage, "rejected",
                 "the server rejected the change to '" + key + "' (" + found->error_code +
                     ": " + found->error_message + "): it cannot be kept; `landmarks resolve " +
                     key + " use-server` drops it");
        if (found) {
            const auto& schema = found->collection == "landmarks"
                                     ? offsync::schema_of<Landmark>()
                                     : offsync::schema_of<Reservation>();
            if (auto d = c.dev.replica().drop_rejected(schema, key))
                fail(exit_storage, "storage", d.message);
            c.out.doc["collection"] = found->collection;
            c.out.doc["id"] = key;
            c.out.doc["choice"] = how;
            const bool still_here = found->collection == "reservations"
                                        ? c.dev.replica().get<Reservation>(key).has_value()
                                        : true;
            c.out.text("Dropped the rejected change to " + key +
                       (still_here ? "; the server's version stays."
                                   : "; the server no longer shares it with you."));
            return exit_ok;
        }
    }
    if (!found)
        fail(exit_not_found, "no_such_conflict",
             "no conflict or rejected change waits on '" + key +
                 "' (`landmarks conflicts` and `landmarks status` list them)");
    const auto& schema = found->collection == "landmarks" ? offsync::schema_of<Landmark>()
                                                          : offsync::schema_of<Reservation>();
    if (auto d = c.dev.replica().resolve(schema, key, choice)) {
        if (d.code == offsync::make_error_code(offsync::errc::no_such_conflict))
            fail(exit_not_found, "no_such_conflict", d.message);
        fail(exit_storage, "storage", d.message);
    }
    c.out.doc["collection"] = found->collection;
    c.out.doc["id"] = key;
    c.out.doc["choice"] = how;
    std::string now;
    if (found->collection == "reservations")
        if (auto r = c.dev.replica().get<Reservation>(key)) now = ": " + describe(c.dev, *r);
    c.out.text(choice == offsync::resolve_choice::keep_mine
                   ? "Kept your changes to " + key + now + " (pushed by the next sync)."
                   : "Took the server's version of " + key + now + ".");
    return exit_ok;
}

/// One status line: what background sync is doing and what waits on this device.
std::string watch_line(const offsync::background_state& b, const device_status& st,
                       std::optional<offsync::live_state> stream) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    std::string line = format("%s  rounds %zu", offsync::to_string(b.phase), b.rounds);
    if (stream) line += format("  stream %s", offsync::to_string(*stream));
    if (b.next_run)
        line += format("  next in %llds",
                       static_cast<long long>(
                           duration_cast<seconds>(std::max(*b.next_run - now, nanoseconds(0)))
                               .count()));
    if (b.last_success)
        line += format("  last success %llds ago",
                       static_cast<long long>(duration_cast<seconds>(now - *b.last_success).count()));
    line += format("  to push %zu  conflicts %zu  rejected %zu", st.dirty(), st.conflicts(),
                   st.rejected());
    if (b.last_error) {
        line += "  last error: " + b.last_error.message;
        if (b.consecutive_failures > 1) line += format(" (%zu in a row)", b.consecutive_failures);
    }
    return line;
}

int cmd_watch(context& c) {
    expect_operands(c, 0, "watch [--interval SECONDS] [--rounds N] [--no-stream]");
    split_server(c.opt.server);
    if (c.opt.token.empty())
        fail(exit_auth, "no_token",
             "watch needs a token: pass --token TOKEN or set LANDMARKS_TOKEN");
    session s(c.dev, c.opt);
    offsync::background_config config;
    config.earliest_begin = std::chrono::milliseconds(0); // a first round at once
    config.interval = c.opt.interval;
    config.max_round_duration = c.opt.timeout * 3;
    // A command-line user watches: retry soon after a failure, never later than a minute.
    config.backoff_base =
        std::min<std::chrono::milliseconds>(std::chrono::seconds(1), c.opt.interval);
    config.backoff_cap =
        std::max<std::chrono::milliseconds>(config.backoff_base, std::chrono::seconds(60));

    const bool live = !c.out.json && ::isatty(STDOUT_FILENO);
    std::size_t seen = 0, completed = 0;
    bool finishing = false;
    bool cut_short = false; // the round running when the watch stopped was cancelled
    std::optional<failure> last_failure;
    std::string last_line;
    std::function<void()> finish; // stops the scheduler, then the io_context
    std::optional<offsync::live_state> stream_state;
    if (c.opt.stream) stream_state = offsync::live_state::off;
    config.on_state_change = [&](const offsync::background_state& b) {
        if (b.rounds > seen && b.last_report) {
            seen = b.rounds;
            // Stopping cancels a round in flight: that is the user's doing, not a failure,
            // and the device's last-sync record keeps the last round that ran to its end.
            // (The scheduler reports such a round in last_report only.)
            if (finishing && b.last_report->error) {
                cut_short = true;
                return;
            }
            // A round that began before the stop took effect (the stream's hint or opening
            // queued it) and ended well: its sync is recorded, but the watch had its rounds.
            if (finishing) {
                record_round(c.dev, c.opt, *b.last_report, nullptr);
                return;
            }
            ++completed;
            last_failure.reset();
            if (b.last_report->error)
                last_failure = classify(*b.last_report, s.transport_error(), c.opt.server);
            else if (b.last_error) // expired: cancelled at its deadline
                last_failure = failure{exit_unreachable, "timeout", b.last_error.message};
            record_round(c.dev, c.opt, *b.last_report, last_failure ? &*last_failure : nullptr);
            if (c.opt.rounds && completed >= *c.opt.rounds) finish();
        }
        if (c.out.json) return;
        const auto line = watch_line(b, status_of(c.dev), stream_state);
        if (line == last_line) return;
        last_line = line;
        if (live) std::printf("\r\033[K%s", line.c_str());
        else std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    };
    std::function<void(const offsync::background_state&)> draw = config.on_state_change;
    // The records the rounds change, as they land (change listeners, on this io_context).
    json::array changes;
    auto show_change = [&](const std::string& line, json::object item) {
        if (c.out.json) {
            changes.push_back(std::move(item));
            return;
        }
        if (live) std::printf("\r\033[K%s\n%s", line.c_str(), last_line.c_str());
        else std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    };
    auto landmarks_heard = c.dev.facade().subscribe<Landmark>(
        [&](const std::vector<offsync::record_change<Landmark>>& list) {
            for (const auto& ch : list) {
                const auto id = static_cast<long long>(ch.key);
                json::object item{{"collection", "landmarks"}, {"id", ch.key}};
                if (!ch.value) {
                    item["value"] = nullptr;
                    show_change(format("removed: landmark %lld", id), std::move(item));
                    continue;
                }
                item["value"] = offsync::to_json_object(*ch.value);
                show_change(format("changed: landmark %lld, %s%s", id, ch.value->name.c_str(),
                                   ch.value->is_favorite ? ", a favorite" : ""),
                            std::move(item));
            }
        });
    auto reservations_heard = c.dev.facade().subscribe<Reservation>(
        [&](const std::vector<offsync::record_change<Reservation>>& list) {
            for (const auto& ch : list) {
                json::object item{{"collection", "reservations"}, {"id", ch.key}};
                if (!ch.value) {
                    item["value"] = nullptr;
                    show_change("removed: reservation " + ch.key, std::move(item));
                    continue;
                }
                item["value"] = offsync::to_json_object(*ch.value);
                show_change("changed: reservation " + ch.key + ", " + describe(c.dev, *ch.value),
                            std::move(item));
            }
        });
    offsync::basic_background_sync scheduler(s.engine(), std::move(config));
    // The server's change stream: each hint (and each opening of the stream, which may
    // follow changes nobody announced to this device) runs a round at once.
    std::optional<offsync::http_change_stream> stream;
    if (c.opt.stream) {
        offsync::live_config live_config;
        live_config.client_id = s.engine().client_id();
        live_config.on_change = [&](const offsync::change_hint&) { scheduler.remote_change(); };
        live_config.on_open = [&] { scheduler.remote_change(); };
        live_config.on_state = [&](offsync::live_state state, const offsync::diagnostics&) {
            stream_state = state;
            draw(scheduler.state());
        };
        stream.emplace(s.io().get_executor(), s.transport_config(), std::move(live_config));
    }
    asio::signal_set signals(s.io(), SIGINT, SIGTERM);
    finish = [&] {
        if (std::exchange(finishing, true)) return;
        signals.cancel();
        if (stream) stream->stop();
        scheduler.async_stop([&] { s.io().stop(); });
    };
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec) finish();
    });
    c.out.text(format("Watching: syncing with %s every %llds%s (Ctrl-C stops).",
                      c.opt.server.c_str(), static_cast<long long>(c.opt.interval.count()),
                      c.opt.stream ? " and on each change the server announces" : ""));
    scheduler.start();
    if (stream) stream->start();
    s.io().run();
    if (live) std::printf("\n");

    const auto st = status_of(c.dev);
    auto& doc = c.out.doc;
    doc["server"] = c.opt.server;
    doc["rounds"] = completed;
    doc["cut_short"] = cut_short;
    doc["interval_s"] = c.opt.interval.count();
    doc["streams_opened"] = stream ? stream->opened() : 0;
    doc["changes"] = std::move(changes);
    doc["waiting"] = {{"dirty", st.dirty()}, {"conflicts", st.conflicts()},
                      {"rejected", st.rejected()}};
    c.out.text(format("Stopped after %s.", plural(completed, "round", "rounds").c_str()));
    if (cut_short)
        c.out.text("The round in progress was cancelled; what it had not pushed waits for the "
                   "next sync.");
    if (last_failure) {
        doc["error"] = {{"code", last_failure->code}, {"message", last_failure->message}};
        std::fprintf(stderr, "landmarks: the last round failed: %s\n",
                     last_failure->message.c_str());
        return last_failure->status;
    }
    if (st.conflicts() || st.rejected()) {
        c.out.text("Waiting for you: " + plural(st.conflicts(), "conflict", "conflicts") + ", " +
                   plural(st.rejected(), "rejected change", "rejected changes") +
                   " (`landmarks conflicts`).");
        return exit_attention;
    }
    return exit_ok;
}

struct command {
    std::string_view name;
    int (*run)(context&);
};

const command commands[] = {
    {"list", cmd_list},         {"favorite", cmd_favorite}, {"unfavorite", cmd_unfavorite},
    {"reserve", cmd_reserve},   {"cancel", cmd_cancel},     {"share", cmd_share},
    {"unshare", cmd_unshare},   {"members", cmd_members},   {"sync", cmd_sync},
    {"status", cmd_status},     {"conflicts", cmd_conflicts}, {"resolve", cmd_resolve},
    {"watch", cmd_watch},       {"sync-from", cmd_sync_from},
};

} // namespace

int main(int argc, char** argv) {
    output out;
    std::string name;
    int status = exit_ok;
    try {
        // A guess for errors in the command line itself; the parsed options decide after.
        for (int i = 1; i < argc; ++i)
            if (std::string_view(argv[i]) == "--json") out.json = true;
        const auto opt = parse_command_line(argc, argv);
        out.json = opt.json;
        if (opt.args.empty()) usage_error("no command given (landmarks help lists the commands)");
        name = opt.args[0];
        if (name == "help") {
            if (out.json) out.doc["usage"] = usage_text;
            else std::fputs(usage_text, stdout);
        } else {
            const command* cmd = nullptr;
            for (const auto& c : commands)
                if (c.name == name) cmd = &c;
            if (!cmd)
                usage_error("unknown command '" + name + "' (landmarks help lists the commands)");
            device dev(opt);
            context ctx{opt, dev, out};
            status = cmd->run(ctx);
        }
    } catch (const failure& f) {
        status = f.status;
        out.doc["error"] = {{"code", f.code}, {"message", f.message}};
        std::fprintf(stderr, "landmarks: %s\n", f.message.c_str());
    } catch (const offsync::sync_error& e) {
        status = e.code() == offsync::make_error_code(offsync::errc::storage_failure)
                     ? exit_storage
                     : exit_usage;
        out.doc["error"] = {{"code", status == exit_storage ? "storage" : "invalid"},
                            {"message", plain_message(e)}};
        std::fprintf(stderr, "landmarks: %s\n", plain_message(e).c_str());
    } catch (const std::exception& e) {
        status = exit_storage;
        out.doc["error"] = {{"code", "storage"}, {"message", e.what()}};
        std::fprintf(stderr, "landmarks: %s\n", e.what());
    }
    if (out.json) {
        json::object doc;
        doc["command"] = name;
        doc["exit_code"] = status;
        for (auto& [k, v] : out.doc) doc[k] = std::move(v);
        std::printf("%s\n", json::serialize(doc).c_str());
    }
    return status;
}
