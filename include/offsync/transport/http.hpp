// offsync — a TransportPolicy that speaks protocol v1 over HTTP/1.1 with Boost.Beast.
#pragma once

#include <offsync/detail/http_pipeline.hpp>
#include <offsync/error.hpp>
#include <offsync/protocol.hpp>
#include <offsync/transport/server_url.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace offsync {

/// Where and how an `http_transport` talks to its server. Give the server as a URL
/// (`http_transport_config::from_url("http://127.0.0.1:8080")`), or set `host` and `port`.
struct http_transport_config {
    std::string host = "127.0.0.1"; ///< a name or an address; also sent as `Host`
    std::uint16_t port = 80;        ///< 1 to 65535
    /// Prepended to every route: "/api" makes the push route "/api/v1/sync/push".
    std::string base_path;
    /// Bounds opening a connection (name resolution is left to the system resolver).
    std::chrono::milliseconds connect_timeout{10'000};
    /// Bounds writing one request and reading its whole response.
    std::chrono::milliseconds request_timeout{30'000};
    /// Largest response body accepted; a larger one fails the operation with `bad_response`.
    std::size_t max_response_bytes = 64u << 20;
    /// Returns the Bearer token for the next request (empty: no `Authorization` header).
    /// Called before every request with `refresh == false`, and once with `refresh == true`
    /// after the server refused a token (401), before the one retry. It runs on the
    /// transport's executor inside an operation: keep it quick (return a cached token, refresh
    /// it only when asked to).
    std::function<std::string(bool refresh)> token_provider;
    std::string user_agent = "offsync";
    /// Requests written on the connection before the answers to the ones before them have
    /// been read (HTTP/1.1 pipelining), at most: the engine then pushes its next batch while
    /// the server works on the last, and the server finds it waiting. 1 sends each request
    /// after the answer to the one before, for a proxy in between that mishandles pipelining.
    std::size_t max_requests_in_flight = 2;

    /// A configuration for the server at `url` (`http://host[:port][/base]`), the rest left at
    /// its defaults. Throws `sync_error` (`errc::invalid_configuration`) naming what is wrong
    /// with the URL (parse_server_url).
    static http_transport_config from_url(std::string_view url) {
        auto parsed = parse_server_url(url);
        http_transport_config c;
        c.host = std::move(parsed.host);
        c.port = parsed.port;
        c.base_path = std::move(parsed.base_path);
        return c;
    }
};

namespace detail {

/// Throws `sync_error` (`errc::invalid_configuration`, the message starting with `who`) for a
/// configuration that cannot reach a server: no host, port 0, a base path that does not start
/// with '/'.
inline void check_server_address(const http_transport_config& config, const char* who) {
    auto require = [who](bool ok, const char* why) {
        if (!ok)
            throw sync_error(make_error_code(errc::invalid_configuration),
                             std::string(who) + ": " + why);
    };
    require(!config.host.empty(), "no host");
    require(config.port != 0, "port 0 (give the server's port, 1 to 65535)");
    require(config.base_path.empty() || config.base_path.front() == '/',
            "base_path must be empty or start with '/'");
}

} // namespace detail

/// Carries push batches and pull pages to an offsync HTTP server (protocol v1): one request per
/// batch or page, over one keep-alive connection that is opened on first use and reused.
/// Operations started while others are outstanding are written on the same connection without
/// waiting for the answers before them, up to `max_requests_in_flight` unanswered; the server
/// answers, and the operations complete, in the order they were started.
///
/// Errors: each operation completes with `(error_code, response)`, where the code is
/// - `errc::transport_failure`: no connection, a timeout, or the connection broke before the
///   whole response arrived. A request whose answer had not begun when its connection closed
///   is sent once more on a new connection first, unless it was the only request the
///   connection ever carried: a reused keep-alive connection the server had closed while it
///   sat idle, or a request behind one that failed. Both operations are safe to send twice:
///   a pull reads, and the server recognises a push it has applied by its mutation ids;
/// - `errc::unauthorized`: a 401 that the one token refresh did not cure;
/// - the server's own code for an error answer it recognises (`parse_error_body`), else
///   `errc::server_error` for a 5xx and `errc::bad_response` for anything else;
/// - `errc::bad_response`: a 200 whose body is not the expected protocol v1 message;
/// - `boost::asio::error::operation_aborted`: the operation was cancelled.
/// With an error, the response's `failure` carries that operation's cause in words ("cannot
/// resolve sync.example.com: Host not found", "HTTP 503: too many connections") and the
/// server's `Retry-After`; the engine puts both in the round's report. `last_error()` and
/// `retry_after()` keep the same, transport-wide, for code written before responses did.
///
/// Cancellation: terminal cancellation through the completion handler's associated slot (partial
/// and total requests are ignored: an HTTP exchange cannot stop halfway and stay usable). It
/// stops the operation at once; if its request was written, it closes the connection (its
/// state is unknown) and the operations behind it go again on a new one. A push cancelled
/// after it was sent may have been applied: the engine resends it with the same mutation ids,
/// which the server answers idempotently.
///
/// Thread safety: like an Asio I/O object, operations are started from one thread at a time;
/// they run on a strand of the transport's own. Lifetime: the transport must outlive its
/// operations.
class http_transport {
public:
    using executor_type = boost::asio::any_io_executor;

    /// Throws `sync_error` (`errc::invalid_configuration`) for a configuration that cannot work:
    /// no host, port 0, `max_requests_in_flight` 0, a base path that does not start with '/'.
    http_transport(executor_type ex, http_transport_config config)
        : ex_(std::move(ex)), strand_(boost::asio::make_strand(ex_)), config_(checked(std::move(config))) {}

    executor_type get_executor() const noexcept { return ex_; }
    const http_transport_config& config() const noexcept { return config_; }

    /// The `Retry-After` of the last response (delta-seconds form), if it had one: how long the
    /// server asks the client to wait before it tries again. Reset when an operation starts
    /// with no other outstanding.
    std::optional<std::chrono::seconds> retry_after() const noexcept { return retry_after_; }

    /// The code and detail message of the first operation that failed since an operation
    /// started with no other outstanding (of pipelined operations, the failure that the ones
    /// behind it followed); empty if none failed.
    const diagnostics& last_error() const noexcept { return pipeline_.last_error(); }

    /// Requests written (retries included) and connections opened, for tests and metrics.
    std::size_t requests() const noexcept { return requests_; }
    std::size_t connects() const noexcept { return connects_; }

    /// How many operations may be outstanding at once with their requests written
    /// (`pipelining_transport`); more wait for their turn.
    std::size_t max_requests_in_flight() const noexcept { return config_.max_requests_in_flight; }

    /// Closes the connection; the next operation opens a new one. Not while an operation runs.
    void close() {
        if (conn_) close(*conn_);
        conn_.reset();
    }

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return run<push_response>(boost::beast::http::verb::post, "/v1/sync/push",
                                  to_json_text(request), std::forward<Token>(token));
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return run<pull_response>(boost::beast::http::verb::get, pull_target(request),
                                  std::string(), std::forward<Token>(token));
    }

private:
    template <class Response>
    using outcome = std::pair<error_code, Response>;

    /// One connection; its turns (the n-th request written is the n-th answered) are kept by
    /// the pipeline's bookkeeping.
    struct connection {
        explicit connection(const boost::asio::any_io_executor& ex) : stream(ex) {}
        boost::beast::tcp_stream stream;
        boost::beast::flat_buffer buffer;
        detail::pipeline_connection turns;
    };

    using request_type = boost::beast::http::request<boost::beast::http::string_body>;
    using response_parser = boost::beast::http::response_parser<boost::beast::http::string_body>;

    static http_transport_config checked(http_transport_config config) {
        detail::check_server_address(config, "http_transport");
        if (config.max_requests_in_flight == 0)
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "http_transport: max_requests_in_flight must be positive");
        return config;
    }

    /// Wakes every operation waiting for a turn, if the pipeline changed.
    void wake_if_changed() {
        if (pipeline_.take_change()) changed_.cancel();
    }

    /// Closes `c`'s socket; its turns are already marked closed.
    void shut(connection& c) {
        boost::system::error_code ignored;
        c.stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
        c.stream.close();
        c.buffer.clear();
        if (conn_.get() == &c) conn_.reset();
    }

    void close(connection& c) {
        if (pipeline_.close(c.turns, false)) shut(c);
        wake_if_changed();
    }

    /// Whether this operation has been cancelled (terminal cancellation of its handler).
    static boost::asio::awaitable<bool> cancelled() {
        auto state = co_await boost::asio::this_coro::cancellation_state;
        co_return state.cancelled() != boost::asio::cancellation_type::none;
    }

    /// Waits until something changes (a turn, a connection closed), or until the operation is
    /// cancelled.
    boost::asio::awaitable<detail::http_event> wait_for_change() {
        // (No co_await inside a condition: g++ 12 miscompiles some of those here.)
        const bool before = co_await cancelled();
        if (!before) co_await changed_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        const bool now = co_await cancelled();
        co_return detail::http_event::woken(now);
    }

    template <class Response, class Token>
    auto run(boost::beast::http::verb verb, std::string target, std::string body,
             Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, Response)>(
            [this](auto handler, boost::beast::http::verb verb, std::string target,
                   std::string body) {
                // The caller's cancellation reaches the operation through a signal it shares:
                // emitted on the strand, alive as long as either side holds it.
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto signal = std::make_shared<boost::asio::cancellation_signal>();
                if (slot.is_connected())
                    slot.assign([signal, strand = strand_](boost::asio::cancellation_type type) {
                        boost::asio::dispatch(strand, [signal, type] { signal->emit(type); });
                    });
                auto hex = boost::asio::get_associated_executor(handler, ex_);
                const auto started = pipeline_.start();
                if (started.alone) retry_after_.reset();
                boost::asio::co_spawn(
                    strand_,
                    exchange<Response>(started.ticket, verb, std::move(target), std::move(body)),
                    boost::asio::bind_cancellation_slot(
                        signal->slot(),
                        boost::asio::bind_executor(
                            hex, [this, h = std::move(handler), signal, slot](
                                     std::exception_ptr e, outcome<Response> result) mutable {
                                if (slot.is_connected()) slot.clear();
                                pipeline_.finish();
                                if (e) result.first = make_error_code(errc::transport_failure);
                                std::move(h)(result.first, std::move(result.second));
                            })));
            },
            token, verb, std::move(target), std::move(body));
    }

    /// The open connection, opened first if there is none. Called only by the operation whose
    /// turn it is to write, so no two operations open connections at once.
    boost::asio::awaitable<detail::http_event> connect(std::shared_ptr<connection>& out) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        const bool stop = co_await cancelled();
        if (stop) co_return detail::http_event::connect_failed({}, true);
        if (conn_ && conn_->turns.open) {
            out = conn_;
            co_return detail::http_event::connected(out->turns);
        }
        auto c = std::make_shared<connection>(ex_);
        // Whatever ends this attempt early leaves no socket behind.
        struct unless_connected {
            http_transport* self;
            connection* c;
            ~unless_connected() {
                if (c) self->close(*c);
            }
        } cleanup{this, c.get()};
        c->stream.expires_after(config_.connect_timeout);
        boost::asio::ip::tcp::resolver resolver(ex_);
        auto [rec, endpoints] = co_await resolver.async_resolve(config_.host, std::to_string(config_.port), tok);
        const bool cancelled_meanwhile = co_await cancelled();
        if (cancelled_meanwhile) // name resolution does not see cancellation
            co_return detail::http_event::connect_failed({}, true);
        boost::system::error_code cec = rec;
        if (!cec) cec = std::get<0>(co_await c->stream.async_connect(endpoints, tok));
        const bool cancelled_while_connecting = co_await cancelled();
        if (cec) {
            if (cec == boost::asio::error::operation_aborted || cancelled_while_connecting)
                co_return detail::http_event::connect_failed({}, true);
            if (rec)
                co_return detail::http_event::connect_failed(
                    "cannot resolve " + config_.host + ": " + rec.message(), false);
            co_return detail::http_event::connect_failed(
                "cannot connect to " + config_.host + ":" + std::to_string(config_.port) + ": " + cec.message(),
                false);
        }
        cleanup.c = nullptr;
        ++connects_;
        conn_ = out = c;
        co_return detail::http_event::connected(c->turns);
    }

    request_type make_request(boost::beast::http::verb verb, const std::string& target,
                              const std::string& body, bool refresh_token) const {
        request_type req{verb, config_.base_path + target, 11};
        req.set(boost::beast::http::field::host, config_.host);
        req.set(boost::beast::http::field::user_agent, config_.user_agent);
        req.set(boost::beast::http::field::accept, "application/json");
        if (config_.token_provider) {
            auto bearer = config_.token_provider(refresh_token);
            if (!bearer.empty()) req.set(boost::beast::http::field::authorization, "Bearer " + bearer);
        }
        if (verb == boost::beast::http::verb::post) {
            req.set(boost::beast::http::field::content_type, "application/json");
            req.body() = body;
        }
        req.keep_alive(true);
        req.prepare_payload();
        return req;
    }

    boost::asio::awaitable<detail::http_event> write(connection& c, const request_type& req) {
        ++requests_;
        // With a read of an earlier answer pending, this bounds the write only.
        c.stream.expires_after(config_.request_timeout);
        auto [ec, n] = co_await boost::beast::http::async_write(
            c.stream, req, boost::asio::as_tuple(boost::asio::use_awaitable));
        const bool stop = co_await cancelled();
        if (ec) co_return detail::http_event::write_failed(ec.message(), stop);
        co_return detail::http_event::written(stop);
    }

    boost::asio::awaitable<detail::http_event> read(connection& c, std::optional<response_parser>& p) {
        p.emplace();
        p->body_limit(config_.max_response_bytes);
        // Beast reads as much as the buffer has room for, and a buffer that has never been
        // larger has room for 512 bytes: a page of answers would take hundreds of system
        // calls, each arming the timer again.
        if (c.buffer.capacity() < read_chunk_bytes) c.buffer.reserve(read_chunk_bytes);
        c.stream.expires_after(config_.request_timeout);
        auto [ec, n] =
            co_await boost::beast::http::async_read(c.stream, c.buffer, *p, boost::asio::as_tuple(boost::asio::use_awaitable));
        if (!ec) {
            const auto& res = p->get();
            // A header in a form not understood (an HTTP date) leaves no stale wait behind.
            if (res.find(boost::beast::http::field::retry_after) != res.end())
                retry_after_ = retry_after_of(res);
            co_return detail::http_event::answered(res.result_int(), res.keep_alive());
        }
        const bool stop = co_await cancelled();
        co_return detail::http_event::read_failed(ec.message(), p->got_some(),
                                                  ec == boost::beast::http::error::body_limit, stop);
    }

    /// One operation: performs what `detail::http_exchange_fsm` decides (the order of writes
    /// and reads, resending, the token refresh) and tells it how each step went.
    template <class Response>
    boost::asio::awaitable<outcome<Response>> exchange(std::uint64_t ticket, boost::beast::http::verb verb,
                                                std::string target, std::string body) {
        using action = detail::http_action_type;
        using event = detail::http_event;
        // Cancellation is checked at each step, rather than thrown at the next await: a step
        // cut short must still leave the connection and the turns as the others expect them.
        co_await boost::asio::this_coro::throw_if_cancelled(false);
        outcome<Response> out;
        detail::http_exchange_fsm fsm(pipeline_, ticket);
        std::shared_ptr<connection> conn;
        std::optional<request_type> req;
        std::optional<response_parser> parser;
        event ev = event::start();
        for (;;) {
            std::string failure;
            try {
                const auto act = fsm.resume(ev);
                wake_if_changed();
                switch (act.type) {
                case action::wait_for_change: ev = co_await wait_for_change(); break;
                case action::connect: ev = co_await connect(conn); break;
                case action::prepare_request:
                    parser.reset(); // an earlier attempt's answer is not this one's
                    req.emplace(make_request(verb, target, body, act.refresh_token));
                    ev = event::prepared();
                    break;
                case action::write: ev = co_await write(*conn, *req); break;
                case action::read: ev = co_await read(*conn, parser); break;
                case action::close_connection:
                    shut(*conn);
                    ev = event::closed();
                    break;
                case action::decode_answer:
                    ev = event::decoded_as(decode_answer(parser->get().body(), out.second));
                    break;
                case action::decode_error:
                    ev = event::decoded_as(parse_error_body(parser->get().body(), act.fallback));
                    break;
                case action::complete:
                    out.first = act.code;
                    if (act.code) {
                        // The cause and the server's wait travel with this operation's result.
                        out.second.failure.message = fsm.failure();
                        if (parser && parser->is_header_done())
                            out.second.failure.retry_after = retry_after_of(parser->get());
                    }
                    co_return out;
                case action::complete_cancelled:
                    out.first = boost::asio::error::operation_aborted;
                    co_return out;
                }
                continue;
            } catch (const std::exception& e) {
                failure = e.what(); // out of memory, or a bug
            }
            ev = event::failed(std::move(failure));
        }
    }

    template <class Message>
    static std::optional<std::chrono::seconds> retry_after_of(const Message& res) {
        auto it = res.find(boost::beast::http::field::retry_after);
        if (it == res.end()) return std::nullopt;
        return parse_retry_after(std::string_view(it->value().data(), it->value().size()));
    }

    static std::optional<std::chrono::seconds> parse_retry_after(std::string_view v) {
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
        std::uint32_t n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (v.empty() || ec != std::errc{} || p != v.data() + v.size()) return std::nullopt;
        return std::chrono::seconds(n);
    }

    /// Beast's largest single read (64 KiB).
    static constexpr std::size_t read_chunk_bytes = 64 * 1024;

    executor_type ex_;
    boost::asio::strand<executor_type> strand_; ///< where operations run, one step at a time
    http_transport_config config_;
    std::shared_ptr<connection> conn_; ///< the connection new requests are written on
    /// Never expires; cancelled to wake the operations waiting for a turn.
    boost::asio::steady_timer changed_{strand_, boost::asio::steady_timer::time_point::max()};
    /// Requests are written in the order their operations started (tickets), answers read in
    /// the order requests were written (turns); the first failure's detail.
    detail::http_pipeline pipeline_{config_.max_requests_in_flight,
                                    static_cast<bool>(config_.token_provider)};
    std::optional<std::chrono::seconds> retry_after_;
    std::size_t requests_ = 0;
    std::size_t connects_ = 0;
};

} // namespace offsync
