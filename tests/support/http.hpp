// HTTP test fixtures: a sync service behind a real HTTP server on 127.0.0.1 (`http_world`), a
// device syncing over HTTP (`http_client`), a raw client that sends exact bytes (`raw`), a proxy
// that swallows answers or stalls (`dropping_proxy`), and servers that answer as the test scripts them
// (`answers_anything`, `scripted_server`).
#pragma once

#include "world.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/transport/http.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

namespace offsync_test {

using namespace std::chrono_literals;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

inline const std::string alice_token = "alice-token-0123456789";
inline const std::string bob_token = "bob-token-0123456789abc";

inline server::authenticator test_tokens() {
    std::istringstream file("# test tokens\n" + alice_token + " alice\n\n" + bob_token +
                            "   bob\n");
    return server::token_file_authenticator::parse(file);
}

inline server::http_server_config test_server_config() {
    server::http_server_config c;
    c.read_timeout = 2s;
    c.idle_timeout = 5s;
    c.drain_timeout = 2s;
    return c;
}

/// Starts a graceful shutdown; the future is ready when it completed. (A callback rather than
/// asio::use_future, whose Boost 1.81 code draws a false -Wmaybe-uninitialized at -O1.)
inline std::future<void> shutdown_future(server::http_server& srv) {
    auto done = std::make_shared<std::promise<void>>();
    auto ready = done->get_future();
    srv.async_shutdown([done](error_code) { done->set_value(); });
    return ready;
}

/// A sync service with the Landmarks collections behind a real HTTP server on 127.0.0.1, run by
/// a thread of its own, so tests may block on sockets. The server can be stopped and restarted
/// on the same port.
struct http_world {
    manual_clock clock;
    std::shared_ptr<server::sync_service> owned = make_service(clock);
    server::sync_service& service = *owned;
    server::http_server_config config;
    asio::io_context server_io;
    std::optional<server::http_server> srv;
    std::thread thread;
    std::thread second_thread; ///< only with `threads == 2`
    int threads = 1;
    unsigned short port = 0;
    std::mutex log_mutex;
    std::vector<std::string> log_lines;
    std::function<void(const server::request_log&)> on_request;
    server::authenticator auth = test_tokens(); ///< read at each `start()`

    explicit http_world(server::http_server_config c = test_server_config(),
                        server::service_config service_config = {})
        : owned(make_service(clock, std::move(service_config))), config(std::move(c)) {
        service.admin_put("landmarks", to_json_object(half_dome()));
        service.admin_put("landmarks", to_json_object(landmark(2, "Golden Gate Bridge")));
        start();
    }
    ~http_world() { stop(); }

    void start() {
        auto c = config;
        c.log = [this](const server::request_log& r) {
            {
                std::lock_guard lock(log_mutex);
                log_lines.push_back(server::format_log_line(r));
            }
            if (on_request) on_request(r);
        };
        srv.emplace(server_io.get_executor(), service, auth, c);
        srv->listen({asio::ip::make_address("127.0.0.1"), port});
        port = srv->local_endpoint().port();
        srv->start();
        server_io.restart();
        // The work guard keeps the thread up between a shutdown and the next start.
        thread = std::thread([this] {
            auto work = asio::make_work_guard(server_io);
            server_io.run();
        });
        if (threads == 2) second_thread = std::thread([this] { server_io.run(); });
    }

    /// Graceful shutdown, bounded; returns whether it completed in time.
    bool stop() {
        if (!thread.joinable()) return true;
        auto done = shutdown_future(*srv);
        const bool drained = done.wait_for(5s) == std::future_status::ready;
        server_io.stop();
        thread.join();
        if (second_thread.joinable()) second_thread.join();
        srv.reset();
        return drained;
    }

    std::vector<std::string> logs() {
        std::lock_guard lock(log_mutex);
        return log_lines;
    }
};


using http_engine = basic_sync_engine<memory_storage, http_transport>;

inline http_transport_config transport_config(unsigned short port,
                                              std::shared_ptr<std::string> token) {
    http_transport_config c;
    c.host = "127.0.0.1";
    c.port = port;
    c.connect_timeout = 2s;
    c.request_timeout = 3s;
    c.token_provider = [token](bool) { return *token; };
    return c;
}

/// The token an `http_client` sends, which a test may change between requests: a base of its
/// own so that it exists before the transport that reads it.
struct http_token_holder {
    std::shared_ptr<std::string> token;
};

/// One device syncing over HTTP: `basic_client` over an `http_transport` to `port`.
struct http_client : http_token_holder, basic_client<memory_storage, http_transport> {
    /// Registers both collections with their traits' policies unless `collections` is given.
    http_client(asio::io_context& io, unsigned short port, std::string token, wall_clock clock,
                engine_config config = {}, std::function<void(http_engine&)> collections = {})
        : http_token_holder{std::make_shared<std::string>(std::move(token))},
          basic_client(io, std::move(clock), std::move(config), std::move(collections),
                       io.get_executor(), transport_config(port, this->token)) {}
};

// --- A raw HTTP client: exact bytes out, the parsed answer back.

struct raw_answer {
    boost::system::error_code ec; ///< set when no complete response arrived
    http::response<http::string_body> res;
    unsigned status() const { return res.result_int(); }
    json::value body() const {
        boost::system::error_code jec;
        auto jv = json::parse(res.body(), jec);
        return jec ? json::value() : jv;
    }
    std::string code() const {
        auto jv = body();
        if (!jv.is_object()) return "";
        const auto* e = jv.get_object().if_contains("error");
        if (!e || !e->is_object()) return "";
        const auto* c = e->get_object().if_contains("code");
        return c && c->is_string() ? std::string(c->get_string()) : "";
    }
};

inline asio::awaitable<void> raw_exchange(unsigned short port, std::string wire,
                                          raw_answer* out) {
    const auto tok = asio::as_tuple(asio::use_awaitable);
    auto ex = co_await asio::this_coro::executor;
    beast::tcp_stream stream(ex);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    auto [cec] = co_await stream.async_connect(ep, tok);
    if (cec) {
        out->ec = cec;
        co_return;
    }
    auto data = asio::buffer(wire);
    auto [wec, wn] = co_await asio::async_write(stream, data, tok);
    // A write error is not final: the server may have answered before it stopped reading.
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, tok);
    out->ec = rec ? rec : wec;
    if (!rec) {
        out->ec = {};
        out->res = parser.release();
    }
}

/// Sends `wire` on a new connection and reads one response, within `limit`.
inline raw_answer raw(unsigned short port, std::string wire,
                      std::chrono::milliseconds limit = 5s) {
    asio::io_context io;
    raw_answer out;
    out.ec = asio::error::timed_out;
    asio::co_spawn(io, raw_exchange(port, std::move(wire), &out), asio::detached);
    io.run_for(limit);
    return out;
}

inline std::string request(std::string_view method, std::string_view target,
                    std::string_view token = alice_token, std::string_view body = {},
                    std::string_view content_type = "application/json",
                    std::string_view extra_headers = {}) {
    std::string w;
    w += std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!token.empty()) w += "Authorization: Bearer " + std::string(token) + "\r\n";
    if (!body.empty() || method == "POST" || method == "PUT") {
        if (!content_type.empty()) w += "Content-Type: " + std::string(content_type) + "\r\n";
        w += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    w += std::string(extra_headers);
    w += "Connection: close\r\n\r\n";
    w += std::string(body);
    return w;
}

inline std::string push_body(std::string_view client, const std::vector<mutation>& ms) {
    push_request r;
    r.client_id = std::string(client);
    r.mutations = ms;
    return json::serialize(to_json(r));
}

inline mutation upsert(std::uint64_t id, std::string collection, json::value key,
                       std::uint64_t base, json::object fields) {
    mutation m;
    m.mutation_id = id;
    m.collection = std::move(collection);
    m.id = std::move(key);
    m.base_version = base;
    m.stamp = {1'764'000'000'000, 0, "raw-client"};
    m.fields = std::move(fields);
    return m;
}

/// What two users can observe of the server, as text, to check that bad input changed nothing.
inline std::string snapshot(server::sync_service& s) {
    std::string out = std::to_string(s.last_version());
    for (const char* user : {"alice", "bob"})
        for (const char* coll : {"landmarks", "reservations"}) {
            std::vector<change> all;
            REQUIRE(!s.list(user, coll, all));
            for (const auto& c : all) out += '\n' + json::serialize(to_json(c));
        }
    return out;
}

/// A server that answers every request with `200` and `body`, whatever was asked: an HTTP
/// server that is not offsync, or one that is broken.
struct answers_anything {
    using request_type = http::request<http::string_body>;
    answers_anything(asio::io_context& io, std::string body)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), body(std::move(body)) {
        accept();
    }
    /// Answers each request with `answer(request)`: a server that lies in the ways a test
    /// scripts.
    answers_anything(asio::io_context& io, std::function<std::string(const request_type&)> answer)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), answer(std::move(answer)) {
        accept();
    }
    void accept() {
        acceptor.async_accept([this](error_code ec, tcp::socket s) {
            if (ec) return;
            serve(std::make_shared<tcp::socket>(std::move(s)));
            accept();
        });
    }
    void serve(std::shared_ptr<tcp::socket> sock) {
        auto buffer = std::make_shared<beast::flat_buffer>();
        auto req = std::make_shared<http::request<http::string_body>>();
        http::async_read(*sock, *buffer, *req, [this, sock, buffer, req](error_code ec,
                                                                          std::size_t) {
            if (ec) return;
            ++requests;
            auto res = std::make_shared<http::response<http::string_body>>(http::status::ok, 11);
            res->set(http::field::content_type, "application/json");
            res->body() = answer ? answer(*req) : body;
            res->prepare_payload();
            http::async_write(*sock, *res, [this, sock, res](error_code wec, std::size_t) {
                if (!wec) serve(sock);
            });
        });
    }
    tcp::acceptor acceptor;
    std::string body;
    std::function<std::string(const request_type&)> answer;
    int requests = 0;
};

/// The query parameter `name` of a request target ("" if absent): enough for scripted servers.
inline std::string query_parameter(std::string_view target, std::string_view name) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return {};
    auto rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto pair = rest.substr(0, amp);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name && eq != std::string_view::npos)
            return std::string(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
    return {};
}

/// A TCP proxy in front of the server that can swallow responses (it closes both sides when
/// the server's answer arrives, so the server applied a request whose answer the client never
/// sees) or go silent on the connections open at a moment (`stall_open_connections`).
struct dropping_proxy {
    dropping_proxy(asio::io_context& io, unsigned short target)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), target(target) {
        asio::co_spawn(io, accept(this), asio::detached);
    }
    unsigned short port() const { return acceptor.local_endpoint().port(); }

    /// Every connection open now goes silent, as a stuck proxy or a dead network path: bytes
    /// are read and dropped both ways, nothing is closed. Later connections forward.
    void stall_open_connections() { stalled_below = next_connection; }

    tcp::acceptor acceptor;
    unsigned short target;
    int drop_responses = 0;
    int dropped = 0;
    int connections = 0; ///< accepted and connected through, so far

private:
    int next_connection = 0;
    int stalled_below = 0;

    static asio::awaitable<void> pipe(std::shared_ptr<tcp::socket> from,
                                      std::shared_ptr<tcp::socket> to, dropping_proxy* p,
                                      bool responses, int number) {
        const auto tok = asio::as_tuple(asio::use_awaitable);
        std::array<char, 16384> buf;
        for (;;) {
            auto space = asio::buffer(buf);
            auto [ec, n] = co_await from->async_read_some(space, tok);
            if (ec) break;
            if (number < p->stalled_below) continue; // swallowed
            if (responses && p->drop_responses > 0) {
                --p->drop_responses;
                ++p->dropped;
                break;
            }
            auto data = asio::buffer(buf.data(), n);
            auto [wec, wn] = co_await asio::async_write(*to, data, tok);
            if (wec) break;
        }
        boost::system::error_code ignored;
        from->close(ignored);
        to->close(ignored);
    }

    static asio::awaitable<void> accept(dropping_proxy* p) {
        const auto tok = asio::as_tuple(asio::use_awaitable);
        for (;;) {
            auto [ec, client] = co_await p->acceptor.async_accept(tok);
            if (ec) co_return;
            auto c = std::make_shared<tcp::socket>(std::move(client));
            auto s = std::make_shared<tcp::socket>(c->get_executor());
            tcp::endpoint server(asio::ip::make_address("127.0.0.1"), p->target);
            auto [cec] = co_await s->async_connect(server, tok);
            if (cec) continue;
            const int number = p->next_connection++;
            ++p->connections;
            asio::co_spawn(c->get_executor(), pipe(c, s, p, false, number), asio::detached);
            asio::co_spawn(c->get_executor(), pipe(s, c, p, true, number), asio::detached);
        }
    }
};

/// A hand-driven HTTP server for the transport's edge cases: each accepted connection is
/// given to the test's coroutine, which reads requests and answers (or does not) as it likes.
struct scripted_server {
    explicit scripted_server(asio::io_context& io)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}) {}
    unsigned short port() const { return acceptor.local_endpoint().port(); }

    /// The next request on `s`, or nullopt if the connection closed first.
    static asio::awaitable<std::optional<http::request<http::string_body>>>
    read(tcp::socket& s, beast::flat_buffer& buffer) {
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(s, buffer, req, asio::as_tuple(asio::use_awaitable));
        if (ec) co_return std::nullopt;
        co_return req;
    }
    /// Answers with an empty pull page; `close` adds `Connection: close` and closes.
    static asio::awaitable<void> answer(tcp::socket& s, bool close = false) {
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = to_json_text(pull_response{});
        res.keep_alive(!close);
        res.prepare_payload();
        co_await http::async_write(s, res, asio::as_tuple(asio::use_awaitable));
        if (close) {
            boost::system::error_code ignored;
            s.shutdown(tcp::socket::shutdown_both, ignored);
            s.close(ignored);
        }
    }

    tcp::acceptor acceptor;
};

} // namespace offsync_test
