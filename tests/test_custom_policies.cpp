// A user writes all three policies in their own code, without touching offsync: proof that the
// concepts are the whole contract.
#include "support/world.hpp"

#include <offsync/forwarding.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/testing/faulty_storage.hpp>

#include <boost/asio/post.hpp>

#include <map>
#include <mutex>

using namespace offsync_test;

namespace user_code {

/// A store that copies its whole state when a transaction begins and swaps it in on commit:
/// naive, but transactional, and nothing like memory_storage inside.
class snapshot_storage {
    struct data {
        std::map<std::pair<std::string, std::string>, local_record> records;
        std::map<std::pair<std::string, std::string>, parked_record> parked;
        std::map<std::string, std::uint64_t> cursors;
        std::uint64_t next_mutation = 1;
        hlc_state clock;
    };

public:
    class transaction {
    public:
        std::optional<local_record> load(std::string_view c, std::string_view k) {
            auto it = work_.records.find({std::string(c), std::string(k)});
            if (it == work_.records.end()) return std::nullopt;
            return it->second;
        }
        void save(std::string_view c, std::string_view k, const local_record& r) {
            work_.records[{std::string(c), std::string(k)}] = r;
        }
        void remove(std::string_view c, std::string_view k) {
            work_.records.erase({std::string(c), std::string(k)});
        }
        std::vector<std::string> pushable_keys(std::string_view c, std::string_view after,
                                               std::size_t limit) {
            // A scan: fine for a toy store; a real one keeps an index.
            std::vector<std::string> keys;
            for (auto& [id, r] : work_.records)
                if (id.first == c && id.second > after && r.pushable() && keys.size() < limit)
                    keys.push_back(id.second);
            return keys;
        }
        std::uint64_t cursor(std::string_view c) { return work_.cursors[std::string(c)]; }
        void set_cursor(std::string_view c, std::uint64_t v) { work_.cursors[std::string(c)] = v; }
        std::optional<parked_record> load_parked(std::string_view c, std::string_view k) {
            auto it = work_.parked.find({std::string(c), std::string(k)});
            if (it == work_.parked.end()) return std::nullopt;
            return it->second;
        }
        void save_parked(const parked_record& p) { work_.parked[{p.collection, p.key}] = p; }
        void remove_parked(std::string_view c, std::string_view k) {
            work_.parked.erase({std::string(c), std::string(k)});
        }
        std::uint64_t next_mutation_id() { return work_.next_mutation++; }
        hlc_state clock() { return work_.clock; }
        void set_clock(hlc_state s) { work_.clock = s; }
        std::string client_id() { return owner_->client_id_; }
        void commit() { owner_->committed_ = work_; }

    private:
        friend class snapshot_storage;
        explicit transaction(snapshot_storage& s)
            : owner_(&s), lock_(s.mutex_), work_(s.committed_) {}
        snapshot_storage* owner_;
        std::unique_lock<std::mutex> lock_;
        data work_;
    };

    transaction begin() { return transaction(*this); }
    std::vector<std::pair<std::string, local_record>> list(std::string_view c) {
        std::lock_guard lock(mutex_);
        std::vector<std::pair<std::string, local_record>> out;
        for (auto& [id, r] : committed_.records)
            if (id.first == c && !r.deleted) out.emplace_back(id.second, r);
        return out;
    }
    std::vector<parked_record> parked(std::string_view c) {
        std::lock_guard lock(mutex_);
        std::vector<parked_record> out;
        for (auto& [id, p] : committed_.parked)
            if (c.empty() || id.first == c) out.push_back(p);
        return out;
    }
    pending_counts pending(std::string_view c) {
        std::lock_guard lock(mutex_);
        pending_counts n;
        for (auto& [id, r] : committed_.records)
            if (id.first == c && r.pushable()) ++n.dirty;
        for (auto& [id, p] : committed_.parked)
            if (id.first == c) ++(p.kind == park_state::conflict ? n.conflicts : n.rejected);
        return n;
    }

private:
    std::mutex mutex_;
    std::string client_id_ = "snapshot-client";
    data committed_;
};

/// A transport that talks to the service directly with typed calls (no JSON) and counts what
/// it carries, completing through Asio's universal model.
class direct_transport {
public:
    direct_transport(asio::any_io_executor ex, server::sync_service& s, std::string user)
        : ex_(std::move(ex)), service_(s), user_(std::move(user)) {}

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, push_response)>(
            [this, request](auto handler) {
                push_response response;
                auto d = service_.push(user_, request, response);
                ++pushes;
                auto ex = asio::get_associated_executor(handler, ex_);
                asio::post(ex, [h = std::move(handler), ec = d.code,
                                r = std::move(response)]() mutable { std::move(h)(ec, std::move(r)); });
            },
            token);
    }

    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, pull_response)>(
            [this, request](auto handler) {
                pull_response response;
                auto d = service_.pull(user_, request, response);
                ++pulls;
                auto ex = asio::get_associated_executor(handler, ex_);
                asio::post(ex, [h = std::move(handler), ec = d.code,
                                r = std::move(response)]() mutable { std::move(h)(ec, std::move(r)); });
            },
            token);
    }

    int pushes = 0, pulls = 0;

private:
    asio::any_io_executor ex_;
    server::sync_service& service_;
    std::string user_;
};

} // namespace user_code

static_assert(storage_policy<user_code::snapshot_storage>);
static_assert(transport_policy<user_code::direct_transport>);
static_assert(storage_policy<memory_storage>);
static_assert(transport_policy<loopback_transport>);
static_assert(!storage_policy<int>);
static_assert(!transport_policy<memory_storage>);
static_assert(conflict_policy<last_write_wins>);
static_assert(conflict_policy<server_wins>);
static_assert(conflict_policy<ask_user>);
static_assert(!conflict_policy<int>);

TEST_CASE("all three policies written by the user sync end to end", "[custom]") {
    world w;
    auto phone = w.device("alice");
    phone->replica.put(reservation("r-1", "confirmed", 2));
    phone->sync();

    user_code::snapshot_storage store;
    basic_replica<user_code::snapshot_storage> replica(store, w.clock.as_wall_clock());
    user_code::direct_transport transport(w.io.get_executor(), w.service, "alice");
    basic_sync_engine<user_code::snapshot_storage, user_code::direct_transport> engine(
        w.io.get_executor(), replica, transport);
    int merges = 0;
    // Merge by taking the larger party and joining the notes: a policy is any callable.
    engine.add_collection<Reservation>([&merges](const conflict& c) {
        ++merges;
        auto merged = normalize(c.schema, c.server.value);
        merged["party_size"] = std::max(c.local_value.at("party_size").to_number<int>(),
                                        c.server.value.at("party_size").to_number<int>());
        merged["notes"] = std::string(c.server.value.at("notes").as_string()) + "+" +
                          std::string(c.local_value.at("notes").as_string());
        return resolution::merged(std::move(merged));
    });
    engine.add_collection<Landmark>();
    auto run = [&] {
        std::optional<sync_report> out;
        engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        w.io.restart();
        w.io.run();
        REQUIRE(out);
        return *out;
    };
    CHECK(!run().error);
    REQUIRE(replica.get<Reservation>("r-1"));

    auto mine = reservation("r-1", "confirmed", 3);
    mine.notes = "mine";
    replica.put(mine);
    auto theirs = reservation("r-1", "confirmed", 5);
    theirs.notes = "theirs";
    phone->replica.put(theirs);
    phone->sync();
    auto report = run();
    CHECK(!report.error);
    CHECK(merges == 1);
    CHECK(report.merged == 1);
    auto server = w.service.get("alice", "reservations", "r-1");
    CHECK(server->value.at("party_size") == 5);
    CHECK(server->value.at("notes") == "theirs+mine");
    CHECK(transport.pushes >= 2);
    phone->sync();
    CHECK(phone->replica.get<Reservation>("r-1")->notes == "theirs+mine");
    CHECK(store.pending("reservations").dirty == 0);
}

TEST_CASE("a policy's merged value that is not a valid record is refused", "[custom]") {
    world w;
    auto a = w.device("alice");
    a->replica.put(reservation("r-1"));
    a->sync();
    // A merged value with a wrong type cannot be stored through the replica either.
    auto d = a->replica.put(schema_of<Reservation>(), "r-1",
                            json::object{{"id", "r-1"}, {"party_size", "many"}});
    CHECK(d.code == errc::invalid_field);
    auto unknown = a->replica.put(schema_of<Reservation>(), "r-1",
                                  json::object{{"id", "r-1"}, {"colour", "red"}});
    CHECK(unknown.code == errc::unknown_field);
    auto wrong_id = a->replica.put(schema_of<Reservation>(), "r-1", json::object{{"id", "r-2"}});
    CHECK(wrong_id.code == errc::invalid_id);
    CHECK(a->replica.pending<Reservation>().dirty == 0);
    CHECK(a->replica.get<Reservation>("r-1")->party_size == 2);
}

namespace user_code {

/// How often each fast path ran through a decorator.
struct fast_path_counts {
    std::size_t load_metadata = 0, acknowledge = 0, pushable_records = 0, insert_new = 0,
                commits = 0, pushes = 0;
};

/// A logging-style store decorator on the forwarding bases: it changes `commit` and counts the
/// fast paths by overriding them, each passing on to the base's forwarding member.
class counting_transaction : public forwarding_transaction<sqlite_storage::transaction> {
public:
    counting_transaction(sqlite_storage::transaction next, fast_path_counts& counts)
        : forwarding_transaction(std::move(next)), counts_(&counts) {}
    void commit() {
        forwarding_transaction::commit();
        ++counts_->commits;
    }
    std::optional<local_record> load_metadata(std::string_view c, std::string_view k) {
        ++counts_->load_metadata;
        return forwarding_transaction::load_metadata(c, k);
    }
    bool acknowledge(std::string_view c, std::string_view k, std::uint64_t g, std::uint64_t v,
                     std::int64_t now) {
        ++counts_->acknowledge;
        return forwarding_transaction::acknowledge(c, k, g, v, now);
    }
    std::vector<std::pair<std::string, local_record>>
    pushable_records(std::string_view c, std::string_view after, std::size_t n) {
        ++counts_->pushable_records;
        return forwarding_transaction::pushable_records(c, after, n);
    }
    bool insert_new(std::string_view c, std::string_view k, const local_record& r) {
        ++counts_->insert_new;
        return forwarding_transaction::insert_new(c, k, r);
    }

private:
    fast_path_counts* counts_;
};

class counting_sqlite : private temp_file,
                        public forwarding_storage<sqlite_storage, counting_transaction> {
public:
    counting_sqlite()
        : forwarding_storage(temp_file::str(), sqlite_config{sqlite_durability::normal, 5000}) {}
    counting_transaction begin() { return {next_layer().begin(), counts}; }
    fast_path_counts counts;
};

/// A transport decorator that counts pushes; everything else, pipelining included, passes.
class counting_transport : public forwarding_transport<loopback_transport> {
public:
    counting_transport(asio::any_io_executor ex, server::sync_service& s, std::string user,
                       fast_path_counts& counts)
        : forwarding_transport(std::move(ex), s, std::move(user)), counts_(&counts) {}
    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        ++counts_->pushes;
        return forwarding_transport::async_push(request, std::forward<Token>(token));
    }

private:
    fast_path_counts* counts_;
};

/// A decorator that forwards only: the bare capabilities, as the wrapped policy has them.
using plain_sqlite = forwarding_storage<sqlite_storage>;

} // namespace user_code

// The forwarding bases keep exactly the capabilities of what they wrap.
static_assert(storage_policy<user_code::counting_sqlite>);
static_assert(storage_policy<user_code::plain_sqlite>);
static_assert(metadata_transaction<user_code::plain_sqlite::transaction>);
static_assert(acknowledging_transaction<user_code::plain_sqlite::transaction>);
static_assert(batch_reading_transaction<user_code::plain_sqlite::transaction>);
static_assert(inserting_transaction<user_code::plain_sqlite::transaction>);
static_assert(queryable_storage<user_code::plain_sqlite>);
static_assert(subset_keeping_transaction<user_code::plain_sqlite::transaction>);
static_assert(subset_keeping_transaction<forwarding_storage<memory_storage>::transaction>);
static_assert(subset_keeping_transaction<faulty_storage<memory_storage>::transaction>);
static_assert(!subset_keeping_transaction<user_code::snapshot_storage::transaction>);
static_assert(!metadata_transaction<forwarding_storage<memory_storage>::transaction>);
static_assert(!inserting_transaction<forwarding_storage<memory_storage>::transaction>);
static_assert(!queryable_storage<forwarding_storage<memory_storage>>);
static_assert(transport_policy<user_code::counting_transport>);
static_assert(pipelining_transport<user_code::counting_transport>);
static_assert(pipelining_transport<forwarding_transport<http_transport>>);
static_assert(retry_after_hint<forwarding_transport<http_transport>>);
static_assert(!retry_after_hint<forwarding_transport<loopback_transport>>);

TEST_CASE("a decorated SQLite store and transport keep every fast path", "[custom][decorator]") {
    world w;
    user_code::counting_sqlite store;
    basic_replica replica(store, w.clock.as_wall_clock());
    user_code::counting_transport link(w.io.get_executor(), w.service, "alice", store.counts);
    basic_sync_engine engine(w.io.get_executor(), replica, link);
    engine.add_collection<Landmark>();
    engine.add_collection<Reservation>();

    for (int i = 0; i < 20; ++i) replica.put(reservation("r" + std::to_string(i)));
    std::optional<sync_report> report;
    engine.async_sync([&](error_code, sync_report r) { report = std::move(r); });
    w.io.run();
    REQUIRE(report);
    REQUIRE(!report->error);
    CHECK(report->applied == 20);
    CHECK(report->pulled >= 2); // the two landmarks, new to the store

    const auto& n = store.counts;
    CHECK(n.pushable_records > 0); // the push batch in one read
    CHECK(n.acknowledge == 20);    // each acknowledgement in one write
    CHECK(n.insert_new >= 2);      // pulled records new to the store, inserted blind
    CHECK(n.commits > 0);
    CHECK(n.pushes >= 1);

    // An edit assigns its mutation id through the metadata path on the next push.
    replica.put(reservation("r0", "cancelled"));
    report.reset();
    engine.async_sync([&](error_code, sync_report r) { report = std::move(r); });
    w.io.restart();
    w.io.run();
    REQUIRE(report);
    CHECK(!report->error);
    CHECK(n.load_metadata + n.acknowledge > 20);
}
