// offsync — the HTTP server's limits on users and addresses, sans I/O: a token bucket per user
// for requests, and a count per address for connections. The server asks them; tests drive
// them with their own clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace offsync::server::detail {

/// Requests per user: a token bucket per user, holding up to `burst` requests and refilled at
/// `per_second`. A request takes one token; without one it is refused, and told when the next
/// one comes (rounded up to whole seconds, as `Retry-After` is).
///
/// Memory: one bucket per user seen recently. A bucket that has refilled completely is the
/// same as none, so `admit` drops such buckets once there are more than `max_tracked` of them:
/// the map stays bounded by the users active within the time it takes a bucket to refill.
class request_rate_limiter {
public:
    using clock = std::chrono::steady_clock;

    /// `per_second` <= 0: no limit (every request admitted, nothing kept).
    request_rate_limiter(double per_second, double burst, std::size_t max_tracked = 4096)
        : per_second_(per_second), burst_(std::max(1.0, burst)), max_tracked_(max_tracked) {}

    bool enabled() const noexcept { return per_second_ > 0; }

    /// Admits one request of `user` at `now`: nullopt, or how long until a request would be
    /// admitted (at least one second).
    std::optional<std::chrono::seconds> admit(std::string_view user, clock::time_point now) {
        if (!enabled()) return std::nullopt;
        auto it = buckets_.find(std::string(user));
        if (it == buckets_.end()) {
            if (buckets_.size() >= max_tracked_) forget_full(now);
            it = buckets_.emplace(std::string(user), bucket{burst_, now}).first;
        }
        auto& b = it->second;
        refill(b, now);
        if (b.tokens >= 1.0) {
            b.tokens -= 1.0;
            return std::nullopt;
        }
        // At most a day: a tiny rate must not overflow the conversion.
        const double wait = std::min((1.0 - b.tokens) / per_second_, 86400.0);
        return std::chrono::seconds(std::max<long long>(1, static_cast<long long>(std::ceil(wait))));
    }

    std::size_t tracked() const noexcept { return buckets_.size(); }

private:
    struct bucket {
        double tokens;
        clock::time_point at;
    };

    void refill(bucket& b, clock::time_point now) const {
        const std::chrono::duration<double> elapsed = now - b.at;
        if (elapsed.count() > 0) b.tokens = std::min(burst_, b.tokens + elapsed.count() * per_second_);
        b.at = now;
    }

    void forget_full(clock::time_point now) {
        for (auto it = buckets_.begin(); it != buckets_.end();) {
            refill(it->second, now);
            if (it->second.tokens >= burst_) it = buckets_.erase(it);
            else ++it;
        }
    }

    double per_second_;
    double burst_;
    std::size_t max_tracked_;
    std::unordered_map<std::string, bucket> buckets_;
};

/// Open connections per address, for `max_connections_per_address`. Not thread-safe: the
/// server holds its lock around it.
class address_counter {
public:
    explicit address_counter(std::size_t limit) : limit_(limit) {}

    /// Counts a new connection from `address`, unless that address holds the limit already
    /// (then false, nothing counted). A limit of 0 admits every connection.
    bool open(const std::string& address) {
        if (limit_ == 0) return true;
        auto& n = open_[address];
        if (n >= limit_) return false;
        ++n;
        return true;
    }
    /// The end of a connection `open` admitted.
    void close(const std::string& address) {
        if (limit_ == 0) return;
        auto it = open_.find(address);
        if (it == open_.end()) return;
        if (--it->second == 0) open_.erase(it);
    }
    std::size_t addresses() const noexcept { return open_.size(); }

private:
    std::size_t limit_;
    std::unordered_map<std::string, std::size_t> open_;
};

} // namespace offsync::server::detail
