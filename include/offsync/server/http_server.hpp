// offsync — the HTTP/1.1 front of a sync service, on Boost.Beast: the protocol v1 routes, per-record
// REST, health, Bearer authentication, limits and graceful shutdown.
#pragma once

#include <offsync/error.hpp>
#include <offsync/live.hpp>
#include <offsync/protocol.hpp>
#include <offsync/server/auth.hpp>
#include <offsync/server/limits.hpp>
#include <offsync/server/sync_service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace offsync::server {

/// One request as the server answered it: what the request log line holds. The views point into
/// the request and are valid only during the logger call. The token is never logged.
struct request_log {
    std::uint64_t connection = 0;     ///< per-server connection number, from 1
    std::string_view remote;          ///< the peer's address and port
    std::string_view method;          ///< empty when the request could not be parsed
    std::string_view target;          ///< path and query as sent
    unsigned status = 0;
    std::string_view user;            ///< the authenticated user; empty when there is none
    std::string_view error;           ///< the error body's code; empty on success
    std::size_t request_bytes = 0;    ///< body bytes received
    std::size_t response_bytes = 0;   ///< body bytes sent
    std::chrono::microseconds duration{0}; ///< from the whole request read to the response sent
};

/// A request log record as one JSON line (no trailing newline): what a structured log wants.
inline std::string format_log_line(const request_log& r) {
    boost::json::object o;
    o.emplace("conn", r.connection);
    o.emplace("remote", r.remote);
    o.emplace("method", r.method);
    o.emplace("target", r.target);
    o.emplace("status", r.status);
    o.emplace("user", r.user);
    if (!r.error.empty()) o.emplace("error", r.error);
    o.emplace("in", r.request_bytes);
    o.emplace("out", r.response_bytes);
    o.emplace("us", r.duration.count());
    return boost::json::serialize(o);
}

/// Limits and hooks of an HTTP server. The defaults suit a server on the open internet.
struct http_server_config {
    /// Largest request body; a larger one is answered `413 batch_too_large` and the connection
    /// is closed (a `Content-Length` above it is refused before the body is read).
    std::size_t max_body_bytes = 8u << 20;
    /// Largest request line plus headers; larger is answered 431 and the connection closed.
    std::size_t max_header_bytes = 16u << 10;
    /// How long one request may take to arrive, from its first byte to its last, and how long
    /// writing its response may take. A client that stalls mid-request is disconnected.
    std::chrono::milliseconds read_timeout{30'000};
    /// How long a keep-alive connection may wait for the first byte of its next request.
    std::chrono::milliseconds idle_timeout{60'000};
    /// Open connections served at once. Beyond it a new connection is answered
    /// `503 server_error` with `Retry-After` and closed.
    std::size_t max_connections = 512;
    /// The `Retry-After` (seconds) of a 503 for too many connections.
    std::chrono::seconds busy_retry_after{1};
    /// Until a connection has sent a request with an accepted token, it may wait this long for
    /// a request to begin (instead of `idle_timeout`), and a request has this long to arrive
    /// whole (instead of `read_timeout`); past either it is closed without an answer. A
    /// request whose token is accepted gets `read_timeout` as soon as its headers are read,
    /// so a large first push is not cut short, and the connection is trusted from then on.
    /// Without it, connections that never send a byte would hold `max_connections` for
    /// `idle_timeout` each. Health checks keep their connection open by coming in time.
    std::chrono::milliseconds unauthenticated_timeout{10'000};
    /// Open connections from one IP address at most (change streams included); beyond it a
    /// new one is answered `429 too_many_requests` with `Retry-After` (`busy_retry_after`) and
    /// closed. 0 (the default): no limit. Behind a reverse proxy, the way to run a server
    /// today, every connection comes from the proxy's address, so leave it 0 there and let
    /// the proxy limit its clients; set it for a server that devices reach directly. (An
    /// IPv6 client may hold many addresses.)
    std::size_t max_connections_per_address = 0;
    /// Requests one user may make per second, sustained, and in a burst (a token bucket per
    /// user); beyond them a request is answered `429 too_many_requests` with `Retry-After`,
    /// which the device's background sync honours. 0: no limit. The defaults leave a first
    /// sync of millions of records (one request per 1,000 records) at full speed.
    double max_requests_per_user_per_second = 500;
    double user_request_burst = 2000;
    /// How long `async_shutdown` lets in-flight requests finish before it closes their
    /// connections.
    std::chrono::milliseconds drain_timeout{10'000};
    /// Change streams (`GET /v1/stream`): how often an idle one gets a heartbeat, which keeps
    /// proxies from closing it and lets the device notice a dead server. The stream's token is
    /// checked again at each heartbeat: one no longer accepted (revoked, expired) closes the
    /// stream within this time. Must be positive.
    std::chrono::milliseconds stream_heartbeat{15'000};
    /// Whether `GET /v1/stream` is served. Off, it answers 404 and devices stay on periodic
    /// rounds (for a deployment whose proxies cannot carry long responses).
    bool change_streams = true;
    /// The `Retry-After` (seconds) of a 429 for too many change streams.
    std::chrono::seconds stream_retry_after{30};
    /// Called once per request, after its response was written (or failed to be), on the
    /// connection's executor; may be called from several threads at once. Default: no log.
    std::function<void(const request_log&)> log;
};

namespace detail {

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

/// A change stream the router accepted: the connection turns into it.
struct stream_request {
    std::string token;  ///< checked again at each heartbeat
    std::string client; ///< the device's client id (`?client_id=`), whose own writes it skips
};

/// What the router answered, and what the log line needs to know about it.
struct routed {
    http_response response;
    std::string user;
    std::string error; ///< the error body's code, when the answer is an error
    std::optional<stream_request> stream; ///< set instead of a response for a change stream
};

inline void set_json(http_response& res, unsigned status, std::string body) {
    res.result(status);
    res.set(boost::beast::http::field::content_type, "application/json");
    res.body() = std::move(body);
}

inline void set_error(routed& r, unsigned status, errc code, std::string_view message) {
    set_json(r.response, status, boost::json::serialize(error_body(code, message)));
    r.error = to_string(code);
}

inline void set_error(routed& r, const diagnostics& d) {
    set_error(r, http_status(d.code), errc_of(d.code), d.message);
}

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// The token of an `Authorization: Bearer <token>` header; empty if there is none.
inline std::string_view bearer_token(const http_request& req) {
    auto it = req.find(boost::beast::http::field::authorization);
    if (it == req.end()) return {};
    auto v = trim(std::string_view(it->value().data(), it->value().size()));
    if (v.size() < 7 || !iequals(v.substr(0, 6), "bearer") || (v[6] != ' ' && v[6] != '\t'))
        return {};
    return trim(v.substr(7));
}

inline bool is_json(const http_request& req) {
    auto it = req.find(boost::beast::http::field::content_type);
    if (it == req.end()) return false;
    auto v = std::string_view(it->value().data(), it->value().size());
    return iequals(trim(v.substr(0, v.find(';'))), "application/json");
}

/// Percent-decodes one path segment ('+' is itself there); false on a broken escape.
inline bool decode_segment(std::string_view in, std::string& out) {
    return offsync::detail::percent_decode(in, out, false);
}

/// The version of an `If-Match: "42"` header (quotes optional): the base of a REST write.
inline diagnostics if_match_version(const http_request& req, std::optional<std::uint64_t>& out) {
    out.reset();
    auto it = req.find(boost::beast::http::field::if_match);
    if (it == req.end()) return {};
    auto v = trim(std::string_view(it->value().data(), it->value().size()));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max_safe_integer)
        return {make_error_code(errc::invalid_field),
                "If-Match must be one version ETag, like \"42\""};
    out = n;
    return {};
}

inline std::string etag(std::uint64_t version) { return '"' + std::to_string(version) + '"'; }

inline void method_not_allowed(routed& r, std::string_view allow) {
    r.response.set(boost::beast::http::field::allow, allow);
    set_error(r, 405, errc::method_not_allowed,
              "method not allowed here; allowed: " + std::string(allow));
}

inline void answer_change(routed& r, unsigned status, const change& c) {
    set_json(r.response, status, boost::json::serialize(to_json(c)));
    r.response.set(boost::beast::http::field::etag, etag(c.version));
}

/// The sync endpoints: `POST /v1/sync/push` and `GET /v1/sync/pull?...`.
inline void route_sync(routed& r, sync_service& service, const http_request& req, bool push,
                       std::string_view query) {
    const auto method = req.method();
    wire_answer answer;
    if (push) {
        if (method != boost::beast::http::verb::post) return method_not_allowed(r, "POST");
        if (!is_json(req))
            return set_error(r, 415, errc::unsupported_media_type,
                             "Content-Type must be application/json");
        answer = service.handle_push(r.user, req.body());
    } else {
        if (method != boost::beast::http::verb::get) return method_not_allowed(r, "GET");
        answer = service.handle_pull(r.user, query);
    }
    if (answer.error) return set_error(r, answer.error);
    set_json(r.response, 200, std::move(answer.body));
}

/// `GET /v1/{collection}`: every live record.
inline void route_collection(routed& r, sync_service& service, const http_request& req,
                             const std::string& collection) {
    if (req.method() != boost::beast::http::verb::get) return method_not_allowed(r, "GET");
    std::vector<change> records;
    if (auto d = service.list(r.user, collection, records)) return set_error(r, d);
    boost::json::array arr;
    arr.reserve(records.size());
    for (const auto& c : records) arr.push_back(to_json(c));
    set_json(r.response, 200,
             boost::json::serialize(boost::json::object{{"records", std::move(arr)}}));
}

/// The body of a REST `PUT`: a JSON object of fields.
inline diagnostics fields_of(const http_request& req, boost::json::value& body) {
    if (!is_json(req))
        return {make_error_code(errc::unsupported_media_type),
                "Content-Type must be application/json"};
    boost::system::error_code ec;
    body = boost::json::parse(req.body(), ec);
    if (ec) return {make_error_code(errc::malformed_json), "body is not JSON: " + ec.message()};
    if (!body.is_object())
        return {make_error_code(errc::malformed_json), "the body must be a JSON object of fields"};
    return {};
}

/// `GET`, `PUT` and `DELETE /v1/{collection}/{id}`.
inline void route_record(routed& r, sync_service& service, const http_request& req,
                         const std::string& collection, const std::string& id) {
    const auto method = req.method();
    change out;
    diagnostics d;
    switch (method) {
    case boost::beast::http::verb::get:
        if (auto failed = service.get_record(r.user, collection, id, out))
            return set_error(r, failed);
        return answer_change(r, 200, out);
    case boost::beast::http::verb::put: {
        std::optional<std::uint64_t> base;
        if (auto failed = if_match_version(req, base)) return set_error(r, failed);
        boost::json::value body;
        if (auto failed = fields_of(req, body)) return set_error(r, failed);
        d = service.put_record(r.user, collection, id, body.get_object(), base, out);
        break;
    }
    case boost::beast::http::verb::delete_: {
        std::optional<std::uint64_t> base;
        if (auto failed = if_match_version(req, base)) return set_error(r, failed);
        d = service.delete_record(r.user, collection, id, base, out);
        break;
    }
    default: return method_not_allowed(r, "GET, PUT, DELETE");
    }
    if (!d) return answer_change(r, 200, out);
    if (d.code != errc::version_conflict) return set_error(r, d);
    // The seed's shape: 409 with the server's record, here next to the error.
    boost::json::value body = error_body(errc::version_conflict, d.message);
    body.get_object().emplace("server", to_json(out));
    set_json(r.response, 409, boost::json::serialize(body));
    r.response.set(boost::beast::http::field::etag, etag(out.version));
    r.error = to_string(errc::version_conflict);
}

/// `/v1/{collection}` and `/v1/{collection}/{id}`, their segments percent-decoded.
inline void route_rest(routed& r, sync_service& service, const http_request& req,
                       std::string_view path) {
    constexpr std::string_view prefix = "/v1/";
    if (path.substr(0, prefix.size()) != prefix || path.size() == prefix.size())
        return set_error(r, 404, errc::not_found, "no such route");
    auto rest = path.substr(prefix.size());
    const auto slash = rest.find('/');
    std::string collection, id;
    if (!decode_segment(rest.substr(0, slash), collection) || collection.empty())
        return set_error(r, 404, errc::unknown_collection, "bad collection in the path");
    if (slash == std::string_view::npos) return route_collection(r, service, req, collection);
    const auto id_text = rest.substr(slash + 1);
    if (id_text.find('/') != std::string_view::npos)
        return set_error(r, 404, errc::not_found, "no such route");
    if (!decode_segment(id_text, id) || id.empty())
        return set_error(r, 400, errc::invalid_id, "bad record id in the path");
    route_record(r, service, req, collection, id);
}

/// `GET /v1/stream[?client_id=ID]`: accepted (the caller opens the stream) or refused.
inline void route_stream(routed& r, const http_request& req, std::string_view query,
                         std::string_view token, bool stopping) {
    if (req.method() != boost::beast::http::verb::get) return method_not_allowed(r, "GET");
    if (stopping) return set_error(r, 503, errc::server_error, "the server is shutting down");
    // Events are sent as chunks, which an HTTP/1.0 peer does not read.
    if (req.version() != 11)
        return set_error(r, 400, errc::malformed_json, "a change stream needs HTTP/1.1");
    stream_request open;
    open.token = std::string(token);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) != "client_id") continue; // parameters of later versions
        if (eq == std::string_view::npos ||
            !offsync::detail::percent_decode(pair.substr(eq + 1), open.client, true) ||
            open.client.empty() || open.client.size() > max_id_length)
            return set_error(r, 400, errc::invalid_field,
                             "'client_id' must be 1 to " +
                                 std::to_string(max_id_length) + " bytes");
    }
    r.stream = std::move(open);
}

/// Asked once per authenticated request: nullopt admits it, a duration refuses it with
/// `429 too_many_requests` and that `Retry-After`.
using request_admission = std::function<std::optional<std::chrono::seconds>(std::string_view user)>;

/// Answers one request: sans-I/O, so it is tested without sockets too. `stopping` makes health
/// report that the server drains; `admit`, if set, is the per-user request limit.
inline routed route(sync_service& service, const authenticator& auth, const http_request& req,
                    bool stopping, bool change_streams = true,
                    const request_admission& admit = {}) {
    routed r;
    r.response.version(11);
    const auto target = std::string_view(req.target().data(), req.target().size());
    const auto qpos = target.find('?');
    const auto path = target.substr(0, qpos);
    const auto query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);

    if (path == "/healthz") {
        if (req.method() != boost::beast::http::verb::get) return method_not_allowed(r, "GET"), r;
        // Ready only if the store can be read: a load balancer then takes an instance whose
        // file is damaged or gone out of rotation. The store's message (a file path) is not
        // told to whoever asks.
        const bool storage_ok = stopping || !service.check_storage();
        boost::json::object o{{"status", stopping ? "stopping" : storage_ok ? "ok" : "unavailable"},
                              {"storage", storage_ok ? "ready" : "failed"},
                              {"last_version", service.last_version()}};
        set_json(r.response, stopping || !storage_ok ? 503 : 200, boost::json::serialize(o));
        return r;
    }

    // Everything else needs a user, even a route that does not exist: nothing about the API
    // is revealed to an unauthenticated caller.
    const auto token = bearer_token(req);
    std::optional<std::string> user;
    if (!token.empty() && auth) user = auth(token);
    if (!user || user->empty()) {
        r.response.set(boost::beast::http::field::www_authenticate, "Bearer");
        set_error(r, 401, errc::unauthorized,
                  token.empty() ? "missing Authorization: Bearer token" : "token not accepted");
        return r;
    }
    r.user = std::move(*user);
    if (admit)
        if (const auto wait = admit(r.user)) {
            r.response.set(boost::beast::http::field::retry_after, std::to_string(wait->count()));
            set_error(r, 429, errc::too_many_requests,
                      "more requests than this server takes from one user; retry after " +
                          std::to_string(wait->count()) + " s");
            return r;
        }

    if (path == "/v1/sync/push" || path == "/v1/sync/pull")
        route_sync(r, service, req, path == "/v1/sync/push", query);
    else if (path == "/v1/stream" && change_streams)
        route_stream(r, req, query, token, stopping);
    else if (path == "/v1/stream")
        set_error(r, 404, errc::not_found, "this server serves no change streams");
    else
        route_rest(r, service, req, path);
    return r;
}

/// The answer to a request Beast could not read.
inline routed read_error(const boost::beast::error_code& ec) {
    routed r;
    r.response.version(11);
    if (ec == boost::beast::http::error::body_limit)
        set_error(r, 413, errc::batch_too_large, "request body too large");
    else if (ec == boost::beast::http::error::header_limit)
        set_error(r, 431, errc::headers_too_large, "request headers too large");
    else
        set_error(r, 400, errc::malformed_json, "malformed HTTP request: " + ec.message());
    return r;
}

/// A request whose framing the server will not trust, answered 400 and its connection closed:
/// a version other than HTTP/1.0 or 1.1, or a `Transfer-Encoding` other than exactly
/// `chunked`. Beast reads such a request's body as empty, so the connection's next "request"
/// would be the body: the request smuggling that RFC 9112 section 6.3 closes the connection
/// to prevent. `nullopt` when the framing is sound.
inline std::optional<routed> framing_refusal(const http_request& req) {
    if (req.version() != 10 && req.version() != 11) {
        routed r;
        r.response.version(11);
        set_error(r, 400, errc::malformed_json,
                  "HTTP/" + std::to_string(req.version() / 10) + "." +
                      std::to_string(req.version() % 10) +
                      " is not served: send HTTP/1.1 (or 1.0)");
        return r;
    }
    const auto te = req.find(boost::beast::http::field::transfer_encoding);
    if (te == req.end()) return std::nullopt;
    if (req.version() == 10) {
        // HTTP/1.0 has no transfer codings (RFC 9112 section 6.1: treat the framing as faulty).
        routed r;
        r.response.version(11);
        set_error(r, 400, errc::malformed_json,
                  "Transfer-Encoding is not served with HTTP/1.0: send Content-Length");
        return r;
    }
    const auto value = std::string_view(te->value().data(), te->value().size());
    std::size_t first = 0, last = value.size();
    while (first < last && (value[first] == ' ' || value[first] == '\t')) ++first;
    while (last > first && (value[last - 1] == ' ' || value[last - 1] == '\t')) --last;
    // A second Transfer-Encoding line is refused too: Beast reports it as a read error.
    if (iequals(value.substr(first, last - first), "chunked")) return std::nullopt;
    routed r;
    r.response.version(11);
    set_error(r, 400, errc::malformed_json,
              "Transfer-Encoding '" + std::string(value.substr(0, 64)) +
                  "' is not served: send Content-Length or 'chunked' alone");
    return r;
}

class http_server_impl : public std::enable_shared_from_this<http_server_impl> {
public:
    using tcp = boost::asio::ip::tcp;

    http_server_impl(boost::asio::any_io_executor ex, sync_service& service, authenticator auth,
                     http_server_config config)
        : ex_(std::move(ex)), strand_(boost::asio::make_strand(ex_)), acceptor_(strand_),
          drained_(strand_), service_(service), auth_(std::move(auth)),
          config_(checked(std::move(config))) {}

    static http_server_config checked(http_server_config config) {
        if (config.stream_heartbeat <= std::chrono::milliseconds::zero())
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "http_server: stream_heartbeat must be positive");
        if (config.unauthenticated_timeout <= std::chrono::milliseconds::zero())
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "http_server: unauthenticated_timeout must be positive");
        if (!(config.max_requests_per_user_per_second >= 0) ||
            (config.max_requests_per_user_per_second > 0 && !(config.user_request_burst >= 1)))
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "http_server: max_requests_per_user_per_second must not be negative, "
                             "and user_request_burst must be at least 1");
        return config;
    }

    void listen(const tcp::endpoint& endpoint) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(boost::asio::socket_base::max_listen_connections);
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

    void start() {
        {
            std::lock_guard lock(mutex_);
            accepting_ = true;
        }
        boost::asio::co_spawn(strand_, accept_loop(shared_from_this()), boost::asio::detached);
    }

    const boost::asio::strand<boost::asio::any_io_executor>& strand() const noexcept { return strand_; }

    std::size_t connections() const {
        std::lock_guard lock(mutex_);
        return connections_.size();
    }

    std::size_t streams() const {
        std::lock_guard lock(mutex_);
        return streams_;
    }

    /// From now on no request begins: idle connections close as they notice, busy ones after
    /// their answer.
    void begin_stop() {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }

    boost::asio::awaitable<void> shutdown(std::shared_ptr<http_server_impl> self) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        std::vector<std::shared_ptr<connection>> idle;
        std::vector<std::shared_ptr<stream_wake>> streaming;
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
            for (auto& [id, c] : connections_) {
                if (c->idle) idle.push_back(c);
                if (c->live) streaming.push_back(c->live);
            }
        }
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& c : idle) cancel(c, true);
        // Each stream says goodbye (a `close` event) and ends.
        for (auto& w : streaming) wake(w);
        auto deadline = std::chrono::steady_clock::now() + config_.drain_timeout;
        bool forced = false;
        for (;;) {
            const bool late = std::chrono::steady_clock::now() >= deadline;
            std::vector<std::shared_ptr<connection>> left;
            {
                std::lock_guard lock(mutex_);
                if (connections_.empty() && !accepting_) break;
                if (late)
                    for (auto& [id, c] : connections_) left.push_back(c);
            }
            if (late) {
                if (forced) break; // closed connections that still have not ended: give up
                forced = true;
                for (auto& c : left) {
                    cancel(c, false);
                    std::shared_ptr<stream_wake> live;
                    {
                        std::lock_guard lock(mutex_);
                        live = c->live;
                    }
                    if (live) wake(live); // a stream's writer waits on its timer, not on I/O
                }
                deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
            }
            drained_.expires_at(deadline);
            co_await drained_.async_wait(tok);
        }
        (void)self;
    }

private:
    /// How a change stream's writer sleeps between events: on a timer until its heartbeat,
    /// cut short by news or a shutdown. `woken` keeps a wake that came while the writer was
    /// busy. Both are touched on the connection's strand only.
    struct stream_wake {
        explicit stream_wake(const boost::asio::any_io_executor& ex) : timer(ex) {}
        boost::asio::steady_timer timer;
        bool woken = false;
    };

    static void wake(const std::shared_ptr<stream_wake>& w) {
        boost::asio::post(w->timer.get_executor(), [w] {
            w->woken = true;
            w->timer.cancel();
        });
    }

    struct connection {
        explicit connection(tcp::socket socket) : stream(std::move(socket)) {}
        boost::beast::tcp_stream stream;
        std::uint64_t id = 0;
        std::string remote;
        std::string address; ///< the peer's IP address alone, counted per address
        /// Whether a request with an accepted token came; until then
        /// `unauthenticated_timeout` bounds every wait and read. Touched on the connection's
        /// strand only.
        bool trusted = false;
        bool idle = false; ///< waiting for a request to begin; guarded by the server's mutex
        std::shared_ptr<stream_wake> live; ///< set while it carries a change stream; guarded too
    };

    /// Cancels a connection's I/O on its strand. `if_still_idle`: only if it still waits for a
    /// request to begin; one whose request arrived meanwhile is let finish (drained).
    void cancel(const std::shared_ptr<connection>& c, bool if_still_idle) {
        boost::asio::post(c->stream.get_executor(), [self = shared_from_this(), c, if_still_idle] {
            {
                std::lock_guard lock(self->mutex_);
                if (if_still_idle && !c->idle) return;
            }
            c->stream.cancel();
        });
    }

    void wake_shutdown() {
        boost::asio::post(strand_, [self = shared_from_this()] { self->drained_.cancel(); });
    }

    boost::asio::awaitable<void> accept_loop(std::shared_ptr<http_server_impl> self) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        for (;;) {
            tcp::socket socket(boost::asio::make_strand(ex_));
            auto [ec] = co_await acceptor_.async_accept(socket, tok);
            std::shared_ptr<connection> c;
            {
                std::lock_guard lock(mutex_);
                if (stopping_ || !acceptor_.is_open()) break;
                if (ec) {
                    // Out of descriptors and the like: breathe, then accept again.
                } else if (connections_.size() - streams_ >= config_.max_connections) {
                    // Change streams have a limit of their own (`service_config::live`).
                    // Answered outside `this`: it may outlive the server.
                    boost::asio::co_spawn(socket.get_executor(),
                                   reject_busy(std::move(socket), config_.busy_retry_after),
                                   boost::asio::detached);
                    continue;
                } else {
                    boost::system::error_code rec;
                    const auto ep = socket.remote_endpoint(rec);
                    std::string address = rec ? std::string() : ep.address().to_string();
                    if (!addresses_.open(address)) {
                        boost::asio::co_spawn(
                            socket.get_executor(),
                            reject_busy(std::move(socket), config_.busy_retry_after, true),
                            boost::asio::detached);
                        continue;
                    }
                    c = std::make_shared<connection>(std::move(socket));
                    c->id = ++last_connection_id_;
                    if (!rec) c->remote = address + ":" + std::to_string(ep.port());
                    c->address = std::move(address);
                    connections_.emplace(c->id, c);
                }
            }
            if (c) {
                boost::asio::co_spawn(c->stream.get_executor(), session(self, c), boost::asio::detached);
            } else {
                boost::asio::steady_timer pause(strand_, std::chrono::milliseconds(50));
                co_await pause.async_wait(tok);
            }
        }
        std::lock_guard lock(mutex_);
        accepting_ = false;
        drained_.cancel();
    }

    /// Answers a connection the server will not serve: `503` when it holds `max_connections`,
    /// `429` when the peer's address holds `max_connections_per_address`.
    static boost::asio::awaitable<void> reject_busy(tcp::socket socket, std::chrono::seconds retry,
                                                    bool address_full = false) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        boost::beast::tcp_stream stream(std::move(socket));
        http_response res;
        res.version(11);
        if (address_full)
            set_json(res, 429,
                     boost::json::serialize(error_body(errc::too_many_requests,
                                                       "too many connections from this address")));
        else
            set_json(res, 503, boost::json::serialize(
                                   error_body(errc::server_error, "too many connections")));
        res.set(boost::beast::http::field::retry_after, std::to_string(retry.count()));
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(std::chrono::seconds(1));
        auto [ec, n] = co_await boost::beast::http::async_write(stream, res, tok);
        if (!ec) co_await linger_close(stream);
        stream.close();
    }

    /// Closes our side after an answer, then drains what the client still sends for a moment,
    /// so the close does not reset the connection before the client read the answer.
    static boost::asio::awaitable<void> linger_close(boost::beast::tcp_stream& stream) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream.expires_after(std::chrono::milliseconds(500));
        std::array<char, 4096> sink;
        std::size_t drained = 0;
        while (drained < (1u << 20)) {
            auto space = boost::asio::buffer(sink);
            auto [ec, n] = co_await stream.async_read_some(space, tok);
            if (ec) break;
            drained += n;
        }
    }

    boost::asio::awaitable<void> session(std::shared_ptr<http_server_impl> self,
                                  std::shared_ptr<connection> c) {
        struct unregister {
            http_server_impl* server;
            std::uint64_t id;
            std::string address;
            ~unregister() {
                std::lock_guard lock(server->mutex_);
                server->connections_.erase(id);
                server->addresses_.close(address);
                if (server->stopping_ && server->connections_.empty()) server->wake_shutdown();
            }
        } guard{this, c->id, c->address};
        (void)self;
        try {
            co_await serve(*c);
        } catch (const std::exception&) {
            // A failure of this connection only (out of memory while answering, ...).
        }
        boost::system::error_code ignored;
        c->stream.socket().close(ignored);
    }

    using request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

    /// Serves one connection's requests in turn until it closes, idles out or the server stops.
    boost::asio::awaitable<void> serve(connection& c) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        auto& stream = c.stream;
        boost::beast::flat_buffer buffer;
        for (;;) {
            if (buffer.size() == 0) {
                const bool request_came = co_await wait_for_request(c, buffer);
                if (!request_came) co_return;
            }
            std::optional<request_parser> parser(std::in_place);
            const auto read = co_await read_request(c, buffer, *parser);
            if (!read) co_return; // gone, stalled or cancelled: nobody to answer
            const auto ec = *read;
            const auto started = std::chrono::steady_clock::now();
            bool close = false;
            routed r = answer(*parser, ec, close);
            if (!r.user.empty()) c.trusted = true;
            if (r.stream) {
                auto w = std::make_shared<stream_wake>(stream.get_executor());
                auto subscription = subscribe_stream(r, w);
                if (subscription) {
                    log_request(c, *parser, ec, r, started);
                    // What the request held is not kept for the stream's life.
                    parser.reset();
                    buffer.clear();
                    buffer.shrink_to_fit();
                    co_await stream_changes(c, std::move(r.user), std::move(*r.stream),
                                            std::move(w), std::move(subscription));
                    co_return;
                }
                // Refused (too many streams): answered and logged like any request, and the
                // connection closes, since a client that wanted a stream has no next request.
                close = true;
            }
            r.response.set(boost::beast::http::field::server, "offsync");
            r.response.keep_alive(!close);
            r.response.prepare_payload();
            stream.expires_after(config_.read_timeout);
            auto [wec, wn] = co_await boost::beast::http::async_write(stream, r.response, tok);
            log_request(c, *parser, ec, r, started);
            if (wec) co_return;
            if (close) {
                co_await linger_close(stream);
                co_return;
            }
        }
    }

    /// Registers a routed stream with the live hub. Null if refused: `r` then holds the error
    /// answer, with the `Retry-After` that the client honours.
    std::shared_ptr<live_subscription> subscribe_stream(
        routed& r, const std::shared_ptr<stream_wake>& w) {
        diagnostics refused;
        auto subscription = service_.live_streams()->subscribe(
            r.user, r.stream->client, [weak = std::weak_ptr<stream_wake>(w)] {
                if (auto alive = weak.lock()) wake(alive);
            },
            refused);
        if (!subscription) {
            set_error(r, refused);
            r.response.set(boost::beast::http::field::retry_after,
                           std::to_string(config_.stream_retry_after.count()));
        }
        return subscription;
    }

    /// Carries a change stream (docs/live.md) until the client goes, the token is no longer
    /// accepted, or the server stops: `ready`, then `change` events as the hub queues hints,
    /// heartbeats when idle, and a `close` event when the server ends it.
    boost::asio::awaitable<void> stream_changes(
        connection& c, std::string user, stream_request request, std::shared_ptr<stream_wake> w,
        std::shared_ptr<live_subscription> subscription) {
        namespace http = boost::beast::http;
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        auto& stream = c.stream;
        struct registration {
            http_server_impl* server;
            connection& c;
            ~registration() {
                std::lock_guard lock(server->mutex_);
                c.live.reset();
                --server->streams_;
            }
        };
        {
            std::lock_guard lock(mutex_);
            c.live = w;
            ++streams_;
            // A shutdown that began since the request was routed did not see this stream:
            // it says goodbye at its first wake.
            if (stopping_) w->woken = true;
        }
        registration registered{this, c};

        http::response<http::empty_body> res{http::status::ok, 11};
        res.set(http::field::server, "offsync");
        res.set(http::field::content_type, "text/event-stream");
        res.set(http::field::cache_control, "no-store");
        res.set("X-Accel-Buffering", "no"); // nginx and others: pass each event on at once
        res.keep_alive(false);
        res.chunked(true);
        http::response_serializer<http::empty_body> header(res);
        stream.expires_after(config_.read_timeout);
        auto [hec, hn] = co_await http::async_write_header(stream, header, tok);
        if (hec) co_return;
        const bool greeted = co_await send(stream, live::ready_text(config_.stream_heartbeat));
        if (!greeted) co_return;
        auto next_heartbeat = std::chrono::steady_clock::now() + config_.stream_heartbeat;
        for (;;) {
            if (!w->woken) {
                w->timer.expires_at(next_heartbeat);
                co_await w->timer.async_wait(tok);
            }
            w->woken = false;
            bool stopping;
            {
                std::lock_guard lock(mutex_);
                stopping = stopping_;
            }
            if (stopping) {
                co_await finish(stream, errc::server_error, "the server is shutting down");
                co_return;
            }
            if (subscription->replaced()) {
                co_await finish(stream, errc::server_error,
                                "replaced by a newer stream of the same device");
                co_return;
            }
            std::string text;
            for (const auto& hint : subscription->take()) text += live::change_text(hint);
            if (std::chrono::steady_clock::now() >= next_heartbeat) {
                std::optional<std::string> still;
                try {
                    if (auth_) still = auth_(request.token);
                } catch (const std::exception&) {
                    // An authenticator that fails is no answer: keep the stream till next time.
                    still = user;
                }
                if (!still || *still != user) {
                    co_await finish(stream, errc::unauthorized, "the token is no longer accepted");
                    co_return;
                }
                if (text.empty()) text = live::heartbeat_text;
                next_heartbeat = std::chrono::steady_clock::now() + config_.stream_heartbeat;
            }
            if (!text.empty()) {
                const bool sent = co_await send(stream, text);
                if (!sent) co_return; // the client went away, or stopped reading
            }
        }
    }

    /// Writes one chunk of a change stream; false if it could not be written in time.
    boost::asio::awaitable<bool> send(boost::beast::tcp_stream& stream, const std::string& text) {
        stream.expires_after(config_.read_timeout);
        auto [ec, n] = co_await boost::asio::async_write(
            stream, boost::beast::http::make_chunk(boost::asio::buffer(text)),
            boost::asio::as_tuple(boost::asio::use_awaitable));
        co_return !ec;
    }

    /// Ends a change stream the server closes: a `close` event telling why, the last chunk.
    boost::asio::awaitable<void> finish(boost::beast::tcp_stream& stream, errc code,
                                        std::string_view why) {
        const bool sent = co_await send(stream, live::close_text(code, why));
        if (!sent) co_return;
        stream.expires_after(config_.read_timeout);
        auto [ec, n] = co_await boost::asio::async_write(
            stream, boost::beast::http::make_chunk_last(),
            boost::asio::as_tuple(boost::asio::use_awaitable));
        if (!ec) co_await linger_close(stream);
    }

    /// Waits, idle, for the first bytes of the next request; false if none will come (the
    /// client closed, the connection idled out, or the server stops).
    boost::asio::awaitable<bool> wait_for_request(connection& c, boost::beast::flat_buffer& buffer) {
        if (buffer.capacity() > idle_read_bytes) buffer.shrink_to_fit();
        {
            std::lock_guard lock(mutex_);
            if (stopping_) co_return false;
            c.idle = true;
        }
        c.stream.expires_after(c.trusted ? config_.idle_timeout
                                         : std::min(config_.idle_timeout,
                                                    config_.unauthenticated_timeout));
        auto space = buffer.prepare(idle_read_bytes);
        auto [ec, n] = co_await c.stream.async_read_some(
            space, boost::asio::as_tuple(boost::asio::use_awaitable));
        {
            std::lock_guard lock(mutex_);
            c.idle = false;
        }
        if (ec) co_return false;
        buffer.commit(n);
        co_return true;
    }

    /// Reads one request within the limits, answering "100 Continue" when it is asked for.
    /// Completes with the read's error (none, or one that deserves an answer: a body or
    /// headers too large, a malformed request), or nullopt when nobody is left to answer: the
    /// client went away, stalled past the timeout, or the read was cancelled.
    boost::asio::awaitable<std::optional<boost::beast::error_code>>
    read_request(connection& c, boost::beast::flat_buffer& buffer, request_parser& parser) {
        const auto tok = boost::asio::as_tuple(boost::asio::use_awaitable);
        auto& stream = c.stream;
        auto answerable = [](const boost::beast::error_code& ec)
            -> std::optional<boost::beast::error_code> {
            if (ec == boost::beast::http::error::end_of_stream ||
                ec == boost::beast::error::timeout ||
                ec == boost::asio::error::operation_aborted ||
                ec == boost::asio::error::connection_reset)
                return std::nullopt;
            return ec;
        };
        parser.header_limit(static_cast<std::uint32_t>(config_.max_header_bytes));
        parser.body_limit(config_.max_body_bytes);
        const auto began = std::chrono::steady_clock::now();
        const auto read_deadline = began + config_.read_timeout;
        stream.expires_at(c.trusted ? read_deadline
                                    : std::min(read_deadline,
                                               began + config_.unauthenticated_timeout));
        auto [hec, hn] = co_await boost::beast::http::async_read_header(stream, buffer, parser, tok);
        if (hec || parser.is_done()) co_return answerable(hec);
        if (!c.trusted && accepted_token(parser.get())) {
            // A client that sent a good token may take `read_timeout` over a large body.
            c.trusted = true;
            stream.expires_at(read_deadline);
        }
        // curl and others wait for "100 Continue" before they send a larger body.
        const auto& fields = parser.get();
        if (auto it = fields.find(boost::beast::http::field::expect);
            it != fields.end() &&
            iequals(std::string_view(it->value().data(), it->value().size()), "100-continue")) {
            boost::beast::http::response<boost::beast::http::empty_body> proceed{
                boost::beast::http::status::continue_, 11};
            auto [cec, cn] = co_await boost::beast::http::async_write(stream, proceed, tok);
            if (cec) co_return std::nullopt; // the client cannot hear an answer either
        }
        // Beast reads as much as the buffer has room for: a connection's small idle buffer
        // would take a large push 4 KiB per system call. The room is given back once the
        // connection is idle again.
        if (const auto length = parser.content_length();
            length && *length > buffer.capacity() - buffer.size())
            buffer.reserve(buffer.size() + std::min<std::uint64_t>(*length, body_read_chunk_bytes));
        auto [bec, bn] = co_await boost::beast::http::async_read(stream, buffer, parser, tok);
        co_return answerable(bec);
    }

    /// The answer to a request read with `read_error` (or none); `close` is set when the
    /// connection must close after it.
    routed answer(request_parser& parser, const boost::beast::error_code& read_error_code,
                  bool& close) {
        routed r;
        bool stopping;
        {
            std::lock_guard lock(mutex_);
            stopping = stopping_;
        }
        if (read_error_code) {
            r = read_error(read_error_code);
            close = true;
        } else if (auto refused = framing_refusal(parser.get())) {
            r = std::move(*refused);
            close = true;
        } else {
            try {
                r = route(service_, auth_, parser.get(), stopping, config_.change_streams,
                          admission_);
            } catch (const std::exception& e) {
                r = routed{};
                r.response.version(11);
                set_error(r, 500, errc::server_error, e.what());
            }
            close = !parser.get().keep_alive() || stopping;
        }
        {
            std::lock_guard lock(mutex_);
            close = close || stopping_;
        }
        return r;
    }

    /// Whether the request's Bearer token is one the authenticator accepts.
    bool accepted_token(const http_request& req) const {
        const auto token = bearer_token(req);
        if (token.empty() || !auth_) return false;
        try {
            const auto user = auth_(token);
            return user && !user->empty();
        } catch (const std::exception&) {
            return false;
        }
    }

    void log_request(const connection& c, request_parser& parser,
                     const boost::beast::error_code& read_error_code, const routed& r,
                     std::chrono::steady_clock::time_point started) {
        if (!config_.log) return;
        const auto& req = parser.get();
        request_log line;
        line.connection = c.id;
        line.remote = c.remote;
        if (!read_error_code) {
            line.method = std::string_view(req.method_string().data(), req.method_string().size());
            line.target = std::string_view(req.target().data(), req.target().size());
            line.request_bytes = req.body().size();
        }
        line.status = r.response.result_int();
        line.user = r.user;
        line.error = r.error;
        line.response_bytes = r.response.body().size();
        line.duration = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - started);
        try {
            config_.log(line);
        } catch (...) {
            // A failing logger must not take the connection down.
        }
    }

    /// What an idle connection's buffer holds: a request line, headers, a small body.
    static constexpr std::size_t idle_read_bytes = 4096;
    /// Beast's largest single read (64 KiB), the room made for a larger body.
    static constexpr std::size_t body_read_chunk_bytes = 64 * 1024;

    boost::asio::any_io_executor ex_;
    boost::asio::strand<boost::asio::any_io_executor> strand_;
    tcp::acceptor acceptor_;
    boost::asio::steady_timer drained_;
    sync_service& service_;
    authenticator auth_;
    http_server_config config_;
    /// The per-user request limit, as `route` asks it (empty when there is none).
    request_admission admission_ =
        config_.max_requests_per_user_per_second > 0
            ? request_admission([this](std::string_view user) {
                  std::lock_guard lock(limiter_mutex_);
                  return limiter_.admit(user, std::chrono::steady_clock::now());
              })
            : request_admission();
    mutable std::mutex mutex_;
    std::unordered_map<std::uint64_t, std::shared_ptr<connection>> connections_;
    std::uint64_t last_connection_id_ = 0;
    std::size_t streams_ = 0; ///< connections carrying a change stream
    bool accepting_ = false;
    bool stopping_ = false;
    address_counter addresses_{config_.max_connections_per_address}; ///< guarded by mutex_
    std::mutex limiter_mutex_; ///< apart from mutex_: taken once per request
    request_rate_limiter limiter_{config_.max_requests_per_user_per_second,
                                  config_.user_request_burst};
};

} // namespace detail

/// Serves a `sync_service` over HTTP/1.1 with keep-alive:
///
/// | route | auth | what |
/// |---|---|---|
/// | `POST /v1/sync/push` | Bearer | `sync_service::handle_push` (JSON body) |
/// | `GET /v1/sync/pull?collection=C&since=N&limit=N` | Bearer | `sync_service::handle_pull` |
/// | `GET /v1/C` | Bearer | `{"records": [<change>...]}`: every live record the user sees |
/// | `GET /v1/C/{id}` | Bearer | the record as a `<change>`, with `ETag: "<version>"` |
/// | `PUT /v1/C/{id}` | Bearer | writes the fields of the JSON object body; `If-Match: "<version>"` makes it conditional: a stale base answers 409 with the server's record |
/// | `DELETE /v1/C/{id}` | Bearer | deletes it (a tombstone); `If-Match` as for PUT |
/// | `GET /v1/stream[?client_id=ID]` | Bearer | a change stream (`text/event-stream`, docs/live.md): a hint each time a collection changes where the user may see it |
/// | `GET /healthz` | none | `{"status": "ok", ...}`; 503 `"stopping"` while it drains, `"unavailable"` when the store cannot be read |
///
/// Errors are `{"error": {"code", "message"}}` with the status of `http_status()`, plus 405 (a
/// method a route does not have), 415 (a body that is not `application/json`), 431 (headers
/// too large), 429 (too many change streams, a user's requests over its rate, or an address's
/// connections over its limit; with `Retry-After`) and 503 (too many connections). docs/protocol.md has the details. Change streams do not count against
/// `max_connections`; `service_config::live` limits them.
///
/// Threading: the accept loop runs on a strand of the executor; every connection runs as a
/// coroutine on a strand of its own, so a multi-threaded io_context serves connections in
/// parallel. The service and the authenticator are called from those strands.
///
/// Lifetime: the service must outlive the server's work. Call `async_shutdown` and let it
/// complete (or stop the io_context) before destroying the service. The server object itself
/// may be destroyed at any time: the running coroutines keep their state alive.
class http_server {
public:
    using executor_type = boost::asio::any_io_executor;
    using tcp = boost::asio::ip::tcp;

    /// `auth` decides every request but `/healthz`; an empty one refuses them all.
    http_server(executor_type ex, sync_service& service, authenticator auth,
                http_server_config config = {})
        : impl_(std::make_shared<detail::http_server_impl>(std::move(ex), service, std::move(auth),
                                                           std::move(config))) {}

    /// Binds and listens (port 0: an ephemeral port, see `local_endpoint`). Throws
    /// `boost::system::system_error` if the address cannot be bound.
    void listen(const tcp::endpoint& endpoint) { impl_->listen(endpoint); }

    tcp::endpoint local_endpoint() const { return impl_->local_endpoint(); }

    /// Starts accepting connections. Call once, after `listen`.
    void start() { impl_->start(); }

    /// Open connections right now, change streams included.
    std::size_t connections() const { return impl_->connections(); }

    /// Open change streams right now.
    std::size_t streams() const { return impl_->streams(); }

    /// Graceful shutdown: stops accepting, closes idle keep-alive connections, lets requests in
    /// flight finish (their responses carry `Connection: close`), and completes once every
    /// connection has ended, or after `drain_timeout` once the stragglers were closed.
    ///
    /// Completion signature `void(error_code)`: empty when the server has stopped, else why
    /// the shutdown itself failed (the code of a `system_error` it met, or
    /// `boost::system::errc::io_error` for any other exception); the listening socket is
    /// closed either way. The handler runs on its associated executor (the server's executor
    /// if it has none), never inside this call. Cancellation: none; the drain is bounded by
    /// `drain_timeout` instead. Takes any completion token.
    template <class Token = boost::asio::deferred_t>
    auto async_shutdown(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [](auto handler, std::shared_ptr<detail::http_server_impl> impl) {
                auto* raw = impl.get();
                raw->begin_stop();
                // Outstanding work on the handler's executor keeps its io_context running
                // until the handler has run there.
                auto work = boost::asio::prefer(boost::asio::get_associated_executor(handler, raw->strand()),
                                         boost::asio::execution::outstanding_work.tracked);
                boost::asio::co_spawn(raw->strand(), raw->shutdown(std::move(impl)),
                               [h = std::move(handler), work](std::exception_ptr e) mutable {
                                   boost::asio::post(work, [h = std::move(h), ec = failure_of(e),
                                                     work]() mutable { std::move(h)(ec); });
                               });
            },
            token, impl_);
    }

private:
    static error_code failure_of(const std::exception_ptr& e) {
        if (!e) return {};
        try {
            std::rethrow_exception(e);
        } catch (const boost::system::system_error& failure) {
            return failure.code();
        } catch (...) {
            return make_error_code(boost::system::errc::io_error);
        }
    }

    std::shared_ptr<detail::http_server_impl> impl_;
};

} // namespace offsync::server
