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

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <set>
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
    /// server asks the client to wait before it tries again. Reset when an operation starts
    /// with no other outstanding.
    std::optional<std::chrono::seconds> retry_after() const noexcept { return retry_after_; }

    /// The code and detail message of the first operation that failed since an operation
    /// started with no other outstanding (of pipelined operations, the failure that the ones
    /// behind it followed); empty if none failed.
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

    /// One connection and the requests written on it. Requests take numbered turns on it: the
    /// n-th written is the n-th answered.
    struct connection {
        explicit connection(const asio::any_io_executor& ex) : stream(ex) {}
        boost::beast::tcp_stream stream;
        boost::beast::flat_buffer buffer;
        bool open = true;       ///< false once closed: no more turns
        /// Closed because an operation on it was cancelled, not because it failed: the
        /// requests whose answers it carried may go again.
        bool closed_locally = false;
        std::uint64_t written = 0;  ///< requests written (or being written)
        std::uint64_t answered = 0; ///< answers read
        /// The first turn whose operation was cancelled after its request was written: its
        /// answer will not be read, so the connection ends when that turn comes.
        std::optional<std::uint64_t> abandoned;
    };

    static http_transport_config checked(http_transport_config config) {
        if (config.max_requests_in_flight == 0)
            throw std::invalid_argument("offsync: http_transport max_requests_in_flight must be "
                                        "positive");
        return config;
    }

    /// Wakes every operation waiting for a turn.
    void wake() { changed_.cancel(); }

    void close(connection& c, bool locally = false) {
        if (!c.open) return;
        c.open = false;
        c.closed_locally = locally;
        boost::system::error_code ignored;
        c.stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        c.stream.close();
        c.buffer.clear();
        if (conn_.get() == &c) conn_.reset();
        wake();
    }

    /// Whether this operation has been cancelled (terminal cancellation of its handler).
    static asio::awaitable<bool> cancelled() {
        auto state = co_await asio::this_coro::cancellation_state;
        co_return state.cancelled() != asio::cancellation_type::none;
    }

    /// Waits until something changes (a turn, a connection closed). False if the operation was
    /// cancelled meanwhile or before.
    asio::awaitable<bool> wait_for_change() {
        // (No co_await inside a condition: g++ 12 miscompiles some of those here.)
        const bool before = co_await cancelled();
        if (!before) co_await changed_.async_wait(asio::as_tuple(asio::use_awaitable));
        const bool now = co_await cancelled();
        co_return !now;
    }

    template <class Response, class Token>
    auto run(boost::beast::http::verb verb, std::string target, std::string body,
             Token&& token) {
        return asio::async_initiate<Token, void(error_code, Response)>(
            [this](auto handler, boost::beast::http::verb verb, std::string target,
                   std::string body) {
                // The caller's cancellation reaches the operation through a signal it shares:
                // emitted on the strand, alive as long as either side holds it.
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto signal = std::make_shared<asio::cancellation_signal>();
                if (slot.is_connected())
                    slot.assign([signal, strand = strand_](asio::cancellation_type type) {
                        asio::dispatch(strand, [signal, type] { signal->emit(type); });
                    });
                auto hex = asio::get_associated_executor(handler, ex_);
                if (outstanding_++ == 0) {
                    retry_after_.reset();
                    last_error_ = {};
                }
                const std::uint64_t ticket = next_ticket_++;
                asio::co_spawn(
                    strand_, exchange<Response>(ticket, verb, std::move(target), std::move(body)),
                    asio::bind_cancellation_slot(
                        signal->slot(),
                        asio::bind_executor(
                            hex, [this, h = std::move(handler), signal, slot](
                                     std::exception_ptr e, outcome<Response> result) mutable {
                                if (slot.is_connected()) slot.clear();
                                --outstanding_;
                                if (e) result.first = make_error_code(errc::transport_failure);
                                std::move(h)(result.first, std::move(result.second));
                            })));
            },
            token, verb, std::move(target), std::move(body));
    }

    /// The open connection, opened first if there is none; null (with `out` set) if it cannot
    /// be opened or the operation was cancelled. Called only by the operation whose turn it is
    /// to write, so no two operations open connections at once.
    template <class Response>
    asio::awaitable<std::shared_ptr<connection>> connected(outcome<Response>& out) {
        const auto tok = asio::as_tuple(asio::use_awaitable);
        const bool stop = co_await cancelled();
        if (stop) {
            out.first = asio::error::operation_aborted;
            co_return nullptr;
        }
        if (conn_ && conn_->open) co_return conn_;
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
        asio::ip::tcp::resolver resolver(ex_);
        auto [rec, endpoints] = co_await resolver.async_resolve(config_.host, config_.port, tok);
        const bool cancelled_meanwhile = co_await cancelled();
        if (cancelled_meanwhile) { // name resolution does not see cancellation
            out.first = asio::error::operation_aborted;
            co_return nullptr;
        }
        boost::system::error_code cec = rec;
        if (!cec) cec = std::get<0>(co_await c->stream.async_connect(endpoints, tok));
        const bool cancelled_while_connecting = co_await cancelled();
        if (cec) {
            if (cec == asio::error::operation_aborted || cancelled_while_connecting)
                out.first = asio::error::operation_aborted;
            else if (rec)
                fail(out, errc::transport_failure,
                     "cannot resolve " + config_.host + ": " + rec.message());
            else
                fail(out, errc::transport_failure, "cannot connect to " + config_.host + ":" +
                                                       config_.port + ": " + cec.message());
            co_return nullptr;
        }
        cleanup.c = nullptr;
        ++connects_;
        conn_ = c;
        co_return c;
    }

    /// Records a failure; of pipelined operations, the first one's detail is kept.
    template <class Response>
    void fail(outcome<Response>& out, errc code, std::string message) {
        if (!last_error_.code) last_error_ = {make_error_code(code), std::move(message)};
        out.first = make_error_code(code);
    }

    /// Gives up this operation's place in the order of writes, if it still holds one.
    void release_ticket(std::uint64_t ticket) {
        if (ticket < serving_ticket_) return;
        skipped_tickets_.insert(ticket);
        while (skipped_tickets_.erase(serving_ticket_)) ++serving_ticket_;
        wake();
    }

    /// One operation: its request written in the order operations started (`ticket`), its
    /// answer read in the order requests were written on the connection.
    template <class Response>
    asio::awaitable<outcome<Response>> exchange(std::uint64_t ticket, boost::beast::http::verb verb,
                                                std::string target, std::string body) {
        namespace beast = boost::beast;
        namespace http = boost::beast::http;
        // Cancellation is checked at each step, rather than thrown at the next await: a step
        // cut short must still leave the connection and the turns as the others expect them.
        co_await asio::this_coro::throw_if_cancelled(false);
        outcome<Response> out;
        std::shared_ptr<connection> conn;
        std::optional<std::uint64_t> turn; // our request's turn on `conn`, once writing
        bool written = false;              // the whole request is on the connection
        bool holds_ticket = true;
        const auto aborted = [&] {
            if (holds_ticket) release_ticket(ticket);
            holds_ticket = false;
            if (conn && turn && conn->open && conn->answered <= *turn) {
                if (!written || conn->answered == *turn) {
                    // Half a request, or our answer under way: the connection is unusable.
                    close(*conn, true);
                } else if (!conn->abandoned || *conn->abandoned > *turn) {
                    // Our answer will come after the earlier ones: they are read first.
                    conn->abandoned = *turn;
                }
            }
            out.first = asio::error::operation_aborted;
        };
        try {
            const auto tok = asio::as_tuple(asio::use_awaitable);
            bool refreshed = false, resent = false;
            for (;;) {
                turn.reset();
                written = false;
                // Our turn to write: the operations started before us have written.
                while (serving_ticket_ != ticket) {
                    const bool go_on = co_await wait_for_change();
                    if (!go_on) {
                        aborted();
                        co_return out;
                    }
                }
                conn = co_await connected(out);
                if (!conn) {
                    if (holds_ticket) release_ticket(ticket);
                    holds_ticket = false;
                    co_return out;
                }
                // Room in the pipeline.
                while (conn->open &&
                       conn->written - conn->answered >= config_.max_requests_in_flight) {
                    const bool go_on = co_await wait_for_change();
                    if (!go_on) {
                        aborted();
                        co_return out;
                    }
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
                turn = conn->written++;
                // With a read of an earlier answer pending, this bounds the write only.
                conn->stream.expires_after(config_.request_timeout);
                auto [wec, wn] = co_await http::async_write(conn->stream, req, tok);
                written = !wec;
                release_ticket(ticket); // the next operation may write (a resend queues again)
                holds_ticket = false;
                beast::error_code ec = wec;
                bool got_some = false;
                std::optional<http::response_parser<http::string_body>> parser;
                if (!ec) {
                    // Our turn to read: every earlier answer read.
                    while (conn->open && conn->answered != *turn) {
                        const bool go_on = co_await wait_for_change();
                        if (!go_on) break;
                    }
                    const bool stop = co_await cancelled();
                    if (stop) {
                        aborted();
                        co_return out;
                    }
                    if (!conn->open) {
                        ec = asio::error::connection_aborted; // an earlier exchange ended it
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
                const bool stop = co_await cancelled();
                if (ec) {
                    if (stop) {
                        aborted();
                        co_return out;
                    }
                    // Whatever answer is under way on this connection is lost to us, and so
                    // are those behind it: they go again on a new connection.
                    const bool by_us = conn->closed_locally;
                    close(*conn);
                    // Our request never reached the server, or the connection ended before
                    // its answer began: once more, on a new connection, unless it was the
                    // first request of a connection that the server ended (a server that
                    // fails on the request itself must not get it twice).
                    if (!got_some && !resent && (*turn > 0 || by_us)) {
                        resent = true;
                        ticket = next_ticket_++; // behind the operations already waiting
                        holds_ticket = true;
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
                if (conn->abandoned && conn->answered >= *conn->abandoned) close(*conn, true);
                auto& res = parser->get();
                if (!res.keep_alive()) close(*conn);
                wake();
                if (auto it = res.find(http::field::retry_after); it != res.end())
                    retry_after_ = parse_retry_after(
                        std::string_view(it->value().data(), it->value().size()));
                const auto status = res.result_int();
                if (status == 401 && !refreshed && config_.token_provider) {
                    refreshed = true;
                    ticket = next_ticket_++;
                    holds_ticket = true;
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
                out.first = d.code;
                if (!last_error_.code) last_error_ = std::move(d);
                co_return out;
            }
        } catch (const std::exception& e) {
            // Out of memory, or a bug: nothing of this exchange can be trusted.
            if (holds_ticket) release_ticket(ticket);
            if (conn && turn) close(*conn);
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
    /// Never expires; cancelled to wake the operations waiting for a turn.
    asio::steady_timer changed_{strand_, asio::steady_timer::time_point::max()};
    /// Requests are written in the order their operations started: each takes a ticket, and
    /// the one whose ticket is served writes next (tickets given up are skipped).
    std::atomic<std::uint64_t> next_ticket_{0}; ///< taken where operations start
    std::uint64_t serving_ticket_ = 0;
    std::set<std::uint64_t> skipped_tickets_;
    /// Operations started and not completed (started on the caller's thread, completed on
    /// the handler's executor).
    std::atomic<std::size_t> outstanding_{0};
    std::optional<std::chrono::seconds> retry_after_;
    diagnostics last_error_;
    std::size_t requests_ = 0;
    std::size_t connects_ = 0;
};

} // namespace offsync
