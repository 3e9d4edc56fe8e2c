// The client's "nothing lost" rules (detail/replica_logic.hpp) over in-memory store
// transactions: an edit, a push built and acknowledged, a pull page, a rejection and each
// conflict resolution, with no engine, transport or server.
#include <offsync/detail/replica_logic.hpp>
#include <offsync/storage/memory.hpp>

#include <catch2/catch.hpp>

#include <boost/describe/class.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rules_test {

/// A per-user record with string ids. Dirty bits: id 0, title 1, priority 2, done 3, notes 4.
struct task {
    std::string id;
    std::string title;
    std::int32_t priority = 1;
    bool done = false;
    std::string notes;
};
BOOST_DESCRIBE_STRUCT(task, (), (id, title, priority, done, notes))

/// A shared, client-writable record with integer ids.
struct counter {
    std::int64_t id = 0;
    std::string label;
    std::int64_t count = 0;
};
BOOST_DESCRIBE_STRUCT(counter, (), (id, label, count))

} // namespace rules_test

template <>
struct offsync::model_traits<rules_test::task> {
    static constexpr std::string_view collection = "tasks";
    static constexpr auto key = &rules_test::task::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
};

template <>
struct offsync::model_traits<rules_test::counter> {
    static constexpr std::string_view collection = "counters";
    static constexpr auto key = &rules_test::counter::id;
    static constexpr offsync::scope scope = offsync::scope::shared;
    static constexpr bool client_writable = true;
};

using namespace offsync;
namespace json = boost::json;

namespace {

constexpr std::uint64_t id_bit = 1u << 0, title_bit = 1u << 1, priority_bit = 1u << 2,
                        done_bit = 1u << 3, notes_bit = 1u << 4, all_bits = 0x1F;

const collection_schema& tasks() { return schema_of<rules_test::task>(); }
const collection_schema& counters() { return schema_of<rules_test::counter>(); }

json::object parse_object(std::string_view text) {
    auto jv = json::parse(text);
    REQUIRE(jv.is_object());
    return jv.get_object();
}

json::object task_value(std::string id, std::string title, std::int32_t priority = 1,
                        bool done = false, std::string notes = "") {
    rules_test::task t;
    t.id = std::move(id);
    t.title = std::move(title);
    t.priority = priority;
    t.done = done;
    t.notes = std::move(notes);
    return to_json_object(t);
}

/// A record as the server holds it at `version`.
change server_change(std::string key, std::uint64_t version, json::object value,
                     std::int64_t wall = 0) {
    change c;
    c.id = json::value(json::string(key));
    c.version = version;
    c.value = std::move(value);
    c.stamp = hlc_stamp{wall, 0, "other-device"};
    return c;
}

change tombstone(std::string key, std::uint64_t version) {
    change c;
    c.id = json::value(json::string(key));
    c.version = version;
    c.deleted = true;
    c.stamp = hlc_stamp{0, 0, "other-device"};
    return c;
}

/// The marker a server sends for this client's own latest write: no value.
change echo_of(std::string key, std::uint64_t version, bool deleted = false) {
    change c = tombstone(std::move(key), version);
    c.deleted = deleted;
    c.echo = true;
    return c;
}

/// Runs `f(txn)` in one transaction and commits it; returns what `f` returns.
template <class F>
auto in_txn(memory_storage& store, F&& f) {
    auto txn = store.begin();
    if constexpr (std::is_void_v<decltype(f(txn))>) {
        f(txn);
        txn.commit();
    } else {
        auto result = f(txn);
        txn.commit();
        return result;
    }
}

std::optional<local_record> stored(memory_storage& store, std::string_view key,
                                   std::string_view collection = "tasks") {
    auto txn = store.begin();
    return txn.load(collection, key);
}

std::optional<parked_record> parked_copy(memory_storage& store, std::string_view key) {
    auto txn = store.begin();
    return txn.load_parked("tasks", key);
}

/// The mutation id the store would issue next (the transaction is abandoned: nothing consumed).
std::uint64_t next_id(memory_storage& store) {
    auto txn = store.begin();
    return txn.next_mutation_id();
}

/// Stores `value` as a record synced at `version`: clean, as a pull leaves it.
void seed_synced(memory_storage& store, const std::string& key, const json::object& value,
                 std::uint64_t version) {
    in_txn(store, [&](auto& txn) {
        local_record r;
        r.value = normalize(tasks(), value);
        r.base_version = version;
        txn.save("tasks", key, r);
    });
}

bool edit(memory_storage& store, std::string_view key, std::optional<json::object> value,
          std::int64_t now_ms = 1000, const collection_schema& schema = tasks()) {
    return in_txn(store, [&](auto& txn) {
        return detail::local_edit(txn, schema, key, std::move(value), now_ms);
    });
}

struct built_push {
    push_request request;
    std::vector<detail::sent_mutation> sent;
};

/// Builds one push of every pushable record of `schema`, as the engine's prepare_push does.
built_push build(memory_storage& store, const collection_schema& schema = tasks()) {
    built_push b;
    in_txn(store, [&](auto& txn) {
        auto records = detail::pushable_batch(txn, schema.name, "", 100);
        detail::build_push(txn, schema, records, b.request, b.sent);
    });
    return b;
}

std::vector<std::string> pushable_keys(memory_storage& store,
                                       std::string_view after = "", std::size_t limit = 100) {
    auto txn = store.begin();
    std::vector<std::string> keys;
    for (auto& [key, rec] : detail::pushable_batch(txn, "tasks", after, limit))
        keys.push_back(key);
    return keys;
}

bool applied(memory_storage& store, const detail::sent_mutation& sent, std::uint64_t version,
             std::int64_t now_ms = 5000, const change* server = nullptr) {
    return in_txn(store, [&](auto& txn) {
        return detail::apply_applied(txn, tasks(), sent, version, now_ms, server);
    });
}

bool pulled(memory_storage& store, change c, std::int64_t now_ms = 7000,
            const collection_schema& schema = tasks()) {
    return in_txn(store, [&](auto& txn) { return detail::apply_pulled(txn, schema, c, now_ms); });
}

conflict_outcome resolve(memory_storage& store, std::string_view key, const change& server,
                         const resolution& r, std::int64_t now_ms = 9000) {
    return in_txn(store, [&](auto& txn) {
        auto rec = txn.load("tasks", key);
        REQUIRE(rec);
        return detail::apply_resolution(txn, tasks(), key, std::move(*rec), server, r, now_ms);
    });
}

void reject(memory_storage& store, std::string_view key, const mutation_result& result,
            std::int64_t now_ms = 777) {
    in_txn(store, [&](auto& txn) {
        auto rec = txn.load("tasks", key);
        REQUIRE(rec);
        detail::park_rejected(txn, tasks(), key, std::move(*rec), result, now_ms);
    });
}

mutation_result rejection(std::optional<change> server = std::nullopt) {
    mutation_result r;
    r.status = mutation_status::rejected;
    r.error_code = "invalid_field";
    r.error_message = "field 'priority' is out of range";
    r.server = std::move(server);
    return r;
}

/// A hand-built schema of `n` integer fields "f0".."f<n-1>", field 0 the key, no defaults.
collection_schema numbered_schema(std::size_t n) {
    collection_schema s;
    s.name = "wide";
    for (std::size_t i = 0; i < n; ++i) s.fields.push_back("f" + std::to_string(i));
    s.key_field = "f0";
    return s;
}

/// A store transaction with an insert fast path (`detail::insert_access`), as sqlite_storage
/// has: the general path must still hold when the insert finds the record there.
struct inserting_txn {
    memory_storage::transaction& txn;
    int inserts = 0;

    std::optional<local_record> load(std::string_view c, std::string_view k) {
        return txn.load(c, k);
    }
    void save(std::string_view c, std::string_view k, const local_record& r) { txn.save(c, k, r); }
    void remove(std::string_view c, std::string_view k) { txn.remove(c, k); }
    std::optional<parked_record> load_parked(std::string_view c, std::string_view k) {
        return txn.load_parked(c, k);
    }
    void save_parked(const parked_record& p) { txn.save_parked(p); }
    bool insert_new(std::string_view c, std::string_view k, const local_record& r) {
        if (txn.load(c, k)) return false;
        txn.save(c, k, r);
        ++inserts;
        return true;
    }
};
static_assert(detail::insert_access<inserting_txn>);
static_assert(!detail::insert_access<memory_storage::transaction>);

} // namespace

// ---------------------------------------------------------------------------------------------
// Field arithmetic

TEST_CASE("same_value reads a missing field as its default and ignores unknown fields",
          "[replica-rules]") {
    const auto& s = tasks();
    CHECK(detail::same_value(s, json::object{}, s.defaults));
    CHECK(detail::same_value(s, parse_object(R"({"priority": 1})"), json::object{}));
    CHECK_FALSE(detail::same_value(s, parse_object(R"({"priority": 2})"), json::object{}));
    CHECK(detail::same_value(s, parse_object(R"({"title": "a", "extra": 1})"),
                             parse_object(R"({"title": "a", "extra": 2})")));
    CHECK_FALSE(detail::same_value(s, task_value("t1", "a"), task_value("t1", "b")));
    CHECK_FALSE(detail::same_value(s, task_value("t1", "a"), task_value("t2", "a")));
    CHECK(detail::same_value(s, task_value("t1", "a", 3, true, "n"),
                             task_value("t1", "a", 3, true, "n")));

    // Without a default, a field missing on one side only differs.
    auto bare = numbered_schema(2);
    CHECK(detail::same_value(bare, json::object{}, json::object{}));
    CHECK_FALSE(detail::same_value(bare, parse_object(R"({"f1": 0})"), json::object{}));
}

TEST_CASE("diff_mask marks exactly the fields whose values differ, bit i for field i",
          "[replica-rules]") {
    const auto& s = tasks();
    const auto a = task_value("t1", "A", 1, false, "n");
    CHECK(detail::diff_mask(s, a, a) == 0);
    CHECK(detail::diff_mask(s, a, task_value("t1", "B", 1, true, "n")) == (title_bit | done_bit));
    CHECK(detail::diff_mask(s, task_value("t1", "B", 1, true, "n"), a) == (title_bit | done_bit));
    CHECK(detail::diff_mask(s, a, task_value("t2", "A", 4, false, "m")) ==
          (id_bit | priority_bit | notes_bit));
    // Unknown fields carry no bit.
    auto extra = a;
    extra["colour"] = "red";
    CHECK(detail::diff_mask(s, a, extra) == 0);
    // Presence is compared as it is, defaults not applied: callers normalise both sides first.
    CHECK(detail::diff_mask(s, json::object{}, parse_object(R"({"priority": 1})")) ==
          priority_bit);
}

TEST_CASE("select_fields picks the masked fields in schema order, a missing one as its default",
          "[replica-rules]") {
    const auto& s = tasks();
    const auto value = parse_object(R"({"notes": "n", "extra": 1, "title": "T", "id": "t1"})");
    const auto picked =
        detail::select_fields(s, value, notes_bit | priority_bit | id_bit | title_bit);
    std::vector<std::string> order;
    for (const auto& kv : picked) order.emplace_back(kv.key());
    CHECK(order == std::vector<std::string>{"id", "title", "priority", "notes"});
    CHECK(picked.at("priority") == 1); // missing: its default
    CHECK(picked.at("notes") == "n");
    CHECK(detail::select_fields(s, value, 0).empty());
    CHECK(value.size() == 4); // a const value is copied from, not spent

    // take_fields picks the same fields, spending the picked values of its source (what is
    // left in their place is unspecified); the others are untouched.
    auto source = value;
    const auto taken = detail::take_fields(s, source, title_bit | notes_bit | priority_bit);
    CHECK(taken == detail::select_fields(s, value, title_bit | notes_bit | priority_bit));
    CHECK(source.at("id") == "t1");
    CHECK(source.at("extra") == 1);

    // A field with neither a value nor a default is left out.
    auto bare = numbered_schema(3);
    CHECK(detail::select_fields(bare, parse_object(R"({"f0": 5})"), 0b111) ==
          parse_object(R"({"f0": 5})"));
}

TEST_CASE("overlay lays the server's record, normalised, under the kept local fields",
          "[replica-rules]") {
    const auto& s = tasks();
    const auto server = parse_object(R"({"id": "t1", "title": "S", "priority": 5, "extra": 9})");
    const auto local = task_value("t1", "L", 2, true, "mine");
    const auto out = detail::overlay(s, server, local, title_bit | notes_bit);
    CHECK(out == task_value("t1", "L", 5, false, "mine"));
    // A kept field the local value lacks stays the server's.
    CHECK(detail::overlay(s, server, parse_object(R"({"title": "L"})"), title_bit | priority_bit)
              .at("priority") == 5);
    CHECK(detail::overlay(s, server, local, 0) == normalize(s, server));
}

TEST_CASE("diff_mask, select_fields and overlay reach field 63 of a 64-field schema",
          "[replica-rules]") {
    auto s = numbered_schema(64);
    json::object a, b;
    for (std::size_t i = 0; i < 64; ++i) {
        a[s.fields[i]] = 0;
        b[s.fields[i]] = 0;
    }
    b["f63"] = 1;
    b["f31"] = 1;
    const std::uint64_t top = std::uint64_t{1} << 63;
    CHECK(detail::diff_mask(s, a, b) == (top | std::uint64_t{1} << 31));
    CHECK(detail::select_fields(s, b, top) == parse_object(R"({"f63": 1})"));
    CHECK(detail::select_fields(s, b, s.all_fields_mask()).size() == 64);
    CHECK(detail::overlay(s, a, b, top).at("f63") == 1);
    CHECK(detail::overlay(s, a, b, top).at("f31") == 0);
}

// ---------------------------------------------------------------------------------------------
// local_edit

TEST_CASE("a new record is dirty in every field, with a mutation id for its first generation",
          "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", parse_object(R"({"title": "Buy milk", "id": "ignored"})"), 1000));
    const auto rec = stored(store, "t1");
    REQUIRE(rec);
    // Normalised over the defaults, the key field written from the key.
    CHECK(rec->value == task_value("t1", "Buy milk"));
    CHECK(rec->dirty_mask == all_bits);
    CHECK(rec->generation == 1);
    CHECK(rec->base_version == 0);
    CHECK_FALSE(rec->deleted);
    CHECK_FALSE(rec->delete_pending);
    CHECK(rec->sent_mutation_id == 1);
    CHECK(rec->sent_generation == 1);
    CHECK(rec->modified_at == hlc_stamp{1000, 0, "client-a"});
    CHECK(rec->parked == park_state::none);
    CHECK(rec->pushable());
    // The clock advanced with the edit, in the same transaction.
    CHECK(store.begin().clock() == hlc_state{1000, 0});
    CHECK(next_id(store) == 2);
}

TEST_CASE("an integer-keyed record holds its key as a JSON integer", "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "42", parse_object(R"({"label": "visits"})"), 1000, counters()));
    REQUIRE(edit(store, "-3", parse_object(R"({"label": "debt"})"), 1000, counters()));
    const auto rec = stored(store, "42", "counters");
    REQUIRE(rec);
    CHECK(rec->value.at("id").is_int64());
    CHECK(rec->value.at("id") == 42);
    CHECK(stored(store, "-3", "counters")->value.at("id") == -3);
}

TEST_CASE("an edit marks only the fields it changes dirty and bumps the generation",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);

    REQUIRE(edit(store, "t1", task_value("t1", "B"), 1000));
    auto rec = stored(store, "t1");
    CHECK(rec->dirty_mask == title_bit);
    CHECK(rec->generation == 1);
    CHECK(rec->base_version == 7); // still based on what the server had
    const auto first_id = rec->sent_mutation_id;
    CHECK(first_id != 0);

    SECTION("dirty fields accumulate; every edit has its own generation and mutation id") {
        REQUIRE(edit(store, "t1", task_value("t1", "B", 3), 1000));
        rec = stored(store, "t1");
        CHECK(rec->dirty_mask == (title_bit | priority_bit));
        CHECK(rec->generation == 2);
        CHECK(rec->sent_generation == 2);
        CHECK(rec->sent_mutation_id > first_id);
        // Same millisecond: the stamp moves on by its logical counter.
        CHECK(rec->modified_at == hlc_stamp{1000, 1, "client-a"});

        // Back to the server's title: still an edit of it, still to be pushed.
        REQUIRE(edit(store, "t1", task_value("t1", "A", 3), 2000));
        CHECK(stored(store, "t1")->dirty_mask == (title_bit | priority_bit));
    }
    SECTION("an edit that changes nothing writes nothing") {
        const auto id_before = next_id(store);
        CHECK_FALSE(edit(store, "t1", task_value("t1", "B"), 3000));
        // A value that normalises to the same record changes nothing either.
        CHECK_FALSE(edit(store, "t1", parse_object(R"({"title": "B", "extra": true})"), 3000));
        const auto after = stored(store, "t1");
        CHECK(after->generation == 1);
        CHECK(after->modified_at == rec->modified_at);
        CHECK(next_id(store) == id_before);
    }
}

TEST_CASE("a local delete empties the record and leaves a delete to push", "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", task_value("t1", "B")));

    REQUIRE(edit(store, "t1", std::nullopt, 2000));
    auto rec = stored(store, "t1");
    REQUIRE(rec);
    CHECK(rec->deleted);
    CHECK(rec->delete_pending);
    CHECK(rec->value.empty());
    CHECK(rec->dirty_mask == 0);
    CHECK(rec->generation == 2);
    CHECK(rec->base_version == 7);
    CHECK(rec->pushable());
    CHECK(rec->modified_at.wall == 2000);

    SECTION("deleting again, or a key never stored, changes nothing") {
        CHECK_FALSE(edit(store, "t1", std::nullopt));
        CHECK(stored(store, "t1")->generation == 2);
        CHECK_FALSE(edit(store, "nope", std::nullopt));
        CHECK_FALSE(stored(store, "nope"));
    }
    SECTION("a record recreated over its delete is new again: every field dirty") {
        REQUIRE(edit(store, "t1", task_value("t1", "C"), 3000));
        rec = stored(store, "t1");
        CHECK_FALSE(rec->deleted);
        CHECK_FALSE(rec->delete_pending);
        CHECK(rec->dirty_mask == all_bits);
        CHECK(rec->value.at("title") == "C");
        CHECK(rec->generation == 3);
        CHECK(rec->base_version == 7);
    }
}

TEST_CASE("a record created offline and deleted before any push still sends its delete",
          "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "A")));
    REQUIRE(edit(store, "t1", std::nullopt));
    const auto rec = stored(store, "t1");
    CHECK(rec->base_version == 0);
    CHECK(rec->delete_pending);
    const auto push = build(store);
    REQUIRE(push.request.mutations.size() == 1);
    CHECK(push.request.mutations[0].op == mutation_op::remove);
    CHECK(push.request.mutations[0].base_version == 0);
}

TEST_CASE("an edit answers a rejection by unparking the record", "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "A", 99)));
    reject(store, "t1", rejection());
    REQUIRE(stored(store, "t1")->parked == park_state::rejected);
    CHECK(pushable_keys(store).empty());

    REQUIRE(edit(store, "t1", task_value("t1", "A", 3)));
    const auto rec = stored(store, "t1");
    CHECK(rec->parked == park_state::none);
    CHECK_FALSE(parked_copy(store, "t1"));
    CHECK(pushable_keys(store) == std::vector<std::string>{"t1"});
}

TEST_CASE("an edit of a conflict-parked record updates the parked copy, the record stays parked",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", task_value("t1", "B")));
    REQUIRE(resolve(store, "t1", server_change("t1", 9, task_value("t1", "S")),
                    resolution::defer()) == conflict_outcome::deferred);

    REQUIRE(edit(store, "t1", task_value("t1", "C", 2)));
    auto p = parked_copy(store, "t1");
    REQUIRE(p);
    CHECK(p->local_value == task_value("t1", "C", 2));
    CHECK_FALSE(p->local_deleted);
    REQUIRE(p->server);
    CHECK(p->server->version == 9); // the server side is untouched
    CHECK(stored(store, "t1")->parked == park_state::conflict);
    CHECK(pushable_keys(store).empty());

    REQUIRE(edit(store, "t1", std::nullopt));
    p = parked_copy(store, "t1");
    CHECK(p->local_deleted);
    CHECK(p->local_value.empty());
    CHECK(stored(store, "t1")->parked == park_state::conflict);
}

// ---------------------------------------------------------------------------------------------
// Building a push

TEST_CASE("pushable_batch lists dirty, unparked records after a key, ascending, at most limit",
          "[replica-rules]") {
    memory_storage store("client-a");
    for (const char* k : {"t3", "t1", "t2"}) REQUIRE(edit(store, k, task_value(k, "x")));
    seed_synced(store, "t4", task_value("t4", "clean"), 3);
    seed_synced(store, "t6", task_value("t6", "gone"), 3);
    REQUIRE(edit(store, "t6", std::nullopt)); // a pending delete is pushable
    REQUIRE(edit(store, "t5", task_value("t5", "bad")));
    reject(store, "t5", rejection());

    CHECK(pushable_keys(store) == std::vector<std::string>{"t1", "t2", "t3", "t6"});
    CHECK(pushable_keys(store, "t1", 2) == std::vector<std::string>{"t2", "t3"});
    CHECK(pushable_keys(store, "t3") == std::vector<std::string>{"t6"});
    CHECK(pushable_keys(store, "t6").empty());
    CHECK(pushable_keys(store, "", 0).empty());

    auto txn = store.begin();
    CHECK(detail::pushable_batch(txn, "unknown", "", 10).empty());
    auto batch = detail::pushable_batch(txn, "tasks", "", 1);
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].second.value.at("title") == "x"); // with its record
}

TEST_CASE("a push sends a new record whole, an edited one as a patch and a delete bare",
          "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "new", 2), 1000));
    seed_synced(store, "t2", task_value("t2", "A"), 7);
    REQUIRE(edit(store, "t2", task_value("t2", "B"), 1100));
    seed_synced(store, "t3", task_value("t3", "A"), 8);
    REQUIRE(edit(store, "t3", std::nullopt, 1200));
    const auto ids_before = next_id(store);
    const auto t1 = *stored(store, "t1");

    const auto push = build(store);
    REQUIRE(push.request.mutations.size() == 3);
    const auto& m1 = push.request.mutations[0];
    CHECK(m1.collection == "tasks");
    CHECK(m1.id == "t1");
    CHECK(m1.op == mutation_op::upsert);
    CHECK(m1.base_version == 0);
    CHECK(m1.fields == task_value("t1", "new", 2));
    CHECK(m1.stamp == t1.modified_at);
    // Each record was edited once: the mutation id its edit issued goes out, none is new.
    CHECK(m1.mutation_id == t1.sent_mutation_id);
    CHECK(next_id(store) == ids_before);

    const auto& m2 = push.request.mutations[1];
    CHECK(m2.id == "t2");
    CHECK(m2.op == mutation_op::upsert);
    CHECK(m2.base_version == 7);
    CHECK(m2.fields == parse_object(R"({"title": "B"})"));

    const auto& m3 = push.request.mutations[2];
    CHECK(m3.id == "t3");
    CHECK(m3.op == mutation_op::remove);
    CHECK(m3.base_version == 8);
    CHECK(m3.fields.empty());

    REQUIRE(push.sent.size() == 3);
    CHECK(push.sent[0].key == "t1");
    CHECK(push.sent[0].generation == t1.generation);
    CHECK(push.sent[2].key == "t3");
    // Distinct, increasing ids: the server's idempotency key.
    CHECK(m1.mutation_id < m2.mutation_id);
    CHECK(m2.mutation_id < m3.mutation_id);
    // The stored records keep their values: only the batch's copies were spent.
    CHECK(stored(store, "t1")->value == task_value("t1", "new", 2));
}

TEST_CASE("a pushed integer key travels as a JSON integer", "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "42", parse_object(R"({"label": "visits", "count": 3})"), 1000,
                 counters()));
    const auto push = build(store, counters());
    REQUIRE(push.request.mutations.size() == 1);
    CHECK(push.request.mutations[0].id.is_int64());
    CHECK(push.request.mutations[0].id == 42);
    CHECK(push.request.mutations[0].collection == "counters");
    CHECK(push.sent[0].key == "42");
}

TEST_CASE("a record without a mutation id for its generation gets one, persisted, and a retry "
          "reuses it",
          "[replica-rules]") {
    memory_storage store("client-a");
    // As a resolved conflict or an acknowledgement of an older generation leaves it.
    in_txn(store, [](auto& txn) {
        local_record r;
        r.value = task_value("t1", "A");
        r.base_version = 4;
        r.dirty_mask = title_bit;
        r.generation = 3;
        r.sent_mutation_id = 0;
        txn.save("tasks", "t1", r);
        local_record stale = r;
        stale.sent_mutation_id = 1; // issued for generation 2, not this one
        stale.sent_generation = 2;
        txn.save("tasks", "t2", stale);
    });
    const auto first = build(store);
    REQUIRE(first.request.mutations.size() == 2);
    const auto id1 = first.request.mutations[0].mutation_id;
    const auto id2 = first.request.mutations[1].mutation_id;
    CHECK(id1 != 0);
    CHECK(id2 != 1);
    CHECK(id1 != id2);
    auto rec = stored(store, "t1");
    CHECK(rec->sent_mutation_id == id1);
    CHECK(rec->sent_generation == 3);
    CHECK(stored(store, "t2")->sent_mutation_id == id2);
    CHECK(stored(store, "t2")->sent_generation == 3);

    // The answer was lost: the same records go again with the same ids, no new id issued.
    const auto ids_before = next_id(store);
    const auto retry = build(store);
    REQUIRE(retry.request.mutations.size() == 2);
    CHECK(retry.request.mutations[0].mutation_id == id1);
    CHECK(retry.request.mutations[1].mutation_id == id2);
    CHECK(next_id(store) == ids_before);
}

TEST_CASE("build_push skips records that are not pushable", "[replica-rules]") {
    memory_storage store("client-a");
    std::vector<std::pair<std::string, local_record>> records;
    local_record clean;
    clean.value = task_value("t1", "A");
    clean.base_version = 3;
    records.emplace_back("t1", clean);
    local_record parked = clean;
    parked.dirty_mask = title_bit;
    parked.parked = park_state::conflict;
    records.emplace_back("t2", parked);
    push_request request;
    std::vector<detail::sent_mutation> sent;
    in_txn(store, [&](auto& txn) { detail::build_push(txn, tasks(), records, request, sent); });
    CHECK(request.mutations.empty());
    CHECK(sent.empty());
    CHECK(next_id(store) == 1);
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements

TEST_CASE("an acknowledgement cleans the record at the generation it was built from",
          "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "A")));
    const auto push = build(store);
    REQUIRE(push.sent.size() == 1);

    CHECK(applied(store, push.sent[0], 12, 5000));
    const auto rec = stored(store, "t1");
    REQUIRE(rec);
    CHECK(rec->dirty_mask == 0);
    CHECK_FALSE(rec->dirty());
    CHECK(rec->base_version == 12);
    CHECK(rec->sent_mutation_id == 0);
    CHECK(rec->last_synced_ms == 5000);
    CHECK(rec->value == task_value("t1", "A"));
    CHECK(pushable_keys(store).empty());
}

TEST_CASE("invariant 1: an edit made while its push is in flight survives the acknowledgement",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", task_value("t1", "B")));
    const auto push = build(store);
    REQUIRE(push.sent.size() == 1);
    // In flight: the user writes a note.
    REQUIRE(edit(store, "t1", task_value("t1", "B", 1, false, "later")));

    SECTION("a bare acknowledgement") {
        CHECK(applied(store, push.sent[0], 8, 5000));
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "B", 1, false, "later"));
        CHECK(rec->dirty_mask == (title_bit | notes_bit));
        CHECK(rec->base_version == 8); // rebased on the write the server took
        CHECK(rec->last_synced_ms == 0);
        CHECK(rec->sent_mutation_id == 0);
    }
    SECTION("an acknowledgement carrying the server's merged record") {
        // Another client set priority 9 since our base; the server holds it at version 8.
        const auto server = server_change("t1", 8, task_value("t1", "B", 9));
        CHECK(applied(store, push.sent[0], 8, 5000, &server));
        const auto rec = stored(store, "t1");
        // Our dirty fields stay ours, the field others wrote is taken.
        CHECK(rec->value == task_value("t1", "B", 9, false, "later"));
        CHECK(rec->dirty_mask == (title_bit | notes_bit));
        CHECK(rec->base_version == 8);
    }
    // Either way the newer edit goes out next, on the new base, under a new mutation id.
    const auto next = build(store);
    REQUIRE(next.request.mutations.size() == 1);
    const auto& m = next.request.mutations[0];
    CHECK(m.base_version == 8);
    CHECK(m.fields == parse_object(R"({"title": "B", "notes": "later"})"));
    CHECK(m.mutation_id != push.request.mutations[0].mutation_id);
}

TEST_CASE("an acknowledgement carrying the server's record takes the fields others wrote",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", task_value("t1", "B")));
    const auto push = build(store);

    SECTION("a live record: the store holds it as the server does") {
        auto server = server_change("t1", 9, parse_object(R"({"id": "t1", "title": "B",
                                                              "priority": 4, "extra": 1})"));
        CHECK(applied(store, push.sent[0], 9, 5000, &server));
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "B", 4)); // normalised: defaults in, unknowns out
        CHECK(rec->dirty_mask == 0);
        CHECK(rec->base_version == 9);
        CHECK(rec->last_synced_ms == 5000);
    }
    SECTION("a tombstone is no record to take: a bare acknowledgement") {
        const auto server = tombstone("t1", 9);
        CHECK(applied(store, push.sent[0], 9, 5000, &server));
        const auto rec = stored(store, "t1");
        REQUIRE(rec);
        CHECK(rec->value == task_value("t1", "B"));
        CHECK(rec->dirty_mask == 0);
        CHECK(rec->base_version == 9);
    }
}

TEST_CASE("an acknowledged delete removes the record, unless it was recreated meanwhile",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", std::nullopt));
    const auto push = build(store);
    REQUIRE(push.sent.size() == 1);

    SECTION("acknowledged as sent") {
        CHECK(applied(store, push.sent[0], 8));
        CHECK_FALSE(stored(store, "t1"));
    }
    SECTION("acknowledged with a record: still a delete") {
        const auto server = server_change("t1", 8, task_value("t1", "A"));
        CHECK(applied(store, push.sent[0], 8, 5000, &server));
        CHECK_FALSE(stored(store, "t1"));
    }
    SECTION("recreated while the delete was in flight") {
        REQUIRE(edit(store, "t1", task_value("t1", "again")));
        CHECK(applied(store, push.sent[0], 8));
        const auto rec = stored(store, "t1");
        REQUIRE(rec);
        CHECK_FALSE(rec->deleted);
        CHECK(rec->value.at("title") == "again");
        CHECK(rec->dirty_mask == all_bits);
        CHECK(rec->base_version == 8);
        const auto next = build(store);
        REQUIRE(next.request.mutations.size() == 1);
        CHECK(next.request.mutations[0].op == mutation_op::upsert);
        CHECK(next.request.mutations[0].base_version == 8);
        CHECK(next.request.mutations[0].fields.size() == tasks().fields.size());
    }
}

TEST_CASE("an acknowledgement for a record gone or parked reports that the echo would not match",
          "[replica-rules]") {
    memory_storage store("client-a");
    SECTION("gone: nothing is created") {
        CHECK_FALSE(applied(store, detail::sent_mutation{"t1", 1}, 8));
        CHECK_FALSE(stored(store, "t1"));
        const auto server = server_change("t1", 8, task_value("t1", "A"));
        CHECK_FALSE(applied(store, detail::sent_mutation{"t1", 1}, 8, 5000, &server));
        CHECK_FALSE(stored(store, "t1"));
    }
    SECTION("parked for the user: it stays parked") {
        seed_synced(store, "t1", task_value("t1", "A"), 7);
        REQUIRE(edit(store, "t1", task_value("t1", "B")));
        const auto push = build(store);
        REQUIRE(resolve(store, "t1", server_change("t1", 9, task_value("t1", "S")),
                        resolution::defer()) == conflict_outcome::deferred);
        CHECK_FALSE(applied(store, push.sent[0], 10));
        CHECK(stored(store, "t1")->parked == park_state::conflict);
        CHECK(parked_copy(store, "t1"));
    }
}

// ---------------------------------------------------------------------------------------------
// Pulls

TEST_CASE("a pulled record new to the store is stored clean at its version", "[replica-rules]") {
    memory_storage store("client-a");
    CHECK(pulled(store, server_change("t9", 20, parse_object(R"({"id": "t9", "title": "X",
                                                                  "extra": 1})")),
                 7000));
    const auto rec = stored(store, "t9");
    REQUIRE(rec);
    CHECK(rec->value == task_value("t9", "X"));
    CHECK(rec->base_version == 20);
    CHECK_FALSE(rec->dirty());
    CHECK(rec->generation == 0);
    CHECK(rec->last_synced_ms == 7000);
    CHECK(pushable_keys(store).empty());

    // A tombstone of a record never held stores nothing.
    CHECK(pulled(store, tombstone("t8", 21)));
    CHECK_FALSE(stored(store, "t8"));
}

TEST_CASE("a clean record takes pulled changes at or above its version, never older ones",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    CHECK(pulled(store, server_change("t1", 12, task_value("t1", "B", 5)), 7000));
    auto rec = stored(store, "t1");
    CHECK(rec->value == task_value("t1", "B", 5));
    CHECK(rec->base_version == 12);
    CHECK(rec->last_synced_ms == 7000);

    CHECK(pulled(store, server_change("t1", 11, task_value("t1", "old")), 7100));
    rec = stored(store, "t1");
    CHECK(rec->value.at("title") == "B");
    CHECK(rec->base_version == 12);
    CHECK(rec->last_synced_ms == 7000);

    SECTION("the same version in full and unchanged: nothing to store") {
        CHECK(pulled(store, server_change("t1", 12, task_value("t1", "B", 5)), 7200));
        CHECK(stored(store, "t1")->last_synced_ms == 7000);
    }
    SECTION("the same version holding fields not seen yet: taken") {
        CHECK(pulled(store, server_change("t1", 12, task_value("t1", "B", 5, true)), 7200));
        rec = stored(store, "t1");
        CHECK(rec->value.at("done") == true);
        CHECK(rec->last_synced_ms == 7200);
    }
    SECTION("a tombstone removes it") {
        CHECK(pulled(store, tombstone("t1", 13)));
        CHECK_FALSE(stored(store, "t1"));
    }
    SECTION("an older tombstone does not") {
        CHECK(pulled(store, tombstone("t1", 11)));
        CHECK(stored(store, "t1"));
    }
}

TEST_CASE("invariant 2: a pulled change never overwrites a dirty field", "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "mine")));
    const auto before = *stored(store, "t1");

    SECTION("the fields it has not changed are taken; its base stays for the push") {
        CHECK(pulled(store, server_change("t1", 11, task_value("t1", "theirs", 5, true, "srv"))));
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "mine", 5, true, "srv"));
        CHECK(rec->dirty_mask == title_bit);
        // The push must still meet a conflict on the title: it is sent against version 10.
        CHECK(rec->base_version == 10);
        CHECK(rec->generation == before.generation);
        const auto push = build(store);
        REQUIRE(push.request.mutations.size() == 1);
        CHECK(push.request.mutations[0].base_version == 10);
        CHECK(push.request.mutations[0].fields == parse_object(R"({"title": "mine"})"));
    }
    SECTION("a tombstone leaves the record for the push and the policy") {
        CHECK(pulled(store, tombstone("t1", 11)));
        const auto rec = stored(store, "t1");
        REQUIRE(rec);
        CHECK(rec->value == before.value);
        CHECK(rec->dirty_mask == title_bit);
        CHECK(rec->base_version == 10);
    }
    SECTION("a pending local delete stays a delete") {
        REQUIRE(edit(store, "t1", std::nullopt));
        CHECK(pulled(store, server_change("t1", 11, task_value("t1", "theirs"))));
        const auto rec = stored(store, "t1");
        CHECK(rec->deleted);
        CHECK(rec->delete_pending);
        CHECK(rec->value.empty());
        CHECK(rec->base_version == 10);
    }
    SECTION("a pulled change older than the record's base changes nothing, clean fields "
            "included") {
        CHECK(pulled(store, server_change("t1", 9, task_value("t1", "older", 3, true, "old"))));
        const auto rec = stored(store, "t1");
        CHECK(rec->value == before.value);
        CHECK(rec->dirty_mask == title_bit);
        CHECK(rec->base_version == 10);
        CHECK(rec->generation == before.generation);
    }
}

TEST_CASE("a record created offline keeps every field when another device's record of its id "
          "arrives",
          "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "mine", 2)));
    CHECK(pulled(store, server_change("t1", 4, task_value("t1", "theirs", 7, true, "x"))));
    const auto rec = stored(store, "t1");
    CHECK(rec->value == task_value("t1", "mine", 2));
    CHECK(rec->base_version == 0);
    CHECK(rec->dirty_mask == all_bits);
    // Sent whole against base 0: the server answers with a conflict for the policy.
    const auto push = build(store);
    REQUIRE(push.request.mutations.size() == 1);
    CHECK(push.request.mutations[0].base_version == 0);
    CHECK(push.request.mutations[0].fields == task_value("t1", "mine", 2));
}

TEST_CASE("invariant 2: a pull never touches a conflict-parked record, only its server side",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 7);
    REQUIRE(edit(store, "t1", task_value("t1", "mine")));
    REQUIRE(resolve(store, "t1", server_change("t1", 11, task_value("t1", "S")),
                    resolution::defer()) == conflict_outcome::deferred);
    const auto before = *stored(store, "t1");

    CHECK(pulled(store, server_change("t1", 12, task_value("t1", "S2", 4, true, "n"))));
    auto rec = stored(store, "t1");
    CHECK(rec->value == before.value);
    CHECK(rec->base_version == before.base_version);
    CHECK(rec->dirty_mask == before.dirty_mask);
    CHECK(rec->parked == park_state::conflict);
    auto p = parked_copy(store, "t1");
    REQUIRE(p->server);
    CHECK(p->server->version == 12); // the user decides against the newest server version
    CHECK(p->server->value.at("title") == "S2");
    CHECK(p->local_value == before.value);

    // An older change does not replace the newer server side.
    CHECK(pulled(store, server_change("t1", 10, task_value("t1", "older"))));
    CHECK(parked_copy(store, "t1")->server->version == 12);

    // A tombstone does, and the record stays.
    CHECK(pulled(store, tombstone("t1", 13)));
    p = parked_copy(store, "t1");
    CHECK(p->server->deleted);
    CHECK(p->server->version == 13);
    rec = stored(store, "t1");
    REQUIRE(rec);
    CHECK(rec->value == before.value);
}

TEST_CASE("a rejected record keeps its dirty fields and its parked copy learns the newer version",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "A", 99)));
    reject(store, "t1", rejection(server_change("t1", 10, task_value("t1", "A"))));

    CHECK(pulled(store, server_change("t1", 11, task_value("t1", "S", 5, true))));
    const auto rec = stored(store, "t1");
    CHECK(rec->value.at("priority") == 99); // the rejected change, kept for the app
    CHECK(rec->dirty_mask == priority_bit);
    CHECK(rec->parked == park_state::rejected);
    CHECK(pushable_keys(store).empty());
    const auto p = parked_copy(store, "t1");
    REQUIRE(p->server);
    CHECK(p->server->version == 11);
    CHECK(p->server->value.at("title") == "S");
}

TEST_CASE("an echo marker confirms a record based on its version and asks for a refetch otherwise",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 12);

    CHECK(pulled(store, echo_of("t1", 12)));
    CHECK(stored(store, "t1")->value == task_value("t1", "A")); // an echo carries no value
    // The store lost the write the echo stands for (an older copy of its file).
    CHECK_FALSE(pulled(store, echo_of("t1", 13)));
    CHECK_FALSE(pulled(store, echo_of("t1", 11)));

    SECTION("a record edited since is still based on the echoed version") {
        REQUIRE(edit(store, "t1", task_value("t1", "B")));
        CHECK(pulled(store, echo_of("t1", 12)));
        CHECK(stored(store, "t1")->value.at("title") == "B");
    }
    SECTION("a parked record is not what the feed holds") {
        REQUIRE(edit(store, "t1", task_value("t1", "B")));
        REQUIRE(resolve(store, "t1", server_change("t1", 12, task_value("t1", "S")),
                        resolution::defer()) == conflict_outcome::deferred);
        CHECK_FALSE(pulled(store, echo_of("t1", 12)));
    }
    SECTION("no record: matched only by the echo of a delete") {
        CHECK(pulled(store, echo_of("t2", 14, true)));
        CHECK_FALSE(pulled(store, echo_of("t2", 14)));
        CHECK_FALSE(stored(store, "t2"));
    }
}

TEST_CASE("a pulled change whose id is not of the collection's kind is a bad response",
          "[replica-rules]") {
    memory_storage store("client-a");
    auto expect_bad = [&](change c, const collection_schema& schema) {
        auto txn = store.begin();
        try {
            detail::apply_pulled(txn, schema, c, 0);
            FAIL("apply_pulled accepted id " << json::serialize(c.id));
        } catch (const sync_error& e) {
            CHECK(e.code() == errc::bad_response);
            CHECK_THAT(std::string(e.what()), Catch::Contains("pulled change"));
        }
    };
    auto by_int = server_change("x", 3, task_value("42", "A"));
    by_int.id = 42;
    expect_bad(by_int, tasks());
    expect_bad(server_change("", 3, task_value("", "A")), tasks());
    expect_bad(server_change(std::string(max_id_length + 1, 'k'), 3, {}), tasks());
    expect_bad(server_change("42", 3, parse_object(R"({"id": 42})")), counters());
    CHECK(store.list("tasks").empty());
    CHECK(store.list("counters").empty());
}

TEST_CASE("a store's insert fast path: new records inserted, a held one takes the general path",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t2", task_value("t2", "A"), 10);
    REQUIRE(edit(store, "t2", task_value("t2", "mine")));

    {
        auto txn = store.begin();
        inserting_txn fast{txn};
        bool insert_first = true;
        auto c1 = server_change("t1", 11, task_value("t1", "new"));
        CHECK(detail::apply_pulled(fast, tasks(), c1, 7000, &insert_first));
        CHECK(fast.inserts == 1);
        CHECK(insert_first);
        // A held, dirty record: the insert fails, the flag turns off, and invariant 2 still holds.
        auto c2 = server_change("t2", 12, task_value("t2", "theirs", 6));
        CHECK(detail::apply_pulled(fast, tasks(), c2, 7000, &insert_first));
        CHECK_FALSE(insert_first);
        CHECK(fast.inserts == 1);
        // Off: the next new record goes through the lookup.
        auto c3 = server_change("t3", 13, task_value("t3", "later"));
        CHECK(detail::apply_pulled(fast, tasks(), c3, 7000, &insert_first));
        CHECK(fast.inserts == 1);
        txn.commit();
    }

    CHECK(stored(store, "t1")->value == task_value("t1", "new"));
    CHECK(stored(store, "t1")->base_version == 11);
    const auto t2 = stored(store, "t2");
    CHECK(t2->value == task_value("t2", "mine", 6));
    CHECK(t2->dirty_mask == title_bit);
    CHECK(t2->base_version == 10);
    CHECK(stored(store, "t3")->base_version == 13);
}

// ---------------------------------------------------------------------------------------------
// Rejections and conflicts

TEST_CASE("a rejected mutation parks the record with the server's reason", "[replica-rules]") {
    memory_storage store("client-a");
    REQUIRE(edit(store, "t1", task_value("t1", "A", 99)));
    const auto before = *stored(store, "t1");

    SECTION("an upsert, with no server record") {
        reject(store, "t1", rejection(), 777);
        const auto p = parked_copy(store, "t1");
        REQUIRE(p);
        CHECK(p->collection == "tasks");
        CHECK(p->key == "t1");
        CHECK(p->kind == park_state::rejected);
        CHECK(p->local_value == before.value);
        CHECK_FALSE(p->local_deleted);
        CHECK_FALSE(p->server);
        CHECK(p->error_code == "invalid_field");
        CHECK(p->error_message == "field 'priority' is out of range");
        CHECK(p->detected_at_ms == 777);
        const auto rec = stored(store, "t1");
        CHECK(rec->parked == park_state::rejected);
        CHECK(rec->sent_mutation_id == 0);
        CHECK(rec->dirty_mask == before.dirty_mask); // the change is kept, not pushed
        CHECK(rec->value == before.value);
        CHECK(pushable_keys(store).empty());
        CHECK(store.pending("tasks").rejected == 1);
        CHECK(store.pending("tasks").dirty == 0);
    }
    SECTION("a delete, with the server's record to go back to") {
        REQUIRE(edit(store, "t1", std::nullopt));
        reject(store, "t1", rejection(server_change("t1", 4, task_value("t1", "S"))));
        const auto p = parked_copy(store, "t1");
        CHECK(p->local_deleted);
        REQUIRE(p->server);
        CHECK(p->server->version == 4);
    }
}

TEST_CASE("keep-local rebases the local change on the server's version and pushes it again",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "mine"), 1000));
    const auto push = build(store);
    const auto server = server_change("t1", 12, task_value("t1", "theirs", 7), 9'000'000);

    CHECK(resolve(store, "t1", server, resolution::keep_local(), 2000) ==
          conflict_outcome::kept_local);
    const auto rec = stored(store, "t1");
    CHECK(rec->value == task_value("t1", "mine", 7)); // others' fields taken under ours
    CHECK(rec->dirty_mask == title_bit);
    CHECK(rec->base_version == 12);
    CHECK(rec->sent_mutation_id == 0);
    CHECK(rec->parked == park_state::none);

    const auto next = build(store);
    REQUIRE(next.request.mutations.size() == 1);
    CHECK(next.request.mutations[0].base_version == 12);
    CHECK(next.request.mutations[0].fields == parse_object(R"({"title": "mine"})"));
    CHECK(next.request.mutations[0].mutation_id != push.request.mutations[0].mutation_id);

    // The clock observed the server's stamp: a later local edit orders after it, even with
    // this device's wall clock far behind.
    REQUIRE(edit(store, "t1", task_value("t1", "mine again", 7), 3000));
    CHECK(server.stamp < stored(store, "t1")->modified_at);
}

TEST_CASE("keep-local against deletes", "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);

    SECTION("a local update against a tombstone recreates the whole record") {
        REQUIRE(edit(store, "t1", task_value("t1", "mine", 3)));
        CHECK(resolve(store, "t1", tombstone("t1", 12), resolution::keep_local()) ==
              conflict_outcome::kept_local);
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "mine", 3));
        CHECK(rec->dirty_mask == all_bits);
        CHECK(rec->base_version == 12);
        CHECK_FALSE(rec->deleted);
        const auto push = build(store);
        REQUIRE(push.request.mutations.size() == 1);
        CHECK(push.request.mutations[0].op == mutation_op::upsert);
        CHECK(push.request.mutations[0].fields == task_value("t1", "mine", 3));
    }
    SECTION("a local delete against an update is pushed again on the new version") {
        REQUIRE(edit(store, "t1", std::nullopt));
        CHECK(resolve(store, "t1", server_change("t1", 12, task_value("t1", "S")),
                      resolution::keep_local()) == conflict_outcome::kept_local);
        const auto rec = stored(store, "t1");
        CHECK(rec->delete_pending);
        CHECK(rec->value.empty());
        CHECK(rec->base_version == 12);
        const auto push = build(store);
        REQUIRE(push.request.mutations.size() == 1);
        CHECK(push.request.mutations[0].op == mutation_op::remove);
        CHECK(push.request.mutations[0].base_version == 12);
    }
    SECTION("deleted on both sides: nothing is left to push") {
        REQUIRE(edit(store, "t1", std::nullopt));
        CHECK(resolve(store, "t1", tombstone("t1", 12), resolution::keep_local()) ==
              conflict_outcome::kept_local);
        CHECK_FALSE(stored(store, "t1"));
        CHECK(pushable_keys(store).empty());
    }
}

TEST_CASE("take-server adopts the server's record or its tombstone", "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "mine")));
    const auto generation = stored(store, "t1")->generation;

    SECTION("a live record, normalised") {
        CHECK(resolve(store, "t1",
                      server_change("t1", 12, parse_object(R"({"id": "t1", "title": "theirs",
                                                               "x": 1})")),
                      resolution::take_server(), 9000) == conflict_outcome::took_server);
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "theirs"));
        CHECK_FALSE(rec->dirty());
        CHECK(rec->base_version == 12);
        CHECK(rec->sent_mutation_id == 0);
        CHECK(rec->last_synced_ms == 9000);
        CHECK(rec->generation == generation);
        CHECK(pushable_keys(store).empty());
    }
    SECTION("over a local delete: the record is back") {
        REQUIRE(edit(store, "t1", std::nullopt));
        CHECK(resolve(store, "t1", server_change("t1", 12, task_value("t1", "theirs")),
                      resolution::take_server()) == conflict_outcome::took_server);
        const auto rec = stored(store, "t1");
        CHECK_FALSE(rec->deleted);
        CHECK_FALSE(rec->delete_pending);
        CHECK(rec->value.at("title") == "theirs");
    }
    SECTION("a tombstone: the record goes") {
        CHECK(resolve(store, "t1", tombstone("t1", 12), resolution::take_server()) ==
              conflict_outcome::took_server);
        CHECK_FALSE(stored(store, "t1"));
    }
}

TEST_CASE("a merged value is pushed with the fields it changes from the server's record",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "mine")));
    const auto server = server_change("t1", 12, task_value("t1", "theirs", 7, false, "srv"));

    SECTION("a merge that differs from the server's record in one field") {
        // The key field is the record's own, whatever the merged value says.
        CHECK(resolve(store, "t1", server,
                      resolution::merged(parse_object(R"({"id": "other", "title": "mine+theirs",
                                                         "priority": 7, "notes": "srv"})"))) ==
              conflict_outcome::merged);
        const auto rec = stored(store, "t1");
        CHECK(rec->value == task_value("t1", "mine+theirs", 7, false, "srv"));
        CHECK(rec->dirty_mask == title_bit);
        CHECK(rec->base_version == 12);
        CHECK(rec->sent_mutation_id == 0);
        CHECK(rec->parked == park_state::none);
        const auto push = build(store);
        REQUIRE(push.request.mutations.size() == 1);
        CHECK(push.request.mutations[0].fields == parse_object(R"({"title": "mine+theirs"})"));
        CHECK(push.request.mutations[0].base_version == 12);
    }
    SECTION("a merge equal to the server's record leaves nothing to push") {
        CHECK(resolve(store, "t1", server, resolution::merged(server.value)) ==
              conflict_outcome::merged);
        const auto rec = stored(store, "t1");
        CHECK_FALSE(rec->dirty());
        CHECK(rec->base_version == 12);
        CHECK(pushable_keys(store).empty());
    }
    SECTION("a merge against a tombstone recreates the whole record") {
        CHECK(resolve(store, "t1", tombstone("t1", 12),
                      resolution::merged(task_value("t1", "revived"))) ==
              conflict_outcome::merged);
        CHECK(stored(store, "t1")->dirty_mask == all_bits);
    }
    SECTION("a merge over a local delete revives the record") {
        REQUIRE(edit(store, "t1", std::nullopt));
        CHECK(resolve(store, "t1", server, resolution::merged(task_value("t1", "revived"))) ==
              conflict_outcome::merged);
        const auto rec = stored(store, "t1");
        CHECK_FALSE(rec->deleted);
        CHECK_FALSE(rec->delete_pending);
        CHECK(rec->value.at("title") == "revived");
    }
}

TEST_CASE("defer parks the record with both sides, holding it back from pushes",
          "[replica-rules]") {
    memory_storage store("client-a");
    seed_synced(store, "t1", task_value("t1", "A"), 10);
    REQUIRE(edit(store, "t1", task_value("t1", "mine")));
    const auto before = *stored(store, "t1");
    const auto server = server_change("t1", 12, task_value("t1", "theirs"), 4000);

    CHECK(resolve(store, "t1", server, resolution::defer(), 9000) == conflict_outcome::deferred);
    const auto p = parked_copy(store, "t1");
    REQUIRE(p);
    CHECK(p->kind == park_state::conflict);
    CHECK(p->collection == "tasks");
    CHECK(p->key == "t1");
    CHECK(p->local_value == before.value);
    CHECK_FALSE(p->local_deleted);
    REQUIRE(p->server);
    CHECK(p->server->version == 12);
    CHECK(p->server->value == server.value);
    CHECK(p->detected_at_ms == 9000);
    const auto rec = stored(store, "t1");
    CHECK(rec->parked == park_state::conflict);
    CHECK(rec->value == before.value); // nothing decided yet: the local change is intact
    CHECK(rec->dirty_mask == before.dirty_mask);
    CHECK(rec->base_version == 10);
    CHECK(pushable_keys(store).empty());
    CHECK(store.pending("tasks").conflicts == 1);

    SECTION("a deferred local delete is parked as one") {
        memory_storage other("client-b");
        seed_synced(other, "t1", task_value("t1", "A"), 10);
        REQUIRE(edit(other, "t1", std::nullopt));
        CHECK(resolve(other, "t1", server, resolution::defer()) == conflict_outcome::deferred);
        CHECK(parked_copy(other, "t1")->local_deleted);
    }
}

TEST_CASE("adopt_server replaces the record by the server's, whatever state it was in",
          "[replica-rules]") {
    memory_storage store("client-a");
    local_record rec;
    rec.value = task_value("t1", "mine");
    rec.deleted = true;
    rec.delete_pending = true;
    rec.dirty_mask = title_bit;
    rec.generation = 5;
    rec.sent_mutation_id = 17;
    rec.sent_generation = 5;
    rec.parked = park_state::rejected;
    rec.base_version = 3;

    in_txn(store, [&](auto& txn) {
        const auto server =
            server_change("t1", 12, parse_object(R"({"id": "t1", "title": "S", "u": 0})"));
        detail::adopt_server(txn, tasks(), "t1", rec, server, 8000);
    });
    auto out = stored(store, "t1");
    REQUIRE(out);
    CHECK(out->value == task_value("t1", "S")); // normalised: the server's fields over defaults
    CHECK_FALSE(out->deleted);
    CHECK_FALSE(out->delete_pending);
    CHECK_FALSE(out->dirty());
    CHECK(out->base_version == 12);
    CHECK(out->sent_mutation_id == 0);
    CHECK(out->parked == park_state::none);
    CHECK(out->last_synced_ms == 8000);
    CHECK(out->generation == 5);

    in_txn(store, [&](auto& txn) {
        detail::adopt_server(txn, tasks(), "t1", *out, tombstone("t1", 13), 8100);
    });
    CHECK_FALSE(stored(store, "t1"));
}
