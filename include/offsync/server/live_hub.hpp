// offsync — the server's registry of open change streams: who listens, and what each has yet to
// be told. No I/O: a stream's writer (the HTTP server's stream route) is woken through a
// callback and takes the hints waiting for it.
#pragma once

#include <offsync/error.hpp>
#include <offsync/live.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace offsync::server {

/// How many change streams a server holds open: a new one past either limit is refused with
/// `errc::too_many_streams` (HTTP 429), and the device retries after a backoff.
struct live_limits {
    std::size_t max_streams = 20'000;
    std::size_t max_streams_per_user = 16;
};

/// One commit's news for one collection: who may see that it changed, and up to which version.
struct live_news {
    std::string collection = {};
    std::uint64_t version = 0;
    bool everyone = false;               ///< a shared collection: every stream hears of it
    std::vector<std::string> users = {}; ///< otherwise the users who may see the change
    /// The device whose own writes these are (its user and client id), which is not woken by
    /// them: it learned their versions from its push's answer. Empty: nobody's own writes.
    std::string origin_user = {};
    std::string origin_client = {};
};

class live_hub;

/// One open stream: its user and device, and the hints it has yet to send, one per collection
/// (a storm of commits coalesces into the newest version of each: a slow reader never grows
/// the server's memory by more than one hint per collection). Made by `live_hub::subscribe`;
/// leaves the hub when destroyed.
class live_subscription : public std::enable_shared_from_this<live_subscription> {
public:
    live_subscription(const live_subscription&) = delete;
    live_subscription& operator=(const live_subscription&) = delete;
    ~live_subscription();

    const std::string& user() const noexcept { return user_; }
    const std::string& client() const noexcept { return client_; }

    /// Whether a newer stream of the same device took this one's place: its writer ends it.
    bool replaced() const;

    /// The hints waiting, in the order their collections first changed since the last take;
    /// clears them. After this, the next news wakes the stream again.
    std::vector<change_hint> take();

private:
    friend class live_hub;
    struct key {};

public:
    live_subscription(key, std::shared_ptr<live_hub> hub, std::string user, std::string client,
                      std::function<void()> wake)
        : hub_(std::move(hub)), user_(std::move(user)), client_(std::move(client)),
          wake_(std::move(wake)) {}

private:
    std::shared_ptr<live_hub> hub_;
    std::string user_;
    std::string client_;
    std::function<void()> wake_;
    std::vector<change_hint> pending_; ///< guarded by the hub's mutex
    bool woken_ = false;               ///< a wake is on its way; guarded by the hub's mutex
    bool replaced_ = false;            ///< guarded by the hub's mutex
};

/// The registry. Thread-safe: streams subscribe and leave from their own strands while commits
/// publish from request threads. Wake callbacks are called outside the hub's lock, at most once
/// between two `take`s of a stream; they must not block (post to the stream's executor).
/// Held by a `std::shared_ptr` (`make`), so that subscriptions may outlive its owner's scope.
class live_hub : public std::enable_shared_from_this<live_hub> {
public:
    static std::shared_ptr<live_hub> make(live_limits limits = {}) {
        return std::shared_ptr<live_hub>(new live_hub(limits));
    }

    /// Registers a stream of `user` from device `client` (empty: unknown). `wake` is called
    /// when hints wait for it. Returns null and sets `why` past a limit.
    ///
    /// A device has one stream: an older one of the same user and client id is replaced (it
    /// leaves the registry at once and its writer is woken to end it). A device that lost its
    /// stream on a path that died silently reconnects at once, while the server may not notice
    /// the dead connection for minutes; without this, its dead streams would fill its user's
    /// limit.
    std::shared_ptr<live_subscription> subscribe(std::string user, std::string client,
                                                 std::function<void()> wake, diagnostics& why) {
        std::shared_ptr<live_subscription> replaced;
        auto s = subscribe_locked(std::move(user), std::move(client), std::move(wake), why,
                                  replaced);
        if (replaced && replaced->wake_) replaced->wake_();
        return s;
    }

private:
    std::shared_ptr<live_subscription> subscribe_locked(std::string user, std::string client,
                                                        std::function<void()> wake,
                                                        diagnostics& why,
                                                        std::shared_ptr<live_subscription>& replaced) {
        std::lock_guard lock(mutex_);
        if (auto it = by_user_.find(user); it != by_user_.end() && !client.empty()) {
            auto& v = it->second;
            for (auto at = v.begin(); at != v.end(); ++at) {
                if ((*at)->client_ != client) continue;
                (*at)->replaced_ = true;
                replaced = (*at)->weak_from_this().lock(); // null if it is being destroyed
                v.erase(at);
                --total_;
                break;
            }
        }
        if (total_ >= limits_.max_streams) {
            why = {make_error_code(errc::too_many_streams),
                   "the server holds " + std::to_string(limits_.max_streams) +
                       " change streams, its limit"};
            return nullptr;
        }
        auto& mine = by_user_[user];
        if (mine.size() >= limits_.max_streams_per_user) {
            why = {make_error_code(errc::too_many_streams),
                   "at most " + std::to_string(limits_.max_streams_per_user) +
                       " change streams per user"};
            if (mine.empty()) by_user_.erase(user);
            return nullptr;
        }
        auto s = std::make_shared<live_subscription>(live_subscription::key{}, shared_from_this(),
                                                     std::move(user), std::move(client),
                                                     std::move(wake));
        mine.push_back(s.get());
        ++total_;
        return s;
    }

public:

    /// Queues a hint on every stream that may hear of `news`, and wakes those that were not
    /// already woken.
    void publish(const live_news& news) {
        std::vector<std::shared_ptr<live_subscription>> to_wake;
        {
            std::lock_guard lock(mutex_);
            auto tell = [&](live_subscription* s) {
                if (!news.origin_client.empty() && s->client_ == news.origin_client &&
                    s->user_ == news.origin_user)
                    return;
                auto it = std::find_if(s->pending_.begin(), s->pending_.end(),
                                       [&](const change_hint& h) {
                                           return h.collection == news.collection;
                                       });
                if (it == s->pending_.end()) s->pending_.push_back({news.collection, news.version});
                else it->version = std::max(it->version, news.version);
                if (!s->woken_) {
                    // Null while its destructor waits for this lock: it is leaving.
                    if (auto alive = s->weak_from_this().lock()) {
                        s->woken_ = true;
                        to_wake.push_back(std::move(alive));
                    }
                }
            };
            if (news.everyone) {
                for (auto& [user, streams] : by_user_)
                    for (auto* s : streams) tell(s);
            } else {
                for (const auto& user : news.users)
                    if (auto it = by_user_.find(user); it != by_user_.end())
                        for (auto* s : it->second) tell(s);
            }
        }
        for (auto& s : to_wake)
            if (s->wake_) s->wake_();
    }

    /// Streams open now, in all and of one user.
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return total_;
    }
    std::size_t size_of(std::string_view user) const {
        std::lock_guard lock(mutex_);
        auto it = by_user_.find(std::string(user));
        return it == by_user_.end() ? 0 : it->second.size();
    }

    const live_limits& limits() const noexcept { return limits_; }

private:
    friend class live_subscription;
    explicit live_hub(live_limits limits) : limits_(limits) {}

    void leave(live_subscription* s) {
        std::lock_guard lock(mutex_);
        auto it = by_user_.find(s->user_);
        if (it == by_user_.end()) return;
        auto& v = it->second;
        if (auto at = std::find(v.begin(), v.end(), s); at != v.end()) {
            v.erase(at);
            --total_;
        }
        if (v.empty()) by_user_.erase(it);
    }

    std::vector<change_hint> take(live_subscription* s) {
        std::lock_guard lock(mutex_);
        s->woken_ = false;
        return std::exchange(s->pending_, {});
    }

    bool replaced(const live_subscription* s) const {
        std::lock_guard lock(mutex_);
        return s->replaced_;
    }

    live_limits limits_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::vector<live_subscription*>> by_user_;
    std::size_t total_ = 0;
};

inline live_subscription::~live_subscription() { hub_->leave(this); }

inline std::vector<change_hint> live_subscription::take() { return hub_->take(this); }

inline bool live_subscription::replaced() const { return hub_->replaced(this); }

} // namespace offsync::server
