// offsync — the device's end of the server's change stream (`GET /v1/stream`, docs/live.md): keeps
// one stream open, reconnecting with backoff and jitter, and hands each hint to the app (the
// device facade runs a pull round on it).
#pragma once

#include <offsync/error.hpp>
#include <offsync/live.hpp>
#include <offsync/protocol/http.hpp>
#include <offsync/protocol/json.hpp>
#include <offsync/transport/http.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace offsync {

/// How a device keeps its change stream.
struct live_config {
    /// The device's client id (`basic_sync_engine::client_id()`): the server does not wake a
    /// device with its own writes. Empty: every write wakes it.
    std::string client_id = {};
    /// The wait before the first retry after the stream was lost or refused; it doubles with
    /// every further failure up to `backoff_cap`, shortened at random by up to `jitter`.
    std::chrono::milliseconds backoff_base{1'000};
    std::chrono::milliseconds backoff_cap{60'000};
    double jitter = 0.5;
    /// Seed of the jitter's generator; a random one when zero. Tests fix it.
    std::uint64_t seed = 0;
    /// A stream that brings no byte for this long is taken for dead (a proxy that stopped
    /// forwarding, a server gone without a word) and opened again. Zero: three times the
    /// heartbeat the server announces.
    std::chrono::milliseconds stall_timeout{0};
    /// Called on each hint, on the stream's strand. Must not block.
    std::function<void(const change_hint&)> on_change = {};
    /// Called each time the stream opens, on the stream's strand: what changed while it was
    /// closed was announced to nobody, so the device runs a round now. Must not block.
    std::function<void()> on_open = {};
    /// Called whenever the state changes, with why the stream was lost or refused (empty when
    /// it opens or stops), on the stream's strand; `off` from within `stop()`. Must not block.
    std::function<void(live_state, const diagnostics&)> on_state = {};
};

/// Keeps a change stream open to an offsync server over HTTP/1.1, with the server, base path,
/// timeouts and tokens of an `http_transport_config` (the stream opens its own connection).
///
/// Lost streams (the server restarted, a proxy stalled, a network change) are opened again
/// after `reconnect_delay`; a stream that was open starts the backoff over. A refusal with
/// `Retry-After` (429 too many streams, 503) is waited out at least that long. A 401 asks the
/// token provider for a fresh token at the next attempt. A server without the route (404,
/// 405) makes the state `unavailable` for good: the device's periodic rounds carry on alone.
///
/// Thread safety: the members may be called from any thread; the work and the callbacks run on
/// a strand of the executor. Lifetime: `stop()` (or the destructor) ends the stream and
/// returns once no callback runs (a callback may call it: it then returns at once); no callback
/// begins after it, so what the callbacks use may go away then. The object may be destroyed at
/// any time after `stop()`: its coroutine keeps what it needs alive.
///
/// The token provider is called from the stream's strand, which is not the transport's: a
/// provider shared with an `http_transport` on a multi-threaded executor must be thread-safe
/// (`device` makes it so).
class http_change_stream {
public:
    using executor_type = boost::asio::any_io_executor;

    /// Throws `sync_error` (`errc::invalid_configuration`) for a transport configuration that
    /// cannot work (as `http_transport`'s) or a bad backoff (non-positive, cap below base,
    /// jitter outside [0, 1)).
    http_change_stream(executor_type ex, http_transport_config transport, live_config config)
        : impl_(std::make_shared<impl>(std::move(ex), checked(std::move(transport)),
                                       checked(std::move(config)))) {}

    http_change_stream(const http_change_stream&) = delete;
    http_change_stream& operator=(const http_change_stream&) = delete;
    ~http_change_stream() { stop(); }

    /// Opens the stream and keeps it open until `stop()`. A second call does nothing.
    void start() {
        auto i = impl_;
        boost::asio::dispatch(i->strand, [i] {
            if (i->started || i->stopped) return;
            i->started = true;
            boost::asio::co_spawn(i->strand, run(i), boost::asio::detached);
        });
    }

    /// Closes the stream for good; the state becomes `off`.
    void stop() {
        auto i = impl_;
        {
            std::lock_guard lock(i->mutex);
            if (i->stop_requested) return;
            i->stop_requested = true;
        }
        {
            // Waits for a callback that runs now (on another thread), then says `off`.
            std::lock_guard gate(i->callback_gate);
            {
                std::lock_guard lock(i->mutex);
                i->state = live_state::off;
                i->error = {};
            }
            if (i->config.on_state) i->config.on_state(live_state::off, {});
        }
        boost::asio::dispatch(i->strand, [i] {
            if (i->stopped) return;
            i->stopped = true;
            i->pause.cancel();
            if (i->stream) i->stream->cancel();
        });
    }

    live_state state() const {
        std::lock_guard lock(impl_->mutex);
        return impl_->state;
    }
    /// Why the stream was last lost or refused; empty while it is open.
    diagnostics last_error() const {
        std::lock_guard lock(impl_->mutex);
        return impl_->error;
    }
    /// Streams opened so far (for tests and metrics).
    std::size_t opened() const {
        std::lock_guard lock(impl_->mutex);
        return impl_->opened;
    }

private:
    struct impl {
        impl(executor_type ex, http_transport_config t, live_config c)
            : strand(boost::asio::make_strand(ex)), transport(std::move(t)), config(std::move(c)),
              random(config.seed ? config.seed : std::random_device{}()), pause(strand) {}

        /// Runs a callback unless `stop()` was called; `stop()` waits for it to end.
        template <class F>
        void call(F&& f) {
            std::lock_guard gate(callback_gate);
            if (stopping()) return;
            f();
        }

        void set_state(live_state s, diagnostics why) {
            call([&] {
                {
                    std::lock_guard lock(mutex);
                    if (state == s && error.message == why.message) return;
                    state = s;
                    error = why;
                }
                if (config.on_state) config.on_state(s, why);
            });
        }
        bool stopping() const {
            std::lock_guard lock(mutex);
            return stop_requested;
        }

        boost::asio::strand<executor_type> strand;
        http_transport_config transport;
        live_config config;
        std::mt19937_64 random;
        boost::asio::steady_timer pause;
        std::optional<boost::beast::tcp_stream> stream; ///< the open attempt's
        bool started = false;
        bool stopped = false; ///< on the strand
        bool refresh_token = false;

        std::recursive_mutex callback_gate; ///< held while a callback runs
        mutable std::mutex mutex; ///< guards what other threads read:
        bool stop_requested = false;
        live_state state = live_state::off;
        diagnostics error;
        std::size_t opened = 0;
    };

    /// How one attempt ended.
    struct attempt {
        bool was_open = false;  ///< the stream had opened (the backoff starts over)
        bool unavailable = false;
        diagnostics why;
        std::chrono::milliseconds retry_after{0};
    };

    static http_transport_config checked(http_transport_config t) {
        detail::check_server_address(t, "http_change_stream");
        return t;
    }
    static live_config checked(live_config c) {
        auto require = [](bool ok, const char* why) {
            if (!ok)
                throw sync_error(make_error_code(errc::invalid_configuration),
                                 std::string("http_change_stream: ") + why);
        };
        require(c.backoff_base.count() > 0, "backoff_base must be positive");
        require(c.backoff_cap >= c.backoff_base, "backoff_cap must be at least backoff_base");
        require(c.jitter >= 0 && c.jitter < 1, "jitter must be in [0, 1)");
        require(c.stall_timeout.count() >= 0, "stall_timeout must not be negative");
        return c;
    }

    static boost::asio::awaitable<void> run(std::shared_ptr<impl> i) {
        std::size_t failures = 0;
        while (!i->stopped) {
            i->set_state(live_state::connecting, {});
            auto a = co_await open_once(i);
            i->stream.reset();
            if (i->stopped) break;
            if (a.unavailable) {
                i->set_state(live_state::unavailable, a.why);
                co_return;
            }
            failures = a.was_open ? 1 : failures + 1;
            i->set_state(live_state::waiting, a.why);
            const auto delay =
                live::reconnect_delay(failures, i->config.backoff_base, i->config.backoff_cap,
                                      i->config.jitter, i->random, a.retry_after);
            i->pause.expires_after(delay);
            co_await i->pause.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        }
    }

    static diagnostics failed(std::string message) {
        return {make_error_code(errc::transport_failure), std::move(message)};
    }

    /// Opens the stream and reads it until it ends.
    static boost::asio::awaitable<attempt> open_once(std::shared_ptr<impl> i) {
        namespace http = boost::beast::http;
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        const auto& t = i->transport;
        attempt a;
        i->stream.emplace(i->strand);
        auto& stream = *i->stream;
        stream.expires_after(t.connect_timeout);
        boost::asio::ip::tcp::resolver resolver(i->strand);
        auto [rec, endpoints] = co_await resolver.async_resolve(t.host, std::to_string(t.port), tok);
        if (rec) {
            a.why = failed("cannot resolve " + t.host + ": " + rec.message());
            co_return a;
        }
        if (i->stopped) co_return a;
        auto [cec, ep] = co_await stream.async_connect(endpoints, tok);
        if (cec) {
            a.why = failed("cannot connect to " + t.host + ":" + std::to_string(t.port) + ": " +
                           cec.message());
            co_return a;
        }

        http::request<http::empty_body> req{http::verb::get,
                                            t.base_path + stream_target(i->config.client_id), 11};
        req.set(http::field::host, t.host);
        req.set(http::field::user_agent, t.user_agent);
        req.set(http::field::accept, "text/event-stream");
        req.set(http::field::cache_control, "no-store");
        if (t.token_provider) {
            const auto bearer = t.token_provider(std::exchange(i->refresh_token, false));
            if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
        }
        stream.expires_after(t.request_timeout);
        auto [wec, wn] = co_await http::async_write(stream, req, tok);
        if (wec) {
            a.why = failed("cannot send the stream request: " + wec.message());
            co_return a;
        }

        boost::beast::flat_buffer buffer;
        http::response_parser<http::buffer_body> parser;
        parser.body_limit(boost::none); // a stream has no end; each line is bounded instead
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, tok);
        if (hec) {
            a.why = failed("no answer to the stream request: " + hec.message());
            co_return a;
        }
        const auto status = parser.get().result_int();
        if (status != 200) co_return co_await refused(i, stream, buffer, parser);

        std::array<char, 4096> chunk;
        live::event_parser events;
        std::vector<live_event> got;
        auto stall = i->config.stall_timeout;
        for (;;) {
            // Until `ready` tells the heartbeat, the request's timeout bounds the wait.
            stream.expires_after(stall.count() > 0 ? stall : t.request_timeout);
            parser.get().body().data = chunk.data();
            parser.get().body().size = chunk.size();
            // Some: each event as soon as it arrives (a whole read would wait for the chunk
            // buffer to fill).
            auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, tok);
            if (ec == http::error::need_buffer) ec = {};
            if (i->stopped) co_return a;
            const auto size = chunk.size() - parser.get().body().size;
            got.clear();
            if (!events.feed(std::string_view(chunk.data(), size), got)) {
                a.why = {make_error_code(errc::bad_response), "a stream line over 64 KiB"};
                co_return a;
            }
            for (const auto& e : got) {
                if (i->stopping()) co_return a; // no callback begins after stop()
                if (e.name == live::ready_event) {
                    if (auto beat = live::parse_ready(e.data); beat && i->config.stall_timeout.count() == 0)
                        stall = 3 * *beat;
                    {
                        std::lock_guard lock(i->mutex);
                        ++i->opened;
                    }
                    a.was_open = true;
                    i->set_state(live_state::live, {});
                    i->call([&] {
                        if (i->config.on_open) i->config.on_open();
                    });
                } else if (e.name == live::change_event) {
                    if (auto hint = live::parse_change(e.data))
                        i->call([&] {
                            if (i->config.on_change) i->config.on_change(*hint);
                        });
                } else if (e.name == live::close_event) {
                    a.why = live::parse_close(e.data);
                    if (a.why.code == errc::unauthorized) i->refresh_token = true;
                }
            }
            if (ec == boost::beast::error::timeout) {
                const auto waited = stall.count() > 0 ? stall : t.request_timeout;
                a.why = failed("the stream stalled: nothing from the server for " +
                               std::to_string(waited.count()) + " ms");
                co_return a;
            }
            if (ec || parser.is_done()) {
                if (!a.why.code)
                    a.why = failed(ec ? "the stream broke: " + ec.message()
                                      : std::string("the server ended the stream"));
                co_return a;
            }
        }
    }

    /// A stream the server refused: why, and how long it asks the device to wait.
    static boost::asio::awaitable<attempt>
    refused(std::shared_ptr<impl> i, boost::beast::tcp_stream& stream,
            boost::beast::flat_buffer& buffer,
            boost::beast::http::response_parser<boost::beast::http::buffer_body>& parser) {
        namespace http = boost::beast::http;
        attempt a;
        const auto status = parser.get().result_int();
        std::string body;
        std::array<char, 4096> chunk;
        while (!parser.is_done() && body.size() < (64u << 10)) {
            parser.get().body().data = chunk.data();
            parser.get().body().size = chunk.size();
            auto [ec, n] = co_await http::async_read(stream, buffer, parser,
                                                     boost::asio::as_tuple(boost::asio::use_awaitable));
            if (ec == http::error::need_buffer) ec = {};
            body.append(chunk.data(), chunk.size() - parser.get().body().size);
            if (ec) break;
        }
        const auto fallback = status >= 500 ? errc::server_error : errc::bad_response;
        a.why = parse_error_body(body, fallback);
        a.why.message = "HTTP " + std::to_string(status) + ": " + a.why.message;
        if (auto it = parser.get().find(http::field::retry_after); it != parser.get().end()) {
            std::uint32_t seconds = 0;
            const auto v = std::string_view(it->value().data(), it->value().size());
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
            if (ec == std::errc{} && p == v.data() + v.size())
                a.retry_after = std::chrono::seconds(seconds);
        }
        if (status == 404 || status == 405) a.unavailable = true;
        if (status == 401) i->refresh_token = true;
        co_return a;
    }

    std::shared_ptr<impl> impl_;
};

} // namespace offsync
