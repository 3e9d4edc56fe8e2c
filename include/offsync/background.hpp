// offsync — background sync: periodic rounds, an expiration deadline, backoff on failure, and
// sync-now triggers from the app's lifecycle, around any sync engine.
#pragma once

#include <offsync/error.hpp>
#include <offsync/report.hpp>
#include <offsync/record.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace offsync {

namespace detail {
struct wait_handler_archetype {
    void operator()(error_code) const {}
};
struct sync_handler_archetype {
    void operator()(error_code, sync_report) const {}
};
} // namespace detail

/// Where background sync reads the time and gets its timers. The default,
/// `steady_timer_source`, is the steady clock with `boost::asio::steady_timer`; tests use
/// `manual_timer_source` (offsync/testing/manual_timers.hpp), whose time moves only when the
/// test advances it, so a schedule of hours is checked in microseconds and never flakes.
///
/// Time is measured on `std::chrono::steady_clock`'s time line (a manual source moves its own
/// "now" along it): the scheduler compares times, and the state it reports stays one type
/// whatever the source. A timer needs the three operations of an `boost::asio::steady_timer` that
/// the scheduler uses: `expires_at`, `async_wait` with a `void(error_code)` handler (which
/// completes with `operation_aborted` when cancelled), and `cancel`.
template <class S>
concept timer_source = requires(S& s, const boost::asio::any_io_executor& ex,
                                typename S::timer_type& timer,
                                std::chrono::steady_clock::time_point at) {
    { s.now() } -> std::same_as<std::chrono::steady_clock::time_point>;
    { s.make_timer(ex) } -> std::same_as<typename S::timer_type>;
    timer.expires_at(at);
    timer.async_wait(detail::wait_handler_archetype{});
    timer.cancel();
};

/// Real time: `std::chrono::steady_clock` and `boost::asio::steady_timer`.
struct steady_timer_source {
    using timer_type = boost::asio::steady_timer;
    std::chrono::steady_clock::time_point now() const { return std::chrono::steady_clock::now(); }
    timer_type make_timer(const boost::asio::any_io_executor& ex) const { return timer_type(ex); }
};

/// What background sync drives: anything with an executor and `async_sync(token)` completing
/// with `(error_code, sync_report)` and honouring terminal cancellation, such as
/// `basic_sync_engine`. Two members are used when present: `pending()` (summed
/// `pending_counts`, shown in the state) and `transport()` (whose `retry_after()` is honoured).
template <class E>
concept background_syncable = requires(E& e) {
    { e.get_executor() } -> std::convertible_to<boost::asio::any_io_executor>;
    e.async_sync(detail::sync_handler_archetype{});
};

/// A transport that can tell how long the server asked the client to wait before trying again
/// (an HTTP `Retry-After`), as `http_transport::retry_after()` does. Optional: the loopback
/// transport has none, and background sync then relies on its own backoff alone.
template <class T>
concept retry_after_hint = requires(const T& t) {
    { t.retry_after() } -> std::convertible_to<std::optional<std::chrono::milliseconds>>;
};

struct background_state;

/// Tuning of background sync. Every duration is checked by the constructor, which throws
/// `std::invalid_argument` naming the first bad field.
struct background_config {
    /// Earliest begin of the first round, counted from `start()`. Zero starts at once.
    std::chrono::milliseconds earliest_begin = std::chrono::minutes(15);
    /// Earliest begin of the next round after a successful one, counted from its end.
    /// Must be positive.
    std::chrono::milliseconds interval = std::chrono::minutes(15);
    /// A round still running this long after it began expires: it is cancelled (the store
    /// stays consistent and the next round continues where it stopped) and counts as a
    /// failure with `boost::asio::error::timed_out`. Must be positive.
    std::chrono::milliseconds max_round_duration = std::chrono::seconds(30);
    /// `local_edit()` starts a round once no further edit came for this long, so a burst of
    /// edits makes one round. Zero starts at once.
    std::chrono::milliseconds debounce = std::chrono::seconds(2);
    /// The retry delay after the first failure; it doubles with every further consecutive
    /// failure up to `backoff_cap`. Both must be positive, the cap no less than the base.
    std::chrono::milliseconds backoff_base = std::chrono::seconds(30);
    std::chrono::milliseconds backoff_cap = std::chrono::minutes(30);
    /// Fraction in [0, 1) by which a retry delay is shortened at random, so that devices that
    /// failed together do not retry together. A delay `d` becomes one in `(d·(1-jitter), d]`:
    /// the cap stays a true maximum.
    double jitter = 0.2;
    /// Seed of the jitter's generator; a random one when empty. Tests fix it.
    std::optional<std::uint64_t> seed;
    /// After a failure, wait at least as long as the server's `Retry-After` asks, when the
    /// failed round's report carries it (`sync_report::retry_after`, which the transport
    /// sets with the request's result) or the engine's transport tells it
    /// (`retry_after_hint`). Triggers wait for it too.
    bool honour_retry_after = true;
    /// Called with a fresh snapshot whenever the state changes, on the engine's executor.
    /// Must not block; it may call `state()`. Not called once the scheduler is destroyed.
    std::function<void(const background_state&)> on_state_change;
};

/// What background sync is doing.
enum class background_phase {
    idle,    ///< between rounds (or not started yet)
    running, ///< a round runs
    stopped, ///< stopped: nothing runs any more
};

inline const char* to_string(background_phase p) {
    switch (p) {
    case background_phase::idle: return "idle";
    case background_phase::running: return "running";
    case background_phase::stopped: return "stopped";
    }
    return "?";
}

/// A snapshot of background sync, for status lines and tests.
struct background_state {
    using time_point = std::chrono::steady_clock::time_point;

    background_phase phase = background_phase::idle;
    bool started = false;
    /// A trigger came while a round ran: one more round follows it.
    bool follow_up_queued = false;
    /// When the next round is due; empty while one runs, before `start()` and after `stop()`.
    std::optional<time_point> next_run;
    /// When the running round expires.
    std::optional<time_point> round_deadline;
    /// When the last successful round ended.
    std::optional<time_point> last_success;
    /// The last round's error and its detail message; empty after a successful round. An
    /// expired round reports `boost::asio::error::timed_out`.
    diagnostics last_error;
    /// The last round's report (what it pushed, pulled, which conflicts it met), if any ran.
    std::shared_ptr<const sync_report> last_report;
    std::size_t rounds = 0;               ///< rounds run to their end, whatever the outcome
    std::size_t consecutive_failures = 0; ///< reset by a successful round
    /// What waits to be synced, summed over the engine's collections (zero when the engine
    /// does not tell). Read afresh by `state()` and for every `on_state_change`.
    pending_counts pending;
};

/// Runs an engine's sync rounds in the background, the way a mobile OS runs a periodic
/// background task, made portable:
///
/// - Schedule: after `start()`, the first round begins once `earliest_begin` has passed; after
///   every round, whatever its outcome, the next one is scheduled: `interval` after a success,
///   the backoff delay after a failure.
/// - Expiration: a round still running after `max_round_duration` is cancelled through the
///   engine's per-operation cancellation. The engine leaves the store consistent (what was
///   acknowledged stays acknowledged, the rest stays dirty) and the next round goes on.
/// - Backoff: the n-th consecutive failure waits `min(backoff_cap, backoff_base·2^(n-1))`,
///   shortened by up to `jitter` at random, and at least the server's `Retry-After` when the
///   transport exposes it. A success resets it.
/// - Triggers: `sync_now()`, `app_backgrounded()` and `network_restored()` start a round at
///   once (not before a server's `Retry-After` though); `local_edit()` does so after the
///   `debounce` quiet time. A trigger while a round runs queues one follow-up round (any number
///   of triggers share it), which starts as soon as the running round succeeds; after a failed
///   round the follow-up is the backoff retry.
/// - Stop: `stop()` / `async_stop()` cancel every timer and the running round; nothing runs
///   after it. A stopped scheduler stays stopped.
///
/// Triggers before `start()` and after `stop()` are ignored.
///
/// Thread safety: every member function may be called from any thread; the work runs on the
/// engine's executor (a strand for `basic_sync_engine`). Lifetime: the engine must outlive the
/// scheduler and the round it may have in flight; `async_stop` completes once that round has
/// ended, after which the engine may go. Destroying the scheduler requests a stop (no round
/// starts afterwards, the running one is cancelled) without waiting for it.
///
/// Errors: the constructor throws `std::invalid_argument` for a bad configuration; rounds
/// report their errors through the state, never by throwing.
template <background_syncable Engine, timer_source Timers = steady_timer_source>
class basic_background_sync {
public:
    using engine_type = Engine;
    using time_point = std::chrono::steady_clock::time_point;

    explicit basic_background_sync(Engine& engine, background_config config = {},
                                   Timers timers = {})
        : impl_(std::make_shared<impl>(engine, validated(std::move(config)), std::move(timers))) {}

    basic_background_sync(const basic_background_sync&) = delete;
    basic_background_sync& operator=(const basic_background_sync&) = delete;

    ~basic_background_sync() {
        impl_->detached_.store(true);
        stop();
    }

    boost::asio::any_io_executor get_executor() const noexcept { return impl_->ex_; }

    /// Schedules the first round `earliest_begin` from now. A second call does nothing.
    void start() {
        post_to_impl([](impl& i) { i.start(); });
    }

    /// Starts a round at once (or queues the follow-up if one runs).
    void sync_now() {
        post_to_impl([](impl& i) { i.trigger(); });
    }
    /// The app moves to the background: sync what it has before it may be suspended.
    void app_backgrounded() { sync_now(); }
    /// Connectivity is back: retry now rather than at the end of a backoff delay.
    void network_restored() { sync_now(); }
    /// The server announced a change this device may see (a hint of its change stream,
    /// docs/live.md): a round at once, or one follow-up after the round that runs, so a storm
    /// of hints makes one round running and one waiting, never more. A server that asked for
    /// quiet (`Retry-After`) still gets it.
    void remote_change() { sync_now(); }
    /// The app changed local data: sync once edits pause for `debounce`.
    void local_edit() {
        post_to_impl([](impl& i) { i.local_edit(); });
    }

    /// Stops: cancels the timers and the running round; nothing runs afterwards.
    void stop() {
        impl_->stop_requested_.store(true);
        post_to_impl([](impl& i) { i.stop({}); });
    }

    /// Stops like `stop()` and completes (signature `void()`) once the round that was running,
    /// if any, has ended, so the engine may then be destroyed. Not cancellable.
    template <class Token = boost::asio::deferred_t>
    auto async_stop(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void()>(
            [i = impl_](auto handler) {
                i->stop_requested_.store(true);
                boost::asio::dispatch(i->ex_, [i, h = stop_handler(std::move(handler))]() mutable {
                    i->stop(std::move(h));
                });
            },
            token);
    }

    /// A snapshot of the state, with the pending counts read now.
    background_state state() const { return impl_->snapshot(); }

    const background_config& config() const noexcept { return impl_->config_; }

private:
    using stop_handler = boost::asio::any_completion_handler<void()>;
    using timer_type = typename Timers::timer_type;

    static background_config validated(background_config c) {
        using std::chrono::milliseconds;
        auto require = [](bool ok, const char* what) {
            if (!ok) throw std::invalid_argument(std::string("offsync background_config: ") + what);
        };
        require(c.earliest_begin >= milliseconds::zero(), "earliest_begin must not be negative");
        require(c.interval > milliseconds::zero(), "interval must be positive");
        require(c.max_round_duration > milliseconds::zero(),
                "max_round_duration must be positive");
        require(c.debounce >= milliseconds::zero(), "debounce must not be negative");
        require(c.backoff_base > milliseconds::zero(), "backoff_base must be positive");
        require(c.backoff_cap >= c.backoff_base, "backoff_cap must be at least backoff_base");
        require(c.jitter >= 0.0 && c.jitter < 1.0, "jitter must be in [0, 1)");
        return c;
    }

    struct impl;

    template <class F>
    void post_to_impl(F f) {
        boost::asio::dispatch(impl_->ex_, [i = impl_, f = std::move(f)] { f(*i); });
    }

    // Every handler holds the state alive, so a timer or a round that completes after the
    // scheduler was destroyed finds it and sees the stop.
    struct impl : std::enable_shared_from_this<impl> {
        impl(Engine& engine, background_config config, Timers timers)
            : engine_(engine), config_(std::move(config)), timers_(std::move(timers)),
              ex_(engine.get_executor()), wake_(timers_.make_timer(ex_)),
              debounce_(timers_.make_timer(ex_)), deadline_(timers_.make_timer(ex_)),
              rng_(config_.seed ? *config_.seed : std::random_device{}()) {}

        // A pending wait is cancelled with `operation_aborted`, but one that already completed
        // may sit in the queue: a generation per timer tells a stale completion from the
        // current one.
        struct armed_timer {
            timer_type timer;
            std::uint64_t generation = 0;
            explicit armed_timer(timer_type t) : timer(std::move(t)) {}
            void disarm() {
                ++generation;
                timer.cancel();
            }
        };

        template <class F>
        void arm(armed_timer& t, time_point at, F on_fire) {
            const auto generation = ++t.generation;
            t.timer.expires_at(at);
            t.timer.async_wait(boost::asio::bind_executor(
                ex_, [self = this->shared_from_this(), &t, generation, on_fire](error_code ec) {
                    if (ec || generation != t.generation || self->halted()) return;
                    on_fire(*self);
                }));
        }

        bool halted() const { return stopped_ || stop_requested_.load(); }

        void start() {
            if (started_ || halted()) return;
            started_ = true;
            schedule(timers_.now() + config_.earliest_begin);
        }

        void schedule(time_point at) {
            next_run_ = at;
            arm(wake_, at, [](impl& i) { i.begin_round(); });
            publish();
        }

        void trigger() {
            if (!started_ || halted()) return;
            if (running_) {
                follow_up_ = true;
                publish();
                return;
            }
            // A server that asked for quiet gets it even from triggers; they only move the
            // next round forward to the end of that wait.
            if (not_before_ && timers_.now() < *not_before_) {
                if (!next_run_ || *not_before_ < *next_run_) schedule(*not_before_);
                return;
            }
            begin_round();
        }

        void local_edit() {
            if (!started_ || halted()) return;
            if (config_.debounce == std::chrono::milliseconds::zero()) return trigger();
            arm(debounce_, timers_.now() + config_.debounce, [](impl& i) { i.trigger(); });
        }

        void begin_round() {
            wake_.disarm();
            next_run_.reset();
            running_ = true;
            follow_up_ = false;
            expired_ = false;
            round_deadline_ = timers_.now() + config_.max_round_duration;
            arm(deadline_, *round_deadline_, [](impl& i) { i.expire_round(); });
            publish();
            engine_.async_sync(boost::asio::bind_cancellation_slot(
                round_signal_.slot(),
                boost::asio::bind_executor(ex_, [self = this->shared_from_this()](error_code ec,
                                                                           sync_report report) {
                    self->end_round(ec, std::move(report));
                })));
        }

        void expire_round() {
            if (!running_) return;
            expired_ = true;
            round_signal_.emit(boost::asio::cancellation_type::terminal);
        }

        void end_round(error_code ec, sync_report report) {
            deadline_.disarm();
            running_ = false;
            round_deadline_.reset();
            ++rounds_;
            const auto now = timers_.now();
            auto shared_report = std::make_shared<const sync_report>(std::move(report));
            last_report_ = shared_report;
            if (stopped_) {
                finish_stop();
                publish();
                return;
            }
            if (!ec) {
                consecutive_failures_ = 0;
                last_success_ = now;
                last_error_ = {};
                not_before_.reset();
                if (follow_up_ && !stop_requested_.load()) return begin_round();
                return schedule(now + config_.interval);
            }
            ++consecutive_failures_;
            if (expired_ && ec == boost::asio::error::operation_aborted) {
                last_error_ = {make_error_code(boost::asio::error::timed_out),
                               "round expired after " +
                                   std::to_string(config_.max_round_duration.count()) + " ms"};
            } else {
                last_error_ = {ec, shared_report->error_message.empty()
                                       ? ec.message()
                                       : shared_report->error_message};
            }
            // The retry serves a queued follow-up too: retrying sooner would hit the same wall.
            follow_up_ = false;
            auto delay = backoff_delay(consecutive_failures_);
            not_before_.reset();
            if (const auto hint = server_retry_after(*shared_report)) {
                not_before_ = now + *hint;
                delay = std::max(delay, *hint);
            }
            schedule(now + delay);
        }

        std::chrono::milliseconds backoff_delay(std::size_t failures) {
            auto delay = config_.backoff_base;
            for (std::size_t n = 1; n < failures && delay < config_.backoff_cap; ++n)
                delay = delay > config_.backoff_cap / 2 ? config_.backoff_cap : delay * 2;
            delay = std::min(delay, config_.backoff_cap);
            // 53 random bits as a double in [0, 1): the same sequence on every platform,
            // unlike the standard distributions.
            const double unit = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
            const double factor = 1.0 - config_.jitter * unit;
            return std::max(std::chrono::milliseconds(1),
                            std::chrono::milliseconds(static_cast<std::int64_t>(
                                static_cast<double>(delay.count()) * factor)));
        }

        /// The wait the server asked for: from the failed round's report, where the
        /// transport put it with the request's result, else from a transport that keeps it
        /// (`retry_after_hint`, for transports written before reports carried it).
        std::optional<std::chrono::milliseconds> server_retry_after(const sync_report& report) {
            if (!config_.honour_retry_after) return std::nullopt;
            if (report.retry_after && *report.retry_after > std::chrono::seconds::zero())
                return std::chrono::milliseconds(*report.retry_after);
            if constexpr (requires {
                              { engine_.transport() } -> retry_after_hint;
                          }) {
                std::optional<std::chrono::milliseconds> hint = engine_.transport().retry_after();
                if (hint && *hint > std::chrono::milliseconds::zero()) return hint;
            }
            return std::nullopt;
        }

        void stop(stop_handler waiter) {
            if (waiter) stop_waiters_.push_back(std::move(waiter));
            if (!stopped_) {
                stopped_ = true;
                wake_.disarm();
                debounce_.disarm();
                next_run_.reset();
                follow_up_ = false;
                if (running_) round_signal_.emit(boost::asio::cancellation_type::terminal);
                publish();
            }
            if (!running_) finish_stop();
        }

        void finish_stop() {
            auto waiters = std::move(stop_waiters_);
            stop_waiters_.clear();
            for (auto& w : waiters) boost::asio::post(ex_, std::move(w));
        }

        pending_counts read_pending() {
            if constexpr (requires {
                              { engine_.pending() } -> std::convertible_to<pending_counts>;
                          })
                return engine_.pending();
            else
                return {};
        }

        background_state snapshot() {
            auto pending = read_pending();
            std::lock_guard lock(mutex_);
            auto out = published_;
            out.pending = pending;
            return out;
        }

        void publish() {
            background_state s;
            s.phase = stopped_   ? background_phase::stopped
                      : running_ ? background_phase::running
                                 : background_phase::idle;
            s.started = started_;
            s.follow_up_queued = follow_up_;
            s.next_run = next_run_;
            s.round_deadline = round_deadline_;
            s.last_success = last_success_;
            s.last_error = last_error_;
            s.last_report = last_report_;
            s.rounds = rounds_;
            s.consecutive_failures = consecutive_failures_;
            s.pending = read_pending();
            {
                std::lock_guard lock(mutex_);
                published_ = s;
            }
            if (config_.on_state_change && !detached_.load()) config_.on_state_change(s);
        }

        Engine& engine_;
        background_config config_;
        Timers timers_;
        boost::asio::any_io_executor ex_;
        armed_timer wake_, debounce_, deadline_;
        std::mt19937_64 rng_;
        boost::asio::cancellation_signal round_signal_;
        std::vector<stop_handler> stop_waiters_;

        // Owned by the executor: touched only by handlers running on it.
        bool started_ = false, running_ = false, stopped_ = false;
        bool follow_up_ = false, expired_ = false;
        std::optional<time_point> next_run_, round_deadline_, last_success_, not_before_;
        diagnostics last_error_;
        std::shared_ptr<const sync_report> last_report_;
        std::size_t rounds_ = 0, consecutive_failures_ = 0;

        // Set from any thread; checked by every handler so nothing starts after a stop.
        std::atomic<bool> stop_requested_{false}, detached_{false};

        std::mutex mutex_;
        background_state published_;
    };

    std::shared_ptr<impl> impl_;
};

/// Background sync on real time, for an app.
template <background_syncable Engine>
using background_sync = basic_background_sync<Engine, steady_timer_source>;

} // namespace offsync
