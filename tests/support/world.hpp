// Test fixtures: a server with the tests' Landmarks collections (models.hpp) and in-process
// clients around it.
#pragma once

#include "models.hpp"

#include <offsync/offsync.hpp>
#ifdef OFFSYNC_TEST_SQLITE
#include <offsync/server/sqlite_store.hpp>
#include <offsync/storage/sqlite.hpp>
#endif

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <concepts>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace offsync_test {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace offsync;

/// Makes a file read-only for real while it lives: the immutable attribute (which stops root
/// too, on file systems that have it), else permission bits (which stop everyone else).
/// `engaged()` says whether either worked.
class read_only_file {
public:
    explicit read_only_file(std::string path) : path_(std::move(path)) {
        if (const int fd = ::open(path_.c_str(), O_RDONLY); fd >= 0) {
            int flags = 0;
            if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
                flags |= FS_IMMUTABLE_FL;
                immutable_ = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
            }
            ::close(fd);
        }
        if (!immutable_ && ::geteuid() != 0) chmodded_ = ::chmod(path_.c_str(), 0444) == 0;
    }
    ~read_only_file() {
        if (immutable_)
            if (const int fd = ::open(path_.c_str(), O_RDONLY); fd >= 0) {
                int flags = 0;
                if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
                    flags &= ~FS_IMMUTABLE_FL;
                    ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
                }
                ::close(fd);
            }
        if (chmodded_) ::chmod(path_.c_str(), 0644);
    }
    read_only_file(const read_only_file&) = delete;
    read_only_file& operator=(const read_only_file&) = delete;
    bool engaged() const { return immutable_ || chmodded_; }

private:
    std::string path_;
    bool immutable_ = false, chmodded_ = false;
};

/// A database file name in the temporary directory, removed with its WAL files at the end.
struct temp_file {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("offsync-test-" + make_uuid() + ".db");
    ~temp_file() {
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"})
            std::filesystem::remove(path.string() + suffix, ec);
    }
    std::string str() const { return path.string(); }
};

inline std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

/// The `sync_error` that `f` throws (a store's constructor, say), as diagnostics; empty if none.
template <class F>
diagnostics error_of(F&& f) {
    try {
        f();
    } catch (const sync_error& e) {
        return {e.code(), e.what()};
    }
    return {};
}

/// A wall clock the test moves by hand; `offset_ms` skews it like a misset device clock.
struct manual_clock {
    std::int64_t now_ms = 1'764'000'000'000; // late 2025
    wall_clock as_wall_clock(std::int64_t offset_ms = 0) {
        return [this, offset_ms] { return now_ms + offset_ms; };
    }
};

#ifdef OFFSYNC_TEST_SQLITE
/// Removes a test database and its WAL files once the store using it has closed.
using temp_database_path = temp_file;
/// A SQLite store on a fresh temporary file. Tests trade power-loss durability for speed.
struct test_storage : private temp_database_path, public sqlite_storage {
    test_storage() : sqlite_storage(str(), {sqlite_durability::normal, 5000}) {}
};
#else
/// The store the engine tests run against: this binary uses the in-memory store; the
/// offsync-tests-sqlite binary compiles the same tests with OFFSYNC_TEST_SQLITE.
using test_storage = memory_storage;
#endif

using engine_type = basic_sync_engine<test_storage, loopback_transport>;

/// A sync service with the Landmarks collections over the server store this binary tests: in
/// memory, or (OFFSYNC_TEST_SQLITE) a SQLite file that goes away with the service.
inline std::shared_ptr<server::sync_service> make_service(manual_clock& clock,
                                                          server::service_config config = {}) {
    config.clock = clock.as_wall_clock();
#ifdef OFFSYNC_TEST_SQLITE
    struct sqlite_service {
        temp_database_path path;
        server::sqlite_server_store store{path.str(), {sqlite_durability::normal, 2000}};
        server::sync_service service;
        explicit sqlite_service(server::service_config c) : service(store, std::move(c)) {}
    };
    auto holder = std::make_shared<sqlite_service>(std::move(config));
    std::shared_ptr<server::sync_service> service(holder, &holder->service);
#else
    auto service = std::make_shared<server::sync_service>(std::move(config));
#endif
    service->add_collection<Landmark>();
    service->add_collection<Reservation>();
    return service;
}

/// A server store of the interface's required members only, over a memory store: it keeps no
/// groups and cannot tell a client's newest remembered result (the interface's defaults), as a
/// store written against the first interface. Counts the results it looks up.
struct minimal_server_store final : server::server_store {
    server::memory_server_store inner;
    void begin() override { inner.begin(); }
    void commit() override { inner.commit(); }
    void rollback() noexcept override { inner.rollback(); }
    server::server_counters counters() override { return inner.counters(); }
    void set_counters(const server::server_counters& c) override { inner.set_counters(c); }
    std::optional<server::server_record> find(const collection_schema& s, std::string_view owner,
                                              std::string_view key) override {
        return inner.find(s, owner, key);
    }
    void put(const collection_schema& s, std::string_view owner,
             const server::server_record& r) override {
        inner.put(s, owner, r);
    }
    void feed(const collection_schema& s, std::string_view owner, std::uint64_t since,
              std::size_t limit, std::vector<server::server_record>& out) override {
        inner.feed(s, owner, since, limit, out);
    }
    std::optional<mutation_result> find_result(std::string_view client,
                                               std::uint64_t id) override {
        ++lookups;
        return inner.find_result(client, id);
    }
    void remember_result(std::string_view client, const mutation_result& r) override {
        inner.remember_result(client, r);
    }
    void keep_newest_results(std::string_view client, std::size_t count) override {
        inner.keep_newest_results(client, count);
    }
    int lookups = 0;
};

/// Runs `io` until `done` or the deadline; true when done.
template <class Pred>
bool run_until(asio::io_context& io, Pred done,
               std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!done() && std::chrono::steady_clock::now() < deadline)
        io.run_one_for(std::chrono::milliseconds(50));
    return done();
}

/// One device: its store, replica, transport and engine. `Storage` is the test's store
/// (`test_storage`) or a decorator of it (`faulty_storage<test_storage>`); `Transport` is a
/// `loopback_transport` to a service in the process, or any other (`http_client` in
/// support/http.hpp uses an `http_transport`).
template <class Storage, class Transport = loopback_transport>
struct basic_client {
    using client_engine = basic_sync_engine<Storage, Transport>;

    /// A device of `user` on a loopback transport to `service`. Registers both Landmarks
    /// collections with their traits' policies unless `register_collections` is given.
    basic_client(asio::io_context& io, server::sync_service& service, std::string user,
                 wall_clock clock, engine_config config = {},
                 std::function<void(client_engine&)> register_collections = {})
        requires std::same_as<Transport, loopback_transport>
        : basic_client(io, std::move(clock), std::move(config), std::move(register_collections),
                       io.get_executor(), service, std::move(user)) {}

    /// A device whose transport is made of `transport_args`.
    template <class... TransportArgs>
    basic_client(asio::io_context& io, wall_clock clock, engine_config config,
                 std::function<void(client_engine&)> register_collections,
                 TransportArgs&&... transport_args)
        : replica(storage, std::move(clock)),
          transport(std::forward<TransportArgs>(transport_args)...),
          engine(io.get_executor(), replica, transport, std::move(config)), io_(io) {
        if (register_collections) {
            register_collections(engine);
        } else {
            engine.template add_collection<Landmark>();
            engine.template add_collection<Reservation>();
        }
    }

    /// Runs one round to completion on the test's io_context: in process, until nothing is
    /// left to run; over a network, within a deadline.
    sync_report sync() {
        std::optional<sync_report> out;
        engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        if constexpr (std::same_as<Transport, loopback_transport>) {
            io_.restart();
            io_.run();
        } else {
            REQUIRE(run_until(io_, [&] { return out.has_value(); }));
        }
        REQUIRE(out);
        return *out;
    }

    Storage storage;
    basic_replica<Storage> replica;
    Transport transport;
    client_engine engine;

private:
    asio::io_context& io_;
};

using client = basic_client<test_storage>;

/// A server with two landmarks, a manual clock and an io_context for its clients.
struct world {
    manual_clock clock;
    asio::io_context io;
    std::shared_ptr<server::sync_service> owned = make_service(clock);
    server::sync_service& service = *owned;

    world() {
        service.admin_put("landmarks", to_json_object(half_dome()));
        service.admin_put("landmarks", to_json_object(landmark(2, "Golden Gate Bridge")));
    }
    std::unique_ptr<client> device(std::string user, std::int64_t skew_ms = 0,
                                   std::function<void(engine_type&)> collections = {}) {
        return std::make_unique<client>(io, service, std::move(user),
                                        clock.as_wall_clock(skew_ms), engine_config{},
                                        std::move(collections));
    }

    struct device_pair {
        std::unique_ptr<client> first, second;
    };
    /// Two of alice's devices that both hold reservation `id` ("confirmed", party of 2),
    /// created on the first and synced to both.
    device_pair alice_devices_sharing(const std::string& id,
                                      std::function<void(engine_type&)> collections = {}) {
        device_pair pair{device("alice", 0, collections), device("alice", 0, collections)};
        pair.first->replica.put(reservation(id));
        pair.first->sync();
        pair.second->sync();
        return pair;
    }
};

/// Registers reservations with last-write-wins instead of the traits' ask-user.
inline void lww_reservations(engine_type& e) { e.add_collection<Reservation>(last_write_wins{}); }

} // namespace offsync_test
