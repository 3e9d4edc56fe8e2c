// offsync — a TransportPolicy that speaks protocol v1 over HTTP/1.1 with Boost.Beast.
#pragma once

#include <offsync/error.hpp>
#include <offsync/protocol.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
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

namespace asio = boost::asio;

/// Where and how an `http_transport` talks to its server.
struct http_transport_config {
    std::string host = "127.0.0.1"; ///< a name or an address; also sent as `Host`
    std::string port = "80";
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
};

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
/// - `asio::error::operation_aborted`: the operation was cancelled.
/// `last_error()` holds the detail message, `retry_after()` the server's `Retry-After`.
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
    using executor_type = asio::any_io_executor;

    /// Throws `std::invalid_argument` if `config.max_requests_in_flight` is 0.
    http_transport(executor_type ex, http_transport_config config)
        : ex_(std::move(ex)), strand_(asio::make_strand(ex_)), config_(checked(std::move(config))) {}

    executor_type get_executor() const noexcept { return ex_; }
    const http_transport_config& config() const noexcept { return config_; }

    /// The `Retry-After` of the last response (delta-seconds form), if it had one: how long the
    /// server asks the client to wait before it tries again. Reset by every operation.
    std::optional<std::chrono::seconds> retry_after() const noexcept { return retry_after_; }

    /// The code and detail message of the last failed operation; empty after a success.
    const diagnostics& last_error() const noexcept { return last_error_; }

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

    /// One connection and the requests written on it. Requests take numbered turns: the
    /// n-th written is the n-th answered. Every change of turn or state wakes the operations
    /// waiting on `changed`.
    struct connection {
        explicit connection(const asio::any_io_executor& ex)
            : stream(ex), changed(ex, asio::steady_timer::time_point::max()) {}
        boost::beast::tcp_stream stream;
        boost::beast::flat_buffer buffer;
        bool connecting = true; ///< until connected (or failed)
        bool open = true;       ///< false once closed: no more turns
        bool writing = false;
        std::uint64_t written = 0;  ///< requests written (or being written)
        std::uint64_t answered = 0; ///< answers read, or given up by a failed operation
        asio::steady_timer changed; ///< never expires; cancelled to wake the waiting operations
    };

    static http_transport_config checked(http_transport_config config) {
        if (config.max_requests_in_flight == 0)
            throw std::invalid_argument("offsync: http_transport max_requests_in_flight must be "
                                        "positive");
        return config;
    }

    static void wake(connection& c) { c.changed.cancel(); }

    void close(connection& c) {
        if (!c.open) return;
        c.open = false;
        boost::system::error_code ignored;
        c.stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        c.stream.close();
        c.buffer.clear();
        wake(c);
    }

    /// Whether this operation has been cancelled (terminal cancellation of its handler).
    static asio::awaitable<bool> cancelled() {
        auto state = co_await asio::this_coro::cancellation_state;
        co_return state.cancelled() != asio::cancellation_type::none;
    }

    /// Waits until `c` changes. Returns false if the operation was cancelled meanwhile.
    static asio::awaitable<bool> wait_for_change(connection& c) {
        co_await c.changed.async_wait(asio::as_tuple(asio::use_awaitable));
        co_return !co_await cancelled();
    }

    template <class Response, class Token>
    auto run(boost::beast::http::verb verb, std::string target, std::string body,
             Token&& token) {
        return asio::async_initiate<Token, void(error_code, Response)>(
            [this](auto handler, boost::beast::http::verb verb, std::string target,
                   std::string body) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto hex = asio::get_associated_executor(handler, ex_);
                asio::co_spawn(
                    strand_, exchange<Response>(verb, std::move(target), std::move(body)),
                    asio::bind_cancellation_slot(
                        slot, asio::bind_executor(
                                  hex, [h = std::move(handler)](
                                           std::exception_ptr e,
                                           outcome<Response> result) mutable {
                                      if (e) result.first = make_error_code(errc::transport_failure);
                                      std::move(h)(result.first, std::move(result.second));
                                  })));
            },
            token, verb, std::move(target), std::move(body));
    }

    /// The open connection, opened first if there is none; null (with `out` set) if it cannot
    /// be opened or the operation was cancelled.
    template <class Response>
    asio::awaitable<std::shared_ptr<connection>> connected(outcome<Response>& out) {
        const auto tok = asio::as_tuple(asio::use_awaitable);
        for (;;) {
            if (conn_ && conn_->open && !conn_->connecting) co_return conn_;
            if (conn_ && conn_->open) { // another operation is connecting: wait for it
                auto c = conn_;
                if (!co_await wait_for_change(*c)) {
                    out.first = asio::error::operation_aborted;
                    co_return nullptr;
                }
                continue;
            }
            auto c = std::make_shared<connection>(ex_);
            conn_ = c;
            c->stream.expires_after(config_.connect_timeout);
            asio::ip::tcp::resolver resolver(ex_);
            auto [rec, endpoints] = co_await resolver.async_resolve(config_.host, config_.port, tok);
            boost::system::error_code cec = rec;
            if (!cec) cec = std::get<0>(co_await c->stream.async_connect(endpoints, tok));
            c->connecting = false;
            if (cec) {
                close(*c);
                if (conn_ == c) conn_.reset();
                if (cec == asio::error::operation_aborted || co_await cancelled())
                    out.first = asio::error::operation_aborted;
                else if (rec)
                    fail(out, errc::transport_failure,
                         "cannot resolve " + config_.host + ": " + rec.message());
                else
                    fail(out, errc::transport_failure, "cannot connect to " + config_.host + ":" +
                                                           config_.port + ": " + cec.message());
                co_return nullptr;
            }
            ++connects_;
            wake(*c);
            co_return c;
        }
    }

    template <class Response>
    void fail(outcome<Response>& out, errc code, std::string message) {
        last_error_ = {make_error_code(code), std::move(message)};
        out.first = last_error_.code;
    }

    template <class Response>
    asio::awaitable<outcome<Response>> exchange(boost::beast::http::verb verb, std::string target,
                                                std::string body) {
        namespace beast = boost::beast;
        namespace http = boost::beast::http;
        outcome<Response> out;
        std::shared_ptr<connection> conn;
        bool mine_unanswered = false; // our request is written and its answer not yet read
        retry_after_.reset();
        last_error_ = {};
        try {
            const auto tok = asio::as_tuple(asio::use_awaitable);
            bool refreshed = false, resent = false;
            for (;;) {
                conn = co_await connected(out);
                if (!conn) co_return out;
                // Our turn to write: nobody writing, and room in the pipeline.
                while (conn->open && (conn->writing || conn->written - conn->answered >=
                                                           config_.max_requests_in_flight))
                    if (!co_await wait_for_change(*conn)) {
                        out.first = asio::error::operation_aborted;
                        co_return out;
                    }
                if (!conn->open) continue; // closed while we waited: nothing of ours was sent
                http::request<http::string_body> req{verb, config_.base_path + target, 11};
                req.set(http::field::host, config_.host);
                req.set(http::field::user_agent, config_.user_agent);
                req.set(http::field::accept, "application/json");
                if (config_.token_provider) {
                    auto bearer = config_.token_provider(refreshed);
                    if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
                }
                if (verb == http::verb::post) {
                    req.set(http::field::content_type, "application/json");
                    req.body() = body;
                }
                req.keep_alive(true);
                req.prepare_payload();

                ++requests_;
                const std::uint64_t turn = conn->written++;
                conn->writing = true;
                mine_unanswered = true;
                // With a read of an earlier answer pending, this bounds the write only.
                conn->stream.expires_after(config_.request_timeout);
                auto [wec, wn] = co_await http::async_write(conn->stream, req, tok);
                conn->writing = false;
                wake(*conn);
                beast::error_code ec = wec;
                bool got_some = false;
                std::optional<http::response_parser<http::string_body>> parser;
                if (!ec) {
                    // Our turn to read: every earlier answer read.
                    while (conn->open && conn->answered != turn)
                        if (!co_await wait_for_change(*conn)) break;
                    if (co_await cancelled()) {
                        ec = asio::error::operation_aborted;
                    } else if (!conn->open) {
                        ec = asio::error::connection_aborted; // an earlier exchange failed
                    } else {
                        parser.emplace();
                        parser->body_limit(config_.max_response_bytes);
                        // Beast reads as much as the buffer has room for, and a buffer that
                        // has never been larger has room for 512 bytes: a page of answers would
                        // take hundreds of system calls, each arming the timer again.
                        if (conn->buffer.capacity() < read_chunk_bytes)
                            conn->buffer.reserve(read_chunk_bytes);
                        conn->stream.expires_after(config_.request_timeout);
                        auto [rec, rn] =
                            co_await http::async_read(conn->stream, conn->buffer, *parser, tok);
                        ec = rec;
                        got_some = parser->got_some();
                    }
                }
                if (ec) {
                    // Whatever answer is under way on this connection is lost to us, and so
                    // are those behind it: they go again on a new connection.
                    close(*conn);
                    if (conn_ == conn) conn_.reset();
                    mine_unanswered = false;
                    if (ec == asio::error::operation_aborted && co_await cancelled()) {
                        out.first = asio::error::operation_aborted;
                        co_return out;
                    }
                    // Our request never reached the server, or the server closed the
                    // connection before it answered: once more, on a new connection, unless
                    // the connection carried nothing before it (a server that fails on the
                    // request itself must not get it twice).
                    if (!got_some && !resent && turn > 0) {
                        resent = true;
                        continue;
                    }
                    if (ec == http::error::body_limit)
                        fail(out, errc::bad_response,
                             "response body larger than max_response_bytes");
                    else
                        fail(out, errc::transport_failure, ec.message());
                    co_return out;
                }
                ++conn->answered;
                mine_unanswered = false;
                wake(*conn);
                auto& res = parser->get();
                if (!res.keep_alive()) {
                    close(*conn);
                    if (conn_ == conn) conn_.reset();
                }
                if (auto it = res.find(http::field::retry_after); it != res.end())
                    retry_after_ = parse_retry_after(
                        std::string_view(it->value().data(), it->value().size()));
                const auto status = res.result_int();
                if (status == 401 && !refreshed && config_.token_provider) {
                    refreshed = true;
                    continue;
                }
                if (status == 200) {
                    if (auto d = decode_answer(res.body(), out.second))
                        fail(out, errc::bad_response, d.message);
                    co_return out;
                }
                auto d = parse_error_body(res.body(), status == 401  ? errc::unauthorized
                                                      : status >= 500 ? errc::server_error
                                                                      : errc::bad_response);
                if (status == 401) d.code = make_error_code(errc::unauthorized);
                d.message = "HTTP " + std::to_string(status) + ": " + d.message;
                last_error_ = std::move(d);
                out.first = last_error_.code;
                co_return out;
            }
        } catch (const boost::system::system_error& e) {
            // A cancellation that arrived between two steps.
            if (conn && mine_unanswered) close(*conn);
            if (e.code() == asio::error::operation_aborted) out.first = e.code();
            else fail(out, errc::transport_failure, e.what());
        } catch (const std::exception& e) {
            if (conn && mine_unanswered) close(*conn);
            fail(out, errc::transport_failure, e.what());
        }
        co_return out;
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
    asio::strand<executor_type> strand_; ///< where operations run, one step at a time
    http_transport_config config_;
    std::shared_ptr<connection> conn_; ///< the connection new requests are written on
    std::optional<std::chrono::seconds> retry_after_;
    diagnostics last_error_;
    std::size_t requests_ = 0;
    std::size_t connects_ = 0;
};

} // namespace offsync
