// offsync documentation snippets for docs/background.md. Every region between
// `// [snippet: NAME]` and `// [end snippet]` appears verbatim in that page; the build compiles
// this program and ctest runs it.
//
// The story: a notes app wires background sync to its lifecycle. It launches, the user writes a
// note, the app moves to the background, and the round that move triggers pushes the note; then
// the app shuts down cleanly. It runs on real time but waits for nothing: the only round is the
// one the trigger starts at once. The program exits non-zero if the note does not reach the
// server.

#include <offsync/background.hpp>
#include <offsync/offsync.hpp>
#include <offsync/testing/manual_timers.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/describe/class.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace asio = boost::asio;

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

// [snippet: engine-type]
// The engine's type: here one assembled in memory; an app on the facade writes
// offsync::device<Models>::engine_type.
using engine_type =
    offsync::basic_sync_engine<offsync::memory_storage, offsync::loopback_transport>;
// [end snippet]

// The page's first lines, compiled (the story below runs the same calls on a scheduler of its
// own).
void start_in_background(engine_type& engine, offsync::background_config config) {
    // [snippet: start]
    offsync::background_sync<engine_type> background(engine, config); // real time
    background.start();
    // [end snippet]
}

/// The page's test on manual time: the first round runs at exactly +15 minutes, and no real
/// time passes. Returns the rounds run.
std::size_t on_manual_time(asio::io_context& io, engine_type& engine) {
    offsync::background_config config;
    // [snippet: manual-time]
    offsync::manual_timer_source timers;
    offsync::basic_background_sync<engine_type, offsync::manual_timer_source> background(
        engine, config, timers);
    background.start();
    timers.run_for(io, std::chrono::minutes(15)); // the first round runs, at exactly +15 min
    // [end snippet]
    const auto rounds = background.state().rounds;
    bool stopped = false;
    background.async_stop([&] { stopped = true; });
    while (!stopped) timers.run_for(io, std::chrono::seconds(1));
    return rounds;
}

// [snippet: lifecycle]
// The app's sync controller: one background scheduler around the app's engine, fed by the
// lifecycle events the platform delivers.
class app_sync {
public:
    explicit app_sync(engine_type& engine) : background_(engine, make_config()) {}

    void launched() { background_.start(); }
    void entered_background() { background_.app_backgrounded(); }
    void connectivity_changed(bool online) {
        if (online) background_.network_restored();
    }
    void user_edited() { background_.local_edit(); }

    // Completes once the round in flight, if any, has ended: the engine may go after it.
    template <class Token>
    auto shutting_down(Token&& token) {
        return background_.async_stop(std::forward<Token>(token));
    }

    offsync::background_state state() const { return background_.state(); }

private:
    static offsync::background_config make_config() {
        offsync::background_config config;
        config.earliest_begin = std::chrono::minutes(15); // like a mobile OS's refresh task
        config.interval = std::chrono::minutes(15);
        config.max_round_duration = std::chrono::seconds(30);
        config.on_state_change = [](const offsync::background_state& s) {
            std::printf("sync: %s, %zu change(s) waiting, %zu round(s), %s\n",
                        offsync::to_string(s.phase), s.pending.dirty, s.rounds,
                        s.last_error ? s.last_error.message.c_str() : "no error");
        };
        return config;
    }

    offsync::background_sync<engine_type> background_;
};
// [end snippet]

int main() {
    asio::io_context io;
    offsync::server::sync_service service;
    service.add_collection<notes::Note>();

    offsync::memory_storage store;
    offsync::basic_replica replica(store);
    offsync::loopback_transport link(io.get_executor(), service, "user-1");
    engine_type engine(io.get_executor(), replica, link);
    engine.add_collection<notes::Note>();

    // [snippet: events]
    app_sync sync(engine);
    sync.launched();                              // first round in 15 minutes
    replica.put(notes::Note{"n-1", "Call the plumber"});
    sync.user_edited();                           // a round once edits pause
    sync.entered_background();                    // a round now: push before suspension
    while (sync.state().rounds == 0) io.run_one();

    bool stopped = false;
    sync.shutting_down([&] { stopped = true; }); // cancels the timers still pending
    io.run();                                     // returns: nothing is left to run
    // [end snippet]

    const auto manual_rounds = on_manual_time(io, engine);
    const auto state = sync.state();
    const bool ok = stopped && manual_rounds == 1 && !state.last_error && state.pending.dirty == 0 &&
                    service.get("user-1", "notes", "n-1").has_value();
    if (!ok) {
        std::fprintf(stderr, "background snippet: the note did not reach the server\n");
        return 1;
    }
    return 0;
}
