// offsync — a timer source whose time moves only when a test says so, for deterministic tests of
// anything scheduled (background sync) without sleeping.
#pragma once

#include <offsync/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <optional>
#include <utility>

namespace offsync {

/// A `timer_source` (see offsync/background.hpp) on manual time. `now()` starts at an
/// arbitrary point of the steady clock's time line and moves only by `advance`,
/// `advance_to` or `run_for`; a timer's wait completes when time reaches its expiry.
///
/// Completions are posted to the waiting handler's executor, never run inside `advance`, so
/// time moves outside the handlers and a test decides when they run (`io_context::poll`).
/// `run_for` does both: it walks time from expiry to expiry, running the ready handlers at
/// each, so a handler that re-arms a timer within the span sees it fire too, at its own time.
///
/// A pending wait does not count as outstanding work of its io_context: `run()` returns when
/// nothing but manual waits remain, instead of blocking on a time that never comes.
///
/// Why not `boost::asio::basic_waitable_timer` with a manual clock: its clock must be static (shared
/// by every test) and its reactor still waits in real time between polls of that clock; here
/// no real time passes at all.
///
/// The source is a cheap handle: copies share one time line. Thread safety: none; use it
/// from the test's thread with the io_context run there. Timers must not outlive the
/// io_context their waits complete on.
class manual_timer_source {
    struct state;

public:
    using time_point = std::chrono::steady_clock::time_point;
    using duration = std::chrono::steady_clock::duration;

    /// A timer on manual time with the members of `boost::asio::steady_timer` that schedulers use.
    /// Destroying it cancels its wait.
    class timer {
    public:
        timer(boost::asio::any_io_executor ex, std::shared_ptr<state> s)
            : ex_(std::move(ex)), state_(std::move(s)), id_(++state_->last_timer_id) {}
        timer(timer&& other) noexcept
            : ex_(std::move(other.ex_)), state_(std::move(other.state_)),
              id_(std::exchange(other.id_, 0)), expiry_(other.expiry_) {}
        timer& operator=(timer&&) = delete;
        timer(const timer&) = delete;
        timer& operator=(const timer&) = delete;
        ~timer() {
            if (id_ != 0) cancel();
        }

        boost::asio::any_io_executor get_executor() const noexcept { return ex_; }
        time_point expiry() const noexcept { return expiry_; }

        /// Sets the expiry and cancels the pending wait, like `boost::asio::steady_timer`.
        std::size_t expires_at(time_point at) {
            const auto cancelled = cancel();
            expiry_ = at;
            return cancelled;
        }
        std::size_t expires_after(duration d) { return expires_at(state_->now + d); }

        /// Completes its wait with `operation_aborted`; returns how many it cancelled.
        std::size_t cancel() {
            return state_->complete_if([this](const wait& w) { return w.timer_id == id_; },
                                       boost::asio::error::operation_aborted);
        }

        /// Waits until time reaches the expiry (at once if it already has). Completes with
        /// `(error_code)`. Per-operation cancellation is not supported; use `cancel()`.
        template <class Token>
        auto async_wait(Token&& token) {
            return boost::asio::async_initiate<Token, void(error_code)>(
                [this](auto handler) {
                    auto ex = boost::asio::any_io_executor(boost::asio::get_associated_executor(handler, ex_));
                    state_->waits.push_back(
                        {id_, expiry_, ++state_->last_wait_id, std::move(ex), std::move(handler)});
                    if (expiry_ <= state_->now) state_->fire_due();
                },
                token);
        }

    private:
        boost::asio::any_io_executor ex_;
        std::shared_ptr<state> state_;
        std::uint64_t id_;
        time_point expiry_{};
    };
    using timer_type = timer;

    manual_timer_source() : state_(std::make_shared<state>()) {}

    time_point now() const { return state_->now; }
    timer make_timer(const boost::asio::any_io_executor& ex) const { return timer(ex, state_); }

    /// Moves time to `at` (never backwards) and posts the completion of every wait that is
    /// due, earliest expiry first.
    void advance_to(time_point at) {
        state_->now = std::max(state_->now, at);
        state_->fire_due();
    }
    void advance(duration d) { advance_to(state_->now + d); }

    /// Moves time forward by `d` the way it would pass: to each pending expiry in turn,
    /// running `io`'s ready handlers (`poll`) there, then to the end of the span.
    void run_for(boost::asio::io_context& io, duration d) {
        const auto end = state_->now + d;
        settle(io);
        for (auto next = next_expiry(); next && *next <= end; next = next_expiry()) {
            advance_to(*next);
            settle(io);
        }
        advance_to(end);
        settle(io);
    }

    /// Runs `io`'s ready handlers until there are none left, without moving time.
    static void settle(boost::asio::io_context& io) {
        io.restart();
        while (io.poll() > 0) io.restart();
    }

    /// The earliest expiry of a pending wait.
    std::optional<time_point> next_expiry() const {
        std::optional<time_point> earliest;
        for (const auto& w : state_->waits)
            if (!earliest || w.expiry < *earliest) earliest = w.expiry;
        return earliest;
    }
    /// Waits not completed yet.
    std::size_t pending_waits() const { return state_->waits.size(); }

private:
    struct wait {
        std::uint64_t timer_id;
        time_point expiry;
        std::uint64_t order; // ties of equal expiry complete in the order they were started
        boost::asio::any_io_executor ex;
        boost::asio::any_completion_handler<void(error_code)> handler;
    };

    struct state {
        // Far from the epoch, so that code subtracting durations from now() stays in range.
        time_point now = time_point(std::chrono::hours(24 * 365));
        std::uint64_t last_timer_id = 0;
        std::uint64_t last_wait_id = 0;
        std::list<wait> waits;

        // A list, and nodes spliced rather than moved: Boost 1.81's any_completion_handler
        // move assignment recurses forever, so a wait's handler must never be assigned to.
        template <class Pred>
        std::size_t complete_if(Pred pred, error_code ec) {
            std::list<wait> done;
            for (auto it = waits.begin(); it != waits.end();) {
                auto next = std::next(it);
                if (pred(*it)) done.splice(done.end(), waits, it);
                it = next;
            }
            done.sort([](const wait& a, const wait& b) {
                return a.expiry != b.expiry ? a.expiry < b.expiry : a.order < b.order;
            });
            for (auto& w : done)
                boost::asio::post(w.ex, [h = std::move(w.handler), ec]() mutable { std::move(h)(ec); });
            return done.size();
        }

        void fire_due() {
            const auto at = now;
            complete_if([at](const wait& w) { return w.expiry <= at; }, error_code{});
        }
    };

    std::shared_ptr<state> state_;
};

} // namespace offsync
