// offsync documentation snippets for docs/app-api.md. Every region between
// `// [snippet: NAME]` and `// [end snippet]` appears verbatim in that page; the build compiles
// this program and ctest runs it.
//
// The story: a to-do app. A server on 127.0.0.1 and two devices of one user, each a
// `offsync::device` on a SQLite file of its own. The phone adds tasks; the laptop, listening,
// hears them arrive; both comment on one task while apart, and the laptop settles the conflict
// with a merged value. The program exits non-zero if any step does not turn out as described.

#include "../../examples/todo/model.hpp" // the to-do app's models: Task, Comment, todo::models

#include <offsync/device.hpp>
#include <offsync/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>

namespace asio = boost::asio;


namespace {
int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "app-api snippet: %s\n", what);
        ++failures;
    }
}
std::string temp_path(const char* name) {
    auto p = std::filesystem::temp_directory_path() / (std::string("offsync-app-api-") + name);
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + suffix);
    return p.string();
}
} // namespace

int main() {
    asio::io_context io;

    // [snippet: server]
    offsync::server::sync_service service; // in memory; server/sqlite_store.hpp keeps it on disk
    service.add_collections(todo::models{});
    std::istringstream tokens("phone-and-laptop-token-0123 alice\n");
    offsync::server::http_server server(
        io.get_executor(), service,
        offsync::server::token_file_authenticator::parse(tokens, "tokens"));
    server.listen({asio::ip::make_address("127.0.0.1"), 0}); // port 0: any free port
    server.start();
    const auto url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    // [end snippet]

    const auto phone_db = temp_path("phone.db"), laptop_db = temp_path("laptop.db");

    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        // [snippet: device]
        offsync::device_config config;
        config.database = phone_db;
        config.server = url; // "http://host:port[/base]", checked here
        config.token = "phone-and-laptop-token-0123";
        offsync::device<todo::models> phone(co_await asio::this_coro::executor, config);

        phone.put(todo::Task{"t1", "Buy milk", false, 1, "2027-01-10"});
        phone.put(todo::Task{"t2", "Book flights", false, 3, "2027-01-31"});
        phone.put(todo::Comment{"c1", "t2", "window seats"});

        auto [ec, report] = co_await phone.async_sync(asio::as_tuple(asio::use_awaitable));
        if (ec) std::fprintf(stderr, "sync failed: %s\n", report.error_message.c_str());
        // [end snippet]
        expect(!ec && report.applied == 3, "the phone pushes its three records");

        config.database = laptop_db;
        offsync::device<todo::models> laptop(co_await asio::this_coro::executor, config);

        // [snippet: listen]
        // Called on the device's executor after each commit that changes tasks: local edits,
        // pulled pages, settled conflicts. Each key once, at its latest value.
        int heard = 0;
        auto subscription = laptop.subscribe<todo::Task>(
            [&](const std::vector<offsync::record_change<todo::Task>>& changes) {
                for (const auto& change : changes) {
                    if (change.value)
                        std::printf("task %s: %s\n", change.key.c_str(), change.value->title.c_str());
                    else
                        std::printf("task %s: deleted\n", change.key.c_str());
                    ++heard;
                }
            });
        // [end snippet]

        // [snippet: watch]
        // The same changes to wait for, here the open tasks due in January.
        auto january = laptop.watch<todo::Task>(offsync::field(&todo::Task::done) == false &&
                                                offsync::field(&todo::Task::due) < "2027-02-01");
        co_await laptop.async_sync(asio::as_tuple(asio::use_awaitable));
        auto [wait_error, due] = co_await january.async_wait(asio::as_tuple(asio::use_awaitable));
        // [end snippet]
        expect(!wait_error && due.size() == 2, "the laptop's stream hears the two pulled tasks");
        expect(heard == 2, "the laptop's callback hears the two pulled tasks");

        // [snippet: query]
        laptop.create_index(&todo::Task::due); // once; SQLite then serves ranges on `due`
        auto urgent = laptop.find(offsync::field(&todo::Task::priority) >= 3 &&
                                  offsync::field(&todo::Task::due) < "2027-02-01");
        // Pages of 50 in key order, for a long list.
        offsync::page_request request{.after = "", .limit = 50};
        for (;;) {
            auto page = laptop.list<todo::Task>(request);
            for (const auto& task : page.items) std::printf("- %s\n", task.title.c_str());
            if (page.next.empty()) break;
            request.after = page.next;
        }
        // [end snippet]
        expect(urgent.size() == 1 && urgent[0].id == "t2", "the query finds the urgent task");

        // Both edit the comment while apart; the phone syncs first.
        phone.put(todo::Comment{"c1", "t2", "window seats, please"});
        co_await phone.async_sync(asio::as_tuple(asio::use_awaitable));
        laptop.put(todo::Comment{"c1", "t2", "aisle seats"});
        co_await laptop.async_sync(asio::as_tuple(asio::use_awaitable));

        // [snippet: conflicts]
        for (const auto& conflict : laptop.conflicts<todo::Comment>()) {
            // conflict.mine and conflict.server are typed (empty when that side deleted it);
            // conflict.changed_fields names what differs.
            todo::Comment merged = *conflict.server;
            merged.text = conflict.server->text + " (or: " + conflict.mine->text + ")";
            laptop.resolve_merged(merged); // or resolve<todo::Comment>(key, keep_mine/use_server)
        }
        for (const auto& rejected : laptop.rejected<todo::Task>())
            std::printf("the server refused %s: %s\n", rejected.key.c_str(), rejected.message.c_str());
        // [end snippet]
        co_await laptop.async_sync(asio::as_tuple(asio::use_awaitable));
        co_await phone.async_sync(asio::as_tuple(asio::use_awaitable));
        auto settled = phone.get<todo::Comment>("c1");
        expect(settled && settled->text == "window seats, please (or: aisle seats)",
               "the merged comment reaches the phone");
        expect(laptop.conflicts<todo::Comment>().empty(), "no conflict is left");

        subscription.unsubscribe();
        january.close();
        co_await server.async_shutdown(asio::as_tuple(asio::use_awaitable));
    }, [&](std::exception_ptr e) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                std::fprintf(stderr, "app-api snippet: %s\n", x.what());
            }
            ++failures;
            io.stop();
        }
    });
    io.run();
    for (const auto& path : {phone_db, laptop_db})
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    return failures == 0 ? 0 : 1;
}
