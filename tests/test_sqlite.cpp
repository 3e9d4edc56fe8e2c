// The SQLite client store: persistence across reopening, the pushable index, and every error
// case failing clearly without touching the file. (The engine and invariant tests run against
// it as well, in the offsync-tests-sqlite binary.)
#include "support/world.hpp"

#include <offsync/server/sqlite_store.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/testing/faulty_storage.hpp>

#include <filesystem>
#include <fstream>
#include <optional>

using namespace offsync_test;

namespace {

int page_size_of(sqlite3* db) {
    sqlite3_stmt* raw = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &raw, nullptr);
    detail::sqlite_statement st(raw);
    REQUIRE(sqlite3_step(st.get()) == SQLITE_ROW);
    return sqlite3_column_int(st.get(), 0);
}

/// Opens a client store on `path` (with `page_size` if given), keeps a record in it, checks
/// that every record kept before is still there, and answers the file's page size.
int open_client_store(const std::string& path, std::optional<int> page_size, int& kept) {
    sqlite_config config;
    config.durability = sqlite_durability::normal;
    if (page_size) config.page_size = *page_size;
    sqlite_storage store(path, config);
    basic_replica<sqlite_storage> replica(store);
    CHECK(store.list("reservations").size() == std::size_t(kept));
    REQUIRE(replica.put(reservation("r-" + std::to_string(kept++))));
    return page_size_of(store.native_handle());
}

/// The same for a server store, which keeps its version sequence instead of records.
int open_server_store(const std::string& path, std::optional<int> page_size, int& kept) {
    server::sqlite_server_config config;
    config.durability = sqlite_durability::normal;
    if (page_size) config.page_size = *page_size;
    server::sqlite_server_store store(path, config);
    CHECK(store.counters().last_version == std::uint64_t(kept));
    store.begin();
    store.set_counters({std::uint64_t(++kept), 0, {}});
    store.commit();
    return page_size_of(store.native_handle());
}

} // namespace

static_assert(storage_policy<sqlite_storage>);

TEST_CASE("a SQLite store keeps everything across reopening", "[sqlite]") {
    temp_file file;
    manual_clock clock;
    std::string client_id;
    std::uint64_t last_issued = 0;
    {
        sqlite_storage store(file.str());
        basic_replica<sqlite_storage> replica(store, clock.as_wall_clock());
        replica.put(reservation("r-1", "confirmed", 3));
        replica.put(reservation("r-2"));
        replica.erase<Reservation>("r-2");
        auto txn = store.begin();
        client_id = txn.client_id();
        const auto first = txn.next_mutation_id();
        CHECK(first == 4); // the three edits took 1, 2 and 3
        last_issued = txn.next_mutation_id();
        CHECK(last_issued == first + 1);
        txn.set_cursor("reservations", 41);
        parked_record p;
        p.collection = "reservations";
        p.key = "r-1";
        p.local_value = json::object{{"party_size", 3}};
        p.server = change{json::value("r-1"), 40, false, hlc_stamp{5, 1, "x"},
                          json::object{{"party_size", 2}}};
        p.detected_at_ms = 99;
        txn.save_parked(p);
        txn.commit();
    }
    sqlite_storage store(file.str());
    basic_replica<sqlite_storage> replica(store, clock.as_wall_clock());
    auto txn_check = [&] {
        auto txn = store.begin();
        CHECK(txn.client_id() == client_id);
        CHECK(txn.next_mutation_id() > last_issued); // a new block: never issued twice
        CHECK(txn.cursor("reservations") == 41);
        CHECK(txn.cursor("landmarks") == 0);
        CHECK(txn.clock().wall == clock.now_ms);
        auto r2 = txn.load("reservations", "r-2");
        REQUIRE(r2);
        CHECK(r2->deleted);
        CHECK(r2->delete_pending);
        auto p = txn.load_parked("reservations", "r-1");
        REQUIRE(p);
        REQUIRE(p->server);
        CHECK(p->server->version == 40);
        CHECK(p->server->stamp == hlc_stamp{5, 1, "x"});
        CHECK(p->local_value.at("party_size") == 3);
        CHECK(p->detected_at_ms == 99);
    };
    txn_check();
    CHECK(replica.get<Reservation>("r-1")->party_size == 3);
    CHECK_FALSE(replica.get<Reservation>("r-2"));
    CHECK(replica.list<Reservation>().size() == 1);
    CHECK(store.pending("reservations").dirty == 2); // r-1, and r-2's delete
    CHECK(store.pending("reservations").conflicts == 1);
    CHECK(store.parked("").size() == 1);
}

TEST_CASE("an uncommitted SQLite transaction changes nothing", "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    {
        auto txn = store.begin();
        local_record r;
        r.value = json::object{{"id", "r-1"}};
        r.dirty_mask = 1;
        txn.save("reservations", "r-1", r);
        txn.set_cursor("reservations", 7);
        CHECK(txn.load("reservations", "r-1")); // sees its own write
    }
    auto txn = store.begin();
    CHECK_FALSE(txn.load("reservations", "r-1"));
    CHECK(txn.cursor("reservations") == 0);
    CHECK(txn.pushable_keys("reservations", "", 10).empty());
}

TEST_CASE("a push batch read in one query is what its keys and a load of each give",
          "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    {
        auto txn = store.begin();
        for (int i = 0; i < 12; ++i) {
            local_record r;
            const auto key = "r-" + std::to_string(10 + i);
            r.value = json::object{{"id", key}, {"party_size", i}};
            r.generation = std::uint64_t(i + 1);
            r.base_version = std::uint64_t(i % 3);
            r.modified_at = hlc_stamp{100 + i, std::uint32_t(i), "me"};
            r.sent_mutation_id = std::uint64_t(50 + i);
            r.sent_generation = r.generation;
            r.dirty_mask = i % 4 == 0 ? 0 : 3;              // every fourth is clean
            if (i == 5) r.parked = park_state::conflict;    // parked: not pushable
            if (i == 7) r.delete_pending = r.deleted = true; // a pending delete is pushable
            txn.save("reservations", key, r);
            txn.save("landmarks", key, r); // another collection's are its own
        }
        txn.commit();
    }
    auto txn = store.begin();
    for (const std::string after : {"", "r-10", "r-14", "r-21", "s"})
        for (std::size_t limit : {1, 3, 100}) {
            CAPTURE(after, limit);
            const auto keys = txn.pushable_keys("reservations", after, limit);
            const auto records = txn.pushable_records("reservations", after, limit);
            REQUIRE(records.size() == keys.size());
            for (std::size_t i = 0; i < keys.size(); ++i) {
                CHECK(records[i].first == keys[i]);
                const auto loaded = txn.load("reservations", keys[i]);
                REQUIRE(loaded);
                const auto& r = records[i].second;
                CHECK(r.value == loaded->value);
                CHECK(r.generation == loaded->generation);
                CHECK(r.base_version == loaded->base_version);
                CHECK(r.modified_at == loaded->modified_at);
                CHECK(r.sent_mutation_id == loaded->sent_mutation_id);
                CHECK(r.dirty_mask == loaded->dirty_mask);
                CHECK(r.delete_pending == loaded->delete_pending);
                CHECK(r.parked == park_state::none);
            }
        }
    CHECK(txn.pushable_records("reservations", "", 100).size() == 8); // 12 - 3 clean - 1 parked
    CHECK(txn.pushable_records("nothing", "", 100).empty());
}

TEST_CASE("a corrupt stored value fails its read clearly and leaves the store usable",
          "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    {
        auto txn = store.begin();
        for (const char* key : {"r-1", "r-2", "r-3"}) {
            local_record r;
            r.value = json::object{{"id", key}};
            r.dirty_mask = 1;
            txn.save("reservations", key, r);
        }
        txn.commit();
    }
    // Something outside offsync wrote the file.
    REQUIRE(sqlite3_exec(store.native_handle(),
                         "UPDATE offsync_records SET value = '[1,' WHERE key = 'r-2'", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    auto txn = store.begin();
    CHECK_THROWS_WITH(txn.load("reservations", "r-2"),
                      Catch::Contains("a stored record is not a JSON object"));
    CHECK_THROWS_AS(txn.pushable_records("reservations", "", 10), sync_error);
    // The statements were reset: the next reads see what they ask for, not the rest of the
    // failed read (nothing for the load, r-3 for the batch).
    CHECK(txn.pushable_records("reservations", "r-3", 10).empty());
    const auto r3 = txn.load("reservations", "r-3");
    REQUIRE(r3);
    CHECK(r3->value.at("id") == "r-3");
    auto past = txn.pushable_records("reservations", "r-2", 10);
    REQUIRE(past.size() == 1);
    CHECK(past[0].first == "r-3");
    CHECK(txn.pushable_records("reservations", "", 1).at(0).first == "r-1");
    CHECK(txn.pushable_keys("reservations", "", 10).size() == 3); // nothing was changed
}

TEST_CASE("metadata-only reads and writes leave a record's value alone", "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    local_record r;
    r.value = json::object{{"id", "r-1"}, {"status", "confirmed"}};
    r.dirty_mask = 3;
    r.generation = 4;
    r.modified_at = hlc_stamp{10, 2, "me"};
    {
        auto txn = store.begin();
        txn.save("reservations", "r-1", r);
        txn.commit();
    }
    {
        auto txn = store.begin();
        auto meta = txn.load_metadata("reservations", "r-1");
        REQUIRE(meta);
        CHECK(meta->value.empty()); // not read
        CHECK(meta->dirty_mask == 3);
        CHECK(meta->generation == 4);
        CHECK(meta->modified_at == hlc_stamp{10, 2, "me"});
        CHECK_FALSE(txn.load_metadata("reservations", "r-2"));
        meta->dirty_mask = 0;
        meta->base_version = 9;
        meta->sent_mutation_id = 5;
        txn.save_metadata("reservations", "r-1", *meta); // its empty value is not written
        txn.commit();
    }
    auto txn = store.begin();
    auto back = txn.load("reservations", "r-1");
    REQUIRE(back);
    CHECK(back->value == r.value);
    CHECK(back->base_version == 9);
    CHECK(back->sent_mutation_id == 5);
    CHECK(txn.pushable_keys("reservations", "", 10).empty()); // the index follows
    // No record to update: an error, and nothing is created.
    local_record ghost;
    ghost.dirty_mask = 1;
    CHECK_THROWS_AS(txn.save_metadata("reservations", "r-2", ghost), sync_error);
    CHECK_FALSE(txn.load("reservations", "r-2"));
}

TEST_CASE("mutation ids are never issued twice: not after a rollback, a failed commit or a "
          "reopening", "[sqlite]") {
    temp_file file;
    std::uint64_t last = 0;
    auto issue = [&](sqlite_storage::transaction& txn) {
        const auto id = txn.next_mutation_id();
        CHECK(id > last);
        last = id;
        return id;
    };
    {
        sqlite_storage store(file.str());
        {
            auto txn = store.begin();
            CHECK(issue(txn) == 1);
            CHECK(issue(txn) == 2); // from the block reserved in memory: no write per id
            txn.commit();
        }
        {
            auto txn = store.begin();
            issue(txn);
            issue(txn);
        } // rolled back: those ids are left unused, never issued again
        {
            auto txn = store.begin();
            issue(txn);
            txn.commit();
        }
    }
    {
        sqlite_storage reopened(file.str()); // starts past every block reserved before
        auto txn = reopened.begin();
        CHECK(issue(txn) > 4096);
        txn.commit();
    }

    // What must hold: an id a committed transaction used is never issued again, by this
    // store or by the next one to open the file. An id only a rolled-back transaction saw
    // went nowhere and may come back.
    SECTION("a block whose reservation rolled back is dropped, and reserved again") {
        sqlite_storage store(file.str());
        {
            auto txn = store.begin();
            txn.next_mutation_id(); // reserves a block, then rolls back
        }
        std::uint64_t committed = 0;
        {
            auto txn = store.begin();
            committed = txn.next_mutation_id(); // not from the block that is not on disk
            txn.commit();
        }
        sqlite_storage other(file.str());
        CHECK(other.begin().next_mutation_id() > committed);
    }
    SECTION("a reservation whose commit fails is dropped too") {
        faulty_storage<sqlite_storage> store(file.str());
        store.set_fault_hook([](std::string_view op) { return op == "commit"; });
        {
            auto txn = store.begin();
            txn.next_mutation_id();
            CHECK_THROWS_AS(txn.commit(), sync_error);
        }
        store.set_fault_hook({});
        std::uint64_t committed = 0;
        {
            auto txn = store.begin();
            committed = txn.next_mutation_id();
            txn.commit();
        }
        sqlite_storage other(file.str());
        CHECK(other.begin().next_mutation_id() > committed);
    }
    SECTION("two stores open on one file take blocks of their own") {
        sqlite_storage a(file.str());
        sqlite_storage b(file.str());
        std::uint64_t from_a = 0, from_b = 0;
        {
            auto txn = a.begin();
            from_a = txn.next_mutation_id();
            txn.commit();
        }
        {
            auto txn = b.begin();
            from_b = txn.next_mutation_id();
            txn.commit();
        }
        CHECK(from_b >= from_a + 4096);
        auto txn = a.begin();
        CHECK(txn.next_mutation_id() == from_a + 1);
    }
}

TEST_CASE("an edit issues its mutation id, so building a push writes nothing", "[sqlite]") {
    temp_file file;
    faulty_storage<sqlite_storage> store(file.str());
    manual_clock clock;
    basic_replica<faulty_storage<sqlite_storage>> replica(store, clock.as_wall_clock());
    replica.put(reservation("r-1"));
    replica.put(reservation("r-2"));
    replica.put(reservation("r-2", "confirmed", 4)); // a second edit issues a new id
    const auto& schema = schema_of<Reservation>();
    store.set_fault_hook([](std::string_view op) {
        return op == "save" || op == "next_mutation_id" || op == "commit";
    });
    auto txn = store.begin();
    auto records = detail::pushable_batch(txn, "reservations", "", 10);
    REQUIRE(records.size() == 2);
    push_request request;
    std::vector<detail::sent_mutation> sent;
    detail::build_push(txn, schema, records, request, sent);
    REQUIRE(request.mutations.size() == 2);
    CHECK(request.mutations[0].mutation_id == 1);
    CHECK(request.mutations[1].mutation_id == 3);
}

TEST_CASE("a push carries a new record whole and an edited one as its dirty fields, and "
          "leaves the store's copy as it was", "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    manual_clock clock;
    basic_replica<sqlite_storage> replica(store, clock.as_wall_clock());
    const auto& schema = schema_of<Reservation>();
    replica.put(reservation("r-1", "confirmed", 2));
    auto build = [&] {
        auto txn = store.begin();
        auto records = detail::pushable_batch(txn, "reservations", "", 10);
        REQUIRE(records.size() == 1);
        const auto stored = records.front().second.value;
        push_request request;
        std::vector<detail::sent_mutation> sent;
        detail::build_push(txn, schema, records, request, sent);
        REQUIRE(request.mutations.size() == 1);
        // The batch's values were read into an arena of their own and moved, not copied, into
        // the request, which keeps the arena once the batch is gone.
        CHECK(request.mutations.front().fields.storage().get() != json::storage_ptr().get());
        records.clear();
        const auto after = txn.load("reservations", "r-1");
        REQUIRE(after);
        CHECK(after->value == stored); // the values the push took were the batch's own copies
        return std::pair(request.mutations.front(), stored);
    };
    {
        const auto [m, stored] = build();
        CHECK(m.fields == detail::select_fields(schema, stored, schema.all_fields_mask()));
        CHECK(m.fields.size() == schema.fields.size());
        CHECK(m.fields.at("party_size") == 2);
        CHECK(m.fields.at("id") == "r-1");
    }
    {
        auto txn = store.begin();
        CHECK(detail::apply_applied(txn, schema, {"r-1", 1}, 5, 0));
        txn.commit();
    }
    replica.put(reservation("r-1", "cancelled", 2));
    {
        const auto [m, stored] = build();
        CHECK(m.base_version == 5);
        CHECK(m.fields == json::object{{"status", "cancelled"}});
        CHECK(stored.at("status") == "cancelled");
    }
}

TEST_CASE("acknowledging an unchanged record is one write, anything else is left to the caller",
          "[sqlite]") {
    temp_file file;
    faulty_storage<sqlite_storage> store(file.str());
    manual_clock clock;
    basic_replica<faulty_storage<sqlite_storage>> replica(store, clock.as_wall_clock());
    replica.put(reservation("r-1"));
    replica.put(reservation("r-2"));
    replica.erase<Reservation>("r-2");
    bool failing = false;
    store.set_fault_hook([&](std::string_view op) { return failing && op == "save"; });
    auto txn = store.begin();
    const auto before = txn.load("reservations", "r-1");
    REQUIRE(before);
    CHECK_FALSE(txn.acknowledge("reservations", "r-1", before->generation + 1, 7, 99)); // edited since
    CHECK_FALSE(txn.acknowledge("reservations", "r-9", 1, 7, 99));                       // missing
    const auto deleting = txn.load("reservations", "r-2");
    REQUIRE(deleting);
    CHECK_FALSE(txn.acknowledge("reservations", "r-2", deleting->generation, 7, 99)); // a delete
    CHECK(txn.load("reservations", "r-1")->dirty()); // none of those wrote anything
    CHECK(txn.load("reservations", "r-2")->delete_pending);

    REQUIRE(txn.acknowledge("reservations", "r-1", before->generation, 7, 99));
    const auto after = txn.load("reservations", "r-1");
    REQUIRE(after);
    CHECK_FALSE(after->dirty());
    CHECK(after->base_version == 7);
    CHECK(after->sent_mutation_id == 0);
    CHECK(after->last_synced_ms == 99);
    CHECK(after->value == before->value);
    CHECK(after->generation == before->generation);
    CHECK(txn.pushable_keys("reservations", "", 10) == std::vector<std::string>{"r-2"});

    failing = true;
    CHECK_THROWS_AS(txn.acknowledge("reservations", "r-1", before->generation, 8, 99), sync_error);
    CHECK(txn.load("reservations", "r-1")->base_version == 7);
}

TEST_CASE("a pulled record new to the store is inserted in one write, an existing one is "
          "never replaced that way",
          "[sqlite]") {
    temp_file file;
    faulty_storage<sqlite_storage> store(file.str());
    manual_clock clock;
    basic_replica<faulty_storage<sqlite_storage>> replica(store, clock.as_wall_clock());
    replica.put(reservation("r-2", "confirmed", 5)); // dirty: a pull must keep party_size 5
    const auto& schema = schema_of<Reservation>();
    auto pulled = [&](const std::string& id, std::int32_t party, std::uint64_t version) {
        auto value = to_json_object(reservation(id, "confirmed", party));
        return change{json::value(id), version, false, hlc_stamp{1, 0, "other"}, value};
    };

    local_record existing;
    existing.value = to_json_object(reservation("r-2", "cancelled", 9));
    {
        auto txn = store.begin();
        CHECK_FALSE(txn.insert_new("reservations", "r-2", existing));
        CHECK(txn.load("reservations", "r-2")->value.at("party_size") == 5); // untouched

        bool insert_first = true;
        auto first = pulled("r-1", 2, 10);
        REQUIRE(detail::apply_pulled(txn, schema, first, 0, &insert_first));
        CHECK(insert_first); // new: inserted, and the page keeps inserting first
        auto second = pulled("r-2", 7, 11);
        REQUIRE(detail::apply_pulled(txn, schema, second, 0, &insert_first));
        CHECK_FALSE(insert_first); // it existed: the rest of the page looks up first
        auto third = pulled("r-3", 4, 12);
        REQUIRE(detail::apply_pulled(txn, schema, third, 0, &insert_first));
        txn.commit();
    }

    CHECK(replica.get<Reservation>("r-1")->party_size == 2);
    CHECK(store.begin().load("reservations", "r-1")->base_version == 10);
    CHECK(replica.get<Reservation>("r-2")->party_size == 5); // the dirty field stays
    CHECK(replica.get<Reservation>("r-3")->party_size == 4);
    CHECK(store.pending("reservations").dirty == 1);

    store.set_fault_hook([](std::string_view op) { return op == "save"; });
    auto failing = store.begin();
    CHECK_THROWS_AS(failing.insert_new("reservations", "r-9", existing), sync_error);
    CHECK_FALSE(failing.load("reservations", "r-9"));
}

TEST_CASE("under normal durability a commit that reserves mutation ids is put on disk",
          "[sqlite]") {
    // A push may reach the server as soon as its ids are committed; an id rolled back by a
    // power loss and issued again would be answered with another record's result. The fault
    // hook sees every extra sync ("make_durable", the store's fault point inside its commit)
    // and counts them.
    const char* level = "PRAGMA synchronous";
    auto pragma = [](faulty_storage<sqlite_storage>& store, const char* sql) {
        sqlite3_stmt* raw = nullptr;
        REQUIRE(sqlite3_prepare_v2(store.next_layer().native_handle(), sql, -1, &raw, nullptr) ==
                SQLITE_OK);
        std::optional<std::int64_t> out;
        if (sqlite3_step(raw) == SQLITE_ROW) out = sqlite3_column_int64(raw, 0);
        sqlite3_finalize(raw);
        return out;
    };
    temp_file file;
    int syncs = 0;
    bool fail_sync = false;
    auto counting = [&](std::string_view op) {
        if (op != "make_durable") return false;
        ++syncs;
        return fail_sync;
    };
    faulty_storage<sqlite_storage> store(file.str(),
                                         sqlite_config{sqlite_durability::normal, 5000});
    store.set_fault_hook(counting);
    {
        auto txn = store.begin();
        txn.set_cursor("reservations", 1);
        txn.commit(); // no ids: an ordinary commit under `normal`
    }
    CHECK(syncs == 0);
    CHECK(pragma(store, level) == 1); // NORMAL
    {
        auto txn = store.begin();
        CHECK(txn.next_mutation_id() == 1); // reserves a block
        txn.commit();
    }
    CHECK(syncs == 1);                // the extra transaction under FULL ran
    CHECK(pragma(store, level) == 1); // and NORMAL is back
    {
        auto txn = store.begin();
        CHECK(txn.next_mutation_id() == 2); // from the block already on disk
        txn.commit();
    }
    CHECK(syncs == 1);

    SECTION("failing to make a reservation durable fails the commit and drops the block") {
        faulty_storage<sqlite_storage> second(file.str(),
                                              sqlite_config{sqlite_durability::normal, 5000});
        second.set_fault_hook(counting);
        fail_sync = true;
        std::uint64_t unsynced = 0;
        {
            auto txn = second.begin();
            unsynced = txn.next_mutation_id(); // a block of its own, past the first store's
            CHECK(unsynced > 4096);
            CHECK_THROWS_AS(txn.commit(), sync_error); // so nothing is sent
        }
        CHECK(pragma(second, level) == 1);
        fail_sync = false;
        auto txn = second.begin();
        CHECK(txn.next_mutation_id() > unsynced + 4095); // reserved again, past the lost block
        txn.commit();
        CHECK(syncs == 3);
    }
    SECTION("under full durability every commit is on disk already: no extra transaction") {
        temp_file other;
        faulty_storage<sqlite_storage> full(other.str());
        full.set_fault_hook(counting);
        auto txn = full.begin();
        txn.next_mutation_id();
        txn.commit();
        CHECK(syncs == 1); // only the one above
        CHECK(pragma(full, level) == 2); // FULL
    }
}

TEST_CASE("list_where filters a collection by a JSON path", "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    basic_replica<sqlite_storage> replica(store);
    REQUIRE(replica.put(reservation("r-1", "confirmed", 2)));
    REQUIRE(replica.put(reservation("r-2", "cancelled", 4)));
    REQUIRE(replica.put(reservation("r-3", "cancelled", 2)));
    REQUIRE(replica.put(reservation("r-4", "cancelled", 2)));
    replica.erase<Reservation>("r-4");
    auto keys = [](const auto& rows) {
        std::vector<std::string> out;
        for (const auto& [key, rec] : rows) out.push_back(key);
        return out;
    };
    CHECK(keys(store.list_where("reservations", "$.status", "cancelled")) ==
          std::vector<std::string>{"r-2", "r-3"});
    CHECK(keys(store.list_where("reservations", "$.party_size", 2)) ==
          std::vector<std::string>{"r-1", "r-3"});
    CHECK(store.list_where("reservations", "$.party_size", "2").empty()); // types matter
    CHECK(store.list_where("reservations", "$.no_such_field", "x").empty());
    CHECK(store.list_where("landmarks", "$.status", "cancelled").empty());
    const auto rows = store.list_where("reservations", "$.status", "confirmed");
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].second.value.at("party_size") == 2);
    for (const char* bad : {"status", "$.[", ""}) {
        CAPTURE(bad);
        try {
            store.list_where("reservations", bad, "x");
            FAIL("a bad path was accepted");
        } catch (const sync_error& e) {
            CHECK(e.code() == errc::invalid_field);
            CHECK(std::string(e.what()).find("JSON path") != std::string::npos);
        }
    }
    CHECK(store.list("reservations").size() == 3); // a bad query changed nothing
}

TEST_CASE("the pushable index serves push batches in key order", "[sqlite]") {
    temp_file file;
    sqlite_storage store(file.str());
    {
        auto txn = store.begin();
        for (int i = 0; i < 50; ++i) {
            local_record r;
            r.value = json::object{{"id", i}};
            r.dirty_mask = (i % 5 == 0) ? 1 : 0; // every fifth is dirty
            if (i == 10) r.parked = park_state::conflict;
            char key[8];
            std::snprintf(key, sizeof key, "k%02d", i);
            txn.save("c", key, r);
        }
        txn.commit();
    }
    auto txn = store.begin();
    CHECK(txn.pushable_keys("c", "", 100) ==
          std::vector<std::string>{"k00", "k05", "k15", "k20", "k25", "k30", "k35", "k40", "k45"});
    CHECK(txn.pushable_keys("c", "k20", 2) == std::vector<std::string>{"k25", "k30"});
    CHECK(txn.pushable_keys("other", "", 100).empty());
    // The plans of the store's own statements that read pushable records (the keys, the
    // records of a push batch, and their count) use the partial index: no scan of clean
    // records.
    std::vector<std::string> reads;
    for (sqlite3_stmt* st = sqlite3_next_stmt(store.native_handle(), nullptr); st;
         st = sqlite3_next_stmt(store.native_handle(), st))
        if (std::string sql = sqlite3_sql(st);
            sql.find("pushable = 1 AND collection") != std::string::npos)
            reads.push_back(std::move(sql));
    CHECK(reads.size() == 3);
    for (const auto& sql : reads) {
        sqlite3_stmt* plan = nullptr;
        REQUIRE(sqlite3_prepare_v2(store.native_handle(), ("EXPLAIN QUERY PLAN " + sql).c_str(),
                                   -1, &plan, nullptr) == SQLITE_OK);
        std::string detail;
        while (sqlite3_step(plan) == SQLITE_ROW)
            detail += reinterpret_cast<const char*>(sqlite3_column_text(plan, 3));
        sqlite3_finalize(plan);
        CAPTURE(sql, detail);
        // "USING INDEX" or "USING COVERING INDEX", by SQLite version: the index, not a scan.
        CHECK(detail.find("INDEX offsync_records_pushable") != std::string::npos);
        CHECK(detail.find("SCAN offsync_records") == std::string::npos);
    }
}

TEST_CASE("a store's page size is chosen for a new file, a file that exists keeps its own",
          "[sqlite]") {
    // A client's edits are scattered over its file, a server's writes come in batches.
    struct store_kind {
        const char* name;
        int (*open)(const std::string&, std::optional<int>, int&);
        int default_page_size;
    };
    for (const auto& [name, open, default_page_size] :
         {store_kind{"client", open_client_store, 4096},
          store_kind{"server", open_server_store, 16384}}) {
        DYNAMIC_SECTION("the " << name << " store") {
            temp_file file;
            int kept = 0;
            SECTION("a new file gets the store's default unless told otherwise") {
                CHECK(open(file.str(), std::nullopt, kept) == default_page_size);
            }
            SECTION("a new file gets the configured size") {
                CHECK(open(file.str(), 2048, kept) == 2048);
                SECTION("and keeps it, with its data, when opened with another") {
                    CHECK(open(file.str(), 65536, kept) == 2048);
                    CHECK(open(file.str(), std::nullopt, kept) == 2048);
                    CHECK(kept == 3);
                }
            }
            SECTION("a size SQLite does not support is refused before the file is touched") {
                for (int bad : {0, -4096, 256, 1000, 12288, 131072}) {
                    INFO("page size " << bad);
                    CHECK_THROWS_WITH(open(file.str(), bad, kept),
                                      Catch::Contains("page_size " + std::to_string(bad)) &&
                                          Catch::Contains("power of two"));
                    CHECK_FALSE(std::filesystem::exists(file.path));
                }
                CHECK(open(file.str(), 8192, kept) == 8192);
                const auto before = file_bytes(file.str());
                CHECK_THROWS_AS(open(file.str(), 3000, kept), std::invalid_argument);
                CHECK(file_bytes(file.str()) == before);
                CHECK(open(file.str(), std::nullopt, kept) == 8192);
                CHECK(kept == 2);
            }
        }
    }
}

TEST_CASE("SQLite store errors are clear and change nothing", "[sqlite]") {
    temp_file file;
    SECTION("a file that is not a database") {
        { std::ofstream(file.str()) << "this is a text file, not a database\n"; }
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { sqlite_storage store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("not a database") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
    }
    SECTION("a database of another program") {
        sqlite3* db = nullptr;
        sqlite3_open(file.str().c_str(), &db);
        sqlite3_exec(db, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)", nullptr,
                     nullptr, nullptr);
        sqlite3_close(db);
        const auto before = file_bytes(file.str());
        auto d = error_of([&] { sqlite_storage store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("another program") != std::string::npos);
        CHECK(file_bytes(file.str()) == before);
    }
    SECTION("a schema newer than this code") {
        { sqlite_storage store(file.str()); }
        sqlite3* db = nullptr;
        sqlite3_open(file.str().c_str(), &db);
        sqlite3_exec(db, "UPDATE offsync_meta SET value = 99 WHERE key = 'schema_version'",
                     nullptr, nullptr, nullptr);
        sqlite3_close(db);
        auto d = error_of([&] { sqlite_storage store(file.str()); });
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("newer") != std::string::npos);
    }
    SECTION("a read-only file") {
        // In the build tree rather than /tmp, which may be a tmpfs without file attributes.
        const std::string path = "offsync-read-only-" + make_uuid() + ".db";
        {
            sqlite_storage store(path);
            basic_replica<sqlite_storage> replica(store);
            REQUIRE(replica.put(reservation("r-1")));
        }
        {
            read_only_file guard(path);
            REQUIRE(guard.engaged());
            const auto before = file_bytes(path);
            auto d = error_of([&] { sqlite_storage store(path); });
            CHECK(d.code == errc::storage_failure);
            CHECK(d.message.find("read-only") != std::string::npos);
            CHECK(d.message.find(path) != std::string::npos);
            CHECK(file_bytes(path) == before);
        }
        {
            sqlite_storage store(path); // writable again: nothing was lost
            CHECK(store.list("reservations").size() == 1);
        }
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
    }
    SECTION("a directory that does not exist") {
        auto d = error_of([&] { sqlite_storage store("/nonexistent-dir/x/offsync.db"); });
        CHECK(d.code == errc::storage_failure);
    }
    SECTION("a full disk: the transaction fails whole, the store stays usable") {
        sqlite_storage store(file.str());
        manual_clock clock;
        basic_replica<sqlite_storage> replica(store, clock.as_wall_clock());
        REQUIRE(replica.put(reservation("r-0")));
        // Cap the file at its current size: SQLite then answers "database or disk is full".
        sqlite3_exec(store.native_handle(), "PRAGMA max_page_count = 1", nullptr, nullptr,
                     nullptr);
        auto big = reservation("r-big");
        big.notes = std::string(64 * 1024, 'x');
        auto d = replica.put(schema_of<Reservation>(), "r-big", to_json_object(big));
        CHECK(d.code == errc::storage_failure);
        CHECK(d.message.find("full") != std::string::npos);
        CHECK_FALSE(replica.get<Reservation>("r-big"));
        CHECK(replica.get<Reservation>("r-0"));
        sqlite3_exec(store.native_handle(), "PRAGMA max_page_count = 1000000", nullptr, nullptr,
                     nullptr);
        CHECK(replica.put(big));
        CHECK(replica.get<Reservation>("r-big")->notes.size() == 64 * 1024);
    }
}

TEST_CASE("schema evolution: a stored record missing a newer field reads as its default",
          "[sqlite]") {
    temp_file file;
    {
        sqlite_storage store(file.str());
        auto txn = store.begin();
        local_record r;
        // Written by an older version of the app whose reservations had no notes or party.
        r.value = json::object{{"id", "r-1"}, {"landmark_id", 1}, {"status", "confirmed"}};
        r.base_version = 3;
        txn.save("reservations", "r-1", r);
        txn.commit();
    }
    sqlite_storage store(file.str());
    basic_replica<sqlite_storage> replica(store);
    auto r = replica.get<Reservation>("r-1");
    REQUIRE(r);
    CHECK(r->party_size == 1);
    CHECK(r->notes.empty());
    CHECK(r->status == "confirmed");
}

// faulty_storage (testing/faulty_storage.hpp), over both client stores: it forwards every
// operation, fails the one its hook names before the store sees it, and injects nothing once
// the hook is cleared.
namespace {

static_assert(storage_policy<faulty_storage<memory_storage>>);
static_assert(storage_policy<faulty_storage<sqlite_storage>>);
// A wrapped store's capabilities are forwarded exactly when it has them, so the engine takes
// the same paths through the decorator as on the bare store.
using faulty_sqlite_txn = faulty_storage<sqlite_storage>::transaction;
using faulty_memory_txn = faulty_storage<memory_storage>::transaction;
static_assert(detail::metadata_access<faulty_sqlite_txn> &&
              detail::acknowledge_access<faulty_sqlite_txn> &&
              detail::batch_read_access<faulty_sqlite_txn> &&
              detail::insert_access<faulty_sqlite_txn>);
static_assert(!detail::metadata_access<faulty_memory_txn> &&
              !detail::acknowledge_access<faulty_memory_txn> &&
              !detail::batch_read_access<faulty_memory_txn> &&
              !detail::insert_access<faulty_memory_txn>);

/// What a client store holds, as text: records, parked records, counts, cursor and clock.
template <class Storage>
std::string contents(Storage& s) {
    std::string out;
    for (auto& [key, r] : s.list("reservations"))
        out += key + ' ' + json::serialize(r.value) + " dirty " + std::to_string(r.dirty_mask) +
               '\n';
    for (auto& p : s.parked("")) out += "parked " + p.key + '\n';
    const auto n = s.pending("reservations");
    out += "pending " + std::to_string(n.dirty) + ' ' + std::to_string(n.conflicts) + '\n';
    auto t = s.begin();
    const auto clock = t.clock();
    return out + "cursor " + std::to_string(t.cursor("reservations")) + " clock " +
           std::to_string(clock.wall) + '.' + std::to_string(clock.logical);
}

local_record dirty_record(const std::string& id) {
    local_record r;
    r.value = json::object{{"id", id}};
    r.dirty_mask = 1;
    r.generation = 1;
    return r;
}

/// Runs every operation of the StoragePolicy once through `store`, in one transaction that
/// commits; stops at the first that throws. An injected fault must name `fault`, and the
/// operation it stopped must not have reached the wrapped store. Returns the faults seen.
template <class Storage>
int run_every_operation(faulty_storage<Storage>& store, const std::string& fault) {
    int faults = 0;
    auto attempt = [&](std::string_view name, auto&& operation) {
        try {
            operation();
            return true;
        } catch (const sync_error& e) {
            ++faults;
            CHECK(name == fault);
            CHECK(e.code() == errc::storage_failure);
            CHECK_THAT(e.what(), Catch::Contains("injected storage failure at " + fault));
            return false;
        }
    };
    // Outside a transaction (the memory store's reads wait for an open one).
    std::optional<typename faulty_storage<Storage>::transaction> t;
    if (!attempt("list", [&] { (void)store.list("reservations"); }) ||
        !attempt("parked", [&] { (void)store.parked(""); }) ||
        !attempt("pending", [&] { (void)store.pending("reservations"); }) ||
        !attempt("begin", [&] { t.emplace(store.begin()); }))
        return faults;
    auto& below = t->next_layer(); // what the wrapped store's transaction holds
    struct step {
        std::string_view name;
        std::function<void()> run;
        std::function<bool()> not_done; ///< for a write: its effect is absent below
    };
    const std::vector<step> steps{
        {"load", [&] { (void)t->load("reservations", "r-1"); }, {}},
        {"pushable_keys", [&] { (void)t->pushable_keys("reservations", "", 10); }, {}},
        {"cursor", [&] { (void)t->cursor("reservations"); }, {}},
        {"load_parked", [&] { (void)t->load_parked("reservations", "r-3"); }, {}},
        {"clock", [&] { (void)t->clock(); }, {}},
        {"client_id", [&] { (void)t->client_id(); }, {}},
        {"save", [&] { t->save("reservations", "r-2", dirty_record("r-2")); },
         [&] { return !below.load("reservations", "r-2"); }},
        {"remove", [&] { t->remove("reservations", "r-1"); },
         [&] { return below.load("reservations", "r-1").has_value(); }},
        {"set_cursor", [&] { t->set_cursor("reservations", 9); },
         [&] { return below.cursor("reservations") == 5; }},
        {"save_parked",
         [&] {
             parked_record p;
             p.collection = "reservations";
             p.key = "r-4";
             t->save_parked(p);
         },
         [&] { return !below.load_parked("reservations", "r-4"); }},
        {"remove_parked", [&] { t->remove_parked("reservations", "r-3"); },
         [&] { return below.load_parked("reservations", "r-3").has_value(); }},
        {"next_mutation_id", [&] { (void)t->next_mutation_id(); }, {}},
        {"set_clock", [&] { t->set_clock({200, 0}); },
         [&] { return below.clock() == hlc_state{100, 1}; }},
        {"commit", [&] { t->commit(); }, {}},
    };
    for (const auto& s : steps)
        if (!attempt(s.name, s.run)) {
            if (s.not_done) CHECK(s.not_done());
            break;
        }
    return faults;
}

/// A store holding r-1 (dirty), a conflict parked for r-3, cursor 5 and clock 100.1.
template <class Storage>
void fill(Storage& s) {
    auto t = s.begin();
    t.save("reservations", "r-1", dirty_record("r-1"));
    parked_record p;
    p.collection = "reservations";
    p.key = "r-3";
    t.save_parked(p);
    t.set_cursor("reservations", 5);
    t.set_clock({100, 1});
    t.commit();
}

template <class Storage>
void check_fault_at(faulty_storage<Storage>& store, const std::string& op) {
    fill(store.next_layer());
    const auto before = contents(store.next_layer());
    store.set_fault_hook([&](std::string_view at) { return at == op; });
    CHECK(run_every_operation(store, op) == 1);
    CHECK(contents(store.next_layer()) == before);

    // Cleared, the hook injects nothing: every operation reaches the store.
    store.set_fault_hook({});
    CHECK(run_every_operation(store, op) == 0);
    CHECK(contents(store.next_layer()) == "r-2 {\"id\":\"r-2\"} dirty 1\nparked r-4\n"
                                          "pending 1 1\ncursor 9 clock 200.0");
}

} // namespace

TEST_CASE("faulty_storage fails the operation its hook names, and the wrapped store never "
          "sees it",
          "[testing][faults]") {
    const std::string op = GENERATE(as<std::string>{}, "list", "parked", "pending", "begin",
                                    "load", "pushable_keys", "cursor", "load_parked", "clock",
                                    "client_id", "save", "remove", "set_cursor", "save_parked",
                                    "remove_parked", "next_mutation_id", "set_clock", "commit");
    CAPTURE(op);
    SECTION("over memory_storage") {
        faulty_storage<memory_storage> store;
        check_fault_at(store, op);
    }
    SECTION("over sqlite_storage") {
        temp_file file;
        faulty_storage<sqlite_storage> store(file.str());
        check_fault_at(store, op);
    }
}

TEST_CASE("faulty_storage forwards the wrapped store's capabilities, their writes fail as "
          "\"save\"",
          "[testing][faults]") {
    temp_file file;
    faulty_storage<sqlite_storage> store(file.str());
    fill(store.next_layer());
    std::string failing;
    store.set_fault_hook([&](std::string_view at) { return at == failing; });
    const auto r1 = dirty_record("r-1");
    {
        auto t = store.begin();
        failing = "save"; // every write of a record is a "save"
        CHECK_THROWS_WITH(t.save_metadata("reservations", "r-1", r1),
                          Catch::Contains("injected storage failure at save"));
        CHECK_THROWS_AS(t.acknowledge("reservations", "r-1", 1, 7, 99), sync_error);
        CHECK_THROWS_AS(t.insert_new("reservations", "r-5", r1), sync_error);
        CHECK(t.next_layer().load("reservations", "r-1")->base_version == 0);
        CHECK_FALSE(t.next_layer().load("reservations", "r-5"));
        failing = "load_metadata";
        CHECK_THROWS_AS(t.load_metadata("reservations", "r-1"), sync_error);
        failing = "pushable_records";
        CHECK_THROWS_AS(t.pushable_records("reservations", "", 10), sync_error);

        failing.clear();
        REQUIRE(t.pushable_records("reservations", "", 10).size() == 1);
        CHECK(t.load_metadata("reservations", "r-1")->value.empty()); // the store's own: no value
        CHECK(t.acknowledge("reservations", "r-1", 1, 7, 99));
        CHECK(t.insert_new("reservations", "r-5", r1));
        t.commit();
    }
    auto t = store.next_layer().begin();
    CHECK(t.load("reservations", "r-1")->base_version == 7);
    CHECK(t.load("reservations", "r-5"));
}
