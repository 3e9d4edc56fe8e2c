// The server's stores: the SQLite store keeps everything across restarts, a failed write
// leaves nothing behind in either store, the schema can grow, and every error is clear.
// (The sync service, engine, invariant and convergence tests run on the SQLite server store
// too, in the offsync-tests-sqlite binary.)
#include "support/world.hpp"

#include <offsync/server/sqlite_store.hpp>
#include <offsync/testing/faulty_server_store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

using namespace offsync_test;

namespace {

server::service_config config_at(manual_clock& clock) {
    server::service_config c;
    c.clock = clock.as_wall_clock();
    return c;
}

void add_landmarks(server::sync_service& s) {
    s.add_collection<Landmark>();
    s.add_collection<Reservation>();
}

mutation upsert(std::uint64_t id, std::string key, std::uint64_t base, json::object fields,
                const std::string& client) {
    mutation m;
    m.mutation_id = id;
    m.collection = "reservations";
    m.id = json::value(key);
    m.base_version = base;
    m.stamp = hlc_stamp{1'764'000'000'000 + std::int64_t(id), 0, client};
    m.fields = std::move(fields);
    return m;
}

push_response push(server::sync_service& s, std::string_view user, const std::string& client,
                   std::vector<mutation> ms) {
    push_response out;
    auto d = s.push(user, {client, std::move(ms)}, out);
    INFO(d.message);
    REQUIRE(!d);
    return out;
}

/// The memory store, or a SQLite store on a temporary file: `get()` is the store itself, and
/// `faulty()` the same store failing where `set_fault_hook` says, for a service to run on.
struct either_store {
    explicit either_store(bool on_sqlite) {
        if (on_sqlite) sqlite.emplace(file.str());
        failing.emplace(get());
    }
    server::server_store& get() {
        return sqlite ? static_cast<server::server_store&>(*sqlite) : memory;
    }
    server::faulty_server_store& faulty() { return *failing; }
    void set_fault_hook(fault_hook hook) { failing->set_fault_hook(std::move(hook)); }

    temp_file file;
    server::memory_server_store memory;
    std::optional<server::sqlite_server_store> sqlite;
    std::optional<server::faulty_server_store> failing;
};

/// A service with the Landmarks collections on `either_store`.
struct service_on_either {
    explicit service_on_either(bool on_sqlite,
                               std::function<void(server::service_config&)> tune = {})
        : store(on_sqlite), service(store.faulty(), tuned(config_at(clock), tune)) {
        add_landmarks(service);
    }
    static server::service_config tuned(server::service_config c,
                                         const std::function<void(server::service_config&)>& f) {
        if (f) f(c);
        return c;
    }
    either_store store;
    manual_clock clock;
    server::sync_service service;
};

/// What a user can observe of the service, as text.
std::string snapshot(server::sync_service& s) {
    std::string out = std::to_string(s.last_version());
    for (const char* user : {"alice", "bob"})
        for (const char* coll : {"landmarks", "reservations"}) {
            pull_response page;
            REQUIRE(!s.pull(user, {coll, 0, 5000}, page));
            out += '\n' + json::serialize(to_json(page));
        }
    return out;
}

} // namespace

// A model type in two versions of an app: the second gained a field.
namespace evolution {
struct NoteV1 {
    std::string id;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(NoteV1, (), (id, text))
struct NoteV2 {
    std::string id;
    std::string text;
    std::int32_t stars = 3;
};
BOOST_DESCRIBE_STRUCT(NoteV2, (), (id, text, stars))
} // namespace evolution

template <>
struct offsync::model_traits<evolution::NoteV1> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &evolution::NoteV1::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};
template <>
struct offsync::model_traits<evolution::NoteV2> {
    static constexpr std::string_view collection = "notes";
    static constexpr auto key = &evolution::NoteV2::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

TEST_CASE("a SQLite server store keeps records, versions and results across restarts",
          "[server-store]") {
    temp_file file;
    manual_clock clock;
    std::string before;
    std::uint64_t r1_version = 0;
    {
        server::sqlite_server_store store(file.str());
        server::sync_service service(store, config_at(clock));
        add_landmarks(service);
        REQUIRE(service.admin_put("landmarks", to_json_object(half_dome())) == 1);
        auto r = push(service, "alice", "phone",
                      {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
        REQUIRE(r.results.at(0).status == mutation_status::applied);
        r1_version = r.results[0].version;
        // alice's favorite: a per-user value of the shared landmark.
        mutation fav;
        fav.mutation_id = 2;
        fav.collection = "landmarks";
        fav.id = 1;
        fav.base_version = 1;
        fav.fields = {{"is_favorite", true}};
        REQUIRE(push(service, "alice", "phone", {fav}).results.at(0).status ==
                mutation_status::applied);
        before = snapshot(service);
    }
    server::sqlite_server_store store(file.str());
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    CHECK(snapshot(service) == before);
    CHECK(service.get("alice", "landmarks", "1")->value.at("is_favorite") == true);
    CHECK(service.get("bob", "landmarks", "1")->value.at("is_favorite") == false);

    // A retry of mutation 1 (its acknowledgement lost before the restart) is recognised.
    auto retry = push(service, "alice", "phone",
                      {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
    CHECK(retry.results.at(0).status == mutation_status::applied);
    CHECK(retry.results[0].version == r1_version);
    CHECK(snapshot(service) == before);

    // Per-field writers survived: the same client writing on an old base is no conflict...
    auto own = push(service, "alice", "phone", {upsert(3, "r-1", 0, {{"notes", "x"}}, "phone")});
    CHECK(own.results.at(0).status == mutation_status::applied);
    // ...another client writing the same field on an old base is one...
    auto other =
        push(service, "alice", "laptop", {upsert(1, "r-1", r1_version, {{"notes", "y"}}, "laptop")});
    CHECK(other.results.at(0).status == mutation_status::conflict);
    // ...and a different field merges.
    auto merge = push(service, "alice", "laptop",
                      {upsert(2, "r-1", r1_version, {{"party_size", 7}}, "laptop")});
    CHECK(merge.results.at(0).status == mutation_status::applied);
    // The version sequence carried on.
    CHECK(merge.results[0].version == own.results[0].version + 1);
    CHECK(service.last_version() == merge.results[0].version);
}

TEST_CASE("the feed as a client pulls it leaves the values of that client's writes unread",
          "[server-store][echo]") {
    temp_file file;
    manual_clock clock;
    server::sqlite_server_store store(file.str());
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    push(service, "alice", "phone",
         {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone"),
          upsert(2, "r-2", 0, to_json_object(reservation("r-2")), "phone")});
    push(service, "alice", "laptop",
         {upsert(1, "r-3", 0, to_json_object(reservation("r-3")), "laptop")});
    const auto& schema = schema_of<Reservation>();
    std::vector<server::server_record> page;

    store.feed_for_client(schema, "alice", 0, 10, page, "phone");
    REQUIRE(page.size() == 3);
    CHECK(page[0].key == "r-1");
    CHECK(page[0].last_writer == "phone");
    CHECK(page[0].value.empty()); // answered as an echo: never parsed
    CHECK(page[1].value.empty());
    CHECK(page[2].key == "r-3");
    CHECK(page[2].value.at("id") == "r-3"); // another writer's record is read whole

    std::vector<server::server_record> full;
    store.feed(schema, "alice", 0, 10, full); // no client: every value read
    REQUIRE(full.size() == 3);
    CHECK(full[0].value.at("id") == "r-1");
    store.feed_for_client(schema, "alice", 0, 10, page, "");
    CHECK(page[0].value == full[0].value);

    // A store without the capability reads everything; the service answers echoes the same.
    server::memory_server_store memory;
    server::sync_service plain(memory, config_at(clock));
    add_landmarks(plain);
    push(plain, "alice", "phone",
         {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
    memory.feed_for_client(schema, "alice", 0, 10, page, "phone");
    REQUIRE(page.size() == 1);
    CHECK(page[0].value.at("id") == "r-1");
    for (auto* s : {&service, &plain}) {
        pull_request request{"reservations", 0, 10};
        request.client_id = "phone";
        pull_response answer;
        REQUIRE(!s->pull("alice", request, answer));
        REQUIRE(!answer.changes.empty());
        CHECK(answer.changes[0].echo);
        CHECK(answer.changes[0].value.empty());
    }
}

TEST_CASE("a push the server store fails to write leaves nothing behind", "[server-store]") {
    const std::string op =
        GENERATE("put", "remember_result", "set_counters", "feed_version_below",
                 "keep_newest_results", "commit");
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(op, on_sqlite);
    service_on_either w(on_sqlite);
    auto& store = w.store;
    auto& service = w.service;
    REQUIRE(service.admin_put("landmarks", to_json_object(half_dome())) == 1);
    push(service, "alice", "phone",
         {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
    const auto before = snapshot(service);

    // Fail the second time the operation runs, in the middle of a three-mutation push.
    int calls = 0;
    auto hook = [&](std::string_view at) { return at == op && ++calls == 2; };
    store.set_fault_hook(hook);
    const push_request request{
        "phone",
        {upsert(2, "r-1", 2, {{"party_size", 4}}, "phone"),
         upsert(3, "r-2", 0, to_json_object(reservation("r-2")), "phone"),
         upsert(4, "r-3", 0, to_json_object(reservation("r-3")), "phone")}};
    // These run once per push: make their first run fail.
    if (op == "commit" || op == "set_counters" || op == "feed_version_below" ||
        op == "keep_newest_results")
        calls = 1;
    auto answer = service.handle_push("alice", json::serialize(to_json(request)));
    CHECK(answer.error.code == errc::server_error);
    CHECK(answer.error.message.find("injected") != std::string::npos);
    CHECK(snapshot(service) == before);

    // The client retries the same request once the store works again: applied exactly once.
    store.set_fault_hook({});
    push_response first, second;
    REQUIRE(!service.push("alice", request, first));
    REQUIRE(!service.push("alice", request, second));
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(first.results.at(i).status == mutation_status::applied);
        CHECK(second.results.at(i).version == first.results[i].version);
    }
    CHECK(first.own_writes);
    CHECK(!second.own_writes); // a replay writes nothing: no range of its own
    CHECK(service.last_version() == 5);
    CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 4);
}

TEST_CASE("a push answer tells the feed range its own writes fill alone", "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    service_on_either w(on_sqlite);
    auto& service = w.service;
    REQUIRE(service.admin_put("landmarks", to_json_object(half_dome())) == 1);
    auto create = [](std::uint64_t id, const std::string& key, const std::string& client) {
        return upsert(id, key, 0, to_json_object(reservation(key)), client);
    };

    // alice's first reservations: nothing of hers below them.
    auto first = push(service, "alice", "phone",
                      {create(1, "r-1", "phone"), create(2, "r-2", "phone")});
    REQUIRE(first.own_writes);
    CHECK(first.own_writes->collection == "reservations");
    CHECK(first.own_writes->after == 0);
    CHECK(first.own_writes->through == 3);
    CHECK(first.results[1].version == 3);

    // bob's writes take versions, but not from alice's feed: the range still starts at 3.
    push(service, "bob", "bobs-phone", {create(1, "b-1", "bobs-phone")});
    auto second = push(service, "alice", "phone", {create(3, "r-3", "phone")});
    REQUIRE(second.own_writes);
    CHECK(second.own_writes->after == 3);
    CHECK(second.own_writes->through == 5);

    // Another device of alice's writes in between: the range starts at its write.
    const auto laptop = push(service, "alice", "laptop", {create(1, "r-4", "laptop")});
    auto third = push(service, "alice", "phone",
                      {upsert(4, "r-1", 2, {{"party_size", 6}}, "phone")});
    REQUIRE(third.own_writes);
    CHECK(third.own_writes->after == laptop.results[0].version);
    CHECK(third.own_writes->through == third.results[0].version);

    // An `applied` answer that wrote nothing tells an older version, here the laptop's: a
    // delete of a record the server never had, an upsert that changes nothing. Told as a range,
    // it would hide the laptop's write from the phone.
    const auto laptop_again = push(service, "alice", "laptop",
                                   {upsert(2, "r-5", 0, to_json_object(reservation("r-5")),
                                           "laptop")});
    const auto laptop_version = laptop_again.results[0].version;
    auto ghost = upsert(10, "never-there", 0, {}, "phone");
    ghost.op = mutation_op::remove;
    auto ghost_only = push(service, "alice", "phone", {ghost});
    CHECK(ghost_only.results[0].status == mutation_status::applied);
    CHECK(ghost_only.results[0].version == laptop_version);
    CHECK(!ghost_only.own_writes);
    auto unchanged =
        push(service, "alice", "phone", {upsert(11, "r-5", laptop_version, {}, "phone")});
    CHECK(unchanged.results[0].version == laptop_version);
    CHECK(!unchanged.own_writes);
    ghost.mutation_id = 12;
    auto with_write = push(service, "alice", "phone",
                           {ghost, create(13, "r-6", "phone")});
    REQUIRE(with_write.own_writes);
    CHECK(with_write.own_writes->after == laptop_version); // the laptop's write stays outside
    CHECK(with_write.own_writes->through == with_write.results[1].version);

    // Nothing written, nothing told: a replay, a conflict, a rejection.
    CHECK(!push(service, "alice", "phone", {create(3, "r-3", "phone")}).own_writes);
    auto conflict = push(service, "alice", "phone",
                         {upsert(5, "r-4", 0, {{"party_size", 1}}, "phone")});
    CHECK(conflict.results[0].status == mutation_status::conflict);
    CHECK(!conflict.own_writes);
    auto rejected = push(service, "alice", "phone",
                         {upsert(6, "r-9", 0, {{"party_size", "many"}}, "phone")});
    CHECK(rejected.results[0].status == mutation_status::rejected);
    CHECK(!rejected.own_writes);

    // The shared catalog's feed merges each user's favorites into it: no range.
    mutation favorite;
    favorite.mutation_id = 7;
    favorite.collection = "landmarks";
    favorite.id = 1;
    favorite.base_version = 1;
    favorite.stamp = hlc_stamp{1'764'000'000'007, 0, "phone"};
    favorite.fields = {{"is_favorite", true}};
    auto liked = push(service, "alice", "phone", {favorite});
    CHECK(liked.results[0].status == mutation_status::applied);
    CHECK(!liked.own_writes);
    // Writes to two collections in one push: no range either.
    favorite.mutation_id = 9;
    favorite.base_version = liked.results[0].version;
    favorite.fields = {{"is_favorite", false}};
    auto mixed = push(service, "alice", "phone", {create(8, "r-8", "phone"), favorite});
    CHECK(mixed.results[0].status == mutation_status::applied);
    CHECK(mixed.results[1].status == mutation_status::applied);
    CHECK(!mixed.own_writes);
}

TEST_CASE("a new record is inserted without a lookup, and only if its key is free",
          "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    service_on_either w(on_sqlite);
    auto& store = w.store;
    auto& service = w.service;
    const auto& schema = schema_of<Reservation>();

    // The store: a free key is inserted, a taken one (a tombstone too) is left as it is.
    server::server_record fresh;
    fresh.key = "s-1";
    fresh.value = to_json_object(reservation("s-1"));
    fresh.version = 7;
    fresh.last_writer = "phone";
    fresh.fields.assign(schema.fields.size(), server::field_stamp{7, "phone"});
    store.get().begin();
    CHECK(store.get().insert_new(schema, "alice", fresh));
    auto again = fresh;
    again.version = 8;
    again.value["party_size"] = 9;
    CHECK_FALSE(store.get().insert_new(schema, "alice", again));
    CHECK(store.get().find(schema, "alice", "s-1")->version == 7);
    CHECK(store.get().insert_new(schema, "bob", again)); // another owner's key is another key
    auto tomb = fresh;
    tomb.key = "s-2";
    tomb.deleted = true;
    tomb.value = {};
    store.get().put(schema, "alice", tomb);
    auto over = fresh;
    over.key = "s-2";
    over.version = 9;
    CHECK_FALSE(store.get().insert_new(schema, "alice", over));
    CHECK(store.get().find(schema, "alice", "s-2")->deleted);
    store.get().rollback();

    // The service: a mutation that says its record is new but finds it taken meets the
    // record, as it would with the lookup first.
    auto created = push(service, "alice", "phone",
                        {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
    REQUIRE(created.results[0].status == mutation_status::applied);
    auto clash = push(service, "alice", "laptop",
                      {upsert(1, "r-1", 0, {{"party_size", 8}}, "laptop")});
    CHECK(clash.results[0].status == mutation_status::conflict);
    REQUIRE(clash.results[0].server);
    CHECK(clash.results[0].server->version == created.results[0].version);
    // Over a tombstone: the general path recreates it (the delete was this client's own).
    auto erase = upsert(2, "r-1", created.results[0].version, {}, "phone");
    erase.op = mutation_op::remove;
    const auto deleted = push(service, "alice", "phone", {erase}).results[0].version;
    auto recreated = push(service, "alice", "phone",
                          {upsert(3, "r-1", 0, {{"party_size", 5}}, "phone")});
    CHECK(recreated.results[0].status == mutation_status::applied);
    CHECK(recreated.results[0].version == deleted + 1);
    CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 5);
    // A new record that does not validate is rejected with its reason, and nothing is written.
    const auto before = service.last_version();
    auto bad = push(service, "alice", "phone",
                    {upsert(4, "r-2", 0, {{"party_size", "many"}}, "phone")});
    CHECK(bad.results[0].status == mutation_status::rejected);
    CHECK(bad.results[0].error_code == "invalid_field");
    CHECK(service.last_version() == before);
    CHECK(!service.get("alice", "reservations", "r-2"));
}

TEST_CASE("a store keeps at least a client's newest results by count, and not many more",
          "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    either_store store(on_sqlite);
    auto& s = store.get();
    auto remember = [&](const std::string& client, std::uint64_t from, std::uint64_t through) {
        s.begin();
        for (auto id = from; id <= through; ++id) {
            mutation_result r;
            r.mutation_id = id;
            r.version = 1000 + id;
            s.remember_result(client, r);
        }
        s.commit();
    };
    auto kept = [&](const std::string& client, std::uint64_t through) {
        std::vector<std::uint64_t> ids;
        for (std::uint64_t id = 1; id <= through; ++id)
            if (auto r = s.find_result(client, id)) {
                CHECK(r->version == 1000 + id);
                ids.push_back(id);
            }
        return ids;
    };
    remember("alice\nphone", 1, 100);
    remember("alice\nlaptop", 1, 10);
    s.begin();
    s.keep_newest_results("alice\nphone", 40);
    s.commit();
    auto ids = kept("alice\nphone", 100);
    REQUIRE(ids.size() == 40); // far past the slack: trimmed to exactly the count
    CHECK(ids.front() == 61);
    CHECK(kept("alice\nlaptop", 10).size() == 10); // another client's are its own
    CHECK(s.newest_result("alice\nphone") == 100);

    // A few more: never fewer than the count, at most a quarter more.
    remember("alice\nphone", 101, 109);
    s.begin();
    s.keep_newest_results("alice\nphone", 40);
    s.commit();
    ids = kept("alice\nphone", 109);
    CHECK(ids.size() >= 40);
    CHECK(ids.size() <= 50);
    CHECK(ids.back() == 109);
    CHECK(ids.front() == 109 - ids.size() + 1);

    // A trim in a transaction that rolls back forgets nothing.
    s.begin();
    s.keep_newest_results("alice\nphone", 1);
    s.rollback();
    CHECK(kept("alice\nphone", 109) == ids);
    // A client with nothing remembered, and a count of zero.
    s.begin();
    s.keep_newest_results("nobody\nnothing", 5);
    s.keep_newest_results("alice\nlaptop", 0);
    s.commit();
    CHECK(kept("alice\nlaptop", 10).empty());
    CHECK(s.newest_result("alice\nlaptop") == 0);
}

namespace {

/// A statement's single integer answer, on a store's own connection.
std::int64_t sql_int(sqlite3* db, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) == SQLITE_OK);
    offsync::detail::sqlite_statement st(raw);
    REQUIRE(sqlite3_step(st.get()) == SQLITE_ROW);
    return sqlite3_column_int64(st.get(), 0);
}

void sql_exec(sqlite3* db, const char* sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
    INFO((message ? message : ""));
    sqlite3_free(message);
    REQUIRE(rc == SQLITE_OK);
}

} // namespace

TEST_CASE("the SQLite server store remembers a run of plain successes as one row",
          "[server-store]") {
    temp_file file;
    server::sqlite_server_store store(file.str());
    auto* db = store.native_handle();
    const std::string phone = "alice\nphone", laptop = "alice\nlaptop";
    auto applied = [](std::uint64_t id, std::uint64_t version) {
        mutation_result r;
        r.mutation_id = id;
        r.version = version;
        return r;
    };
    auto version_of = [&](const std::string& client, std::uint64_t id) -> std::optional<std::uint64_t> {
        auto r = store.find_result(client, id);
        if (!r) return std::nullopt;
        CHECK(r->mutation_id == id);
        return r->status == mutation_status::applied ? r->version : 0;
    };
    mutation_result rejected;
    rejected.mutation_id = 1'011;
    rejected.status = mutation_status::rejected;
    rejected.error_code = "invalid_field";
    rejected.error_message = "party_size must be positive";

    store.begin();
    for (std::uint64_t id = 1'001; id <= 1'010; ++id) store.remember_result(phone, applied(id, id - 900));
    store.remember_result(phone, rejected);                 // a result with detail ends the run
    store.remember_result(phone, applied(1'012, 120));      // a new run...
    store.remember_result(laptop, applied(1'013, 121));     // ...ended by another client
    store.remember_result(phone, applied(1'013, 122));
    store.remember_result(phone, applied(1'014, 150));      // a version that does not follow
    store.remember_result(phone, applied(1'016, 151));      // an id that does not follow
    store.remember_result(phone, applied(1'017, 152));
    // Read inside the transaction: the run being built is there too.
    CHECK(version_of(phone, 1'017) == 152u);
    CHECK(store.newest_result(phone) == 1'017u);
    store.commit();

    // Rows: 1'001-1'010, the rejection, 1'012, laptop's 1'013, 1'013, 1'014, 1'016-1'017.
    CHECK(sql_int(db, "SELECT count(*) FROM offsync_server_results") == 7);
    CHECK(sql_int(db, "SELECT sum(run) FROM offsync_server_results") == 17);
    for (std::uint64_t id = 1'001; id <= 1'010; ++id) CHECK(version_of(phone, id) == id - 900);
    auto remembered_rejection = store.find_result(phone, 1'011);
    REQUIRE(remembered_rejection);
    CHECK(remembered_rejection->status == mutation_status::rejected);
    CHECK(remembered_rejection->error_message == "party_size must be positive");
    CHECK(version_of(phone, 1'012) == 120u);
    CHECK(version_of(phone, 1'013) == 122u);
    CHECK(version_of(laptop, 1'013) == 121u);
    CHECK(version_of(phone, 1'014) == 150u);
    CHECK(version_of(phone, 1'016) == 151u);
    CHECK(version_of(phone, 1'017) == 152u);
    for (std::uint64_t id : {1u, 1'000u, 1'015u, 1'018u, 99'999u})
        CHECK_FALSE(version_of(phone, id));
    CHECK_FALSE(version_of(laptop, 1'012));

    SECTION("results that carry a record, or are not plain successes, never join a run") {
        change server;
        server.id = json::value("r-x");
        server.version = 153;
        server.stamp = hlc_stamp{1, 0, "laptop"};
        server.value = to_json_object(reservation("r-x"));
        auto merged = applied(1'018, 153); // applied, with the merged record sent back
        merged.server = server;
        mutation_result conflict;
        conflict.mutation_id = 1'020;
        conflict.status = mutation_status::conflict;
        conflict.version = 155;
        conflict.server = server;
        store.begin();
        store.remember_result(phone, merged);
        store.remember_result(phone, applied(1'019, 154));
        store.remember_result(phone, conflict);
        store.remember_result(phone, applied(1'021, 156));
        store.commit();
        CHECK(sql_int(db, "SELECT count(*) FROM offsync_server_results") == 11);
        CHECK(sql_int(db, "SELECT max(run) FROM offsync_server_results WHERE mutation_id > 1017") == 1);
        auto back = store.find_result(phone, 1'018);
        REQUIRE(back);
        CHECK(back->server);
        CHECK(back->version == 153);
        CHECK(store.find_result(phone, 1'020)->status == mutation_status::conflict);
        CHECK(version_of(phone, 1'019) == 154u);
        CHECK(version_of(phone, 1'021) == 156u);
    }
    SECTION("ids and versions may start at 0") {
        const std::string watch = "alice\nwatch", tv = "alice\ntv";
        store.begin();
        for (std::uint64_t id = 0; id <= 2; ++id) store.remember_result(watch, applied(id, id));
        store.remember_result(tv, applied(0, 0));
        store.commit();
        for (std::uint64_t id = 0; id <= 2; ++id) CHECK(version_of(watch, id) == id);
        CHECK(version_of(tv, 0) == 0u);
        CHECK_FALSE(version_of(tv, 1));
        store.begin();
        store.keep_newest_results(watch, 1);
        store.commit();
        CHECK_FALSE(version_of(watch, 1));
        CHECK(version_of(watch, 2) == 2u);
    }
    SECTION("a run rolled back is not remembered") {
        store.begin();
        store.remember_result(phone, applied(1'018, 153));
        store.remember_result(phone, applied(1'019, 154));
        store.rollback();
        CHECK_FALSE(version_of(phone, 1'018));
        CHECK(store.newest_result(phone) == 1'017u);
        CHECK(sql_int(db, "SELECT count(*) FROM offsync_server_results") == 7);
    }
    SECTION("a trim that cuts through a run keeps exactly the newest ones") {
        store.begin();
        store.keep_newest_results(phone, 9); // 1'017, 1'016, 1'014, 1'013, 1'012, 1'011, 1'010..1'008
        store.commit();
        for (std::uint64_t id = 1'001; id <= 1'007; ++id) CHECK_FALSE(version_of(phone, id));
        for (std::uint64_t id = 1'008; id <= 1'010; ++id) CHECK(version_of(phone, id) == id - 900);
        CHECK(store.find_result(phone, 1'011));
        CHECK(version_of(laptop, 1'013) == 121u);
        CHECK(sql_int(db, "SELECT sum(run) FROM offsync_server_results") == 10);
        SECTION("one that ends at a row's edge forgets the older rows whole") {
            store.begin();
            store.keep_newest_results(phone, 2); // the run 1'016-1'017
            store.commit();
            CHECK(version_of(phone, 1'016) == 151u);
            CHECK(version_of(phone, 1'017) == 152u);
            CHECK_FALSE(version_of(phone, 1'014));
            CHECK_FALSE(version_of(phone, 1'010));
            CHECK(sql_int(db, "SELECT sum(run) FROM offsync_server_results") == 3);
        }
        SECTION("a trim to one keeps the newest alone") {
            store.begin();
            store.keep_newest_results(phone, 1);
            store.commit();
            CHECK(version_of(phone, 1'017) == 152u);
            CHECK_FALSE(version_of(phone, 1'016));
            CHECK(sql_int(db, "SELECT sum(run) FROM offsync_server_results") == 2);
        }
    }
    SECTION("a corrupt run fails its lookup clearly and changes nothing") {
        const std::pair<const char*, std::uint64_t> corruptions[] = {
            {"UPDATE offsync_server_results SET run = 0 WHERE mutation_id = 1010", 1'005},
            {"UPDATE offsync_server_results SET run = -5 WHERE mutation_id = 1010", 1'005},
            {"UPDATE offsync_server_results SET run = 2 WHERE mutation_id = 1011", 1'011},
            {"UPDATE offsync_server_results SET run = 5000 WHERE mutation_id = 1010", 1'005},
            {"UPDATE offsync_server_results SET version = 3 WHERE mutation_id = 1010", 1'005}};
        for (const auto& [corrupt, looked_up] : corruptions) {
            INFO(corrupt);
            sql_exec(db, "SAVEPOINT corrupt");
            sql_exec(db, corrupt);
            auto d = error_of([&, id = looked_up] { store.find_result(phone, id); });
            CHECK(d.code == errc::storage_failure);
            CHECK(d.message.find("remembered run") != std::string::npos);
            if (looked_up == 1'005) { // a trim that reads that row fails the same way
                d = error_of([&] { store.keep_newest_results(phone, 10); });
                CHECK(d.code == errc::storage_failure);
                CHECK(d.message.find("remembered run") != std::string::npos);
            }
            sql_exec(db, "ROLLBACK TO corrupt");
            sql_exec(db, "RELEASE corrupt");
            CHECK(version_of(phone, 1'005) == 105u); // the statement was left usable
        }
    }
}

TEST_CASE("a push of new records from one client is remembered in one row, and its retry is "
          "answered from it",
          "[server-store]") {
    service_on_either w(true);
    std::vector<mutation> batch;
    for (std::uint64_t id = 1; id <= 300; ++id)
        batch.push_back(upsert(id, "r-" + std::to_string(1000 + id), 0,
                               to_json_object(reservation("r-" + std::to_string(1000 + id))),
                               "phone"));
    const auto first = push(w.service, "alice", "phone", batch);
    auto* db = w.store.sqlite->native_handle();
    CHECK(sql_int(db, "SELECT count(*) FROM offsync_server_results") == 1);
    CHECK(sql_int(db, "SELECT run FROM offsync_server_results") == 300);
    const auto last = w.service.last_version();
    // The whole push again, and a part of it, each answered as before and applying nothing.
    const auto again = push(w.service, "alice", "phone", batch);
    const std::vector<mutation> middle(batch.begin() + 100, batch.begin() + 103);
    const auto part = push(w.service, "alice", "phone", middle);
    CHECK(w.service.last_version() == last);
    REQUIRE(again.results.size() == 300);
    for (std::size_t i = 0; i < 300; ++i) {
        CHECK(again.results[i].status == mutation_status::applied);
        CHECK(again.results[i].version == first.results[i].version);
    }
    for (std::size_t i = 0; i < 3; ++i) CHECK(part.results[i].version == first.results[100 + i].version);
}

TEST_CASE("a server file of schema version 1 is migrated on open and keeps its results",
          "[server-store]") {
    temp_file file;
    {
        server::sqlite_server_store store(file.str());
        manual_clock clock;
        server::sync_service service(store, config_at(clock));
        add_landmarks(service);
        push(service, "alice", "phone",
             {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone"),
              upsert(2, "r-2", 0, to_json_object(reservation("r-2")), "phone")});
    }
    mutation_result rejected;
    rejected.mutation_id = 7;
    rejected.status = mutation_status::rejected;
    rejected.error_code = "invalid_field";
    rejected.error_message = "party_size must be positive";
    // Turn the file back into what version 1 wrote: one row per result, no run column (or,
    // to make the migration fail, one that has it already), and a result with its detail.
    auto make_version_1 = [&](bool with_run_column) {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(file.str().c_str(), &db) == SQLITE_OK);
        sql_exec(db, "BEGIN");
        sql_exec(db, with_run_column
                         ? "CREATE TABLE v1_results (client TEXT NOT NULL, mutation_id INTEGER "
                           "NOT NULL, version INTEGER NOT NULL, detail TEXT, run INTEGER, "
                           "PRIMARY KEY (client, mutation_id)) WITHOUT ROWID"
                         : "CREATE TABLE v1_results (client TEXT NOT NULL, mutation_id INTEGER "
                           "NOT NULL, version INTEGER NOT NULL, detail TEXT, "
                           "PRIMARY KEY (client, mutation_id)) WITHOUT ROWID");
        sql_exec(db, "INSERT INTO v1_results (client, mutation_id, version, detail) "
                     "SELECT client, mutation_id - 1, version - 1, NULL "
                     "FROM offsync_server_results");
        sql_exec(db, "INSERT INTO v1_results (client, mutation_id, version, detail) "
                     "SELECT client, mutation_id, version, NULL FROM offsync_server_results");
        const auto detail = "INSERT INTO v1_results (client, mutation_id, version, detail) "
                            "SELECT client, 7, 0, '" +
                            json::serialize(to_json(rejected)) +
                            "' FROM offsync_server_results LIMIT 1";
        sql_exec(db, detail.c_str());
        sql_exec(db, "DROP TABLE offsync_server_results");
        sql_exec(db, "ALTER TABLE v1_results RENAME TO offsync_server_results");
        sql_exec(db, "DROP TABLE offsync_server_groups");
        sql_exec(db, "DROP TABLE offsync_server_members");
        sql_exec(db, "DROP TABLE offsync_server_channels");
        sql_exec(db, "UPDATE offsync_server_meta SET value = 1 WHERE key = 'schema_version'");
        sql_exec(db, "COMMIT");
        CHECK(sql_int(db, "SELECT count(*) FROM offsync_server_results") == 3);
        sqlite3_close(db);
    };

    SECTION("a migration that fails leaves the file as it was") {
        make_version_1(true);
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("run") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
        return;
    }
    make_version_1(false);
    server::sqlite_server_store store(file.str());
    CHECK(sql_int(store.native_handle(),
                  "SELECT value FROM offsync_server_meta WHERE key = 'schema_version'") == 4);
    auto remembered = store.find_result("alice\nphone", 7);
    REQUIRE(remembered);
    CHECK(remembered->status == mutation_status::rejected);
    CHECK(remembered->error_message == rejected.error_message);
    manual_clock clock;
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    const auto last = service.last_version();
    // Both results of version 1 answer their retries; a new push is remembered as a run.
    const auto retry = push(service, "alice", "phone",
                            {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone"),
                             upsert(2, "r-2", 0, to_json_object(reservation("r-2")), "phone")});
    CHECK(retry.results[0].version == last - 1);
    CHECK(retry.results[1].version == last);
    CHECK(service.last_version() == last);
    push(service, "alice", "phone",
         {upsert(8, "r-3", 0, to_json_object(reservation("r-3")), "phone"),
          upsert(9, "r-4", 0, to_json_object(reservation("r-4")), "phone")});
    CHECK(sql_int(store.native_handle(), "SELECT run FROM offsync_server_results "
                                         "WHERE mutation_id = 9") == 2);
    CHECK(service.last_version() == last + 2);
}

TEST_CASE("a server file of schema version 2 gains the tables of sharing on open, records kept",
          "[server-store][sharing]") {
    temp_file file;
    {
        server::sqlite_server_store store(file.str());
        manual_clock clock;
        server::sync_service service(store, config_at(clock));
        add_landmarks(service);
        push(service, "alice", "phone",
             {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
    }
    // Version 2 had no sharing tables; `keep_groups_table` leaves one behind, so that the
    // migration's CREATE fails.
    auto make_version_2 = [&](bool keep_groups_table) {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(file.str().c_str(), &db) == SQLITE_OK);
        sql_exec(db, "BEGIN");
        if (!keep_groups_table) sql_exec(db, "DROP TABLE offsync_server_groups");
        sql_exec(db, "DROP TABLE offsync_server_members");
        sql_exec(db, "DROP TABLE offsync_server_channels");
        sql_exec(db, "UPDATE offsync_server_meta SET value = 2 WHERE key = 'schema_version'");
        sql_exec(db, "COMMIT");
        sqlite3_close(db);
    };
    SECTION("a migration that fails leaves the file as it was") {
        make_version_2(true);
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("offsync_server_groups") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
        return;
    }
    make_version_2(false);
    server::sqlite_server_store store(file.str());
    CHECK(sql_int(store.native_handle(),
                  "SELECT value FROM offsync_server_meta WHERE key = 'schema_version'") == 4);
    manual_clock clock;
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    CHECK(service.get("alice", "reservations", "r-1"));
    REQUIRE_FALSE(service.create_group("family"));
    service.add_user("bob");
    REQUIRE_FALSE(service.grant("family", "bob"));
    CHECK(service.members("family") == std::vector<std::string>{"bob"});
}

TEST_CASE("a server file of schema version 3 learns which channel entries are present, a join "
          "after it sees exactly the group's records",
          "[server-store][sharing]") {
    temp_file file;
    std::uint64_t next_id = 0;
    auto write = [&](const auto& value, std::uint64_t base = 0) {
        using T = std::decay_t<decltype(value)>;
        mutation m;
        m.mutation_id = ++next_id;
        m.collection = std::string(model_traits<T>::collection);
        m.id = json::string(key_of(value));
        m.base_version = base;
        m.fields = to_json_object(value);
        return m;
    };
    auto open_service = [](server::sqlite_server_store& store, manual_clock& clock) {
        auto service = std::make_unique<server::sync_service>(store, config_at(clock));
        service->add_collections(collections<List, Item>{});
        for (const char* user : {"alice", "bob", "carol"}) service->add_user(user);
        return service;
    };
    // In list "home": i-1 stays, i-2 moves to "work", i-3 is deleted. Bob joins "work" only.
    {
        server::sqlite_server_store store(file.str());
        manual_clock clock;
        auto service = open_service(store, clock);
        const auto home = push(*service, "alice", "phone",
                               {write(List{"home", "groceries", {"alice"}}),
                                write(List{"work", "office", {"alice", "bob"}}),
                                write(Item{"i-1", "home", "milk"}), write(Item{"i-2", "home", "tea"}),
                                write(Item{"i-3", "home", "jam"})});
        REQUIRE(home.results.size() == 5);
        auto remove = write(Item{"i-3", "home", "jam"}, home.results[4].version);
        remove.op = mutation_op::remove;
        remove.fields = {};
        push(*service, "alice", "phone",
             {write(Item{"i-2", "work", "tea"}, home.results[3].version), std::move(remove)});
    }
    // Version 3 had no presence column (or, to make the migration fail, the file has it).
    auto make_version_3 = [&](bool keep_column) {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(file.str().c_str(), &db) == SQLITE_OK);
        sql_exec(db, "BEGIN");
        if (!keep_column) sql_exec(db, "ALTER TABLE offsync_server_channels DROP COLUMN present");
        sql_exec(db, "UPDATE offsync_server_meta SET value = 3 WHERE key = 'schema_version'");
        sql_exec(db, "COMMIT");
        sqlite3_close(db);
    };
    SECTION("a migration that fails leaves the file as it was") {
        make_version_3(true);
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("present") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
        return;
    }
    make_version_3(false);
    server::sqlite_server_store store(file.str());
    CHECK(sql_int(store.native_handle(),
                  "SELECT value FROM offsync_server_meta WHERE key = 'schema_version'") == 4);
    CHECK(sql_int(store.native_handle(),
                  "SELECT count(*) FROM offsync_server_channels WHERE present IS NULL") > 0);
    manual_clock clock;
    auto service = open_service(store, clock);
    // A record written after the migration is known present; those before are read.
    push(*service, "alice", "phone", {write(Item{"i-4", "home", "bread"})});
    // The ids a user's pull from 0 names, and those of them live on the device after it.
    struct seen {
        std::set<std::string> named, live;
    };
    auto items_of = [&](std::string_view user) {
        seen out;
        pull_response page;
        REQUIRE_FALSE(service->pull(user, {"items", 0, 1000}, page));
        for (const auto& c : page.changes) {
            const auto id = std::string(c.id.as_string());
            out.named.insert(id);
            if (c.deleted) out.live.erase(id);
            else out.live.insert(id);
        }
        return out;
    };
    using ids = std::set<std::string>;
    CHECK(items_of("bob").named == ids{"i-2"});
    REQUIRE_FALSE(service->grant("home", "bob"));
    // Neither the item that left nor the deleted one is named to the newcomer.
    CHECK(items_of("bob").named == ids{"i-1", "i-2", "i-4"});
    CHECK(items_of("bob").live == ids{"i-1", "i-2", "i-4"});
    REQUIRE_FALSE(service->grant("home", "carol"));
    CHECK(items_of("carol").named == ids{"i-1", "i-4"});
    // A leave removes what the leaver saw of the group, and keeps what they see elsewhere.
    REQUIRE_FALSE(service->revoke("home", "bob"));
    CHECK(items_of("bob").live == ids{"i-2"});
    CHECK(items_of("bob").named == ids{"i-1", "i-2", "i-4"});
}

TEST_CASE("retries are answered whatever order a push's ids came in, around runs already kept",
          "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    service_on_either w(on_sqlite);
    auto create = [](std::uint64_t id) {
        const auto key = "r-" + std::to_string(id);
        return upsert(id, key, 0, to_json_object(reservation(key)), "phone");
    };
    auto pushed = [&](std::vector<std::uint64_t> ids) {
        std::vector<mutation> ms;
        for (auto id : ids) ms.push_back(create(id));
        auto answer = push(w.service, "alice", "phone", ms);
        std::map<std::uint64_t, std::uint64_t> versions;
        for (const auto& r : answer.results) {
            CHECK(r.status == mutation_status::applied);
            versions[r.mutation_id] = r.version;
        }
        return versions;
    };
    auto first = pushed({10, 11, 12});           // a run
    auto second = pushed({5, 3, 4, 13, 14, 2});  // ids below it, out of order, then above
    first.insert(second.begin(), second.end());
    const auto last = w.service.last_version();
    CHECK(last == 9);
    // Everything again, in another order, and a part: each answered as before, nothing applied.
    for (const auto& ids : {std::vector<std::uint64_t>{14, 2, 3, 4, 5, 10, 11, 12, 13},
                            std::vector<std::uint64_t>{12, 13}}) {
        for (const auto& [id, version] : pushed(ids)) CHECK(first.at(id) == version);
    }
    CHECK(w.service.last_version() == last);
}

TEST_CASE("a push with a mutation id beyond 2^53-1 is refused whole", "[server-store]") {
    service_on_either w(true);
    push_response out;
    auto d = w.service.push("alice", {"phone", {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone"),
                                                upsert(std::uint64_t(1) << 63, "r-2", 0,
                                                       to_json_object(reservation("r-2")), "phone")}},
                            out);
    CHECK(d.code == errc::invalid_field);
    CHECK(d.message.find("mutations[1]") != std::string::npos);
    CHECK(d.message.find("2^53") != std::string::npos);
    CHECK(w.service.last_version() == 0);
    CHECK_FALSE(w.service.get("alice", "reservations", "r-1"));
}

TEST_CASE("a retry is recognised among a client's newest results however far apart its ids",
          "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    // Remember 4 results per client: each id below is thousands above the one before, as a
    // client store restarted between edits would draw them.
    service_on_either w(on_sqlite, [](server::service_config& c) {
        c.idempotency_window = 4;
        c.max_mutations_per_push = 1;
    });
    auto& service = w.service;
    auto create = [](std::uint64_t id, const std::string& key) {
        return upsert(id, key, 0, to_json_object(reservation(key)), "phone");
    };
    const std::uint64_t ids[] = {1, 5'000, 10'000, 15'000, 20'000, 25'000};
    std::vector<std::uint64_t> versions;
    for (std::size_t i = 0; i < 6; ++i)
        versions.push_back(
            push(service, "alice", "phone", {create(ids[i], "r-" + std::to_string(i))})
                .results[0]
                .version);
    const auto last = service.last_version();

    // The four newest are answered from memory, each in a push of its own.
    for (std::size_t i = 2; i < 6; ++i) {
        auto again = push(service, "alice", "phone", {create(ids[i], "r-" + std::to_string(i))});
        CHECK(again.results[0].status == mutation_status::applied);
        CHECK(again.results[0].version == versions[i]);
    }
    CHECK(service.last_version() == last);

    // A push whose store fails after the trim forgets nothing: ids[2] is still recognised.
    w.store.set_fault_hook([](std::string_view at) { return at == "commit"; });
    push_response failed;
    CHECK(service.push("alice", {"phone", {create(30'000, "r-6")}}, failed));
    w.store.set_fault_hook({});
    CHECK(push(service, "alice", "phone", {create(ids[2], "r-2")}).results[0].version ==
          versions[2]);
    CHECK(service.last_version() == last);

    // Two new ones push the oldest two of those (ids[2], ids[3]) out. Then another device
    // edits r-3 and r-4: a retry of the remembered r-4 gets its old answer, while a retry of
    // the forgotten r-3 is applied again and meets the other device's edit as a conflict.
    push(service, "alice", "phone", {create(30'000, "r-6")});
    push(service, "alice", "phone", {create(35'000, "r-7")});
    push(service, "alice", "laptop", {upsert(1, "r-3", versions[3], {{"party_size", 9}}, "laptop")});
    push(service, "alice", "laptop", {upsert(2, "r-4", versions[4], {{"party_size", 9}}, "laptop")});
    auto remembered = push(service, "alice", "phone", {create(ids[4], "r-4")});
    CHECK(remembered.results[0].status == mutation_status::applied);
    CHECK(remembered.results[0].version == versions[4]);
    auto forgotten = push(service, "alice", "phone", {create(ids[3], "r-3")});
    CHECK(forgotten.results[0].status == mutation_status::conflict);
    CHECK(service.get("alice", "reservations", "r-3")->value.at("party_size") == 9);
}

TEST_CASE("a service refuses a configuration that would forget a push it just answered",
          "[server-store]") {
    server::memory_server_store store;
    server::service_config small;
    small.max_mutations_per_push = 100;
    // A client may retry three whole pushes: two are in flight when an answer fails.
    small.idempotency_window = 299;
    CHECK_THROWS_WITH(server::sync_service(store, small),
                      Catch::Contains("idempotency_window (299)") &&
                          Catch::Contains("three times max_mutations_per_push (100)"));
    server::service_config no_clock;
    no_clock.clock = {};
    CHECK_THROWS_AS(server::sync_service(no_clock), std::invalid_argument);
    small.idempotency_window = 300;
    CHECK_NOTHROW(server::sync_service(store, small));
}

TEST_CASE("a REST write and an admin write the store fails change nothing", "[server-store]") {
    manual_clock clock;
    server::memory_server_store memory;
    server::faulty_server_store store(memory);
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    REQUIRE(service.admin_put("landmarks", to_json_object(half_dome())) == 1);
    const auto before = snapshot(service);
    store.set_fault_hook([](std::string_view at) { return at == "commit"; });
    change out;
    auto d = service.put_record("alice", "reservations", "r-9",
                                to_json_object(reservation("r-9")), std::nullopt, out);
    CHECK(d.code == errc::server_error);
    diagnostics error;
    CHECK(service.admin_put("landmarks", to_json_object(landmark(2, "Golden Gate")), {},
                            &error) == 0);
    CHECK(error.code == errc::server_error);
    CHECK(service.admin_erase("landmarks", "1") == 0);
    CHECK(snapshot(service) == before);
}

TEST_CASE("a client whose push the server cannot store keeps its edits and pushes them later",
          "[server-store]") {
    temp_file file;
    manual_clock clock;
    server::sqlite_server_store sqlite(file.str());
    server::faulty_server_store store(sqlite);
    server::sync_service service(store, config_at(clock));
    add_landmarks(service);
    asio::io_context io;
    client phone(io, service, "alice", clock.as_wall_clock());
    REQUIRE(phone.replica.put(reservation("r-1", "confirmed", 3)));
    store.set_fault_hook([](std::string_view at) { return at == "put"; });
    auto failed = phone.sync();
    CHECK(failed.error);
    CHECK(phone.replica.pending<Reservation>().dirty == 1);
    store.set_fault_hook({});
    auto ok = phone.sync();
    CHECK_FALSE(ok.error);
    CHECK(phone.replica.pending<Reservation>().dirty == 0);
    CHECK(service.get("alice", "reservations", "r-1")->value.at("party_size") == 3);
}

TEST_CASE("schema evolution on the server: a gained field reads as its default, a lost one "
          "is dropped",
          "[server-store]") {
    temp_file file;
    manual_clock clock;
    std::uint64_t v1 = 0;
    {
        server::sqlite_server_store store(file.str());
        server::sync_service service(store, config_at(clock));
        service.add_collection<evolution::NoteV1>();
        mutation m = upsert(1, "n-1", 0, {{"id", "n-1"}, {"text", "old app"}}, "phone");
        m.collection = "notes";
        auto r = push(service, "alice", "phone", {m});
        REQUIRE(r.results.at(0).status == mutation_status::applied);
        v1 = r.results[0].version;
    }
    {
        server::sqlite_server_store store(file.str());
        server::sync_service service(store, config_at(clock));
        service.add_collection<evolution::NoteV2>();
        auto note = service.get("alice", "notes", "n-1");
        REQUIRE(note);
        CHECK(note->value.at("text") == "old app");
        CHECK(note->value.at("stars") == 3);
        // Nobody ever wrote `stars`: another client writing it on the old base is no conflict.
        mutation m = upsert(1, "n-1", v1, {{"stars", 5}}, "laptop");
        m.collection = "notes";
        auto r = push(service, "alice", "laptop", {m});
        CHECK(r.results.at(0).status == mutation_status::applied);
        // `text` was written at v1 by the phone: writing it on base 0 from the laptop is one.
        mutation t = upsert(2, "n-1", 0, {{"text", "new app"}}, "laptop");
        t.collection = "notes";
        CHECK(push(service, "alice", "laptop", {t}).results.at(0).status ==
              mutation_status::conflict);
    }
    server::sqlite_server_store store(file.str());
    server::sync_service service(store, config_at(clock));
    service.add_collection<evolution::NoteV1>();
    auto note = service.get("alice", "notes", "n-1");
    REQUIRE(note);
    CHECK_FALSE(note->value.contains("stars"));
    CHECK(note->value.at("text") == "old app");
}

namespace {

std::int64_t autocheckpoint_pages(server::sqlite_server_store& store) {
    sqlite3_stmt* raw = nullptr;
    sqlite3_prepare_v2(store.native_handle(), "PRAGMA wal_autocheckpoint", -1, &raw, nullptr);
    std::int64_t pages = -1;
    if (sqlite3_step(raw) == SQLITE_ROW) pages = sqlite3_column_int64(raw, 0);
    sqlite3_finalize(raw);
    return pages;
}

std::size_t pulled_count(server::sync_service& service) {
    pull_response out;
    const auto d = service.pull("alice", {"reservations", 0, 1000}, out);
    INFO(d.message);
    REQUIRE(!d);
    return out.changes.size();
}

} // namespace

TEST_CASE("the SQLite server store checkpoints its log in small steps, sized in bytes",
          "[server-store]") {
    temp_file file;
    SECTION("4 MiB by default, whatever the page size of the file") {
        {
            server::sqlite_server_store store(file.str());
            CHECK(autocheckpoint_pages(store) == (4 << 20) / 16384);
        }
        temp_file small_pages;
        server::sqlite_server_config config;
        config.page_size = 4096;
        { server::sqlite_server_store created(small_pages.str(), config); }
        server::sqlite_server_store reopened(small_pages.str()); // keeps its 4 KiB pages
        CHECK(autocheckpoint_pages(reopened) == (4 << 20) / 4096);
    }
    SECTION("less than a page is one page") {
        server::sqlite_server_config config;
        config.checkpoint_log_bytes = 1;
        server::sqlite_server_store store(file.str(), config);
        CHECK(autocheckpoint_pages(store) == 1);
    }
    SECTION("the log stays near the size set, and every acknowledged record is kept") {
        manual_clock clock;
        constexpr int page = 4096, pages = 16;
        server::sqlite_server_config config;
        config.page_size = page;
        config.checkpoint_log_bytes = pages * page;
        constexpr std::size_t count = 300;
        {
            server::sqlite_server_store store(file.str(), config);
            server::sync_service service(store, config_at(clock));
            add_landmarks(service);
            for (std::size_t i = 0; i < count; ++i) // a request, and a commit, each
                push(service, "alice", "phone",
                     {upsert(i + 1, "r-" + std::to_string(i), 0,
                             {{"status", "confirmed"}, {"notes", std::string(400, 'x')}},
                             "phone")});
            // A commit here writes a few pages; the log is reused from its start after each
            // checkpoint, so it never grows much past the setting.
            CHECK(std::filesystem::file_size(file.str() + "-wal") <=
                  std::uintmax_t(pages + 16) * (page + 24) + 32);
            CHECK(pulled_count(service) == count);
        }
        server::sqlite_server_store store(file.str(), config);
        server::sync_service service(store, config_at(clock));
        add_landmarks(service);
        CHECK(pulled_count(service) == count);
    }
}

TEST_CASE("SQLite server store errors are clear and change nothing", "[server-store]") {
    temp_file file;
    SECTION("a file that is not a database") {
        { std::ofstream(file.str()) << "this is a text file, not a database\n"; }
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("not a database") != std::string::npos);
        CHECK(d.message.find(file.str()) != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
    }
    SECTION("a database of another program, or the client store's file") {
        sqlite3* db = nullptr;
        sqlite3_open(file.str().c_str(), &db);
        sqlite3_exec(db, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)", nullptr,
                     nullptr, nullptr);
        sqlite3_close(db);
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("another program") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
    }
    SECTION("an empty file, or a database with nothing in it: not started afresh") {
        // A truncated file or a restore that wrote nothing became a new store whose versions
        // restarted at 1, and health said ready.
        for (const bool as_sqlite : {false, true}) {
            INFO((as_sqlite ? "an empty SQLite database" : "an empty file"));
            if (as_sqlite) {
                sqlite3* db = nullptr;
                sqlite3_open(file.str().c_str(), &db);
                sqlite3_exec(db, "PRAGMA user_version = 7", nullptr, nullptr, nullptr);
                sqlite3_close(db);
            } else {
                std::ofstream{file.str()};
            }
            REQUIRE(std::filesystem::exists(file.str()));
            const auto before = file_bytes(file.str());
            auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
            CHECK(d.code == errc::storage_failure);
            CHECK_THAT(d.message, Catch::Contains("holds no offsync server store") &&
                                      Catch::Contains(file.str()) &&
                                      Catch::Contains("remove this one"));
            CHECK(file_bytes(file.str()) == before);
            // Removed, the same path starts a new store, which opens again as itself.
            std::filesystem::remove(file.str());
            { server::sqlite_server_store store(file.str()); }
            { server::sqlite_server_store store(file.str()); }
            std::error_code ec;
            for (const char* suffix : {"", "-wal", "-shm"})
                std::filesystem::remove(file.str() + suffix, ec);
        }
    }
    SECTION("a damaged file: refused by quick_check on open, and unreadable to the readiness "
            "check") {
        {
            server::sqlite_server_config small_pages;
            small_pages.page_size = 4096; // many pages for a few records, the schema in one
            server::sqlite_server_store store(file.str(), small_pages);
            server::sync_service service(store);
            add_landmarks(service);
            for (std::uint64_t batch = 0; batch < 2; ++batch) {
                std::vector<mutation> ms;
                for (std::uint64_t i = batch * 500 + 1; i <= batch * 500 + 500; ++i)
                    ms.push_back(upsert(i, "r-" + std::to_string(i), 0,
                                        to_json_object(reservation("r-" + std::to_string(i))),
                                        "phone"));
                push(service, "alice", "phone", std::move(ms));
            }
            CHECK_NOTHROW(store.check_readable());
        }
        // Every page but the first (the schema) and the counters' own is overwritten, as a
        // failing disk or a stray write outside SQLite would.
        std::int64_t meta_page = 0;
        {
            sqlite3* db = nullptr;
            sqlite3_open(file.str().c_str(), &db);
            sqlite3_stmt* st = nullptr;
            sqlite3_prepare_v2(db,
                               "SELECT rootpage FROM sqlite_master WHERE name = 'offsync_server_meta'",
                               -1, &st, nullptr);
            if (sqlite3_step(st) == SQLITE_ROW) meta_page = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            sqlite3_close(db);
        }
        REQUIRE(meta_page > 1);
        const auto size = std::filesystem::file_size(file.str());
        REQUIRE(size > 40 * 4096);
        {
            std::fstream out(file.str(), std::ios::in | std::ios::out | std::ios::binary);
            const std::string garbage(4096, '\x5a');
            for (std::uint64_t page = 2; page * 4096 <= size; ++page) {
                if (std::int64_t(page) == meta_page) continue;
                out.seekp(std::streamoff((page - 1) * 4096));
                out.write(garbage.data(), std::streamsize(garbage.size()));
            }
        }
        server::sqlite_server_config checked;
        checked.quick_check_on_open = true;
        auto refused = error_of([&] { server::sqlite_server_store store(file.str(), checked); });
        CHECK(refused.code == errc::storage_failure);
        CHECK_THAT(refused.message, Catch::Contains(file.str()) &&
                                        Catch::Contains("the file is damaged (quick_check"));
        // Opened without the check, it starts (the counters are intact), but the readiness
        // check reads through the damage and says so.
        server::sqlite_server_store store(file.str());
        auto unreadable = error_of([&] { store.check_readable(); });
        CHECK(unreadable.code == errc::storage_failure);
        CHECK_THAT(unreadable.message, Catch::Contains(file.str()));
        server::sync_service service(store);
        add_landmarks(service);
        auto health = service.check_storage();
        CHECK(health.code == errc::server_error);
        CHECK_THAT(health.message, Catch::Contains("server store"));
    }
    SECTION("a schema newer than this code") {
        { server::sqlite_server_store store(file.str()); }
        sqlite3* db = nullptr;
        sqlite3_open(file.str().c_str(), &db);
        sqlite3_exec(db,
                     "UPDATE offsync_server_meta SET value = 99 WHERE key = 'schema_version'",
                     nullptr, nullptr, nullptr);
        sqlite3_close(db);
        auto d = error_of([&] { server::sqlite_server_store store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("newer") != std::string::npos);
    }
    SECTION("a checkpoint size that is not positive, refused before the file is made") {
        for (const std::int64_t bytes : {std::int64_t{0}, std::int64_t{-4096}}) {
            server::sqlite_server_config config;
            config.checkpoint_log_bytes = bytes;
            CHECK_THROWS_AS(server::sqlite_server_store(file.str(), config),
                            std::invalid_argument);
            CHECK_FALSE(std::filesystem::exists(file.str()));
        }
    }
    SECTION("a second server on the same file") {
        server::sqlite_server_store first(file.str());
        auto d = error_of([&] { server::sqlite_server_store second(file.str(), {{}, 50}); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("locked") != std::string::npos);
    }
    SECTION("a read-only file") {
        const std::string path = "offsync-server-read-only-" + make_uuid() + ".db";
        { server::sqlite_server_store store(path); }
        {
            read_only_file guard(path);
            REQUIRE(guard.engaged());
            const auto before = file_bytes(path);
            auto d = error_of([&] { server::sqlite_server_store store(path); });
            CHECK(d.code == errc::storage_failure);
            CHECK(d.message.find("read-only") != std::string::npos);
            CHECK(file_bytes(path) == before);
        }
        { server::sqlite_server_store store(path); }
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
    }
    SECTION("a record corrupted outside offsync: its reads fail clearly, the others go on") {
        service_on_either w(true);
        auto& store = *w.store.sqlite;
        auto& service = w.service;
        push(service, "alice", "phone",
             {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone"),
              upsert(2, "r-2", 0, to_json_object(reservation("r-2")), "phone"),
              upsert(3, "r-3", 0, to_json_object(reservation("r-3")), "phone")});
        REQUIRE(sqlite3_exec(store.native_handle(),
                             "UPDATE offsync_server_records SET value = '[1,' WHERE key = 'r-2'",
                             nullptr, nullptr, nullptr) == SQLITE_OK);
        const auto& schema = schema_of<Reservation>();
        auto d = error_of([&] { store.find(schema, "alice", "r-2"); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("not a JSON object") != std::string::npos);
        // The statements were reset: the next reads are answered for what they ask, not with
        // the rest of the failed one (r-3 for the feed, nothing for the lookup).
        const auto r1 = store.find(schema, "alice", "r-1");
        REQUIRE(r1);
        CHECK(r1->key == "r-1");
        std::vector<server::server_record> page;
        CHECK(error_of([&] { store.feed(schema, "alice", 0, 10, page); }).code ==
              errc::storage_failure);
        page.clear();
        store.feed(schema, "alice", 2, 10, page); // past the corrupt r-2 (version 2)
        REQUIRE(page.size() == 1);
        CHECK(page[0].key == "r-3");
        // Through the service: a pull that meets it is a server error, and a push of another
        // record is applied.
        pull_response pulled;
        const auto failed = service.pull("alice", {"reservations", 0, 10}, pulled);
        CHECK(failed.code == errc::server_error);
        CHECK(failed.message.find("not a JSON object") != std::string::npos);
        CHECK(push(service, "alice", "phone",
                   {upsert(4, "r-4", 0, to_json_object(reservation("r-4")), "phone")})
                  .results[0]
                  .status == mutation_status::applied);
    }
    SECTION("a directory that does not exist") {
        auto d = error_of(
            [&] { server::sqlite_server_store store("/nonexistent-dir/x/server.db"); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("/nonexistent-dir/x/server.db") != std::string::npos);
    }
    SECTION("a full disk: the push fails whole, the store stays usable") {
        manual_clock clock;
        server::sqlite_server_store store(file.str());
        server::sync_service service(store, config_at(clock));
        add_landmarks(service);
        push(service, "alice", "phone",
             {upsert(1, "r-1", 0, to_json_object(reservation("r-1")), "phone")});
        const auto before = snapshot(service);
        sqlite3_exec(store.native_handle(), "PRAGMA max_page_count = 1", nullptr, nullptr,
                     nullptr);
        auto big = reservation("r-big");
        big.notes = std::string(64 * 1024, 'x');
        const push_request request{
            "phone", {upsert(2, "r-2", 0, to_json_object(reservation("r-2")), "phone"),
                      upsert(3, "r-big", 0, to_json_object(big), "phone")}};
        auto answer = service.handle_push("alice", json::serialize(to_json(request)));
        CHECK(answer.error.code == errc::server_error);
        CHECK(answer.error.message.find("full") != std::string::npos);
        CHECK(snapshot(service) == before);
        sqlite3_exec(store.native_handle(), "PRAGMA max_page_count = 1000000", nullptr,
                     nullptr, nullptr);
        push_response ok;
        REQUIRE(!service.push("alice", request, ok));
        CHECK(ok.results.at(1).status == mutation_status::applied);
        CHECK(service.get("alice", "reservations", "r-big")->value.at("notes").as_string().size() ==
              64 * 1024);
    }
}

// faulty_server_store (testing/faulty_server_store.hpp), over both server stores: it forwards
// every call, fails the one its hook names before the store sees it, and injects nothing once
// the hook is cleared.
namespace {

server::server_record stored_record(const std::string& key, std::uint64_t version) {
    const auto& schema = schema_of<Reservation>();
    server::server_record r;
    r.key = key;
    r.value = to_json_object(reservation(key));
    r.version = version;
    r.last_writer = "phone";
    r.fields.assign(schema.fields.size(), server::field_stamp{version, "phone"});
    return r;
}

/// The (user, client id) pair whose results the tests below keep.
const std::string phone_results = "alice\nphone";

/// What a server store holds, as text: counters, records, alice's feed and phone's results.
std::string contents(server::server_store& s) {
    const auto& schema = schema_of<Reservation>();
    std::string out = "last_version " + std::to_string(s.counters().last_version);
    std::vector<server::server_record> feed;
    s.feed(schema, "alice", 0, 10, feed);
    for (const auto& r : feed) out += "\nfeed " + r.key + '@' + std::to_string(r.version);
    for (std::uint64_t id = 1; id <= 4; ++id)
        if (auto r = s.find_result(phone_results, id))
            out += "\nresult " + std::to_string(r->version);
    return out + "\nnewest " + std::to_string(s.newest_result(phone_results).value_or(99));
}

/// r-1 at version 1, last version 2, phone's results 1..3.
void fill(server::server_store& s) {
    s.begin();
    s.put(schema_of<Reservation>(), "alice", stored_record("r-1", 1));
    for (std::uint64_t id = 1; id <= 3; ++id) {
        mutation_result r;
        r.mutation_id = id;
        r.version = 10 + id;
        s.remember_result(phone_results, r);
    }
    server::server_counters c;
    c.last_version = 2;
    s.set_counters(c);
    s.commit();
}

/// Runs every call of `server_store` once through `store`, in one transaction that commits;
/// stops at the first that throws. An injected fault must name `fault`, and the call it
/// stopped must not have reached `below`. Rolls back what is left open. Returns the faults.
int run_every_call(server::faulty_server_store& store, server::server_store& below,
                   const std::string& fault) {
    const auto& schema = schema_of<Reservation>();
    int faults = 0;
    std::vector<server::server_record> page;
    struct step {
        std::string_view name;
        std::function<void()> run;
        std::function<bool()> not_done; ///< for a write: its effect is absent below
    };
    const std::vector<step> steps{
        {"begin", [&] { store.begin(); }, {}},
        {"counters", [&] { (void)store.counters(); }, {}},
        {"find", [&] { (void)store.find(schema, "alice", "r-1"); }, {}},
        {"find_page",
         [&] {
             std::vector<std::optional<server::server_record>> found;
             store.find_page(schema, "alice", {"r-1"}, found);
         },
         {}},
        {"feed", [&] { store.feed(schema, "alice", 0, 10, page); }, {}},
        {"feed_for_client", [&] { store.feed_for_client(schema, "alice", 0, 10, page, "phone"); },
         {}},
        {"feed_version_below", [&] { (void)store.feed_version_below(schema, "alice", 5); }, {}},
        {"find_result", [&] { (void)store.find_result(phone_results, 1); }, {}},
        {"newest_result", [&] { (void)store.newest_result(phone_results); }, {}},
        {"put", [&] { store.put(schema, "alice", stored_record("r-2", 3)); },
         [&] { return !below.find(schema, "alice", "r-2"); }},
        {"remember_result",
         [&] {
             mutation_result r;
             r.mutation_id = 4;
             r.version = 14;
             store.remember_result(phone_results, r);
         },
         [&] { return !below.find_result(phone_results, 4); }},
        {"keep_newest_results", [&] { store.keep_newest_results(phone_results, 1); },
         [&] { return below.find_result(phone_results, 1).has_value(); }},
        {"set_counters",
         [&] {
             server::server_counters c;
             c.last_version = 3;
             store.set_counters(c);
         },
         [&] { return below.counters().last_version == 2; }},
        {"commit", [&] { store.commit(); }, {}},
    };
    bool open = false;
    for (const auto& s : steps) {
        try {
            s.run();
            open = s.name != "commit";
        } catch (const sync_error& e) {
            ++faults;
            CHECK(s.name == fault);
            CHECK(e.code() == errc::storage_failure);
            CHECK_THAT(e.what(), Catch::Contains("injected server store failure at " + fault));
            if (s.not_done) CHECK(s.not_done());
            break;
        }
    }
    if (open) store.rollback(); // as the service does after a failure
    return faults;
}

} // namespace

TEST_CASE("find_page answers each key in its order, nothing where there is no record, whatever "
          "the key's characters",
          "[server-store]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    either_store stores(on_sqlite);
    auto& store = stores.get();
    const auto& schema = schema_of<Reservation>();
    const std::vector<std::string> stored{"r-1", "quote \"and\" \\ back", "caf\u00e9 \u2615",
                                          "[\"array\"]", "42"};
    store.begin();
    std::uint64_t version = 0;
    for (const auto& key : stored) store.put(schema, "alice", stored_record(key, ++version));
    store.put(schema, "bob", stored_record("bob-only", ++version));
    store.commit();

    std::vector<std::optional<server::server_record>> found;
    const std::vector<std::string_view> keys{"42", "missing", stored[2], "bob-only", stored[1],
                                             stored[3], "r-1", "r-1"};
    store.find_page(schema, "alice", keys, found);
    REQUIRE(found.size() == keys.size());
    const std::vector<std::uint64_t> versions{5, 0, 3, 0, 2, 4, 1, 1};
    for (std::size_t i = 0; i < keys.size(); ++i) {
        CAPTURE(i, keys[i]);
        REQUIRE(found[i].has_value() == (versions[i] != 0));
        if (!found[i]) continue;
        CHECK(found[i]->key == keys[i]);
        CHECK(found[i]->version == versions[i]);
        CHECK(found[i]->value == to_json_object(reservation(std::string(keys[i]))));
    }
    store.find_page(schema, "alice", {}, found);
    CHECK(found.empty());
}

TEST_CASE("faulty_server_store fails the call its hook names, and the wrapped store never "
          "sees it",
          "[testing][faults]") {
    const std::string op = GENERATE(as<std::string>{}, "begin", "counters", "find", "find_page",
                                    "feed",
                                    "feed_for_client", "feed_version_below", "find_result",
                                    "newest_result", "put", "remember_result",
                                    "keep_newest_results", "set_counters", "commit");
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(op, on_sqlite);
    either_store stores(on_sqlite);
    auto& below = stores.get();
    auto& store = stores.faulty();
    fill(below);
    const auto before = contents(below);
    store.set_fault_hook([&](std::string_view at) { return at == op; });
    CHECK(run_every_call(store, below, op) == 1);
    CHECK(contents(below) == before);

    // Cleared, the hook injects nothing: every call reaches the store.
    store.set_fault_hook({});
    CHECK(run_every_call(store, below, op) == 0);
    CHECK(contents(below) == "last_version 3\nfeed r-1@1\nfeed r-2@3\nresult 14\nnewest 4");
}

TEST_CASE("faulty_server_store forwards to the wrapped store's own versions of the calls "
          "server_store defaults, and fails insert_new as \"put\"",
          "[testing][faults]") {
    const bool on_sqlite = GENERATE(false, true);
    CAPTURE(on_sqlite);
    either_store stores(on_sqlite);
    auto& store = stores.faulty();
    CHECK(&store.next_layer() == &stores.get());
    fill(stores.get());
    const auto& schema = schema_of<Reservation>();
    store.begin();
    // Both stores answer these; server_store's defaults would answer nullopt.
    CHECK(store.feed_version_below(schema, "alice", 5) == 1);
    CHECK(store.newest_result(phone_results) == 3);
    store.touch_channel(schema, "group:g", "k-1", 3, true);
    store.touch_channel(schema, "group:g", "k-2", 7, false);
    CHECK(store.channel_version_below(schema, "group:g", 7) == 3);
    CHECK(store.channel_version_below(schema, "group:g", 8) == 7);
    CHECK(store.channel_version_below(schema, "group:g", 3) == 0);
    CHECK(store.channel_version_below(schema, "group:none", 9) == 0);
    std::vector<server::server_record> page;
    store.feed_for_client(schema, "alice", 0, 10, page, "phone");
    REQUIRE(page.size() == 1);
    // The SQLite store leaves the value of the client's own write unread; the memory store has
    // no such path and reads it.
    CHECK(page[0].value.empty() == on_sqlite);

    store.set_fault_hook([](std::string_view at) { return at == "put"; });
    CHECK_THROWS_WITH(store.insert_new(schema, "alice", stored_record("r-2", 3)),
                      Catch::Contains("injected server store failure at put"));
    CHECK_FALSE(stores.get().find(schema, "alice", "r-2"));
    store.set_fault_hook({});
    CHECK(store.insert_new(schema, "alice", stored_record("r-2", 3)));
    CHECK_FALSE(store.insert_new(schema, "alice", stored_record("r-2", 4)));
    store.commit();
    CHECK(stores.get().find(schema, "alice", "r-2")->version == 3);
}
