// offsync — a server's address given as a URL ("http://sync.example.com:8080/api"), parsed and
// checked once, where the app configures it, not at the first request.
#pragma once

#include <offsync/error.hpp>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace offsync {

/// The parts of a server URL that an HTTP transport needs.
struct server_url {
    std::string host;       ///< a name, an IPv4 address or an IPv6 address (without brackets)
    std::uint16_t port = 80;
    std::string base_path;  ///< "" or "/api": prepended to every route
};

/// Parses `http://host[:port][/base/path]`. Throws `sync_error` with
/// `errc::invalid_configuration` and a message that quotes the URL and says what is wrong:
/// another scheme (`https://` needs TLS, which `http_transport` does not speak yet), no host, a
/// port that is not a number from 1 to 65535, user info, a query or a fragment.
inline server_url parse_server_url(std::string_view url) {
    auto fail = [&](const std::string& why) -> server_url {
        throw sync_error(make_error_code(errc::invalid_configuration),
                         "server URL '" + std::string(url) + "': " + why);
    };
    constexpr std::string_view scheme = "http://";
    if (url.substr(0, 8) == "https://")
        return fail("https needs TLS, which http_transport does not speak yet; use http:// "
                    "behind a TLS-terminating proxy");
    if (url.size() < scheme.size() || url.substr(0, scheme.size()) != scheme)
        return fail("expected http://host[:port][/path]");
    std::string_view rest = url.substr(scheme.size());
    if (rest.find_first_of("?#") != std::string_view::npos)
        return fail("a query or fragment has no meaning here");
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos)
        return fail("user info in the URL is not supported; give a token provider");
    server_url out;
    std::string_view port_text;
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return fail("unterminated IPv6 address");
        out.host = std::string(authority.substr(1, close - 1));
        const auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail("unexpected text after the IPv6 address");
            port_text = after.substr(1);
            if (port_text.empty()) return fail("empty port");
        }
    } else {
        const auto colon = authority.rfind(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = authority.substr(colon + 1);
            if (port_text.empty()) return fail("empty port");
        }
        if (out.host.find(':') != std::string::npos)
            return fail("an IPv6 address goes in brackets: http://[::1]:8080");
    }
    if (out.host.empty()) return fail("no host");
    if (!port_text.empty()) {
        unsigned value = 0;
        const auto [end, ec] =
            std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || value == 0 ||
            value > 65535)
            return fail("port '" + std::string(port_text) + "' is not a number from 1 to 65535");
        out.port = static_cast<std::uint16_t>(value);
    }
    while (path.size() > 0 && path.back() == '/') path.remove_suffix(1);
    out.base_path = std::string(path);
    return out;
}

} // namespace offsync
