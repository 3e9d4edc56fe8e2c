// Randomized convergence: several devices of several users edit overlapping records, faults
// are injected, rounds run in random order. After quiescence every replica equals the server,
// and every device's last edit of every record was applied or reported, never lost silently.
//
// Seeded and reproducible: the seed is printed on failure. OFFSYNC_SOAK_SEEDS=N runs N seeds
// (default 12) and OFFSYNC_SOAK_STEPS=N steps per seed (default 300) for a long soak.
#include "support/world.hpp"

#include <offsync/testing/faulty_storage.hpp>

#include <boost/asio/post.hpp>

#include <cstdlib>
#include <map>
#include <random>
#include <set>

using namespace offsync_test;

namespace {

/// Wraps the loopback transport and records which edit tokens (the `notes` field) the server
/// acknowledged as applied.
class recording_transport {
public:
    recording_transport(asio::any_io_executor ex, server::sync_service& s, std::string user,
                        std::set<std::string>& applied)
        : inner(std::move(ex), s, std::move(user)), applied_(applied) {}

    template <class Token>
    auto async_push(const push_request& request, Token&& token) {
        return asio::async_initiate<Token, void(error_code, push_response)>(
            [this, request](auto handler) {
                inner.async_push(request, [this, request, h = std::move(handler)](
                                              error_code ec, push_response r) mutable {
                    if (!ec)
                        for (std::size_t i = 0; i < r.results.size(); ++i)
                            if (r.results[i].status == mutation_status::applied)
                                if (auto* n = request.mutations[i].fields.if_contains("notes"))
                                    applied_.insert(std::string(n->as_string()));
                    std::move(h)(ec, std::move(r));
                });
            },
            token);
    }
    template <class Token>
    auto async_pull(const pull_request& request, Token&& token) {
        return inner.async_pull(request, std::forward<Token>(token));
    }

    /// Pipelines as the loopback transport does, so the engine keeps two pushes in flight.
    std::size_t max_requests_in_flight() const { return inner.max_requests_in_flight(); }

    loopback_transport inner;

private:
    std::set<std::string>& applied_;
};

/// The binary's store, failing where a step's hook says.
using device_storage = faulty_storage<test_storage>;
using device_engine = basic_sync_engine<device_storage, recording_transport>;

struct device {
    device(asio::io_context& io, server::sync_service& s, std::string u, wall_clock clock,
           std::set<std::string>& applied, bool ask, engine_config config)
        : user(u), replica(storage, std::move(clock)),
          transport(io.get_executor(), s, std::move(u), applied),
          engine(io.get_executor(), replica, transport, std::move(config)) {
        engine.add_collection<Landmark>();
        if (ask) engine.add_collection<Reservation>(ask_user{});
        else engine.add_collection<Reservation>(last_write_wins{});
    }
    std::string user;
    device_storage storage;
    basic_replica<device_storage> replica;
    recording_transport transport;
    device_engine engine;
    std::map<std::string, std::string> last_token; ///< reservation id -> token of last edit
    std::set<std::string> reported;                ///< tokens reported discarded or resolved away
};

int env_or(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v ? std::max(1, std::atoi(v)) : fallback;
}

void run_seed(std::uint64_t seed, int steps, bool ask) {
    INFO("seed " << seed << " (ask_user=" << ask << ")");
    std::mt19937_64 rng(seed);
    auto chance = [&](double p) { return std::uniform_real_distribution<>(0, 1)(rng) < p; };
    auto pick = [&](auto n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };

    manual_clock clock;
    asio::io_context io;
    auto service = make_service(clock);
    for (int i = 1; i <= 4; ++i)
        service->admin_put("landmarks", to_json_object(landmark(i, "L" + std::to_string(i))));
    std::set<std::string> applied;
    std::vector<std::unique_ptr<device>> devices;
    const char* users[] = {"alice", "alice", "alice", "bob", "bob"};
    for (int i = 0; i < 5; ++i) {
        const std::int64_t skew = std::int64_t(pick(3)) * 1'800'000 - 1'800'000; // -30..+30 min
        // Half the devices push one record per request, so their pushes keep two requests in
        // flight (and faults meet a batch with another behind it).
        engine_config config;
        if (i % 2 == 0) config.push_batch_size = 1;
        devices.push_back(std::make_unique<device>(io, *service, users[i],
                                                   clock.as_wall_clock(skew), applied, ask,
                                                   config));
    }
    auto sync = [&](device& d) {
        std::optional<sync_report> out;
        d.engine.async_sync([&](error_code, sync_report r) { out = std::move(r); });
        io.restart();
        io.run();
        REQUIRE(out);
        for (auto& c : out->discarded)
            if (auto* n = c.local_value.if_contains("notes")) d.reported.insert(std::string(n->as_string()));
        return *out;
    };

    int token = 0;
    for (int step = 0; step < steps; ++step) {
        clock.now_ms += std::int64_t(pick(2000));
        auto& d = *devices[pick(devices.size())];
        const auto id = "r-" + std::to_string(pick(4));
        const double roll = std::uniform_real_distribution<>(0, 1)(rng);
        if (roll < 0.35) {
            auto r = reservation(id, chance(0.5) ? "confirmed" : "cancelled", int(pick(8)) + 1);
            r.notes = "t" + std::to_string(++token);
            if (d.replica.put(r)) d.last_token[id] = r.notes;
        } else if (roll < 0.42) {
            if (d.replica.erase<Reservation>(id)) d.last_token[id] = "<deleted>";
        } else if (roll < 0.55) {
            if (auto l = d.replica.get<Landmark>(std::int64_t(pick(4)) + 1)) {
                l->is_favorite = !l->is_favorite;
                d.replica.put(*l);
            }
        } else if (roll < 0.60) {
            auto l = landmark(std::int64_t(pick(4)) + 1, "L" + std::to_string(step));
            service->admin_put("landmarks", to_json_object(l));
        } else if (roll < 0.68) {
            for (auto& p : d.replica.conflicts()) {
                const bool mine = chance(0.5);
                if (!mine) {
                    if (auto* n = p.local_value.if_contains("notes")) d.reported.insert(std::string(n->as_string()));
                    if (p.local_deleted) d.reported.insert("<deleted>");
                }
                d.replica.resolve(schema_of<Reservation>(), p.key,
                                  mine ? resolve_choice::keep_mine : resolve_choice::use_server);
            }
        } else {
            auto& f = d.transport.inner.faults();
            if (chance(0.1)) f.lose_push_requests = 1;
            if (chance(0.1)) f.lose_push_responses = 1;
            if (chance(0.05)) f.lose_pull_requests = 1;
            if (chance(0.05)) f.lose_pull_responses = 1;
            bool fail_commit = chance(0.05);
            d.storage.set_fault_hook([&, fail_commit](std::string_view op) mutable {
                if (fail_commit && op == "commit" && chance(0.3)) {
                    fail_commit = false;
                    return true;
                }
                return false;
            });
            if (chance(0.2)) {
                // The user edits while the push is in flight (after the server applied it).
                const auto busy_id = "r-" + std::to_string(pick(4));
                auto r = reservation(busy_id, "confirmed", int(pick(8)) + 1);
                r.notes = "t" + std::to_string(++token);
                f.after_server = [&d, r, busy_id](std::string_view op) {
                    if (op != "push") return;
                    bool changed = false;
                    // An injected store fault may refuse this edit: then the app was told, and
                    // there is no edit to keep.
                    if (!d.replica.put(schema_of<Reservation>(), busy_id, to_json_object(r),
                                       &changed) &&
                        changed)
                        d.last_token[busy_id] = r.notes;
                    d.transport.inner.faults().after_server = nullptr;
                };
            }
            sync(d);
            d.storage.set_fault_hook(nullptr);
            d.transport.inner.faults() = loopback_faults{};
        }
    }

    // Quiescence: settle every conflict by keeping the server's version, then sync everything
    // until nothing moves.
    for (int pass = 0; pass < 4; ++pass) {
        for (auto& d : devices) {
            for (auto& p : d->replica.conflicts()) {
                if (auto* n = p.local_value.if_contains("notes")) d->reported.insert(std::string(n->as_string()));
                if (p.local_deleted) d->reported.insert("<deleted>");
                d->replica.resolve(schema_of<Reservation>(), p.key, resolve_choice::use_server);
            }
            auto r = sync(*d);
            CHECK(!r.error);
        }
    }

    for (auto& d : devices) {
        CAPTURE(d->user, d->engine.client_id());
        CHECK(d->replica.pending<Reservation>().dirty == 0);
        CHECK(d->replica.pending<Landmark>().dirty == 0);
        CHECK(d->replica.conflicts().empty());
        CHECK(d->replica.rejected().empty());
        // Every replica equals the server as its user sees it.
        for (const char* coll : {"landmarks", "reservations"}) {
            pull_response all;
            REQUIRE(!service->pull(d->user, {coll, 0, 5000}, all));
            std::map<std::string, json::object> server_view;
            for (auto& c : all.changes)
                if (!c.deleted) server_view[json::serialize(c.id)] = c.value;
            std::map<std::string, json::object> local_view;
            for (auto& [key, rec] : d->storage.list(coll))
                local_view[json::serialize(rec.value.at("id"))] = rec.value;
            CHECK(local_view == server_view);
        }
        // Nothing lost: each device's last edit of each record was applied or reported.
        for (auto& [id, tok] : d->last_token) {
            if (tok == "<deleted>") continue; // a delete leaves no token to find
            CAPTURE(id, tok);
            CHECK((applied.count(tok) || d->reported.count(tok)));
        }
    }
}

} // namespace

TEST_CASE("random edits, faults and rounds converge without losing edits", "[convergence]") {
    const int seeds = env_or("OFFSYNC_SOAK_SEEDS", 12);
    const int steps = env_or("OFFSYNC_SOAK_STEPS", 300);
    std::uint64_t base = std::random_device{}();
    if (const char* s = std::getenv("OFFSYNC_SEED")) base = std::strtoull(s, nullptr, 10);
    for (int i = 0; i < seeds; ++i) {
        run_seed(base + i, steps, i % 2 == 0);
    }
}
