// offsync — live changes: the messages of the server's change stream and the sans-I/O pieces
// both ends share (the event text, its parser, the client's reconnection delays).
//
// The stream is Server-Sent Events over HTTP/1.1 (`GET /v1/stream`, docs/protocol.md "Live
// changes" argues the choice). Each event tells a device that a collection changed where its
// user may see it, up to a version; the device then runs a pull round, and the cursor protocol
// fetches what changed. A hint carries no record and no count: a lost one costs latency only.
#pragma once

#include <offsync/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace offsync {

/// A collection changed where the stream's user may see it, up to `version`: a pull of it from
/// a cursor below `version` finds something new.
struct change_hint {
    std::string collection = {};
    std::uint64_t version = 0;
    friend bool operator==(const change_hint&, const change_hint&) = default;
};

/// The state of a device's change stream, as the app observes it.
enum class live_state {
    off,         ///< not started, or stopped
    connecting,  ///< opening the stream (the first time, or after a wait)
    live,        ///< open: the server's hints arrive within milliseconds
    waiting,     ///< lost or refused; the next attempt follows a backoff delay
    unavailable, ///< the server has no stream route (404/405): periodic rounds only, no retry
};

inline const char* to_string(live_state s) noexcept {
    switch (s) {
    case live_state::off: return "off";
    case live_state::connecting: return "connecting";
    case live_state::live: return "live";
    case live_state::waiting: return "waiting";
    case live_state::unavailable: return "unavailable";
    }
    return "unknown";
}

/// One event of the stream, as parsed: its `event:` name ("message" when it had none) and its
/// `data:` lines joined by '\n'.
struct live_event {
    std::string name;
    std::string data;
};

namespace live {

/// The event names the server sends.
inline constexpr std::string_view ready_event = "ready";   ///< first: `{"heartbeat_ms": N}`
inline constexpr std::string_view change_event = "change"; ///< `{"collection": C, "version": V}`
inline constexpr std::string_view close_event = "close";   ///< last: `{"error": {code, message}}`

/// One event's text: `event:` and one `data:` line (the data must hold no line break; JSON
/// text from `boost::json::serialize` never does), ended by a blank line.
inline std::string event_text(std::string_view name, std::string_view data) {
    std::string out;
    out.reserve(name.size() + data.size() + 16);
    out.append("event: ").append(name).append("\ndata: ").append(data).append("\n\n");
    return out;
}

/// A comment line: keeps the connection busy for proxies and tells the client the server
/// lives, without dispatching an event.
inline constexpr std::string_view heartbeat_text = ":\n\n";

inline std::string ready_text(std::chrono::milliseconds heartbeat) {
    boost::json::object o;
    o.emplace("heartbeat_ms", heartbeat.count());
    return event_text(ready_event, boost::json::serialize(o));
}

inline std::string change_text(const change_hint& h) {
    boost::json::object o;
    o.emplace("collection", h.collection);
    o.emplace("version", h.version);
    return event_text(change_event, boost::json::serialize(o));
}

/// The last event of a stream the server ends: why (`unauthorized`: the token is no longer
/// accepted; `server_error`: the server shuts down).
inline std::string close_text(errc code, std::string_view message) {
    boost::json::object error;
    error.emplace("code", to_string(code));
    error.emplace("message", message);
    boost::json::object o;
    o.emplace("error", std::move(error));
    return event_text(close_event, boost::json::serialize(o));
}

/// The hint of a `change` event's data; nullopt if it is not one (a client ignores it: a newer
/// server may send more than it knows).
inline std::optional<change_hint> parse_change(std::string_view data) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(data, ec);
    if (ec || !v.is_object()) return std::nullopt;
    const auto& o = v.get_object();
    const auto* c = o.if_contains("collection");
    const auto* n = o.if_contains("version");
    if (!c || !c->is_string() || c->get_string().empty() || !n) return std::nullopt;
    change_hint h;
    h.collection = std::string(c->get_string());
    if (n->is_uint64()) h.version = n->get_uint64();
    else if (n->is_int64() && n->get_int64() >= 0) h.version = static_cast<std::uint64_t>(n->get_int64());
    else return std::nullopt;
    return h;
}

/// The heartbeat interval a `ready` event announces; nullopt if it is not a positive number.
inline std::optional<std::chrono::milliseconds> parse_ready(std::string_view data) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(data, ec);
    if (ec || !v.is_object()) return std::nullopt;
    const auto* n = v.get_object().if_contains("heartbeat_ms");
    // Up to a day: a larger interval is a server's mistake, and would disable stall detection.
    if (!n || !n->is_int64() || n->get_int64() <= 0 || n->get_int64() > 86'400'000)
        return std::nullopt;
    return std::chrono::milliseconds(n->get_int64());
}

/// The code and message of a `close` event; `server_error` for data it cannot read.
inline diagnostics parse_close(std::string_view data) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(data, ec);
    diagnostics d{make_error_code(errc::server_error), "the server closed the stream"};
    if (ec || !v.is_object()) return d;
    const auto* e = v.get_object().if_contains("error");
    if (!e || !e->is_object()) return d;
    const auto* code = e->get_object().if_contains("code");
    const auto* message = e->get_object().if_contains("message");
    if (code && code->is_string())
        if (auto known = errc_from_string(std::string_view(code->get_string())))
            d.code = make_error_code(*known);
    if (message && message->is_string()) d.message = std::string(message->get_string());
    return d;
}

/// Text/event-stream parsing, sans I/O: feed it the bytes as they come, in pieces of any size,
/// and it hands back each complete event. Lines end with "\n", "\r\n" or "\r"; comments
/// (":...") and `id:`/`retry:` fields are skipped; an event without data is not dispatched, as
/// the standard says. A line longer than `max_line_bytes`, or an event whose data grows past
/// it, is an error (a server that streams garbage must not grow the client's memory): `feed`
/// then returns false and the stream should be dropped.
class event_parser {
public:
    explicit event_parser(std::size_t max_line_bytes = 64 * 1024) : max_line_(max_line_bytes) {}

    /// Parses `bytes`; complete events are appended to `out`. False on a line over the limit.
    bool feed(std::string_view bytes, std::vector<live_event>& out) {
        for (char ch : bytes) {
            if (after_cr_) {
                after_cr_ = false;
                if (ch == '\n') continue; // the "\n" of a "\r\n"
            }
            if (ch == '\r' || ch == '\n') {
                after_cr_ = ch == '\r';
                line_done(out);
                continue;
            }
            if (line_.size() >= max_line_ || data_.size() + line_.size() >= max_line_)
                return false;
            line_.push_back(ch);
        }
        return true;
    }

private:
    void line_done(std::vector<live_event>& out) {
        if (line_.empty()) {
            if (has_data_) out.push_back({name_.empty() ? "message" : name_, data_});
            name_.clear();
            data_.clear();
            has_data_ = false;
            return;
        }
        std::string_view line = line_;
        if (line.front() != ':') {
            const auto colon = line.find(':');
            auto field = line.substr(0, colon);
            std::string_view value;
            if (colon != std::string_view::npos) {
                value = line.substr(colon + 1);
                if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
            }
            if (field == "event") {
                name_ = std::string(value);
            } else if (field == "data") {
                if (has_data_) data_.push_back('\n');
                data_.append(value);
                has_data_ = true;
            }
        }
        line_.clear();
    }

    std::size_t max_line_;
    std::string line_;
    std::string name_;
    std::string data_;
    bool has_data_ = false;
    bool after_cr_ = false;
};

/// The client's wait before its next attempt to open the stream, after `failures` attempts in
/// a row that failed: `base` doubled each time up to `cap`, then shortened at random by up to
/// `jitter` (in [0, 1)) so that devices a server restart cut off together do not come back
/// together. At least `server_asks` (a `Retry-After`), when the server gave one.
inline std::chrono::milliseconds reconnect_delay(std::size_t failures,
                                                 std::chrono::milliseconds base,
                                                 std::chrono::milliseconds cap, double jitter,
                                                 std::mt19937_64& random,
                                                 std::chrono::milliseconds server_asks = {}) {
    auto d = base;
    for (std::size_t i = 1; i < failures && d < cap; ++i) d *= 2;
    if (d > cap) d = cap;
    if (jitter > 0) {
        std::uniform_real_distribution<double> cut(0.0, jitter);
        d = std::chrono::milliseconds(
            static_cast<std::int64_t>(static_cast<double>(d.count()) * (1.0 - cut(random))));
    }
    if (d < server_asks) d = server_asks;
    return d;
}

} // namespace live
} // namespace offsync
