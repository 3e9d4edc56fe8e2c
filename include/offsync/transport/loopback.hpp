// offsync — a TransportPolicy that calls a sync service in the same process, through the wire
// format, with fault injection. For tests, demos and benchmarks of everything but the network.
#pragma once

#include <offsync/error.hpp>
#include <offsync/protocol.hpp>
#include <offsync/server/sync_service.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace offsync {

/// Faults a loopback transport injects. Each count is used up by one operation of its kind.
struct loopback_faults {
    int lose_push_requests = 0;  ///< pushes that fail before the server sees them
    int lose_push_responses = 0; ///< pushes the server applies whose response is lost
    int lose_pull_requests = 0;
    int lose_pull_responses = 0;
    /// Operations of either kind answered as an overloaded server answers, before it sees
    /// them: `server_error`, with `busy_retry_after` as the server's `Retry-After`.
    int busy = 0;
    std::optional<std::chrono::seconds> busy_retry_after;
    std::chrono::milliseconds delay{0}; ///< every operation waits this long first (cancellable)
    /// Runs after the server handled a request, before its response is delivered ("push",
    /// "pull"): the moment at which a test edits while a push is in flight.
    std::function<void(std::string_view operation)> after_server;
};

/// What one request that reached the server cost, as `loopback_transport` measured it: the
/// report its observer receives (`loopback_transport::set_observer`). The three durations do
/// not overlap and leave out the time the operation waited (`loopback_faults::delay`, the
/// executor's queue) and the `after_server` hook: in-process benchmarks split a round with them.
struct loopback_exchange {
    using clock = std::chrono::steady_clock;

    bool push = false;          ///< a push (`async_push`), or else a pull (`async_pull`)
    clock::time_point started;  ///< when the operation was started, before encoding its request
    clock::duration encode{};   ///< rendering the request: `to_json_text`, or the pull's query
    clock::duration server{};   ///< the service's `handle_push` or `handle_pull`
    /// Reading the answer back: parsing and decoding the body, or the error a refusal reads as
    /// (next to nothing when the answer is lost by `loopback_faults::lose_push_responses` and
    /// the like).
    clock::duration decode{};
    std::size_t request_bytes = 0;  ///< the request body handed to the service
    std::size_t response_bytes = 0; ///< the body of its answer (an error body when refused)
};

/// Carries requests to a `server::sync_service` in-process. Requests and responses are
/// serialised to JSON text and parsed back, so the whole protocol is exercised, just not a
/// socket. The service sees every request as coming from `user` (already authenticated).
///
/// Cancellation: both operations support terminal, partial and total cancellation while they
/// wait (the `delay`); once the server has been called they complete with its answer.
/// Observation: `set_observer` installs a callback that receives a `loopback_exchange` per
/// request that reached the server; without one the transport reads no clock.
/// Thread safety: like an Asio I/O object, operations are started from one thread at a time
/// (the engine's strand). Up to `max_requests_in_flight()` of them may be outstanding, as on
/// a pipelining connection: the service handles them in the order they were started.
class loopback_transport {
public:
    using executor_type = boost::asio::any_io_executor;

    loopback_transport(executor_type ex, server::sync_service& service, std::string user)
        : ex_(std::move(ex)), service_(&service), user_(std::move(user)) {}

    executor_type get_executor() const noexcept { return ex_; }
    loopback_faults& faults() noexcept { return faults_; }
    /// Requests that reached the server.
    std::size_t requests() const noexcept { return requests_; }
    /// Bytes of request and response bodies carried.
    std::size_t bytes() const noexcept { return bytes_; }

    /// Calls `observer` once for each request that reaches the server from now on (operations
    /// started before the call are not reported), with what it carried and how long its
    /// encoding, the service and the decoding of its answer took. It runs on the thread that
    /// runs the operation (through the completion handler's associated executor: an engine's
    /// strand), after the answer was read and before the operation completes; so an observer
    /// of one engine's transport may sum without a lock. Requests that fail before the server
    /// (`lose_push_requests`, `busy`, cancellation) are not reported; one whose answer is then
    /// lost is. `observer` must not throw. An empty function removes the observer; the
    /// transport then reads no clock at all. Not thread-safe: set it while nothing is running.
    void set_observer(std::function<void(const loopback_exchange&)> observer) {
        observer_ = std::move(observer);
    }

    /// How many requests an engine may have outstanding at once (`pipelining_transport`): 2,
    /// as `http_transport` by default, so tests meet the engine as it runs over HTTP.
    std::size_t max_requests_in_flight() const noexcept { return max_in_flight_; }
    void set_max_requests_in_flight(std::size_t n) {
        if (n == 0) throw std::invalid_argument("offsync: max_requests_in_flight must be positive");
        max_in_flight_ = n;
    }

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        auto times = start_timing();
        auto payload = to_json_text(request);
        times.encoded = times.now();
        return run<push_response>(true, std::move(payload), times, std::forward<Token>(token));
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        auto times = start_timing();
        auto target = pull_target(request);
        auto payload = target.substr(target.find('?') + 1);
        times.encoded = times.now();
        return run<pull_response>(false, std::move(payload), times,
                                  std::forward<Token>(token));
    }

private:
    using clock = loopback_exchange::clock;

    /// The time points of one operation, read only if an observer was set when it started.
    struct timing {
        bool on = false;
        clock::time_point started, encoded;
        clock::time_point now() const { return on ? clock::now() : clock::time_point{}; }
    };

    timing start_timing() const {
        timing t;
        t.on = bool(observer_);
        t.started = t.now();
        return t;
    }

    template <class Response, class Token>
    auto run(bool push, std::string payload, timing times, Token&& token) {
        return boost::asio::async_compose<Token, void(error_code, Response)>(
            [this, push, payload = std::move(payload), times,
             timer = std::make_unique<boost::asio::steady_timer>(ex_),
             waited = false](auto& self, error_code ec = {}) mutable {
                if (!waited) {
                    waited = true;
                    timer->expires_after(faults_.delay);
                    timer->async_wait(std::move(self));
                    return;
                }
                Response response;
                if (!ec) ec = exchange(push, payload, times, response);
                self.complete(ec, std::move(response));
            },
            token, ex_);
    }

    /// Hands the request to the service and reads its answer into `out`, unless a fault stops
    /// it first; reports the request to the observer if it reached the server.
    template <class Response>
    error_code exchange(bool push, const std::string& payload, const timing& times,
                        Response& out) {
        int& lose_request = push ? faults_.lose_push_requests : faults_.lose_pull_requests;
        int& lose_response = push ? faults_.lose_push_responses : faults_.lose_pull_responses;
        if (lose_request > 0) {
            --lose_request;
            out.failure.message = "request lost (injected fault)";
            return make_error_code(errc::transport_failure);
        }
        if (faults_.busy > 0) {
            --faults_.busy;
            out.failure = {"status 503: server busy (injected fault)", faults_.busy_retry_after};
            return make_error_code(errc::server_error);
        }
        ++requests_;
        const auto sent = times.now();
        auto answer = push ? service_->handle_push(user_, payload)
                           : service_->handle_pull(user_, payload);
        const auto answered = times.now();
        // A refusal travels as an HTTP server sends it: a status and an error body.
        const unsigned status = answer.error ? http_status(answer.error.code) : 200;
        if (answer.error)
            answer.body = boost::json::serialize(
                error_body(errc_of(answer.error.code), answer.error.message));
        bytes_ += payload.size() + answer.body.size();
        if (faults_.after_server) faults_.after_server(push ? "push" : "pull");
        const auto reading = faults_.after_server ? times.now() : answered;
        const auto ec = read_answer(lose_response, status, answer.body, out);
        if (times.on && observer_)
            observer_(loopback_exchange{push, times.started, times.encoded - times.started,
                                        answered - sent, times.now() - reading, payload.size(),
                                        answer.body.size()});
        return ec;
    }

    /// What the client makes of the service's answer (`status`, `body`): a lost answer, a
    /// refusal read as a client over HTTP reads it (the server's own failures all read as
    /// server_error), or the decoded response.
    template <class Response>
    static error_code read_answer(int& lose_response, unsigned status, const std::string& body,
                                  Response& out) {
        if (lose_response > 0) {
            --lose_response;
            out.failure.message = "answer lost (injected fault)";
            return make_error_code(errc::transport_failure);
        }
        if (status != 200) {
            auto d = parse_error_body(body, status >= 500 ? errc::server_error
                                                          : errc::bad_response);
            out.failure.message = "status " + std::to_string(status) + ": " + d.message;
            return d.code;
        }
        boost::system::error_code ec;
        auto jv = boost::json::parse(body, ec);
        if (ec) {
            out.failure.message = "answer is not JSON: " + ec.message();
            return make_error_code(errc::bad_response);
        }
        if (auto d = from_json(std::move(jv), out)) {
            out.failure.message = d.message;
            return d.code;
        }
        return {};
    }

    executor_type ex_;
    server::sync_service* service_;
    std::string user_;
    loopback_faults faults_;
    std::size_t requests_ = 0;
    std::size_t bytes_ = 0;
    std::size_t max_in_flight_ = 2;
    std::function<void(const loopback_exchange&)> observer_;
};

} // namespace offsync
