// Crash safety with real processes: devices syncing a SQLite store over HTTP are killed with
// SIGKILL at random points, many times, and so is a server on a SQLite store; after restarts
// every store converges with the server, no acknowledged write is lost and no mutation is
// applied twice.
#include "support/world.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/server/sqlite_store.hpp>
#include <offsync/storage/sqlite.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

using namespace offsync_test;

namespace {

pid_t spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
    return pid;
}

/// Waits for the child to end, at most `limit`; kills it if it has not. Returns its status.
int wait_bounded(pid_t pid, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status;
}

/// Kills a process that must still be running and reaps it.
void kill_and_reap(pid_t pid) {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
}

/// Runs a device until it has pushed everything, twice round so each device sees the other's.
void settle(const std::string (&db)[2], const std::string& port, const std::string& token) {
    for (int pass = 0; pass < 2; ++pass)
        for (const auto& file : db) {
            auto pid = spawn({OFFSYNC_CRASH_CLIENT, "settle", file, port, token, "0"});
            const int status = wait_bounded(pid, std::chrono::seconds(60));
            REQUIRE(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }
}

/// Every device's store holds exactly what the server holds, with nothing left to push.
void check_converged(server::sync_service& service, const std::string (&db)[2]) {
    pull_response all;
    REQUIRE(!service.pull("alice", {"reservations", 0, 5000}, all));
    std::map<std::string, json::object> server_view;
    for (auto& c : all.changes)
        if (!c.deleted) server_view[std::string(c.id.as_string())] = c.value;
    CHECK(!server_view.empty());
    for (const auto& file : db) {
        CAPTURE(file);
        sqlite_storage store(file);
        CHECK(store.pending("reservations").dirty == 0);
        std::map<std::string, json::object> local_view;
        for (auto& [key, rec] : store.list("reservations")) local_view[key] = rec.value;
        CHECK(local_view == server_view);
    }
}

/// A server process on `data`; returns once it listens. `port` "0" picks one and sets it.
struct server_process {
    std::filesystem::path data, port_file;
    std::string token, port = "0";
    pid_t pid = 0;

    void start() {
        std::error_code ec;
        std::filesystem::remove(port_file, ec);
        pid = spawn({OFFSYNC_CRASH_SERVER, data.string(), port_file.string(), token, port});
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!std::filesystem::exists(port_file)) {
            int status = 0;
            REQUIRE(waitpid(pid, &status, WNOHANG) == 0); // it did not die on start
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::ifstream(port_file) >> port;
        REQUIRE(port != "0");
    }
};

} // namespace

TEST_CASE("devices killed with SIGKILL at random points converge after restarts", "[crash]") {
    const auto seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);

    manual_clock clock;
    auto service = make_service(clock);
    asio::io_context server_io;
    std::istringstream tokens("crash-token-alice-0123456789 alice\n");
    server::http_server srv(server_io.get_executor(), *service,
                            server::token_file_authenticator::parse(tokens));
    srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    auto work = asio::make_work_guard(server_io);
    std::thread server_thread([&] { server_io.run(); });
    const auto port = std::to_string(srv.local_endpoint().port());

    const auto dir = std::filesystem::temp_directory_path() / ("offsync-crash-" + make_uuid());
    std::filesystem::create_directories(dir);
    const std::string db[2] = {(dir / "phone.db").string(), (dir / "laptop.db").string()};
    const std::string client = OFFSYNC_CRASH_CLIENT;

    int kills = 0;
    for (int round = 0; round < 12; ++round) {
        const auto& file = db[round % 2];
        auto pid = spawn({client, "run", file, port, "crash-token-alice-0123456789",
                          std::to_string(seed + round)});
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 300));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) ++kills;
        else FAIL("the crash client ended by itself, status " << status);
    }
    CHECK(kills == 12);
    settle(db, port, "crash-token-alice-0123456789");
    check_converged(*service, db);

    srv.async_shutdown([](error_code) {});
    work.reset();
    server_thread.join();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

TEST_CASE("a server killed with SIGKILL at random points loses no acknowledged write and "
          "applies nothing twice",
          "[crash]") {
    const auto seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const std::string token = "crash-token-alice-0123456789";

    const auto dir = std::filesystem::temp_directory_path() / ("offsync-crash-" + make_uuid());
    std::filesystem::create_directories(dir);
    const std::string db[2] = {(dir / "phone.db").string(), (dir / "laptop.db").string()};
    server_process server{dir / "server.db", dir / "port", token};
    server.start();

    // Both devices edit and sync the whole time; the server dies under them again and again,
    // and now and then a device dies too.
    pid_t devices[2];
    for (int d = 0; d < 2; ++d)
        devices[d] = spawn({OFFSYNC_CRASH_CLIENT, "run", db[d], server.port, token,
                            std::to_string(seed + d)});
    for (int round = 0; round < 8; ++round) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
        kill_and_reap(server.pid);
        if (rng() % 3 == 0) {
            const int d = int(rng() % 2);
            kill_and_reap(devices[d]);
            devices[d] = spawn({OFFSYNC_CRASH_CLIENT, "run", db[d], server.port, token,
                                std::to_string(seed + 100 + round)});
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 100));
        server.start(); // the same port: the devices were told it once
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (auto pid : devices) kill_and_reap(pid);
    settle(db, server.port, token);
    kill_and_reap(server.pid);

    server::sqlite_server_store store(server.data.string());
    server::sync_service service(store);
    service.add_collection<Landmark>();
    service.add_collection<Reservation>();
    check_converged(service, db);

    // Every version the server ever issued belongs to exactly one applied mutation: a
    // mutation applied twice would have taken two versions for one remembered result. A row
    // stands for a run of plain successes ending at its version.
    sqlite3_stmt* raw = nullptr;
    REQUIRE(sqlite3_prepare_v2(store.native_handle(),
                               "SELECT version, run FROM offsync_server_results "
                               "WHERE detail IS NULL",
                               -1, &raw, nullptr) == SQLITE_OK);
    std::multiset<std::uint64_t> versions;
    while (sqlite3_step(raw) == SQLITE_ROW) {
        const auto last = std::uint64_t(sqlite3_column_int64(raw, 0));
        const auto run = std::uint64_t(sqlite3_column_int64(raw, 1));
        REQUIRE(run >= 1);
        REQUIRE(run <= last);
        for (std::uint64_t v = last - run + 1; v <= last; ++v) versions.insert(v);
    }
    sqlite3_finalize(raw);
    CHECK(versions.size() == service.last_version());
    CHECK(std::set<std::uint64_t>(versions.begin(), versions.end()).size() == versions.size());
    CHECK(service.last_version() > 0);

    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
