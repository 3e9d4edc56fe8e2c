// Crash safety with real processes: devices syncing a SQLite store over HTTP are killed with
// SIGKILL at random points, many times; after restarts every store converges with the server.
#include "support.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/storage/sqlite.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <csignal>
#include <filesystem>
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
    // Restart each device once more and let it settle, twice round so each sees the other.
    for (int pass = 0; pass < 2; ++pass)
        for (const auto& file : db) {
            auto pid = spawn({client, "settle", file, port, "crash-token-alice-0123456789", "0"});
            const int status = wait_bounded(pid, std::chrono::seconds(60));
            REQUIRE(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }

    pull_response all;
    REQUIRE(!service->pull("alice", {"reservations", 0, 5000}, all));
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

    srv.async_shutdown([](error_code) {});
    work.reset();
    server_thread.join();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
