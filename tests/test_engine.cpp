// The seed's behaviours, end to end through the engine, the loopback transport and the service.
#include "support/world.hpp"

using namespace offsync_test;


TEST_CASE("a first sync pulls the catalog", "[engine]") {
    world w;
    auto a = w.device("alice");
    auto report = a->sync();
    CHECK(!report.error);
    CHECK(report.pulled == 2);
    auto dome = a->replica.get<Landmark>(1);
    REQUIRE(dome);
    CHECK(dome->name == "Half Dome");
    CHECK(a->replica.list<Landmark>().size() == 2);
}

TEST_CASE("toggling a favorite offline and syncing clears its dirty state", "[engine][seed]") {
    world w;
    auto a = w.device("alice");
    a->sync();
    auto dome = *a->replica.get<Landmark>(1);
    dome.is_favorite = true;
    CHECK(a->replica.put(dome));
    CHECK(a->replica.pending<Landmark>().dirty == 1);

    auto report = a->sync();
    CHECK(!report.error);
    CHECK(report.pushed == 1);
    CHECK(report.applied == 1);
    CHECK(a->replica.pending<Landmark>().dirty == 0);
    CHECK(w.service.get("alice", "landmarks", "1")->value.at("is_favorite") == true);
    // The favorite is alice's alone.
    CHECK(w.service.get("bob", "landmarks", "1")->value.at("is_favorite") == false);
}

TEST_CASE("a pull keeps a dirty favorite but updates the catalog fields", "[engine][seed]") {
    world w;
    auto a = w.device("alice");
    a->sync();
    auto dome = *a->replica.get<Landmark>(1);
    dome.is_favorite = true;
    a->replica.put(dome);

    auto edited = half_dome();
    edited.name = "Half Dome (Yosemite)";
    edited.state = "CA";
    edited.description = "A granite dome above Yosemite Valley";
    w.service.admin_put("landmarks", to_json_object(edited));

    // Pull alone first: push nothing by failing the push, so the pull meets the dirty record.
    a->transport.faults().lose_push_requests = 1;
    auto failed = a->sync();
    CHECK(failed.error == errc::transport_failure);
    CHECK(failed.error == condition::retry_later);
    // The round's message names the step and the cause the transport gave, not only the code.
    CHECK_THAT(failed.error_message, Catch::Contains("push to 'landmarks'") &&
                                         Catch::Contains("request lost (injected fault)"));
    CHECK(!failed.retry_after);
    CHECK(a->replica.pending<Landmark>().dirty == 1);

    // Now a real round: pushes the favorite, pulls the new catalog text.
    auto report = a->sync();
    CHECK(!report.error);
    auto now = *a->replica.get<Landmark>(1);
    CHECK(now.is_favorite);
    CHECK(now.name == "Half Dome (Yosemite)");
    CHECK(now.state == "CA");
    CHECK(now.description == "A granite dome above Yosemite Valley");
    CHECK(a->replica.pending<Landmark>().dirty == 0);
}

TEST_CASE("a dirty favorite survives a pull that changes other fields", "[engine][seed]") {
    world w;
    auto a = w.device("alice");
    auto b = w.device("alice"); // alice's second device
    a->sync();
    b->sync();
    auto dome = *a->replica.get<Landmark>(1);
    dome.is_favorite = true;
    a->replica.put(dome);
    auto edited = half_dome();
    edited.name = "Half Dome!";
    w.service.admin_put("landmarks", to_json_object(edited));
    // Apply a pull page directly while the favorite is dirty.
    {
        pull_response page;
        REQUIRE(!w.service.pull("alice", {"landmarks", 0, 100}, page));
        auto txn = a->storage.begin();
        for (auto& c : page.changes)
            detail::apply_pulled(txn, schema_of<Landmark>(), c, 0);
        txn.commit();
    }
    auto mixed = *a->replica.get<Landmark>(1);
    CHECK(mixed.is_favorite);          // dirty: kept
    CHECK(mixed.name == "Half Dome!"); // clean: updated
}

TEST_CASE("a stale reservation push conflicts and is parked for the user", "[engine][seed]") {
    world w;
    auto [phone, laptop] = w.alice_devices_sharing("r-1");
    REQUIRE(laptop->replica.get<Reservation>("r-1"));

    // Both devices change the party size of the same reservation offline.
    phone->replica.put(reservation("r-1", "cancelled", 3));
    laptop->replica.put(reservation("r-1", "confirmed", 6));
    CHECK(!phone->sync().error);

    auto report = laptop->sync();
    CHECK(!report.error);
    CHECK(report.deferred == 1);
    REQUIRE(report.conflicts.size() == 1);
    CHECK(report.conflicts[0].outcome == conflict_outcome::deferred);
    auto conflicts = laptop->replica.conflicts("reservations");
    REQUIRE(conflicts.size() == 1);
    CHECK(conflicts[0].key == "r-1");
    CHECK(conflicts[0].local_value.at("party_size") == 6);
    REQUIRE(conflicts[0].server);
    CHECK(conflicts[0].server->value.at("status") == "cancelled");

    // Parked: further rounds neither push it nor overwrite it.
    auto again = laptop->sync();
    CHECK(again.pushed == 0);
    CHECK(laptop->replica.get<Reservation>("r-1")->party_size == 6);
    CHECK(laptop->replica.pending<Reservation>().conflicts == 1);

    SECTION("keep-mine pushes the local version without conflicting again") {
        laptop->replica.resolve<Reservation>("r-1", resolve_choice::keep_mine);
        auto r = laptop->sync();
        CHECK(!r.error);
        CHECK(r.conflict_count() == 0);
        CHECK(r.applied == 1);
        auto server = w.service.get("alice", "reservations", "r-1");
        CHECK(server->value.at("party_size") == 6);
        // The phone's status change touched a field the laptop left alone: it stays.
        CHECK(server->value.at("status") == "cancelled");
        CHECK(laptop->replica.conflicts().empty());
        phone->sync();
        CHECK(phone->replica.get<Reservation>("r-1")->party_size == 6);
        CHECK(laptop->replica.get<Reservation>("r-1")->status == "cancelled");
    }
    SECTION("use-server adopts the server version") {
        laptop->replica.resolve<Reservation>("r-1", resolve_choice::use_server);
        CHECK(laptop->replica.get<Reservation>("r-1")->status == "cancelled");
        CHECK(laptop->replica.get<Reservation>("r-1")->party_size == 3);
        auto r = laptop->sync();
        CHECK(r.pushed == 0);
        CHECK(laptop->replica.conflicts().empty());
        CHECK(laptop->replica.pending<Reservation>().dirty == 0);
    }
    SECTION("a merged value settles it") {
        auto merged = reservation("r-1", "cancelled", 4);
        merged.notes = "merged by hand";
        laptop->replica.resolve_merged(merged);
        CHECK(!laptop->sync().error);
        auto server = w.service.get("alice", "reservations", "r-1");
        CHECK(server->value.at("notes") == "merged by hand");
        CHECK(server->value.at("status") == "cancelled");
    }
    SECTION("resolving what is not in conflict is a clear error") {
        CHECK_THROWS_AS(laptop->replica.resolve<Reservation>("nope", resolve_choice::keep_mine),
                        sync_error);
        auto d = laptop->replica.resolve(schema_of<Reservation>(), "nope",
                                         resolve_choice::use_server);
        CHECK(d.code == errc::no_such_conflict);
        CHECK(laptop->replica.conflicts().size() == 1);
    }
}

TEST_CASE("keep-mine conflicts again only when the server moved once more", "[engine]") {
    world w;
    auto [phone, laptop] = w.alice_devices_sharing("r-1");
    phone->replica.put(reservation("r-1", "cancelled", 3));
    phone->sync();
    laptop->replica.put(reservation("r-1", "confirmed", 4));
    laptop->sync();
    REQUIRE(laptop->replica.conflicts().size() == 1);
    // The server moves again after the conflict was recorded, and before the user decides.
    auto moved = reservation("r-1", "cancelled", 5);
    moved.notes = "phone again";
    phone->replica.put(moved);
    phone->sync();
    laptop->replica.resolve<Reservation>("r-1", resolve_choice::keep_mine);
    auto r = laptop->sync();
    CHECK(r.deferred == 1); // the user is asked again: the server moved since
    REQUIRE(laptop->replica.conflicts().size() == 1);
    CHECK(laptop->replica.conflicts()[0].server->value.at("notes") == "phone again");
}

TEST_CASE("a pull refreshes a parked conflict so keep-mine meets the newest server version",
          "[engine]") {
    world w;
    auto [phone, laptop] = w.alice_devices_sharing("r-1");
    phone->replica.put(reservation("r-1", "cancelled", 3));
    phone->sync();
    laptop->replica.put(reservation("r-1", "confirmed", 4));
    laptop->sync();
    auto moved = reservation("r-1", "cancelled", 5);
    moved.notes = "phone again";
    phone->replica.put(moved);
    phone->sync();
    laptop->sync(); // pulls the newer server version into the parked conflict
    REQUIRE(laptop->replica.conflicts().size() == 1);
    CHECK(laptop->replica.conflicts()[0].server->value.at("notes") == "phone again");
    laptop->replica.resolve<Reservation>("r-1", resolve_choice::keep_mine);
    auto r = laptop->sync();
    CHECK(r.conflict_count() == 0);
    CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 4);
}

TEST_CASE("edits to different fields of one record merge without a conflict", "[engine]") {
    world w;
    auto [phone, laptop] = w.alice_devices_sharing("r-1");
    phone->replica.put(reservation("r-1", "cancelled"));
    auto noted = reservation("r-1");
    noted.notes = "window seat";
    laptop->replica.put(noted);
    phone->sync();
    auto report = laptop->sync();
    CHECK(report.conflict_count() == 0);
    phone->sync();
    for (auto* c : {phone.get(), laptop.get()}) {
        auto r = *c->replica.get<Reservation>("r-1");
        CHECK(r.status == "cancelled");
        CHECK(r.notes == "window seat");
    }
}

TEST_CASE("server-wins takes the server value and reports the discarded change", "[engine]") {
    world w;
    auto phone = w.device("alice");
    // A laptop whose reservations use server-wins instead of the traits' ask-user.
    test_storage store;
    basic_replica<test_storage> replica(store, w.clock.as_wall_clock());
    loopback_transport transport(w.io.get_executor(), w.service, "alice");
    engine_type engine(w.io.get_executor(), replica, transport);
    engine.add_collection<Reservation>(server_wins{});
    auto run = [&] {
        std::optional<sync_report> out;
        engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        w.io.restart();
        w.io.run();
        return *out;
    };
    phone->replica.put(reservation("r-1"));
    phone->sync();
    run();
    phone->replica.put(reservation("r-1", "cancelled", 3));
    phone->sync();
    replica.put(reservation("r-1", "confirmed", 8));
    auto report = run();
    CHECK(!report.error);
    CHECK(report.took_server == 1);
    REQUIRE(report.discarded.size() == 1);
    CHECK(report.discarded[0].key == "r-1");
    CHECK(report.discarded[0].local_value.at("party_size") == 8);
    CHECK(replica.get<Reservation>("r-1")->status == "cancelled");
    CHECK(replica.get<Reservation>("r-1")->party_size == 3);
    CHECK(replica.pending<Reservation>().dirty == 0);
}

TEST_CASE("last-write-wins in both directions", "[engine][lww]") {
    world w;
    auto [phone, laptop] = w.alice_devices_sharing("r-1", lww_reservations);

    SECTION("the later local edit wins and is re-pushed in the same round") {
        phone->replica.put(reservation("r-1", "confirmed", 3));
        w.clock.now_ms += 1000;
        laptop->replica.put(reservation("r-1", "confirmed", 5));
        phone->sync();
        auto r = laptop->sync();
        CHECK(!r.error);
        CHECK(r.kept_local == 1);
        CHECK(r.discarded.empty());
        CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 5);
        CHECK(laptop->replica.pending<Reservation>().dirty == 0);
        phone->sync();
        CHECK(phone->replica.get<Reservation>("r-1")->party_size == 5);
    }
    SECTION("the later server write wins and the local change is reported, not lost silently") {
        laptop->replica.put(reservation("r-1", "confirmed", 5));
        w.clock.now_ms += 1000;
        phone->replica.put(reservation("r-1", "confirmed", 3));
        phone->sync();
        auto r = laptop->sync();
        CHECK(r.took_server == 1);
        REQUIRE(r.discarded.size() == 1);
        CHECK(r.discarded[0].local_value.at("party_size") == 5);
        CHECK(laptop->replica.get<Reservation>("r-1")->party_size == 3);
    }
    SECTION("an exact tie is broken the same way on every device") {
        // The laptop's clock has seen the phone's first write; the phone's has not seen it come
        // back (a push does not pull its own writes). Equal clocks make the stamps tie.
        hlc_state laptop_clock;
        {
            auto txn = laptop->storage.begin();
            laptop_clock = txn.clock();
        }
        {
            auto txn = phone->storage.begin();
            txn.set_clock(laptop_clock);
            txn.commit();
        }
        phone->replica.put(reservation("r-1", "confirmed", 3));
        laptop->replica.put(reservation("r-1", "confirmed", 5));
        phone->sync();
        laptop->sync();
        phone->sync();
        const auto expected = phone->engine.client_id() > laptop->engine.client_id() ? 3 : 5;
        CHECK(phone->replica.get<Reservation>("r-1")->party_size == expected);
        CHECK(laptop->replica.get<Reservation>("r-1")->party_size == expected);
    }
}

TEST_CASE("a device clock an hour fast does not make later edits lose", "[engine][lww]") {
    world w;
    auto fast = w.device("alice", 3'600'000, lww_reservations);
    auto normal = w.device("alice", 0, lww_reservations);
    fast->replica.put(reservation("r-1", "confirmed", 3));
    fast->sync();
    normal->sync();
    w.clock.now_ms += 60'000;

    // The normal device edits a minute later, having seen the fast device's write. Server
    // versions say it descends from that write: no conflict, whatever the clocks say.
    normal->replica.put(reservation("r-1", "confirmed", 7));
    auto r = normal->sync();
    CHECK(r.conflict_count() == 0);
    CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 7);
    fast->sync();
    CHECK(fast->replica.get<Reservation>("r-1")->party_size == 7);

    // Its stamps follow causality: an edit after seeing the fast write stamps above it.
    auto server_stamp = w.service.get("alice", "reservations", "r-1")->stamp;
    normal->replica.put(reservation("r-1", "confirmed", 8));
    auto txn = normal->storage.begin();
    CHECK(txn.load("reservations", "r-1")->modified_at > server_stamp);
}

TEST_CASE("concurrent edits from a fast clock: the outcome is reported", "[engine][lww]") {
    world w;
    auto fast = w.device("alice", 3'600'000, lww_reservations);
    auto normal = w.device("alice", 0, lww_reservations);
    normal->replica.put(reservation("r-1"));
    normal->sync();
    fast->sync();
    // Neither has seen the other's edit: wall time decides, and the fast clock wins. The
    // normal device's change is listed as discarded so the app can surface it.
    normal->replica.put(reservation("r-1", "confirmed", 4));
    fast->replica.put(reservation("r-1", "confirmed", 9));
    fast->sync();
    auto r = normal->sync();
    CHECK(r.took_server == 1);
    REQUIRE(r.discarded.size() == 1);
    CHECK(r.discarded[0].local_value.at("party_size") == 4);
    CHECK(normal->replica.get<Reservation>("r-1")->party_size == 9);
}

TEST_CASE("a push the server refuses as too large goes again in smaller batches", "[engine]") {
    manual_clock clock;
    asio::io_context io;
    server::service_config limits;
    limits.max_mutations_per_push = 40;
    auto service = make_service(clock, limits);
    std::vector<std::string> warnings;
    engine_config config;
    config.push_batch_size = 100;
    config.on_event = [&](const sync_event& e) {
        if (e.what == sync_event::kind::error) warnings.push_back(e.message);
    };
    client a(io, *service, "alice", clock.as_wall_clock(), config);
    for (int i = 0; i < 90; ++i) a.replica.put(reservation("r-" + std::to_string(100 + i)));

    auto report = a.sync();
    CHECK(!report.error);
    CHECK(report.pushed == 90); // refused requests are not counted
    CHECK(report.applied == 90);
    CHECK(a.replica.pending<Reservation>().dirty == 0);
    REQUIRE(warnings.size() == 2); // 90 refused, then 45, then 22 at a time
    CHECK(warnings[0] == "the server refused a push of 90 mutations as too large; pushing 45 at "
                         "a time");
    CHECK(warnings[1].find("pushing 22 at a time") != std::string::npos);

    // The engine keeps the smaller size: the next round is not refused first.
    for (int i = 0; i < 30; ++i) a.replica.put(reservation("s-" + std::to_string(100 + i)));
    warnings.clear();
    report = a.sync();
    CHECK(!report.error);
    CHECK(report.applied == 30);
    CHECK(warnings.empty());
}

TEST_CASE("a push refused as too large even alone fails the round and keeps the edit dirty",
          "[engine]") {
    manual_clock clock;
    asio::io_context io;
    server::service_config limits;
    limits.max_mutations_per_push = 0; // refuses everything
    auto service = make_service(clock, limits);
    client a(io, *service, "alice", clock.as_wall_clock());
    a.replica.put(reservation("r-1"));
    a.replica.put(reservation("r-2"));
    auto report = a.sync();
    CHECK(report.error == errc::batch_too_large);
    CHECK(report.applied == 0);
    CHECK(a.replica.pending<Reservation>().dirty == 2);
    CHECK_FALSE(service->get("alice", "reservations", "r-1"));
}

TEST_CASE("push batches and pull pages start small and double up to the configured size",
          "[engine]") {
    world w;
    std::vector<std::size_t> batches, pages;
    engine_config config; // the defaults: 250 then up to 1,000 a batch; 500 then up to 1,000 a page
    config.on_event = [&](const sync_event& e) {
        if (e.collection != "reservations") return;
        if (e.what == sync_event::kind::batch_pushed) batches.push_back(e.count);
        if (e.what == sync_event::kind::page_pulled) pages.push_back(e.count);
    };
    client a(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    client tablet(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    for (int i = 0; i < 2400; ++i) a.replica.put(reservation("r-" + std::to_string(10000 + i)));
    REQUIRE(!a.sync().error);
    CHECK(batches == std::vector<std::size_t>{250, 500, 1000, 650});
    CHECK(pages.empty()); // the pusher does not pull back its own writes
    REQUIRE(!tablet.sync().error);
    CHECK(pages == std::vector<std::size_t>{500, 1000, 900});

    // Each push pass and each pull starts small again.
    batches.clear();
    pages.clear();
    for (int i = 0; i < 300; ++i) a.replica.put(reservation("s-" + std::to_string(10000 + i)));
    REQUIRE(!a.sync().error);
    CHECK(batches == std::vector<std::size_t>{250, 50});
    REQUIRE(!tablet.sync().error);
    CHECK(pages == std::vector<std::size_t>{300});

    // A configured size below the first one is used from the start.
    config.first_push_batch_size = 0; // read as 1
    config.push_batch_size = 40;
    batches.clear();
    client b(w.io, w.service, "bob", w.clock.as_wall_clock(), config);
    for (int i = 0; i < 50; ++i) b.replica.put(reservation("t-" + std::to_string(10000 + i)));
    REQUIRE(!b.sync().error);
    CHECK(batches == std::vector<std::size_t>{1, 2, 4, 8, 16, 19});
}

// ---------------------------------------------------------------------------------------------
// A push's answer tells the feed range its own writes fill alone; the pusher then skips pulling
// their echoes. Everything else in the feed must still arrive.

namespace {
std::uint64_t cursor_of(test_storage& storage, const std::string& collection) {
    auto txn = storage.begin();
    return txn.cursor(collection);
}
} // namespace

TEST_CASE("a push round does not pull back its own writes, and others' writes still arrive",
          "[engine][own-writes]") {
    world w;
    auto phone = w.device("alice");
    auto tablet = w.device("alice");
    REQUIRE(!phone->sync().error);
    REQUIRE(!tablet->sync().error);
    for (int i = 0; i < 5; ++i) phone->replica.put(reservation("r-" + std::to_string(i)));
    const auto requests_before = phone->transport.requests();
    auto pushed = phone->sync();
    REQUIRE(!pushed.error);
    CHECK(pushed.applied == 5);
    CHECK(pushed.pulled == 0); // no echoes
    CHECK(cursor_of(phone->storage, "reservations") == w.service.last_version());
    // One push, then one pull per collection that finds nothing.
    CHECK(phone->transport.requests() - requests_before == 3);
    CHECK(phone->replica.pending<Reservation>().dirty == 0);

    // The other device receives the writes in full.
    auto received = tablet->sync();
    REQUIRE(!received.error);
    CHECK(received.pulled == 5);
    CHECK(tablet->replica.list<Reservation>().size() == 5);

    // Its edit comes back to the phone: the skip covers the phone's writes only.
    auto r = *tablet->replica.get<Reservation>("r-3");
    r.status = "cancelled";
    tablet->replica.put(r);
    REQUIRE(!tablet->sync().error);
    auto back = phone->sync();
    REQUIRE(!back.error);
    CHECK(back.pulled == 1);
    CHECK(phone->replica.get<Reservation>("r-3")->status == "cancelled");
}

TEST_CASE("a write by someone else between two pushed batches is pulled, not skipped",
          "[engine][own-writes]") {
    world w;
    engine_config config;
    config.first_push_batch_size = 2;
    config.push_batch_size = 2;
    client phone(w.io, w.service, "alice", w.clock.as_wall_clock(), config);
    REQUIRE(!phone.sync().error);
    for (int i = 0; i < 6; ++i) phone.replica.put(reservation("r-" + std::to_string(i)));
    // Once the server has applied the first batch, a write of alice's from elsewhere lands
    // before the second: the feed between the batches is no longer the phone's alone.
    bool written = false;
    phone.transport.faults().after_server = [&](std::string_view operation) {
        if (operation != "push" || written) return;
        written = true;
        w.service.admin_put("reservations", to_json_object(reservation("from-the-web")), "alice");
    };
    auto round = phone.sync();
    REQUIRE(!round.error);
    REQUIRE(written);
    CHECK(round.applied == 6);
    CHECK(phone.replica.get<Reservation>("from-the-web"));
    CHECK(cursor_of(phone.storage, "reservations") == w.service.last_version());
    // The later batches' writes came back as echoes, behind the foreign write.
    CHECK(round.pulled >= 1);
    CHECK(phone.sync().pulled == 0);
}

TEST_CASE("a pushed record the store lost meanwhile is pulled back, not skipped",
          "[engine][own-writes]") {
    world w;
    auto phone = w.device("alice");
    REQUIRE(!phone->sync().error);
    for (int i = 0; i < 3; ++i) phone->replica.put(reservation("r-" + std::to_string(i)));
    // While the push is answered, the store loses one of the records (standing in for a store
    // that lost what it wrote). Its acknowledgement finds nothing to mark, so the cursor must
    // not move past the write: the pull brings the record back from the server.
    bool removed = false;
    phone->transport.faults().after_server = [&](std::string_view operation) {
        if (operation != "push" || removed) return;
        removed = true;
        auto txn = phone->storage.begin();
        txn.remove("reservations", "r-1");
        txn.commit();
    };
    auto round = phone->sync();
    REQUIRE(!round.error);
    REQUIRE(removed);
    CHECK(round.applied == 3);
    auto back = phone->replica.get<Reservation>("r-1");
    REQUIRE(back);
    CHECK(back->id == "r-1");
    CHECK(phone->replica.list<Reservation>().size() == 3);
    CHECK(cursor_of(phone->storage, "reservations") == w.service.last_version());
}

TEST_CASE("a refused request's cause and Retry-After come with the round's report",
          "[engine][faults]") {
    world w;
    auto a = w.device("alice");
    a->transport.faults().busy = 1;
    a->transport.faults().busy_retry_after = std::chrono::seconds(7);
    // Nothing to push: the pull of the first collection meets the busy server.
    auto report = a->sync();
    CHECK(report.error == errc::server_error);
    CHECK(report.error == condition::retry_later);
    CHECK(report.error != condition::bad_request);
    CHECK_THAT(report.error_message, Catch::Contains("pull from 'landmarks'") &&
                                         Catch::Contains("server busy (injected fault)"));
    REQUIRE(report.retry_after);
    CHECK(*report.retry_after == std::chrono::seconds(7));
    CHECK(report.pulled == 0);
    // The next round is not refused and carries no stale wait.
    auto next = a->sync();
    CHECK(!next.error);
    CHECK(!next.retry_after);
    CHECK(next.pulled > 0);
}

TEST_CASE("the loopback transport reports each request that reached the server to its observer",
          "[engine][loopback]") {
    using clock = std::chrono::steady_clock;
    world w;
    auto a = w.device("alice");
    std::vector<loopback_exchange> seen;
    std::vector<std::string> served; // each request the server handled, in order
    a->transport.faults().after_server = [&](std::string_view op) { served.emplace_back(op); };
    a->transport.set_observer([&](const loopback_exchange& e) { seen.push_back(e); });
    // Checks the reports since `first` against what the server handled since `first_served`,
    // and returns the bytes they name.
    auto check_reports = [&](std::size_t first, std::size_t first_served, clock::time_point from,
                             clock::time_point to) {
        REQUIRE(seen.size() - first == served.size() - first_served);
        std::size_t bytes = 0;
        for (std::size_t i = first; i < seen.size(); ++i) {
            const auto& e = seen[i];
            CHECK(e.push == (served[first_served + i - first] == "push"));
            CHECK(e.encode >= clock::duration::zero());
            CHECK(e.server >= clock::duration::zero());
            CHECK(e.decode >= clock::duration::zero());
            // The three phases follow one another inside the round.
            CHECK(e.started >= from);
            CHECK(e.started + e.encode + e.server + e.decode <= to);
            CHECK(e.request_bytes > 0);
            bytes += e.request_bytes + e.response_bytes;
        }
        return bytes;
    };

    for (int i = 0; i < 3; ++i) a->replica.put(reservation("r-" + std::to_string(i)));
    auto from = clock::now();
    auto report = a->sync();
    auto to = clock::now();
    REQUIRE(!report.error);
    REQUIRE(report.pushed == 3);
    // One report per request that reached the server, no more.
    CHECK(seen.size() == a->transport.requests());
    CHECK(check_reports(0, 0, from, to) == a->transport.bytes());
    std::size_t pushes = 0, pulls = 0;
    for (const auto& e : seen) {
        (e.push ? pushes : pulls) += 1;
        CHECK(e.response_bytes > 0);
    }
    CHECK(pushes >= 1);
    CHECK(pulls >= 2); // both collections

    // A push lost on its way never reached the server: not reported. A push whose answer is
    // lost did: reported, with the answer's bytes.
    a->replica.put(reservation("r-lost"));
    a->transport.faults().lose_push_requests = 1;
    auto first = seen.size(), first_served = served.size();
    auto requests = a->transport.requests();
    auto bytes = a->transport.bytes();
    from = clock::now();
    CHECK(a->sync().error == errc::transport_failure);
    to = clock::now();
    CHECK(seen.size() - first == a->transport.requests() - requests);
    CHECK(check_reports(first, first_served, from, to) == a->transport.bytes() - bytes);
    for (std::size_t i = first; i < seen.size(); ++i) CHECK(!seen[i].push);

    a->transport.faults().lose_push_responses = 1;
    first = seen.size();
    first_served = served.size();
    requests = a->transport.requests();
    bytes = a->transport.bytes();
    from = clock::now();
    CHECK(a->sync().error == errc::transport_failure);
    to = clock::now();
    CHECK(seen.size() - first == a->transport.requests() - requests);
    CHECK(check_reports(first, first_served, from, to) == a->transport.bytes() - bytes);
    pushes = 0;
    for (std::size_t i = first; i < seen.size(); ++i) {
        if (!seen[i].push) continue;
        ++pushes;
        CHECK(seen[i].response_bytes > 0);
    }
    CHECK(pushes == 1);

    // Without an observer nothing is reported, while requests still reach the server.
    a->transport.set_observer({});
    a->replica.put(reservation("r-unseen"));
    first = seen.size();
    requests = a->transport.requests();
    REQUIRE(!a->sync().error);
    CHECK(a->transport.requests() > requests);
    CHECK(seen.size() == first);
}
