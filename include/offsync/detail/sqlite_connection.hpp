// offsync — what the SQLite stores (client and server) share: one connection, statements,
// errors that name the file, and the durability setting.
#pragma once

#include <offsync/error.hpp>

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace offsync {

/// How hard a commit waits for the disk (SQLite's `synchronous` pragma, in WAL mode).
enum class sqlite_durability {
    /// A commit survives a crash of the process. A power loss may roll back the last commits.
    /// Faster.
    normal,
    /// Every commit is on disk before it returns: survives a power loss too.
    full,
};

namespace detail {

struct sqlite_stmt_finalizer {
    void operator()(sqlite3_stmt* st) const { sqlite3_finalize(st); }
};
using sqlite_statement = std::unique_ptr<sqlite3_stmt, sqlite_stmt_finalizer>;

/// One SQLite connection whose failures throw `sync_error(errc::storage_failure)` with the
/// file's path and SQLite's message.
class sqlite_connection {
public:
    sqlite_connection(const std::string& path, int busy_timeout_ms) : path_(path) {
        sqlite3* db = nullptr;
        // No SQLite mutex: each store serialises its use of the connection itself (a client
        // transaction holds the store's lock, the sync service holds its mutex), so SQLite's
        // own per-call locking would only cost time.
        const int rc = sqlite3_open_v2(path.c_str(), &db,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                           SQLITE_OPEN_NOMUTEX,
                                       nullptr);
        db_.reset(db);
        if (rc != SQLITE_OK) fail("cannot open");
        // SQLite quietly opens a write-protected file read-only; every store needs to write.
        if (sqlite3_db_readonly(db, "main") == 1)
            fail_message("the file is read-only; offsync needs to write to it");
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, busy_timeout_ms);
    }

    sqlite3* get() const noexcept { return db_.get(); }
    const std::string& path() const noexcept { return path_; }

    [[noreturn]] void fail(const char* what) const {
        fail_message(std::string(what) + ": " + sqlite3_errmsg(db_.get()));
    }
    [[noreturn]] void fail_message(const std::string& what) const {
        throw sync_error(make_error_code(errc::storage_failure), path_ + ": " + what);
    }

    void exec(const char* sql) {
        char* message = nullptr;
        if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &message) != SQLITE_OK) {
            std::string text = message ? message : "unknown error";
            sqlite3_free(message);
            fail_message(text + " (in: " + std::string(sql).substr(0, 60) + ")");
        }
    }
    void exec_noexcept(const char* sql) noexcept {
        sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
    }

    /// A statement kept for the connection's lifetime.
    sqlite_statement prepare(const char* sql) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) !=
            SQLITE_OK)
            fail("cannot prepare a statement");
        return sqlite_statement(st);
    }

    /// Steps `st`; a failure resets it and throws.
    int step(const sqlite_statement& st) {
        const int rc = sqlite3_step(st.get());
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            reset(st);
            fail("query failed");
        }
        return rc;
    }
    void run(const sqlite_statement& st) {
        step(st);
        reset(st);
    }
    static void reset(const sqlite_statement& st) {
        sqlite3_reset(st.get());
        sqlite3_clear_bindings(st.get());
    }

    /// Resets a statement when the scope ends, also when reading one of its rows throws (a
    /// corrupt stored value): a kept statement left mid-row would ignore its next bindings.
    class reset_on_exit {
    public:
        explicit reset_on_exit(const sqlite_statement& st) noexcept : st_(st) {}
        reset_on_exit(const reset_on_exit&) = delete;
        reset_on_exit& operator=(const reset_on_exit&) = delete;
        ~reset_on_exit() { reset(st_); }

    private:
        const sqlite_statement& st_;
    };
    static void bind_text(const sqlite_statement& st, int index, std::string_view text) {
        // An empty view may have no data pointer, which SQLite would bind as NULL.
        sqlite3_bind_text(st.get(), index, text.empty() ? "" : text.data(), int(text.size()),
                          SQLITE_TRANSIENT);
    }
    /// Binds `text` without copying it: only where the statement is stepped and reset (which
    /// clears the binding) before `text` goes away.
    static void bind_text_unowned(const sqlite_statement& st, int index, std::string_view text) {
        sqlite3_bind_text(st.get(), index, text.empty() ? "" : text.data(), int(text.size()),
                          SQLITE_STATIC);
    }
    /// The column's text in SQLite's buffer: valid until the statement steps or resets.
    static std::string_view column_view(const sqlite_statement& st, int index) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), index));
        return text ? std::string_view(text, std::size_t(sqlite3_column_bytes(st.get(), index)))
                    : std::string_view();
    }
    static std::string column_text(const sqlite_statement& st, int index) {
        return std::string(column_view(st, index));
    }

    /// The first column of the first row of `sql` as an integer; nullopt if the statement
    /// cannot be prepared or returns no row. The statement is finalized before returning.
    std::optional<std::int64_t> query_int(const char* sql) {
        sqlite3_stmt* raw = nullptr;
        sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr);
        const sqlite_statement st(raw);
        if (!st || sqlite3_step(st.get()) != SQLITE_ROW) return std::nullopt;
        return sqlite3_column_int64(st.get(), 0);
    }

    /// Checks a configured page size before any file is touched: SQLite would silently keep
    /// its default for a size it does not support.
    static void check_page_size(int page_size, const char* config_name) {
        if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0)
            throw std::invalid_argument(std::string(config_name) + ": page_size " +
                                        std::to_string(page_size) +
                                        " is not a power of two from 512 to 65536");
    }

    /// Sets the page size of a database that has no table yet, before anything (the switch to
    /// WAL included) writes its first page; a file that holds pages keeps its own.
    void set_page_size_of_new_file(int page_size) {
        const std::string pragma = "PRAGMA page_size = " + std::to_string(page_size);
        exec(pragma.c_str());
    }

    /// Whether the database holds `meta_table`. Throws, writing nothing, for a file that is not
    /// a database or a database of another program (tables, but not ours).
    bool has_meta_table(std::string_view meta_table) {
        // Reading the schema first makes SQLite check the header: "file is not a database".
        auto locked = [](int rc) { return (rc & 0xff) == SQLITE_BUSY; };
        const char* locked_message =
            "the database is locked by another process (another server on this file?)";
        sqlite3_stmt* raw = nullptr;
        int rc = sqlite3_prepare_v2(db_.get(),
                                    "SELECT count(*), count(CASE name WHEN ?1 THEN 1 END) "
                                    "FROM sqlite_master WHERE type = 'table'",
                                    -1, &raw, nullptr);
        if (locked(rc)) fail_message(locked_message);
        if (rc != SQLITE_OK) fail("not a usable SQLite database");
        sqlite_statement st(raw);
        bind_text(st, 1, meta_table);
        rc = sqlite3_step(st.get());
        if (locked(rc)) fail_message(locked_message);
        if (rc != SQLITE_ROW) fail("not a usable SQLite database");
        const int tables = sqlite3_column_int(st.get(), 0);
        const int ours = sqlite3_column_int(st.get(), 1);
        if (tables > 0 && ours == 0)
            fail_message("the database belongs to another program (no " +
                         std::string(meta_table) + " table)");
        return ours != 0;
    }

private:
    struct db_closer {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };
    std::string path_;
    std::unique_ptr<sqlite3, db_closer> db_;
};

} // namespace detail
} // namespace offsync
