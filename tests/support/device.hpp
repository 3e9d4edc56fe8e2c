// A device of the tests' Landmarks models on a SQLite file of its own, syncing with an
// `http_world` over HTTP: the app's view, for the tests of the facade and of live changes.
#pragma once

#include "http.hpp"

#include <offsync/device.hpp>

namespace offsync_test {

using test_models = collections<Landmark, Reservation>;
using test_device = device<test_models>;

/// A device of `token`'s user on a fresh SQLite file, syncing with the HTTP world.
struct device_on_disk {
    temp_file file;
    std::unique_ptr<test_device> dev;
    asio::io_context& io;

    device_on_disk(asio::io_context& io, unsigned short port, const std::string& token)
        : io(io) {
        device_config c;
        c.database = file.str();
        c.server = "http://127.0.0.1:" + std::to_string(port);
        c.token = token;
        c.transport.connect_timeout = 2s;
        c.transport.request_timeout = 3s;
        c.storage.durability = sqlite_durability::normal;
        dev = std::make_unique<test_device>(io.get_executor(), std::move(c));
    }
    /// The device's contract: stopped, with no round left running on it, before it goes (a
    /// round suspended on a request would otherwise be destroyed with the io_context, after
    /// the engine it refers to). Then the store closes before its file goes.
    ~device_on_disk() {
        if (dev) {
            bool stopped = false;
            dev->async_stop([&] { stopped = true; });
            run_until(io, [&] { return stopped; }, 10s);
        }
        dev.reset();
    }

    sync_report sync() {
        std::optional<sync_report> out;
        dev->async_sync([&](error_code, sync_report r) { out = std::move(r); });
        REQUIRE(run_until(io, [&] { return out.has_value(); }));
        return *out;
    }
    test_device* operator->() { return dev.get(); }
};

} // namespace offsync_test
