// offsync-bench: sharing (grouped collections, docs/sharing.md). Measured on the sync service
// alone in this process, on the server store of `--server-store`: what a pull, a join, a leave
// and a push cost the server when records belong to groups, each next to the same work on a
// per-user collection (the server's share of a round). And end to end (`sharing_http`, in the
// http mode): the rounds of SQLite devices over HTTP, a grouped push and a backfill next to a
// per-user push and a plain pull.
#include "metrics.hpp"
#include "modes.hpp"
#include "scenarios.hpp"
#include "server_process.hpp"
#include "workload.hpp"

#include <offsync/json_codec.hpp>
#include <offsync/protocol.hpp>
#include <offsync/uuid.hpp>

#include <boost/describe/class.hpp>

#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace offsync_bench {

namespace {

namespace json = boost::json;
using namespace offsync;

/// A service on its own store, with both collections and the users of the scenarios.
struct sharing_server {
    std::string file;
    server_state state;
    std::uint64_t next_mutation = 1;
    std::string client = make_uuid();

    explicit sharing_server(const options& o)
        : file((o.dir / ("sharing-" + make_uuid() + ".db")).string()),
          state(make_server_state(o.server_store, file)) {
        for (const char* user : {"writer", "reader", "owner"}) state.service->add_user(user);
    }
    ~sharing_server() {
        state.service.reset();
        state.store.reset();
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"})
            std::filesystem::remove(file + suffix, ec);
    }
    server::sync_service& service() { return *state.service; }

    /// Creates the groups of the first `count` * 1,000 records, with `members` in each.
    void make_groups(std::size_t count, std::initializer_list<const char*> members) {
        for (std::size_t g = 0; g < count; ++g) {
            service().create_group(group_name(g * group_size));
            for (const char* user : members) service().grant(group_name(g * group_size), user);
        }
    }

    /// Pushes records `first`..`first + count` of the workload as `user`, in batches; grouped
    /// ones go to their group (`group_name`). `variant` > 0 edits records pushed before.
    void push(std::string_view user, bool grouped, std::size_t first, std::size_t count,
              std::size_t batch, int variant = 0) {
        for (std::size_t at = first; at < first + count; at += batch) {
            push_request request{client, {}};
            for (std::size_t i = at; i < std::min(first + count, at + batch); ++i)
                request.mutations.push_back(mutation_of(grouped, i, variant));
            push_response response;
            if (auto d = service().push(user, request, response))
                throw std::runtime_error("sharing bench: push failed: " + d.message);
            for (const auto& r : response.results)
                if (r.status != mutation_status::applied)
                    throw std::runtime_error("sharing bench: a write was refused: " +
                                             r.error_message);
        }
    }
    mutation mutation_of(bool grouped, std::size_t i, int variant) {
        const auto r = make_reservation(i, variant);
        mutation m;
        m.mutation_id = next_mutation++;
        m.collection = grouped ? "group_reservations" : "reservations";
        m.id = json::value(r.id);
        // An edit is based on the version it edits: the latest, since only this client writes.
        m.base_version = variant ? service().last_version() : 0;
        m.stamp = hlc_stamp{1'764'000'000'000 + std::int64_t(i), std::uint32_t(variant), client};
        m.fields = to_json_object(r);
        if (grouped) m.fields["group"] = group_name(i);
        return m;
    }

    /// Pulls the collection as `user` from `since` to its end (of `subset`, or of a backfill);
    /// returns the changes and moves `since` to the last cursor.
    std::size_t pull(std::string_view user, bool grouped, std::uint64_t& since,
                     std::uint32_t page, sync_subset subset = {},
                     std::optional<subset_backfill> backfill = {}) {
        std::size_t changes = 0;
        pull_request request{grouped ? "group_reservations" : "reservations", since, page};
        request.subset = std::move(subset);
        request.backfill = std::move(backfill);
        for (;;) {
            pull_response response;
            if (auto d = service().pull(user, request, response))
                throw std::runtime_error("sharing bench: pull failed: " + d.message);
            changes += response.changes.size();
            request.since = response.cursor;
            if (!response.has_more) break;
        }
        since = request.since;
        return changes;
    }
};

/// The median of `runs` timings (ms) of `measured`, each after an unmeasured `before`.
template <class Before, class Measured>
double median_ms(int runs, Before&& before, Measured&& measured) {
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) {
        before();
        const auto start = steady::now();
        measured();
        t.push_back(seconds_since(start) * 1000);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/// A pull round of a user in 1 group of n / 1,000 (1,000 records each), next to the same round
/// on 1,000 records of the user's own: the first sync, then an incremental round of 10 changes
/// in the user's group while 10 change elsewhere.
json::object sharing_pull(const options& o, std::size_t n) {
    sharing_server s(o);
    const std::size_t groups = std::max<std::size_t>(1, n / group_size);
    s.make_groups(groups, {"writer"});
    s.push("writer", true, 0, groups * group_size, o.batch);
    s.service().grant(group_name(0), "reader");
    s.push("owner", false, 0, group_size, o.batch);

    std::uint64_t grouped_cursor = 0, own_cursor = 0;
    auto start = steady::now();
    const auto grouped_changes = s.pull("reader", true, grouped_cursor, o.page);
    const double grouped_first = seconds_since(start) * 1000;
    start = steady::now();
    const auto own_changes = s.pull("owner", false, own_cursor, o.page);
    const double own_first = seconds_since(start) * 1000;

    int variant = 1;
    const double grouped_round = median_ms(
        9,
        [&] {
            s.push("writer", true, 0, 10, o.batch, variant); // in the reader's group
            s.push("writer", true, groups * group_size - 10, 10, o.batch, variant); // elsewhere
            ++variant;
        },
        [&] { s.pull("reader", true, grouped_cursor, o.page); });
    const double own_round = median_ms(
        9, [&] { s.push("owner", false, 0, 10, o.batch, variant++); },
        [&] { s.pull("owner", false, own_cursor, o.page); });
    return {{"scenario", "sharing_pull"}, {"mode", "service"}, {"server_store", o.server_store},
            {"n", n}, {"groups", groups}, {"group_size", group_size},
            {"grouped_changes", grouped_changes}, {"own_changes", own_changes},
            {"first_pull_ms", json::object{{"grouped", grouped_first}, {"own", own_first},
                                           {"ratio", grouped_first / own_first}}},
            {"round_ms", json::object{{"grouped", grouped_round}, {"own", own_round},
                                      {"ratio", grouped_round / own_round}}}};
}

/// Partial sync: a reader in every group of n / 1,000 (1,000 records each) whose device
/// subscribes to one of them, next to a device of the same reader that syncs them all: the
/// first pull, then an incremental round of 10 changes in the subscribed group while 10 change
/// in another; then widening the subset by a second group (the backfill of its 1,000 records).
json::object sharing_subset(const options& o, std::size_t n) {
    sharing_server s(o);
    const std::size_t groups = std::max<std::size_t>(2, n / group_size);
    s.make_groups(groups, {"writer", "reader"});
    s.push("writer", true, 0, groups * group_size, o.batch);
    sync_subset one;
    one.groups = std::vector<std::string>{group_name(0)};

    std::uint64_t subset_cursor = 0, all_cursor = 0;
    auto start = steady::now();
    const auto subset_changes = s.pull("reader", true, subset_cursor, o.page, one);
    const double subset_first = seconds_since(start) * 1000;
    start = steady::now();
    const auto all_changes = s.pull("reader", true, all_cursor, o.page);
    const double all_first = seconds_since(start) * 1000;

    int variant = 1;
    auto changes = [&] {
        s.push("writer", true, 0, 10, o.batch, variant);                        // subscribed
        s.push("writer", true, groups * group_size - 10, 10, o.batch, variant); // another group
        ++variant;
    };
    const double subset_round =
        median_ms(9, changes, [&] { s.pull("reader", true, subset_cursor, o.page, one); });
    const double all_round =
        median_ms(9, changes, [&] { s.pull("reader", true, all_cursor, o.page); });

    // Widening: the backfill brings the second group's records up to the device's cursor, its
    // ordinary pull with the new subset those above it (the cursor moved with the first group's
    // feed alone, so some of the second's may be above it).
    s.pull("reader", true, subset_cursor, o.page, one);
    sync_subset two = one;
    two.groups->push_back(group_name(group_size));
    std::uint64_t backfill_cursor = 0;
    start = steady::now();
    auto backfilled = s.pull("reader", true, backfill_cursor, o.page, two,
                             subset_backfill{one, subset_cursor});
    backfilled += s.pull("reader", true, subset_cursor, o.page, two);
    const double widen_ms = seconds_since(start) * 1000;
    if (backfilled != group_size)
        throw std::runtime_error("sharing bench: widening brought " + std::to_string(backfilled) +
                                 " records of a group of " + std::to_string(group_size));
    return {{"scenario", "sharing_subset"}, {"mode", "service"}, {"server_store", o.server_store},
            {"n", n}, {"groups", groups}, {"group_size", group_size},
            {"first_pull", json::object{{"subset_changes", subset_changes},
                                        {"subset_ms", subset_first},
                                        {"all_changes", all_changes},
                                        {"all_ms", all_first}}},
            {"round_ms", json::object{{"subset", subset_round}, {"all", all_round},
                                      {"ratio", subset_round / all_round}}},
            {"widen", json::object{{"changes", backfilled}, {"ms", widen_ms},
                                   {"records_per_s", double(backfilled) / widen_ms * 1000}}}};
}

/// A user joins a group of min(n, 10,000) records and pulls it (the backfill), then leaves it
/// and pulls the removals (the eviction); next to pulling as many records of the user's own.
json::object sharing_membership(const options& o, std::size_t n) {
    sharing_server s(o);
    const std::size_t count = std::min<std::size_t>(n, 10 * group_size);
    // One group holding every record: the writer's.
    const std::string group = "big";
    s.service().create_group(group);
    s.service().grant(group, "writer");
    for (std::size_t at = 0; at < count; at += o.batch) {
        push_request request{s.client, {}};
        for (std::size_t i = at; i < std::min(count, at + o.batch); ++i) {
            auto m = s.mutation_of(true, i, 0);
            m.fields["group"] = group;
            request.mutations.push_back(std::move(m));
        }
        push_response response;
        s.service().push("writer", request, response);
    }
    s.push("owner", false, 0, count, o.batch);

    std::uint64_t cursor = 0;
    auto start = steady::now();
    s.service().grant(group, "reader");
    const double grant_ms = seconds_since(start) * 1000;
    const auto backfilled = s.pull("reader", true, cursor, o.page);
    const double backfill_ms = seconds_since(start) * 1000;
    start = steady::now();
    s.service().revoke(group, "reader");
    const double revoke_ms = seconds_since(start) * 1000;
    const auto evicted = s.pull("reader", true, cursor, o.page);
    const double evict_ms = seconds_since(start) * 1000;
    std::uint64_t own_cursor = 0;
    start = steady::now();
    const auto own = s.pull("owner", false, own_cursor, o.page);
    const double own_ms = seconds_since(start) * 1000;
    return {{"scenario", "sharing_membership"}, {"mode", "service"},
            {"server_store", o.server_store}, {"n", n}, {"records", count},
            {"backfill", json::object{{"changes", backfilled}, {"grant_ms", grant_ms},
                                      {"total_ms", backfill_ms},
                                      {"records_per_s", double(backfilled) / backfill_ms * 1000}}},
            {"evict", json::object{{"changes", evicted}, {"revoke_ms", revoke_ms},
                                   {"total_ms", evict_ms}}},
            {"own_pull", json::object{{"changes", own}, {"ms", own_ms},
                                      {"records_per_s", double(own) / own_ms * 1000}}}};
}

/// Pushes of n new records to a grouped collection (groups of 1,000, the writer in all) and
/// to a per-user one.
json::object sharing_push(const options& o, std::size_t n) {
    sharing_server s(o);
    s.make_groups((n + group_size - 1) / group_size, {"writer"});
    auto start = steady::now();
    s.push("writer", true, 0, n, o.batch);
    const double grouped_s = seconds_since(start);
    start = steady::now();
    s.push("owner", false, 0, n, o.batch);
    const double own_s = seconds_since(start);
    return {{"scenario", "sharing_push"}, {"mode", "service"}, {"server_store", o.server_store},
            {"n", n}, {"batch", o.batch},
            {"records_per_s", json::object{{"grouped", double(n) / grouped_s},
                                           {"own", double(n) / own_s},
                                           {"ratio", own_s / grouped_s}}}};
}

/// End to end, SQLite devices over HTTP to the server process: n new grouped records pushed by
/// a member of their groups, next to n records of a user's own; then a user joins groups of
/// min(n, 10,000) records and pulls them (the backfill), next to a second device of that user
/// pulling them with no join, and a device that pulls the n records of its own (the plain
/// pull). Each round is also written as a row of its own.
json::object sharing_http(const options& o, std::size_t n, output& out) {
    http_mode mode(o);
    const auto now = system_wall_ms();
    const std::size_t groups = (n + group_size - 1) / group_size;
    for (std::size_t g = 0; g < groups; ++g) mode.server.grant(group_name(g * group_size), "writer");

    auto round = [&](auto& device, const char* scenario, std::size_t records) {
        sync_report report;
        auto row = measure_round(mode, device, scenario, records, &report);
        row["n"] = n;
        out.write(row);
        if (report.pushed + report.pulled < records)
            throw std::runtime_error(std::string("sharing bench: ") + scenario +
                                     " moved fewer than " + std::to_string(records) + " records");
        return row["seconds"].as_double();
    };
    auto writer = mode.make_device("writer");
    writer->engine.template add_collection<GroupedReservation>();
    edit_records<GroupedReservation>(*writer->storage, 0, n, 1, 0, now);
    const double grouped_push_s = round(*writer, "sharing_http_push_grouped", n);
    auto owner = mode.make_device("owner");
    owner->engine.template add_collection<Reservation>();
    edit_records(*owner->storage, 0, n, 1, 0, now);
    const double own_push_s = round(*owner, "sharing_http_push_own", n);

    // The reader syncs once (nothing), joins groups, and pulls what they hold.
    auto reader = mode.make_device("reader");
    reader->engine.template add_collection<GroupedReservation>();
    reader->sync();
    const std::size_t joined = std::min<std::size_t>(n, 10 * group_size);
    const auto start = steady::now();
    for (std::size_t at = 0; at < joined; at += group_size)
        mode.server.grant(group_name(at), "reader");
    const double grant_s = seconds_since(start);
    const double backfill_s = round(*reader, "sharing_http_backfill", joined);
    const auto held = reader->storage->list("group_reservations").size();
    if (held != joined)
        throw std::runtime_error("sharing bench: the backfill left " + std::to_string(held) +
                                 " records of " + std::to_string(joined));
    // The same records pulled by a second device of the reader, with no join: what a grouped
    // pull costs, apart from the backfill.
    auto second_reader = mode.make_device("reader");
    second_reader->engine.template add_collection<GroupedReservation>();
    const double grouped_pull_s = round(*second_reader, "sharing_http_pull_grouped", joined);
    auto own_reader = mode.make_device("owner");
    own_reader->engine.template add_collection<Reservation>();
    const double own_pull_s = round(*own_reader, "sharing_http_pull_own", n);

    const double grouped_rate = double(n) / grouped_push_s, own_rate = double(n) / own_push_s;
    const double backfill_rate = double(joined) / backfill_s;
    const double with_grant_rate = double(joined) / (backfill_s + grant_s);
    const double pull_rate = double(n) / own_pull_s;
    return {{"scenario", "sharing_http"}, {"mode", "http"}, {"server_store", o.server_store},
            {"n", n},
            {"push_records_per_s", json::object{{"grouped", grouped_rate}, {"own", own_rate},
                                                {"ratio", grouped_rate / own_rate}}},
            {"backfill", json::object{{"records", joined},
                                      {"grant_ms", grant_s * 1000},
                                      {"pull_records_per_s", backfill_rate},
                                      {"with_grant_records_per_s", with_grant_rate},
                                      {"grouped_pull_records_per_s",
                                       double(joined) / grouped_pull_s},
                                      {"plain_pull_records_per_s", pull_rate},
                                      {"ratio", backfill_rate / pull_rate},
                                      {"ratio_with_grant", with_grant_rate / pull_rate}}},
            {"load_avg", load_average()}};
}

} // namespace

void run_sharing(const options& o, output& out) {
    for (auto n : o.n) {
        if (o.mode != "http") {
            out.write(sharing_pull(o, n));
            out.write(sharing_membership(o, n));
            out.write(sharing_push(o, n));
            out.write(sharing_subset(o, n));
        }
        if (o.mode != "inproc") out.write(sharing_http(o, n, out));
    }
}

} // namespace offsync_bench
