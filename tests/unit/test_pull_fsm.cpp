// The pull of one collection, decision by decision, without an io_context: each test plays
// the driver, answering every action with the event a store or a server would give.
#include <offsync/detail/pull_fsm.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/error.hpp>

#include <string>

namespace {

using offsync::errc;
using offsync::error_code;
using offsync::make_error_code;
using offsync::detail::pull_action;
using offsync::detail::pull_event;
using offsync::detail::pull_fsm;
using act = pull_action::kind;
using ev = pull_event::kind;

const error_code aborted = boost::asio::error::operation_aborted;

struct script {
    explicit script(pull_fsm::config c) : fsm(c) {}

    pull_action expect(pull_event event, act wanted, bool cancelled = false) {
        auto a = fsm.resume(event, cancelled);
        INFO("action " << int(a.what) << " expected " << int(wanted));
        REQUIRE(a.what == wanted);
        return a;
    }
    pull_action start(act wanted, bool cancelled = false) {
        return expect({ev::start}, wanted, cancelled);
    }

    pull_fsm fsm;
};

pull_event sent() { return {ev::sent}; }
pull_event failed() { return {ev::failed}; }
pull_event resumed() { return {ev::resumed}; }
/// A page of changes up to `cursor`.
pull_event page(std::uint64_t cursor, bool has_more) {
    return pull_event::page({}, cursor, has_more, false);
}
pull_event error_page(errc e) { return pull_event::page(make_error_code(e), 0, false, true); }

} // namespace

TEST_CASE("pull fsm: an idle collection asks once and writes nothing", "[pull_fsm]") {
    script s({40, 500, 1000});
    auto a = s.start(act::request_page);
    CHECK(a.since == 40);
    CHECK(a.page_size == 500);
    CHECK(a.echoes);
    CHECK(!a.refetch);
    s.expect(sent(), act::await_page);
    CHECK(!s.expect(pull_event::page({}, 40, false, true), act::finish).ec);
    CHECK(s.fsm.cursor() == 40);
}

TEST_CASE("pull fsm: an empty page that moves the cursor is applied", "[pull_fsm]") {
    script s({40, 500, 1000});
    s.start(act::request_page);
    s.expect(sent(), act::await_page);
    s.expect(pull_event::page({}, 45, false, true), act::apply_page);
    CHECK(!s.expect(pull_event::applied(true), act::finish).ec);
    CHECK(s.fsm.cursor() == 45);
}

TEST_CASE("pull fsm: pages are asked for one ahead, sizes ramp up", "[pull_fsm]") {
    script s({0, 300, 1000});
    CHECK(s.start(act::request_page).page_size == 300);
    s.expect(sent(), act::await_page);
    // More follows: ask for it before applying this page.
    auto a = s.expect(page(300, true), act::request_page);
    CHECK(a.since == 300);
    CHECK(a.page_size == 600);
    s.expect(sent(), act::apply_page);
    s.expect(pull_event::applied(true), act::await_page);
    CHECK(s.fsm.cursor() == 300);
    a = s.expect(page(900, true), act::request_page);
    CHECK(a.since == 900);
    CHECK(a.page_size == 1000);
    s.expect(sent(), act::apply_page);
    s.expect(pull_event::applied(true), act::await_page);
    s.expect(page(1200, false), act::apply_page);
    CHECK(!s.expect(pull_event::applied(true), act::finish).ec);
    CHECK(s.fsm.cursor() == 1200);
}

TEST_CASE("pull fsm: a first page larger than a page is a page", "[pull_fsm]") {
    script s({0, 5000, 1000});
    CHECK(s.start(act::request_page).page_size == 1000);
    script zero({0, 0, 1000});
    CHECK(zero.start(act::request_page).page_size == 1);
}

TEST_CASE("pull fsm: an echo the store does not hold asks for the page again in full",
          "[pull_fsm]") {
    SECTION("with a page ahead: it is dropped") {
        script s({10, 100, 100});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(20, true), act::request_page);
        s.expect(sent(), act::apply_page);
        s.expect(pull_event::applied(false), act::drop_page);
        auto a = s.expect(page(30, false), act::request_page);
        CHECK(a.since == 10);
        CHECK(!a.echoes);
        CHECK(a.refetch);
        CHECK(s.fsm.cursor() == 10);
        s.expect(sent(), act::await_page);
        s.expect(page(20, true), act::request_page);
        s.expect(sent(), act::apply_page);
        s.expect(pull_event::applied(true), act::await_page);
        s.expect(page(30, false), act::apply_page);
        CHECK(!s.expect(pull_event::applied(true), act::finish).ec);
    }
    SECTION("the last page: asked for again, no echoes from then on") {
        script s({10, 100, 100});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(20, false), act::apply_page);
        auto a = s.expect(pull_event::applied(false), act::request_page);
        CHECK(a.since == 10);
        CHECK(!a.echoes);
        s.expect(sent(), act::await_page);
        s.expect(page(20, false), act::apply_page);
        CHECK(!s.expect(pull_event::applied(true), act::finish).ec);
    }
    SECTION("cancelled while the page ahead is dropped: nothing more is asked for") {
        script s({10, 100, 100});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(20, true), act::request_page);
        s.expect(sent(), act::apply_page);
        s.expect(pull_event::applied(false), act::drop_page);
        CHECK(s.expect(page(30, false), act::finish, true).ec == aborted);
        CHECK(s.fsm.cursor() == 10);
    }
    SECTION("cancelled meanwhile: nothing more is asked for") {
        script s({10, 100, 100});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(20, false), act::apply_page, true);
        CHECK(s.expect(pull_event::applied(false), act::finish, true).ec == aborted);
    }
}

TEST_CASE("pull fsm: a cursor ahead of the server pulls from the start, once", "[pull_fsm]") {
    script s({500, 100, 100});
    s.start(act::request_page);
    s.expect(sent(), act::await_page);
    s.expect(error_page(errc::cursor_ahead), act::reset_cursor);
    auto a = s.expect(resumed(), act::request_page);
    CHECK(a.since == 0);
    CHECK(a.echoes);
    CHECK(s.fsm.cursor() == 0);
    s.expect(sent(), act::await_page);
    SECTION("then the pull goes on") {
        s.expect(page(7, false), act::apply_page);
        CHECK(!s.expect(pull_event::applied(true), act::finish).ec);
        CHECK(s.fsm.cursor() == 7);
    }
    SECTION("a second time is the server's error") {
        CHECK(s.expect(error_page(errc::cursor_ahead), act::finish).ec == errc::cursor_ahead);
    }
}

TEST_CASE("pull fsm: resetting the cursor can fail, or be cancelled", "[pull_fsm]") {
    script s({500, 100, 100});
    s.start(act::request_page);
    s.expect(sent(), act::await_page);
    s.expect(error_page(errc::cursor_ahead), act::reset_cursor);
    SECTION("the store fails") { s.expect(failed(), act::rethrow); }
    SECTION("the round is cancelled") {
        CHECK(s.expect(resumed(), act::finish, true).ec == aborted);
    }
}

TEST_CASE("pull fsm: bad answers end the pull", "[pull_fsm]") {
    script s({50, 100, 100});
    s.start(act::request_page);
    s.expect(sent(), act::await_page);
    SECTION("an error answer") {
        CHECK(s.expect(error_page(errc::unauthorized), act::finish).ec == errc::unauthorized);
    }
    SECTION("a cursor that goes back") {
        auto a = s.expect(page(49, false), act::finish);
        CHECK(a.ec == errc::bad_response);
        CHECK(std::string(a.message) == "pull cursor did not advance");
    }
    SECTION("a cursor that stays while more is said to follow") {
        CHECK(s.expect(page(50, true), act::finish).ec == errc::bad_response);
    }
    SECTION("a page without changes that says more follow, however far its cursor moves") {
        // Such pages, each a version further, kept a device pulling for ever.
        for (std::uint64_t cursor : {51u, 5000u}) {
            script t({50, 100, 100});
            t.start(act::request_page);
            t.expect(sent(), act::await_page);
            auto a = t.expect(pull_event::page({}, cursor, true, true), act::finish);
            CHECK(a.ec == errc::bad_response);
            CHECK(std::string(a.message) == "a pull page with no changes claimed more");
            CHECK(t.fsm.cursor() == 50); // nothing applied
        }
    }
}

TEST_CASE("pull fsm: a store failure ends the pull after the page ahead", "[pull_fsm]") {
    SECTION("with a page ahead") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(10, true), act::request_page);
        s.expect(sent(), act::apply_page);
        s.expect(failed(), act::drop_page);
        s.expect(page(20, false), act::rethrow);
        CHECK(s.fsm.cursor() == 0);
    }
    SECTION("with none") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(10, false), act::apply_page);
        s.expect(failed(), act::rethrow);
    }
    SECTION("asking for a page fails") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(failed(), act::rethrow);
        script t({0, 10, 10});
        t.start(act::request_page);
        t.expect(sent(), act::await_page);
        t.expect(page(10, true), act::request_page);
        t.expect(failed(), act::rethrow); // nothing went out, nothing to wait for
    }
}

TEST_CASE("pull fsm: cancellation at each step", "[pull_fsm]") {
    SECTION("before anything: nothing asked for") {
        script s({0, 10, 10});
        CHECK(s.start(act::finish, true).ec == aborted);
    }
    SECTION("while a page is awaited: it is applied, no page is asked ahead") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page, true);
        s.expect(page(10, true), act::apply_page, true);
        CHECK(s.expect(pull_event::applied(true), act::finish, true).ec == aborted);
        CHECK(s.fsm.cursor() == 10); // applied: the next round goes on from it
    }
    SECTION("while a page is applied, with one ahead: that one arrives first") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page);
        s.expect(page(10, true), act::request_page);
        s.expect(sent(), act::apply_page);
        s.expect(pull_event::applied(true), act::await_page, true);
        s.expect(page(20, true), act::apply_page, true);
        CHECK(s.expect(pull_event::applied(true), act::finish, true).ec == aborted);
        CHECK(s.fsm.cursor() == 20);
    }
    SECTION("the request answers aborted") {
        script s({0, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page, true);
        CHECK(s.expect(pull_event::page(aborted, 0, false, true), act::finish, true).ec ==
              aborted);
    }
    SECTION("an idle page after cancellation is still the end") {
        script s({5, 10, 10});
        s.start(act::request_page);
        s.expect(sent(), act::await_page, true);
        CHECK(!s.expect(pull_event::page({}, 5, false, true), act::finish, true).ec);
    }
}
