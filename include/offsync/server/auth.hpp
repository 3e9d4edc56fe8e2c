// offsync — server-side authentication: who a Bearer token belongs to.
#pragma once

#include <offsync/error.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <istream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offsync::server {

/// Maps a Bearer token to the user it authenticates, or `std::nullopt` to refuse it (the server
/// then answers `401 unauthorized`). Any callable of this shape plugs in: a token table, a call
/// to an identity service, a JWT check. It is called once per request, from the connection's
/// executor, possibly from several threads at once: it must be thread-safe, and it should not
/// block for long (it holds up that connection only).
using authenticator = std::function<std::optional<std::string>(std::string_view token)>;

/// Compares two strings in time that depends on their lengths only, never on where they first
/// differ: a token check must not tell an attacker how much of a guess was right.
inline bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    const std::size_t n = a.size() > b.size() ? a.size() : b.size();
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

/// An authenticator over a fixed token table, read from lines of `token user`:
///
/// ```
/// # comments and blank lines are ignored
/// 7f3c0b1e9d2a4c5b8e6f0a1d2c3b4a59  alice
/// 0c9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f  bob
/// ```
///
/// Tokens and user ids are runs of printable non-space ASCII; a token must be at least 16
/// bytes and may appear once. A lookup compares the token with every entry in constant time
/// (per entry) and never stops early, so its duration does not reveal which entry, or how much
/// of one, matched. Immutable after construction: thread-safe. Copy it into an `authenticator`.
class token_file_authenticator {
public:
    /// Shortest token accepted in a token file.
    static constexpr std::size_t min_token_length = 16;

    /// Parses the table. Throws `sync_error` (`errc::invalid_configuration`) naming the source,
    /// the line and why ("tokens.txt:3: token shorter than 16 bytes"), or saying that the
    /// stream cannot be read (a file that did not open): a server never starts with a token
    /// table it could not read, answering every request 401.
    static token_file_authenticator parse(std::istream& in, std::string_view source = "tokens") {
        if (!in)
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "cannot read " + std::string(source));
        token_file_authenticator a;
        std::string line;
        std::size_t number = 0;
        while (std::getline(in, line)) {
            ++number;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            std::istringstream words(line);
            std::string token, user, extra;
            if (!(words >> token) || token[0] == '#') continue;
            auto bad = [&](const std::string& why) {
                return sync_error(make_error_code(errc::invalid_configuration),
                                  std::string(source) + ":" + std::to_string(number) + ": " + why);
            };
            if (!(words >> user) || (words >> extra)) throw bad("expected `token user`");
            if (token.size() < min_token_length)
                throw bad("token shorter than " + std::to_string(min_token_length) + " bytes");
            for (const auto& w : {token, user})
                for (unsigned char ch : w)
                    if (ch < 0x21 || ch > 0x7e) throw bad("non-printable or non-ASCII byte");
            for (const auto& [t, u] : a.entries_)
                if (t == token) throw bad("token listed twice");
            a.entries_.emplace_back(std::move(token), std::move(user));
        }
        if (in.bad())
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "cannot read " + std::string(source) + " to its end");
        return a;
    }

    /// Reads a token file; throws `sync_error` (`errc::invalid_configuration`) if it cannot be
    /// read or a line is malformed.
    static token_file_authenticator load(const std::string& path) {
        std::ifstream in(path);
        return parse(in, path);
    }

    /// The user of `token`, or nullopt.
    std::optional<std::string> operator()(std::string_view token) const {
        const std::pair<std::string, std::string>* match = nullptr;
        for (const auto& entry : entries_)
            if (constant_time_equal(entry.first, token) && !match) match = &entry;
        if (!match) return std::nullopt;
        return match->second;
    }

    std::size_t size() const noexcept { return entries_.size(); }

    /// Every user the table names, sorted, each once (a user may have several tokens): what
    /// a server passes to `sync_service::add_user` so that records can be shared with them.
    std::vector<std::string> users() const {
        std::vector<std::string> out;
        for (const auto& entry : entries_) out.push_back(entry.second);
        std::sort(out.begin(), out.end());
        out.erase(std::unique(out.begin(), out.end()), out.end());
        return out;
    }

private:
    std::vector<std::pair<std::string, std::string>> entries_;
};

} // namespace offsync::server
