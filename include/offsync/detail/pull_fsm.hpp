// offsync — the decisions of one collection's pull, apart from any I/O.
#pragma once

#include <offsync/detail/push_fsm.hpp> // ramp_start, ramp_next
#include <offsync/error.hpp>

#include <boost/asio/coroutine.hpp>
#include <boost/asio/error.hpp>

#include <cstdint>

namespace offsync::detail {

/// What the pull of one collection asks its driver to do next.
struct pull_action {
    enum class kind {
        /// Ask for the page of changes after `since`, of at most `page_size`, with echo markers
        /// for the client's own writes if `echoes`; do not wait for it. `refetch` says why a
        /// page is asked for again in full (the app may be told). Answer `sent` or `failed`.
        request_page,
        /// Wait for the oldest page asked for and hold it. Answer `page`.
        await_page,
        /// Wait for the oldest page asked for and drop it. Answer `resumed`.
        drop_page,
        /// Apply the page held and its cursor in one store transaction. Answer `applied` (with
        /// whether the store held every echoed write) or `failed`.
        apply_page,
        /// The server has less than this store saw (restored from a backup, or a new server):
        /// set the collection's cursor to 0 in the store (dirty records stay; pulls never
        /// overwrite them). Answer `resumed` or `failed`.
        reset_cursor,
        /// The pull is over: `ec` is empty (done), `operation_aborted` (cancelled), the error
        /// of a request, or `bad_response` (`message` says why).
        finish,
        /// The pull is over with the failure the driver reported in its last `failed`.
        rethrow,
    };
    kind what;
    std::uint64_t since = 0;
    std::uint32_t page_size = 0;
    bool echoes = false;
    bool refetch = false;
    error_code ec = {};
    const char* message = "";
};

/// What happened since the last action.
struct pull_event {
    enum class kind { start, sent, page, applied, resumed, failed };
    kind what = kind::start;
    error_code ec = {};            ///< page: the request's error
    std::uint64_t cursor = 0;      ///< page: its cursor
    bool has_more = false;         ///< page: more changes after it
    bool empty = false;            ///< page: no changes in it
    bool held = true;              ///< applied: false if an echo did not match (nothing applied)

    static pull_event page(error_code ec, std::uint64_t cursor, bool has_more, bool empty) {
        return {kind::page, ec, cursor, has_more, empty, true};
    }
    static pull_event applied(bool held) { return {kind::applied, {}, 0, false, false, held}; }
};

/// The pull of one collection in a round, as a state machine: pages of the change feed after
/// the stored cursor until one says there is no more, the next page asked for before the last
/// one is applied (one page ahead), each page applied with its cursor.
///
/// - Echo markers (the client's own writes without their values) are asked for until a page
///   shows the store does not hold what it wrote; that page is asked for again in full, and the
///   rest of the pull is in full.
/// - `cursor_ahead` (the server has less than this store saw) resets the cursor and pulls from
///   the start, once.
/// - A cursor that goes back, or that does not move while more is said to follow, is a bad
///   response; so is a page without changes that says more follow.
///
/// Cancellation is checked at each step (`cancelled` comes with every event): a cancelled pull
/// asks for nothing more, applies the page it holds and finishes with `operation_aborted`,
/// after the page ahead has arrived.
class pull_fsm {
public:
    struct config {
        std::uint64_t since = 0;         ///< the stored cursor
        std::uint32_t first_page = 1;    ///< the first page's size (ramped up from)
        std::uint32_t full_page = 1;     ///< the page size
    };

    explicit pull_fsm(config c)
        : config_(c), since_(c.since),
          page_size_(std::uint32_t(ramp_start(c.first_page, std::max<std::uint32_t>(1, c.full_page)))) {}

    /// The cursor of the last page applied (or the one the pull started from).
    std::uint64_t cursor() const noexcept { return since_; }

    pull_action resume(const pull_event& ev, bool cancelled) {
        using k = pull_action::kind;
        using e = pull_event::kind;
        BOOST_ASIO_CORO_REENTER(coro_) {
            if (cancelled) return finish(boost::asio::error::operation_aborted);
            BOOST_ASIO_CORO_YIELD return request(since_);
            if (ev.what == e::failed) return {k::rethrow};
            for (;;) {
                BOOST_ASIO_CORO_YIELD return {k::await_page};
                if (ev.ec == errc::cursor_ahead && !restarted_) {
                    restarted_ = true;
                    BOOST_ASIO_CORO_YIELD return {k::reset_cursor};
                    if (ev.what == e::failed) return {k::rethrow};
                    since_ = 0;
                    if (cancelled) return finish(boost::asio::error::operation_aborted);
                    BOOST_ASIO_CORO_YIELD return request(0);
                    if (ev.what == e::failed) return {k::rethrow};
                    continue;
                }
                if (ev.ec) return finish(ev.ec);
                if (ev.cursor < since_ || (ev.has_more && ev.cursor == since_))
                    return finish(errc::bad_response, "pull cursor did not advance");
                // A server reads on past what a device may not see rather than answer nothing:
                // a page like this would let one keep a device pulling for ever.
                if (ev.has_more && ev.empty)
                    return finish(errc::bad_response, "a pull page with no changes claimed more");
                // Nothing new: an idle round writes nothing (a SQLite store would sync a commit).
                if (ev.empty && ev.cursor == since_ && !ev.has_more) return finish({});
                page_cursor_ = ev.cursor;
                stopping_ = cancelled;
                ahead_ = ev.has_more && !stopping_;
                if (ahead_) {
                    // Ask for the next page, then apply this one while the server reads it.
                    BOOST_ASIO_CORO_YIELD return request(page_cursor_);
                    if (ev.what == e::failed) return {k::rethrow}; // nothing went out
                }
                BOOST_ASIO_CORO_YIELD return {k::apply_page};
                if (ev.what == e::failed || !ev.held) {
                    // On a failure, or an echo of a write this store no longer holds (nothing
                    // of the page applied): the page ahead, if asked for, is waited for and
                    // dropped.
                    failed_ = ev.what == e::failed;
                    if (ahead_) {
                        BOOST_ASIO_CORO_YIELD return {k::drop_page};
                    }
                    if (failed_) return {k::rethrow};
                    if (stopping_ || cancelled)
                        return finish(boost::asio::error::operation_aborted);
                    echoes_ = false;
                    BOOST_ASIO_CORO_YIELD return request(since_, true);
                    if (ev.what == e::failed) return {k::rethrow};
                    continue;
                }
                since_ = page_cursor_;
                if (stopping_) return finish(boost::asio::error::operation_aborted);
                if (!ahead_) break;
            }
        }
        return finish({});
    }

private:
    static pull_action finish(error_code ec, const char* message = "") {
        return {pull_action::kind::finish, 0, 0, false, false, ec, message};
    }

    pull_action request(std::uint64_t from, bool refetch = false) {
        pull_action a{pull_action::kind::request_page, from, page_size_, echoes_, refetch};
        page_size_ = std::uint32_t(ramp_next(page_size_, std::max<std::uint32_t>(1, config_.full_page)));
        return a;
    }

    boost::asio::coroutine coro_;
    config config_;
    std::uint64_t since_ = 0;
    std::uint32_t page_size_ = 1;
    std::uint64_t page_cursor_ = 0;
    bool echoes_ = true;
    bool restarted_ = false;
    bool stopping_ = false;
    bool ahead_ = false;
    bool failed_ = false;
};

} // namespace offsync::detail
