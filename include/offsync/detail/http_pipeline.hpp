// offsync — HTTP/1.1 pipelining without I/O: the order requests are written in, whose answer
// is read next, and what a failure or a cancellation does to the requests around it.
// `http_transport` drives it; tests/unit/test_http_pipeline.cpp drives it without sockets.
#pragma once

#include <offsync/error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>

namespace offsync::detail {

/// One connection's turns: the n-th request written on it is the n-th answered.
struct pipeline_connection {
    bool open = true; ///< false once closed: no more turns
    /// Closed because an operation on it was cancelled, not because it failed: the requests
    /// whose answers it carried may go again.
    bool closed_locally = false;
    std::uint64_t written = 0;  ///< requests written (or being written)
    std::uint64_t answered = 0; ///< answers read
    /// The first turn whose operation was cancelled after its request was written: its answer
    /// will not be read, so the connection ends when that turn comes.
    std::optional<std::uint64_t> abandoned;

    std::uint64_t in_flight() const noexcept { return written - answered; }
};

/// What the operations of one transport share: the order they write in, the failure the
/// others followed, and whether anything changed that operations waiting should look at.
class http_pipeline {
public:
    http_pipeline(std::size_t max_requests_in_flight, bool can_refresh_token) noexcept
        : max_in_flight_(max_requests_in_flight), can_refresh_(can_refresh_token) {}

    struct started {
        std::uint64_t ticket; ///< the operation's place in the order of writes
        bool alone;           ///< no other operation was outstanding
    };

    /// An operation starts (on the caller's thread): it takes the next ticket. Starting with
    /// no other outstanding forgets the last failure.
    started start() {
        const bool alone = outstanding_++ == 0;
        if (alone) last_error_ = {};
        return {next_ticket_++, alone};
    }
    /// An operation completed.
    void finish() noexcept { --outstanding_; }

    /// A ticket behind every one taken so far (a request that goes again queues anew).
    std::uint64_t take_ticket() noexcept { return next_ticket_++; }
    /// Whether the operation holding `ticket` writes next.
    bool may_write(std::uint64_t ticket) const noexcept { return serving_ == ticket; }
    /// Gives up `ticket`'s place in the order of writes, if it still holds one.
    void release(std::uint64_t ticket) {
        if (ticket < serving_) return;
        skipped_.insert(ticket);
        while (skipped_.erase(serving_)) ++serving_;
        changed_ = true;
    }
    std::uint64_t serving() const noexcept { return serving_; }

    /// Marks `c` closed; false if it already was (then nothing changes).
    bool close(pipeline_connection& c, bool locally) noexcept {
        if (!c.open) return false;
        c.open = false;
        c.closed_locally = locally;
        changed_ = true;
        return true;
    }
    void answered(pipeline_connection& c) noexcept {
        ++c.answered;
        changed_ = true;
    }
    /// Whether a turn passed, a ticket was released or a connection closed since last asked:
    /// the operations waiting for one of those must look again.
    bool take_change() noexcept { return std::exchange(changed_, false); }

    /// Records a failure and returns its code; of pipelined operations, the first one's detail
    /// is kept (the others followed it).
    error_code fail(diagnostics d) {
        auto code = d.code;
        if (!last_error_.code) last_error_ = std::move(d);
        return code;
    }
    error_code fail(errc code, std::string message) {
        return fail({make_error_code(code), std::move(message)});
    }
    const diagnostics& last_error() const noexcept { return last_error_; }

    std::size_t max_requests_in_flight() const noexcept { return max_in_flight_; }
    bool can_refresh_token() const noexcept { return can_refresh_; }

private:
    std::size_t max_in_flight_;
    bool can_refresh_;
    /// Taken where operations start, on the caller's thread; the rest runs on the strand.
    std::atomic<std::uint64_t> next_ticket_{0};
    std::atomic<std::size_t> outstanding_{0};
    std::uint64_t serving_ = 0;
    std::set<std::uint64_t> skipped_;
    bool changed_ = false;
    diagnostics last_error_;
};

/// What the driver does next for one operation.
enum class http_action_type {
    wait_for_change,    ///< until the pipeline changes (`take_change`), or a cancellation
    connect,            ///< get the open connection, opening one if there is none
    prepare_request,    ///< build the request, asking for a fresh token if `refresh_token`
    write,              ///< write the request prepared
    read,               ///< read the answer
    close_connection,   ///< close the operation's connection (already marked closed)
    decode_answer,      ///< decode a 200's body into the operation's response
    decode_error,       ///< decode an error answer's body, `fallback` for a code it does not name
    complete,           ///< complete the operation with `code` (success if empty)
    complete_cancelled, ///< complete the operation as cancelled (`operation_aborted`)
};

struct http_action {
    http_action_type type;
    bool refresh_token = false;
    errc fallback = errc::ok;
    error_code code{};
};

/// What happened, as the driver reports it. `cancelled`: the operation's cancellation was
/// seen after the step (the driver looks after each step that may suspend).
struct http_event {
    enum class type {
        start,
        woken,          ///< after `wait_for_change`
        connected,      ///< `conn` is the open connection
        connect_failed, ///< `message` says why (unless cancelled)
        prepared,
        written,
        write_failed, ///< `message`
        answered,     ///< a whole answer: `status`, `keep_alive`
        read_failed,  ///< `message`, `got_some`, `too_large`
        decoded,      ///< `decoded` is empty if the body was as expected
        closed,
        failed, ///< an exception while performing the last action: `message`
    };
    type kind = type::start;
    bool cancelled = false;
    pipeline_connection* conn = nullptr;
    std::string message;
    bool got_some = false;  ///< part of the answer had arrived
    bool too_large = false; ///< the answer's body is larger than the transport accepts
    int status = 0;
    bool keep_alive = true;
    diagnostics decoded;

    static http_event start() { return {}; }
    static http_event woken(bool cancelled) { return with(type::woken, cancelled); }
    static http_event connected(pipeline_connection& c) {
        auto e = with(type::connected, false);
        e.conn = &c;
        return e;
    }
    static http_event connect_failed(std::string why, bool cancelled) {
        return with(type::connect_failed, cancelled, std::move(why));
    }
    static http_event prepared() { return with(type::prepared, false); }
    static http_event written(bool cancelled) { return with(type::written, cancelled); }
    static http_event write_failed(std::string why, bool cancelled) {
        return with(type::write_failed, cancelled, std::move(why));
    }
    static http_event answered(int status, bool keep_alive) {
        auto e = with(type::answered, false);
        e.status = status;
        e.keep_alive = keep_alive;
        return e;
    }
    static http_event read_failed(std::string why, bool got_some, bool too_large, bool cancelled) {
        auto e = with(type::read_failed, cancelled, std::move(why));
        e.got_some = got_some;
        e.too_large = too_large;
        return e;
    }
    static http_event decoded_as(diagnostics d) {
        auto e = with(type::decoded, false);
        e.decoded = std::move(d);
        return e;
    }
    static http_event closed() { return with(type::closed, false); }
    static http_event failed(std::string what) {
        return with(type::failed, false, std::move(what));
    }

private:
    static http_event with(type k, bool cancelled, std::string message = {}) {
        http_event e;
        e.kind = k;
        e.cancelled = cancelled;
        e.message = std::move(message);
        return e;
    }
};

/// One operation: its request written in the order operations started (its ticket), its answer
/// read in the order requests were written on the connection (its turn). A request whose
/// answer had not begun when its connection ended goes once more on a new connection, unless
/// it was the first request of a connection the server ended; a 401 is retried once after a
/// token refresh.
class http_exchange_fsm {
public:
    /// Why this operation failed, once it completed with an error: its own cause, where the
    /// pipeline's `last_error()` keeps the first of several.
    const std::string& failure() const noexcept { return failure_; }

    http_exchange_fsm(http_pipeline& pipeline, std::uint64_t ticket) noexcept
        : pipe_(&pipeline), ticket_(ticket) {}

    http_action resume(const http_event& ev) {
        if (ev.kind == http_event::type::failed) return on_exception(ev.message);
        switch (state_) {
        case state::waiting_ticket: return ev.cancelled ? cancel() : write_turn();
        case state::connecting: return on_connect(ev);
        case state::waiting_room: return ev.cancelled ? cancel() : room();
        case state::preparing: return on_prepared();
        case state::writing: return on_written(ev);
        case state::waiting_turn: return read_turn(ev.cancelled);
        case state::reading: return on_read(ev);
        case state::closing: return after_close();
        case state::decoding: return on_decoded(ev);
        case state::done: break;
        }
        return result_;
    }

    std::uint64_t ticket() const noexcept { return ticket_; }
    bool holds_ticket() const noexcept { return holds_ticket_; }
    /// Our request's turn on the connection, once it is being written.
    std::optional<std::uint64_t> turn() const noexcept { return turn_; }
    bool resent() const noexcept { return resent_; }
    bool refreshed() const noexcept { return refreshed_; }
    bool done() const noexcept { return state_ == state::done; }

private:
    error_code failed(diagnostics d) {
        failure_ = d.message;
        return pipe_->fail(std::move(d));
    }
    error_code failed(errc code, std::string message) {
        return failed({make_error_code(code), std::move(message)});
    }

    enum class state {
        waiting_ticket,
        connecting,
        waiting_room,
        preparing,
        writing,
        waiting_turn,
        reading,
        closing,
        decoding,
        done
    };
    /// What follows closing the connection.
    enum class then { finish, write_turn, answer };

    static http_action act(http_action_type t) { return {t}; }

    http_action wait() { return act(http_action_type::wait_for_change); }

    // Our turn to write: the operations started before us have written.
    http_action write_turn() {
        if (!pipe_->may_write(ticket_)) {
            state_ = state::waiting_ticket;
            return wait();
        }
        state_ = state::connecting;
        return act(http_action_type::connect);
    }

    http_action on_connect(const http_event& ev) {
        if (ev.kind != http_event::type::connected) {
            release_ticket();
            if (ev.cancelled) return finish_cancelled();
            return finish(failed(errc::transport_failure, ev.message));
        }
        conn_ = ev.conn;
        state_ = state::waiting_room;
        return room();
    }

    // Room in the pipeline.
    http_action room() {
        if (!conn_->open) { // closed while we waited: nothing of ours was sent
            state_ = state::waiting_ticket;
            return write_turn();
        }
        if (conn_->in_flight() >= pipe_->max_requests_in_flight()) return wait();
        state_ = state::preparing;
        http_action a = act(http_action_type::prepare_request);
        a.refresh_token = refreshed_;
        return a;
    }

    // The request is built (the token provider may throw) before it takes a turn.
    http_action on_prepared() {
        turn_ = conn_->written++;
        written_ = false;
        state_ = state::writing;
        return act(http_action_type::write);
    }

    http_action on_written(const http_event& ev) {
        release_ticket(); // the next operation may write (a resend queues again)
        if (ev.kind == http_event::type::write_failed)
            return ev.cancelled ? cancel() : lost(ev.message, false, false);
        written_ = true;
        state_ = state::waiting_turn;
        return read_turn(ev.cancelled);
    }

    // Our turn to read: every earlier answer read.
    http_action read_turn(bool cancelled) {
        if (cancelled) return cancel();
        if (!conn_->open) // an earlier exchange ended it
            return lost(std::make_error_code(std::errc::connection_aborted).message(), false,
                        false);
        if (conn_->answered != *turn_) return wait();
        state_ = state::reading;
        return act(http_action_type::read);
    }

    http_action on_read(const http_event& ev) {
        if (ev.kind == http_event::type::read_failed)
            return ev.cancelled ? cancel() : lost(ev.message, ev.got_some, ev.too_large);
        pipe_->answered(*conn_);
        status_ = ev.status;
        bool closed = false;
        if (conn_->abandoned && conn_->answered >= *conn_->abandoned)
            closed = pipe_->close(*conn_, true); // the next answer is one nobody will read
        if (!ev.keep_alive) closed = pipe_->close(*conn_, false) || closed;
        return closed ? closing(then::answer) : answer();
    }

    http_action answer() {
        if (status_ == 401 && !refreshed_ && pipe_->can_refresh_token()) {
            refreshed_ = true;
            requeue();
            return write_turn();
        }
        state_ = state::decoding;
        if (status_ == 200) return act(http_action_type::decode_answer);
        http_action a = act(http_action_type::decode_error);
        a.fallback = status_ == 401   ? errc::unauthorized
                     : status_ >= 500 ? errc::server_error
                                      : errc::bad_response;
        return a;
    }

    http_action on_decoded(const http_event& ev) {
        if (status_ == 200) {
            if (!ev.decoded) return finish({});
            return finish(failed(errc::bad_response, ev.decoded.message));
        }
        diagnostics d = ev.decoded;
        if (status_ == 401) d.code = make_error_code(errc::unauthorized);
        d.message = "HTTP " + std::to_string(status_) + ": " + d.message;
        return finish(failed(std::move(d)));
    }

    // The connection failed under our request or its answer. Whatever answer is under way on
    // it is lost to us, and so are those behind it: they go again on a new connection.
    http_action lost(const std::string& why, bool got_some, bool too_large) {
        const bool by_us = conn_->closed_locally;
        const bool closed = pipe_->close(*conn_, false);
        // Our request never reached the server, or the connection ended before its answer
        // began: once more, on a new connection, unless it was the first request of a
        // connection that the server ended (a server that fails on the request itself must
        // not get it twice).
        if (!got_some && !resent_ && (*turn_ > 0 || by_us)) {
            resent_ = true;
            requeue();
            return closed ? closing(then::write_turn) : write_turn();
        }
        const auto code =
            too_large ? failed(errc::bad_response,
                                    "response body larger than max_response_bytes")
                      : failed(errc::transport_failure, why);
        return closed ? closing(then::finish, code) : finish(code);
    }

    // The operation was cancelled: it stops at once, leaving the connection and the turns as
    // the others expect them.
    http_action cancel() {
        release_ticket();
        result_ = act(http_action_type::complete_cancelled);
        if (conn_ && turn_ && conn_->open && conn_->answered <= *turn_) {
            if (!written_ || conn_->answered == *turn_) {
                // Half a request, or our answer under way: the connection is unusable.
                pipe_->close(*conn_, true);
                state_ = state::closing;
                next_ = then::finish;
                return act(http_action_type::close_connection);
            }
            // Our answer will come after the earlier ones: they are read first.
            if (!conn_->abandoned || *conn_->abandoned > *turn_) conn_->abandoned = *turn_;
        }
        state_ = state::done;
        return result_;
    }

    // Out of memory, or a bug: nothing of this exchange can be trusted.
    http_action on_exception(const std::string& what) {
        release_ticket();
        const auto code = failed(errc::transport_failure, what);
        if (conn_ && turn_ && pipe_->close(*conn_, false)) return closing(then::finish, code);
        return finish(code);
    }

    /// Queues the request again, behind the operations already waiting.
    void requeue() {
        ticket_ = pipe_->take_ticket();
        holds_ticket_ = true;
        turn_.reset();
        written_ = false;
    }

    http_action closing(then next, error_code code = {}) {
        next_ = next;
        result_ = {http_action_type::complete, false, errc::ok, code};
        state_ = state::closing;
        return act(http_action_type::close_connection);
    }

    http_action after_close() {
        switch (next_) {
        case then::write_turn: return write_turn();
        case then::answer: return answer();
        case then::finish: break;
        }
        state_ = state::done;
        return result_;
    }

    void release_ticket() {
        if (holds_ticket_) pipe_->release(ticket_);
        holds_ticket_ = false;
    }

    http_action finish(error_code code) {
        state_ = state::done;
        result_ = {http_action_type::complete, false, errc::ok, code};
        return result_;
    }
    http_action finish_cancelled() {
        state_ = state::done;
        result_ = act(http_action_type::complete_cancelled);
        return result_;
    }

    http_pipeline* pipe_;
    std::uint64_t ticket_;
    std::string failure_;
    bool holds_ticket_ = true;
    state state_ = state::waiting_ticket;
    then next_ = then::finish;
    pipeline_connection* conn_ = nullptr;
    std::optional<std::uint64_t> turn_; ///< our request's turn on `conn_`, once writing
    bool written_ = false;              ///< the whole request is on the connection
    bool resent_ = false;
    bool refreshed_ = false;
    int status_ = 0;
    http_action result_{http_action_type::complete};
};

} // namespace offsync::detail
