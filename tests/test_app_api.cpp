// The app-facing API: the one-object device over real HTTP and SQLite, typed reads, queries and
// pages, typed conflicts and rejections, change listeners (callbacks and async waits), and the
// bad inputs of each.
#include "support/device.hpp"

#include <offsync/device.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <map>
#include <thread>

using namespace offsync;
using namespace offsync_test;
using Catch::Matchers::Contains;

namespace {

/// Collects what a callback subscription delivers.
template <class T>
struct collected {
    std::vector<std::vector<record_change<T>>> deliveries;
    auto callback() {
        return [this](const std::vector<record_change<T>>& c) { deliveries.push_back(c); };
    }
    std::map<std::string, std::optional<T>> latest() const {
        std::map<std::string, std::optional<T>> out;
        for (const auto& d : deliveries)
            for (const auto& c : d) out[key_text(c.key)] = c.value;
        return out;
    }
};

/// Runs what is queued on `io` (deliveries are posted), bounded.
void drain(asio::io_context& io) {
    io.restart();
    for (int i = 0; i < 100 && io.poll() > 0; ++i) {}
}

} // namespace

TEST_CASE("app api: a device in one object syncs typed records with another over HTTP",
          "[app-api][device]") {
    http_world w;
    asio::io_context io;
    device_on_disk phone(io, w.port, alice_token), laptop(io, w.port, alice_token);

    CHECK(phone->put(reservation("r1", "confirmed", 2)));
    CHECK_FALSE(phone->put(reservation("r1", "confirmed", 2))); // nothing changed
    CHECK(phone->pending().dirty == 1);
    auto pushed = phone.sync();
    INFO(pushed.error_message);
    REQUIRE(!pushed.error);
    CHECK(pushed.applied == 1);

    auto pulled = laptop.sync();
    REQUIRE(!pulled.error);
    auto r1 = laptop->get<Reservation>("r1");
    REQUIRE(r1);
    CHECK(r1->party_size == 2);
    CHECK(laptop->list<Landmark>().size() == 2); // the shared catalog
    CHECK(laptop->get<Landmark>(1)->name == "Half Dome");

    CHECK(laptop->erase<Reservation>("r1"));
    REQUIRE(!laptop.sync().error);
    REQUIRE(!phone.sync().error);
    CHECK_FALSE(phone->get<Reservation>("r1"));
    CHECK(phone->client_id() != laptop->client_id());
}

TEST_CASE("app api: a device refuses a configuration that cannot work, naming why",
          "[app-api][device][bad-input]") {
    asio::io_context io;
    temp_file file;
    auto make = [&](std::string database, std::string server) {
        device_config c;
        c.database = std::move(database);
        c.server = std::move(server);
        return error_of([&] { test_device d(io.get_executor(), std::move(c)); });
    };
    auto bad_port = make(file.str(), "http://127.0.0.1:80800");
    CHECK(bad_port.code == errc::invalid_configuration);
    CHECK_THAT(bad_port.message, Contains("80800") && Contains("1 to 65535"));
    CHECK_FALSE(std::filesystem::exists(file.path)); // refused before the store was opened
    CHECK(make(file.str(), "127.0.0.1:8080").code == errc::invalid_configuration);
    auto https = make(file.str(), "https://sync.example.com");
    CHECK_THAT(https.message, Contains("TLS"));
    auto no_db = make("", "http://127.0.0.1:8080");
    CHECK(no_db.code == errc::invalid_configuration);
    CHECK_THAT(no_db.message, Contains("database"));
    CHECK_FALSE(make(file.str(), "http://127.0.0.1:8080/api"));
}

TEST_CASE("app api: a failed round names its cause", "[app-api][device][failure]") {
    asio::io_context io;
    unsigned short closed_port = 0;
    {
        tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
        closed_port = a.local_endpoint().port();
    }
    device_on_disk phone(io, closed_port, alice_token);
    phone->put(reservation("r1"));
    auto report = phone.sync();
    CHECK(report.error == errc::transport_failure);
    CHECK(report.error == condition::retry_later);
    CHECK_THAT(report.error_message, Contains("push to 'reservations'") &&
                                         Contains("cannot connect to 127.0.0.1:") &&
                                         Contains("refused"));
    CHECK(report.error_message.find("[offsync:") == std::string::npos);
    CHECK(phone->pending().dirty == 1); // nothing lost
}

TEST_CASE("app api: a device whose model list the server lacks fails its first round clearly",
          "[app-api][device][bad-input]") {
    http_world w;
    asio::io_context io;
    // A collection the server was never told of: its name is in the error, and the round
    // stops there rather than skipping it.
    temp_file file;
    sqlite_storage store(file.str());
    basic_replica replica(store);
    http_transport transport(io.get_executor(),
                             transport_config(w.port, std::make_shared<std::string>(alice_token)));
    basic_sync_engine engine(io.get_executor(), replica, transport);
    collection_schema unknown = schema_of<Reservation>();
    unknown.name = "notes";
    engine.add_collection(unknown, last_write_wins{});
    REQUIRE(!replica.put(unknown, "n1", to_json_object(reservation("n1"))));
    std::optional<sync_report> out;
    engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
    REQUIRE(run_until(io, [&] { return out.has_value(); }));
    CHECK(out->error == errc::unknown_collection);
    CHECK_THAT(out->error_message, Contains("notes"));
    CHECK(store.pending("notes").dirty == 1);
}

TEST_CASE("app api: typed conflicts show both sides and settle once", "[app-api][conflicts]") {
    http_world w;
    asio::io_context io;
    device_on_disk phone(io, w.port, alice_token), laptop(io, w.port, alice_token);
    phone->put(reservation("r1", "confirmed", 2));
    phone->put(reservation("r2", "confirmed", 2));
    REQUIRE(!phone.sync().error);
    REQUIRE(!laptop.sync().error);

    // Both edit party_size of both records; the phone pushes first.
    phone->put(reservation("r1", "confirmed", 3));
    phone->put(reservation("r2", "confirmed", 3));
    REQUIRE(!phone.sync().error);
    laptop->put(reservation("r1", "confirmed", 4));
    laptop->put(reservation("r2", "confirmed", 5));
    auto met = laptop.sync();
    REQUIRE(!met.error);
    CHECK(met.deferred == 2); // reservations ask the user

    auto conflicts = laptop->conflicts<Reservation>();
    REQUIRE(conflicts.size() == 2);
    CHECK(conflicts[0].key == "r1");
    REQUIRE(conflicts[0].mine);
    REQUIRE(conflicts[0].server);
    CHECK(conflicts[0].mine->party_size == 4);
    CHECK(conflicts[0].server->party_size == 3);
    CHECK(conflicts[0].changed_fields == std::vector<std::string>{"party_size"});
    CHECK(conflicts[0].server_version > 0);
    CHECK(conflicts[0].found_at.time_since_epoch().count() > 0);
    CHECK(laptop->conflicts<Landmark>().empty());

    laptop->resolve<Reservation>("r1", resolve_choice::keep_mine);
    auto merged = *conflicts[1].server;
    merged.notes = "merged by hand";
    laptop->resolve_merged(merged);

    SECTION("a conflict settled twice, or one that never was, is an error and changes nothing") {
        auto twice = error_of([&] { laptop->resolve<Reservation>("r1", resolve_choice::use_server); });
        CHECK(twice.code == errc::no_such_conflict);
        CHECK_THAT(twice.message, Contains("reservations/r1"));
        auto wrong_key = reservation("r9");
        CHECK(error_of([&] { laptop->resolve_merged(wrong_key); }).code == errc::no_such_conflict);
        CHECK(error_of([&] { laptop->drop_rejected<Reservation>("r1"); }).code == errc::not_parked);
        CHECK(laptop->get<Reservation>("r1")->party_size == 4);
    }

    REQUIRE(!laptop.sync().error);
    REQUIRE(!phone.sync().error);
    CHECK(phone->get<Reservation>("r1")->party_size == 4);
    CHECK(phone->get<Reservation>("r2")->notes == "merged by hand");
    CHECK(phone->conflicts<Reservation>().empty());
}

TEST_CASE("app api: typed rejections carry the server's reason until dropped",
          "[app-api][rejected]") {
    http_world w;
    asio::io_context io;
    device_on_disk phone(io, w.port, alice_token);
    REQUIRE(!phone.sync().error);
    auto dome = *phone->get<Landmark>(1);
    dome.name = "Renamed"; // the catalog is read-only to clients
    phone->put(dome);
    auto report = phone.sync();
    REQUIRE(!report.error);
    CHECK(report.rejected == 1);
    auto rejected = phone->rejected<Landmark>();
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].key == 1);
    CHECK(rejected[0].code == "read_only");
    CHECK_FALSE(rejected[0].message.empty());
    REQUIRE(rejected[0].mine);
    CHECK(rejected[0].mine->name == "Renamed");
    REQUIRE(rejected[0].server);
    CHECK(rejected[0].server->name == "Half Dome");
    phone->drop_rejected<Landmark>(1);
    CHECK(phone->rejected<Landmark>().empty());
    CHECK(phone->get<Landmark>(1)->name == "Half Dome");
    CHECK(error_of([&] { phone->drop_rejected<Landmark>(1); }).code == errc::not_parked);
}

namespace {
template <class Storage>
void check_queries(Storage& store) {
    basic_replica replica(store);
    for (int i = 0; i < 30; ++i) {
        auto r = reservation("r" + std::to_string(100 + i), i % 3 == 0 ? "cancelled" : "confirmed",
                             1 + i % 6);
        r.notes = i % 2 ? "window" : "";
        replica.put(r);
    }
    auto cancelled = replica.find(field(&Reservation::status) == "cancelled");
    CHECK(cancelled.size() == 10);
    auto big = replica.find(field(&Reservation::party_size) >= 5 &&
                            field(&Reservation::status) != "cancelled");
    for (const auto& r : big) {
        CHECK(r.party_size >= 5);
        CHECK(r.status == "confirmed");
    }
    CHECK(big.size() == 10);
    auto ranged = replica.find(field(&Reservation::party_size) > 2 &&
                               field(&Reservation::party_size) < 5);
    CHECK(ranged.size() == 10);
    CHECK(replica.find(field(&Reservation::party_size) < 1).empty());

    // Pages, in key order, that join up to the whole result without a gap or a repeat.
    std::vector<std::string> keys;
    page_request request{"", 4};
    for (int pages = 0; pages < 20; ++pages) {
        auto p = replica.find(field(&Reservation::status) == "confirmed", request);
        for (const auto& r : p.items) keys.push_back(r.id);
        if (p.next.empty()) break;
        CHECK(p.items.size() == 4);
        request.after = p.next;
    }
    CHECK(keys.size() == 20);
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());
    auto all = replica.template list<Reservation>(page_request{"r125", 100});
    CHECK(all.items.size() == 4);
    CHECK(all.next.empty());
    CHECK(replica.template list<Reservation>(page_request{"", 0}).items.empty());

    // A deleted record leaves every query.
    replica.template erase<Reservation>("r100");
    CHECK(replica.find(field(&Reservation::status) == "cancelled").size() == 9);
}
} // namespace

TEST_CASE("app api: typed queries and pages, on SQLite and in memory", "[app-api][query]") {
    SECTION("sqlite, served by a declared index") {
        temp_file file;
        sqlite_storage store(file.str(), {sqlite_durability::normal, 5000});
        store.create_index(&Reservation::party_size);
        store.create_index(&Reservation::party_size); // idempotent
        check_queries(store);
        // The declared index serves a range and an equality on its field; a field without
        // one is read through the primary key.
        auto plan = store.query_plan("reservations",
                                     (field(&Reservation::party_size) > 4 &&
                                      field(&Reservation::status) == "confirmed").spec());
        INFO(plan);
        CHECK_THAT(plan, Contains("USING INDEX offsync_index_reservations_party_size"));
        plan = store.query_plan("reservations", query(field(&Reservation::party_size) == 4).spec());
        CHECK_THAT(plan, Contains("USING INDEX offsync_index_reservations_party_size"));
        CHECK_THAT(store.query_plan("reservations", query(field(&Reservation::status) == "x").spec()),
                   Contains("PRIMARY KEY"));
        CHECK_THAT(plan, Contains("offsync_index_reservations_party_size"));
    }
    SECTION("memory") {
        memory_storage store;
        check_queries(store);
    }
}

TEST_CASE("app api: a query the store cannot run is refused and reads nothing",
          "[app-api][query][bad-input]") {
    temp_file file;
    sqlite_storage store(file.str(), {sqlite_durability::normal, 5000});
    query_spec spec;
    spec.conditions.push_back({"party_size) OR 1=1 --", compare_op::equal, 1});
    auto injected = error_of([&] { store.find("reservations", spec, "", 10); });
    CHECK(injected.code == errc::invalid_field);
    spec.conditions = {{"notes", compare_op::equal, nullptr}};
    CHECK(error_of([&] { store.find("reservations", spec, "", 10); }).code == errc::invalid_field);
    CHECK(error_of([&] { store.create_index("reservations", "a.b"); }).code == errc::invalid_field);
}

TEST_CASE("app api: a stored record that no longer decodes names its collection, key and field",
          "[app-api][bad-input]") {
    temp_file file;
    sqlite_storage store(file.str(), {sqlite_durability::normal, 5000});
    basic_replica replica(store);
    asio::io_context io;
    collected<Reservation> seen;
    auto sub = replica.subscribe<Reservation>(io.get_executor(), seen.callback());
    replica.put(reservation("good"));
    drain(io);
    {
        // Written by another program: party_size is text.
        auto txn = store.begin();
        local_record rec;
        rec.value = to_json_object(reservation("bad"));
        rec.value["party_size"] = "many";
        rec.base_version = 1;
        txn.save("reservations", "bad", rec);
        txn.commit();
    }
    auto failure = error_of([&] { replica.get<Reservation>("bad"); });
    CHECK(failure.code == errc::undecodable_record);
    CHECK_THAT(failure.message, Contains("reservations/bad") && Contains("party_size"));
    CHECK(error_of([&] { replica.list<Reservation>(); }).code == errc::undecodable_record);
    CHECK(replica.get<Reservation>("good")); // the others still read
    {
        auto txn = store.begin();
        CHECK(txn.load("reservations", "bad")->value.at("party_size") == "many"); // untouched
    }
    // A listener hears of such a record with the error, not with a made-up value.
    auto bad_value = to_json_object(reservation("bad"));
    bad_value["party_size"] = "many";
    replica.changes().publish({"reservations", {{"bad", bad_value}}});
    drain(io);
    REQUIRE(!seen.deliveries.empty());
    const auto& heard = seen.deliveries.back();
    REQUIRE(heard.size() == 1);
    CHECK(heard[0].key == "bad");
    CHECK_FALSE(heard[0].value);
    CHECK(heard[0].error.code == errc::undecodable_record);
    CHECK_THAT(heard[0].error.message, Contains("party_size"));

    // Repaired through the JSON level, it reads again.
    REQUIRE(!replica.put(schema_of<Reservation>(), "bad", to_json_object(reservation("bad"))));
    drain(io);
    CHECK(seen.latest().at("bad")->party_size == 2);
    CHECK(replica.get<Reservation>("bad")->party_size == 2);
}

TEST_CASE("app api: listeners hear local edits, pulls and deletions, coalesced",
          "[app-api][listeners]") {
    http_world w;
    asio::io_context io;
    device_on_disk phone(io, w.port, alice_token), laptop(io, w.port, alice_token);
    collected<Reservation> on_laptop, on_phone;
    auto sub = laptop->subscribe<Reservation>(on_laptop.callback());
    auto phone_sub = phone->subscribe<Reservation>(on_phone.callback());

    // Three edits of one record and one of another before the app's loop runs: one delivery,
    // each key once, at its latest value.
    phone->put(reservation("r1", "confirmed", 2));
    phone->put(reservation("r1", "confirmed", 3));
    phone->put(reservation("r2"));
    phone->put(reservation("r1", "confirmed", 4));
    drain(io);
    REQUIRE(on_phone.deliveries.size() == 1);
    REQUIRE(on_phone.deliveries[0].size() == 2);
    CHECK(on_phone.deliveries[0][0].key == "r1");
    CHECK(on_phone.deliveries[0][0].value->party_size == 4);
    CHECK(on_phone.deliveries[0][1].key == "r2");

    REQUIRE(!phone.sync().error);
    REQUIRE(!laptop.sync().error);
    drain(io);
    auto latest = on_laptop.latest();
    REQUIRE(latest.size() == 2);
    CHECK(latest.at("r1")->party_size == 4);

    phone->erase<Reservation>("r2");
    REQUIRE(!phone.sync().error);
    on_laptop.deliveries.clear();
    REQUIRE(!laptop.sync().error);
    drain(io);
    latest = on_laptop.latest();
    REQUIRE(latest.count("r2"));
    CHECK_FALSE(latest.at("r2"));
    CHECK(latest.count("r1") == 0); // nothing else changed

    // Another collection's listener hears nothing of reservations.
    collected<Landmark> landmarks;
    auto other = laptop->subscribe<Landmark>(landmarks.callback());
    laptop->put(reservation("r3"));
    drain(io);
    CHECK(landmarks.deliveries.empty());
}

TEST_CASE("app api: a query listener hears records enter and leave its results",
          "[app-api][listeners]") {
    memory_storage store;
    basic_replica replica(store);
    asio::io_context io;
    collected<Reservation> seen;
    auto sub = replica.subscribe<Reservation>(io.get_executor(),
                                              field(&Reservation::status) == "confirmed",
                                              seen.callback());
    replica.put(reservation("a", "confirmed"));
    replica.put(reservation("b", "cancelled")); // never in the results: not reported
    drain(io);
    REQUIRE(seen.deliveries.size() == 1);
    REQUIRE(seen.deliveries[0].size() == 1);
    CHECK(seen.deliveries[0][0].key == "a");

    replica.put(reservation("a", "cancelled")); // leaves
    drain(io);
    REQUIRE(seen.deliveries.size() == 2);
    CHECK(seen.deliveries[1][0].key == "a");
    CHECK_FALSE(seen.deliveries[1][0].value);
    replica.erase<Reservation>("b"); // was never in: nothing
    drain(io);
    CHECK(seen.deliveries.size() == 2);
}

TEST_CASE("app api: a callback may use the store, unsubscribe itself, and be one of two",
          "[app-api][listeners]") {
    temp_file file;
    sqlite_storage store(file.str(), {sqlite_durability::normal, 5000});
    basic_replica replica(store);
    asio::io_context io;
    int calls = 0;
    subscription self;
    self = replica.subscribe<Reservation>(io.get_executor(), [&](auto changes) {
        ++calls;
        // Reads and writes the store from inside the delivery: no lock is held.
        CHECK(replica.get<Reservation>(changes.front().key));
        replica.put(reservation("written-from-callback"));
        self.unsubscribe();
        self.unsubscribe(); // twice is harmless
    });
    collected<Reservation> second;
    auto two = replica.subscribe<Reservation>(io.get_executor(), second.callback());
    replica.put(reservation("a"));
    drain(io);
    replica.put(reservation("b"));
    drain(io);
    CHECK(calls == 1);
    CHECK_FALSE(self.active());
    // The second subscription heard everything, the callback's own write included.
    auto latest = second.latest();
    CHECK(latest.count("a"));
    CHECK(latest.count("b"));
    CHECK(latest.count("written-from-callback"));
}

TEST_CASE("app api: unsubscribing from another thread waits for a running delivery",
          "[app-api][listeners]") {
    memory_storage store;
    basic_replica replica(store);
    asio::io_context io;
    std::atomic<bool> inside{false}, release{false}, finished{false};
    auto sub = replica.subscribe<Reservation>(io.get_executor(), [&](auto) {
        inside = true;
        while (!release) std::this_thread::sleep_for(1ms);
        finished = true;
    });
    replica.put(reservation("a"));
    std::thread runner([&] { io.run(); });
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!inside && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    REQUIRE(inside);
    std::thread releaser([&] {
        std::this_thread::sleep_for(50ms);
        release = true;
    });
    sub.unsubscribe(); // returns only once the delivery has ended
    CHECK(finished);
    releaser.join();
    runner.join();
    replica.put(reservation("b"));
    drain(io);
}

TEST_CASE("app api: a change stream waits Asio style, coalesces, cancels and closes",
          "[app-api][listeners]") {
    memory_storage store;
    basic_replica replica(store);
    asio::io_context io;
    auto stream = replica.watch<Reservation>(io.get_executor());

    // Changes before the wait are kept and coalesced.
    replica.put(reservation("a", "confirmed", 2));
    replica.put(reservation("a", "confirmed", 5));
    drain(io);
    std::optional<std::pair<error_code, std::vector<record_change<Reservation>>>> got;
    stream.async_wait([&](error_code ec, auto c) { got.emplace(ec, std::move(c)); });
    drain(io);
    REQUIRE(got);
    CHECK(!got->first);
    REQUIRE(got->second.size() == 1);
    CHECK(got->second[0].value->party_size == 5);

    // A coroutine waits for the next one.
    std::optional<std::size_t> in_coroutine;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto [ec, changes] = co_await stream.async_wait(asio::as_tuple(asio::use_awaitable));
        if (!ec) in_coroutine = changes.size();
    }, asio::detached);
    drain(io);
    CHECK_FALSE(in_coroutine);
    // A second wait while one is pending is refused at once.
    std::optional<error_code> second;
    stream.async_wait([&](error_code ec, auto) { second = ec; });
    drain(io);
    CHECK(second == asio::error::in_progress);
    replica.put(reservation("b"));
    drain(io);
    CHECK(in_coroutine == 1u);

    // Cancellation through the handler's slot.
    asio::cancellation_signal cancel;
    std::optional<error_code> cancelled;
    stream.async_wait(asio::bind_cancellation_slot(
        cancel.slot(), [&](error_code ec, auto) { cancelled = ec; }));
    drain(io);
    cancel.emit(asio::cancellation_type::terminal);
    drain(io);
    CHECK(cancelled == asio::error::operation_aborted);

    // Closing ends a pending wait; nothing arrives after.
    std::optional<error_code> closed;
    stream.async_wait([&](error_code ec, auto) { closed = ec; });
    drain(io);
    stream.close();
    drain(io);
    CHECK(closed == asio::error::operation_aborted);
    CHECK_FALSE(stream.is_open());
    replica.put(reservation("c"));
    std::optional<error_code> after_close;
    stream.async_wait([&](error_code ec, auto) { after_close = ec; });
    drain(io);
    CHECK(after_close == asio::error::operation_aborted);
}

TEST_CASE("app api: token file errors say which line and why", "[app-api][bad-input]") {
    std::istringstream in("# tokens\n0123456789abcdef alice\nshort bob\n");
    auto e = error_of([&] { server::token_file_authenticator::parse(in, "tokens.txt"); });
    CHECK(e.code == errc::invalid_configuration);
    CHECK_THAT(e.message, Contains("tokens.txt:3") && Contains("shorter than 16"));
    std::ifstream missing("/nonexistent/tokens.txt");
    auto unread = error_of([&] { server::token_file_authenticator::parse(missing, "/nonexistent/tokens.txt"); });
    CHECK(unread.code == errc::invalid_configuration);
    CHECK_THAT(unread.message, Contains("cannot read /nonexistent/tokens.txt"));
}

TEST_CASE("app api: a token file names its users once each, for sharing", "[app-api][sharing]") {
    std::istringstream in("# tokens\n0123456789abcdef bob\nfedcba9876543210 alice\n"
                          "0123456789abcdeg bob\n");
    const auto auth = server::token_file_authenticator::parse(in, "tokens.txt");
    CHECK(auth.size() == 3);
    CHECK(auth.users() == std::vector<std::string>{"alice", "bob"});
    std::istringstream none("# no users yet\n");
    CHECK(server::token_file_authenticator::parse(none).users().empty());
}

TEST_CASE("app api: one subscription's deliveries never overlap on an executor of two threads",
          "[app-api][listeners]") {
    memory_storage store;
    basic_replica replica(store);
    asio::io_context app;
    auto work = asio::make_work_guard(app);
    std::atomic<int> inside{0}, overlaps{0};
    std::atomic<std::size_t> heard{0};
    std::mutex mutex;
    std::map<std::string, int> latest; // party size by key, as the callback last heard it
    auto sub = replica.subscribe<Reservation>(app.get_executor(), [&](const auto& changes) {
        if (inside.fetch_add(1) != 0) ++overlaps;
        for (const auto& c : changes) {
            std::lock_guard lock(mutex);
            latest[c.key] = c.value ? c.value->party_size : -1;
        }
        heard += changes.size();
        std::this_thread::yield();
        inside.fetch_sub(1);
    });
    std::thread first([&] { app.run(); }), second([&] { app.run(); });
    for (int i = 0; i < 600; ++i)
        replica.put(reservation("r" + std::to_string(i % 50), "confirmed", 1 + i % 7));
    // The last write of each key is heard last: deliveries keep the order of commits.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    auto settled = [&] {
        std::lock_guard lock(mutex);
        if (latest.size() != 50) return false;
        for (int k = 0; k < 50; ++k)
            if (latest["r" + std::to_string(k)] != 1 + (550 + k) % 7) return false;
        return true;
    };
    while (!settled() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    sub.unsubscribe();
    work.reset();
    first.join();
    second.join();
    CHECK(overlaps == 0);
    CHECK(settled());
    CHECK(heard >= 50u);
}
