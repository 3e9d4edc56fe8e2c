// offsync documentation snippets for docs/live.md. Every region between
// `// [snippet: NAME]` and `// [end snippet]` appears verbatim in that page; the build compiles
// this program and ctest runs it.
//
// The story: one user, two devices. The laptop opens the server's change stream and waits;
// the phone adds a note and syncs. The laptop's store has the note a few milliseconds later,
// with no periodic round and no call of the app's. Exits non-zero if it does not arrive
// within five seconds.

#include <offsync/device.hpp>
#include <offsync/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>

namespace notes {
struct Note {
    std::string id;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(Note, (), (id, text))
} // namespace notes

template <>
struct offsync::model_traits<notes::Note> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &notes::Note::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

namespace notes {
using models = offsync::collections<Note>;
}

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {
std::string temp_path(const char* name) {
    auto p = std::filesystem::temp_directory_path() / (std::string("offsync-live-") + name);
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + suffix);
    return p.string();
}
} // namespace

int main() {
    asio::io_context io;
    offsync::server::sync_service service;
    service.add_collections(notes::models{});
    std::istringstream tokens("alice-token-0123456789 alice\n");
    // [snippet: server]
    // Change streams are on by default; the heartbeat keeps proxies from closing idle ones.
    offsync::server::http_server_config server_config;
    server_config.stream_heartbeat = std::chrono::seconds(15);
    offsync::server::http_server server(
        io.get_executor(), service,
        offsync::server::token_file_authenticator::parse(tokens, "tokens"), server_config);
    // [end snippet]
    server.listen({asio::ip::make_address("127.0.0.1"), 0});
    server.start();
    const auto url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    const auto phone_db = temp_path("phone.db"), laptop_db = temp_path("laptop.db");
    int status = 1;

    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        offsync::device_config config;
        config.server = url;
        config.token = "alice-token-0123456789";
        config.database = phone_db;
        offsync::device<notes::models> phone(ex, config);
        config.database = laptop_db;
        offsync::device<notes::models> laptop(ex, config);

        // [snippet: start]
        // The laptop listens: each hint of the server runs a round through background sync.
        offsync::live_config live;
        live.on_state = [](offsync::live_state state, const offsync::diagnostics& why) {
            std::printf("laptop stream: %s %s\n", offsync::to_string(state), why.message.c_str());
        };
        laptop.start_live(live);
        // [end snippet]
        asio::steady_timer wait(ex);
        while (laptop.live() != offsync::live_state::live) {
            wait.expires_after(5ms);
            co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
        }

        // [snippet: edit]
        // The phone adds a note and syncs; the laptop has it milliseconds later.
        phone.put(notes::Note{"n1", "Buy stamps"});
        const auto pushed = std::chrono::steady_clock::now();
        co_await phone.async_sync(asio::as_tuple(asio::use_awaitable));
        // [end snippet]
        while (!laptop.get<notes::Note>("n1") && std::chrono::steady_clock::now() - pushed < 5s) {
            wait.expires_after(1ms);
            co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (auto note = laptop.get<notes::Note>("n1")) {
            const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::steady_clock::now() - pushed);
            std::printf("the laptop has \"%s\" %.1f ms after the phone's sync began\n",
                        note->text.c_str(), static_cast<double>(took.count()) / 1000.0);
            status = 0;
        } else {
            std::fprintf(stderr, "live snippet: the note did not reach the laptop in 5 s\n");
        }
        co_await laptop.async_stop(asio::use_awaitable);
        co_await phone.async_stop(asio::use_awaitable);
        co_await server.async_shutdown(asio::use_awaitable);
    }, asio::detached);
    io.run();
    for (const auto& path : {phone_db, laptop_db})
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    return status;
}
