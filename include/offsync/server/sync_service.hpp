// offsync — the server's protocol logic, independent of HTTP: versions, field-level conflict
// detection, idempotent mutations, the change feed, per-user scope and validation. The service
// reads and writes the store; its decisions live in headers of their own, pure functions of the
// records they look at: server/conflict_check.hpp (one mutation), server/change_feed.hpp (a
// page of the feed), server/idempotency.hpp (remembered results), server/record_view.hpp (a
// record as a user sees it), server/rest_rules.hpp (the per-record REST API).
#pragma once

#include <offsync/detail/validate.hpp>
#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol/json.hpp>
#include <offsync/protocol/http.hpp>
#include <offsync/protocol/messages.hpp>
#include <offsync/protocol/text_writer.hpp>
#include <offsync/server/access.hpp>
#include <offsync/server/change_feed.hpp>
#include <offsync/server/conflict_check.hpp>
#include <offsync/server/idempotency.hpp>
#include <offsync/server/live_hub.hpp>
#include <offsync/server/record_view.hpp>
#include <offsync/server/rest_rules.hpp>
#include <offsync/server/store.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace offsync::server {

struct service_config {
    std::size_t max_mutations_per_push = 1000;
    /// How long `check_storage` (what `/healthz` asks) keeps its verdict before it reads the
    /// store again: health checks cost the store at most one read per interval, however many
    /// callers ask. Zero reads the store at every call.
    std::chrono::milliseconds health_check_interval{1000};
    std::size_t max_body_bytes = 8u << 20;
    /// How many of a client's newest results the server remembers for idempotent retries
    /// (older ones are forgotten; a retry of one is applied again). A client retries only what
    /// it has not seen acknowledged, at most a few batches, but an edit left unpushed keeps its
    /// id while newer edits are pushed. At least three times `max_mutations_per_push`: a client
    /// may retry three whole pushes (the one whose answer it could not apply and the two it had
    /// sent meanwhile, `engine_config::max_push_requests_in_flight`), and their answers must
    /// still be remembered.
    std::size_t idempotency_window = 20000;
    /// Grouped collections: most groups one record may name, and most members one membership
    /// record may list. A write over either is refused (`invalid_field`).
    std::size_t max_groups_per_record = 100;
    std::size_t max_members_per_group = 1000;
    wall_clock clock = system_wall_ms;
    /// Change streams the service's hub holds open (docs/live.md).
    live_limits live;
};

/// The answer to a request in its wire form: the response's JSON text, or why the request was
/// refused. The service knows no HTTP: a server turns `error` into its status (`http_status()`
/// in protocol/http.hpp) and error body (`error_body()`).
struct wire_answer {
    diagnostics error; ///< set when the request was refused; `body` is then empty
    std::string body;  ///< the response as JSON text, when `error` is not set
};

/// The sync service over a `server_store`: in memory by default, or any store the caller owns
/// (`sqlite_server_store` in server/sqlite_store.hpp). One mutex serialises requests, and every
/// push is one store transaction: a reader never sees half of it, and a push the store fails
/// to write leaves nothing behind (the client gets a server error and retries it).
///
/// Versions come from one strictly increasing sequence; every field keeps the version and the
/// client that last wrote it. A mutation conflicts only if a field it writes was written after
/// its base version by another client: edits to different fields merge, and a client's own
/// earlier write (whose acknowledgement it lost) is never a conflict with itself.
///
/// Scope: records of a per-user collection belong to the user who wrote them and are invisible
/// to everybody else. A shared collection has one record for everybody, read-only to clients
/// unless its model declares `client_writable`; its `per_user_fields` are kept per user. A
/// grouped collection's records are seen and written by the members of their groups; groups and
/// members are changed by membership records and by `grant` and `revoke` (docs/sharing.md).
///
/// Thread safety: every member function may be called from any thread.
class sync_service {
public:
    /// A service over its own in-memory store.
    /// Throws std::invalid_argument if `config` is inconsistent (see `service_config`).
    explicit sync_service(service_config config = {})
        : owned_store_(std::make_unique<memory_server_store>()), store_(*owned_store_),
          config_(checked(std::move(config))), counters_(store_.counters()),
          live_(live_hub::make(config_.live)) {}

    /// A service over `store`, which must outlive it. The store's counters (the version
    /// sequence and the clock) carry on where they were. Throws std::invalid_argument if
    /// `config` is inconsistent (see `service_config`).
    explicit sync_service(server_store& store, service_config config = {})
        : store_(store), config_(checked(std::move(config))), counters_(store_.counters()),
          live_(live_hub::make(config_.live)) {}

    sync_service(const sync_service&) = delete;
    sync_service& operator=(const sync_service&) = delete;

    template <synced_model T>
    void add_collection() {
        add_collection(schema_of<T>());
    }
    /// Serves every collection of a model list (the list the devices use).
    template <synced_model... T>
    void add_collections(collections<T...>) {
        (add_collection<T>(), ...);
    }
    /// Throws std::invalid_argument for a grouped collection on a store that keeps no groups.
    void add_collection(collection_schema schema) {
        std::lock_guard lock(mutex_);
        if (schema.scope == scope::grouped && !store_.supports_groups())
            throw std::invalid_argument(schema.name +
                                        ": a grouped collection needs a store that keeps groups");
        auto name = schema.name;
        schemas_[name] = std::move(schema);
    }

    /// The registry of open change streams (docs/live.md). After each commit the service
    /// queues a hint on every stream whose user may see what changed (per-user records: their
    /// owner; shared: everyone; grouped: the members of the groups the record was and is in,
    /// and a user whose membership changed), never on the pushing device's own. A server
    /// front (the HTTP server's `GET /v1/stream`) subscribes streams to it.
    const std::shared_ptr<live_hub>& live_streams() const noexcept { return live_; }

    // --- Sharing (grouped collections; docs/sharing.md).

    /// Makes a user known: membership names only known users. A server registers the users its
    /// authenticator accepts.
    void add_user(std::string_view user) {
        std::lock_guard lock(mutex_);
        users_.emplace(user);
    }
    bool knows_user(std::string_view user) const {
        std::lock_guard lock(mutex_);
        return users_.find(user) != users_.end();
    }

    /// Adds a group without members, administered by `grant` and `revoke` (a group founded
    /// by a membership record is administered by that record). Adding one that exists changes
    /// nothing.
    diagnostics create_group(std::string_view group) {
        if (auto d = check_name("group", group)) return d;
        std::lock_guard lock(mutex_);
        return in_transaction([&] {
            store_.add_group(group);
            return diagnostics{};
        });
    }

    /// Makes a known user a member of an existing group: on their next pull their devices
    /// receive the group's records. A group founded by a membership record is changed through
    /// that record, rewritten by the server, so that the record and the membership agree.
    diagnostics grant(std::string_view group, std::string_view user) {
        return change_membership(group, user, true);
    }
    /// Ends a user's membership: on their next pull their devices drop the group's records
    /// (those they see through no other group), and their unpushed edits to them are refused
    /// as `forbidden`.
    diagnostics revoke(std::string_view group, std::string_view user) {
        return change_membership(group, user, false);
    }

    /// The members of a group, sorted (none for an unknown group). Throws `sync_error` if the
    /// store fails.
    std::vector<std::string> members(std::string_view group) {
        std::lock_guard lock(mutex_);
        return store_.supports_groups() ? store_.members_of(group) : std::vector<std::string>{};
    }
    /// The groups a user is a member of, sorted. Throws `sync_error` if the store fails.
    std::vector<std::string> groups_of(std::string_view user) {
        std::lock_guard lock(mutex_);
        return group_names(user);
    }

    const service_config& config() const noexcept { return config_; }

    // --- Wire entry points: what the HTTP server and the loopback transport call.

    /// Answers a push whose body is JSON text, for `user` (already authenticated).
    wire_answer handle_push(std::string_view user, std::string_view body) {
        if (body.size() > config_.max_body_bytes)
            return {{make_error_code(errc::batch_too_large),
                     "body exceeds " + std::to_string(config_.max_body_bytes) + " bytes"},
                    {}};
        // The document and the fields taken from it live in one arena, released at once: a
        // push is thousands of small objects, and freeing them one by one costs more than
        // parsing them. The arena is shared: anything still holding a part of it keeps it.
        push_request request;
        if (auto d = parse_body(body, request,
                                boost::json::make_shared_resource<boost::json::monotonic_resource>(
                                    body.size() * 2)))
            return {std::move(d), {}};
        push_response response;
        if (auto d = push(user, request, response)) return {std::move(d), {}};
        return {{}, to_json_text(response)};
    }

    /// Answers a pull whose request is a query string (`collection=C&since=N&limit=N`, the part
    /// of the target after '?'), for `user` (already authenticated).
    wire_answer handle_pull(std::string_view user, std::string_view query) {
        pull_request request;
        if (auto d = parse_pull_query(query, request)) return {std::move(d), {}};
        pull_response response;
        if (auto d = pull(user, request, response)) return {std::move(d), {}};
        return {{}, to_json_text(response)};
    }

    // --- Typed entry points.

    /// Applies a push for `user`. A request-level error (unknown collection, bad id, too many
    /// mutations) rejects the whole request and changes nothing; a field-level error rejects
    /// only its mutation. Results come in request order.
    diagnostics push(std::string_view user, const push_request& request,
                     push_response& response) {
        if (request.mutations.size() > config_.max_mutations_per_push)
            return {make_error_code(errc::batch_too_large),
                    std::to_string(request.mutations.size()) + " mutations; at most " +
                        std::to_string(config_.max_mutations_per_push) + " per push"};
        if (request.client_id.empty())
            return {make_error_code(errc::invalid_field), "'client_id' must not be empty"};
        if (user.empty()) return unauthenticated();
        std::lock_guard lock(mutex_);
        std::vector<std::string> keys(request.mutations.size());
        std::vector<const collection_schema*> schemas(request.mutations.size());
        for (std::size_t i = 0; i < request.mutations.size(); ++i) {
            if (auto d = resolve(request.mutations[i], schemas[i], keys[i])) {
                d.message = "mutations[" + std::to_string(i) + "]: " + d.message;
                return d;
            }
        }
        std::vector<mutation_result> results;
        results.reserve(request.mutations.size());
        std::optional<own_writes_range> own_writes;
        const news_origin origin(*this, user, request.client_id);
        auto d = in_transaction([&] {
            detail::remembered_results remembered(store_,
                                                  std::string(user) + '\n' + request.client_id);
            own_writes_tracker written;
            access_cache access;
            // Versions above it are this push's writes. An `applied` answer without a write (a
            // delete of a record never had, an upsert that changes nothing) tells an older
            // version, perhaps another client's: not a write of this push.
            const auto written_above = counters_.last_version;
            const auto now = config_.clock();
            for (std::size_t i = 0; i < request.mutations.size(); ++i) {
                const auto& m = request.mutations[i];
                if (auto earlier = remembered.recall(m.mutation_id)) {
                    results.push_back(std::move(*earlier));
                    continue;
                }
                hlc_observe(counters_.clock, m.stamp, now);
                auto result = apply_one(user, request.client_id, *schemas[i], keys[i], m, access);
                result.mutation_id = m.mutation_id;
                if (result.status == mutation_status::applied && result.version > written_above)
                    written.add(*schemas[i], result.version);
                remembered.remember(result);
                results.push_back(std::move(result));
            }
            remembered.keep_newest(config_.idempotency_window);
            own_writes = own_writes_of(user, written);
            return diagnostics{};
        });
        if (d) return d;
        response.results = std::move(results);
        response.own_writes = std::move(own_writes);
        return {};
    }

    /// One page of the change feed of `request.collection` as `user` sees it: changes with a
    /// version above `since`, ascending, each record at its latest version.
    diagnostics pull(std::string_view user, const pull_request& request,
                     pull_response& response) {
        return for_collection(user, request.collection, [&](const collection_schema& schema) {
            if (request.since > counters_.last_version)
                return diagnostics{make_error_code(errc::cursor_ahead),
                                   "cursor " + std::to_string(request.since) +
                                       " is ahead of the server's last version " +
                                       std::to_string(counters_.last_version) +
                                       "; re-sync from 0"};
            if (auto d = check_subset(schema, request.subset)) return d;
            if (request.backfill) {
                if (auto d = check_subset(schema, request.backfill->held)) return d;
                if (request.backfill->until > counters_.last_version)
                    return diagnostics{make_error_code(errc::cursor_ahead),
                                       "backfill until " + std::to_string(request.backfill->until) +
                                           " is ahead of the server's last version " +
                                           std::to_string(counters_.last_version)};
                if (request.backfill->until < request.since)
                    return diagnostics{make_error_code(errc::invalid_field),
                                       "backfill until " + std::to_string(request.backfill->until) +
                                           " is below its cursor " + std::to_string(request.since)};
            }
            return guarded([&] {
                response = feed_page(user, schema, request);
                // Entries the user may not see, or a backfill's device holds, leave a page
                // empty: read on rather than answer "nothing, but more follows", which devices
                // refuse (a server could keep them pulling for ever with it). Each window is
                // twice the last, up to `max_pull_limit`, so a long stretch costs few reads;
                // the page that ends it may then hold more changes than `limit` asked for.
                // Each window's cursor is past the one before, so the loop ends at the feed's
                // end at the latest.
                if (response.changes.empty() && response.has_more) {
                    pull_request next = request;
                    while (response.changes.empty() && response.has_more &&
                           response.cursor > next.since) {
                        next.since = response.cursor;
                        next.limit = std::min<std::uint32_t>(
                            max_pull_limit, std::max<std::uint32_t>(next.limit, 1) * 2);
                        response = feed_page(user, schema, next);
                    }
                }
                return diagnostics{};
            });
        });
    }

    // --- Server-side access: seeding a catalog, admin edits, REST reads.

    /// Writes a record as the server itself (not subject to client scope rules): seeds and
    /// edits a shared catalog. `owner` names the user for a per-user collection. Returns the new
    /// version, or 0 with `error` set.
    std::uint64_t admin_put(std::string_view collection, const boost::json::object& value,
                            std::string_view owner = {}, diagnostics* error = nullptr) {
        std::lock_guard lock(mutex_);
        std::uint64_t version = 0;
        auto outcome = [&]() -> diagnostics {
            const auto* schema = find(collection);
            if (!schema) return unknown_collection(collection);
            const auto* id = value.if_contains(schema->key_field);
            std::string key;
            if (!id) return {make_error_code(errc::invalid_id), "value has no key field"};
            if (auto d = key_from_json(*schema, *id, key)) return d;
            if (auto d = offsync::detail::validate_value(*schema, key, value)) return d;
            const auto base_owner = owner_of(*schema, owner);
            std::vector<std::string> members_after;
            if (!schema->members_field.empty())
                if (const auto* v = value.if_contains(schema->members_field))
                    if (auto d = detail::names_in(*v, schema->members_field,
                                                  config_.max_members_per_group, members_after))
                        return d;
            for (const auto& user : members_after)
                if (!users_.contains(user))
                    return {make_error_code(errc::invalid_field),
                            "field '" + schema->members_field + "': '" + user +
                                "' is not a known user"};
            return in_transaction([&] {
                auto stamp = hlc_tick(counters_.clock, config_.clock(), "server");
                const auto existing = store_.find(*schema, base_owner, key);
                const auto* before = existing ? &*existing : nullptr;
                std::vector<std::string> groups_before;
                if (schema->scope == scope::grouped) {
                    groups_before = detail::stored_groups(*schema, before);
                    // A value without the group field keeps the record's groups; a new record
                    // (or one deleted) must name them.
                    std::vector<std::string> groups_after;
                    if (value.contains(schema->group_field) || groups_before.empty())
                        if (auto d = detail::groups_in(*schema, value,
                                                       config_.max_groups_per_record,
                                                       groups_after))
                            return d;
                    if (auto d = governed_elsewhere(*schema, key)) return d;
                }
                const auto record = write(*schema, base_owner, key, before, value,
                                          ~std::uint64_t{0} & ~schema->per_user_mask, stamp,
                                          "server");
                version = record.version;
                if (schema->scope == scope::grouped)
                    grouped_written(*schema, key, groups_before, &record, version, nullptr);
                return diagnostics{};
            });
        }();
        if (outcome) {
            if (error) *error = std::move(outcome);
            return 0;
        }
        return version;
    }

    /// Deletes a record as the server itself; returns the tombstone's version (0: none, or the
    /// store failed).
    std::uint64_t admin_erase(std::string_view collection, std::string_view key,
                              std::string_view owner = {}) {
        std::lock_guard lock(mutex_);
        const auto* schema = find(collection);
        if (!schema) return 0;
        const auto base_owner = owner_of(*schema, owner);
        std::uint64_t version = 0;
        const auto failed = in_transaction([&] {
            const auto rec = store_.find(*schema, base_owner, key);
            if (rec && !rec->deleted) {
                version = tombstone(*schema, base_owner, *rec,
                                    hlc_tick(counters_.clock, config_.clock(), "server"),
                                    "server");
                if (schema->scope == scope::grouped)
                    grouped_written(*schema, std::string(key),
                                    detail::stored_groups(*schema, &*rec), nullptr, version,
                                    nullptr);
            }
            return diagnostics{};
        });
        return failed ? 0 : version;
    }

    /// The record as `user` sees it, tombstones included. Throws `sync_error` if the store
    /// fails.
    std::optional<change> get(std::string_view user, std::string_view collection,
                              std::string_view key) {
        std::lock_guard lock(mutex_);
        const auto* schema = find(collection);
        if (!schema) return std::nullopt;
        return lookup(*schema, user, key);
    }

    std::uint64_t last_version() const {
        std::lock_guard lock(mutex_);
        return counters_.last_version;
    }

    /// Whether the store can serve: `server_store::check_readable` under the service's lock.
    /// Empty diagnostics when it can; `server_error` with the store's message when not.
    /// What `GET /healthz` asks, so that a load balancer stops sending requests to an instance
    /// whose file is damaged or gone.
    /// The verdict is kept for `service_config::health_check_interval`: anyone may ask
    /// `/healthz`, as often as they like, and each check reads the store under the lock.
    diagnostics check_storage() {
        std::lock_guard lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (storage_checked_ && now - *storage_checked_ < config_.health_check_interval)
            return storage_verdict_;
        storage_verdict_ = guarded([&] {
            store_.check_readable();
            return diagnostics{};
        });
        storage_checked_ = now;
        return storage_verdict_;
    }

    // --- Per-record REST: what the HTTP server's `/v1/C` and `/v1/C/{id}` routes call. Same
    // scope and validation as a push, through the same write path, but without idempotency
    // (a REST request carries no mutation id).

    /// Every live record of `collection` as `user` sees it, in version order. No paging: a
    /// plain client with a large collection should page the change feed instead.
    diagnostics list(std::string_view user, std::string_view collection,
                     std::vector<change>& out) {
        return for_collection(user, collection, [&](const collection_schema& schema) {
            return guarded([&] {
                out.clear();
                if (schema.scope == scope::grouped) {
                    list_grouped(user, schema, out);
                    return diagnostics{};
                }
                const bool shared = schema.scope == scope::shared;
                std::vector<server_record> page;
                std::uint64_t since = 0;
                do {
                    store_.feed(schema, shared ? std::string_view() : user, since, 1000, page);
                    for (const auto& rec : page) {
                        since = rec.version;
                        std::optional<server_record> own;
                        if (shared && schema.per_user_mask)
                            own = store_.find(schema, user, rec.key);
                        if (auto c = detail::view_of(schema, &rec, own ? &*own : nullptr);
                            c && !c->deleted)
                            out.push_back(std::move(*c));
                    }
                } while (page.size() == 1000);
                return diagnostics{};
            });
        });
    }

    /// One live record as `user` sees it. `id` is the id as it appears in a URL path (already
    /// percent-decoded): the string itself, or an integer's decimal digits.
    diagnostics get_record(std::string_view user, std::string_view collection,
                           std::string_view id, change& out) {
        return for_record(user, collection, id, [&](const collection_schema& schema,
                                                    const std::string& key) {
            return guarded([&]() -> diagnostics {
                auto c = lookup(schema, user, key);
                if (!c || c->deleted) return not_found(schema, key);
                out = std::move(*c);
                return {};
            });
        });
    }

    /// Writes the fields of `fields` (a patch, or every field) to one record as `user`.
    /// `base_version` is the version the caller's copy derives from; without one the write is
    /// unconditional. A field written since `base_version` answers `version_conflict` with the
    /// server's record in `out`; every REST write counts as a writer of its own, so the caller's
    /// own earlier REST writes count too. A refused write (scope, types, unknown fields) answers
    /// its code, and `out` holds the server's record when one exists. On success `out` is the
    /// record as it is now.
    diagnostics put_record(std::string_view user, std::string_view collection,
                           std::string_view id, const boost::json::object& fields,
                           std::optional<std::uint64_t> base_version, change& out) {
        return rest_write(user, collection, id, mutation_op::upsert, &fields, base_version, out);
    }

    /// Deletes one record as `user` (a tombstone the change feed carries). Conflicts, scope and
    /// `base_version` as for `put_record`; deleting a record that does not exist is `not_found`.
    /// On success `out` is the tombstone.
    diagnostics delete_record(std::string_view user, std::string_view collection,
                              std::string_view id, std::optional<std::uint64_t> base_version,
                              change& out) {
        return rest_write(user, collection, id, mutation_op::remove, nullptr, base_version, out);
    }

private:
    /// The groups of the user whose request runs, read once per request and again after a
    /// membership changes.
    struct access_cache {
        std::optional<std::vector<std::string>> groups;
    };

    static service_config checked(service_config config) {
        if (config.idempotency_window / 3 < config.max_mutations_per_push)
            throw std::invalid_argument(
                "service_config: idempotency_window (" +
                std::to_string(config.idempotency_window) +
                ") must be at least three times max_mutations_per_push (" +
                std::to_string(config.max_mutations_per_push) + ")");
        if (!config.clock) throw std::invalid_argument("service_config: clock is empty");
        return config;
    }
    static diagnostics unknown_collection(std::string_view name) {
        return {make_error_code(errc::unknown_collection),
                "unknown collection '" + std::string(name) + "'"};
    }
    static diagnostics not_found(const collection_schema& schema, std::string_view key) {
        return {make_error_code(errc::not_found),
                schema.name + "/" + std::string(key) + " does not exist"};
    }
    static diagnostics unauthenticated() {
        return {make_error_code(errc::unauthorized), "no authenticated user"};
    }

    /// The prologue of every request about one collection: a user, the lock, the collection.
    /// Runs `body(schema)` under the lock.
    template <class Body>
    diagnostics for_collection(std::string_view user, std::string_view collection, Body&& body) {
        if (user.empty()) return unauthenticated();
        std::lock_guard lock(mutex_);
        const auto* schema = find(collection);
        if (!schema) return unknown_collection(collection);
        return body(*schema);
    }

    /// `for_collection`, and the key of the record `id` names in a URL path:
    /// `body(schema, key)`.
    template <class Body>
    diagnostics for_record(std::string_view user, std::string_view collection,
                           std::string_view id, Body&& body) {
        return for_collection(user, collection, [&](const collection_schema& schema) {
            std::string key;
            if (auto d = detail::key_from_text(schema, id, key)) return d;
            return body(schema, key);
        });
    }

    /// The prologue of one pushed mutation (under the lock): its collection and its key.
    diagnostics resolve(const mutation& m, const collection_schema*& schema, std::string& key) {
        // The wire format cannot carry more; a store may keep ids as signed 64-bit integers.
        if (m.mutation_id > max_safe_integer)
            return {make_error_code(errc::invalid_field), "'mutation_id' exceeds 2^53-1"};
        schema = find(m.collection);
        if (!schema) return unknown_collection(m.collection);
        return key_from_json(*schema, m.id, key);
    }

    /// Runs `body` with the store's failures turned into a server error. A store failure is
    /// the server's problem, never the request's: it answers `server_error` (HTTP 500), which
    /// the client retries.
    template <class Body>
    diagnostics guarded(Body&& body) {
        try {
            return body();
        } catch (const std::exception& e) {
            return {make_error_code(errc::server_error), std::string("server store: ") + e.what()};
        }
    }

    /// Runs `body` in one store transaction: commits if it returns no error, rolls back (the
    /// store and the counters) if it returns one or the store throws.
    template <class Body>
    diagnostics in_transaction(Body&& body) {
        const auto saved = counters_;
        bool open = false;
        news_.clear();
        // Decided once per transaction: a stream that subscribes meanwhile runs a round once
        // it is told it is open, and that round's pull waits for this commit.
        announcing_ = live_->size() != 0;
        auto d = guarded([&] {
            store_.begin();
            open = true;
            auto result = body();
            if (!result) {
                store_.set_counters(counters_);
                store_.commit();
                open = false;
            }
            return result;
        });
        if (open) {
            store_.rollback();
            counters_ = saved;
        }
        if (!d) announce();
        news_.clear();
        return d;
    }

    // --- Live changes: what a transaction will announce once it commits.

    enum class audience { everyone, user, group };
    struct news_key {
        const collection_schema* schema;
        audience to;
        std::string name; ///< the user or the group
        bool own;         ///< the pushing device's own write
        auto operator<=>(const news_key&) const = default;
    };

    /// The device whose push is being applied, for the length of the push.
    struct news_origin {
        news_origin(sync_service& s, std::string_view user, std::string_view client) : service(s) {
            service.origin_user_ = user;
            service.origin_client_ = client;
        }
        ~news_origin() {
            service.origin_user_.clear();
            service.origin_client_.clear();
        }
        news_origin(const news_origin&) = delete;
        news_origin& operator=(const news_origin&) = delete;
        sync_service& service;
    };

    void note(const collection_schema& schema, audience to, std::string_view name,
              std::uint64_t version, bool own) {
        if (!announcing_) return;
        auto& v = news_[news_key{&schema, to, std::string(name), own && !origin_client_.empty()}];
        v = std::max(v, version);
    }

    /// A record of a per-user or shared collection written under `owner` (empty: the one
    /// record everybody sees); grouped records are announced by their channels.
    void note_record(const collection_schema& schema, std::string_view owner,
                     std::uint64_t version) {
        if (schema.scope == scope::grouped) return;
        note(schema, owner.empty() ? audience::everyone : audience::user, owner, version, true);
    }

    /// A channel touched: a group's (its members hear of it) or a user's. `own`: by a write of
    /// the pushing device, rather than by a membership change, whose copies the device has not
    /// seen even if its push caused them.
    void note_channel(const collection_schema& schema, std::string_view channel,
                      std::uint64_t version, bool own) {
        constexpr std::string_view group_prefix = "group:", user_prefix = "user:";
        if (channel.starts_with(group_prefix))
            note(schema, audience::group, channel.substr(group_prefix.size()), version, own);
        else if (channel.starts_with(user_prefix))
            note(schema, audience::user, channel.substr(user_prefix.size()), version, own);
    }

    /// Publishes the committed transaction's news. A failure to read a group's members loses
    /// hints, never data: the devices catch up at their next round.
    void announce() noexcept {
        if (news_.empty()) return;
        try {
            live_news n;
            for (const auto& [key, version] : news_) {
                n.collection = key.schema->name;
                n.version = version;
                n.everyone = key.to == audience::everyone;
                n.users.clear();
                if (key.to == audience::user) n.users.push_back(key.name);
                else if (key.to == audience::group) n.users = store_.members_of(key.name);
                n.origin_user = key.own ? origin_user_ : std::string();
                n.origin_client = key.own ? origin_client_ : std::string();
                live_->publish(n);
            }
        } catch (...) {
        }
    }

    diagnostics rest_write(std::string_view user, std::string_view collection,
                           std::string_view id, mutation_op op, const boost::json::object* fields,
                           std::optional<std::uint64_t> base_version, change& out) {
        return for_record(user, collection, id, [&](const collection_schema& schema,
                                                    const std::string& key) {
            return in_transaction([&]() -> diagnostics {
                auto current = lookup(schema, user, key);
                if (op == mutation_op::remove && (!current || current->deleted))
                    return not_found(schema, key);
                mutation m;
                m.collection = schema.name;
                m.id = key_to_json(schema, key);
                m.op = op;
                if (fields) m.fields = *fields;
                // Unconditional: based on what the caller would see now.
                m.base_version = base_version ? *base_version : current ? current->version : 0;
                // A writer id of its own per request, so that no earlier write is ever "this
                // client's".
                const auto writer =
                    "rest:" + std::string(user) + ":" + std::to_string(++counters_.rest_writes);
                m.stamp = hlc_tick(counters_.clock, config_.clock(), "rest:" + std::string(user));
                access_cache access;
                auto result = apply_one(user, writer, schema, key, m, access);
                switch (result.status) {
                case mutation_status::applied:
                    if (auto now = lookup(schema, user, key)) {
                        out = std::move(*now);
                    } else {
                        // Moved out of the writer's sight (a grouped record put in groups the
                        // writer is not in): gone for them, as a pull would say.
                        out = change{};
                        out.id = key_to_json(schema, key);
                        out.version = result.version;
                        out.deleted = true;
                    }
                    return {};
                case mutation_status::conflict:
                    out = std::move(*result.server);
                    return detail::conflict_of(schema, key, m.base_version, out.version);
                case mutation_status::rejected:
                    out = result.server ? std::move(*result.server) : change{};
                    return detail::refusal_of(result);
                }
                return {};
            });
        });
    }

    template <class T>
    static diagnostics parse_body(std::string_view body, T& out, boost::json::storage_ptr sp = {}) {
        boost::system::error_code ec;
        auto jv = boost::json::parse(body, ec, std::move(sp));
        if (ec) return {make_error_code(errc::malformed_json), "body is not JSON: " + ec.message()};
        return from_json(std::move(jv), out);
    }

    const collection_schema* find(std::string_view name) const {
        auto it = schemas_.find(name);
        return it == schemas_.end() ? nullptr : &it->second;
    }

    /// The record as `user` sees it (`detail::view_of`), read from the store.
    /// A grouped record the user may not see is not there for them.
    std::optional<change> lookup(const collection_schema& schema, std::string_view user,
                                 std::string_view key) {
        const bool shared = schema.scope == scope::shared;
        const auto base = store_.find(schema, owner_of(schema, user), key);
        if (!base) return std::nullopt;
        if (schema.scope == scope::grouped &&
            (base->deleted ? !tombstone_seen(schema, user, key, base->version)
                           : !detail::may_see(detail::stored_groups(schema, &*base),
                                              group_names(user))))
            return std::nullopt;
        std::optional<server_record> own;
        if (shared && schema.per_user_mask) own = store_.find(schema, user, key);
        return detail::view_of(schema, &*base, own ? &*own : nullptr);
    }

    static mutation_result rejected(const diagnostics& why, std::optional<change> server) {
        mutation_result r;
        r.status = mutation_status::rejected;
        r.error_code = to_string(errc_of(why.code));
        r.error_message = why.message;
        r.server = std::move(server);
        return r;
    }

    /// Applies one mutation as `client` of `user`: reads the records it touches, asks
    /// `detail::check_mutation` what to do, and does it.
    mutation_result apply_one(std::string_view user, const std::string& client,
                              const collection_schema& schema, const std::string& key,
                              const mutation& m, access_cache& access) {
        const bool shared = schema.scope == scope::shared;
        const bool grouped = schema.scope == scope::grouped;
        // A copy can derive only from a version this server wrote. One from beyond would skip
        // the conflict check against every write in between (and a restored or foreign server
        // is told so, rather than overwritten).
        if (m.base_version > counters_.last_version)
            return rejected({make_error_code(errc::invalid_field),
                             schema.name + "/" + key + ": base_version " +
                                 std::to_string(m.base_version) +
                                 " is above every version this server has written"},
                            std::nullopt);
        const std::string base_owner = owner_of(schema, user);
        // An upsert is checked before any lookup, so that a new record can go straight in.
        diagnostics invalid;
        std::uint64_t written = 0;
        if (m.op == mutation_op::upsert) {
            invalid = detail::check_upsert(schema, key, m.fields, written);
            if (!invalid && detail::may_insert_unread(schema, m, written))
                if (auto inserted = insert_if_new(schema, base_owner, key, m, written, client))
                    return *inserted;
            // A new grouped record (not a membership record, whose write reads its group) in
            // groups of the writer's goes straight in too; if the key exists, the general path
            // decides against the record that holds it.
            if (!invalid && grouped && schema.members_field.empty() && m.base_version == 0 &&
                written != 0) {
                detail::group_write fresh;
                if (!detail::check_group_write(schema, key, m, nullptr, user_groups(access, user),
                                               {}, config_.max_groups_per_record, fresh))
                    if (auto inserted =
                            insert_if_new(schema, base_owner, key, m, written, client)) {
                        for (const auto& g : fresh.after)
                            touch(schema, detail::group_channel(g), key, inserted->version, true);
                        return *inserted;
                    }
            }
        }
        const auto base = store_.find(schema, base_owner, key);
        std::optional<server_record> own;
        if (shared && schema.per_user_mask) own = store_.find(schema, user, key);
        const auto* base_record = base ? &*base : nullptr;
        const auto* own_record = own ? &*own : nullptr;
        auto current = [&] { return detail::view_of(schema, base_record, own_record); };

        // A grouped record: the writer must see it, and may put it only in groups of theirs;
        // a membership record must keep a valid member list. Checked before anything that
        // would show the record.
        detail::group_write groups;
        std::vector<std::string> members_after;
        if (grouped) {
            const bool membership = !schema.members_field.empty();
            const bool exists = base && !base->deleted;
            // A tombstone the user never saw is no record to them: a delete of it changes
            // nothing, and a write over it is a new record, never a conflict that shows it.
            if (base && base->deleted && !tombstone_seen(schema, user, key, base->version)) {
                if (m.op == mutation_op::remove) {
                    mutation_result r;
                    r.version = counters_.last_version;
                    return r;
                }
                // An edit of a record the user saw once, before it was taken from them: refused
                // as an edit of a live record out of their sight is.
                if (m.base_version != 0 && !m.fields.contains(schema.group_field))
                    return rejected({make_error_code(errc::forbidden),
                                     schema.name + "/" + key + ": not a member of its group"},
                                    std::nullopt);
                base_record = nullptr;
            } else if (base && base->deleted && m.op == mutation_op::upsert &&
                       !m.fields.contains(schema.group_field) && m.base_version < base->version) {
                // An edit of fields of a record deleted since its base: the collection's policy
                // settles it, as for any other scope.
                mutation_result r;
                r.status = mutation_status::conflict;
                r.server = current();
                return r;
            }
            std::string founding;
            if (membership && m.op == mutation_op::upsert && !exists && !store_.group_exists(key))
                founding = key;
            if (auto d = detail::check_group_write(schema, key, m, base_record,
                                                   user_groups(access, user), founding,
                                                   config_.max_groups_per_record, groups))
                // The record goes with the refusal when the user sees it (a move to a group
                // of someone else's), so that the device can drop its change and keep the
                // record; never to a user who does not.
                return rejected(d, detail::may_see(groups.before, user_groups(access, user))
                                       ? current()
                                       : std::nullopt);
            // Told only to a member of the group, who may know what governs it.
            if (membership && m.op == mutation_op::upsert && !exists && founding.empty())
                if (auto d = governed_elsewhere(schema, key)) return rejected(d, std::nullopt);
            if (membership && !invalid)
                if (auto d = detail::check_members(
                        schema, m, user, [&](std::string_view u) { return users_.contains(u); },
                        config_.max_members_per_group,
                        founding.empty() ? store_.members_of(key) : std::vector<std::string>{},
                        exists, members_after))
                    return rejected(d, current());
        }

        const auto check =
            detail::check_mutation(schema, key, m, written, invalid, base_record, own_record, client);
        const bool overlay = shared && schema.per_user_mask;
        mutation_result r;
        switch (check.verdict) {
        case detail::mutation_verdict::refuse:
            return rejected(check.refusal,
                            check.refusal_shows_record ? current() : std::nullopt);
        case detail::mutation_verdict::conflict:
            r.status = mutation_status::conflict;
            r.server = current();
            return r;
        case detail::mutation_verdict::unchanged:
            // Nothing to write: answer with the version the client's record now matches.
            r.version = current()->version;
            if (!overlay) r.server = detail::unseen_writes(schema, *base, m.base_version, client);
            return r;
        case detail::mutation_verdict::remove:
            r.version = !base ? counters_.last_version
                        : base->deleted ? base->version
                                        : tombstone(schema, base_owner, *base, m.stamp, client);
            if (grouped && base && !base->deleted)
                grouped_written(schema, key, groups.before, nullptr, r.version, &access);
            return r;
        case detail::mutation_verdict::write: break;
        }
        const auto shared_mask = written & ~(shared ? schema.per_user_mask : 0);
        const auto own_mask = written & (shared ? schema.per_user_mask : 0);
        if (shared_mask || !shared) {
            const auto record = write(schema, base_owner, key, base_record, m.fields,
                                      shared_mask, m.stamp, client);
            r.version = record.version;
            if (grouped)
                grouped_written(schema, key, groups.before, &record, record.version, &access);
            if (!overlay)
                r.server = detail::unseen_writes(schema, record, m.base_version, client);
        }
        if (own_mask)
            r.version =
                write(schema, user, key, own_record, m.fields, own_mask, m.stamp, client).version;
        return r;
    }

    /// One page of the feed of `schema` as `user` sees it (see `pull`).
    pull_response feed_page(std::string_view user, const collection_schema& schema,
                            const pull_request& request) {
        const std::size_t limit = std::clamp<std::size_t>(request.limit, 1, max_pull_limit);
        if (schema.scope == scope::grouped) return grouped_feed_page(user, schema, request, limit);
        // A shared collection's feed merges the shared records with this user's own values.
        const bool shared = schema.scope == scope::shared;
        const bool overlay = shared && schema.per_user_mask;
        // One more than the page, to know whether more follow.
        std::vector<server_record> shared_page, own_page;
        if (overlay) {
            store_.feed(schema, {}, request.since, limit + 1, shared_page);
            store_.feed(schema, user, request.since, limit + 1, own_page);
        } else {
            store_.feed_for_client(schema, shared ? std::string_view() : user, request.since,
                                   limit + 1, shared_page, request.client_id);
        }
        detail::feed_merge merge(shared_page, own_page, limit);
        pull_response out;
        out.cursor = request.since;
        std::unordered_set<std::string_view> page_keys;
        bool past_backfill = false;
        while (auto step = merge.next()) {
            auto& rec = step->record;
            if (request.backfill && rec.version > request.backfill->until) {
                past_backfill = true;
                break;
            }
            out.cursor = rec.version;
            // The shared record and this user's own values of it are one change.
            if (!page_keys.insert(rec.key).second) continue;
            std::optional<change> c;
            if (!overlay) {
                // The client's own write, still the latest: it holds the record already.
                if (!request.client_id.empty() && rec.last_writer == request.client_id)
                    c = detail::echo_of(schema, rec);
                else
                    c = detail::view_of(schema, std::move(rec));
            } else if (!step->second) {
                const auto own = store_.find(schema, user, rec.key);
                c = detail::view_of(schema, &rec, own ? &*own : nullptr);
            } else {
                const auto base = store_.find(schema, {}, rec.key);
                c = detail::view_of(schema, base ? &*base : nullptr, &rec);
            }
            // An echo carries no value: the record's own (intact on that path) is matched.
            if (c && detail::keep_for_subset(schema, request, *c,
                                                   c->echo ? rec.value : c->value))
                out.changes.push_back(std::move(*c));
        }
        out.has_more = merge.has_more() && !past_backfill;
        detail::end_backfill_page(request, out);
        return out;
    }

    /// The versions one push wrote (not replayed results), while they are all of one
    /// collection.
    struct own_writes_tracker {
        const collection_schema* schema = nullptr;
        bool mixed = false; ///< writes to more than one collection: no range is told
        std::uint64_t lowest = 0, highest = 0;
        void add(const collection_schema& s, std::uint64_t version) {
            if (schema && schema != &s) mixed = true;
            if (!schema) lowest = version;
            schema = &s;
            lowest = std::min(lowest, version);
            highest = std::max(highest, version);
        }
    };

    /// The feed range the push's own writes fill alone (see `own_writes_range`). Every version
    /// from the lowest to the highest written was issued inside this push's transaction, so
    /// the feed holds nothing else between the record below the lowest and the highest. Not
    /// told for a shared collection with per-user fields, whose feed merges two owners, nor
    /// by a store that cannot find the record below cheaply.
    std::optional<own_writes_range> own_writes_of(std::string_view user,
                                                  const own_writes_tracker& written) {
        if (!written.schema || written.mixed) return std::nullopt;
        const auto& schema = *written.schema;
        const bool shared = schema.scope == scope::shared;
        if (shared && schema.per_user_mask) return std::nullopt;
        if (schema.scope == scope::grouped) return grouped_own_writes(user, schema, written);
        const auto below =
            store_.feed_version_below(schema, shared ? std::string_view() : user, written.lowest);
        if (!below) return std::nullopt;
        return own_writes_range{schema.name, *below, written.highest};
    }

    /// `own_writes_of` for a grouped collection, whose feed merges the user's channels: the
    /// entry below the lowest write is the highest of them below it (one probe per channel,
    /// as a pull page pays). Told for a one-group collection without membership records only:
    /// there a write keeps its record in the writer's sight (its one group is the writer's),
    /// so each write is a change the writer sees. A record of several groups can leave the
    /// writer's sight by their own write (a group they are not in may stay), and a membership
    /// record's write touches the user's own channel at versions of the push (a join copies a
    /// group's records there): the client pulls as before.
    std::optional<own_writes_range> grouped_own_writes(std::string_view user,
                                                       const collection_schema& schema,
                                                       const own_writes_tracker& written) {
        if (schema.group_is_list || !schema.members_field.empty()) return std::nullopt;
        auto below = store_.channel_version_below(schema, detail::user_channel(user),
                                                  written.lowest);
        if (!below) return std::nullopt;
        for (const auto& m : store_.groups_of(user)) {
            const auto v =
                store_.channel_version_below(schema, detail::group_channel(m.group), written.lowest);
            if (!v) return std::nullopt;
            // A group's channel serves the user from the membership's start only.
            if (*v > m.since) below = std::max(*below, *v);
        }
        return own_writes_range{schema.name, *below, written.highest};
    }

    /// Writes the `mask` fields of `fields` into the record (owner, key), whose stored state is
    /// `existing`, at a new version. Returns the record as written.
    server_record write(const collection_schema& schema, std::string_view owner,
                        const std::string& key, const server_record* existing,
                        const boost::json::object& fields, std::uint64_t mask, const hlc_stamp& stamp,
                        const std::string& writer) {
        const auto version = ++counters_.last_version;
        server_record rec;
        if (existing && existing->version != 0 && !existing->deleted) {
            rec = *existing;
            rec.fields.resize(schema.fields.size());
            for (std::size_t i = 0; i < schema.fields.size(); ++i) {
                if (!((mask >> i) & 1)) continue;
                if (const auto* v = fields.if_contains(schema.fields[i])) {
                    rec.value[schema.fields[i]] = *v;
                    rec.fields[i] = {version, writer};
                }
            }
        } else {
            // A new record (or one recreated over a tombstone).
            rec = new_record(schema, key, fields, mask, version, stamp, writer);
        }
        rec.deleted = false;
        rec.version = version;
        rec.stamp = stamp;
        rec.last_writer = writer;
        store_.put(schema, owner, rec);
        note_record(schema, owner, version);
        return rec;
    }

    /// A record that did not exist, built once, field by field, from the mutation or the
    /// schema's defaults; every field is this write's.
    static server_record new_record(const collection_schema& schema, const std::string& key,
                                    const boost::json::object& fields, std::uint64_t mask,
                                    std::uint64_t version, const hlc_stamp& stamp,
                                    const std::string& writer) {
        server_record rec;
        rec.key = key;
        rec.value.reserve(schema.fields.size());
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            const auto& name = schema.fields[i];
            const auto* v = (mask >> i) & 1 ? fields.if_contains(name) : nullptr;
            if (name == schema.key_field) rec.value.emplace(name, key_to_json(schema, key));
            else if (v) rec.value.emplace(name, *v);
            else if (const auto* d = schema.defaults.if_contains(name)) rec.value.emplace(name, *d);
        }
        rec.fields.assign(schema.fields.size(), field_stamp{version, writer});
        rec.version = version;
        rec.stamp = stamp;
        rec.last_writer = writer;
        return rec;
    }

    /// Inserts the new record of an upsert that `detail::may_insert_unread` allows (`mask`:
    /// the fields it writes) without reading its key first. Nullopt if the key exists (a tombstone
    /// included): the general path then decides, with the lookup.
    std::optional<mutation_result> insert_if_new(const collection_schema& schema,
                                                 std::string_view owner, const std::string& key,
                                                 const mutation& m, std::uint64_t mask,
                                                 const std::string& client) {
        const auto version = counters_.last_version + 1;
        if (!store_.insert_new(schema, owner,
                               new_record(schema, key, m.fields, mask, version, m.stamp, client)))
            return std::nullopt;
        counters_.last_version = version;
        note_record(schema, owner, version);
        mutation_result r;
        r.version = version; // every field is this write's: nothing unseen to send back
        return r;
    }

    std::uint64_t tombstone(const collection_schema& schema, std::string_view owner,
                            const server_record& existing, const hlc_stamp& stamp,
                            const std::string& writer) {
        server_record rec;
        rec.key = existing.key;
        rec.deleted = true;
        rec.version = ++counters_.last_version;
        rec.stamp = stamp;
        rec.last_writer = writer;
        store_.put(schema, owner, rec);
        note_record(schema, owner, rec.version);
        return rec.version;
    }

    // --- Sharing.

    /// The store owner of a collection's records for `user`: the user for a per-user
    /// collection, nobody (one record for all) otherwise.
    static std::string owner_of(const collection_schema& schema, std::string_view user) {
        return schema.scope == scope::per_user ? std::string(user) : std::string();
    }

    static diagnostics check_name(std::string_view what, std::string_view name) {
        if (name.empty() || name.size() > max_id_length)
            return {make_error_code(errc::invalid_field),
                    std::string(what) + " names are 1 to " + std::to_string(max_id_length) +
                        " bytes"};
        return {};
    }

    const std::vector<std::string>& user_groups(access_cache& access, std::string_view user) {
        if (!access.groups) access.groups = group_names(user);
        return *access.groups;
    }
    std::vector<std::string> group_names(std::string_view user) {
        std::vector<std::string> out;
        if (!store_.supports_groups()) return out;
        for (auto& m : store_.groups_of(user)) out.push_back(std::move(m.group));
        return out;
    }

    /// Whether `user` was told of the deletion (at `deleted_at`) of grouped record `key`: it
    /// was touched in the user's own channel after the deletion (a leave tells the records
    /// deleted while the user was a member), or in one of the user's groups since the
    /// membership began. A user channel entry from before the deletion (a join, an eviction)
    /// does not count: a former member never learns what happened after they left.
    bool tombstone_seen(const collection_schema& schema, std::string_view user,
                        std::string_view key, std::uint64_t deleted_at) {
        if (auto v = store_.channel_version(schema, detail::user_channel(user), key);
            v && *v >= deleted_at)
            return true;
        for (const auto& m : store_.groups_of(user))
            if (auto v = store_.channel_version(schema, detail::group_channel(m.group), key);
                v && *v > m.since)
                return true;
        return false;
    }

    /// Refuses a new membership record for a group that a live record of another membership
    /// collection governs: group names are one namespace, and two records must never disagree
    /// about one group's members.
    diagnostics governed_elsewhere(const collection_schema& schema, std::string_view key) {
        if (schema.members_field.empty()) return {};
        for (const auto* other : grouped_schemas()) {
            if (other == &schema || other->members_field.empty()) continue;
            if (const auto rec = store_.find(*other, {}, key); rec && !rec->deleted)
                return {make_error_code(errc::forbidden),
                        schema.name + "/" + std::string(key) +
                            ": the group is governed by a record of " + other->name};
        }
        return {};
    }

    /// The collections whose records belong to groups.
    std::vector<const collection_schema*> grouped_schemas() const {
        std::vector<const collection_schema*> out;
        for (const auto& [name, schema] : schemas_)
            if (schema.scope == scope::grouped) out.push_back(&schema);
        return out;
    }

    /// Touches a channel (`server_store::touch_channel`) and notes it for the live streams.
    void touch(const collection_schema& schema, const std::string& channel, const std::string& key,
               std::uint64_t version, bool present, bool own = true) {
        store_.touch_channel(schema, channel, key, version, present);
        note_channel(schema, channel, version, own);
    }

    /// What a write to a grouped record does besides the record (`written`, null once deleted,
    /// at `version`): it touches the channels of the groups the record was in (`before`) and is
    /// in now, so their members' pulls see it; a membership record sets its group's members.
    void grouped_written(const collection_schema& schema, const std::string& key,
                         const std::vector<std::string>& before, const server_record* written,
                         std::uint64_t version, access_cache* access) {
        const auto now_in = detail::stored_groups(schema, written);
        auto groups = now_in;
        groups.insert(groups.end(), before.begin(), before.end());
        std::sort(groups.begin(), groups.end());
        groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
        for (const auto& g : groups)
            touch(schema, detail::group_channel(g), key, version, detail::holds(now_in, g));
        if (schema.members_field.empty()) return;
        std::vector<std::string> members;
        if (written && !written->deleted)
            if (const auto* v = written->value.if_contains(schema.members_field))
                if (detail::names_in(*v, schema.members_field, ~std::size_t{0}, members))
                    members.clear();
        set_members(key, members, written == nullptr);
        if (access) access->groups.reset();
    }

    /// Makes `after` the members of `group` (founding it if need be), or ends every membership
    /// when `remove`. A group is never removed: its records outlive its membership record, and
    /// whoever founded the name again would see them; the name stays taken, its records seen by
    /// nobody until the server grants someone.
    void set_members(const std::string& group, const std::vector<std::string>& after, bool remove) {
        const bool exists = store_.group_exists(group);
        if (!exists && remove) return;
        if (!exists) store_.add_group(group);
        const auto diff = detail::diff_members(store_.members_of(group),
                                               remove ? std::vector<std::string>{} : after);
        for (const auto& user : diff.left) leave(group, user);
        for (const auto& user : diff.joined) join(group, user);
    }

    /// A user joins a group: their own channel gets every live record of the group, above
    /// their devices' cursors, and the group's channel serves them from here on.
    void join(const std::string& group, const std::string& user) {
        store_.add_member(group, user, counters_.last_version);
        tell_user(group, user, ~std::uint64_t{0});
    }

    /// A user leaves a group: their own channel gets every record they saw through it (live in
    /// the group now, or touched in it since they joined), so that a pull tells their devices
    /// which to drop and which they still see through another group.
    void leave(const std::string& group, const std::string& user) {
        std::uint64_t since = 0;
        for (const auto& m : store_.groups_of(user))
            if (m.group == group) since = m.since;
        store_.remove_member(group, user);
        tell_user(group, user, since);
    }

    /// Touches in the user's own channel, in the group's order, each record of the group's
    /// channel that is live in the group or was touched there after `touched_after`.
    void tell_user(const std::string& group, const std::string& user,
                   std::uint64_t touched_after) {
        const auto from = detail::group_channel(group);
        const auto to = detail::user_channel(user);
        std::vector<channel_entry> undecided;
        for (const auto* schema : grouped_schemas()) {
            undecided.clear();
            const auto copied =
                store_.copy_channel(*schema, from, to, touched_after, counters_.last_version,
                                    undecided);
            counters_.last_version += copied;
            // Entries from before channels kept presence: the record decides.
            for (const auto& e : undecided) {
                const auto rec = store_.find(*schema, {}, e.key);
                if (detail::holds(detail::stored_groups(*schema, rec ? &*rec : nullptr), group))
                    touch(*schema, to, e.key, ++counters_.last_version, true,
                          user == origin_user_);
            }
            // The pushing user's own join (founding a group by a membership record) copies
            // only what that push wrote: their device has it.
            if (copied != 0)
                note_channel(*schema, to, counters_.last_version, user == origin_user_);
        }
    }

    /// `grant` and `revoke`.
    diagnostics change_membership(std::string_view group, std::string_view user, bool member) {
        if (auto d = check_name("group", group)) return d;
        if (auto d = check_name("user", user)) return d;
        std::lock_guard lock(mutex_);
        if (!store_.supports_groups())
            return {make_error_code(errc::invalid_configuration),
                    "the server store keeps no groups"};
        if (member && !users_.contains(user))
            return {make_error_code(errc::invalid_field),
                    "'" + std::string(user) + "' is not a known user"};
        return in_transaction([&]() -> diagnostics {
            if (!store_.group_exists(group))
                return {make_error_code(errc::not_found),
                        "no group '" + std::string(group) + "'"};
            auto members = store_.members_of(group);
            const bool is_member = detail::holds(members, user);
            if (is_member == member) return {};
            if (member) members.insert(std::upper_bound(members.begin(), members.end(), user),
                                       std::string(user));
            else members.erase(std::lower_bound(members.begin(), members.end(), user));
            // A group founded by a membership record changes through it.
            for (const auto* schema : grouped_schemas()) {
                if (schema->members_field.empty()) continue;
                const auto rec = store_.find(*schema, {}, group);
                if (!rec || rec->deleted) continue;
                boost::json::object value;
                boost::json::array list;
                for (const auto& m : members) list.emplace_back(m);
                value[schema->members_field] = std::move(list);
                const auto key = std::string(group);
                const auto written =
                    write(*schema, {}, key, &*rec, value,
                          std::uint64_t{1} << *schema->field_index(schema->members_field),
                          hlc_tick(counters_.clock, config_.clock(), "server"), "server");
                grouped_written(*schema, key, detail::stored_groups(*schema, &*rec), &written,
                                written.version, nullptr);
                return {};
            }
            if (member) join(std::string(group), std::string(user));
            else leave(std::string(group), std::string(user));
            return {};
        });
    }

    /// One page of a grouped collection's feed as `user` sees it: the channels of the user's
    /// groups (each from the start of the membership) and the user's own channel, merged by
    /// version. Each key is answered as the user may see it now: the record, an echo, a
    /// tombstone, or (a record the user no longer sees) a removal: a tombstone for that user.
    pull_response grouped_feed_page(std::string_view user, const collection_schema& schema,
                                    const pull_request& request, std::size_t limit) {
        std::vector<channel_start> channels;
        std::vector<std::string> groups;
        channels.push_back({detail::user_channel(user), 0});
        // A record of a one-group collection is in one group's channel: a device that
        // subscribes to some groups needs no other group's channel (a record that leaves a
        // subscribed group is touched in its channel as it goes).
        const auto& part = request.subset;
        const bool some_channels = part.groups && !schema.group_is_list;
        for (auto& m : store_.groups_of(user)) {
            if (!some_channels ||
                std::find(part.groups->begin(), part.groups->end(), m.group) != part.groups->end())
                channels.push_back({detail::group_channel(m.group), m.since});
            groups.push_back(std::move(m.group));
        }
        std::vector<channel_entry> entries;
        store_.channel_feed(schema, channels, request.since, limit + 1, entries);
        pull_response out;
        out.cursor = request.since;
        out.has_more = entries.size() > limit;
        if (out.has_more) entries.resize(limit);
        // The page's keys, each once, then their records in one read.
        std::unordered_set<std::string_view> page_keys;
        std::vector<std::string_view> keys;
        std::vector<std::uint64_t> touched; // the version of each key's first entry
        keys.reserve(entries.size());
        for (const auto& e : entries) {
            if (request.backfill && e.version > request.backfill->until) {
                out.has_more = false;
                break;
            }
            out.cursor = e.version;
            if (page_keys.insert(e.key).second) {
                keys.push_back(e.key);
                touched.push_back(e.version);
            }
        }
        std::vector<std::optional<server_record>> records;
        store_.find_page(schema, {}, keys, records);
        for (std::size_t i = 0; i < records.size(); ++i) {
            auto& rec = records[i];
            if (!rec) continue;
            // A group channel holds a deletion at the tombstone's own version, and a user's
            // channel holds fresh versions no record has: an entry below the tombstone is one
            // from before the deletion (a join, or the eviction of a former member), whose
            // user is not told the record was deleted, only that it is gone for them.
            const bool unseen = rec->deleted
                                    ? touched[i] < rec->version
                                    : !detail::may_see(detail::stored_groups(schema, &*rec),
                                                       groups);
            change c;
            if (unseen) {
                // A removal: at the record's version (a record given back later comes at that
                // version or above, and must replace it), with a blank stamp, which names no
                // writer and no time.
                c = detail::removal_of(key_to_json(schema, rec->key), rec->version);
            } else if (!rec->deleted && !request.client_id.empty() &&
                       rec->last_writer == request.client_id) {
                c = detail::echo_of(schema, *rec);
            } else {
                c = detail::view_of(schema, std::move(*rec));
            }
            if (detail::keep_for_subset(schema, request, c, c.echo ? rec->value : c.value))
                out.changes.push_back(std::move(c));
        }
        detail::end_backfill_page(request, out);
        return out;
    }

    /// Every live record of a grouped collection the user sees (`list`).
    void list_grouped(std::string_view user, const collection_schema& schema,
                      std::vector<change>& out) {
        std::map<std::string, change> latest;
        pull_request request;
        request.collection = schema.name;
        do {
            auto page = grouped_feed_page(user, schema, request, 1000);
            for (auto& c : page.changes) {
                std::string key;
                if (!key_from_json(schema, c.id, key)) latest[key] = std::move(c);
            }
            request.since = page.cursor;
            if (!page.has_more) break;
        } while (true);
        std::vector<change> live;
        for (auto& [key, c] : latest)
            if (!c.deleted) live.push_back(std::move(c));
        std::sort(live.begin(), live.end(),
                  [](const change& a, const change& b) { return a.version < b.version; });
        out = std::move(live);
    }

    std::unique_ptr<server_store> owned_store_; ///< the default in-memory store, if no other
    server_store& store_;
    service_config config_;
    mutable std::mutex mutex_;
    std::map<std::string, collection_schema, std::less<>> schemas_;
    std::set<std::string, std::less<>> users_; ///< known users: membership names only these
    server_counters counters_;
    std::shared_ptr<live_hub> live_;
    std::map<news_key, std::uint64_t> news_; ///< the open transaction's, by audience
    bool announcing_ = false;                ///< whether any stream listens
    /// `check_storage`'s last verdict and when it was reached.
    std::optional<std::chrono::steady_clock::time_point> storage_checked_;
    diagnostics storage_verdict_;
    std::string origin_user_, origin_client_;
};

} // namespace offsync::server
