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
#include <optional>
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
};

/// Carries push batches and pull pages to an offsync HTTP server (protocol v1): one request per
/// batch or page, over one keep-alive connection that is opened on first use and reused.
///
/// Errors: each operation completes with `(error_code, response)`, where the code is
/// - `errc::transport_failure`: no connection, a timeout, or the connection broke before the
///   whole response arrived (a request sent on a reused connection that the server had closed
///   is sent once more on a new one first);
/// - `errc::unauthorized`: a 401 that the one token refresh did not cure;
/// - the server's own code for an error answer it recognises (`parse_error_body`), else
///   `errc::server_error` for a 5xx and `errc::bad_response` for anything else;
/// - `errc::bad_response`: a 200 whose body is not the expected protocol v1 message;
/// - `asio::error::operation_aborted`: the operation was cancelled.
/// `last_error()` holds the detail message, `retry_after()` the server's `Retry-After`.
///
/// Cancellation: terminal cancellation through the completion handler's associated slot (partial
/// and total requests are ignored: an HTTP exchange cannot stop halfway and stay usable). It
/// stops the operation at once and closes the connection (its state is unknown); the next
/// operation opens a new one. A push cancelled after it was sent may have been applied: the
/// engine resends it with the same mutation ids, which the server answers idempotently.
///
/// Thread safety: like an Asio I/O object, one operation at a time per transport. Lifetime: the
/// transport must outlive its operations.
class http_transport {
public:
    using executor_type = asio::any_io_executor;

    http_transport(executor_type ex, http_transport_config config)
        : ex_(std::move(ex)), config_(std::move(config)) {}

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

    /// Closes the connection; the next operation opens a new one. Not while an operation runs.
    void close() {
        if (stream_) {
            boost::system::error_code ignored;
            stream_->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            stream_->close();
            stream_.reset();
        }
        buffer_.clear();
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

    template <class Response, class Token>
    auto run(boost::beast::http::verb verb, std::string target, std::string body,
             Token&& token) {
        return asio::async_initiate<Token, void(error_code, Response)>(
            [this](auto handler, boost::beast::http::verb verb, std::string target,
                   std::string body) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto hex = asio::get_associated_executor(handler, ex_);
                asio::co_spawn(
                    ex_, exchange<Response>(verb, std::move(target), std::move(body)),
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

    template <class Response>
    asio::awaitable<outcome<Response>> exchange(boost::beast::http::verb verb, std::string target,
                                                std::string body) {
        namespace beast = boost::beast;
        namespace http = boost::beast::http;
        outcome<Response> out;
        retry_after_.reset();
        last_error_ = {};
        auto fail = [&](errc code, std::string message) {
            last_error_ = {make_error_code(code), std::move(message)};
            out.first = last_error_.code;
        };
        try {
            const auto tok = asio::as_tuple(asio::use_awaitable);
            bool refreshed = false, resent = false;
            for (;;) {
                const bool fresh = !stream_;
                if (fresh) {
                    asio::ip::tcp::resolver resolver(ex_);
                    stream_.emplace(ex_);
                    stream_->expires_after(config_.connect_timeout);
                    auto [rec, endpoints] =
                        co_await resolver.async_resolve(config_.host, config_.port, tok);
                    if (rec) {
                        close();
                        fail(errc::transport_failure, "cannot resolve " + config_.host + ": " +
                                                          rec.message());
                        co_return out;
                    }
                    auto [cec, ep] = co_await stream_->async_connect(endpoints, tok);
                    if (cec) {
                        close();
                        if (cec == asio::error::operation_aborted) {
                            out.first = cec;
                            co_return out;
                        }
                        fail(errc::transport_failure, "cannot connect to " + config_.host + ":" +
                                                          config_.port + ": " + cec.message());
                        co_return out;
                    }
                    ++connects_;
                }
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
                stream_->expires_after(config_.request_timeout);
                auto [wec, wn] = co_await http::async_write(*stream_, req, tok);
                http::response_parser<http::string_body> parser;
                parser.body_limit(config_.max_response_bytes);
                beast::error_code ec = wec;
                if (!ec) {
                    // Beast reads as much as the buffer has room for, and a buffer that has
                    // never been larger has room for 512 bytes: a page of answers would take
                    // hundreds of system calls, each arming the timer again.
                    if (buffer_.capacity() < read_chunk_bytes) buffer_.reserve(read_chunk_bytes);
                    auto [rec, rn] = co_await http::async_read(*stream_, buffer_, parser, tok);
                    ec = rec;
                }
                if (ec) {
                    const bool got_some = parser.got_some();
                    close();
                    if (ec == asio::error::operation_aborted) {
                        out.first = ec;
                        co_return out;
                    }
                    // A keep-alive connection the server closed while it sat idle: the request
                    // never reached it. Once more, on a new connection.
                    if (!fresh && !got_some && !resent) {
                        resent = true;
                        continue;
                    }
                    if (ec == http::error::body_limit)
                        fail(errc::bad_response, "response body larger than max_response_bytes");
                    else
                        fail(errc::transport_failure, ec.message());
                    co_return out;
                }
                auto& res = parser.get();
                if (!res.keep_alive()) close();
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
                        fail(errc::bad_response, d.message);
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
            close();
            if (e.code() == asio::error::operation_aborted) out.first = e.code();
            else fail(errc::transport_failure, e.what());
        } catch (const std::exception& e) {
            close();
            fail(errc::transport_failure, e.what());
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
    http_transport_config config_;
    std::optional<boost::beast::tcp_stream> stream_;
    boost::beast::flat_buffer buffer_;
    std::optional<std::chrono::seconds> retry_after_;
    diagnostics last_error_;
    std::size_t requests_ = 0;
    std::size_t connects_ = 0;
};

} // namespace offsync
