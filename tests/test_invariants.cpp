// One test per "nothing lost" invariant of DESIGN.md, plus cancellation and single flight.
// Each fails if its invariant breaks.
#include "support/world.hpp"

#include <offsync/testing/faulty_storage.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <map>
#include <thread>

using namespace offsync_test;

namespace {

using faulty_test_storage = faulty_storage<test_storage>;

/// One of alice's devices, as `client`, on a store that fails where its hook says
/// (`storage.set_fault_hook`).
struct faulty_client : basic_client<faulty_test_storage> {
    explicit faulty_client(world& w, engine_config config = {})
        : basic_client(w.io, w.service, "alice", w.clock.as_wall_clock(), std::move(config)) {}
};

} // namespace

TEST_CASE("invariant 1: an edit made while its push is in flight survives", "[invariants]") {
    world w;
    auto a = w.device("alice");
    a->replica.put(reservation("r-1", "confirmed", 2));
    // The server applies party_size 2; before its answer arrives the user changes it to 4.
    a->transport.faults().after_server = [&](std::string_view op) {
        if (op == "push") a->replica.put(reservation("r-1", "confirmed", 4));
        a->transport.faults().after_server = nullptr;
    };
    auto first = a->sync();
    CHECK(!first.error);
    CHECK(a->replica.get<Reservation>("r-1")->party_size == 4);
    CHECK(a->replica.pending<Reservation>().dirty == 1); // the acknowledgement did not clear it
    auto second = a->sync();
    CHECK(second.conflict_count() == 0);
    CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 4);
    CHECK(a->replica.pending<Reservation>().dirty == 0);
}

TEST_CASE("invariant 3: a retry after a lost response is applied once, no conflict",
          "[invariants]") {
    world w;
    auto [a, b] = w.alice_devices_sharing("r-1");
    a->replica.put(reservation("r-1", "cancelled"));
    a->transport.faults().lose_push_responses = 1;
    auto lost = a->sync();
    CHECK(lost.error == errc::transport_failure);
    const auto after_first = w.service.last_version();
    CHECK(a->replica.pending<Reservation>().dirty == 1);

    SECTION("the same mutation again: the original outcome, no second write") {
        auto retry = a->sync();
        CHECK(!retry.error);
        CHECK(retry.conflict_count() == 0);
        CHECK(retry.applied == 1);
        CHECK(w.service.last_version() == after_first);
        CHECK(a->replica.pending<Reservation>().dirty == 0);
    }
    SECTION("edited again before the retry: still no conflict with itself") {
        a->replica.put(reservation("r-1", "cancelled", 5));
        auto retry = a->sync();
        CHECK(retry.conflict_count() == 0);
        auto server = w.service.get("alice", "reservations", "r-1");
        CHECK(server->value.at("status") == "cancelled");
        CHECK(server->value.at("party_size") == 5);
    }
    b->sync();
    CHECK(b->replica.get<Reservation>("r-1")->status == "cancelled");
}

TEST_CASE("invariant 4: a round abandoned half-way is finished by a new engine on the store",
          "[invariants]") {
    world w;
    test_storage store;
    basic_replica<test_storage> replica(store, w.clock.as_wall_clock());
    for (int i = 0; i < 7; ++i) replica.put(reservation("r-" + std::to_string(i)));
    {
        loopback_transport transport(w.io.get_executor(), w.service, "alice");
        engine_config config;
        config.push_batch_size = 2;
        engine_type engine(w.io.get_executor(), replica, transport, config);
        engine.add_collection<Reservation>();
        // The second batch never arrives.
        transport.faults().after_server = [&](std::string_view) {
            transport.faults().lose_push_requests = 1;
        };
        std::optional<sync_report> report;
        engine.async_sync([&](error_code, sync_report r) { report = std::move(r); });
        w.io.run();
        REQUIRE(report);
        CHECK(report->error == errc::transport_failure);
        CHECK(report->applied == 2);
    }
    CHECK(replica.pending<Reservation>().dirty == 5);
    w.io.restart();
    loopback_transport transport(w.io.get_executor(), w.service, "alice");
    engine_type engine(w.io.get_executor(), replica, transport);
    engine.add_collection<Reservation>();
    std::optional<sync_report> report;
    engine.async_sync([&](error_code, sync_report r) { report = std::move(r); });
    w.io.run();
    REQUIRE(report);
    CHECK(!report->error);
    CHECK(report->applied == 5);
    CHECK(replica.pending<Reservation>().dirty == 0);
    pull_response all;
    REQUIRE(!w.service.pull("alice", {"reservations", 0, 100}, all));
    CHECK(all.changes.size() == 7);
    CHECK(w.service.last_version() == 2 + 7); // two landmarks, seven reservations: no repeats
}

TEST_CASE("invariant 4: a pull page and its cursor apply together or not at all",
          "[invariants]") {
    world w;
    for (int i = 3; i < 13; ++i) w.service.admin_put("landmarks", to_json_object(landmark(i, "L")));
    auto a = std::make_unique<faulty_client>(w);
    const char* failing_op = GENERATE("save", "set_cursor", "commit");
    CAPTURE(failing_op);
    bool armed = true;
    a->storage.set_fault_hook([&](std::string_view op) {
        if (armed && op == failing_op) {
            armed = false;
            return true;
        }
        return false;
    });
    auto failed = a->sync();
    CHECK(failed.error == errc::storage_failure);
    CHECK(a->replica.list<Landmark>().empty());
    CHECK(a->storage.begin().cursor("landmarks") == 0);
    auto ok = a->sync();
    CHECK(!ok.error);
    CHECK(a->replica.list<Landmark>().size() == 12);
}

TEST_CASE("invariant 4: a push result batch that fails to apply is retried whole",
          "[invariants]") {
    world w;
    auto a = std::make_unique<faulty_client>(w);
    a->replica.put(reservation("r-1"));
    a->replica.put(reservation("r-2"));
    int commits = 0;
    a->storage.set_fault_hook([&](std::string_view op) {
        // Commit 1 stores the mutation ids; commit 2 would store the results.
        return op == "commit" && ++commits == 2;
    });
    auto failed = a->sync();
    CHECK(failed.error == errc::storage_failure);
    CHECK(a->replica.pending<Reservation>().dirty == 2);
    const auto version = w.service.last_version();
    auto ok = a->sync();
    CHECK(!ok.error);
    CHECK(ok.conflict_count() == 0);
    CHECK(w.service.last_version() == version); // the retry was recognised, not re-applied
    CHECK(a->replica.pending<Reservation>().dirty == 0);
}

TEST_CASE("invariant 4: a store failure while the next batches are in flight loses nothing",
          "[invariants][pipeline]") {
    // The engine sends batch k+1 (and, two in flight, k+2) before it applies batch k's answer.
    // If applying fails, the round waits for the batches in flight to finish, then fails; the
    // next round re-sends them with their mutation ids, and the server recognises every one.
    world w;
    engine_config config;
    config.push_batch_size = 2;
    faulty_client a(w, config);
    // Each batch is built in a transaction of its own (commits 1, 2, ...); batch 1's answer is
    // applied after the batches the pipeline has room for were built.
    std::size_t depth = 2;
    int failing_commit = 0;
    SECTION("one in flight") {
        depth = 1;
        failing_commit = 3; // batches 1 and 2 built, then batch 1's answer
    }
    SECTION("two in flight") {
        depth = 2;
        failing_commit = 4; // batches 1, 2 and 3 built, then batch 1's answer
    }
    a.transport.set_max_requests_in_flight(depth);
    for (int i = 0; i < 7; ++i) a.replica.put(reservation("r-" + std::to_string(i)));
    int commits = 0;
    a.storage.set_fault_hook(
        [&](std::string_view op) { return op == "commit" && ++commits == failing_commit; });
    const auto before = w.service.last_version();
    auto failed = a.sync();
    CHECK(failed.error == errc::storage_failure);
    // Batch 1 and the `depth` batches sent behind it went out and were waited for.
    CHECK(a.transport.requests() == depth + 1);
    CHECK(w.service.last_version() == before + 2 * (depth + 1));
    CHECK(a.replica.pending<Reservation>().dirty == 7);
    a.storage.set_fault_hook({});
    auto ok = a.sync();
    CHECK(!ok.error);
    CHECK(ok.conflict_count() == 0);
    CHECK(a.replica.pending<Reservation>().dirty == 0);
    CHECK(w.service.last_version() == before + 7); // those recognised, the rest new
    pull_response all;
    REQUIRE(!w.service.pull("alice", {"reservations", 0, 100}, all));
    CHECK(all.changes.size() == 7);
}

TEST_CASE("invariant 4: cancelling a round with batches in flight loses nothing",
          "[invariants][pipeline][cancel]") {
    world w;
    engine_config config;
    config.push_batch_size = 2;
    client a(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    std::size_t depth = 2;
    std::size_t applied_in_round = 0;
    SECTION("one in flight") {
        // Cancelled once the server has applied batch 2: batch 1's answer has been applied
        // and batch 3 built. Batch 2's answer is applied, batch 3 never sent.
        depth = 1;
        applied_in_round = 4;
    }
    SECTION("two in flight") {
        // Batches 1 and 2 were sent together; the cancellation comes as the server applies
        // batch 2, before the engine has read batch 1's answer. Batch 1's answer is applied,
        // batch 2's is waited for but not applied, batch 3 never sent.
        depth = 2;
        applied_in_round = 2;
    }
    a.transport.set_max_requests_in_flight(depth);
    for (int i = 0; i < 6; ++i) a.replica.put(reservation("r-" + std::to_string(i)));
    asio::cancellation_signal cancel;
    int pushes = 0;
    a.transport.faults().after_server = [&](std::string_view op) {
        if (op == "push" && ++pushes == 2) cancel.emit(asio::cancellation_type::terminal);
    };
    std::optional<std::pair<error_code, sync_report>> result;
    std::size_t requests_at_end = 0;
    a.engine.async_sync(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, sync_report r) {
            requests_at_end = a.transport.requests();
            result.emplace(ec, std::move(r));
        }));
    w.io.run();
    REQUIRE(result);
    CHECK(result->first == asio::error::operation_aborted);
    CHECK(requests_at_end == a.transport.requests()); // nothing went out after the round
    CHECK(a.transport.requests() == 2);
    CHECK(a.replica.pending<Reservation>().dirty == 6 - applied_in_round);
    a.transport.faults().after_server = nullptr;
    const auto before = w.service.last_version();
    auto after = a.sync();
    CHECK(!after.error);
    CHECK(after.conflict_count() == 0);
    CHECK(a.replica.pending<Reservation>().dirty == 0);
    CHECK(w.service.last_version() == before + 2); // batch 2 recognised, batch 3 new
}

namespace {

/// A loopback transport that cancels the round at the one moment a state machine cannot see
/// from inside: right after the answer to its first push was handed to the engine, on the
/// engine's strand, before the round resumes to read it.
struct cancel_after_answer_transport {
    using executor_type = loopback_transport::executor_type;

    cancel_after_answer_transport(executor_type ex, server::sync_service& service,
                                  std::string user)
        : inner(std::move(ex), service, std::move(user)) {}

    executor_type get_executor() const noexcept { return inner.get_executor(); }
    std::size_t max_requests_in_flight() const noexcept { return inner.max_requests_in_flight(); }

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, push_response)>(
            [this](auto handler, const push_request& r) {
                // The engine's cancellation of this request still reaches the loopback.
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto deliver = [this, handler = std::move(handler)](error_code ec,
                                                                     push_response answer) mutable {
                    // The engine's handler runs on its strand; so does the cancellation, at
                    // once (the round's slot handler dispatches to the strand it is on).
                    auto strand = asio::get_associated_executor(handler, inner.get_executor());
                    asio::dispatch(strand, [this, handler = std::move(handler), ec,
                                            answer = std::move(answer)]() mutable {
                        std::move(handler)(ec, std::move(answer));
                        if (++answered == 1 && round)
                            round->emit(asio::cancellation_type::terminal);
                    });
                };
                inner.async_push(r, asio::bind_cancellation_slot(slot, std::move(deliver)));
            },
            token, std::cref(request));
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return inner.async_pull(request, std::forward<Token>(token));
    }

    loopback_transport inner;
    asio::cancellation_signal* round = nullptr;
    int answered = 0;
};

} // namespace

TEST_CASE("invariant 4: a cancellation between an answer and the round reading it loses "
          "nothing",
          "[invariants][pipeline][cancel]") {
    world w;
    engine_config config;
    config.push_batch_size = 2;
    basic_client<test_storage, cancel_after_answer_transport> a(
        w.io, w.clock.as_wall_clock(), config, {}, w.io.get_executor(), w.service, "alice");
    std::size_t requests = 0;
    std::uint64_t new_on_retry = 0;
    SECTION("one in flight: batch 1's answer is applied, batch 2 is built but never sent") {
        a.transport.inner.set_max_requests_in_flight(1);
        requests = 1;
        new_on_retry = 4;
    }
    SECTION("two in flight: batch 1's answer is applied, batch 2's waited for, batch 3 never "
            "sent") {
        a.transport.inner.set_max_requests_in_flight(2);
        requests = 2;
        new_on_retry = 2; // batch 2 is recognised, batch 3 is new
    }
    for (int i = 0; i < 6; ++i) a.replica.put(reservation("r-" + std::to_string(i)));
    asio::cancellation_signal cancel;
    a.transport.round = &cancel;
    std::optional<std::pair<error_code, sync_report>> result;
    a.engine.async_sync(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, sync_report r) { result.emplace(ec, std::move(r)); }));
    w.io.run();
    REQUIRE(result);
    CHECK(result->first == asio::error::operation_aborted);
    CHECK(result->second.applied == 2); // the answer in hand is worth applying
    CHECK(a.transport.inner.requests() == requests);
    CHECK(a.replica.pending<Reservation>().dirty == 4);
    // Nothing is lost: the next round pushes the rest, and nothing is written twice.
    a.transport.round = nullptr;
    const auto before = w.service.last_version();
    auto after = a.sync();
    CHECK(!after.error);
    CHECK(after.conflict_count() == 0);
    CHECK(a.replica.pending<Reservation>().dirty == 0);
    CHECK(w.service.last_version() == before + new_on_retry);
    pull_response all;
    REQUIRE(!w.service.pull("alice", {"reservations", 0, 100}, all));
    CHECK(all.changes.size() == 6);
}

TEST_CASE("invariant 4: a lost answer with the next batch in flight: nothing applied twice",
          "[invariants][pipeline][faults]") {
    world w;
    engine_config config;
    config.push_batch_size = 3;
    client a(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    client b(w.io, w.service, "alice", w.clock.as_wall_clock());
    for (int i = 0; i < 9; ++i) a.replica.put(reservation("r-" + std::to_string(i), "confirmed", 2));
    const auto before = w.service.last_version();
    SECTION("the first answer lost") {
        a.transport.faults().lose_push_responses = 1;
        auto failed = a.sync();
        CHECK(failed.error == errc::transport_failure);
        CHECK(a.transport.requests() == 2); // batch 2 was in flight and was waited for
        CHECK(w.service.last_version() == before + 6);
        CHECK(a.replica.pending<Reservation>().dirty == 9);
    }
    SECTION("the first request lost, the second applied") {
        a.transport.faults().lose_push_requests = 1;
        auto failed = a.sync();
        CHECK(failed.error == errc::transport_failure);
        CHECK(w.service.last_version() == before + 3); // batch 2 only
        CHECK(a.replica.pending<Reservation>().dirty == 9);
    }
    auto ok = a.sync();
    CHECK(!ok.error);
    CHECK(ok.conflict_count() == 0);
    CHECK(a.replica.pending<Reservation>().dirty == 0);
    CHECK(w.service.last_version() == before + 9); // each record written once
    REQUIRE(!b.sync().error);
    CHECK(b.replica.list<Reservation>().size() == 9);
}

namespace {
/// A loopback transport that counts how many of its operations are outstanding at once.
struct counting_transport {
    using executor_type = asio::any_io_executor;
    counting_transport(loopback_transport& inner, std::optional<std::size_t> limit)
        : inner(inner), limit(limit) {}
    executor_type get_executor() const { return inner.get_executor(); }

    template <class Token>
    auto async_push(const push_request& r, Token&& token) {
        return start<push_response>([&](auto h) { inner.async_push(r, std::move(h)); },
                                    std::forward<Token>(token));
    }
    template <class Token>
    auto async_pull(const pull_request& r, Token&& token) {
        return start<pull_response>([&](auto h) { inner.async_pull(r, std::move(h)); },
                                    std::forward<Token>(token));
    }
    template <class Response, class Start, class Token>
    auto start(Start go, Token&& token) {
        return asio::async_initiate<Token, void(error_code, Response)>(
            [this, go](auto handler) {
                most = std::max(most, ++outstanding);
                go([this, h = std::move(handler)](error_code ec, Response r) mutable {
                    --outstanding;
                    std::move(h)(ec, std::move(r));
                });
            },
            token);
    }

    loopback_transport& inner;
    std::optional<std::size_t> limit;
    std::size_t outstanding = 0, most = 0;
};

/// The same, saying how many requests it carries at once (`pipelining_transport`).
struct counting_pipelined_transport : counting_transport {
    using counting_transport::counting_transport;
    std::size_t max_requests_in_flight() const { return *limit; }
};
static_assert(!pipelining_transport<counting_transport>);
static_assert(pipelining_transport<counting_pipelined_transport>);
static_assert(pipelining_transport<loopback_transport>);
} // namespace

TEST_CASE("pushes in flight: as many as both the engine and the transport allow",
          "[invariants][pipeline]") {
    world w;
    loopback_transport loop(w.io.get_executor(), w.service, "alice");
    memory_storage storage;
    basic_replica<memory_storage> replica(storage, w.clock.as_wall_clock());
    for (int i = 0; i < 20; ++i) replica.put(reservation("r-" + std::to_string(i)));
    engine_config config;
    config.push_batch_size = 2;
    auto run = [&](auto& transport) {
        using transport_type = std::remove_reference_t<decltype(transport)>;
        basic_sync_engine<memory_storage, transport_type> engine(w.io.get_executor(), replica,
                                                                 transport, config);
        engine.template add_collection<Reservation>();
        std::optional<sync_report> out;
        engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        w.io.restart();
        w.io.run();
        REQUIRE(out);
        CHECK(!out->error);
        CHECK(out->applied == 20);
        CHECK(replica.pending<Reservation>().dirty == 0);
    };
    SECTION("a transport that does not say: one at a time") {
        counting_transport t(loop, std::nullopt);
        run(t);
        CHECK(t.most == 1);
    }
    SECTION("a transport that says: the smaller of its limit and the engine's") {
        struct limits {
            std::size_t engine, transport, expected;
        };
        // The engine's default (2) against a transport that carries 3, and the other ways.
        const auto l = GENERATE(limits{2, 3, 2}, limits{3, 1, 1}, limits{3, 3, 3});
        CAPTURE(l.engine, l.transport);
        config.max_push_requests_in_flight = l.engine;
        counting_pipelined_transport t(loop, l.transport);
        run(t);
        CHECK(t.most == l.expected);
    }
    SECTION("an engine that may send none is refused") {
        config.max_push_requests_in_flight = 0;
        counting_pipelined_transport t(loop, 2);
        using engine_t = basic_sync_engine<memory_storage, counting_pipelined_transport>;
        CHECK_THROWS_AS(engine_t(w.io.get_executor(), replica, t, config), std::invalid_argument);
        CHECK_THROWS_AS(loop.set_max_requests_in_flight(0), std::invalid_argument);
    }
}

TEST_CASE("echoes: an acknowledgement brings what others wrote, so no later echo hides it",
          "[invariants][echo]") {
    world w;
    auto [a, b] = w.alice_devices_sharing("r-1");
    auto on_b = *b->replica.get<Reservation>("r-1");
    on_b.notes = "from b";
    b->replica.put(on_b);
    REQUIRE(!b->sync().error);
    // a writes another field without having pulled b's notes, and its round's pull fails.
    auto on_a = *a->replica.get<Reservation>("r-1");
    on_a.status = "cancelled";
    a->replica.put(on_a);
    a->transport.faults().lose_pull_requests = 1;
    CHECK(a->sync().error == errc::transport_failure);
    // The acknowledgement carried the merged record: a holds b's notes already.
    CHECK(a->replica.get<Reservation>("r-1")->notes == "from b");
    CHECK(a->replica.pending<Reservation>().dirty == 0);
    // a writes again: the server's latest write of r-1 is a's own, which a's pulls now answer
    // with an echo; a must not be missing anything.
    on_a = *a->replica.get<Reservation>("r-1");
    on_a.party_size = 6;
    a->replica.put(on_a);
    REQUIRE(!a->sync().error);
    const auto server = w.service.get("alice", "reservations", "r-1");
    REQUIRE(server);
    CHECK(to_json_object(*a->replica.get<Reservation>("r-1")) == server->value);
    REQUIRE(!b->sync().error);
    CHECK(to_json_object(*b->replica.get<Reservation>("r-1")) == server->value);
}

TEST_CASE("echoes: a store that lost its own write pulls the page again in full",
          "[invariants][echo]") {
    world w;
    std::vector<std::string> errors;
    engine_config config;
    config.on_event = [&](const sync_event& e) {
        if (e.what == sync_event::kind::error) errors.push_back(e.message);
    };
    client a(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    a.replica.put(reservation("r-1", "confirmed", 2));
    a.replica.put(reservation("r-2", "confirmed", 3));
    REQUIRE(!a.sync().error);
    const auto version = w.service.get("alice", "reservations", "r-1")->version;
    auto rewind_cursor = [&] {
        auto txn = a.storage.begin();
        txn.set_cursor("reservations", 0);
        txn.commit();
    };

    SECTION("an intact store takes its echoes as they are") {
        rewind_cursor();
        auto round = a.sync();
        CHECK(!round.error);
        CHECK(errors.empty());
        CHECK(a.replica.get<Reservation>("r-1")->party_size == 2);
        CHECK(a.storage.begin().cursor("reservations") == w.service.last_version());
    }
    SECTION("a store without its write (an older copy of the file) gets it back") {
        {
            auto txn = a.storage.begin();
            auto rec = *txn.load("reservations", "r-1");
            rec.base_version = 0;
            rec.value["party_size"] = 1;
            txn.save("reservations", "r-1", rec);
            txn.remove("reservations", "r-2");
            txn.commit();
        }
        rewind_cursor();
        auto round = a.sync();
        CHECK(!round.error);
        REQUIRE(errors.size() == 1);
        CHECK_THAT(errors[0], Catch::Contains("pulling in full"));
        CHECK(a.replica.get<Reservation>("r-1")->party_size == 2);
        CHECK(a.storage.begin().load("reservations", "r-1")->base_version == version);
        REQUIRE(a.replica.get<Reservation>("r-2"));
        CHECK(a.replica.get<Reservation>("r-2")->party_size == 3);
        CHECK(a.replica.pending<Reservation>().dirty == 0);
    }
}

TEST_CASE("invariant 2: a pull never overwrites a dirty field or a parked record",
          "[invariants]") {
    world w;
    auto [a, b] = w.alice_devices_sharing("r-1");
    auto noted = reservation("r-1");
    noted.notes = "b's note";
    b->replica.put(noted);
    a->replica.put(reservation("r-1", "cancelled"));
    a->sync();
    b->transport.faults().lose_push_requests = 1; // the pull happens, the push does not
    {
        // Pull by hand into b while its note is dirty.
        pull_response page;
        REQUIRE(!w.service.pull("alice", {"reservations", 0, 100}, page));
        auto txn = b->storage.begin();
        for (auto& c : page.changes) detail::apply_pulled(txn, schema_of<Reservation>(), c, 0);
        txn.commit();
    }
    auto r = *b->replica.get<Reservation>("r-1");
    CHECK(r.notes == "b's note");   // dirty: kept
    CHECK(r.status == "cancelled"); // clean: taken
}

TEST_CASE("invariant 5: rejected mutations are parked with their reason and never block others",
          "[invariants]") {
    world w;
    auto a = w.device("alice");
    a->sync();
    auto fake = landmark(99, "Not in the catalog");
    a->replica.put(fake);               // clients cannot create catalog entries
    auto renamed = *a->replica.get<Landmark>(1);
    renamed.name = "Renamed by a client"; // nor rename one
    a->replica.put(renamed);
    a->replica.put(reservation("r-1"));   // fine
    auto report = a->sync();
    CHECK(!report.error);
    CHECK(report.rejected == 2);
    CHECK(report.applied == 1);
    auto rejected = a->replica.rejected();
    REQUIRE(rejected.size() == 2);
    CHECK(a->replica.pending<Landmark>().rejected == 2);
    // Parked: not pushed again.
    CHECK(a->sync().pushed == 0);
    // Dropping returns each to the server's version, or removes it if the server has none.
    a->replica.drop_rejected<Landmark>(1);
    a->replica.drop_rejected<Landmark>(99);
    CHECK(a->replica.get<Landmark>(1)->name == "Half Dome");
    CHECK_FALSE(a->replica.get<Landmark>(99));
    CHECK(a->replica.rejected().empty());
    CHECK_THROWS_AS(a->replica.drop_rejected<Landmark>(1), sync_error);
}

TEST_CASE("deletes travel as tombstones and delete-vs-update goes through the policy",
          "[invariants]") {
    world w;
    auto [a, b] = w.alice_devices_sharing("r-1");
    SECTION("a delete reaches the other device") {
        CHECK(a->replica.erase<Reservation>("r-1"));
        CHECK_FALSE(a->replica.get<Reservation>("r-1"));
        a->sync();
        CHECK(w.service.get("alice", "reservations", "r-1")->deleted);
        b->sync();
        CHECK_FALSE(b->replica.get<Reservation>("r-1"));
    }
    SECTION("update against a delete is asked of the user") {
        a->replica.erase<Reservation>("r-1");
        a->sync();
        b->replica.put(reservation("r-1", "confirmed", 7));
        auto r = b->sync();
        CHECK(r.deferred == 1);
        auto conflicts = b->replica.conflicts();
        REQUIRE(conflicts.size() == 1);
        CHECK(conflicts[0].server->deleted);
        b->replica.resolve<Reservation>("r-1", resolve_choice::keep_mine); // recreate it
        CHECK(b->sync().conflict_count() == 0);
        CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 7);
        a->sync();
        CHECK(a->replica.get<Reservation>("r-1")->party_size == 7);
    }
    SECTION("delete against an update, use-server keeps the record") {
        a->replica.put(reservation("r-1", "confirmed", 7));
        a->sync();
        b->replica.erase<Reservation>("r-1");
        b->sync();
        REQUIRE(b->replica.conflicts().size() == 1);
        CHECK(b->replica.conflicts()[0].local_deleted);
        b->replica.resolve<Reservation>("r-1", resolve_choice::use_server);
        CHECK(b->replica.get<Reservation>("r-1")->party_size == 7);
    }
    SECTION("a record created and deleted offline leaves nothing on the server") {
        a->replica.put(reservation("r-2"));
        a->replica.erase<Reservation>("r-2");
        const auto version = w.service.last_version();
        auto r = a->sync();
        CHECK(r.applied == 1); // the delete, which the server answers without writing
        CHECK(w.service.last_version() == version);
        CHECK_FALSE(w.service.get("alice", "reservations", "r-2"));
        CHECK_FALSE(a->replica.get<Reservation>("r-2"));
        CHECK(a->replica.pending<Reservation>().dirty == 0);
    }
    SECTION("created offline, met by another device's record of the same id, then deleted") {
        // The other device creates r-2 first; this one creates it offline too, pulls the
        // other's into its dirty copy, then deletes it: the delete must reach the server as a
        // conflict, not vanish locally while the server keeps the record.
        b->replica.put(reservation("r-2", "confirmed", 4));
        b->sync();
        a->replica.put(reservation("r-2", "confirmed", 9));
        {
            // A pull before this device ever pushed r-2 (in a round, the pull that follows a
            // push built before the edit).
            pull_response page;
            REQUIRE(!w.service.pull("alice", {"reservations", 0, 100}, page));
            auto txn = a->storage.begin();
            for (auto& c : page.changes) detail::apply_pulled(txn, schema_of<Reservation>(), c, 0);
            txn.set_cursor("reservations", page.cursor);
            txn.commit();
        }
        CHECK(a->replica.erase<Reservation>("r-2"));
        auto r = a->sync();
        CHECK(r.deferred == 1); // ask-user: delete against b's record
        a->replica.resolve<Reservation>("r-2", resolve_choice::use_server);
        CHECK(a->replica.get<Reservation>("r-2")->party_size == 4);
    }
}

TEST_CASE("a cursor ahead of the server restarts the pull from zero", "[invariants]") {
    world w;
    auto a = w.device("alice");
    a->sync();
    {
        auto txn = a->storage.begin();
        txn.set_cursor("landmarks", 1000);
        txn.commit();
    }
    auto r = a->sync();
    CHECK(!r.error);
    CHECK(a->storage.begin().cursor("landmarks") <= w.service.last_version());
}

TEST_CASE("cancellation in the middle of a round leaves the store consistent",
          "[invariants][cancel]") {
    world w;
    auto a = w.device("alice");
    for (int i = 0; i < 6; ++i) a->replica.put(reservation("r-" + std::to_string(i)));
    a->transport.faults().delay = std::chrono::milliseconds(200);
    asio::cancellation_signal cancel;
    std::optional<std::pair<error_code, sync_report>> result;
    a->engine.async_sync(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, sync_report r) { result.emplace(ec, std::move(r)); }));
    asio::steady_timer timer(w.io, std::chrono::milliseconds(20));
    timer.async_wait([&](error_code) { cancel.emit(asio::cancellation_type::terminal); });
    w.io.run();
    REQUIRE(result);
    CHECK(result->first == asio::error::operation_aborted);
    CHECK(a->replica.pending<Reservation>().dirty == 6);
    a->transport.faults().delay = {};
    auto after = a->sync();
    CHECK(!after.error);
    CHECK(a->replica.pending<Reservation>().dirty == 0);
    CHECK(after.applied == 6);
}

TEST_CASE("requests during a round coalesce into one more round, and a waiter can cancel",
          "[invariants][cancel]") {
    world w;
    std::size_t rounds = 0;
    engine_config config;
    config.on_event = [&](const sync_event& e) {
        if (e.what == sync_event::kind::round_started) ++rounds;
    };
    client a(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    a.transport.faults().delay = std::chrono::milliseconds(5);
    int completed = 0;
    error_code cancelled_ec;
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    asio::cancellation_signal cancel;
    a.engine.async_sync(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, sync_report) { cancelled_ec = ec; }));
    asio::post(w.io, [&] { cancel.emit(asio::cancellation_type::terminal); });
    w.io.run();
    CHECK(completed == 3);
    CHECK(rounds == 2);
    CHECK(cancelled_ec == asio::error::operation_aborted);
}

TEST_CASE("a waiter cancelled ahead of others in the queue leaves them waiting",
          "[invariants][cancel]") {
    world w;
    client a(w.io, w.service, "alice", w.clock.as_wall_clock());
    a.transport.faults().delay = std::chrono::milliseconds(5);
    int completed = 0;
    error_code cancelled_ec;
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    asio::cancellation_signal cancel;
    a.engine.async_sync(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, sync_report) { cancelled_ec = ec; }));
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    a.engine.async_sync([&](error_code, sync_report) { ++completed; });
    asio::post(w.io, [&] { cancel.emit(asio::cancellation_type::terminal); });
    w.io.run();
    CHECK(completed == 3);
    CHECK(cancelled_ec == asio::error::operation_aborted);
}

TEST_CASE("async_sync works with use_future from another thread", "[invariants]") {
    world w;
    auto a = w.device("alice");
    auto work = asio::make_work_guard(w.io);
    std::thread runner([&] { w.io.run(); });
    auto future = a->engine.async_sync(asio::use_future);
    auto report = future.get();
    work.reset();
    runner.join();
    CHECK(!report.error);
    CHECK(report.pulled == 2);
}

TEST_CASE("the app edits on its own thread while rounds run on another", "[invariants][threads]") {
    world w;
    auto a = w.device("alice");
    auto b = w.device("alice");
    std::atomic<bool> editing{true};
    std::map<std::string, int> last_party;
    std::thread app([&] {
        for (int i = 0; i < 200; ++i) {
            const auto id = "r-" + std::to_string(i % 7);
            a->replica.put(reservation(id, "confirmed", i + 1));
            last_party[id] = i + 1;
            if (i % 50 == 0) std::this_thread::yield();
        }
        editing = false;
    });
    // Rounds on this thread, concurrently with the edits.
    while (editing) a->sync();
    app.join();
    a->sync();
    b->sync();
    CHECK(a->replica.pending<Reservation>().dirty == 0);
    for (const auto& [id, party] : last_party) {
        CAPTURE(id);
        CHECK(a->replica.get<Reservation>(id)->party_size == party);
        CHECK(b->replica.get<Reservation>(id)->party_size == party);
    }
}
