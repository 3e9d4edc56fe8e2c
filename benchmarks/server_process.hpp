// offsync-bench: the server side. End to end, the server runs in a child process: this binary
// started again as `offsync-bench serve` (serve.cpp), which prints its port, then reads commands
// on stdin and answers on stdout: `stats` (cumulative request counters and memory as one JSON
// line), `reset` (restart the peak RSS; answers `ok`), `grant GROUP USER` (answers `ok` or
// `error MESSAGE`), `quit` (shut down; answers the last stats). `server_process` is the parent's handle on it.
#pragma once

#include "workload.hpp"
#include "options.hpp"

#include <offsync/server/sqlite_store.hpp>
#include <offsync/server/sync_service.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace offsync_bench {

/// A sync service for the workload's collection and the store under it.
struct server_state {
    std::unique_ptr<offsync::server::sqlite_server_store> store;
    std::unique_ptr<offsync::server::sync_service> service;
};

/// The one place that picks the server's storage: "sqlite" (a file at `db`) or "memory".
inline server_state make_server_state(const std::string& store, const std::string& db,
                                      offsync::server::service_config config = {}) {
    server_state s;
    if (store == "sqlite") {
        s.store = std::make_unique<offsync::server::sqlite_server_store>(db);
        s.service = std::make_unique<offsync::server::sync_service>(*s.store, std::move(config));
    } else {
        s.service = std::make_unique<offsync::server::sync_service>(std::move(config));
    }
    s.service->add_collection<Reservation>();
    s.service->add_collection<GroupedReservation>();
    return s;
}

/// The `serve` command: runs the server until `quit` (serve.cpp).
int serve_main(int argc, char** argv);

/// A number of a stats object (the server's counters), 0 if absent.
inline double number_of(const boost::json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return double(v->get_int64());
    if (v->is_uint64()) return double(v->get_uint64());
    if (v->is_double()) return v->get_double();
    return 0;
}

/// The parent's handle on a `serve` child, started on the store of `--server-store` (a SQLite
/// file at `db`), on `--server-cpus` with `--server-threads` threads. Stopped when destroyed.
class server_process {
public:
    server_process(const options& o, const std::string& db) {
        int to_child[2], from_child[2];
        if (pipe(to_child) || pipe(from_child)) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
        posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
        posix_spawn_file_actions_addclose(&fa, to_child[1]);
        posix_spawn_file_actions_addclose(&fa, from_child[0]);
        const auto self = std::filesystem::read_symlink("/proc/self/exe").string();
        std::vector<std::string> args{self, "serve", "--store", o.server_store};
        if (!db.empty()) args.insert(args.end(), {"--db", db});
        if (!o.server_cpus.empty()) args.insert(args.end(), {"--cpus", o.server_cpus});
        args.insert(args.end(), {"--threads", std::to_string(o.server_threads)});
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

    boost::json::object stats() {
        send("stats");
        return boost::json::parse(read_line()).as_object();
    }
    void reset_peak() {
        send("reset");
        read_line();
    }
    /// Makes `user` a member of `group` (creating both if need be), as an admin would.
    void grant(const std::string& group, const std::string& user) {
        send(("grant " + group + " " + user).c_str());
        const auto answer = read_line();
        if (answer != "ok") throw std::runtime_error("the server refused a grant: " + answer);
    }
    /// Stops the child; returns its last stats, with its lifetime peak from wait4.
    boost::json::object stop() {
        send("quit");
        boost::json::object last;
        try {
            last = boost::json::parse(read_line()).as_object();
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

} // namespace offsync_bench
