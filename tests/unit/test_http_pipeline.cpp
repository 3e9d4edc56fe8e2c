// HTTP pipelining without sockets: operations of one transport share a pipeline and each is
// driven, event by event, through the actions its state machine returns.
#include <offsync/detail/http_pipeline.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace offsync;
using namespace offsync::detail;
using act = http_action_type;
using ev = http_event;

namespace {

/// One operation of the pipeline, and the last action it asked for.
struct op {
    explicit op(http_pipeline& p) : fsm(p, p.start().ticket) {}
    act operator()(const http_event& e) {
        last = fsm.resume(e);
        return last.type;
    }
    http_exchange_fsm fsm;
    http_action last{act::wait_for_change};
};

/// Drives `o`, whose ticket is served, until its request is being written on `c`.
void start_writing(op& o, pipeline_connection& c, const http_event& first = ev::start()) {
    REQUIRE(o(first) == act::connect);
    REQUIRE(o(ev::connected(c)) == act::prepare_request);
    REQUIRE(o(ev::prepared()) == act::write);
}

/// ... and until it has been written and waits for its answer (to read it or for its turn).
act write_whole(op& o, pipeline_connection& c, const http_event& first = ev::start()) {
    start_writing(o, c, first);
    return o(ev::written(false));
}

const http_event ok_answer = ev::answered(200, true);

} // namespace

TEST_CASE("http pipeline: requests are written in the order operations started, given-up "
          "tickets skipped",
          "[unit][http-pipeline]") {
    http_pipeline pipe(3, false);
    pipeline_connection c;
    op a(pipe), b(pipe), x(pipe), d(pipe);
    CHECK(b(ev::start()) == act::wait_for_change); // a's ticket is served first
    CHECK(x(ev::start()) == act::wait_for_change);
    CHECK(d(ev::start()) == act::wait_for_change);
    // x gives up its place while it waits: its ticket will be skipped.
    CHECK(x(ev::woken(true)) == act::complete_cancelled);
    CHECK(!x.fsm.holds_ticket());
    CHECK(pipe.serving() == 0);

    CHECK(pipe.take_change());
    start_writing(a, c);
    CHECK(a.fsm.turn() == 0u);
    CHECK(!pipe.take_change());
    CHECK(b(ev::woken(false)) == act::wait_for_change); // a's request is not yet written
    CHECK(a(ev::written(false)) == act::read);
    CHECK(pipe.take_change()); // the ones waiting look again
    CHECK(pipe.serving() == 1);

    CHECK(d(ev::woken(false)) == act::wait_for_change);
    CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change); // a's answer first
    CHECK(b.fsm.turn() == 1u);
    CHECK(pipe.serving() == 3); // x's ticket skipped
    CHECK(write_whole(d, c, ev::woken(false)) == act::wait_for_change);
    CHECK(d.fsm.turn() == 2u);
    CHECK(c.written == 3);
}

TEST_CASE("http pipeline: room for max_requests_in_flight unanswered requests",
          "[unit][http-pipeline]") {
    pipeline_connection c;
    SECTION("one at a time: the next is written once the answer before it was read") {
        http_pipeline pipe(1, false);
        op a(pipe), b(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(b(ev::woken(false)) == act::connect);
        CHECK(b(ev::connected(c)) == act::wait_for_change);
        CHECK(b(ev::woken(false)) == act::wait_for_change); // still no room
        CHECK(a(ok_answer) == act::decode_answer);
        CHECK(b(ev::woken(false)) == act::prepare_request);
        CHECK(a(ev::decoded_as({})) == act::complete);
        CHECK(!a.last.code);
    }
    SECTION("two in flight: the second is written before the first is answered") {
        http_pipeline pipe(2, false);
        op a(pipe), b(pipe), x(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change);
        CHECK(c.in_flight() == 2);
        CHECK(x(ev::woken(false)) == act::connect);
        CHECK(x(ev::connected(c)) == act::wait_for_change);
        CHECK(a(ok_answer) == act::decode_answer);
        CHECK(x(ev::woken(false)) == act::prepare_request);
        CHECK(x(ev::prepared()) == act::write);
        CHECK(x.fsm.turn() == 2u);
    }
}

TEST_CASE("http pipeline: answers are read in the order requests were written",
          "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c;
    op a(pipe), b(pipe);
    CHECK(write_whole(a, c) == act::read);
    CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change);
    CHECK(b(ev::woken(false)) == act::wait_for_change); // a's answer is not read yet
    CHECK(a(ok_answer) == act::decode_answer);
    CHECK(c.answered == 1);
    CHECK(pipe.take_change());
    CHECK(b(ev::woken(false)) == act::read);
    CHECK(b(ok_answer) == act::decode_answer);
    CHECK(b(ev::decoded_as({})) == act::complete);
    CHECK(!b.last.code);
    CHECK(c.open);
    CHECK(c.answered == 2);
}

TEST_CASE("http pipeline: a cancelled operation leaves the connection and the turns usable",
          "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c;
    SECTION("waiting for its ticket: its place is skipped") {
        op a(pipe), b(pipe), x(pipe);
        CHECK(b(ev::start()) == act::wait_for_change);
        CHECK(b(ev::woken(true)) == act::complete_cancelled);
        CHECK(write_whole(a, c) == act::read);
        CHECK(x(ev::woken(false)) == act::connect);
        CHECK(c.open);
    }
    SECTION("while connecting") {
        op a(pipe), b(pipe);
        CHECK(a(ev::start()) == act::connect);
        CHECK(a(ev::connect_failed({}, true)) == act::complete_cancelled);
        CHECK(!pipe.last_error());
        CHECK(b(ev::woken(false)) == act::connect);
    }
    SECTION("waiting for room: nothing was written, the connection stays") {
        http_pipeline one(1, false);
        op a(one), b(one);
        CHECK(write_whole(a, c) == act::read);
        CHECK(b(ev::woken(false)) == act::connect);
        CHECK(b(ev::connected(c)) == act::wait_for_change);
        CHECK(b(ev::woken(true)) == act::complete_cancelled);
        CHECK(c.open);
        CHECK(c.written == 1);
        CHECK(one.serving() == 2);
    }
    SECTION("half-written: the connection is closed") {
        op a(pipe);
        start_writing(a, c);
        CHECK(a(ev::write_failed("Operation canceled", true)) == act::close_connection);
        CHECK(!c.open);
        CHECK(c.closed_locally);
        CHECK(a(ev::closed()) == act::complete_cancelled);
        CHECK(!pipe.last_error());
    }
    SECTION("written, its answer next: the connection is closed") {
        op a(pipe);
        start_writing(a, c);
        CHECK(a(ev::written(true)) == act::close_connection);
        CHECK(c.closed_locally);
        CHECK(a(ev::closed()) == act::complete_cancelled);
    }
    SECTION("while its answer is being read: the connection is closed") {
        op a(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::read_failed("Operation canceled", true, false, true)) ==
              act::close_connection);
        CHECK(c.closed_locally);
        CHECK(a(ev::closed()) == act::complete_cancelled);
        CHECK(!pipe.last_error());
    }
    SECTION("waiting for its turn to read: its turn is abandoned, the earlier answer read") {
        op a(pipe), b(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change);
        CHECK(b(ev::woken(true)) == act::complete_cancelled);
        CHECK(c.open);
        CHECK(c.abandoned == 1u);
        // The answer before it is read, then the connection ends: nobody reads the next one.
        CHECK(a(ok_answer) == act::close_connection);
        CHECK(!c.open);
        CHECK(c.closed_locally);
        CHECK(a(ev::closed()) == act::decode_answer);
        CHECK(a(ev::decoded_as({})) == act::complete);
        CHECK(!a.last.code);
    }
    SECTION("of two abandoned turns, the first ends the connection") {
        http_pipeline four(4, false);
        op a(four), b(four), x(four), y(four);
        CHECK(write_whole(a, c) == act::read);
        CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change);
        CHECK(write_whole(x, c, ev::woken(false)) == act::wait_for_change);
        CHECK(write_whole(y, c, ev::woken(false)) == act::wait_for_change);
        CHECK(x(ev::woken(true)) == act::complete_cancelled);
        CHECK(c.abandoned == 2u);
        CHECK(b(ev::woken(true)) == act::complete_cancelled);
        CHECK(c.abandoned == 1u);
        CHECK(y(ev::woken(true)) == act::complete_cancelled);
        CHECK(c.abandoned == 1u);
        CHECK(a(ok_answer) == act::close_connection);
    }
    SECTION("a cancellation seen after the whole answer arrived does not discard it") {
        op a(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ok_answer) == act::decode_answer);
        CHECK(a(ev::decoded_as({})) == act::complete);
        CHECK(c.open);
    }
}

TEST_CASE("http pipeline: a request behind a lost one goes once more, on a new connection",
          "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c1, c2;
    op a(pipe), b(pipe);
    CHECK(write_whole(a, c1) == act::read);
    CHECK(write_whole(b, c1, ev::woken(false)) == act::wait_for_change);
    // The server ends the connection before a's answer began: a was the first request of the
    // connection, so it is not sent again (the server may have failed on it).
    CHECK(a(ev::read_failed("end of stream", false, false, false)) == act::close_connection);
    CHECK(!c1.open);
    CHECK(!c1.closed_locally);
    CHECK(a(ev::closed()) == act::complete);
    CHECK(a.last.code == errc::transport_failure);
    CHECK(!a.fsm.resent());
    // b's request, behind it, goes again: it queues behind the operations already waiting.
    CHECK(b(ev::woken(false)) == act::connect);
    CHECK(b.fsm.resent());
    CHECK(b.fsm.ticket() == 2u);
    CHECK(b.fsm.turn() == std::nullopt);
    c2.written = c2.answered = 3; // a reused connection: the resent request's turn is not 0
    CHECK(b(ev::connected(c2)) == act::prepare_request);
    CHECK(!b.last.refresh_token);
    CHECK(b(ev::prepared()) == act::write);
    CHECK(b.fsm.turn() == 3u);
    CHECK(b(ev::written(false)) == act::read);
    SECTION("answered there") {
        CHECK(b(ok_answer) == act::decode_answer);
        CHECK(b(ev::decoded_as({})) == act::complete);
        CHECK(!b.last.code);
    }
    SECTION("and not a second time") {
        CHECK(b(ev::read_failed("reset", false, false, false)) == act::close_connection);
        CHECK(b(ev::closed()) == act::complete);
        CHECK(b.last.code == errc::transport_failure);
    }
    // Of the failures, the first one's detail is kept.
    CHECK(pipe.last_error().code == errc::transport_failure);
    CHECK(pipe.last_error().message == "end of stream");
}

TEST_CASE("http pipeline: which lost requests go again", "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c;
    SECTION("a reused connection the server had closed: resent") {
        c.written = c.answered = 5;
        op a(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::read_failed("end of stream", false, false, false)) ==
              act::close_connection);
        CHECK(a(ev::closed()) == act::connect);
        CHECK(a.fsm.resent());
        CHECK(!pipe.last_error());
    }
    SECTION("a write that failed behind another request: resent") {
        op a(pipe), b(pipe);
        CHECK(write_whole(a, c) == act::read);
        start_writing(b, c, ev::woken(false));
        CHECK(b(ev::write_failed("broken pipe", false)) == act::close_connection);
        CHECK(b(ev::closed()) == act::connect);
        CHECK(b.fsm.resent());
    }
    SECTION("the first request of a connection a cancellation closed: resent") {
        op a(pipe), b(pipe);
        CHECK(write_whole(a, c) == act::read);
        start_writing(b, c, ev::woken(false));
        CHECK(b(ev::write_failed("Operation canceled", true)) == act::close_connection);
        CHECK(c.closed_locally);
        CHECK(b(ev::closed()) == act::complete_cancelled);
        // a's read ends with the socket: its request goes again although its turn was 0.
        CHECK(a(ev::read_failed("Operation canceled", false, false, false)) == act::connect);
        CHECK(a.fsm.resent());
    }
    SECTION("part of the answer had arrived: not resent") {
        c.written = c.answered = 5;
        op a(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::read_failed("partial message", true, false, false)) ==
              act::close_connection);
        CHECK(a(ev::closed()) == act::complete);
        CHECK(a.last.code == errc::transport_failure);
        CHECK(pipe.last_error().message == "partial message");
    }
    SECTION("the connection closed under a request waiting for room: it goes, not again") {
        http_pipeline one(1, false);
        pipeline_connection c2;
        op a(one), b(one);
        CHECK(write_whole(a, c) == act::read);
        CHECK(b(ev::woken(false)) == act::connect);
        CHECK(b(ev::connected(c)) == act::wait_for_change);
        CHECK(a(ev::read_failed("end of stream", false, false, false)) ==
              act::close_connection);
        CHECK(b(ev::woken(false)) == act::connect); // nothing of b's was sent
        CHECK(!b.fsm.resent());
        CHECK(b(ev::connected(c2)) == act::prepare_request);
    }
}

TEST_CASE("http pipeline: a refused token is refreshed once and the request sent again",
          "[unit][http-pipeline]") {
    pipeline_connection c;
    SECTION("with a token provider") {
        http_pipeline pipe(2, true);
        op a(pipe);
        start_writing(a, c);
        CHECK(!a.last.refresh_token);
        CHECK(a(ev::written(false)) == act::read);
        CHECK(a(ev::answered(401, true)) == act::connect);
        CHECK(a.fsm.refreshed());
        CHECK(a(ev::connected(c)) == act::prepare_request);
        CHECK(a.last.refresh_token);
        CHECK(a(ev::prepared()) == act::write);
        CHECK(a.fsm.turn() == 1u); // the same connection
        CHECK(a(ev::written(false)) == act::read);
        SECTION("refused again: unauthorized") {
            CHECK(a(ev::answered(401, true)) == act::decode_error);
            CHECK(a.last.fallback == errc::unauthorized);
            CHECK(a(ev::decoded_as({make_error_code(errc::bad_response), "token expired"})) ==
                  act::complete);
            CHECK(a.last.code == errc::unauthorized);
            CHECK(pipe.last_error().code == errc::unauthorized);
            CHECK(pipe.last_error().message == "HTTP 401: token expired");
        }
        SECTION("accepted") {
            CHECK(a(ok_answer) == act::decode_answer);
            CHECK(a(ev::decoded_as({})) == act::complete);
            CHECK(!a.last.code);
        }
    }
    SECTION("without one, a 401 is final") {
        http_pipeline pipe(2, false);
        op a(pipe);
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::answered(401, true)) == act::decode_error);
        CHECK(a.last.fallback == errc::unauthorized);
    }
}

TEST_CASE("http pipeline: an answer with keep-alive false ends the connection",
          "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c;
    op a(pipe), b(pipe);
    CHECK(write_whole(a, c) == act::read);
    CHECK(write_whole(b, c, ev::woken(false)) == act::wait_for_change);
    CHECK(a(ev::answered(200, false)) == act::close_connection);
    CHECK(!c.open);
    CHECK(!c.closed_locally); // the server ended it
    CHECK(a(ev::closed()) == act::decode_answer);
    CHECK(a(ev::decoded_as({})) == act::complete);
    CHECK(!a.last.code);
    // The request behind it was not answered: it goes again (its turn was 1).
    CHECK(b(ev::woken(false)) == act::connect);
    CHECK(b.fsm.resent());
}

TEST_CASE("http pipeline: what an operation completes with", "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    pipeline_connection c;
    op a(pipe);
    SECTION("an answer larger than the limit: bad_response") {
        c.written = c.answered = 1;
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::read_failed("body limit exceeded", true, true, false)) ==
              act::close_connection);
        CHECK(a(ev::closed()) == act::complete);
        CHECK(a.last.code == errc::bad_response);
        CHECK(pipe.last_error().message == "response body larger than max_response_bytes");
    }
    SECTION("a 200 whose body is not its answer: bad_response") {
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ok_answer) == act::decode_answer);
        CHECK(a(ev::decoded_as({make_error_code(errc::malformed_json), "not JSON"})) ==
              act::complete);
        CHECK(a.last.code == errc::bad_response);
        CHECK(pipe.last_error().message == "not JSON");
    }
    SECTION("an error answer: the server's code, else one by status") {
        CHECK(write_whole(a, c) == act::read);
        int status = 0;
        errc fallback{};
        SECTION("5xx") {
            status = 503;
            fallback = errc::server_error;
        }
        SECTION("4xx") {
            status = 404;
            fallback = errc::bad_response;
        }
        CHECK(a(ev::answered(status, true)) == act::decode_error);
        CHECK(a.last.fallback == fallback);
        CHECK(a(ev::decoded_as({make_error_code(errc::forbidden), "not yours"})) ==
              act::complete);
        CHECK(a.last.code == errc::forbidden);
        CHECK(pipe.last_error().message == "HTTP " + std::to_string(status) + ": not yours");
        CHECK(c.open);
    }
    SECTION("no connection: transport_failure, the next operation may try") {
        op b(pipe);
        CHECK(a(ev::start()) == act::connect);
        CHECK(a(ev::connect_failed("cannot resolve nowhere: not found", false)) ==
              act::complete);
        CHECK(a.last.code == errc::transport_failure);
        CHECK(pipe.last_error().message == "cannot resolve nowhere: not found");
        CHECK(b(ev::woken(false)) == act::connect);
    }
    SECTION("an exception once the request took its turn: the connection is closed") {
        CHECK(write_whole(a, c) == act::read);
        CHECK(a(ev::failed("bad_alloc")) == act::close_connection);
        CHECK(!c.closed_locally);
        CHECK(a(ev::closed()) == act::complete);
        CHECK(a.last.code == errc::transport_failure);
        CHECK(pipe.last_error().message == "bad_alloc");
    }
    SECTION("an exception building the request (the token provider): the connection stays") {
        op b(pipe);
        CHECK(a(ev::start()) == act::connect);
        CHECK(a(ev::connected(c)) == act::prepare_request);
        CHECK(a(ev::failed("no token")) == act::complete);
        CHECK(a.last.code == errc::transport_failure);
        CHECK(c.open);
        CHECK(c.written == 0);
        CHECK(b(ev::woken(false)) == act::connect);
    }
}

TEST_CASE("http pipeline: the first failure's detail is kept until an operation starts alone",
          "[unit][http-pipeline]") {
    http_pipeline pipe(2, false);
    CHECK(pipe.fail(errc::transport_failure, "first") == errc::transport_failure);
    CHECK(pipe.fail(errc::server_error, "second") == errc::server_error);
    CHECK(pipe.last_error().code == errc::transport_failure);
    CHECK(pipe.last_error().message == "first");
    auto a = pipe.start();
    CHECK(a.alone);
    CHECK(!pipe.last_error());
    pipe.fail(errc::bad_response, "third");
    auto b = pipe.start();
    CHECK(!b.alone);
    CHECK(b.ticket == a.ticket + 1);
    CHECK(pipe.last_error().message == "third"); // kept while another is outstanding
    pipe.finish();
    pipe.finish();
    CHECK(pipe.start().alone);
}
