// offsync-bench: what the transports of a round carried and how long they took. In process,
// `loopback_transport`'s observer reports each request (`phase_times::add`); end to end,
// `timed_http_transport` wraps `http_transport` and times its operations.
#pragma once

#include "metrics.hpp"

#include <offsync/transport/http.hpp>
#include <offsync/transport/loopback.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>

#include <cstddef>
#include <optional>
#include <utility>

namespace offsync_bench {

/// One round's transport figures.
struct phase_times {
    steady::duration push{}, pull{};               ///< inside the transport, per direction
    steady::duration encode{}, server{}, decode{}; ///< in process only: the split of the above
    std::size_t bytes = 0, requests = 0;
    std::optional<steady::time_point> first_pull;  ///< when the round's pull phase began

    /// Adds one in-process request, as `loopback_transport` reports it to its observer.
    void add(const offsync::loopback_exchange& e) {
        encode += e.encode;
        server += e.server;
        decode += e.decode;
        (e.push ? push : pull) += e.encode + e.server + e.decode;
        bytes += e.request_bytes + e.response_bytes;
        ++requests;
        if (!e.push && (!first_pull || e.started < *first_pull)) first_pull = e.started;
    }
};

/// Wraps http_transport and times its operations into `times`: the time during which at least
/// one of a kind was outstanding (pushes overlap when pipelined; that time counts once).
class timed_http_transport {
public:
    using executor_type = boost::asio::any_io_executor;
    timed_http_transport(executor_type ex, offsync::http_transport_config config,
                         phase_times& times)
        : inner_(std::move(ex), std::move(config)), times_(&times) {}
    executor_type get_executor() const noexcept { return inner_.get_executor(); }
    std::size_t max_requests_in_flight() const noexcept { return inner_.max_requests_in_flight(); }

    template <class Token>
    auto async_push(const offsync::push_request& request, Token&& token) {
        return boost::asio::async_initiate<Token, void(offsync::error_code, offsync::push_response)>(
            [this](auto handler, const offsync::push_request* r) {
                inner_.async_push(*r, wrap<offsync::push_response>(std::move(handler), pushes_));
            },
            token, &request);
    }

    template <class Token>
    auto async_pull(const offsync::pull_request& request, Token&& token) {
        return boost::asio::async_initiate<Token, void(offsync::error_code, offsync::pull_response)>(
            [this](auto handler, const offsync::pull_request* r) {
                if (!times_->first_pull) times_->first_pull = steady::now();
                inner_.async_pull(*r, wrap<offsync::pull_response>(std::move(handler), pulls_));
            },
            token, &request);
    }

private:
    /// Operations of one kind outstanding, and since when one has been.
    struct busy {
        explicit busy(steady::duration phase_times::*total) : total(total) {}
        steady::duration phase_times::*total;
        std::size_t outstanding = 0;
        steady::time_point since;
    };

    template <class Response, class Handler>
    auto wrap(Handler handler, busy& kind) {
        namespace asio = boost::asio;
        if (kind.outstanding++ == 0) kind.since = steady::now();
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto ex = asio::get_associated_executor(handler, inner_.get_executor());
        return asio::bind_cancellation_slot(
            slot, asio::bind_executor(ex, [this, &kind, h = std::move(handler)](
                                              offsync::error_code ec, Response r) mutable {
                if (--kind.outstanding == 0) times_->*kind.total += steady::now() - kind.since;
                ++times_->requests;
                std::move(h)(ec, std::move(r));
            }));
    }

    offsync::http_transport inner_;
    phase_times* times_;
    busy pushes_{&phase_times::push};
    busy pulls_{&phase_times::pull};
};

} // namespace offsync_bench
