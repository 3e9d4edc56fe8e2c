// The push of one collection, decision by decision, without an io_context: each test plays
// the driver, answering every action with the event a store or a server would give.
#include <offsync/detail/push_fsm.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/error.hpp>

namespace {

using offsync::errc;
using offsync::error_code;
using offsync::make_error_code;
using offsync::detail::push_action;
using offsync::detail::push_event;
using offsync::detail::push_fsm;
using act = push_action::kind;
using ev = push_event::kind;

const error_code aborted = boost::asio::error::operation_aborted;

/// A push and the driver's side of it: `expect` checks the action the machine asks for next
/// after `event`.
struct script {
    explicit script(push_fsm::config c) : fsm(c) {}

    push_action expect(push_event event, act wanted, bool cancelled = false) {
        auto a = fsm.resume(event, cancelled);
        INFO("action " << int(a.what) << " expected " << int(wanted));
        REQUIRE(a.what == wanted);
        // Nothing outlives the push: it never ends with a request in flight.
        if (a.what == act::finish || a.what == act::rethrow) CHECK(fsm.in_flight() == 0);
        return a;
    }
    push_action start(act wanted, bool cancelled = false) {
        return expect({ev::start}, wanted, cancelled);
    }
    /// Starts the push and sends its first `sends` batches, each built when asked; the next
    /// action, a build, is left to the test.
    void send_first(int sends) {
        start(act::build_batch);
        for (int i = 0; i < sends; ++i) {
            expect({ev::built}, act::send_batch);
            expect({ev::sent}, act::build_batch);
        }
    }

    push_fsm fsm;
};

push_event built() { return {ev::built}; }
push_event none_left() { return {ev::none_left}; }
push_event sent() { return {ev::sent}; }
push_event failed() { return {ev::failed}; }
push_event resumed() { return {ev::resumed}; }
push_event ok(std::size_t n) { return push_event::answered({}, n); }

} // namespace

TEST_CASE("push fsm: nothing dirty builds one batch and finishes", "[push_fsm]") {
    script s({2, 250, 1000, 3});
    auto a = s.start(act::build_batch);
    CHECK(a.size == 250);
    CHECK(a.first_of_pass);
    a = s.expect(none_left(), act::finish);
    CHECK(!a.ec);
}

TEST_CASE("push fsm: one request in flight builds the next batch while the first is answered",
          "[push_fsm]") {
    script s({1, 250, 1000, 3});
    CHECK(s.start(act::build_batch).size == 250);
    s.expect(built(), act::send_batch);
    // Depth 1: the next batch is built, not sent, while the first is out.
    auto a = s.expect(sent(), act::build_batch);
    CHECK(a.size == 500);
    CHECK(!a.first_of_pass);
    s.expect(built(), act::await_answer);
    CHECK(s.fsm.in_flight() == 1);
    // The answer frees the slot: the built batch goes before the answer is applied.
    s.expect(ok(250), act::send_batch);
    s.expect(sent(), act::apply_answer);
    a = s.expect(push_event::applied(false), act::build_batch);
    CHECK(a.size == 1000);
    s.expect(built(), act::await_answer);
    s.expect(ok(500), act::send_batch);
    s.expect(sent(), act::apply_answer);
    s.expect(push_event::applied(false), act::build_batch);
    CHECK(s.expect(none_left(), act::await_answer).size == 0);
    s.expect(ok(1000), act::apply_answer);
    auto done = s.expect(push_event::applied(false), act::finish);
    CHECK(!done.ec);
    CHECK(s.fsm.pass() == 0);
}

TEST_CASE("push fsm: two requests in flight, sizes ramp up to the full batch", "[push_fsm]") {
    script s({2, 300, 1000, 3});
    CHECK(s.start(act::build_batch).size == 300);
    s.expect(built(), act::send_batch);
    CHECK(s.expect(sent(), act::build_batch).size == 600);
    s.expect(built(), act::send_batch);
    CHECK(s.fsm.in_flight() == 1); // counted once sent
    CHECK(s.expect(sent(), act::build_batch).size == 1000);
    CHECK(s.fsm.in_flight() == 2);
    s.expect(built(), act::await_answer); // room for no third
    s.expect(ok(300), act::send_batch);
    s.expect(sent(), act::apply_answer);
    CHECK(s.fsm.in_flight() == 2);
    CHECK(s.expect(push_event::applied(false), act::build_batch).size == 1000);
    s.expect(none_left(), act::await_answer);
    s.expect(ok(600), act::apply_answer);
    s.expect(push_event::applied(false), act::await_answer);
    s.expect(ok(1000), act::apply_answer);
    CHECK(!s.expect(push_event::applied(false), act::finish).ec);
}

TEST_CASE("push fsm: a first batch larger than the full size starts at the full size",
          "[push_fsm]") {
    script s({1, 5000, 100, 1});
    CHECK(s.start(act::build_batch).size == 100);
    script zero({1, 0, 100, 1});
    CHECK(zero.start(act::build_batch).size == 1); // read as 1
}

TEST_CASE("push fsm: a rebased record is pushed in another pass, up to the bound",
          "[push_fsm]") {
    script s({1, 10, 10, 2});
    s.send_first(1);
    s.expect(none_left(), act::await_answer);
    s.expect(ok(3), act::apply_answer);
    // A last-write-wins local win: the pass starts again from the first key.
    auto a = s.expect(push_event::applied(true), act::build_batch);
    CHECK(a.first_of_pass);
    CHECK(a.size == 10);
    CHECK(s.fsm.pass() == 1);
    s.expect(built(), act::send_batch);
    s.expect(sent(), act::build_batch);
    s.expect(none_left(), act::await_answer);
    s.expect(ok(1), act::apply_answer);
    // Rebased again, but two passes is the bound: the rest waits for the next round.
    CHECK(!s.expect(push_event::applied(true), act::finish).ec);
}

TEST_CASE("push fsm: a pass with nothing left after a rebase ends the push", "[push_fsm]") {
    script s({1, 10, 10, 3});
    s.send_first(1);
    s.expect(none_left(), act::await_answer);
    s.expect(ok(1), act::apply_answer);
    s.expect(push_event::applied(true), act::build_batch);
    CHECK(!s.expect(none_left(), act::finish).ec);
}

TEST_CASE("push fsm: a store failure ends the push after every request in flight",
          "[push_fsm]") {
    SECTION("building the first batch: nothing in flight") {
        script s({2, 10, 10, 3});
        s.start(act::build_batch);
        s.expect(failed(), act::rethrow);
    }
    SECTION("building a batch with one request in flight (depth 1)") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(failed(), act::await_all);
        CHECK(s.fsm.in_flight() == 0);
        s.expect(resumed(), act::rethrow);
    }
    SECTION("building a batch with two requests in flight (depth 2)") {
        script s({2, 10, 10, 3});
        s.send_first(2);
        s.expect(failed(), act::await_all);
        s.expect(resumed(), act::rethrow);
    }
    SECTION("applying an answer with another request in flight (depth 2)") {
        script s({2, 10, 10, 3});
        s.send_first(2);
        s.expect(none_left(), act::await_answer);
        s.expect(ok(10), act::apply_answer);
        s.expect(failed(), act::await_all);
        s.expect(resumed(), act::rethrow);
    }
    SECTION("applying the last answer: nothing left to wait for (depth 1)") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        s.expect(ok(10), act::apply_answer);
        s.expect(failed(), act::rethrow);
    }
    SECTION("sending: the batch never went out, the one before is waited for") {
        script s({2, 10, 10, 3});
        s.send_first(1);
        s.expect(built(), act::send_batch);
        s.expect(failed(), act::await_all);
        s.expect(resumed(), act::rethrow);
    }
    SECTION("sending the first batch: nothing to wait for") {
        script s({2, 10, 10, 3});
        s.start(act::build_batch);
        s.expect(built(), act::send_batch);
        s.expect(failed(), act::rethrow);
    }
    SECTION("sending after an answer: that answer is not applied") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(built(), act::await_answer);
        s.expect(ok(10), act::send_batch);
        s.expect(failed(), act::rethrow);
    }
}

TEST_CASE("push fsm: a failed request ends the push with its error after the others",
          "[push_fsm]") {
    const auto transport = make_error_code(errc::transport_failure);
    SECTION("depth 1") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(built(), act::await_answer);
        CHECK(s.expect(push_event::answered(transport, 10), act::finish).ec == transport);
    }
    SECTION("depth 2: the request behind it is waited for, its answer dropped") {
        script s({2, 10, 10, 3});
        s.send_first(2);
        s.expect(built(), act::await_answer);
        s.expect(push_event::answered(transport, 10), act::await_all);
        CHECK(s.expect(resumed(), act::finish).ec == transport);
    }
    SECTION("a batch of one refused as too large is an error like any other") {
        script s({1, 1, 1, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        const auto too_large = make_error_code(errc::batch_too_large);
        CHECK(s.expect(push_event::answered(too_large, 1), act::finish).ec == too_large);
    }
}

TEST_CASE("push fsm: batches refused as too large are halved down to one record",
          "[push_fsm]") {
    const auto too_large = make_error_code(errc::batch_too_large);
    script s({2, 8, 8, 1});
    s.send_first(2);
    s.expect(built(), act::await_answer);
    auto a = s.expect(push_event::answered(too_large, 8), act::shrink_batches);
    CHECK(a.size == 4);
    s.expect(resumed(), act::await_all); // the second request, whatever its answer
    // The pass starts again in halves and does not count as a pass (max_passes is 1).
    a = s.expect(resumed(), act::build_batch);
    CHECK(a.first_of_pass);
    CHECK(a.size == 4);
    CHECK(s.fsm.pass() == 0);
    s.expect(built(), act::send_batch);
    s.expect(sent(), act::build_batch);
    s.expect(built(), act::send_batch);
    s.expect(sent(), act::build_batch);
    s.expect(built(), act::await_answer);
    CHECK(s.expect(push_event::answered(too_large, 4), act::shrink_batches).size == 2);
    s.expect(resumed(), act::await_all);
    CHECK(s.expect(resumed(), act::build_batch).size == 2);
    s.expect(built(), act::send_batch);
    s.expect(sent(), act::build_batch);
    s.expect(none_left(), act::await_answer);
    CHECK(s.expect(push_event::answered(too_large, 2), act::shrink_batches).size == 1);
    // Nothing else in flight: straight to the new pass.
    CHECK(s.expect(resumed(), act::build_batch).size == 1);
    s.expect(built(), act::send_batch);
    s.expect(sent(), act::build_batch);
    s.expect(none_left(), act::await_answer);
    s.expect(ok(1), act::apply_answer);
    CHECK(!s.expect(push_event::applied(false), act::finish).ec);
}

TEST_CASE("push fsm: telling the app of smaller batches can fail", "[push_fsm]") {
    const auto too_large = make_error_code(errc::batch_too_large);
    SECTION("with a request behind the refused one: it is waited for first") {
        script s({2, 8, 8, 3});
        s.send_first(2);
        s.expect(built(), act::await_answer);
        s.expect(push_event::answered(too_large, 8), act::shrink_batches);
        s.expect(failed(), act::await_all);
        s.expect(resumed(), act::rethrow);
    }
    SECTION("with none") {
        script s({1, 8, 8, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        s.expect(push_event::answered(too_large, 8), act::shrink_batches);
        s.expect(failed(), act::rethrow);
    }
}

TEST_CASE("push fsm: an odd batch refused is halved rounding down", "[push_fsm]") {
    script s({1, 3, 3, 1});
    s.send_first(1);
    s.expect(none_left(), act::await_answer);
    CHECK(s.expect(push_event::answered(make_error_code(errc::batch_too_large), 3),
                   act::shrink_batches)
              .size == 1);
}

TEST_CASE("push fsm: cancellation at each step", "[push_fsm]") {
    SECTION("before anything: nothing built") {
        script s({2, 10, 10, 3});
        CHECK(s.start(act::finish, true).ec == aborted);
    }
    SECTION("after the first batch was built: it is not sent") {
        script s({2, 10, 10, 3});
        s.start(act::build_batch);
        CHECK(s.expect(built(), act::finish, true).ec == aborted);
    }
    SECTION("after a send: nothing more is built or sent, the answer is applied") {
        script s({2, 10, 10, 3});
        s.start(act::build_batch);
        s.expect(built(), act::send_batch);
        s.expect(sent(), act::await_answer, true);
        s.expect(ok(10), act::apply_answer, true);
        CHECK(s.expect(push_event::applied(false), act::finish, true).ec == aborted);
    }
    SECTION("while an answer is awaited, with a built batch: it stays unsent") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(built(), act::await_answer);
        s.expect(ok(10), act::apply_answer, true);
        CHECK(s.expect(push_event::applied(false), act::finish, true).ec == aborted);
    }
    SECTION("with two in flight: the answer in hand applied, the other waited for") {
        script s({2, 10, 10, 3});
        s.send_first(2);
        s.expect(built(), act::await_answer);
        s.expect(ok(10), act::apply_answer, true);
        s.expect(push_event::applied(false), act::await_all, true);
        CHECK(s.expect(resumed(), act::finish, true).ec == aborted);
    }
    SECTION("an answer that says cancelled is the request's error") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        CHECK(s.expect(push_event::answered(aborted, 10), act::finish, true).ec == aborted);
    }
    SECTION("between passes: the next pass does not begin") {
        script s({1, 10, 10, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        s.expect(ok(10), act::apply_answer);
        CHECK(s.expect(push_event::applied(true), act::finish, true).ec == aborted);
    }
    SECTION("after a refusal as too large: the pass does not start again") {
        script s({1, 4, 4, 3});
        s.send_first(1);
        s.expect(none_left(), act::await_answer);
        s.expect(push_event::answered(make_error_code(errc::batch_too_large), 4),
                 act::shrink_batches);
        CHECK(s.expect(resumed(), act::finish, true).ec == aborted);
    }
}

TEST_CASE("push fsm: a finished push stays finished", "[push_fsm]") {
    script s({1, 10, 10, 1});
    s.start(act::build_batch);
    s.expect(none_left(), act::finish);
    CHECK(!s.expect(resumed(), act::finish).ec);
}
