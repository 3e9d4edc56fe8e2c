// The HTTP server and the HTTP transport, end to end over 127.0.0.1: the seed's behaviours,
// authentication and scope, bad input, limits, timeouts, cancellation and server restarts.
// Every test runs a real server on an ephemeral port and bounds every wait.
#include "support/http.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/transport/http.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <deque>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

using namespace offsync_test;
using namespace std::chrono_literals;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;


// ---------------------------------------------------------------------------------------------
// The seed's behaviours over HTTP

TEST_CASE("http: a favorite syncs over HTTP and stays the user's own", "[http]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    auto first = phone.sync();
    INFO(first.error_message);
    REQUIRE(!first.error);
    CHECK(first.pulled == 2);
    auto dome = *phone.replica.get<Landmark>(1);
    dome.is_favorite = true;
    phone.replica.put(dome);

    auto report = phone.sync();
    CHECK(!report.error);
    CHECK(report.applied == 1);
    CHECK(phone.replica.pending<Landmark>().dirty == 0);
    CHECK(w.service.get("alice", "landmarks", "1")->value.at("is_favorite") == true);
    CHECK(w.service.get("bob", "landmarks", "1")->value.at("is_favorite") == false);
    // One keep-alive connection carried the whole conversation.
    CHECK(phone.transport.connects() == 1);

    http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock());
    CHECK(!laptop.sync().error);
    CHECK(laptop.replica.get<Landmark>(1)->is_favorite);
    http_client bobs(io, w.port, bob_token, w.clock.as_wall_clock());
    CHECK(!bobs.sync().error);
    CHECK(!bobs.replica.get<Landmark>(1)->is_favorite);
}

TEST_CASE("http: a reservation conflict between two devices is parked for the user", "[http]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock());
    phone.replica.put(reservation("r-1"));
    REQUIRE(!phone.sync().error);
    REQUIRE(!laptop.sync().error);
    REQUIRE(laptop.replica.get<Reservation>("r-1"));

    phone.replica.put(reservation("r-1", "cancelled", 3));
    laptop.replica.put(reservation("r-1", "confirmed", 6));
    CHECK(!phone.sync().error);
    auto report = laptop.sync();
    CHECK(!report.error);
    CHECK(report.deferred == 1);
    auto conflicts = laptop.replica.conflicts("reservations");
    REQUIRE(conflicts.size() == 1);
    REQUIRE(conflicts[0].server);
    CHECK(conflicts[0].server->value.at("status") == "cancelled");
    CHECK(laptop.replica.get<Reservation>("r-1")->party_size == 6);

    laptop.replica.resolve<Reservation>("r-1", resolve_choice::keep_mine);
    auto settled = laptop.sync();
    CHECK(!settled.error);
    CHECK(settled.conflict_count() == 0);
    CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 6);
    CHECK(!phone.sync().error);
    CHECK(phone.replica.get<Reservation>("r-1")->party_size == 6);
}

TEST_CASE("http: last-write-wins and server-wins settle conflicts over HTTP", "[http]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    SECTION("server_wins: the local change is dropped and reported") {
        http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock(), {},
                           [](http_engine& e) { e.add_collection<Reservation>(server_wins{}); });
        phone.replica.put(reservation("r-1"));
        REQUIRE(!phone.sync().error);
        REQUIRE(!laptop.sync().error);
        phone.replica.put(reservation("r-1", "cancelled", 3));
        laptop.replica.put(reservation("r-1", "confirmed", 6));
        CHECK(!phone.sync().error);
        auto report = laptop.sync();
        CHECK(!report.error);
        CHECK(report.took_server == 1);
        REQUIRE(report.discarded.size() == 1);
        CHECK(laptop.replica.get<Reservation>("r-1")->party_size == 3);
        CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 3);
    }
    SECTION("last_write_wins: the later edit wins, whichever device pushes first") {
        auto lww = [](http_engine& e) { e.add_collection<Reservation>(last_write_wins{}); };
        http_client first(io, w.port, alice_token, w.clock.as_wall_clock(), {}, lww);
        http_client second(io, w.port, alice_token, w.clock.as_wall_clock(), {}, lww);
        first.replica.put(reservation("r-1"));
        REQUIRE(!first.sync().error);
        REQUIRE(!second.sync().error);
        second.replica.put(reservation("r-1", "confirmed", 6)); // earlier edit
        w.clock.now_ms += 1000;
        first.replica.put(reservation("r-1", "confirmed", 3)); // later edit, pushed first
        CHECK(!first.sync().error);
        auto report = second.sync();
        CHECK(!report.error);
        CHECK(report.took_server == 1);
        CHECK(report.discarded.size() == 1);
        CHECK(second.replica.get<Reservation>("r-1")->party_size == 3);

        first.replica.put(reservation("r-1", "confirmed", 5));
        w.clock.now_ms += 1000;
        second.replica.put(reservation("r-1", "confirmed", 8)); // now the later one
        CHECK(!first.sync().error);
        auto again = second.sync();
        CHECK(again.kept_local == 1); // re-pushed over the server's version
        CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 8);
        CHECK(!first.sync().error);
        CHECK(first.replica.get<Reservation>("r-1")->party_size == 8);
    }
}

TEST_CASE("http: a delete travels as a tombstone", "[http]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock());
    phone.replica.put(reservation("r-1"));
    REQUIRE(!phone.sync().error);
    REQUIRE(!laptop.sync().error);
    phone.replica.erase<Reservation>("r-1");
    CHECK(!phone.sync().error);
    CHECK(w.service.get("alice", "reservations", "r-1")->deleted);
    CHECK(!laptop.sync().error);
    CHECK(!laptop.replica.get<Reservation>("r-1"));
}

TEST_CASE("http: a pull larger than one page pages through the feed", "[http]") {
    http_world w;
    for (int i = 0; i < 250; ++i)
        w.service.admin_put("reservations", to_json_object(reservation("r-" + std::to_string(i))),
                            "alice");
    asio::io_context io;
    engine_config config;
    config.pull_page_size = 100;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock(), config);
    auto report = phone.sync();
    CHECK(!report.error);
    CHECK(report.pulled == 252);
    CHECK(phone.replica.list<Reservation>().size() == 250);
    // landmarks: one page; reservations: three pages.
    CHECK(phone.transport.requests() == 4);
    CHECK(phone.transport.connects() == 1);
    auto again = phone.sync();
    CHECK(again.pulled == 0);
}

TEST_CASE("http: requests and answers larger than one read arrive whole, small ones follow",
          "[http]") {
    // Each end reads a large body in chunks of its buffer's room; the server gives the room back
    // once its connection is idle. Bodies of several chunks must arrive whole, and the same
    // connection must go on carrying small exchanges.
    http_world w;
    asio::io_context io;
    engine_config config;
    config.push_batch_size = 1000;
    config.first_push_batch_size = 1000;
    config.pull_page_size = 1000;
    config.first_pull_page_size = 1000;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock(), config);
    const std::string long_note(200, 'n'); // 900 records: a push body of more than 200 KiB
    for (int i = 0; i < 900; ++i) {
        auto r = reservation("big-" + std::to_string(i));
        r.notes = long_note + std::to_string(i);
        phone.replica.put(r);
    }
    auto pushed = phone.sync();
    INFO(pushed.error_message);
    REQUIRE(!pushed.error);
    CHECK(pushed.applied == 900);
    CHECK(w.service.get("alice", "reservations", "big-899")->value.at("notes").as_string() ==
          long_note + "899");

    http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock(), config);
    auto pulled = laptop.sync(); // one page of 900 full records
    REQUIRE(!pulled.error);
    CHECK(laptop.replica.list<Reservation>().size() == 900);
    CHECK(laptop.replica.get<Reservation>("big-450")->notes == long_note + "450");

    // Small exchanges on the same connections: an edit each way, then nothing.
    auto one = *laptop.replica.get<Reservation>("big-7");
    one.status = "cancelled";
    laptop.replica.put(one);
    CHECK(laptop.sync().applied == 1);
    CHECK(phone.sync().pulled >= 1);
    CHECK(phone.replica.get<Reservation>("big-7")->status == "cancelled");
    CHECK(phone.sync().pulled == 0);
    CHECK(phone.transport.connects() == 1);
    CHECK(laptop.transport.connects() == 1);
}

// ---------------------------------------------------------------------------------------------
// Authentication and scope

TEST_CASE("http: requests without a token or with a wrong one are refused", "[http][security]") {
    http_world w;
    const auto before = snapshot(w.service);
    const std::string push = push_body(
        "c1", {upsert(1, "reservations", "r-1", 0, to_json_object(reservation("r-1")))});
    for (std::string token : {std::string(), std::string("wrong-token-0123456789")}) {
        INFO("token: " << token);
        for (const auto& wire :
             {request("POST", "/v1/sync/push", token, push),
              request("GET", "/v1/sync/pull?collection=landmarks", token),
              request("GET", "/v1/reservations", token), request("GET", "/v1/landmarks/1", token),
              request("PUT", "/v1/reservations/r-1", token, R"({"party_size": 3})"),
              request("DELETE", "/v1/reservations/r-1", token),
              request("GET", "/no/such/route", token)}) {
            auto a = raw(w.port, wire);
            REQUIRE(!a.ec);
            CHECK(a.status() == 401);
            CHECK(a.code() == "unauthorized");
            CHECK(a.res[http::field::www_authenticate] == "Bearer");
        }
    }
    // A malformed Authorization header is no token either.
    auto basic = raw(w.port, request("GET", "/v1/landmarks", "", "", "",
                                     "Authorization: Basic YWxpY2U6c2VjcmV0\r\n"));
    CHECK(basic.status() == 401);
    CHECK(snapshot(w.service) == before);

    // Health needs no token.
    auto health = raw(w.port, request("GET", "/healthz", ""));
    CHECK(health.status() == 200);
    CHECK(health.body().at("status") == "ok");

    // The engine reports the refusal and keeps its changes.
    asio::io_context io;
    http_client intruder(io, w.port, "wrong-token-0123456789", w.clock.as_wall_clock());
    intruder.replica.put(reservation("r-9"));
    auto report = intruder.sync();
    CHECK(report.error == errc::unauthorized);
    CHECK(intruder.replica.pending<Reservation>().dirty == 1);
    CHECK(intruder.transport.last_error().code == errc::unauthorized);
    CHECK(snapshot(w.service) == before);
}

TEST_CASE("http: a refused token is refreshed once and the request retried", "[http][security]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    int refreshes = 0;
    bool expired = true;
    auto cfg = transport_config(w.port, phone.token);
    cfg.token_provider = [&](bool refresh) {
        if (refresh) {
            ++refreshes;
            expired = false;
        }
        return expired ? std::string("expired-token-0123456789") : alice_token;
    };
    http_transport transport(io.get_executor(), cfg);
    std::optional<std::pair<error_code, pull_response>> got;
    pull_request pull_landmarks{"landmarks", 0, 100};
    transport.async_pull(pull_landmarks,
                         [&](error_code ec, pull_response r) { got.emplace(ec, std::move(r)); });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(!got->first);
    CHECK(got->second.changes.size() == 2);
    CHECK(refreshes == 1);
    CHECK(transport.requests() == 2);

    SECTION("a refreshed token that is refused too ends the operation: one retry only") {
        cfg.token_provider = [&](bool refresh) {
            refreshes += refresh;
            return std::string("expired-token-0123456789");
        };
        http_transport stuck(io.get_executor(), cfg);
        got.reset();
        refreshes = 0;
        stuck.async_pull(pull_landmarks,
                         [&](error_code ec, pull_response r) { got.emplace(ec, std::move(r)); });
        REQUIRE(run_until(io, [&] { return got.has_value(); }));
        CHECK(got->first == errc::unauthorized);
        CHECK(refreshes == 1);
        CHECK(stuck.requests() == 2);
    }
}

TEST_CASE("http: one user cannot read or write another's reservations", "[http][security]") {
    http_world w;
    asio::io_context io;
    http_client alice(io, w.port, alice_token, w.clock.as_wall_clock());
    auto mine = reservation("r-1", "confirmed", 2);
    mine.notes = "alice's";
    alice.replica.put(mine);
    REQUIRE(!alice.sync().error);
    const auto alices = json::serialize(to_json(*w.service.get("alice", "reservations", "r-1")));

    SECTION("through sync") {
        http_client bob(io, w.port, bob_token, w.clock.as_wall_clock());
        CHECK(!bob.sync().error);
        CHECK(bob.replica.list<Reservation>().empty()); // invisible
        // Writing the same id creates bob's own record; alice's is untouched.
        auto theirs = reservation("r-1", "cancelled", 9);
        bob.replica.put(theirs);
        CHECK(!bob.sync().error);
        CHECK(w.service.get("bob", "reservations", "r-1")->value.at("party_size") == 9);
        // A raw push naming alice's record with a stale-looking base is still bob's record.
        auto a = raw(w.port,
                     request("POST", "/v1/sync/push", bob_token,
                             push_body("bob-raw", {upsert(1, "reservations", "r-1", 1,
                                                          {{"notes", "bob was here"}})})));
        CHECK(a.status() == 200);
        CHECK(json::serialize(to_json(*w.service.get("alice", "reservations", "r-1"))) ==
              alices);
        CHECK(!alice.sync().error);
        CHECK(alice.replica.get<Reservation>("r-1")->notes == "alice's");
    }
    SECTION("through REST") {
        auto get = raw(w.port, request("GET", "/v1/reservations/r-1", bob_token));
        CHECK(get.status() == 404);
        CHECK(get.code() == "not_found");
        auto list = raw(w.port, request("GET", "/v1/reservations", bob_token));
        CHECK(list.status() == 200);
        CHECK(list.body().at("records").as_array().empty());
        auto del = raw(w.port, request("DELETE", "/v1/reservations/r-1", bob_token));
        CHECK(del.status() == 404);
        auto put = raw(w.port, request("PUT", "/v1/reservations/r-1", bob_token,
                                       R"({"notes": "bob was here"})", "application/json",
                                       "If-Match: \"1\"\r\n"));
        CHECK(put.status() == 200); // bob's own r-1
        CHECK(put.body().at("value").at("notes") == "bob was here");
        CHECK(json::serialize(to_json(*w.service.get("alice", "reservations", "r-1"))) ==
              alices);
        auto alice_get = raw(w.port, request("GET", "/v1/reservations/r-1", alice_token));
        CHECK(alice_get.body().at("value").at("notes") == "alice's");
    }
}

TEST_CASE("http: a client writing a read-only landmark field is refused", "[http][security]") {
    http_world w;
    const auto before = snapshot(w.service);

    SECTION("through REST") {
        auto a = raw(w.port, request("PUT", "/v1/landmarks/1", alice_token, R"({"name": "Mine"})"));
        CHECK(a.status() == 403);
        CHECK(a.code() == "read_only");
        auto d = raw(w.port, request("DELETE", "/v1/landmarks/1", alice_token));
        CHECK(d.status() == 403);
        auto n = raw(w.port, request("PUT", "/v1/landmarks/99", alice_token,
                                     R"({"is_favorite": true})"));
        CHECK(n.status() == 404);
        CHECK(snapshot(w.service) == before);
        // The per-user field is writable, and only for the writer.
        auto fav = raw(w.port, request("PUT", "/v1/landmarks/1", alice_token,
                                       R"({"is_favorite": true})"));
        CHECK(fav.status() == 200);
        CHECK(fav.body().at("value").at("is_favorite") == true);
        CHECK(w.service.get("bob", "landmarks", "1")->value.at("is_favorite") == false);
        CHECK(w.service.get("alice", "landmarks", "1")->value.at("name") == "Half Dome");
    }
    SECTION("through sync") {
        asio::io_context io;
        http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
        REQUIRE(!phone.sync().error);
        auto dome = *phone.replica.get<Landmark>(1);
        dome.name = "My Dome";
        phone.replica.put(dome);
        auto report = phone.sync();
        CHECK(!report.error);
        CHECK(report.rejected == 1);
        CHECK(w.service.get("alice", "landmarks", "1")->value.at("name") == "Half Dome");
        CHECK(snapshot(w.service) == before);
    }
}

// ---------------------------------------------------------------------------------------------
// REST

TEST_CASE("http: a grouped record leaks to nobody outside its group, on any route",
          "[http][security][sharing]") {
    // The access matrix over the real server: every route, as a member (alice), a former member
    // (bob), a user who never was one (carol) and another group's member (dave). Whatever the
    // route answers the three outsiders names no group of alice's, no writer of hers and no
    // record they may not see; nothing they send changes anything.
    manual_clock clock;
    server::service_config config;
    config.clock = clock.as_wall_clock();
    server::sync_service service(config);
    service.add_collections(collections<List, Item>{});
    const std::map<std::string, std::string> token_of{{"alice", "alice-matrix-token-0001"},
                                                      {"bob", "bob-matrix-token-00002"},
                                                      {"carol", "carol-matrix-token-003"},
                                                      {"dave", "dave-matrix-token-0004"}};
    std::string lines;
    for (const auto& [user, token] : token_of) {
        service.add_user(user);
        lines += token + " " + user + "\n";
    }
    auto write = [&](const char* user, const char* client, mutation m) {
        push_request request{client, {std::move(m)}};
        push_response response;
        REQUIRE_FALSE(service.push(user, request, response));
        REQUIRE(response.results[0].status == mutation_status::applied);
        return response.results[0].version;
    };
    write("alice", "alice-phone",
          upsert(1, "lists", "home", 0, {{"id", "home"}, {"title", "Home"},
                                          {"members", json::array{"alice", "bob"}}}));
    const auto h1 = write("alice", "alice-phone",
                          upsert(2, "items", "h-1", 0,
                                 {{"id", "h-1"}, {"list_id", "home"}, {"name", "secret bread"}}));
    const auto h2 = write("alice", "alice-phone",
                          upsert(3, "items", "h-2", 0,
                                 {{"id", "h-2"}, {"list_id", "home"}, {"name", "secret jam"}}));
    write("dave", "dave-phone",
          upsert(1, "lists", "work", 0, {{"id", "work"}, {"title", "Work"},
                                          {"members", json::array{"dave"}}}));
    write("dave", "dave-phone",
          upsert(2, "items", "w-1", 0, {{"id", "w-1"}, {"list_id", "work"}, {"name", "pens"}}));
    REQUIRE_FALSE(service.revoke("home", "bob"));
    auto gone = upsert(4, "items", "h-2", h2, {});
    gone.op = mutation_op::remove;
    write("alice", "alice-phone", gone); // deleted after bob left

    asio::io_context io;
    std::istringstream tokens(lines);
    server::http_server srv(io.get_executor(), service, server::token_file_authenticator::parse(tokens),
                            test_server_config());
    srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    const auto port = srv.local_endpoint().port();
    std::thread thread([&] { io.run_for(std::chrono::seconds(60)); });
    struct stop_on_exit { // a failed REQUIRE must not leave the thread joinable
        server::http_server& srv;
        std::thread& thread;
        ~stop_on_exit() {
            srv.async_shutdown([](error_code) {});
            thread.join();
        }
    } stopper{srv, thread};

    auto state = [&] {
        std::string out = std::to_string(service.last_version());
        for (const char* coll : {"lists", "items"}) {
            std::vector<change> all;
            REQUIRE_FALSE(service.list("alice", coll, all));
            for (const auto& c : all) out += '\n' + json::serialize(to_json(c));
        }
        return out + "\n" + json::serialize(json::value_from(service.members("home")));
    };
    const auto before = state();
    // Nothing an outsider is answered may name these.
    const std::vector<std::string> secrets{"\"home\"", "secret", "alice", "Home"};
    using strings_of = std::vector<std::string>;

    for (const std::string user : {"bob", "carol", "dave"}) {
        INFO(user);
        const auto& token = token_of.at(user);
        std::deque<raw_answer> answers; // a deque: ask() hands out references that must stay valid
        auto ask = [&](std::string wire) -> const raw_answer& {
            answers.push_back(raw(port, std::move(wire)));
            REQUIRE_FALSE(answers.back().ec);
            return answers.back();
        };
        // Pull: only what the user may see; bob is told h-1 and h-2 are gone, nothing more.
        const auto& items = ask(request("GET", "/v1/sync/pull?collection=items&since=0&limit=100", token));
        CHECK(items.status() == 200);
        std::vector<std::string> ids;
        const auto items_body = items.body(); // body() parses a copy: keep it alive
        for (const auto& c : items_body.at("changes").as_array()) {
            ids.push_back(std::string(c.at("id").as_string()));
            if (user == "bob") {
                CHECK(c.at("deleted") == true);
                CHECK(c.at("value").as_object().empty());
                CHECK(c.at("stamp").at("node") == "");
            }
        }
        std::sort(ids.begin(), ids.end());
        CHECK(ids == (user == "bob"    ? strings_of{"h-1", "h-2"}
                      : user == "dave" ? strings_of{"w-1"}
                                       : strings_of{}));
        const auto lists = raw(port, request("GET", "/v1/sync/pull?collection=lists&since=0&limit=100", token));
        CHECK(lists.status() == 200);
        const auto lists_body = lists.body();
        const auto& list_changes = lists_body.at("changes").as_array();
        if (user == "bob") { // the list he was taken off, as a removal
            REQUIRE(list_changes.size() == 1);
            CHECK(list_changes[0].at("id") == "home");
            CHECK(list_changes[0].at("deleted") == true);
            CHECK(list_changes[0].at("value").as_object().empty());
            CHECK(list_changes[0].at("stamp").at("node") == "");
        } else {
            CHECK(list_changes.size() == (user == "dave" ? 1u : 0u));
            answers.push_back(lists);
        }
        // REST reads.
        const auto& listed = ask(request("GET", "/v1/items", token));
        CHECK(listed.status() == 200);
        CHECK(listed.body().at("records").as_array().size() == (user == "dave" ? 1u : 0u));
        for (const char* id : {"h-1", "h-2"}) {
            const auto& one = ask(request("GET", std::string("/v1/items/") + id, token));
            CHECK(one.status() == 404);
            CHECK(one.code() == "not_found");
        }
        CHECK(ask(request("GET", "/v1/lists/home", token)).status() == 404);
        // REST writes: a patch, a whole record naming the group, a delete.
        const auto& patch = ask(request("PUT", "/v1/items/h-1", token, R"({"name": "mine now"})"));
        CHECK(patch.status() == 403);
        CHECK(patch.code() == "forbidden");
        CHECK_FALSE(patch.body().as_object().contains("server"));
        const auto& whole = ask(request("PUT", "/v1/items/h-1", token,
                                        R"({"id": "h-1", "list_id": "home", "name": "x"})"));
        CHECK(whole.status() == 403);
        // A record deleted out of their sight answers as an id that never existed.
        const auto& patch_gone = ask(request("PUT", "/v1/items/h-2", token, R"({"name": "back"})"));
        const auto& patch_never = ask(request("PUT", "/v1/items/n-0", token, R"({"name": "back"})"));
        CHECK(patch_gone.status() == patch_never.status());
        CHECK(patch_gone.code() == patch_never.code());
        CHECK(ask(request("DELETE", "/v1/items/h-1", token)).status() == 404);
        CHECK(ask(request("DELETE", "/v1/items/h-2", token)).status() == 404);
        CHECK(ask(request("PUT", "/v1/lists/home", token,
                          R"({"members": ["alice", "bob", "carol", "dave"]})"))
                  .status() == 403);
        // Push: edits, deletes, a new item in the group, the membership record.
        auto edit = upsert(1, "items", "h-1", h1, {{"name", "mine now"}});
        auto erase = upsert(2, "items", "h-1", h1, {});
        erase.op = mutation_op::remove;
        auto planted = upsert(3, "items", "p-1", 0, {{"id", "p-1"}, {"list_id", "home"}});
        auto join = upsert(4, "lists", "home", 1, {{"members", json::array{"alice", user}}});
        auto erase_gone = upsert(5, "items", "h-2", h2, {});
        erase_gone.op = mutation_op::remove;
        const auto& pushed = ask(request("POST", "/v1/sync/push", token,
                                         push_body(user + "-raw", {edit, erase, planted, join,
                                                                   erase_gone})));
        REQUIRE(pushed.status() == 200);
        const auto pushed_body = pushed.body();
        const auto& results = pushed_body.at("results").as_array();
        REQUIRE(results.size() == 5);
        for (std::size_t i = 0; i < 4; ++i) {
            INFO(i);
            CHECK(results[i].at("status") == "rejected");
            CHECK(results[i].at("error").at("code") == "forbidden");
            CHECK_FALSE(results[i].as_object().contains("server"));
        }
        CHECK(results[4].at("status") == "applied"); // nothing there for them: nothing to do
        for (const auto& a : answers)
            for (const auto& secret : secrets) {
                INFO(a.res.body());
                CHECK(a.res.body().find(secret) == std::string::npos);
            }
        CHECK(state() == before);
    }
    // The member sees it all, on the same routes.
    const auto& alice = token_of.at("alice");
    CHECK(raw(port, request("GET", "/v1/items/h-1", alice)).status() == 200);
    CHECK(raw(port, request("GET", "/v1/items/h-2", alice)).status() == 404); // deleted
    CHECK(raw(port, request("GET", "/v1/items", alice)).body().at("records").as_array().size() == 1);
    const auto pulled = raw(port, request("GET", "/v1/sync/pull?collection=items&since=0&limit=100", alice));
    CHECK(pulled.body().at("changes").as_array().size() == 2);

    // A subset over the wire: bad ones are 400 and name the fault; a good one narrows the pull.
    const std::string items_pull = "/v1/sync/pull?collection=items&since=0&limit=100&subset=";
    const auto unknown = raw(port, request("GET", items_pull + "%7B%22list%22%3A%5B%5D%7D", alice));
    CHECK(unknown.status() == 400);
    CHECK(unknown.code() == "unknown_field");
    const auto broken = raw(port, request("GET", items_pull + "%7B%22groups%22", alice));
    CHECK(broken.status() == 400);
    CHECK(broken.code() == "malformed_json");
    const auto wrong_type = raw(port, request("GET", items_pull +
        "%7B%22where%22%3A%5B%7B%22field%22%3A%22bought%22%2C%22op%22%3A%22%3D%3D%22%2C%22value%22%3A1%7D%5D%7D",
        alice));
    CHECK(wrong_type.status() == 400);
    CHECK(wrong_type.code() == "invalid_field");
    const auto other_group = raw(port, request("GET", items_pull + "%7B%22groups%22%3A%5B%22work%22%5D%7D", alice));
    CHECK(other_group.status() == 200);
    CHECK(other_group.body().at("changes").as_array().empty());
    CHECK(state() == before);
}

TEST_CASE("http: REST reads and conditional writes", "[http][rest]") {
    http_world w;
    auto list = raw(w.port, request("GET", "/v1/landmarks"));
    REQUIRE(list.status() == 200);
    CHECK(list.body().at("records").as_array().size() == 2);

    auto created = raw(w.port, request("PUT", "/v1/reservations/r-1", alice_token,
                                       json::serialize(to_json_object(reservation("r-1")))));
    REQUIRE(created.status() == 200);
    const auto v1 = created.body().at("version").to_number<std::uint64_t>();
    CHECK(created.res[http::field::etag] == "\"" + std::to_string(v1) + "\"");

    auto got = raw(w.port, request("GET", "/v1/reservations/r-1"));
    CHECK(got.status() == 200);
    CHECK(got.body().at("value").at("status") == "confirmed");
    CHECK(got.res[http::field::etag] == "\"" + std::to_string(v1) + "\"");

    const std::string if_v1 = "If-Match: \"" + std::to_string(v1) + "\"\r\n";
    auto updated = raw(w.port, request("PUT", "/v1/reservations/r-1", alice_token,
                                       R"({"status": "cancelled"})", "application/json", if_v1));
    REQUIRE(updated.status() == 200);
    const auto v2 = updated.body().at("version").to_number<std::uint64_t>();
    CHECK(v2 > v1);

    // Stale: the status was written after v1. 409 with the server's record; nothing written.
    auto stale = raw(w.port, request("PUT", "/v1/reservations/r-1", alice_token,
                                     R"({"status": "confirmed"})", "application/json", if_v1));
    CHECK(stale.status() == 409);
    CHECK(stale.code() == "version_conflict");
    CHECK(stale.body().at("server").at("version") == v2);
    CHECK(stale.body().at("server").at("value").at("status") == "cancelled");
    CHECK(w.service.last_version() == v2);

    auto bad_etag = raw(w.port, request("PUT", "/v1/reservations/r-1", alice_token,
                                        R"({"status": "confirmed"})", "application/json",
                                        "If-Match: W/\"x\"\r\n"));
    CHECK(bad_etag.status() == 400);

    auto stale_delete = raw(w.port, request("DELETE", "/v1/reservations/r-1", alice_token, "",
                                            "", if_v1));
    CHECK(stale_delete.status() == 409);
    auto deleted = raw(w.port, request("DELETE", "/v1/reservations/r-1", alice_token, "", "",
                                       "If-Match: \"" + std::to_string(v2) + "\"\r\n"));
    CHECK(deleted.status() == 200);
    CHECK(deleted.body().at("deleted") == true);
    CHECK(raw(w.port, request("GET", "/v1/reservations/r-1")).status() == 404);
    CHECK(raw(w.port, request("DELETE", "/v1/reservations/r-1")).status() == 404);

    // A sync client sees the REST writes in its feed.
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    CHECK(!phone.sync().error);
    CHECK(!phone.replica.get<Reservation>("r-1"));
}

// ---------------------------------------------------------------------------------------------
// Bad input: a 4xx, the server stays up, nothing changes

TEST_CASE("http: bad input is answered 4xx and changes nothing", "[http][bad-input]") {
    auto config = test_server_config();
    config.max_body_bytes = 4096;
    config.max_header_bytes = 2048;
    config.read_timeout = 500ms;
    http_world w(config);
    const auto before = snapshot(w.service);
    const std::string good_push = push_body(
        "c1", {upsert(1, "reservations", "r-1", 0, to_json_object(reservation("r-1")))});

    struct probe {
        const char* what;
        std::string wire;
        unsigned status;
        const char* code;
    };
    const std::vector<probe> probes = {
        {"malformed JSON", request("POST", "/v1/sync/push", alice_token, "{\"client_id\": "), 400,
         "malformed_json"},
        {"wrong shape", request("POST", "/v1/sync/push", alice_token, "[1,2,3]"), 400,
         "malformed_json"},
        {"wrong content type",
         request("POST", "/v1/sync/push", alice_token, good_push, "text/plain"), 415,
         "unsupported_media_type"},
        {"no content type", request("POST", "/v1/sync/push", alice_token, good_push, ""), 415,
         "unsupported_media_type"},
        {"oversized body",
         request("POST", "/v1/sync/push", alice_token, std::string(5000, ' ') + good_push), 413,
         "batch_too_large"},
        {"oversized headers",
         request("GET", "/v1/landmarks", alice_token, "", "",
                 "X-Padding: " + std::string(3000, 'x') + "\r\n"),
         431, "headers_too_large"},
        {"bad integer id", request("GET", "/v1/landmarks/abc"), 400, "invalid_id"},
        {"id with junk", request("GET", "/v1/landmarks/1x"), 400, "invalid_id"},
        {"broken escape", request("GET", "/v1/reservations/%zz"), 400, "invalid_id"},
        {"overlong id", request("GET", "/v1/reservations/" + std::string(300, 'a')), 400,
         "invalid_id"},
        {"bad id in a push",
         request("POST", "/v1/sync/push", alice_token,
                 push_body("c1", {upsert(1, "landmarks", "one", 0, {{"is_favorite", true}})})),
         400, "invalid_id"},
        {"bad cursor", request("GET", "/v1/sync/pull?collection=landmarks&since=abc"), 400,
         "invalid_field"},
        {"negative cursor", request("GET", "/v1/sync/pull?collection=landmarks&since=-1"), 400,
         "invalid_field"},
        {"cursor ahead", request("GET", "/v1/sync/pull?collection=landmarks&since=999"), 400,
         "cursor_ahead"},
        {"huge limit", request("GET", "/v1/sync/pull?collection=landmarks&limit=99999"), 400,
         "invalid_field"},
        {"unknown collection", request("GET", "/v1/sync/pull?collection=nope"), 404,
         "unknown_collection"},
        {"unknown REST collection", request("GET", "/v1/nope"), 404, "unknown_collection"},
        {"unknown route", request("GET", "/v2/whatever"), 404, "not_found"},
        {"nested route", request("GET", "/v1/landmarks/1/extra"), 404, "not_found"},
        {"wrong method", request("GET", "/v1/sync/push"), 405, "method_not_allowed"},
        {"wrong method on a record", request("POST", "/v1/landmarks/1", alice_token, "{}"), 405,
         "method_not_allowed"},
        {"PUT of a non-object", request("PUT", "/v1/reservations/r-1", alice_token, "[]"), 400,
         "malformed_json"},
        {"PUT of a wrong type",
         request("PUT", "/v1/reservations/r-1", alice_token, R"({"party_size": "two"})"), 400,
         "invalid_field"},
        {"PUT of an unknown field",
         request("PUT", "/v1/reservations/r-1", alice_token, R"({"colour": "red"})"), 400,
         "unknown_field"},
        {"not HTTP", "HELLO THERE\r\n\r\n", 400, "malformed_json"},
    };
    for (const auto& p : probes) {
        INFO(p.what);
        auto a = raw(w.port, p.wire);
        REQUIRE(!a.ec);
        CHECK(a.status() == p.status);
        CHECK(a.code() == p.code);
        CHECK(a.res[http::field::content_type] == "application/json");
    }

    // A truncated body: the client announces the whole body, sends 10 bytes and stalls.
    {
        auto wire = request("POST", "/v1/sync/push", alice_token, good_push);
        wire = wire.substr(0, wire.find("\r\n\r\n") + 4 + 10);
        auto a = raw(w.port, wire);
        CHECK(a.ec); // no answer, only a close; half a request is never applied
    }
    // Content-Length over the limit is refused before the body is sent.
    {
        std::string wire = "POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                           alice_token +
                           "\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n";
        auto a = raw(w.port, wire);
        REQUIRE(!a.ec);
        CHECK(a.status() == 413);
    }
    CHECK(snapshot(w.service) == before);

    // And the server still serves.
    auto ok = raw(w.port, request("POST", "/v1/sync/push", alice_token, good_push));
    CHECK(ok.status() == 200);
    CHECK(ok.body().at("results").at(0).at("status") == "applied");
}

namespace {

/// Everything the server sends on one connection after `wire`, and whether it closed the
/// connection within `limit` (rather than keeping it open for a next request).
struct raw_transcript {
    std::string bytes;
    bool closed = false;
    std::size_t responses() const {
        std::size_t n = 0;
        for (auto at = bytes.find("HTTP/1.1 "); at != std::string::npos;
             at = bytes.find("HTTP/1.1 ", at + 1))
            ++n;
        return n;
    }
};

raw_transcript raw_until_closed(unsigned short port, std::string wire,
                                std::chrono::milliseconds limit = 3s) {
    asio::io_context io;
    raw_transcript out;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const auto tok = asio::as_tuple(asio::use_awaitable);
            beast::tcp_stream stream(co_await asio::this_coro::executor);
            auto [cec] = co_await stream.async_connect(
                tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), tok);
            if (cec) co_return;
            co_await asio::async_write(stream, asio::buffer(wire), tok);
            char chunk[4096];
            for (;;) {
                auto [rec, n] = co_await stream.async_read_some(asio::buffer(chunk), tok);
                out.bytes.append(chunk, n);
                if (rec) {
                    out.closed = rec == asio::error::eof || rec == asio::error::connection_reset;
                    co_return;
                }
            }
        },
        asio::detached);
    io.run_for(limit);
    return out;
}

} // namespace

TEST_CASE("http: a Transfer-Encoding the server does not decode is refused and the connection "
          "closed, so its body is never read as a request",
          "[http][bad-input][security]") {
    http_world w;
    const auto before = snapshot(w.service);
    // The "body" is a second request: a server that kept the connection would answer it.
    const std::string smuggled = "PUT /v1/reservations/r-9 HTTP/1.1\r\nHost: x\r\n"
                                 "Authorization: Bearer " + alice_token +
                                 "\r\nContent-Type: application/json\r\nContent-Length: 2"
                                 "\r\n\r\n{}";
    for (const char* te : {"gzip", "identity", "xchunked", "chunked, identity"}) {
        INFO("Transfer-Encoding: " << te);
        const std::string wire = "POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                 alice_token + "\r\nContent-Type: application/json\r\n"
                                 "Transfer-Encoding: " + te + "\r\n\r\n" + smuggled;
        const auto t = raw_until_closed(w.port, wire);
        CHECK(t.closed);
        CHECK(t.responses() == 1);
        CHECK_THAT(t.bytes, Catch::Matchers::StartsWith("HTTP/1.1 400 "));
        CHECK_THAT(t.bytes, Catch::Matchers::Contains("Transfer-Encoding"));
    }
    CHECK(snapshot(w.service) == before);
    // Chunked alone is HTTP/1.1's own framing and is served.
    const std::string body = R"({"party_size": 2})";
    std::ostringstream size;
    size << std::hex << body.size();
    const auto chunked = raw(w.port, "PUT /v1/reservations/r-9 HTTP/1.1\r\nHost: x\r\n"
                                     "Authorization: Bearer " + alice_token +
                                     "\r\nContent-Type: application/json\r\nTransfer-Encoding: "
                                     "chunked\r\nConnection: close\r\n\r\n" +
                                     size.str() + "\r\n" + body + "\r\n0\r\n\r\n");
    REQUIRE(!chunked.ec);
    CHECK(chunked.status() == 200);
}

TEST_CASE("http: HTTP/1.0 is served without keep-alive, other versions are refused",
          "[http][bad-input]") {
    http_world w;
    const std::string auth = "Authorization: Bearer " + alice_token + "\r\n";
    // A reverse proxy such as nginx speaks HTTP/1.0 to its upstream by default.
    const auto old = raw_until_closed(w.port, "GET /v1/landmarks/1 HTTP/1.0\r\n" + auth + "\r\n");
    CHECK(old.closed);
    CHECK(old.responses() == 1);
    CHECK_THAT(old.bytes, Catch::Matchers::StartsWith("HTTP/1.1 200 "));
    CHECK_THAT(old.bytes, Catch::Matchers::Contains("Half Dome"));
    // A change stream is chunked, which HTTP/1.0 cannot read.
    const auto stream = raw_until_closed(w.port, "GET /v1/stream HTTP/1.0\r\n" + auth + "\r\n");
    CHECK(stream.closed);
    CHECK_THAT(stream.bytes, Catch::Matchers::StartsWith("HTTP/1.1 400 "));
    CHECK_THAT(stream.bytes, Catch::Matchers::Contains("needs HTTP/1.1"));
    CHECK(w.srv->streams() == 0);
    for (const char* version : {"HTTP/1.2", "HTTP/2.0"}) {
        INFO(version);
        const auto t = raw_until_closed(
            w.port, std::string("GET /v1/landmarks/1 ") + version + "\r\n" + auth + "\r\n" +
                        "GET /v1/landmarks/1 HTTP/1.1\r\n" + auth + "\r\n");
        CHECK(t.closed);
        CHECK(t.responses() == 1);
        CHECK_THAT(t.bytes, Catch::Matchers::StartsWith("HTTP/1.1 400 "));
        // Beast refuses these itself ("bad version"); framing_refusal stands behind it.
        CHECK_THAT(t.bytes, Catch::Matchers::Contains("version"));
    }
}

TEST_CASE("http: a body sent after 100 Continue, as curl does", "[http]") {
    http_world w;
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), w.port});
    const auto body = push_body(
        "c1", {upsert(1, "reservations", "r-1", 0, to_json_object(reservation("r-1")))});
    auto wire = request("POST", "/v1/sync/push", alice_token, body, "application/json",
                        "Expect: 100-continue\r\n");
    const auto head_end = wire.find("\r\n\r\n") + 4;
    asio::write(s, asio::buffer(wire.data(), head_end));
    // The interim answer comes before any body byte was sent (the read is bounded by the
    // server's read timeout, which would close the connection).
    beast::flat_buffer buffer;
    http::response<http::empty_body> interim;
    boost::system::error_code ec;
    http::read(s, buffer, interim, ec);
    REQUIRE(!ec);
    CHECK(interim.result() == http::status::continue_);
    asio::write(s, asio::buffer(wire.data() + head_end, wire.size() - head_end));
    http::response<http::string_body> res;
    http::read(s, buffer, res, ec);
    REQUIRE(!ec);
    CHECK(res.result_int() == 200);
    CHECK(w.service.get("alice", "reservations", "r-1"));
}

TEST_CASE("http: a burst of connections over the limit: 200 or 503, the server stays up",
          "[http][bad-input]") {
    auto config = test_server_config();
    config.max_connections = 4;
    http_world w(config);
    // A second thread serves too: connections run on strands of their own.
    w.stop();
    w.threads = 2;
    w.start();
    const auto before = snapshot(w.service);
    std::vector<raw_answer> answers(24);
    std::vector<std::thread> clients;
    for (std::size_t i = 0; i < answers.size(); ++i)
        clients.emplace_back([&, i] { answers[i] = raw(w.port, request("GET", "/v1/landmarks")); });
    for (auto& t : clients) t.join();
    std::size_t ok = 0, busy = 0;
    for (const auto& a : answers) {
        INFO(a.ec.message());
        if (a.ec) continue; // a connection closed under load is an acceptable answer
        CHECK((a.status() == 200 || a.status() == 503));
        ok += a.status() == 200;
        busy += a.status() == 503;
    }
    CHECK(ok >= 1);
    CHECK(ok + busy >= answers.size() / 2);
    CHECK(snapshot(w.service) == before);

    // Concurrent sync clients through the two-thread server converge.
    asio::io_context io;
    std::vector<std::unique_ptr<http_client>> devices;
    for (int i = 0; i < 3; ++i)
        devices.push_back(
            std::make_unique<http_client>(io, w.port, alice_token, w.clock.as_wall_clock()));
    for (int i = 0; i < 3; ++i)
        devices[i]->replica.put(reservation("r-" + std::to_string(i)));
    std::size_t done = 0;
    for (auto& d : devices)
        d->engine.async_sync([&](error_code ec, sync_report) { done += !ec; });
    REQUIRE(run_until(io, [&] { return done == devices.size(); }));
    for (auto& d : devices) CHECK(!d->sync().error);
    for (auto& d : devices) CHECK(d->replica.list<Reservation>().size() == 3);
    CHECK(raw(w.port, request("GET", "/healthz", "")).status() == 200);
}

TEST_CASE("http: a client that stalls mid-request is timed out while others are served",
          "[http][bad-input]") {
    auto config = test_server_config();
    config.read_timeout = 300ms;
    http_world w(config);
    asio::io_context io;
    tcp::socket stalled(io);
    stalled.connect({asio::ip::make_address("127.0.0.1"), w.port});
    const std::string half = "GET /v1/landmarks HTTP/1.1\r\nHost: x\r\nAuthor";
    asio::write(stalled, asio::buffer(half));

    // Others are served meanwhile, on connections of their own.
    for (int i = 0; i < 3; ++i) CHECK(raw(w.port, request("GET", "/healthz", "")).status() == 200);

    // The server hangs up on the stalled client, without an answer.
    std::array<char, 256> buf;
    boost::system::error_code read_ec;
    std::size_t n = 0;
    bool finished = false;
    const auto began = std::chrono::steady_clock::now();
    stalled.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t k) {
        read_ec = ec;
        n = k;
        finished = true;
    });
    REQUIRE(run_until(io, [&] { return finished; }, 3s));
    CHECK(read_ec == asio::error::eof);
    CHECK(n == 0);
    CHECK(std::chrono::steady_clock::now() - began < 2s);
    CHECK(raw(w.port, request("GET", "/v1/landmarks")).status() == 200);
}

namespace {

/// Whether the server closed `s` within `limit` (a read ends in EOF or a reset), reading and
/// dropping anything it sent first.
bool closed_by_server(tcp::socket& s, std::chrono::milliseconds limit) {
    s.non_blocking(true);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::array<char, 512> sink;
    while (std::chrono::steady_clock::now() < deadline) {
        boost::system::error_code ec;
        s.read_some(asio::buffer(sink), ec);
        if (ec == asio::error::would_block) {
            std::this_thread::sleep_for(5ms);
            continue;
        }
        if (ec) return true; // eof or reset
    }
    return false;
}

} // namespace

TEST_CASE("http: idle and slow connections without a token are closed while clients are served",
          "[http][limits][security]") {
    auto config = test_server_config();
    config.max_connections = 6;
    config.unauthenticated_timeout = 400ms;
    config.idle_timeout = 30s; // far beyond the test: only the new limit closes anything
    http_world w(config);
    asio::io_context io;
    // They fill the server: four that never send a byte, one that trickles headers without a
    // token, and one that sends an accepted request and then idles.
    std::vector<tcp::socket> silent;
    for (int i = 0; i < 4; ++i) {
        silent.emplace_back(io);
        silent.back().connect({asio::ip::make_address("127.0.0.1"), w.port});
    }
    tcp::socket trickle(io);
    trickle.connect({asio::ip::make_address("127.0.0.1"), w.port});
    asio::write(trickle, asio::buffer(std::string("GET /v1/landmarks HTTP/1.1\r\nHost: x\r\n")));
    tcp::socket client(io);
    client.connect({asio::ip::make_address("127.0.0.1"), w.port});
    auto ask = [&](tcp::socket& s) {
        const auto wire = "GET /v1/landmarks/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                          alice_token + "\r\n\r\n";
        asio::write(s, asio::buffer(wire));
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        boost::system::error_code ec;
        http::read(s, buffer, res, ec);
        return ec ? 0u : res.result_int();
    };
    CHECK(ask(client) == 200);
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (w.srv->connections() < 6 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    REQUIRE(w.srv->connections() == 6);
    CHECK(raw(w.port, request("GET", "/v1/landmarks")).status() == 503); // full
    // Past the limit the five without a token are gone; the client's connection stays.
    for (auto& s : silent) CHECK(closed_by_server(s, 3s));
    boost::system::error_code late; // the server may have closed it already
    asio::write(trickle, asio::buffer(std::string("X-More: slowly\r\n")), late);
    CHECK(closed_by_server(trickle, 3s));
    CHECK(ask(client) == 200);
    // A health checker that comes in time keeps its connection, token or not.
    tcp::socket checker(io);
    checker.connect({asio::ip::make_address("127.0.0.1"), w.port});
    for (int i = 0; i < 4; ++i) {
        asio::write(checker, asio::buffer(std::string("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")));
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        boost::system::error_code ec;
        http::read(checker, buffer, res, ec);
        REQUIRE_FALSE(ec);
        CHECK(res.result_int() == 200);
        std::this_thread::sleep_for(200ms); // 800 ms in all, twice the limit
    }
    // Room again for everyone else.
    CHECK(raw(w.port, request("GET", "/v1/landmarks")).status() == 200);
}

TEST_CASE("http: connections past the limit of one address get 429, another address is served",
          "[http][limits][security]") {
    auto config = test_server_config();
    config.max_connections_per_address = 3;
    config.busy_retry_after = 4s;
    http_world w(config);
    asio::io_context io;
    std::vector<tcp::socket> held;
    for (int i = 0; i < 3; ++i) {
        held.emplace_back(io);
        held.back().connect({asio::ip::make_address("127.0.0.1"), w.port});
    }
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (w.srv->connections() < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    REQUIRE(w.srv->connections() == 3);
    auto refused = raw(w.port, request("GET", "/v1/landmarks"));
    REQUIRE(!refused.ec);
    CHECK(refused.status() == 429);
    CHECK(refused.code() == "too_many_requests");
    CHECK(refused.res[http::field::retry_after] == "4");
    // Another address of the loopback network is not held back by this one. (The server
    // listens on 127.0.0.1 only; the client binds its end to 127.0.0.2.)
    tcp::socket other(io);
    other.open(tcp::v4());
    boost::system::error_code bec;
    other.bind({asio::ip::make_address("127.0.0.2"), 0}, bec);
    REQUIRE_FALSE(bec);
    other.connect({asio::ip::make_address("127.0.0.1"), w.port});
    asio::write(other, asio::buffer(request("GET", "/v1/landmarks/1")));
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(other, buffer, res);
    CHECK(res.result_int() == 200);
    // Closed, a connection frees its address's slot.
    held.pop_back();
    const auto freed = std::chrono::steady_clock::now() + 3s;
    unsigned status = 0;
    while (std::chrono::steady_clock::now() < freed && status != 200) {
        status = raw(w.port, request("GET", "/v1/landmarks")).status();
        if (status != 200) std::this_thread::sleep_for(20ms);
    }
    CHECK(status == 200);
}

TEST_CASE("http: a user past the request rate gets 429 with Retry-After, and a round reports it",
          "[http][limits]") {
    auto config = test_server_config();
    config.max_requests_per_user_per_second = 0.5;
    config.user_request_burst = 3;
    http_world w(config);
    std::vector<unsigned> statuses;
    for (int i = 0; i < 4; ++i)
        statuses.push_back(raw(w.port, request("GET", "/v1/landmarks/1")).status());
    CHECK(statuses == std::vector<unsigned>{200, 200, 200, 429});
    auto refused = raw(w.port, request("GET", "/v1/landmarks/1"));
    CHECK(refused.code() == "too_many_requests");
    CHECK(refused.res[http::field::retry_after] == "2");
    // Another user, and health, are not held back.
    CHECK(raw(w.port, request("GET", "/v1/landmarks/1", bob_token)).status() == 200);
    CHECK(raw(w.port, request("GET", "/healthz", "")).status() == 200);
    // A device's round ends with the code and the wait, which background sync honours
    // (`background_config::honour_retry_after`, tests/test_background.cpp).
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    auto report = phone.sync();
    CHECK(report.error == errc::too_many_requests);
    CHECK(report.error == condition::retry_later);
    REQUIRE(report.retry_after);
    CHECK(*report.retry_after == 2s);
    CHECK_THAT(report.error_message, Catch::Contains("HTTP 429"));
}

TEST_CASE("http: connections beyond the limit get 503 with Retry-After", "[http][bad-input]") {
    auto config = test_server_config();
    config.max_connections = 2;
    config.busy_retry_after = 7s;
    http_world w(config);
    asio::io_context io;
    std::vector<tcp::socket> held;
    for (int i = 0; i < 2; ++i) {
        held.emplace_back(io);
        held.back().connect({asio::ip::make_address("127.0.0.1"), w.port});
    }
    // Wait until the server has registered both.
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (w.srv->connections() < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    REQUIRE(w.srv->connections() == 2);

    auto busy = raw(w.port, request("GET", "/healthz", ""));
    REQUIRE(!busy.ec);
    CHECK(busy.status() == 503);
    CHECK(busy.code() == "server_error");
    CHECK(busy.res[http::field::retry_after] == "7");

    // The HTTP transport surfaces the hint.
    auto token = std::make_shared<std::string>(alice_token);
    http_transport transport(io.get_executor(), transport_config(w.port, token));
    std::optional<error_code> got;
    request_failure failure;
    pull_request pull_landmarks{"landmarks", 0, 100};
    transport.async_pull(pull_landmarks, [&](error_code ec, pull_response r) {
        got = ec;
        failure = r.failure;
    });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(*got == errc::server_error);
    CHECK(*got == condition::retry_later);
    REQUIRE(transport.retry_after());
    CHECK(*transport.retry_after() == 7s);
    // The operation's own result carries the cause and the wait.
    CHECK_THAT(failure.message, Catch::StartsWith("HTTP 503: ") &&
                                    Catch::Contains("too many connections"));
    REQUIRE(failure.retry_after);
    CHECK(*failure.retry_after == 7s);

    // Freed slots serve again.
    held.clear();
    const auto deadline2 = std::chrono::steady_clock::now() + 3s;
    while (w.srv->connections() > 0 && std::chrono::steady_clock::now() < deadline2)
        std::this_thread::sleep_for(5ms);
    got.reset();
    transport.async_pull(pull_landmarks, [&](error_code ec, pull_response) { got = ec; });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(!*got);
    CHECK(!transport.retry_after());
}

// ---------------------------------------------------------------------------------------------
// Transport faults, timeouts and cancellation

TEST_CASE("http: the server stopped mid-round, the client keeps its changes and converges",
          "[http][faults]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    REQUIRE(!phone.sync().error);
    phone.replica.put(reservation("r-1", "confirmed", 2));
    auto dome = *phone.replica.get<Landmark>(1);
    dome.is_favorite = true;
    phone.replica.put(dome);

    // The server goes down right after it answered the first push of the round (landmarks):
    // the reservations push that follows finds no server.
    std::atomic<bool> stopped{false};
    w.on_request = [&](const server::request_log& r) {
        if (r.target == "/v1/sync/push" && !stopped.exchange(true))
            w.srv->async_shutdown(asio::detached);
    };
    auto failed = phone.sync();
    CHECK(failed.error == errc::transport_failure);
    // The message names the step and the transport's cause, not only "transport failure".
    CHECK_THAT(failed.error_message, Catch::StartsWith("push to 'reservations': ") &&
                                         Catch::Contains(phone.transport.last_error().message));
    CHECK(!failed.retry_after);
    CHECK(!phone.transport.last_error().message.empty());
    CHECK(phone.transport.last_error().code == errc::transport_failure);
    CHECK(phone.replica.pending<Reservation>().dirty == 1);
    CHECK(!w.service.get("alice", "reservations", "r-1"));
    CHECK(w.stop());

    // Down: every round fails, nothing is lost.
    auto down = phone.sync();
    CHECK(down.error == errc::transport_failure);
    CHECK(phone.replica.pending<Reservation>().dirty == 1);

    w.on_request = nullptr;
    w.start(); // same port
    auto report = phone.sync();
    INFO(report.error_message);
    CHECK(!report.error);
    CHECK(phone.replica.pending<Reservation>().dirty == 0);
    CHECK(phone.replica.pending<Landmark>().dirty == 0);
    CHECK(w.service.get("alice", "reservations", "r-1")->value.at("party_size") == 2);
    CHECK(w.service.get("alice", "landmarks", "1")->value.at("is_favorite") == true);
}

TEST_CASE("http: a round that cannot reach the server names the cause", "[http][faults]") {
    asio::io_context io;
    memory_storage storage;
    basic_replica<memory_storage> replica(storage);
    auto token = std::make_shared<std::string>(alice_token);
    auto config = transport_config(8090, token);
    // A name that never resolves (RFC 6761 reserves .invalid). The port is a number, so the
    // old trap, `config.port = 8090` compiling as a one-char service name, is gone.
    static_assert(std::is_same_v<decltype(config.port), std::uint16_t>);
    config.host = "offsync-test.invalid";
    http_transport transport(io.get_executor(), config);
    http_engine engine(io.get_executor(), replica, transport);
    engine.add_collection<Landmark>();
    std::optional<sync_report> report;
    engine.async_sync([&](error_code, sync_report r) { report = std::move(r); });
    REQUIRE(run_until(io, [&] { return report.has_value(); }, 30s));
    CHECK(report->error == errc::transport_failure);
    CHECK(report->error == condition::retry_later);
    CHECK_THAT(report->error_message, Catch::StartsWith("pull from 'landmarks': cannot resolve "
                                                        "offsync-test.invalid: "));
}

TEST_CASE("http: a keep-alive connection the server closed is replaced transparently",
          "[http][faults]") {
    auto config = test_server_config();
    config.idle_timeout = 100ms;
    http_world w(config);
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    REQUIRE(!phone.sync().error);
    std::this_thread::sleep_for(300ms); // the server drops the idle connection
    phone.replica.put(reservation("r-1"));
    auto report = phone.sync();
    CHECK(!report.error);
    CHECK(report.applied == 1);
    CHECK(phone.transport.connects() == 2);
}

TEST_CASE("http: a server that never answers times out, and cancellation is prompt",
          "[http][faults]") {
    asio::io_context io;
    // A listener that never accepts: connects succeed (the backlog), nothing is ever answered.
    tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto token = std::make_shared<std::string>(alice_token);
    auto cfg = transport_config(silent.local_endpoint().port(), token);
    pull_request pull_landmarks{"landmarks", 0, 100};

    SECTION("the request timeout") {
        cfg.request_timeout = 200ms;
        http_transport transport(io.get_executor(), cfg);
        std::optional<error_code> got;
        const auto began = std::chrono::steady_clock::now();
        transport.async_pull(pull_landmarks, [&](error_code ec, pull_response) { got = ec; });
        REQUIRE(run_until(io, [&] { return got.has_value(); }, 3s));
        CHECK(*got == errc::transport_failure);
        CHECK(std::chrono::steady_clock::now() - began < 2s);
    }
    SECTION("terminal cancellation") {
        http_transport transport(io.get_executor(), cfg);
        asio::cancellation_signal signal;
        std::optional<error_code> got;
        transport.async_pull(pull_landmarks,
                             asio::bind_cancellation_slot(signal.slot(),
                                                          [&](error_code ec, pull_response) {
                                                              got = ec;
                                                          }));
        asio::steady_timer timer(io, 100ms);
        timer.async_wait([&](error_code) { signal.emit(asio::cancellation_type::terminal); });
        REQUIRE(run_until(io, [&] { return got.has_value(); }, 3s));
        CHECK(*got == asio::error::operation_aborted);
    }
    SECTION("no server at all") {
        auto port = silent.local_endpoint().port();
        silent.close();
        cfg.port = port;
        http_transport transport(io.get_executor(), cfg);
        std::optional<error_code> got;
        transport.async_pull(pull_landmarks, [&](error_code ec, pull_response) { got = ec; });
        REQUIRE(run_until(io, [&] { return got.has_value(); }, 3s));
        CHECK(*got == errc::transport_failure);
        CHECK(transport.last_error().message.find("connect") != std::string::npos);
    }
}

TEST_CASE("http: the transport maps error answers to offsync codes", "[http][faults]") {
    http_world w;
    asio::io_context io;
    auto token = std::make_shared<std::string>(alice_token);
    http_transport transport(io.get_executor(), transport_config(w.port, token));
    std::optional<error_code> got;
    pull_request unknown{"nope", 0, 100};
    transport.async_pull(unknown, [&](error_code ec, pull_response) { got = ec; });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(*got == errc::unknown_collection);
    CHECK(transport.last_error().message.find("404") != std::string::npos);

    got.reset();
    pull_request ahead{"landmarks", 999, 100};
    transport.async_pull(ahead, [&](error_code ec, pull_response) { got = ec; });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(*got == errc::cursor_ahead);

    // A 200 that is not protocol v1: an HTTP server that is not offsync.
    tcp::acceptor fake(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto cfg = transport_config(fake.local_endpoint().port(), token);
    http_transport confused(io.get_executor(), cfg);
    fake.async_accept([&](error_code, tcp::socket s) {
        auto sock = std::make_shared<tcp::socket>(std::move(s));
        auto reply = std::make_shared<std::string>(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello");
        asio::async_write(*sock, asio::buffer(*reply), [sock, reply](error_code, std::size_t) {});
    });
    got.reset();
    pull_request pull_landmarks{"landmarks", 0, 100};
    confused.async_pull(pull_landmarks, [&](error_code ec, pull_response) { got = ec; });
    REQUIRE(run_until(io, [&] { return got.has_value(); }));
    CHECK(*got == errc::bad_response);
}


TEST_CASE("http: a push answered with something that is not its answer keeps the edits dirty",
          "[http][faults]") {
    // The engine has sent the next batches before it applies an answer: a bad answer must
    // still end the round with nothing acknowledged, and nothing sent after the batches in
    // flight (two by default).
    const std::string body = GENERATE(as<std::string>{}, "hello",
                                      R"({"results": []})",
                                      R"({"results": [{"mutation_id": 1, "status": "applied"}]})",
                                      R"({"results": "many"})");
    CAPTURE(body);
    asio::io_context io;
    manual_clock clock;
    answers_anything fake(io, body);
    engine_config config;
    config.first_push_batch_size = 2; // two batches in flight one after the other
    config.push_batch_size = 2;
    http_client phone(io, fake.acceptor.local_endpoint().port(), alice_token,
                      clock.as_wall_clock(), config,
                      [](http_engine& e) { e.add_collection<Reservation>(); });
    // Five batches: more than the bad answer and the two behind it.
    for (int i = 0; i < 9; ++i) phone.replica.put(reservation("r-" + std::to_string(i)));
    auto report = phone.sync();
    CHECK(report.error == errc::bad_response);
    INFO(report.error_message);
    CHECK(report.error_message.find("push") != std::string::npos);
    CHECK(report.applied == 0);
    CHECK(phone.replica.pending<Reservation>().dirty == 9);
    CHECK(fake.requests >= 1);
    // The two batches pipelined behind the bad answer at most: nothing more.
    CHECK(std::size_t(fake.requests) <= 1 + engine_config{}.max_push_requests_in_flight);
}

namespace {

/// A pull page of reservations as a lying server sends it: `values` at versions from `first`,
/// each the change of record "r-" + its version.
std::string reservation_page(std::uint64_t first, std::vector<json::object> values,
                             std::uint64_t cursor, bool has_more) {
    pull_response page;
    for (auto& v : values) {
        change c;
        c.id = json::value("r-" + std::to_string(first));
        c.version = first++;
        c.stamp = {1764000000000 + std::int64_t(c.version), 0, "server"};
        c.value = std::move(v);
        page.changes.push_back(std::move(c));
    }
    page.cursor = cursor;
    page.has_more = has_more;
    return to_json_text(page);
}

/// A lying server's answers: reservations' pulls say more follows, for ever, each page a
/// version further and holding one new record or (`with_records` false) nothing; `pulls`
/// counts them. Other collections are idle.
std::function<std::string(const answers_anything::request_type&)>
endless_reservations(bool with_records, int& pulls);

std::string idle_page(const answers_anything::request_type& req) {
    pull_response page;
    page.cursor = std::stoull("0" + query_parameter(req.target(), "since"));
    return to_json_text(page);
}

std::function<std::string(const answers_anything::request_type&)>
endless_reservations(bool with_records, int& pulls) {
    return [with_records, &pulls](const answers_anything::request_type& req) -> std::string {
        if (query_parameter(req.target(), "collection") != "reservations") return idle_page(req);
        ++pulls;
        const auto next = std::stoull("0" + query_parameter(req.target(), "since")) + 1;
        std::vector<json::object> values;
        if (with_records) values.push_back(to_json_object(reservation("r-" + std::to_string(next))));
        return reservation_page(next, std::move(values), next, true);
    };
}

} // namespace

TEST_CASE("http: a pulled record that does not decode as its model is refused with its page",
          "[http][faults][bad-input]") {
    asio::io_context io;
    manual_clock clock;
    auto bad = to_json_object(reservation("r-2"));
    const auto [field, wrong] = GENERATE(std::pair<const char*, const char*>{"party_size", "\"lots\""},
                                         std::pair<const char*, const char*>{"date", "\"2300-01-01T00:00:00Z\""},
                                         std::pair<const char*, const char*>{"date", "\"yesterday\""},
                                         std::pair<const char*, const char*>{"id", "\"r-3\""});
    CAPTURE(field, wrong);
    bad[field] = json::parse(wrong);
    bool good_server = false;
    answers_anything fake(io, [&](const answers_anything::request_type& req) -> std::string {
        if (query_parameter(req.target(), "collection") != "reservations") return idle_page(req);
        auto r2 = good_server ? to_json_object(reservation("r-2")) : bad;
        return reservation_page(1, {to_json_object(reservation("r-1")), r2}, 2, false);
    });
    http_client phone(io, fake.acceptor.local_endpoint().port(), alice_token, clock.as_wall_clock());
    auto report = phone.sync();
    CHECK(report.error == errc::bad_response);
    CHECK(report.error == condition::retry_later); // the server's fault: try again later
    INFO(report.error_message);
    CHECK_THAT(report.error_message, Catch::Contains("reservations/r-2") && Catch::Contains(field));
    // Nothing of the page was kept, the cursor did not move: a good answer is pulled again.
    CHECK_FALSE(phone.replica.get<Reservation>("r-1"));
    CHECK_FALSE(phone.replica.get<Reservation>("r-2"));
    CHECK(phone.storage.begin().cursor("reservations") == 0);

    good_server = true;
    report = phone.sync();
    CHECK_FALSE(report.error);
    REQUIRE(phone.replica.get<Reservation>("r-2"));
    CHECK(phone.replica.get<Reservation>("r-2")->party_size == reservation("r-2").party_size);
    CHECK(phone.storage.begin().cursor("reservations") == 2);
}

TEST_CASE("http: a push answered with a record that does not decode is not acknowledged",
          "[http][faults][bad-input]") {
    asio::io_context io;
    manual_clock clock;
    answers_anything fake(io, [&](const answers_anything::request_type& req) -> std::string {
        if (req.method() != http::verb::post) return idle_page(req);
        push_request pushed;
        REQUIRE_FALSE(from_json(json::parse(req.body()), pushed));
        push_response answer;
        for (const auto& m : pushed.mutations) {
            mutation_result r;
            r.mutation_id = m.mutation_id;
            r.status = mutation_status::applied;
            r.version = 7;
            change server;
            server.id = m.id;
            server.version = 7;
            server.stamp = m.stamp;
            server.value = m.fields;
            server.value["party_size"] = "lots";
            r.server = server;
            answer.results.push_back(std::move(r));
        }
        return to_json_text(answer);
    });
    http_client phone(io, fake.acceptor.local_endpoint().port(), alice_token, clock.as_wall_clock(),
                      {}, [](http_engine& e) { e.add_collection<Reservation>(); });
    phone.replica.put(reservation("r-1"));
    auto report = phone.sync();
    CHECK(report.error == errc::bad_response);
    INFO(report.error_message);
    CHECK_THAT(report.error_message, Catch::Contains("reservations/r-1") && Catch::Contains("party_size"));
    CHECK(report.applied == 0);
    CHECK(phone.replica.pending<Reservation>().dirty == 1); // pushed again, same mutation id
    CHECK(phone.replica.get<Reservation>("r-1")->party_size == reservation("r-1").party_size);
}

TEST_CASE("http: a server answering empty pages that claim more cannot hold a round",
          "[http][faults][bad-input]") {
    asio::io_context io;
    manual_clock clock;
    int reservation_pulls = 0;
    // Nothing, and more, for ever.
    answers_anything fake(io, endless_reservations(false, reservation_pulls));
    http_client phone(io, fake.acceptor.local_endpoint().port(), alice_token, clock.as_wall_clock());
    auto report = phone.sync();
    CHECK(report.error == errc::bad_response);
    CHECK_THAT(report.error_message, Catch::Contains("no changes claimed more"));
    CHECK(reservation_pulls == 1);
    CHECK(phone.storage.begin().cursor("reservations") == 0);
}

TEST_CASE("http: a round that runs past round_timeout stops and keeps what it pulled",
          "[http][faults]") {
    asio::io_context io;
    manual_clock clock;
    int reservation_pulls = 0;
    // One new record a page, and more always follow: a valid feed that never ends.
    answers_anything fake(io, endless_reservations(true, reservation_pulls));
    engine_config config;
    config.round_timeout = 300ms;
    http_client phone(io, fake.acceptor.local_endpoint().port(), alice_token, clock.as_wall_clock(),
                      config);
    const auto started = std::chrono::steady_clock::now();
    auto report = phone.sync();
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(report.error == asio::error::timed_out);
    CHECK(report.error == condition::retry_later);
    CHECK_THAT(report.error_message, Catch::Contains("round_timeout"));
    CHECK(took < 3s); // the deadline, plus the page in flight
    CHECK(reservation_pulls >= 2);
    // The pages applied before the deadline stay, with their cursor.
    CHECK(report.pulled >= 1);
    const auto cursor = phone.storage.begin().cursor("reservations");
    CHECK(cursor >= 1);
    CHECK(phone.replica.get<Reservation>("r-" + std::to_string(cursor)));
    // And a negative timeout is refused at construction.
    engine_config negative;
    negative.round_timeout = -1ms;
    CHECK_THROWS_AS(http_client(io, fake.acceptor.local_endpoint().port(), alice_token,
                                clock.as_wall_clock(), negative),
                    std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Operating the server

TEST_CASE("http: one structured log line per request, without the token", "[http][ops]") {
    http_world w;
    raw(w.port, request("GET", "/v1/landmarks"));
    raw(w.port, request("GET", "/v1/nope"));
    raw(w.port, request("GET", "/healthz", ""));
    // A line is written after its response: give the server's thread a moment.
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (w.logs().size() < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    const auto lines = w.logs();
    REQUIRE(lines.size() == 3);
    auto first = json::parse(lines[0]);
    CHECK(first.at("method") == "GET");
    CHECK(first.at("target") == "/v1/landmarks");
    CHECK(first.at("status") == 200);
    CHECK(first.at("user") == "alice");
    auto second = json::parse(lines[1]);
    CHECK(second.at("status") == 404);
    CHECK(second.at("error") == "unknown_collection");
    for (const auto& l : lines) CHECK(l.find(alice_token) == std::string::npos);
}

TEST_CASE("http: shutdown closes idle connections and completes promptly", "[http][ops]") {
    http_world w;
    asio::io_context io;
    http_client phone(io, w.port, alice_token, w.clock.as_wall_clock());
    REQUIRE(!phone.sync().error); // leaves an idle keep-alive connection open
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (w.srv->connections() < 1 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    CHECK(w.srv->connections() == 1);
    const auto began = std::chrono::steady_clock::now();
    CHECK(w.stop());
    CHECK(std::chrono::steady_clock::now() - began < 1s);
    // Nothing listens any more.
    auto a = raw(w.port, request("GET", "/healthz", ""), 1s);
    CHECK(a.ec);
}

TEST_CASE("http: shutdown completes on the handler's executor, once, with no error",
          "[http][ops]") {
    http_world w;
    // The handler's own io_context: until it runs, the handler must not have run, whatever
    // the server's thread does.
    asio::io_context handler_io;
    std::atomic<int> calls{0};
    std::atomic<bool> on_handler_io{false};
    error_code result = make_error_code(errc::server_error);
    w.srv->async_shutdown(asio::bind_executor(handler_io.get_executor(), [&](error_code ec) {
        on_handler_io = handler_io.get_executor().running_in_this_thread();
        result = ec;
        ++calls;
    }));
    std::this_thread::sleep_for(200ms); // the drain itself is done by now: no connections
    CHECK(calls == 0);
    // The handler's executor has outstanding work until the handler has run: run() returns
    // only after it.
    handler_io.run_for(5s);
    CHECK(calls == 1);
    CHECK(on_handler_io);
    CHECK(!result);
    auto a = raw(w.port, request("GET", "/healthz", ""), 1s);
    CHECK(a.ec); // nothing listens any more
}

TEST_CASE("token files: parsing, lookups, bad lines", "[http][security]") {
    std::istringstream good("# comment\n\n0123456789abcdef alice\r\nfedcba9876543210\tbob\n");
    auto auth = server::token_file_authenticator::parse(good);
    CHECK(auth.size() == 2);
    CHECK(auth("0123456789abcdef") == std::optional<std::string>("alice"));
    CHECK(auth("fedcba9876543210") == std::optional<std::string>("bob"));
    CHECK(!auth("0123456789abcde"));
    CHECK(!auth("0123456789abcdeF"));
    CHECK(!auth(""));
    CHECK(server::constant_time_equal("abc", "abc"));
    CHECK(!server::constant_time_equal("abc", "abd"));
    CHECK(!server::constant_time_equal("abc", "abcd"));
    CHECK(!server::constant_time_equal("", "a"));

    for (const char* bad : {"short alice\n", "0123456789abcdef\n",
                            "0123456789abcdef alice extra\n",
                            "0123456789abcdef alice\n0123456789abcdef bob\n"}) {
        INFO(bad);
        std::istringstream in(bad);
        CHECK_THROWS_AS(server::token_file_authenticator::parse(in), sync_error);
    }
    CHECK_THROWS_AS(server::token_file_authenticator::load("/nonexistent/tokens"), sync_error);
}

TEST_CASE("http: shutdown lets a request in flight finish, then closes", "[http][ops]") {
    http_world w;
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), w.port});
    auto wire = request("POST", "/v1/sync/push", alice_token,
                        push_body("c1", {upsert(1, "reservations", "r-1", 0,
                                                to_json_object(reservation("r-1")))}));
    wire.erase(wire.find("Connection: close\r\n"), 19); // a keep-alive request
    const auto split = wire.find("\r\n\r\n") + 4 + 20;
    asio::write(s, asio::buffer(wire.data(), split));
    std::this_thread::sleep_for(100ms); // the server is now reading the body

    auto done = shutdown_future(*w.srv);
    CHECK(done.wait_for(300ms) == std::future_status::timeout); // draining, not dropping
    // A new connection is not served any more.
    CHECK(raw(w.port, request("GET", "/healthz", ""), 1s).ec);

    asio::write(s, asio::buffer(wire.data() + split, wire.size() - split));
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    boost::system::error_code ec;
    http::read(s, buffer, res, ec); // bounded: the server's read timeout closes a stuck exchange
    REQUIRE(!ec);
    CHECK(res.result_int() == 200);
    CHECK(!res.keep_alive()); // the last answer of a draining server
    CHECK(done.wait_for(2s) == std::future_status::ready);
    REQUIRE(w.service.get("alice", "reservations", "r-1"));
}


TEST_CASE("http: an answer lost with pushes pipelined behind it: all resent, each written once",
          "[http][faults][pipeline]") {
    http_world w;
    asio::io_context io;
    dropping_proxy proxy(io, w.port);
    engine_config config;
    config.first_push_batch_size = 2;
    config.push_batch_size = 2; // five batches, two in flight at a time
    http_client phone(io, proxy.port(), alice_token, w.clock.as_wall_clock(), config);
    REQUIRE(!phone.sync().error); // the connection is open and has carried requests
    for (int i = 0; i < 9; ++i) phone.replica.put(reservation("r-" + std::to_string(i)));
    const auto before = w.service.last_version();
    proxy.drop_responses = 1; // the first answer's bytes are lost and the connection cut
    auto report = phone.sync();
    INFO(report.error_message);
    CHECK(proxy.dropped == 1);
    // The request whose answer was lost and the one pipelined behind it went again on a new
    // connection; the server recognised whichever it had applied.
    CHECK(!report.error);
    CHECK(report.applied == 9);
    CHECK(report.conflict_count() == 0);
    CHECK(phone.transport.connects() == 2);
    CHECK(w.service.last_version() == before + 9); // each record written once
    CHECK(phone.replica.pending<Reservation>().dirty == 0);
}

TEST_CASE("http: a push whose answer was lost is resent: no duplicate, no conflict",
          "[http][faults]") {
    http_world w;
    asio::io_context io;
    dropping_proxy proxy(io, w.port);
    http_client phone(io, proxy.port(), alice_token, w.clock.as_wall_clock());
    http_client laptop(io, w.port, alice_token, w.clock.as_wall_clock());
    REQUIRE(!phone.sync().error);
    phone.replica.put(reservation("r-1", "confirmed", 4));
    const auto before = w.service.last_version();

    proxy.drop_responses = 1;
    auto report = phone.sync();
    INFO(report.error_message);
    CHECK(proxy.dropped == 1);
    // The push reached the server, its answer did not; the transport sent it once more on a
    // new connection and got the original outcome.
    CHECK(!report.error);
    CHECK(report.applied == 1);
    CHECK(report.conflict_count() == 0);
    CHECK(phone.transport.connects() == 2);
    CHECK(w.service.last_version() == before + 1); // one write, not two
    CHECK(phone.replica.pending<Reservation>().dirty == 0);

    SECTION("and when the answer is lost on a fresh connection, the next round settles it") {
        phone.replica.put(reservation("r-1", "cancelled", 4));
        phone.transport.close();
        proxy.drop_responses = 1;
        auto lost = phone.sync();
        CHECK(lost.error == errc::transport_failure);
        CHECK(phone.replica.pending<Reservation>().dirty == 1);
        const auto applied = w.service.last_version();
        CHECK(applied == before + 2); // the server did apply it
        auto retry = phone.sync();
        CHECK(!retry.error);
        CHECK(retry.conflict_count() == 0);
        CHECK(w.service.last_version() == applied);
        CHECK(phone.replica.pending<Reservation>().dirty == 0);
    }
    CHECK(!laptop.sync().error);
    CHECK(laptop.replica.get<Reservation>("r-1")->party_size == 4);
}

// ---------------------------------------------------------------------------------------------
// Pipelining: operations started together share the connection, answered in order.

TEST_CASE("http: operations started together share one connection and are answered in order",
          "[http][pipeline]") {
    http_world w;
    asio::io_context io;
    auto token = std::make_shared<std::string>(alice_token);
    auto cfg = transport_config(w.port, token);
    std::size_t limit = 2;
    SECTION("two in flight (the default)") { limit = 2; }
    SECTION("one at a time") { limit = 1; }
    SECTION("three in flight") { limit = 3; }
    cfg.max_requests_in_flight = limit;
    http_transport transport(io.get_executor(), cfg);
    CHECK(transport.max_requests_in_flight() == limit);

    // Three pushes, each writing its own reservation, then three pulls from different cursors:
    // each completion must carry the answer to its own request.
    std::vector<push_request> pushes;
    for (int i = 1; i <= 3; ++i) {
        push_request p{"pipelining-phone", {}};
        mutation m;
        m.mutation_id = std::uint64_t(i);
        m.collection = "reservations";
        m.id = json::value("r-" + std::to_string(i));
        m.stamp = hlc_stamp{1'700'000'000'000 + i, 0, "pipelining-phone"};
        m.fields = to_json_object(reservation("r-" + std::to_string(i), "confirmed", i));
        p.mutations.push_back(std::move(m));
        pushes.push_back(std::move(p));
    }
    std::vector<int> order;
    std::vector<push_response> answers(3);
    for (int i = 0; i < 3; ++i)
        transport.async_push(pushes[std::size_t(i)], [&, i](error_code ec, push_response r) {
            CHECK(!ec);
            order.push_back(i);
            answers[std::size_t(i)] = std::move(r);
        });
    REQUIRE(run_until(io, [&] { return order.size() == 3; }));
    CHECK(order == std::vector<int>{0, 1, 2});
    for (std::size_t i = 0; i < 3; ++i) {
        REQUIRE(answers[i].results.size() == 1);
        CHECK(answers[i].results[0].mutation_id == i + 1);
        CHECK(answers[i].results[0].status == mutation_status::applied);
    }
    // The server applied them in the order they were started.
    CHECK(answers[0].results[0].version < answers[1].results[0].version);
    CHECK(answers[1].results[0].version < answers[2].results[0].version);

    order.clear();
    std::vector<pull_response> pages(3);
    for (std::uint64_t i = 0; i < 3; ++i)
        transport.async_pull(pull_request{"reservations", answers[i].results[0].version - 1, 100},
                             [&, i](error_code ec, pull_response r) {
                                 CHECK(!ec);
                                 order.push_back(int(i));
                                 pages[i] = std::move(r);
                             });
    REQUIRE(run_until(io, [&] { return order.size() == 3; }));
    CHECK(order == std::vector<int>{0, 1, 2});
    for (std::size_t i = 0; i < 3; ++i) CHECK(pages[i].changes.size() == 3 - i);
    CHECK(transport.connects() == 1);
    CHECK(transport.requests() == 6);
}


TEST_CASE("http: pipelined requests when the connection fails under them", "[http][pipeline][faults]") {
    asio::io_context io;
    scripted_server fake(io);
    auto token = std::make_shared<std::string>(alice_token);
    auto cfg = transport_config(fake.port(), token);
    cfg.request_timeout = 2s;
    http_transport transport(io.get_executor(), cfg);
    const pull_request page{"landmarks", 0, 100};
    std::optional<error_code> first, second;
    asio::cancellation_signal cancel_first;
    auto start_both = [&] {
        transport.async_pull(page, asio::bind_cancellation_slot(
                                       cancel_first.slot(),
                                       [&](error_code ec, pull_response) { first = ec; }));
        transport.async_pull(page, [&](error_code ec, pull_response) { second = ec; });
    };
    int seen_on_first_connection = 0;
    int seen_on_second_connection = 0;

    SECTION("answered with Connection: close, the request behind goes again on a new one") {
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            auto s = co_await fake.acceptor.async_accept(asio::use_awaitable);
            // Both requests arrive before the first is answered: they are pipelined.
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            co_await scripted_server::answer(s, true);
            auto again = co_await fake.acceptor.async_accept(asio::use_awaitable);
            beast::flat_buffer buffer2;
            if (co_await scripted_server::read(again, buffer2)) ++seen_on_second_connection;
            co_await scripted_server::answer(again);
            co_await scripted_server::read(again, buffer2); // until the client lets go
        }, asio::detached);
        start_both();
        REQUIRE(run_until(io, [&] { return first && second; }, 5s));
        CHECK(!*first);
        CHECK(!*second);
        CHECK(seen_on_first_connection == 2);
        CHECK(seen_on_second_connection == 1);
        CHECK(transport.connects() == 2);
        CHECK(transport.requests() == 3);
    }
    SECTION("closed with no answer: the first is not sent twice, the one behind it is, once") {
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            auto s = co_await fake.acceptor.async_accept(asio::use_awaitable);
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            s.close();
            auto again = co_await fake.acceptor.async_accept(asio::use_awaitable);
            beast::flat_buffer buffer2;
            if (co_await scripted_server::read(again, buffer2)) ++seen_on_second_connection;
            again.close();
        }, asio::detached);
        start_both();
        REQUIRE(run_until(io, [&] { return first && second; }, 5s));
        CHECK(*first == errc::transport_failure);
        CHECK(*second == errc::transport_failure);
        CHECK(seen_on_first_connection == 2);
        CHECK(seen_on_second_connection == 1);
        CHECK(transport.requests() == 3);
    }
    SECTION("the first cancelled while the server holds both: the second goes on a new one") {
        std::optional<tcp::socket> held; // never answered, open until the test ends
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            held.emplace(co_await fake.acceptor.async_accept(asio::use_awaitable));
            if (co_await scripted_server::read(*held, buffer)) ++seen_on_first_connection;
            if (co_await scripted_server::read(*held, buffer)) ++seen_on_first_connection;
            auto again = co_await fake.acceptor.async_accept(asio::use_awaitable);
            beast::flat_buffer buffer2;
            if (co_await scripted_server::read(again, buffer2)) ++seen_on_second_connection;
            co_await scripted_server::answer(again);
            co_await scripted_server::read(again, buffer2);
        }, asio::detached);
        start_both();
        REQUIRE(run_until(io, [&] { return seen_on_first_connection == 2; }, 5s));
        const auto began = std::chrono::steady_clock::now();
        cancel_first.emit(asio::cancellation_type::terminal);
        REQUIRE(run_until(io, [&] { return first && second; }, 5s));
        CHECK(std::chrono::steady_clock::now() - began < 1s); // not the request timeout
        CHECK(*first == asio::error::operation_aborted);
        CHECK(!*second);
        CHECK(seen_on_second_connection == 1);
        CHECK(transport.connects() == 2);
    }
    SECTION("the second cancelled while the server holds both: the first is answered, then "
            "the connection ends") {
        asio::cancellation_signal cancel_second;
        std::optional<tcp::socket> first_connection;
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            first_connection.emplace(co_await fake.acceptor.async_accept(asio::use_awaitable));
            if (co_await scripted_server::read(*first_connection, buffer)) ++seen_on_first_connection;
            if (co_await scripted_server::read(*first_connection, buffer)) ++seen_on_first_connection;
            co_await scripted_server::answer(*first_connection);
            co_await scripted_server::answer(*first_connection); // nobody reads it
            auto again = co_await fake.acceptor.async_accept(asio::use_awaitable);
            beast::flat_buffer buffer2;
            if (co_await scripted_server::read(again, buffer2)) ++seen_on_second_connection;
            co_await scripted_server::answer(again);
            co_await scripted_server::read(again, buffer2);
        }, asio::detached);
        transport.async_pull(page, [&](error_code ec, pull_response) { first = ec; });
        transport.async_pull(page, asio::bind_cancellation_slot(
                                       cancel_second.slot(),
                                       [&](error_code ec, pull_response) { second = ec; }));
        REQUIRE(run_until(io, [&] { return seen_on_first_connection == 2; }, 5s));
        cancel_second.emit(asio::cancellation_type::terminal);
        REQUIRE(run_until(io, [&] { return first && second; }, 5s));
        CHECK(!*first); // its answer came first and is its own
        CHECK(*second == asio::error::operation_aborted);
        // The second's answer was never read: a third request goes on a new connection.
        std::optional<error_code> third;
        transport.async_pull(page, [&](error_code ec, pull_response) { third = ec; });
        REQUIRE(run_until(io, [&] { return third.has_value(); }, 5s));
        CHECK(!*third);
        CHECK(seen_on_second_connection == 1);
        CHECK(transport.connects() == 2);
    }
    SECTION("cancelled before it was written: the connection stays") {
        cfg.max_requests_in_flight = 1;
        http_transport one_at_a_time(io.get_executor(), cfg);
        asio::cancellation_signal cancel_second;
        bool answer_first = false;
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            auto s = co_await fake.acceptor.async_accept(asio::use_awaitable);
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            while (!answer_first) {
                asio::steady_timer poll(io, 10ms);
                co_await poll.async_wait(asio::use_awaitable);
            }
            co_await scripted_server::answer(s);
            if (co_await scripted_server::read(s, buffer)) ++seen_on_first_connection;
            co_await scripted_server::answer(s);
            co_await scripted_server::read(s, buffer);
        }, asio::detached);
        one_at_a_time.async_pull(page, [&](error_code ec, pull_response) { first = ec; });
        one_at_a_time.async_pull(page, asio::bind_cancellation_slot(
                                           cancel_second.slot(),
                                           [&](error_code ec, pull_response) { second = ec; }));
        REQUIRE(run_until(io, [&] { return seen_on_first_connection == 1; }, 5s));
        cancel_second.emit(asio::cancellation_type::terminal); // waiting for room
        REQUIRE(run_until(io, [&] { return second.has_value(); }, 5s));
        CHECK(*second == asio::error::operation_aborted);
        CHECK(!first);
        answer_first = true;
        REQUIRE(run_until(io, [&] { return first.has_value(); }, 5s));
        CHECK(!*first);
        std::optional<error_code> third;
        one_at_a_time.async_pull(page, [&](error_code ec, pull_response) { third = ec; });
        REQUIRE(run_until(io, [&] { return third.has_value(); }, 5s));
        CHECK(!*third);
        CHECK(seen_on_first_connection == 2); // the cancelled one was never sent
        CHECK(one_at_a_time.connects() == 1);
    }
    SECTION("one in flight at most: the second is written only after the first is answered") {
        cfg.max_requests_in_flight = 1;
        http_transport one_at_a_time(io.get_executor(), cfg);
        bool second_before_answer = false;
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            auto s = co_await fake.acceptor.async_accept(asio::use_awaitable);
            co_await scripted_server::read(s, buffer);
            // Wait a while for a second request that must not come before the answer.
            asio::steady_timer grace(io, 200ms);
            co_await grace.async_wait(asio::use_awaitable);
            second_before_answer = buffer.size() > 0 || s.available() > 0;
            co_await scripted_server::answer(s);
            co_await scripted_server::read(s, buffer);
            co_await scripted_server::answer(s);
            co_await scripted_server::read(s, buffer);
        }, asio::detached);
        one_at_a_time.async_pull(page, [&](error_code ec, pull_response) { first = ec; });
        one_at_a_time.async_pull(page, [&](error_code ec, pull_response) { second = ec; });
        REQUIRE(run_until(io, [&] { return first && second; }, 5s));
        CHECK(!*first);
        CHECK(!*second);
        CHECK(!second_before_answer);
        CHECK(one_at_a_time.connects() == 1);
    }
}

TEST_CASE("http: an operation cancelled as it starts leaves the transport usable",
          "[http][pipeline][cancel]") {
    http_world w;
    asio::io_context io;
    auto token = std::make_shared<std::string>(alice_token);
    http_transport transport(io.get_executor(), transport_config(w.port, token));
    const pull_request page{"landmarks", 0, 100};
    // Cancelled before it ran at all, so during name resolution or the connect.
    for (int i = 0; i < 3; ++i) {
        asio::cancellation_signal cancel;
        std::optional<error_code> got;
        transport.async_pull(page, asio::bind_cancellation_slot(
                                       cancel.slot(), [&](error_code ec, pull_response) { got = ec; }));
        cancel.emit(asio::cancellation_type::terminal);
        REQUIRE(run_until(io, [&] { return got.has_value(); }, 5s));
        CHECK(*got == asio::error::operation_aborted);
    }
    std::optional<error_code> after;
    pull_response answer;
    transport.async_pull(page, [&](error_code ec, pull_response r) {
        after = ec;
        answer = std::move(r);
    });
    REQUIRE(run_until(io, [&] { return after.has_value(); }, 5s));
    CHECK(!*after);
    CHECK(answer.changes.size() == 2);
}

TEST_CASE("http: a transport that may carry no request is refused", "[http][bad-input]") {
    asio::io_context io;
    http_transport_config cfg;
    cfg.max_requests_in_flight = 0;
    CHECK_THROWS_AS(http_transport(io.get_executor(), cfg), sync_error);
}
