// offsync — a StoragePolicy on one SQLite database file: the client store an app ships.
//
// Link SQLite (CMake: offsync::sqlite, or SQLite::SQLite3 yourself). docs/storage.md explains
// the schema and the durability settings.
#pragma once

#include <offsync/detail/sqlite_connection.hpp>
#include <offsync/error.hpp>
#include <offsync/query.hpp>
#include <offsync/uuid.hpp>
#include <offsync/record.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace offsync {

// sqlite_durability (detail/sqlite_connection.hpp): on a client, `normal` may lose the last
// edits to a power loss; rolled-back acknowledgements are pushed again and the server
// recognises them by mutation id. Mutation ids are reserved on disk under either setting
// before a push carries them (see reserve_mutation_ids).

struct sqlite_config {
    sqlite_durability durability = sqlite_durability::full;
    /// How long a transaction waits for another process holding the file's write lock.
    int busy_timeout_ms = 5000;
    /// The page size of a file this store creates (a power of two from 512 to 65536); a file
    /// that exists keeps its own. SQLite's 4 KiB suits a client: its edits and the records a
    /// round pulls are scattered over the file, and each costs a page written to the log
    /// (with 16 KiB, a round that pulls 1,000 scattered records costs a third more, see
    /// docs/benchmarks.md).
    int page_size = 4096;
};

/// The client store on SQLite: one file in WAL mode, the schema created and migrated on open
/// (table `offsync_meta` holds the schema version), prepared statements reused, and a partial
/// index over pushable records so building a push never scans clean ones.
///
/// Errors: opening a file that is not a database, a database of another program, or a newer
/// schema throws `sync_error` with `errc::storage_failure` and a message naming the file and the
/// cause; nothing in the file is changed. A `page_size` SQLite does not support throws
/// `std::invalid_argument` before the file is opened. A failure inside a transaction (disk
/// full, read-only file) throws `sync_error`; the transaction rolls back.
///
/// Thread safety: every member function may be called from any thread. A transaction holds the
/// store's lock for its lifetime (as memory_storage does); one connection serves all threads.
class sqlite_storage {
    using statement = detail::sqlite_statement;
    static std::string column_text(const statement& st, int index) {
        return detail::sqlite_connection::column_text(st, index);
    }

public:
    static constexpr int schema_version = 1;

    explicit sqlite_storage(const std::string& path, sqlite_config config = {})
        : db_(path, checked(config).busy_timeout_ms), durability_(config.durability) {
        open_schema(config);
        prepare_statements();
    }

    sqlite_storage(const sqlite_storage&) = delete;
    sqlite_storage& operator=(const sqlite_storage&) = delete;

    const std::string& path() const noexcept { return db_.path(); }

    /// The connection, for the app's own queries (and pragmas). Use it only while no
    /// transaction of this store is open on another thread.
    sqlite3* native_handle() const noexcept { return db_.get(); }

    /// Test machinery, for `faulty_storage` (testing/faulty_storage.hpp) alone: `point` is
    /// called with "make_durable" before a commit makes its reservation of mutation ids durable
    /// (see make_durable), and may throw to fail that step. A decorator fails any operation
    /// from outside, but this step runs inside `commit()`, after its COMMIT: tests must fail it
    /// there to see the reservation dropped, and count it to see which commits sync.
    void set_commit_fault_point(std::function<void(std::string_view point)> point) {
        std::lock_guard lock(mutex_);
        commit_fault_point_ = std::move(point);
    }

    class transaction {
    public:
        transaction(transaction&& other) noexcept
            : store_(std::exchange(other.store_, nullptr)), lock_(std::move(other.lock_)),
              open_(std::exchange(other.open_, false)),
              reserved_ids_(std::exchange(other.reserved_ids_, false)) {}
        transaction& operator=(transaction&&) = delete;
        ~transaction() {
            if (store_ && open_) {
                store_->exec_noexcept("ROLLBACK");
                if (reserved_ids_) store_->drop_reservation();
            }
        }

        std::optional<local_record> load(std::string_view collection, std::string_view key) {
            return load_with(store_->stmt_.load, collection, key, true);
        }

        /// The record without its value (left empty): what acknowledging a push needs, without
        /// parsing the JSON.
        std::optional<local_record> load_metadata(std::string_view collection,
                                                  std::string_view key) {
            return load_with(store_->stmt_.load_metadata, collection, key, false);
        }

        void save(std::string_view collection, std::string_view key, const local_record& r) {
            write_row(store_->stmt_.save, collection, key, r);
        }

        /// Writes every member of `r` but its value, which stays as stored: no JSON is
        /// serialised. The record must exist.
        void save_metadata(std::string_view collection, std::string_view key,
                           const local_record& r) {
            auto& st = store_->stmt_.save_metadata;
            bind(st, collection, key);
            bind_metadata(st, 3, r);
            run(st);
            if (sqlite3_changes(store_->db_.get()) != 1)
                store_->fail_message("save_metadata: no record " + std::string(collection) + "/" +
                                     std::string(key));
        }

        /// Stores `r` if no record is stored under (collection, key); returns whether it did.
        bool insert_new(std::string_view collection, std::string_view key,
                        const local_record& r) {
            write_row(store_->stmt_.insert_new, collection, key, r);
            return sqlite3_changes(store_->db_.get()) == 1;
        }

        /// Marks the record clean at `version`, as acknowledging the push of its
        /// `generation` does, in one statement; false (and nothing written) if the record is
        /// missing, was edited since, or holds a pending delete.
        bool acknowledge(std::string_view collection, std::string_view key,
                         std::uint64_t generation, std::uint64_t version, std::int64_t now_ms) {
            auto& st = store_->stmt_.acknowledge;
            bind(st, collection, key);
            sqlite3_bind_int64(st.get(), 3, std::int64_t(generation));
            sqlite3_bind_int64(st.get(), 4, std::int64_t(version));
            sqlite3_bind_int64(st.get(), 5, now_ms);
            run(st);
            return sqlite3_changes(store_->db_.get()) == 1;
        }

        void remove(std::string_view collection, std::string_view key) {
            auto& st = store_->stmt_.remove;
            bind(st, collection, key);
            run(st);
        }

        std::vector<std::string> pushable_keys(std::string_view collection,
                                               std::string_view after, std::size_t limit) {
            auto& st = store_->stmt_.pushable;
            bind(st, collection, after);
            sqlite3_bind_int64(st.get(), 3, std::int64_t(limit));
            std::vector<std::string> keys;
            while (step(st) == SQLITE_ROW) keys.push_back(column_text(st, 0));
            reset(st);
            return keys;
        }

        /// The pushable records after `after`, ascending by key, at most `limit`, read whole in
        /// one statement: what `pushable_keys` and a `load` of each would give.
        std::vector<std::pair<std::string, local_record>>
        pushable_records(std::string_view collection, std::string_view after, std::size_t limit) {
            auto& st = store_->stmt_.pushable_records;
            bind(st, collection, after);
            sqlite3_bind_int64(st.get(), 3, std::int64_t(limit));
            const detail::sqlite_connection::reset_on_exit done(st);
            std::vector<std::pair<std::string, local_record>> out;
            // The batch's values are parsed into one arena, freed with the last of them: a
            // push batch is read to be sent, and its thousands of small strings and objects
            // cost less to allocate and free there (build_push moves them into the request).
            const auto arena = boost::json::make_shared_resource<boost::json::monotonic_resource>(
                std::min<std::size_t>(limit, 4096) * 512);
            while (step(st) == SQLITE_ROW)
                out.emplace_back(column_text(st, 0), read_record(st, 1, true, arena));
            return out;
        }

        std::uint64_t cursor(std::string_view collection) {
            auto& st = store_->stmt_.cursor;
            bind_text(st, 1, collection);
            std::uint64_t c = 0;
            if (step(st) == SQLITE_ROW) c = std::uint64_t(sqlite3_column_int64(st.get(), 0));
            reset(st);
            return c;
        }

        void set_cursor(std::string_view collection, std::uint64_t cursor) {
            auto& st = store_->stmt_.set_cursor;
            bind_text(st, 1, collection);
            sqlite3_bind_int64(st.get(), 2, std::int64_t(cursor));
            run(st);
        }

        // The partial-sync state of a collection: a row of offsync_meta, so that files
        // written before it existed need no migration.
        std::string subset_state(std::string_view collection) {
            auto& st = store_->stmt_.get_meta;
            const auto key = "subset:" + std::string(collection);
            bind_text(st, 1, key);
            std::string out;
            if (step(st) == SQLITE_ROW) out = column_text(st, 0);
            reset(st);
            return out;
        }

        void set_subset_state(std::string_view collection, std::string_view state) {
            const auto key = "subset:" + std::string(collection);
            auto& st = state.empty() ? store_->stmt_.remove_meta : store_->stmt_.set_meta;
            bind_text(st, 1, key);
            if (!state.empty()) bind_text(st, 2, state);
            run(st);
        }

        std::optional<parked_record> load_parked(std::string_view collection,
                                                 std::string_view key) {
            auto& st = store_->stmt_.load_parked;
            bind(st, collection, key);
            std::optional<parked_record> out;
            const detail::sqlite_connection::reset_on_exit done(st);
            if (step(st) == SQLITE_ROW) out = read_parked(st);
            return out;
        }

        void save_parked(const parked_record& p) {
            auto& st = store_->stmt_.save_parked;
            bind(st, p.collection, p.key);
            sqlite3_bind_int(st.get(), 3, int(p.kind));
            const auto local = boost::json::serialize(p.local_value);
            bind_text(st, 4, local);
            sqlite3_bind_int(st.get(), 5, p.local_deleted);
            std::string server;
            if (p.server) {
                server = boost::json::serialize(to_json(*p.server));
                bind_text(st, 6, server);
            } else {
                sqlite3_bind_null(st.get(), 6);
            }
            bind_text(st, 7, p.error_code);
            bind_text(st, 8, p.error_message);
            sqlite3_bind_int64(st.get(), 9, p.detected_at_ms);
            run(st);
        }

        void remove_parked(std::string_view collection, std::string_view key) {
            auto& st = store_->stmt_.remove_parked;
            bind(st, collection, key);
            run(st);
        }

        /// Ids come from a block reserved on disk (see reserve_mutation_ids): issuing one
        /// writes nothing, and an id is never issued twice, though a rolled-back transaction
        /// or a reopened store leaves some unused.
        std::uint64_t next_mutation_id() {
            if (store_->next_mutation_ == store_->mutation_limit_) {
                store_->reserve_mutation_ids();
                reserved_ids_ = true;
            }
            return store_->next_mutation_++;
        }

        hlc_state clock() {
            return {store_->meta_int("hlc_wall", 0),
                    std::uint32_t(store_->meta_int("hlc_logical", 0))};
        }
        void set_clock(hlc_state s) {
            store_->set_meta("hlc_wall", std::to_string(s.wall));
            store_->set_meta("hlc_logical", std::to_string(s.logical));
        }
        std::string client_id() { return store_->client_id_; }

        void commit() {
            store_->exec("COMMIT");
            open_ = false;
            if (reserved_ids_ && store_->durability_ == sqlite_durability::normal) {
                try {
                    store_->make_durable();
                } catch (...) {
                    store_->drop_reservation();
                    throw;
                }
            }
        }

    private:
        friend class sqlite_storage;

        /// Runs `load` or `load_metadata` (the same columns; the latter selects no value).
        std::optional<local_record> load_with(const statement& st, std::string_view collection,
                                              std::string_view key, bool with_value) {
            bind(st, collection, key);
            const detail::sqlite_connection::reset_on_exit done(st);
            std::optional<local_record> out;
            if (step(st) == SQLITE_ROW) out = read_record(st, 0, with_value);
            return out;
        }

        /// The record in the current row of `st`, whose columns from `first` on are those of
        /// the load statement.
        local_record read_record(const statement& st, int first, bool with_value,
                                 const boost::json::storage_ptr& storage = {}) {
            auto column = [&](int i) { return first + i; };
            local_record r;
            if (with_value)
                detail::take_over(r.value, store_->parse_object(
                                               detail::sqlite_connection::column_view(
                                                   st, column(0)),
                                               storage));
            r.deleted = sqlite3_column_int(st.get(), column(1)) != 0;
            r.delete_pending = sqlite3_column_int(st.get(), column(2)) != 0;
            r.base_version = std::uint64_t(sqlite3_column_int64(st.get(), column(3)));
            r.dirty_mask = std::uint64_t(sqlite3_column_int64(st.get(), column(4)));
            r.generation = std::uint64_t(sqlite3_column_int64(st.get(), column(5)));
            r.modified_at.wall = sqlite3_column_int64(st.get(), column(6));
            r.modified_at.logical = std::uint32_t(sqlite3_column_int64(st.get(), column(7)));
            r.modified_at.node = column_text(st, column(8));
            r.last_synced_ms = sqlite3_column_int64(st.get(), column(9));
            r.sent_mutation_id = std::uint64_t(sqlite3_column_int64(st.get(), column(10)));
            r.sent_generation = std::uint64_t(sqlite3_column_int64(st.get(), column(11)));
            r.parked = static_cast<park_state>(sqlite3_column_int(st.get(), column(12)));
            return r;
        }

        /// Runs `save` or `insert_new`: a whole row, its value serialised.
        void write_row(const statement& st, std::string_view collection, std::string_view key,
                       const local_record& r) {
            bind(st, collection, key);
            const auto value = boost::json::serialize(r.value);
            bind_text(st, 3, value);
            bind_metadata(st, 4, r);
            run(st);
        }

        /// Binds the 13 metadata columns of `save` and `save_metadata`, from `first` on.
        static void bind_metadata(const statement& st, int first, const local_record& r) {
            auto* raw = st.get();
            sqlite3_bind_int(raw, first, r.deleted);
            sqlite3_bind_int(raw, first + 1, r.delete_pending);
            sqlite3_bind_int64(raw, first + 2, std::int64_t(r.base_version));
            sqlite3_bind_int64(raw, first + 3, std::int64_t(r.dirty_mask));
            sqlite3_bind_int64(raw, first + 4, std::int64_t(r.generation));
            sqlite3_bind_int64(raw, first + 5, r.modified_at.wall);
            sqlite3_bind_int64(raw, first + 6, r.modified_at.logical);
            bind_text(st, first + 7, r.modified_at.node);
            sqlite3_bind_int64(raw, first + 8, r.last_synced_ms);
            sqlite3_bind_int64(raw, first + 9, std::int64_t(r.sent_mutation_id));
            sqlite3_bind_int64(raw, first + 10, std::int64_t(r.sent_generation));
            sqlite3_bind_int(raw, first + 11, int(r.parked));
            sqlite3_bind_int(raw, first + 12, r.pushable());
        }

        explicit transaction(sqlite_storage& s) : store_(&s), lock_(s.mutex_) {
            store_->exec("BEGIN IMMEDIATE");
            open_ = true;
        }
        int step(const statement& st) { return store_->db_.step(st); }
        void run(const statement& st) { store_->db_.run(st); }
        static void reset(const statement& st) { detail::sqlite_connection::reset(st); }
        static void bind_text(const statement& st, int index, std::string_view text) {
            detail::sqlite_connection::bind_text(st, index, text);
        }
        static void bind(const statement& st, std::string_view collection, std::string_view key) {
            bind_text(st, 1, collection);
            bind_text(st, 2, key);
        }
        parked_record read_parked(const statement& st) {
            parked_record p;
            p.collection = column_text(st, 0);
            p.key = column_text(st, 1);
            p.kind = static_cast<park_state>(sqlite3_column_int(st.get(), 2));
            p.local_value = store_->parse_object(column_text(st, 3));
            p.local_deleted = sqlite3_column_int(st.get(), 4) != 0;
            if (sqlite3_column_type(st.get(), 5) != SQLITE_NULL) {
                p.server.emplace();
                if (from_json(boost::json::parse(column_text(st, 5)), *p.server))
                    store_->fail_message("a parked record's server copy is corrupt");
            }
            p.error_code = column_text(st, 6);
            p.error_message = column_text(st, 7);
            p.detected_at_ms = sqlite3_column_int64(st.get(), 8);
            return p;
        }

        sqlite_storage* store_;
        std::unique_lock<std::mutex> lock_;
        bool open_ = false;
        bool reserved_ids_ = false; ///< this transaction reserved a block of mutation ids
    };

    transaction begin() { return transaction(*this); }

    std::vector<std::pair<std::string, local_record>> list(std::string_view collection) {
        auto txn = begin();
        auto& st = stmt_.list;
        transaction::bind_text(st, 1, collection);
        return load_rows(txn, st, collection);
    }

    /// The live records of `collection` whose stored value at `json_path` equals `equals`, in
    /// key order: SQLite's JSON path syntax (`$.status`, `$.tags[0]`, `$.address.city`) over
    /// the stored JSON, served by SQLite's JSON functions. A JSON null never matches, nor does
    /// a field that an older row lacks. A path SQLite cannot read throws `sync_error` with
    /// `errc::invalid_field`.
    std::vector<std::pair<std::string, local_record>> list_where(std::string_view collection,
                                                                 std::string_view json_path,
                                                                 const boost::json::value& equals) {
        auto txn = begin();
        {
            auto& check = stmt_.check_path;
            transaction::bind_text(check, 1, json_path);
            const int rc = sqlite3_step(check.get());
            const std::string why = sqlite3_errmsg(db_.get());
            transaction::reset(check);
            if (rc != SQLITE_ROW || json_path.empty() || json_path.front() != '$')
                throw sync_error(make_error_code(errc::invalid_field),
                                 "'" + std::string(json_path) +
                                     "' is not a JSON path (like $.field): " + why);
        }
        auto& st = stmt_.list_where;
        transaction::bind_text(st, 1, collection);
        transaction::bind_text(st, 2, json_path);
        const auto wanted = boost::json::serialize(equals);
        transaction::bind_text(st, 3, wanted);
        return load_rows(txn, st, collection);
    }

    /// At most `limit` live records of `collection` with key text greater than `after` that
    /// meet every condition of `spec`, in key order (`queryable_storage`): one SQL statement,
    /// which an index from `create_index` serves for its field. A field name that is not an
    /// identifier throws `sync_error` (`errc::invalid_field`) and reads nothing.
    std::vector<std::pair<std::string, local_record>> find(std::string_view collection,
                                                           const query_spec& spec,
                                                           std::string_view after,
                                                           std::size_t limit) {
        auto txn = begin();
        const auto sql = query_sql(collection, spec);
        const auto& st = cached_statement(sql);
        transaction::bind_text(st, 1, collection);
        transaction::bind_text(st, 2, after);
        sqlite3_bind_int64(st.get(), 3,
                           limit > std::size_t(INT64_MAX) ? INT64_MAX : std::int64_t(limit));
        for (std::size_t i = 0; i < spec.conditions.size(); ++i)
            bind_operand(st, int(i + 4), spec.conditions[i].operand);
        return load_rows(txn, st, collection);
    }

    /// SQLite's plan for `find(collection, spec, ...)`, one line per step ("SEARCH
    /// offsync_records USING INDEX ..."): to check that an index serves a query.
    std::string query_plan(std::string_view collection, const query_spec& spec) {
        auto txn = begin();
        statement st = prepare(("EXPLAIN QUERY PLAN " + query_sql(collection, spec)).c_str());
        std::string plan;
        while (txn.step(st) == SQLITE_ROW) plan += column_text(st, 3) + "\n";
        return plan;
    }

    /// Declares an index on one field of a collection's stored values, for `find` on that
    /// field (equality and ranges). Idempotent; it lasts in the file. Costs a little on every
    /// write of the collection and builds over the existing rows once (docs/app-api.md).
    void create_index(std::string_view collection, std::string_view field) {
        const auto expression = field_expression(field); // validates the field first
        const auto name = index_name(collection, field);
        auto txn = begin();
        // The key last: an equality's rows come in key order, and a page starts at its key.
        exec(("CREATE INDEX IF NOT EXISTS " + name + " ON offsync_records (collection, " +
              expression + ", key)")
                 .c_str());
        txn.commit();
        known_indexes_.reset(); // read again at the next query
    }

    /// `create_index` for a described member of a model: `create_index(&Task::due)`.
    template <class T, class M>
        requires synced_model<T> && queryable_member<M>
    void create_index(M T::*member) {
        create_index(model_traits<T>::collection, detail::described_name(member));
    }

    std::vector<parked_record> parked(std::string_view collection) {
        auto txn = begin();
        auto& st = stmt_.all_parked;
        transaction::bind_text(st, 1, collection);
        const detail::sqlite_connection::reset_on_exit done(st);
        std::vector<parked_record> out;
        while (txn.step(st) == SQLITE_ROW) out.push_back(txn.read_parked(st));
        return out;
    }

    pending_counts pending(std::string_view collection) {
        auto txn = begin();
        pending_counts n;
        auto& st = stmt_.pending;
        transaction::bind_text(st, 1, collection);
        if (txn.step(st) == SQLITE_ROW) {
            n.dirty = std::size_t(sqlite3_column_int64(st.get(), 0));
            n.conflicts = std::size_t(sqlite3_column_int64(st.get(), 1));
            n.rejected = std::size_t(sqlite3_column_int64(st.get(), 2));
        }
        transaction::reset(st);
        return n;
    }

private:
    /// The records whose keys the bound statement `st` selects (column 0).
    static std::vector<std::pair<std::string, local_record>>
    load_rows(transaction& txn, const statement& st, std::string_view collection) {
        std::vector<std::string> keys;
        while (txn.step(st) == SQLITE_ROW) keys.push_back(column_text(st, 0));
        transaction::reset(st);
        std::vector<std::pair<std::string, local_record>> out;
        for (auto& k : keys)
            if (auto r = txn.load(collection, k)) out.emplace_back(std::move(k), std::move(*r));
        return out;
    }

    /// `json_extract(value, '$.field')`, spelled the same in every query and index so that
    /// SQLite matches them. Only identifiers: the field is spliced into SQL.
    static std::string field_expression(std::string_view field) {
        const bool identifier =
            !field.empty() && !std::isdigit(static_cast<unsigned char>(field.front())) &&
            std::all_of(field.begin(), field.end(), [](char ch) {
                return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
            });
        if (!identifier)
            throw sync_error(make_error_code(errc::invalid_field),
                             "'" + std::string(field) + "' is not a field name");
        return "json_extract(value, '$." + std::string(field) + "')";
    }

    /// The SQL of `find`: bound as ?1 collection, ?2 after, ?3 limit, ?4... the operands.
    std::string query_sql(std::string_view collection, const query_spec& spec) {
        // SQLite's planner, with no statistics on an expression, keeps to the primary key (it
        // yields key order without a sort): name the app's index for the condition it serves,
        // an equality first (its rows come in key order too), else a range.
        std::string use_index;
        for (int pass = 0; pass < 2 && use_index.empty(); ++pass)
            for (const auto& c : spec.conditions)
                if ((pass == 0) == (c.op == compare_op::equal) && c.op != compare_op::not_equal)
                    if (auto name = index_name(collection, c.field); has_index(name)) {
                        use_index = std::move(name);
                        break;
                    }
        std::string sql = "SELECT key FROM offsync_records" +
                          (use_index.empty() ? std::string() : " INDEXED BY " + use_index) +
                          " WHERE collection = ?1 AND deleted = 0 AND key > ?2";
        for (std::size_t i = 0; i < spec.conditions.size(); ++i) {
            const auto& c = spec.conditions[i];
            sql += " AND " + field_expression(c.field) + sql_operator(c.op) + "?" +
                   std::to_string(i + 4);
        }
        sql += " ORDER BY key LIMIT ?3";
        return sql;
    }

    /// The name of the index `create_index` makes for a field: readable, and unique by a
    /// hash that does not change between builds (it names something kept in the file).
    static std::string index_name(std::string_view collection, std::string_view field) {
        std::string name = "offsync_index_";
        std::uint64_t hash = 14695981039346656037ull; // FNV-1a
        auto mix = [&](std::string_view text) {
            for (unsigned char ch : text) {
                name += std::isalnum(ch) ? char(ch) : '_';
                hash = (hash ^ ch) * 1099511628211ull;
            }
        };
        mix(collection);
        name += '_';
        hash = (hash ^ 0u) * 1099511628211ull;
        mix(field);
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
        return name + "_" + hex;
    }

    /// Whether the file has index `name`; the names are read once, under the store's lock.
    bool has_index(const std::string& name) {
        if (!known_indexes_) {
            known_indexes_.emplace();
            statement st = prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                   "name LIKE 'offsync_index_%'");
            while (db_.step(st) == SQLITE_ROW) known_indexes_->insert(column_text(st, 0));
        }
        return known_indexes_->count(name) > 0;
    }

    static const char* sql_operator(compare_op op) {
        switch (op) {
        case compare_op::equal: return " = ";
        case compare_op::not_equal: return " <> ";
        case compare_op::less: return " < ";
        case compare_op::less_equal: return " <= ";
        case compare_op::greater: return " > ";
        case compare_op::greater_equal: return " >= ";
        }
        return " = ";
    }

    /// Binds a JSON scalar as the SQL value `json_extract` gives for it: true and false as 1
    /// and 0, numbers as numbers, strings as text.
    static void bind_operand(const statement& st, int index, const boost::json::value& v) {
        if (v.is_bool()) sqlite3_bind_int64(st.get(), index, v.get_bool() ? 1 : 0);
        else if (v.is_int64()) sqlite3_bind_int64(st.get(), index, v.get_int64());
        else if (v.is_uint64() && v.get_uint64() <= std::uint64_t(INT64_MAX))
            sqlite3_bind_int64(st.get(), index, std::int64_t(v.get_uint64()));
        else if (v.is_number()) sqlite3_bind_double(st.get(), index, v.to_number<double>());
        else if (v.is_string()) transaction::bind_text(st, index, v.get_string());
        else
            throw sync_error(make_error_code(errc::invalid_field),
                             "a query compares a field with " + boost::json::serialize(v) +
                                 ": only strings, numbers and booleans");
    }

    /// A prepared statement for query text built at run time, kept for the next query of the
    /// same shape (a few shapes per app; the cache is bounded all the same).
    const statement& cached_statement(const std::string& sql) {
        auto it = query_statements_.find(sql);
        if (it != query_statements_.end()) return it->second;
        if (query_statements_.size() >= 64) query_statements_.clear();
        return query_statements_.emplace(sql, prepare(sql.c_str())).first->second;
    }

    boost::json::object parse_object(std::string_view text, const boost::json::storage_ptr& storage = {}) {
        boost::system::error_code ec;
        auto jv = boost::json::parse(text, ec, storage);
        if (ec || !jv.is_object()) fail_message("a stored record is not a JSON object");
        return std::move(jv.get_object());
    }

    /// Reserves the next block of mutation ids, inside the caller's transaction: the file
    /// keeps `next_mutation`, the first id no store has been given, and this store issues the
    /// ids below the new value from memory. The value is read from the file, not from memory,
    /// so two stores open on one file get blocks of their own.
    ///
    /// An id must never be issued twice, even after a power loss: a request carrying it may
    /// reach the server as soon as its transaction commits, and an id issued again would be
    /// answered with another record's remembered result, so that record's edit would be
    /// marked acknowledged without ever being written. So the reservation is on disk before
    /// any id of its block is used by a committed transaction: it commits with the
    /// transaction that made it (synced under `full`; under `normal` commit() then runs
    /// make_durable), and if that transaction rolls back or its commit fails, the block is
    /// dropped and the next id reserves again. Called with the store's lock held.
    void reserve_mutation_ids() {
        constexpr std::int64_t block = 4096;
        const std::int64_t first = meta_int("next_mutation", 1);
        set_meta("next_mutation", std::to_string(first + block));
        next_mutation_ = std::uint64_t(first);
        mutation_limit_ = std::uint64_t(first + block);
    }
    void drop_reservation() noexcept { next_mutation_ = mutation_limit_ = 0; }

    /// Puts every commit so far on disk, whatever the durability setting: one small
    /// transaction under `synchronous = FULL` syncs the write-ahead log, and with it every
    /// earlier commit (the setting cannot change inside a transaction). Called with the
    /// store's lock held.
    void make_durable() {
        if (commit_fault_point_) commit_fault_point_("make_durable");
        exec("PRAGMA synchronous = FULL");
        try {
            exec("BEGIN IMMEDIATE");
            set_meta("durable_at_ms",
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count()));
            exec("COMMIT");
        } catch (...) {
            exec_noexcept("ROLLBACK");
            exec_noexcept("PRAGMA synchronous = NORMAL");
            throw;
        }
        exec("PRAGMA synchronous = NORMAL");
    }

    [[noreturn]] void fail(const char* what) { db_.fail(what); }
    [[noreturn]] void fail_message(const std::string& what) { db_.fail_message(what); }
    void exec(const char* sql) { db_.exec(sql); }
    void exec_noexcept(const char* sql) noexcept { db_.exec_noexcept(sql); }
    statement prepare(const char* sql) { return db_.prepare(sql); }

    std::int64_t meta_int(const char* key, std::int64_t fallback) {
        auto& st = stmt_.get_meta;
        sqlite3_bind_text(st.get(), 1, key, -1, SQLITE_STATIC);
        std::int64_t v = fallback;
        if (sqlite3_step(st.get()) == SQLITE_ROW) v = sqlite3_column_int64(st.get(), 0);
        sqlite3_reset(st.get());
        return v;
    }
    void set_meta(const char* key, const std::string& value) {
        auto& st = stmt_.set_meta;
        sqlite3_bind_text(st.get(), 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st.get(), 2, value.c_str(), int(value.size()), SQLITE_TRANSIENT);
        const int rc = sqlite3_step(st.get());
        sqlite3_reset(st.get());
        if (rc != SQLITE_DONE) fail("cannot write metadata");
    }

    /// Refuses a bad configuration before the file is opened.
    static const sqlite_config& checked(const sqlite_config& config) {
        detail::sqlite_connection::check_page_size(config.page_size, "sqlite_config");
        return config;
    }

    /// Creates or checks the schema. Refuses, without writing, a file that is not a database,
    /// a database of another program, or an offsync schema newer than this code.
    void open_schema(const sqlite_config& config) {
        const bool ours = db_.has_meta_table("offsync_meta");
        if (!ours) db_.set_page_size_of_new_file(config.page_size);
        exec("PRAGMA journal_mode = WAL");
        exec(config.durability == sqlite_durability::full ? "PRAGMA synchronous = FULL"
                                                          : "PRAGMA synchronous = NORMAL");
        if (ours) {
            const auto version =
                db_.query_int("SELECT value FROM offsync_meta WHERE key = 'schema_version'")
                    .value_or(0);
            if (version > schema_version)
                fail_message("schema version " + std::to_string(version) +
                             " is newer than this offsync (" + std::to_string(schema_version) +
                             ")");
            if (version < 1) fail_message("offsync_meta has no schema version");
            // Migrations from older versions go here, each in its own transaction.
        } else {
            exec("BEGIN IMMEDIATE");
            exec(R"(
CREATE TABLE offsync_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE offsync_records (
    collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    deleted INTEGER NOT NULL, delete_pending INTEGER NOT NULL,
    base_version INTEGER NOT NULL, dirty_mask INTEGER NOT NULL, generation INTEGER NOT NULL,
    stamp_wall INTEGER NOT NULL, stamp_logical INTEGER NOT NULL, stamp_node TEXT NOT NULL,
    last_synced INTEGER NOT NULL, sent_mutation_id INTEGER NOT NULL,
    sent_generation INTEGER NOT NULL, parked INTEGER NOT NULL, pushable INTEGER NOT NULL,
    PRIMARY KEY (collection, key)) WITHOUT ROWID;
CREATE INDEX offsync_records_pushable ON offsync_records (collection, key) WHERE pushable = 1;
CREATE TABLE offsync_cursors (collection TEXT PRIMARY KEY, cursor INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE offsync_parked (
    collection TEXT NOT NULL, key TEXT NOT NULL, kind INTEGER NOT NULL,
    local_value TEXT NOT NULL, local_deleted INTEGER NOT NULL, server TEXT,
    error_code TEXT NOT NULL, error_message TEXT NOT NULL, detected_at INTEGER NOT NULL,
    PRIMARY KEY (collection, key)) WITHOUT ROWID;
INSERT INTO offsync_meta VALUES ('schema_version', 1);
)");
            const auto id = make_uuid();
            const auto insert = "INSERT INTO offsync_meta VALUES ('client_id', '" + id + "')";
            exec(insert.c_str());
            exec("COMMIT");
        }
        sqlite3_stmt* raw = nullptr;
        sqlite3_prepare_v2(db_.get(), "SELECT value FROM offsync_meta WHERE key = 'client_id'",
                           -1, &raw, nullptr);
        statement st(raw);
        if (!st || sqlite3_step(st.get()) != SQLITE_ROW) fail_message("the store has no client id");
        client_id_ = column_text(st, 0);
    }

    void prepare_statements() {
        // The columns `read_record` reads, after the value (or a NULL in its place).
        const std::string metadata = ", deleted, delete_pending, base_version, dirty_mask, "
                                     "generation, stamp_wall, stamp_logical, stamp_node, "
                                     "last_synced, sent_mutation_id, sent_generation, parked "
                                     "FROM offsync_records WHERE ";
        const std::string by_key = "collection = ?1 AND key = ?2";
        stmt_.load = prepare(("SELECT value" + metadata + by_key).c_str());
        stmt_.load_metadata = prepare(("SELECT NULL" + metadata + by_key).c_str());
        stmt_.save = prepare("INSERT OR REPLACE INTO offsync_records VALUES "
                             "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)");
        stmt_.insert_new = prepare(
            "INSERT INTO offsync_records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
            "?12, ?13, ?14, ?15, ?16) ON CONFLICT DO NOTHING");
        stmt_.save_metadata = prepare(
            "UPDATE offsync_records SET deleted = ?3, delete_pending = ?4, base_version = ?5, "
            "dirty_mask = ?6, generation = ?7, stamp_wall = ?8, stamp_logical = ?9, "
            "stamp_node = ?10, last_synced = ?11, sent_mutation_id = ?12, sent_generation = ?13, "
            "parked = ?14, pushable = ?15 WHERE collection = ?1 AND key = ?2");
        // The columns apply_applied writes for an unchanged record: clean, so not pushable.
        stmt_.acknowledge = prepare(
            "UPDATE offsync_records SET base_version = ?4, dirty_mask = 0, sent_mutation_id = 0, "
            "last_synced = ?5, pushable = 0 WHERE collection = ?1 AND key = ?2 AND "
            "generation = ?3 AND delete_pending = 0");
        stmt_.remove = prepare("DELETE FROM offsync_records WHERE collection = ?1 AND key = ?2");
        stmt_.pushable = prepare("SELECT key FROM offsync_records WHERE pushable = 1 AND "
                                 "collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3");
        stmt_.pushable_records = prepare(
            ("SELECT key, value" + metadata +
             "pushable = 1 AND collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3")
                .c_str());
        stmt_.cursor = prepare("SELECT cursor FROM offsync_cursors WHERE collection = ?1");
        stmt_.set_cursor = prepare("INSERT OR REPLACE INTO offsync_cursors VALUES (?1, ?2)");
        stmt_.remove_meta = prepare("DELETE FROM offsync_meta WHERE key = ?1");
        stmt_.load_parked = prepare("SELECT * FROM offsync_parked WHERE collection = ?1 AND key = ?2");
        stmt_.save_parked =
            prepare("INSERT OR REPLACE INTO offsync_parked VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        stmt_.remove_parked = prepare("DELETE FROM offsync_parked WHERE collection = ?1 AND key = ?2");
        stmt_.all_parked = prepare(
            "SELECT * FROM offsync_parked WHERE ?1 = '' OR collection = ?1 ORDER BY collection, key");
        stmt_.list = prepare(
            "SELECT key FROM offsync_records WHERE collection = ?1 AND deleted = 0 ORDER BY key");
        stmt_.list_where = prepare(
            "SELECT key FROM offsync_records WHERE collection = ?1 AND deleted = 0 AND "
            "json_extract(value, ?2) = json_extract(?3, '$') ORDER BY key");
        stmt_.check_path = prepare("SELECT json_extract('{}', ?1)");
        stmt_.pending = prepare(
            // Left to itself the planner counts through every record of the collection.
            "SELECT (SELECT count(*) FROM offsync_records INDEXED BY offsync_records_pushable "
            "WHERE pushable = 1 AND collection = ?1), "
            "(SELECT count(*) FROM offsync_parked WHERE collection = ?1 AND kind = 1), "
            "(SELECT count(*) FROM offsync_parked WHERE collection = ?1 AND kind = 2)");
        stmt_.get_meta = prepare("SELECT value FROM offsync_meta WHERE key = ?1");
        stmt_.set_meta = prepare("INSERT OR REPLACE INTO offsync_meta VALUES (?1, ?2)");
    }

    struct statements {
        statement load, load_metadata, save, insert_new, save_metadata, acknowledge, remove, pushable, pushable_records, cursor, set_cursor,
            remove_meta,
            load_parked, save_parked, remove_parked, all_parked, list, list_where, check_path, pending, get_meta, set_meta;
    };

    std::mutex mutex_;
    std::function<void(std::string_view)> commit_fault_point_; ///< see set_commit_fault_point
    detail::sqlite_connection db_;
    sqlite_durability durability_;
    std::string client_id_;
    // The block of mutation ids reserved on disk and not yet issued: [next, limit).
    std::uint64_t next_mutation_ = 0, mutation_limit_ = 0;
    statements stmt_; // declared after db_: finalized before the connection closes
    std::unordered_map<std::string, statement> query_statements_; // likewise
    std::optional<std::unordered_set<std::string>> known_indexes_; ///< see has_index
};

} // namespace offsync
