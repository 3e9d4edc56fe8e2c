// offsync — the decisions of one collection's push, apart from any I/O.
#pragma once

#include <offsync/error.hpp>

#include <boost/asio/coroutine.hpp>
#include <boost/asio/error.hpp>

#include <algorithm>
#include <cstddef>

namespace offsync::detail {

/// Request sizes ramp up: from `first` (at least 1), doubling, to `full`. A round with a few
/// hundred changes still overlaps client and server work, and a long one soon sends full
/// requests.
inline std::size_t ramp_start(std::size_t first, std::size_t full) noexcept {
    return std::max<std::size_t>(1, std::min(first, full));
}
inline std::size_t ramp_next(std::size_t current, std::size_t full) noexcept {
    return std::min(full, current * 2);
}

/// What the push of one collection asks its driver to do next.
struct push_action {
    enum class kind {
        /// Build the next batch of at most `size` mutations from the store, after the last
        /// key built (from the first key when `first_of_pass`). Answer `built`, `none_left` or
        /// `failed`.
        build_batch,
        /// Send the batch built last, without waiting for its answer. Answer `sent` or `failed`.
        send_batch,
        /// Wait for the answer to the oldest request in flight and hold it. Answer `answered`.
        await_answer,
        /// Apply the answer held in one store transaction. Answer `applied` or `failed`.
        apply_answer,
        /// The server refused a batch as too large: push at most `size` at a time from now on
        /// (also in later rounds), and tell the app. Answer `resumed`, or `failed` if telling
        /// the app threw.
        shrink_batches,
        /// Wait for every request still in flight; their answers are dropped (their records stay
        /// pushable and go again with the same mutation ids). Answer `resumed`.
        await_all,
        /// The push of the collection is over: `ec` is empty (done), `operation_aborted`
        /// (cancelled) or the error of a request.
        finish,
        /// The push is over with the failure the driver reported in its last `failed`.
        rethrow,
    };
    kind what;
    std::size_t size = 0;
    bool first_of_pass = false;
    error_code ec = {};
};

/// What happened since the last action.
struct push_event {
    enum class kind { start, built, none_left, sent, answered, applied, resumed, failed };
    kind what = kind::start;
    error_code ec = {};       ///< answered: the request's error
    std::size_t mutations = 0; ///< answered: how many mutations the request carried
    bool rebased = false;     ///< applied: a conflict policy rebased a record, push it again

    static push_event answered(error_code ec, std::size_t mutations) {
        return {kind::answered, ec, mutations, false};
    }
    static push_event applied(bool rebased) { return {kind::applied, {}, 0, rebased}; }
};

/// The push of one collection in a round, as a state machine: batches built in key order and
/// sent with up to `depth` requests unanswered (while the server works on them, the driver
/// applies the last answer and builds the next batch), answers applied in the order sent.
///
/// Passes: a pass after the first pushes again the records a conflict policy rebased (a
/// last-write-wins local win), up to `max_passes`. A batch the server refuses as too large
/// halves the batch size and starts the pass again, which does not count as a pass; a batch of
/// one refused ends the push with that error.
///
/// Nothing outlives the push: whatever ends it (a failure, an error answer, a cancellation),
/// every request in flight is waited for first.
///
/// Cancellation is checked at each step: `cancelled` is whether the round has been cancelled,
/// given with every event. Once it is, nothing more is sent; an answer in hand is still
/// applied (it is acknowledged work), and the push finishes with `operation_aborted`.
class push_fsm {
public:
    struct config {
        std::size_t depth = 1;        ///< requests in flight at most
        std::size_t first_batch = 1;  ///< the first batch of each pass (ramped up from)
        std::size_t full_batch = 1;   ///< the batch size (halved by `shrink_batches`)
        int max_passes = 1;
    };

    explicit push_fsm(config c) : config_(c) {
        config_.depth = std::max<std::size_t>(1, config_.depth);
        config_.full_batch = std::max<std::size_t>(1, config_.full_batch);
    }

    std::size_t in_flight() const noexcept { return in_flight_; }
    int pass() const noexcept { return pass_; }

    push_action resume(const push_event& ev, bool cancelled) {
        using k = push_action::kind;
        using e = push_event::kind;
        BOOST_ASIO_CORO_REENTER(coro_) {
            for (pass_ = 0; pass_ < config_.max_passes; ++pass_) {
                if (cancelled) return finish(boost::asio::error::operation_aborted);
                rebased_ = smaller_ = exhausted_ = have_next_ = false;
                size_ = ramp_start(config_.first_batch, config_.full_batch);
                BOOST_ASIO_CORO_YIELD return {k::build_batch, size_, true};
                if (ev.what == e::failed) return {k::rethrow};
                if (ev.what == e::none_left) break;
                have_next_ = true;
                for (;;) {
                    // While the server works: send what is built while there is room, and
                    // build the batch after it.
                    while (!failed_ && !cancelled) {
                        if (!have_next_ && !exhausted_) {
                            size_ = ramp_next(size_, config_.full_batch);
                            BOOST_ASIO_CORO_YIELD return {k::build_batch, size_, false};
                            if (!note(ev)) break;
                            exhausted_ = ev.what == e::none_left;
                            have_next_ = !exhausted_;
                        }
                        if (!have_next_ || in_flight_ >= config_.depth) break;
                        BOOST_ASIO_CORO_YIELD return {k::send_batch};
                        note_sent(ev);
                    }
                    if (in_flight_ == 0) {
                        if (failed_) return {k::rethrow};
                        if (cancelled) return finish(boost::asio::error::operation_aborted);
                        break; // every batch of the pass answered
                    }
                    if (failed_) {
                        BOOST_ASIO_CORO_YIELD return await_all();
                        return {k::rethrow};
                    }
                    BOOST_ASIO_CORO_YIELD return {k::await_answer};
                    --in_flight_;
                    if (ev.ec == errc::batch_too_large && ev.mutations > 1) {
                        // Nothing of it was applied, and the records of the batches behind it
                        // stay pushable whatever their answers: build the pass again in halves.
                        config_.full_batch = ev.mutations / 2;
                        smaller_ = true;
                        BOOST_ASIO_CORO_YIELD return {k::shrink_batches, config_.full_batch};
                        note(ev);
                        if (in_flight_ > 0) {
                            BOOST_ASIO_CORO_YIELD return await_all();
                        }
                        if (failed_) return {k::rethrow};
                        break;
                    }
                    if (ev.ec) {
                        error_ = ev.ec;
                        if (in_flight_ > 0) {
                            BOOST_ASIO_CORO_YIELD return await_all();
                        }
                        return finish(error_);
                    }
                    // Send the next batch, then apply this one's answer while the server works.
                    stopping_ = cancelled;
                    if (have_next_ && !stopping_ && in_flight_ < config_.depth) {
                        BOOST_ASIO_CORO_YIELD return {k::send_batch};
                        note_sent(ev);
                    }
                    if (!failed_) {
                        BOOST_ASIO_CORO_YIELD return {k::apply_answer};
                        if (note(ev)) rebased_ |= ev.rebased;
                    }
                    if (failed_ || stopping_) {
                        if (in_flight_ > 0) {
                            BOOST_ASIO_CORO_YIELD return await_all();
                        }
                        if (failed_) return {k::rethrow};
                        return finish(boost::asio::error::operation_aborted);
                    }
                }
                if (smaller_) {
                    --pass_; // not a pass: nothing was pushed after the refusal
                    continue;
                }
                if (!rebased_) break;
            }
        }
        return finish({});
    }

private:
    static push_action finish(error_code ec) { return {push_action::kind::finish, 0, false, ec}; }

    push_action await_all() {
        in_flight_ = 0;
        return {push_action::kind::await_all};
    }

    /// Takes note of a step that failed; true if it succeeded.
    bool note(const push_event& ev) {
        failed_ |= ev.what == push_event::kind::failed;
        return !failed_;
    }

    void note_sent(const push_event& ev) {
        if (!note(ev)) return; // a send that failed never went out
        have_next_ = false;
        ++in_flight_;
    }

    boost::asio::coroutine coro_;
    config config_;
    int pass_ = 0;
    std::size_t size_ = 0;
    std::size_t in_flight_ = 0;
    bool have_next_ = false; ///< a batch is built and not sent
    bool exhausted_ = false; ///< every pushable record of the pass is in a batch
    bool rebased_ = false;
    bool smaller_ = false;
    bool failed_ = false;
    bool stopping_ = false;
    error_code error_;
};

} // namespace offsync::detail
