// offsync — the sync service's state in one SQLite file: records with per-field versions,
// tombstones, the change feed index, remembered mutation results and the version sequence.
//
// Link SQLite (CMake: offsync::sqlite). docs/storage.md explains the schema.
#pragma once

#include <offsync/detail/sqlite_connection.hpp>
#include <offsync/server/store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace offsync::server {

struct sqlite_server_config {
    /// The server acknowledges a push only after its commit; `full` keeps acknowledged writes
    /// through a power loss, `normal` only through a crash of the process.
    sqlite_durability durability = sqlite_durability::full;
    /// How long opening waits for another process that holds the file.
    int busy_timeout_ms = 2000;
    /// The page size of a file this store creates (a power of two from 512 to 65536); a file
    /// that exists keeps its own. With 16 KiB rather than SQLite's 4 KiB the service answers
    /// pushes about 15 % faster (fewer writes of the log and of checkpoints per record, see
    /// docs/benchmarks.md); smaller pages write less for a request that changes few records.
    int page_size = 16384;
    /// SQLite copies the write-ahead log into the database (a checkpoint) on the commit that
    /// brings the log to this size, and that request waits for the copy: at SQLite's default
    /// of 1,000 pages (16 MB at 16 KiB) it took 30-40 ms longer. 4 MiB keeps that under 10 ms
    /// for little throughput (docs/storage.md, "Checkpoints"). Rounded down to whole pages,
    /// at least one.
    std::int64_t checkpoint_log_bytes = 4 << 20;
    /// Runs SQLite's `PRAGMA quick_check` when the store opens, and refuses a file it finds
    /// damaged (a page torn by a failing disk, bytes changed outside SQLite) with
    /// `storage_failure` naming the first problem, rather than serve from it. It reads the
    /// whole file: about a second per GB.
    bool quick_check_on_open = false;
};

/// A `server_store` on one SQLite file in WAL mode. The schema is created on first open and
/// checked on every open (`offsync_server_meta` holds its version).
///
/// One server per file: the store holds the file's lock (SQLite's exclusive locking mode) from
/// open until it is destroyed, because the service keeps the version sequence in memory
/// between writes. A second store on the same file fails to open with a clear message.
///
/// Errors: a file that is not a database, a database of another program, a newer schema, a
/// locked file or one that cannot be opened throws `sync_error(errc::storage_failure)` from the
/// constructor, naming the file, and changes nothing. A `page_size` SQLite does not support
/// throws `std::invalid_argument` before the file is opened. A failed write throws the same
/// `sync_error`; the service rolls the request back.
class sqlite_server_store final : public server_store {
public:
    /// 2: a row of remembered results may stand for a run of plain successes (`run`).
    /// 3: groups, memberships and channels (grouped collections).
    /// 4: a channel entry says whether its record was then in the group (`present`; empty in
    ///    rows of version 3, which `copy_channel` hands back undecided).
    static constexpr int schema_version = 4;

    /// Opens the store in the file at `path`, creating it (and a new, empty store) only if no
    /// such file exists. A file that exists but holds no store (empty: truncated, or a restore
    /// that wrote nothing) is refused rather than started afresh, which would restart the
    /// versions and make every device's cursor and base versions wrong.
    explicit sqlite_server_store(const std::string& path, sqlite_server_config config = {})
        : file_existed_(existing_file(path)), db_(path, checked(config).busy_timeout_ms) {
        db_.exec("PRAGMA locking_mode = EXCLUSIVE");
        const bool exists = db_.has_meta_table("offsync_server_meta");
        if (!exists && file_existed_)
            db_.fail_message("the file exists but holds no offsync server store (it is empty); "
                             "a new store is created only in a file that does not exist yet: "
                             "restore the store's file, or remove this one to start empty");
        // Before anything writes to the file (the switch to WAL, a migration).
        if (exists && config.quick_check_on_open) quick_check();
        if (!exists) db_.set_page_size_of_new_file(config.page_size);
        db_.exec("PRAGMA journal_mode = WAL");
        db_.exec(config.durability == sqlite_durability::full ? "PRAGMA synchronous = FULL"
                                                              : "PRAGMA synchronous = NORMAL");
        set_checkpoint_size(config.checkpoint_log_bytes);
        if (exists) check_schema();
        else create_schema();
        prepare_statements();
        // A write takes the exclusive lock now rather than at the first request, so that a
        // second server on this file fails here.
        begin();
        set_meta("opened_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
        db_.exec("COMMIT");
    }

    const std::string& path() const noexcept { return db_.path(); }
    /// The connection, for inspection and backups (`sqlite3_backup_*`); not while a request
    /// runs.
    sqlite3* native_handle() const noexcept { return db_.get(); }

    void begin() override {
        run_.reset();
        db_.exec("BEGIN IMMEDIATE");
    }
    void commit() override {
        write_run();
        db_.exec("COMMIT");
    }
    void rollback() noexcept override {
        run_.reset();
        db_.exec_noexcept("ROLLBACK");
    }

    server_counters counters() override {
        server_counters c;
        c.last_version = std::uint64_t(meta_int("last_version"));
        c.rest_writes = std::uint64_t(meta_int("rest_writes"));
        c.clock.wall = meta_int("hlc_wall");
        c.clock.logical = std::uint32_t(meta_int("hlc_logical"));
        return c;
    }
    void check_readable() override {
        // The counters, and the first and last leaves of the records, of the feed index and of
        // the results: the root of each tree and both its ends, which any request reads
        // through. A damaged page elsewhere shows at the request that reads it.
        db_.exec("SELECT count(*) FROM offsync_server_meta;"
                 "SELECT key FROM offsync_server_records "
                 "ORDER BY collection, owner, key LIMIT 1;"
                 "SELECT key FROM offsync_server_records "
                 "ORDER BY collection DESC, owner DESC, key DESC LIMIT 1;"
                 "SELECT version FROM offsync_server_records INDEXED BY offsync_server_feed "
                 "ORDER BY collection, owner, version LIMIT 1;"
                 "SELECT version FROM offsync_server_records INDEXED BY offsync_server_feed "
                 "ORDER BY collection DESC, owner DESC, version DESC LIMIT 1;"
                 "SELECT mutation_id FROM offsync_server_results "
                 "ORDER BY client, mutation_id LIMIT 1;"
                 "SELECT mutation_id FROM offsync_server_results "
                 "ORDER BY client DESC, mutation_id DESC LIMIT 1;");
    }
    void set_counters(const server_counters& c) override {
        set_meta("last_version", std::int64_t(c.last_version));
        set_meta("rest_writes", std::int64_t(c.rest_writes));
        set_meta("hlc_wall", c.clock.wall);
        set_meta("hlc_logical", c.clock.logical);
    }

    std::optional<server_record> find(const collection_schema& schema, std::string_view owner,
                                      std::string_view key) override {
        auto& st = stmt_.find;
        bind_record_key(st, schema.name, owner);
        db_.bind_text(st, 3, key);
        // A corrupt row throws from read_record: the statement is reset all the same.
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        std::optional<server_record> out;
        if (db_.step(st) == SQLITE_ROW) out = read_record(schema, st, std::string(key), true);
        return out;
    }

    void find_page(const collection_schema& schema, std::string_view owner,
                   const std::vector<std::string_view>& keys,
                   std::vector<std::optional<server_record>>& out) override {
        out.assign(keys.size(), std::nullopt);
        if (keys.empty()) return;
        boost::json::array list;
        list.reserve(keys.size());
        for (const auto key : keys) list.emplace_back(key);
        const auto text = boost::json::serialize(list);
        auto& st = stmt_.find_page;
        bind_record_key(st, schema.name, owner);
        db_.bind_text(st, 3, text);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        while (db_.step(st) == SQLITE_ROW) {
            const auto at = std::size_t(sqlite3_column_int64(st.get(), 9));
            if (at < out.size())
                out[at] = read_record(schema, st, std::string(keys[at]), false);
        }
    }

    void put(const collection_schema& schema, std::string_view owner,
             const server_record& r) override {
        write_row(stmt_.put, schema, owner, r);
    }

    /// One `INSERT … ON CONFLICT DO NOTHING`: the clash is found by the insert itself.
    bool insert_new(const collection_schema& schema, std::string_view owner,
                    const server_record& r) override {
        write_row(stmt_.insert_new, schema, owner, r);
        return sqlite3_changes(db_.get()) == 1;
    }

    /// Binds the record to `put` or `insert_new` (the same columns) and runs it.
    void write_row(offsync::detail::sqlite_statement& st, const collection_schema& schema,
                   std::string_view owner, const server_record& r) {
        // Every text is bound without a copy (the hot path: seven per record), so all of it
        // is made first, and the statement runs and is reset while it lives.
        const auto value = r.deleted ? std::string() : boost::json::serialize(r.value);
        const auto writes = field_writes_text(schema, r);
        using connection = offsync::detail::sqlite_connection;
        connection::bind_text_unowned(st, 1, schema.name);
        connection::bind_text_unowned(st, 2, owner);
        connection::bind_text_unowned(st, 3, r.key);
        sqlite3_bind_int64(st.get(), 4, std::int64_t(r.version));
        sqlite3_bind_int(st.get(), 5, r.deleted);
        connection::bind_text_unowned(st, 6, value);
        sqlite3_bind_int64(st.get(), 7, r.stamp.wall);
        sqlite3_bind_int64(st.get(), 8, r.stamp.logical);
        connection::bind_text_unowned(st, 9, r.stamp.node);
        connection::bind_text_unowned(st, 10, r.last_writer);
        connection::bind_text_unowned(st, 11, writes);
        db_.run(st);
    }

    void feed(const collection_schema& schema, std::string_view owner, std::uint64_t since,
              std::size_t limit, std::vector<server_record>& out) override {
        feed_for_client(schema, owner, since, limit, out, {});
    }

    /// Leaves unparsed the values of the records `client_id` wrote last: a push round pulls
    /// back every record it pushed, and parsing them was most of the feed's work.
    void feed_for_client(const collection_schema& schema, std::string_view owner,
                         std::uint64_t since, std::size_t limit, std::vector<server_record>& out,
                         std::string_view client_id) override {
        out.clear();
        auto& st = stmt_.feed;
        bind_record_key(st, schema.name, owner);
        sqlite3_bind_int64(st.get(), 3, std::int64_t(since));
        sqlite3_bind_int64(st.get(), 4, std::int64_t(limit));
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        while (db_.step(st) == SQLITE_ROW)
            out.push_back(read_record(schema, st, db_.column_text(st, 7), false, client_id));
    }

    std::optional<std::uint64_t> feed_version_below(const collection_schema& schema,
                                                    std::string_view owner,
                                                    std::uint64_t version) override {
        auto& st = stmt_.feed_below;
        bind_record_key(st, schema.name, owner);
        sqlite3_bind_int64(st.get(), 3, std::int64_t(version));
        std::uint64_t below = 0;
        if (db_.step(st) == SQLITE_ROW) below = std::uint64_t(sqlite3_column_int64(st.get(), 0));
        db_.reset(st);
        return below;
    }

    /// One probe: the row with the lowest last id at or above `mutation_id`, which holds it if
    /// its run reaches down to it.
    std::optional<mutation_result> find_result(std::string_view client,
                                               std::uint64_t mutation_id) override {
        write_run();
        auto& st = stmt_.find_result;
        db_.bind_text(st, 1, client);
        sqlite3_bind_int64(st.get(), 2, std::int64_t(mutation_id));
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        if (db_.step(st) != SQLITE_ROW) return std::nullopt;
        const auto run = read_run(st);
        const bool plain = sqlite3_column_type(st.get(), 3) == SQLITE_NULL;
        if (run.length > 1 && !plain)
            db_.fail_message("a remembered run of mutation results is corrupt");
        if (run.last_id - mutation_id >= run.length) return std::nullopt; // it starts above
        mutation_result r;
        if (plain) {
            r.mutation_id = mutation_id;
            r.status = mutation_status::applied;
            r.version = run.last_version - (run.last_id - mutation_id);
            return r;
        }
        boost::system::error_code ec;
        auto jv = boost::json::parse(db_.column_text(st, 3), ec);
        if (ec || from_json(jv, r)) db_.fail_message("a remembered mutation result is corrupt");
        return r;
    }

    std::optional<std::uint64_t> newest_result(std::string_view client) override {
        write_run();
        auto& st = stmt_.newest_result;
        db_.bind_text(st, 1, client);
        std::uint64_t newest = 0;
        if (db_.step(st) == SQLITE_ROW) newest = std::uint64_t(sqlite3_column_int64(st.get(), 0));
        db_.reset(st);
        return newest;
    }

    /// A plain success (applied, no record to send back) that follows the previous one by
    /// one in both mutation id and version joins its run, which is written as one row when the
    /// run ends: before the next other result, any read of results, or the commit. A push of
    /// new records from a client whose ids follow its key order is one row, not one per record.
    void remember_result(std::string_view client, const mutation_result& r) override {
        const bool plain = r.status == mutation_status::applied && !r.server;
        if (plain && run_ && run_client_ == client && r.mutation_id == run_->last_id + 1 &&
            r.version == run_->last_version + 1) {
            run_->last_id = r.mutation_id;
            run_->last_version = r.version;
            ++run_->length;
            return;
        }
        write_run();
        if (plain) {
            run_client_ = client;
            run_ = result_run{r.mutation_id, r.version, 1};
            return;
        }
        write_result_row(client, {r.mutation_id, r.version, 1}, boost::json::serialize(to_json(r)));
    }

    /// Two index probes per call; the trim itself, a walk down the rows until `count` results
    /// are counted, runs only once the ids span a quarter more than `count`. A client without
    /// gaps in its ids pays it once per `count / 4` results; one whose ids have gaps may pay
    /// it on every push until its gaps are older than its `count` newest results. The trim
    /// keeps exactly `count`: the run it cuts through loses its older part.
    void keep_newest_results(std::string_view client, std::size_t count) override {
        write_run();
        // SQLite's integers are signed: a window beyond them keeps everything anyway.
        const auto keep = std::uint64_t(std::min<std::size_t>(count, INT64_MAX / 2));
        std::uint64_t oldest = 0;
        {
            auto& st = stmt_.oldest_run;
            db_.bind_text(st, 1, client);
            const offsync::detail::sqlite_connection::reset_on_exit done(st);
            if (db_.step(st) != SQLITE_ROW) return; // nothing remembered
            const auto run = read_run(st);
            oldest = run.last_id + 1 - run.length;
        }
        const auto newest = *newest_result(client);
        // Ids are distinct, so a span this narrow holds few enough results.
        if (newest - oldest < keep + keep / 4) return;
        // The newest row that holds a forgotten result, and how much of its run stays.
        std::optional<std::int64_t> cut_id;
        std::uint64_t cut_keeps = 0;
        {
            auto& rows = stmt_.runs_newest_first;
            db_.bind_text(rows, 1, client);
            const offsync::detail::sqlite_connection::reset_on_exit done(rows);
            std::uint64_t kept = 0;
            while (db_.step(rows) == SQLITE_ROW) {
                const auto run = read_run(rows);
                if (kept + run.length > keep) {
                    cut_id = std::int64_t(run.last_id);
                    cut_keeps = keep - kept;
                    break;
                }
                kept += run.length;
            }
        }
        if (!cut_id) return;
        auto& forget = stmt_.forget;
        db_.bind_text(forget, 1, client);
        // Rows do not overlap: every row below the cut one ends below its run.
        sqlite3_bind_int64(forget.get(), 2, cut_keeps ? *cut_id - 1 : *cut_id);
        db_.run(forget);
        if (cut_keeps == 0) return;
        auto& shorten = stmt_.shorten_run;
        db_.bind_text(shorten, 1, client);
        sqlite3_bind_int64(shorten.get(), 2, *cut_id);
        sqlite3_bind_int64(shorten.get(), 3, std::int64_t(cut_keeps));
        db_.run(shorten);
    }

    bool supports_groups() const override { return true; }
    bool group_exists(std::string_view group) override {
        auto& st = stmt_.group_exists;
        db_.bind_text(st, 1, group);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        return db_.step(st) == SQLITE_ROW;
    }
    void add_group(std::string_view group) override {
        db_.bind_text(stmt_.add_group, 1, group);
        db_.run(stmt_.add_group);
    }
    void remove_group(std::string_view group) override {
        db_.bind_text(stmt_.remove_members, 1, group);
        db_.run(stmt_.remove_members);
        db_.bind_text(stmt_.remove_group, 1, group);
        db_.run(stmt_.remove_group);
    }
    std::vector<std::string> members_of(std::string_view group) override {
        auto& st = stmt_.members_of;
        db_.bind_text(st, 1, group);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        std::vector<std::string> out;
        while (db_.step(st) == SQLITE_ROW) out.push_back(db_.column_text(st, 0));
        return out;
    }
    std::vector<membership> groups_of(std::string_view user) override {
        auto& st = stmt_.groups_of;
        db_.bind_text(st, 1, user);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        std::vector<membership> out;
        while (db_.step(st) == SQLITE_ROW)
            out.push_back({db_.column_text(st, 0), std::uint64_t(sqlite3_column_int64(st.get(), 1))});
        return out;
    }
    void add_member(std::string_view group, std::string_view user, std::uint64_t since) override {
        if (!group_exists(group))
            db_.fail_message("no group '" + std::string(group) + "'");
        auto& st = stmt_.add_member;
        db_.bind_text(st, 1, group);
        db_.bind_text(st, 2, user);
        sqlite3_bind_int64(st.get(), 3, std::int64_t(since));
        db_.run(st);
    }
    void remove_member(std::string_view group, std::string_view user) override {
        auto& st = stmt_.remove_member;
        db_.bind_text(st, 1, group);
        db_.bind_text(st, 2, user);
        db_.run(st);
    }
    void touch_channel(const collection_schema& schema, std::string_view channel,
                       std::string_view key, std::uint64_t version, bool present) override {
        auto& st = stmt_.touch;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, channel);
        db_.bind_text(st, 3, key);
        sqlite3_bind_int64(st.get(), 4, std::int64_t(version));
        sqlite3_bind_int(st.get(), 5, present ? 1 : 0);
        db_.run(st);
    }
    void channel_page(const collection_schema& schema, std::string_view channel,
                      std::uint64_t after, std::uint64_t through, std::size_t limit,
                      std::vector<channel_entry>& out) override {
        auto& st = stmt_.channel_page;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, channel);
        sqlite3_bind_int64(st.get(), 3, std::int64_t(after));
        // SQLite's integers are signed: "no bound" is the largest of them.
        sqlite3_bind_int64(st.get(), 4, std::int64_t(std::min<std::uint64_t>(through, INT64_MAX)));
        sqlite3_bind_int64(st.get(), 5, std::int64_t(std::min<std::size_t>(limit, INT64_MAX)));
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        while (db_.step(st) == SQLITE_ROW)
            out.push_back({db_.column_text(st, 0), std::uint64_t(sqlite3_column_int64(st.get(), 1))});
    }
    std::optional<std::uint64_t> channel_version(const collection_schema& schema,
                                                 std::string_view channel,
                                                 std::string_view key) override {
        auto& st = stmt_.channel_version;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, channel);
        db_.bind_text(st, 3, key);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        if (db_.step(st) != SQLITE_ROW) return std::nullopt;
        return std::uint64_t(sqlite3_column_int64(st.get(), 0));
    }
    std::optional<std::uint64_t> channel_version_below(const collection_schema& schema,
                                                       std::string_view channel,
                                                       std::uint64_t version) override {
        auto& st = stmt_.channel_below;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, channel);
        sqlite3_bind_int64(st.get(), 3, std::int64_t(std::min<std::uint64_t>(version, INT64_MAX)));
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        if (db_.step(st) != SQLITE_ROW) return 0;
        return std::uint64_t(sqlite3_column_int64(st.get(), 0));
    }
    void channel_entries(const collection_schema& schema, std::string_view channel,
                         std::vector<channel_entry>& out) override {
        out.clear();
        auto& st = stmt_.channel_entries;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, channel);
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        while (db_.step(st) == SQLITE_ROW) {
            std::optional<bool> present;
            if (sqlite3_column_type(st.get(), 2) != SQLITE_NULL)
                present = sqlite3_column_int(st.get(), 2) != 0;
            out.push_back({db_.column_text(st, 0),
                           std::uint64_t(sqlite3_column_int64(st.get(), 1)), present});
        }
    }
    std::size_t copy_channel(const collection_schema& schema, std::string_view from,
                             std::string_view to, std::uint64_t touched_after,
                             std::uint64_t last_version,
                             std::vector<channel_entry>& undecided) override {
        auto& copy = stmt_.copy_channel;
        db_.bind_text(copy, 1, schema.name);
        db_.bind_text(copy, 2, from);
        db_.bind_text(copy, 3, to);
        sqlite3_bind_int64(copy.get(), 4,
                           std::int64_t(std::min<std::uint64_t>(touched_after, INT64_MAX)));
        sqlite3_bind_int64(copy.get(), 5, std::int64_t(last_version));
        db_.run(copy);
        const auto copied = std::size_t(sqlite3_changes64(db_.get()));
        auto& st = stmt_.undecided_entries;
        db_.bind_text(st, 1, schema.name);
        db_.bind_text(st, 2, from);
        sqlite3_bind_int64(st.get(), 3,
                           std::int64_t(std::min<std::uint64_t>(touched_after, INT64_MAX)));
        const offsync::detail::sqlite_connection::reset_on_exit done(st);
        while (db_.step(st) == SQLITE_ROW)
            undecided.push_back({db_.column_text(st, 0),
                                 std::uint64_t(sqlite3_column_int64(st.get(), 1)), std::nullopt});
        return copied;
    }

private:
    /// `length` results of consecutive mutation ids and versions, ending at the last ones.
    struct result_run {
        std::uint64_t last_id = 0;
        std::uint64_t last_version = 0;
        std::uint64_t length = 0;
    };

    /// Columns 0..2 (mutation_id, run, version) of a results row, checked: at least one
    /// result, and no more ids or versions than lie between 0 and the last (ids and versions
    /// may start at 0).
    result_run read_run(const offsync::detail::sqlite_statement& st) {
        const auto length = sqlite3_column_int64(st.get(), 1);
        const result_run run{std::uint64_t(sqlite3_column_int64(st.get(), 0)),
                             std::uint64_t(sqlite3_column_int64(st.get(), 2)),
                             std::uint64_t(length)};
        if (length < 1 || run.length - 1 > run.last_id || run.length - 1 > run.last_version)
            db_.fail_message("a remembered run of mutation results is corrupt");
        return run;
    }

    void write_run() {
        if (!run_) return;
        // Reset first: should the write fail, the request rolls back and the run goes with it.
        const auto run = *run_;
        run_.reset();
        write_result_row(run_client_, run, {});
    }

    /// One row of remembered results: a run, or one result with its `detail` (not empty).
    void write_result_row(std::string_view client, const result_run& run,
                          const std::string& detail) {
        auto& st = stmt_.remember;
        db_.bind_text(st, 1, client);
        sqlite3_bind_int64(st.get(), 2, std::int64_t(run.last_id));
        sqlite3_bind_int64(st.get(), 3, std::int64_t(run.last_version));
        if (detail.empty()) sqlite3_bind_null(st.get(), 4);
        else db_.bind_text(st, 4, detail);
        sqlite3_bind_int64(st.get(), 5, std::int64_t(run.length));
        db_.run(st);
    }

    /// Refuses a bad configuration before the file is opened.
    static const sqlite_server_config& checked(const sqlite_server_config& config) {
        offsync::detail::sqlite_connection::check_page_size(config.page_size,
                                                            "sqlite_server_config");
        if (config.checkpoint_log_bytes <= 0)
            throw std::invalid_argument("sqlite_server_config: checkpoint_log_bytes " +
                                        std::to_string(config.checkpoint_log_bytes) +
                                        " is not positive");
        return config;
    }

    /// In pages of the file as it is (one that exists keeps its own page size).
    void set_checkpoint_size(std::int64_t bytes) {
        const auto read = db_.query_int("PRAGMA page_size");
        if (!read) db_.fail("cannot read the page size");
        const std::int64_t page = std::max<std::int64_t>(512, *read);
        const auto pages = std::clamp<std::int64_t>(bytes / page, 1, INT32_MAX);
        db_.exec(("PRAGMA wal_autocheckpoint = " + std::to_string(pages)).c_str());
    }

    void bind_record_key(const offsync::detail::sqlite_statement& st, std::string_view collection,
                         std::string_view owner) {
        db_.bind_text(st, 1, collection);
        db_.bind_text(st, 2, owner);
    }

    /// Per-field versions, stored compactly: only the fields whose last write is not the
    /// record's own (version, last writer), as {"field": [version, "writer"]}. A fresh record
    /// stores "{}".
    static std::string field_writes_text(const collection_schema& schema,
                                         const server_record& r) {
        if (r.deleted) return "{}";
        const auto own = [&](const field_stamp& f) {
            return f.version == r.version && f.writer == r.last_writer;
        };
        if (std::all_of(r.fields.begin(), r.fields.end(), own)) return "{}";
        boost::json::object writes;
        for (std::size_t i = 0; i < r.fields.size() && i < schema.fields.size(); ++i) {
            const auto& f = r.fields[i];
            if (f.version == r.version && f.writer == r.last_writer) continue;
            writes[schema.fields[i]] = boost::json::array{f.version, boost::json::string(f.writer)};
        }
        return boost::json::serialize(writes);
    }

    /// Reads a row of `find` or `feed` (columns in the order they select), aligning it with
    /// `schema`: a field the model gained since the row was written reads as its default and
    /// was never written (version 0); a field it lost is dropped. The per-field versions are
    /// read only `with_fields` (the feed leaves them out: pulls do not need them). The value
    /// of a record whose last writer is `unread_writer` (not empty) is left empty.
    server_record read_record(const collection_schema& schema,
                              const offsync::detail::sqlite_statement& st, std::string key,
                              bool with_fields, std::string_view unread_writer = {}) {
        server_record r;
        r.key = std::move(key);
        r.version = std::uint64_t(sqlite3_column_int64(st.get(), 0));
        r.deleted = sqlite3_column_int(st.get(), 1) != 0;
        r.stamp.wall = sqlite3_column_int64(st.get(), 3);
        r.stamp.logical = std::uint32_t(sqlite3_column_int64(st.get(), 4));
        r.stamp.node = db_.column_text(st, 5);
        r.last_writer = db_.column_text(st, 6);
        if (r.deleted || (!unread_writer.empty() && r.last_writer == unread_writer)) return r;
        auto stored = parse_object(db_.column_text(st, 2));
        if (!with_fields) {
            r.value = normalize(schema, std::move(stored));
            return r;
        }
        // Most records were written whole by one writer: "{}", nothing to parse.
        const auto writes_text = db_.column_text(st, 8);
        const auto writes = writes_text == "{}" ? boost::json::object() : parse_object(writes_text);
        r.fields.resize(schema.fields.size());
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            const auto& name = schema.fields[i];
            if (const auto* w = writes.empty() ? nullptr : writes.if_contains(name)) {
                const auto* pair = w->if_array();
                if (!pair || pair->size() != 2 || !(*pair)[0].is_number() ||
                    !(*pair)[1].is_string())
                    db_.fail_message("a record's field versions are corrupt");
                r.fields[i] = {(*pair)[0].to_number<std::uint64_t>(),
                               std::string((*pair)[1].get_string())};
            } else if (stored.contains(name)) {
                r.fields[i] = {r.version, r.last_writer};
            }
        }
        r.value = normalize(schema, std::move(stored));
        return r;
    }

    boost::json::object parse_object(const std::string& text) {
        boost::system::error_code ec;
        auto jv = boost::json::parse(text, ec);
        if (ec || !jv.is_object()) db_.fail_message("a stored record is not a JSON object");
        return std::move(jv.get_object());
    }

    std::int64_t meta_int(const char* key) {
        auto& st = stmt_.get_meta;
        sqlite3_bind_text(st.get(), 1, key, -1, SQLITE_STATIC);
        std::int64_t v = 0;
        if (db_.step(st) == SQLITE_ROW) v = sqlite3_column_int64(st.get(), 0);
        db_.reset(st);
        return v;
    }
    void set_meta(const char* key, std::int64_t value) {
        auto& st = stmt_.set_meta;
        sqlite3_bind_text(st.get(), 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st.get(), 2, value);
        db_.run(st);
    }

    void quick_check() {
        std::string verdict;
        try {
            auto st = db_.prepare("PRAGMA quick_check(1)");
            verdict = db_.step(st) == SQLITE_ROW ? db_.column_text(st, 0) : "no answer";
        } catch (const sync_error& e) {
            verdict = e.what(); // the check could not even read the file
        }
        if (verdict != "ok")
            db_.fail_message("the file is damaged (quick_check: " + verdict +
                             "); restore it from a backup");
    }

    /// Whether `path` names a file that exists (SQLite's special names, such as ":memory:" or
    /// "" for a temporary database, name none).
    static bool existing_file(const std::string& path) {
        if (path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0) return false;
        std::error_code ec;
        return std::filesystem::exists(path, ec);
    }

    void check_schema() {
        // query_int finalizes its statement: none is left reading while a migration changes
        // the schema.
        const auto version =
            db_.query_int("SELECT value FROM offsync_server_meta WHERE key = 'schema_version'")
                .value_or(0);
        if (version > schema_version)
            db_.fail_message("server schema version " + std::to_string(version) +
                             " is newer than this offsync (" + std::to_string(schema_version) +
                             ")");
        if (version < 1) db_.fail_message("offsync_server_meta has no schema version");
        // Each migration in its own transaction. 1 -> 2: a row of results stands for a run of
        // them; every row of version 1 is a run of one.
        if (version < 2)
            in_schema_transaction([&] {
                db_.exec("ALTER TABLE offsync_server_results ADD COLUMN "
                         "run INTEGER NOT NULL DEFAULT 1");
                db_.exec("UPDATE offsync_server_meta SET value = 2 WHERE key = 'schema_version'");
            });
        // 2 -> 3: the tables of sharing, empty.
        if (version < 3)
            in_schema_transaction([&] {
                db_.exec(sharing_tables);
                db_.exec("UPDATE offsync_server_meta SET value = 3 WHERE key = 'schema_version'");
            });
        if (version < 4)
            in_schema_transaction([&] {
                db_.exec(channel_presence);
                db_.exec("UPDATE offsync_server_meta SET value = 4 WHERE key = 'schema_version'");
            });
    }

    template <class Body>
    void in_schema_transaction(Body&& body) {
        db_.exec("BEGIN IMMEDIATE");
        try {
            body();
            db_.exec("COMMIT");
        } catch (...) {
            db_.exec_noexcept("ROLLBACK");
            throw;
        }
    }

    /// Groups, their members (with the version each membership starts at), and channels: each
    /// key once per channel, at its latest touch, read by version.
    static constexpr const char* sharing_tables = R"(
CREATE TABLE offsync_server_groups (grp TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE offsync_server_members (
    grp TEXT NOT NULL, member TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (grp, member)) WITHOUT ROWID;
CREATE INDEX offsync_server_members_by_user ON offsync_server_members (member, grp, since);
CREATE TABLE offsync_server_channels (
    collection TEXT NOT NULL, channel TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (collection, channel, key)) WITHOUT ROWID;
CREATE INDEX offsync_server_channel_feed ON offsync_server_channels (collection, channel, version);
)";
    static constexpr const char* channel_presence =
        "ALTER TABLE offsync_server_channels ADD COLUMN present INTEGER";

    void create_schema() {
        in_schema_transaction([&] {
            db_.exec(sharing_tables);
            db_.exec(channel_presence);
            db_.exec(R"(
CREATE TABLE offsync_server_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE offsync_server_records (
    collection TEXT NOT NULL, owner TEXT NOT NULL, key TEXT NOT NULL,
    version INTEGER NOT NULL, deleted INTEGER NOT NULL, value TEXT NOT NULL,
    stamp_wall INTEGER NOT NULL, stamp_logical INTEGER NOT NULL, stamp_node TEXT NOT NULL,
    last_writer TEXT NOT NULL, field_writes TEXT NOT NULL,
    PRIMARY KEY (collection, owner, key)) WITHOUT ROWID;
CREATE UNIQUE INDEX offsync_server_feed ON offsync_server_records (collection, owner, version);
CREATE TABLE offsync_server_results (
    client TEXT NOT NULL, mutation_id INTEGER NOT NULL, version INTEGER NOT NULL, detail TEXT,
    run INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (client, mutation_id)) WITHOUT ROWID;
INSERT INTO offsync_server_meta VALUES ('schema_version', 4);
)");
        });
    }

    void prepare_statements() {
        // Columns 0..8 of find and feed line up for read_record; feed adds the key last.
        stmt_.find = db_.prepare(
            "SELECT version, deleted, value, stamp_wall, stamp_logical, stamp_node, "
            "last_writer, NULL, field_writes FROM offsync_server_records "
            "WHERE collection = ?1 AND owner = ?2 AND key = ?3");
        stmt_.feed = db_.prepare(
            "SELECT version, deleted, value, stamp_wall, stamp_logical, stamp_node, "
            "last_writer, key, field_writes FROM offsync_server_records "
            "WHERE collection = ?1 AND owner = ?2 AND version > ?3 ORDER BY version LIMIT ?4");
        // The keys come as a JSON array, walked in order, each looked up by primary key:
        // one statement for a page of a grouped pull instead of a `find` per key.
        stmt_.find_page = db_.prepare(
            "SELECT r.version, r.deleted, r.value, r.stamp_wall, r.stamp_logical, r.stamp_node, "
            "r.last_writer, r.key, r.field_writes, j.key FROM json_each(?3) AS j "
            "CROSS JOIN offsync_server_records AS r "
            "ON r.collection = ?1 AND r.owner = ?2 AND r.key = j.value");
        stmt_.feed_below = db_.prepare(
            "SELECT version FROM offsync_server_records WHERE collection = ?1 AND owner = ?2 "
            "AND version < ?3 ORDER BY version DESC LIMIT 1");
        stmt_.put = db_.prepare("INSERT OR REPLACE INTO offsync_server_records VALUES "
                                "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
        stmt_.insert_new = db_.prepare(
            "INSERT INTO offsync_server_records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
            "?11) ON CONFLICT (collection, owner, key) DO NOTHING");
        // A row's mutation_id and version are its run's last: mutation_id - run + 1 is the
        // first id. The three statements that read rows start with the columns read_run reads.
        stmt_.find_result = db_.prepare(
            "SELECT mutation_id, run, version, detail FROM offsync_server_results "
            "WHERE client = ?1 AND mutation_id >= ?2 ORDER BY mutation_id LIMIT 1");
        stmt_.newest_result = db_.prepare(
            "SELECT ifnull(max(mutation_id), 0) FROM offsync_server_results WHERE client = ?1");
        stmt_.remember = db_.prepare("INSERT OR REPLACE INTO offsync_server_results "
                                     "(client, mutation_id, version, detail, run) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5)");
        // The oldest row and (newest_result) the newest: one probe of the primary key each.
        stmt_.oldest_run = db_.prepare(
            "SELECT mutation_id, run, version FROM offsync_server_results WHERE client = ?1 "
            "ORDER BY mutation_id LIMIT 1");
        stmt_.runs_newest_first = db_.prepare(
            "SELECT mutation_id, run, version FROM offsync_server_results WHERE client = ?1 "
            "ORDER BY mutation_id DESC");
        stmt_.forget = db_.prepare(
            "DELETE FROM offsync_server_results WHERE client = ?1 AND mutation_id <= ?2");
        stmt_.shorten_run = db_.prepare("UPDATE offsync_server_results SET run = ?3 "
                                        "WHERE client = ?1 AND mutation_id = ?2");
        stmt_.group_exists = db_.prepare("SELECT 1 FROM offsync_server_groups WHERE grp = ?1");
        stmt_.add_group =
            db_.prepare("INSERT INTO offsync_server_groups VALUES (?1) ON CONFLICT DO NOTHING");
        stmt_.remove_group = db_.prepare("DELETE FROM offsync_server_groups WHERE grp = ?1");
        stmt_.remove_members = db_.prepare("DELETE FROM offsync_server_members WHERE grp = ?1");
        stmt_.members_of =
            db_.prepare("SELECT member FROM offsync_server_members WHERE grp = ?1 ORDER BY member");
        stmt_.groups_of = db_.prepare(
            "SELECT grp, since FROM offsync_server_members WHERE member = ?1 ORDER BY grp");
        stmt_.add_member = db_.prepare(
            "INSERT INTO offsync_server_members VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
        stmt_.remove_member =
            db_.prepare("DELETE FROM offsync_server_members WHERE grp = ?1 AND member = ?2");
        stmt_.touch = db_.prepare(
            "INSERT INTO offsync_server_channels VALUES (?1, ?2, ?3, ?4, ?5) "
            "ON CONFLICT (collection, channel, key) DO UPDATE SET version = excluded.version, "
            "present = excluded.present");
        stmt_.channel_entries = db_.prepare(
            "SELECT key, version, present FROM offsync_server_channels "
            "WHERE collection = ?1 AND channel = ?2");
        // One statement in place of a read and a touch per entry; the window numbers the
        // copies in the source channel's order. An ON CONFLICT after a SELECT needs its WHERE.
        stmt_.copy_channel = db_.prepare(
            "INSERT INTO offsync_server_channels (collection, channel, key, version, present) "
            "SELECT collection, ?3, key, ?5 + row_number() OVER (ORDER BY version), 1 "
            "FROM offsync_server_channels WHERE collection = ?1 AND channel = ?2 AND "
            "(present OR version > ?4) ORDER BY version "
            "ON CONFLICT (collection, channel, key) DO UPDATE SET version = excluded.version, "
            "present = 1");
        stmt_.undecided_entries = db_.prepare(
            "SELECT key, version FROM offsync_server_channels WHERE collection = ?1 AND "
            "channel = ?2 AND present IS NULL AND version <= ?3 ORDER BY version");
        stmt_.channel_page = db_.prepare(
            "SELECT key, version FROM offsync_server_channels WHERE collection = ?1 AND "
            "channel = ?2 AND version > ?3 AND version <= ?4 ORDER BY version LIMIT ?5");
        stmt_.channel_below = db_.prepare(
            "SELECT version FROM offsync_server_channels WHERE collection = ?1 AND "
            "channel = ?2 AND version < ?3 ORDER BY version DESC LIMIT 1");
        stmt_.channel_version = db_.prepare(
            "SELECT version FROM offsync_server_channels WHERE collection = ?1 AND "
            "channel = ?2 AND key = ?3");
        stmt_.get_meta = db_.prepare("SELECT value FROM offsync_server_meta WHERE key = ?1");
        stmt_.set_meta = db_.prepare("INSERT OR REPLACE INTO offsync_server_meta VALUES (?1, ?2)");
    }

    struct statements {
        offsync::detail::sqlite_statement find, find_page, feed, feed_below, put, insert_new, find_result,
            newest_result, remember, oldest_run, runs_newest_first, forget, shorten_run,
            get_meta, set_meta, group_exists, add_group, remove_group, remove_members,
            members_of, groups_of, add_member, remove_member, touch, channel_page, channel_version,
            channel_entries, copy_channel, undecided_entries, channel_below;
    };

    /// Whether the file was there before this store opened it (declared before `db_`, which
    /// creates it).
    bool file_existed_ = false;
    offsync::detail::sqlite_connection db_;
    statements stmt_; // declared after db_: finalized before the connection closes
    std::optional<result_run> run_; ///< the run not yet written, and whose it is
    std::string run_client_;
};

} // namespace offsync::server
