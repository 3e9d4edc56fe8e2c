// offsync — the server's protocol logic, independent of HTTP: versions, field-level conflict
// detection, idempotent mutations, the change feed, per-user scope and validation.
#pragma once

#include <offsync/detail/replica_logic.hpp>
#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace offsync::server {

struct service_config {
    std::size_t max_mutations_per_push = 1000;
    std::size_t max_body_bytes = 8u << 20;
    /// How many mutation results the server remembers per client for idempotent retries. A
    /// client retries only what it has not seen acknowledged, which is at most a few batches.
    std::size_t idempotency_window = 20000;
    wall_clock clock = system_wall_ms;
};

/// A wire answer: HTTP status and JSON body text.
struct service_response {
    unsigned status = 200;
    std::string body;
};

/// The HTTP status that fits an offsync error.
inline unsigned http_status(const error_code& ec) {
    if (ec.category() != offsync_category()) return 500;
    switch (static_cast<errc>(ec.value())) {
    case errc::malformed_json:
    case errc::invalid_field:
    case errc::unknown_field:
    case errc::invalid_id:
    case errc::cursor_ahead: return 400;
    case errc::unauthorized: return 401;
    case errc::read_only:
    case errc::forbidden: return 403;
    case errc::unknown_collection:
    case errc::not_found: return 404;
    case errc::version_conflict: return 409;
    case errc::batch_too_large: return 413;
    default: return 500;
    }
}

/// The sync service over an in-memory record store. One mutex serialises requests, so every
/// push applies as one transaction: a reader never sees half of it.
///
/// Versions come from one strictly increasing sequence; every field keeps the version and the
/// client that last wrote it. A mutation conflicts only if a field it writes was written after
/// its base version by another client: edits to different fields merge, and a client's own
/// earlier write (whose acknowledgement it lost) is never a conflict with itself.
///
/// Scope: records of a per-user collection belong to the user who wrote them and are invisible
/// to everybody else. A shared collection has one record for everybody, read-only to clients
/// unless its model declares `client_writable`; its `per_user_fields` are kept per user.
///
/// Thread safety: every member function may be called from any thread.
class sync_service {
public:
    explicit sync_service(service_config config = {}) : config_(std::move(config)) {}

    template <synced_model T>
    void add_collection() {
        add_collection(schema_of<T>());
    }
    void add_collection(collection_schema schema) {
        std::lock_guard lock(mutex_);
        auto name = schema.name;
        collections_[name].schema = std::move(schema);
    }

    const service_config& config() const noexcept { return config_; }

    // --- Wire entry points: what the HTTP server and the loopback transport call.

    service_response handle_push(std::string_view user, std::string_view body) {
        if (body.size() > config_.max_body_bytes)
            return error_response({make_error_code(errc::batch_too_large),
                                   "body exceeds " + std::to_string(config_.max_body_bytes) +
                                       " bytes"});
        push_request request;
        if (auto d = parse_body(body, request)) return error_response(d);
        push_response response;
        if (auto d = push(user, request, response)) return error_response(d);
        return {200, json::serialize(to_json(response))};
    }

    service_response handle_pull(std::string_view user, std::string_view query) {
        pull_request request;
        if (auto d = parse_pull_query(query, request)) return error_response(d);
        pull_response response;
        if (auto d = pull(user, request, response)) return error_response(d);
        return {200, json::serialize(to_json(response))};
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
        if (user.empty())
            return {make_error_code(errc::unauthorized), "no authenticated user"};
        std::lock_guard lock(mutex_);
        std::vector<std::string> keys(request.mutations.size());
        for (std::size_t i = 0; i < request.mutations.size(); ++i) {
            const auto& m = request.mutations[i];
            auto* coll = find(m.collection);
            if (!coll)
                return {make_error_code(errc::unknown_collection),
                        "mutations[" + std::to_string(i) + "]: unknown collection '" +
                            m.collection + "'"};
            if (auto d = key_from_json(coll->schema, m.id, keys[i])) {
                d.message = "mutations[" + std::to_string(i) + "]: " + d.message;
                return d;
            }
        }
        auto& remembered = applied_[std::string(user) + '\n' + request.client_id];
        response.results.clear();
        response.results.reserve(request.mutations.size());
        const auto now = config_.clock();
        for (std::size_t i = 0; i < request.mutations.size(); ++i) {
            const auto& m = request.mutations[i];
            if (auto it = remembered.find(m.mutation_id); it != remembered.end()) {
                response.results.push_back(it->second);
                continue;
            }
            hlc_observe(clock_, m.stamp, now);
            auto result = apply_one(user, request.client_id, *find(m.collection), keys[i], m);
            result.mutation_id = m.mutation_id;
            remembered.emplace(m.mutation_id, result);
            while (remembered.size() > config_.idempotency_window)
                remembered.erase(remembered.begin());
            response.results.push_back(std::move(result));
        }
        return {};
    }

    /// One page of the change feed of `request.collection` as `user` sees it: changes with a
    /// version above `since`, ascending, each record at its latest version.
    diagnostics pull(std::string_view user, const pull_request& request,
                     pull_response& response) {
        if (user.empty()) return {make_error_code(errc::unauthorized), "no authenticated user"};
        std::lock_guard lock(mutex_);
        auto* coll = find(request.collection);
        if (!coll)
            return {make_error_code(errc::unknown_collection),
                    "unknown collection '" + request.collection + "'"};
        if (request.since > last_version_)
            return {make_error_code(errc::cursor_ahead),
                    "cursor " + std::to_string(request.since) +
                        " is ahead of the server's last version " +
                        std::to_string(last_version_) + "; re-sync from 0"};
        const std::size_t limit = std::clamp<std::size_t>(request.limit, 1, max_pull_limit);
        const auto& schema = coll->schema;
        // A shared collection's feed merges the shared records with this user's own values.
        const feed_map* feeds[2] = {nullptr, nullptr};
        if (schema.scope == scope::per_user) {
            feeds[0] = feed_of(*coll, user);
        } else {
            feeds[0] = feed_of(*coll, "");
            if (schema.per_user_mask) feeds[1] = feed_of(*coll, user);
        }
        feed_map::const_iterator it[2], end[2];
        for (int f = 0; f < 2; ++f)
            if (feeds[f]) {
                it[f] = feeds[f]->upper_bound(request.since);
                end[f] = feeds[f]->end();
            }
        auto live = [&](int f) { return feeds[f] && it[f] != end[f]; };
        response = pull_response{};
        response.cursor = request.since;
        std::unordered_set<std::string_view> page_keys;
        std::size_t consumed = 0;
        while ((live(0) || live(1)) && consumed < limit) {
            int f = !live(0) ? 1 : !live(1) ? 0 : (it[0]->first < it[1]->first ? 0 : 1);
            response.cursor = it[f]->first;
            std::string_view key = it[f]->second;
            ++it[f];
            ++consumed;
            // The shared record and this user's own values of it are one change.
            if (!page_keys.insert(key).second) continue;
            if (auto c = view(*coll, user, key)) response.changes.push_back(std::move(*c));
        }
        response.has_more = live(0) || live(1);
        return {};
    }

    // --- Server-side access: seeding a catalog, admin edits, REST reads.

    /// Writes a record as the server itself (not subject to client scope rules): seeds and
    /// edits a shared catalog. `owner` names the user for a per-user collection. Returns the new
    /// version, or 0 with `error` set.
    std::uint64_t admin_put(std::string_view collection, const json::object& value,
                            std::string_view owner = {}, diagnostics* error = nullptr) {
        std::lock_guard lock(mutex_);
        auto fail = [&](diagnostics d) {
            if (error) *error = std::move(d);
            return std::uint64_t{0};
        };
        auto* coll = find(collection);
        if (!coll)
            return fail({make_error_code(errc::unknown_collection),
                         "unknown collection '" + std::string(collection) + "'"});
        const auto* id = value.if_contains(coll->schema.key_field);
        std::string key;
        if (!id) return fail({make_error_code(errc::invalid_id), "value has no key field"});
        if (auto d = key_from_json(coll->schema, *id, key)) return fail(d);
        if (auto d = detail::validate_value(coll->schema, key, value)) return fail(d);
        auto stamp = hlc_tick(clock_, config_.clock(), "server");
        const std::string base_owner =
            coll->schema.scope == scope::per_user ? std::string(owner) : std::string();
        return write(*coll, base_owner, key, value, ~std::uint64_t{0} & ~coll->schema.per_user_mask,
                     stamp, "server");
    }

    /// Deletes a record as the server itself; returns the tombstone's version (0: none).
    std::uint64_t admin_erase(std::string_view collection, std::string_view key,
                              std::string_view owner = {}) {
        std::lock_guard lock(mutex_);
        auto* coll = find(collection);
        if (!coll) return 0;
        const std::string base_owner =
            coll->schema.scope == scope::per_user ? std::string(owner) : std::string();
        auto* rec = find_record(*coll, base_owner, key);
        if (!rec || rec->deleted) return 0;
        return tombstone(*coll, base_owner, std::string(key),
                         hlc_tick(clock_, config_.clock(), "server"),
                         "server");
    }

    /// The record as `user` sees it, tombstones included.
    std::optional<change> get(std::string_view user, std::string_view collection,
                              std::string_view key) {
        std::lock_guard lock(mutex_);
        auto* coll = find(collection);
        if (!coll) return std::nullopt;
        return view(*coll, user, key);
    }

    std::uint64_t last_version() const {
        std::lock_guard lock(mutex_);
        return last_version_;
    }

    // --- Per-record REST: what the HTTP server's `/v1/C` and `/v1/C/{id}` routes call. Same
    // scope and validation as a push, through the same write path, but without idempotency
    // (a REST request carries no mutation id).

    /// Every live record of `collection` as `user` sees it, in version order. No paging: a
    /// plain client with a large collection should page the change feed instead.
    diagnostics list(std::string_view user, std::string_view collection,
                     std::vector<change>& out) {
        if (user.empty()) return {make_error_code(errc::unauthorized), "no authenticated user"};
        std::lock_guard lock(mutex_);
        auto* coll = find(collection);
        if (!coll) return unknown_collection(collection);
        out.clear();
        const bool shared = coll->schema.scope == scope::shared;
        if (const auto* feed = feed_of(*coll, shared ? std::string_view() : user))
            for (const auto& [version, key] : *feed)
                if (auto c = view(*coll, user, key); c && !c->deleted)
                    out.push_back(std::move(*c));
        return {};
    }

    /// One live record as `user` sees it. `id` is the id as it appears in a URL path (already
    /// percent-decoded): the string itself, or an integer's decimal digits.
    diagnostics get_record(std::string_view user, std::string_view collection,
                           std::string_view id, change& out) {
        if (user.empty()) return {make_error_code(errc::unauthorized), "no authenticated user"};
        std::lock_guard lock(mutex_);
        auto* coll = find(collection);
        if (!coll) return unknown_collection(collection);
        std::string key;
        if (auto d = key_from_text(coll->schema, id, key)) return d;
        auto c = view(*coll, user, key);
        if (!c || c->deleted) return not_found(coll->schema, key);
        out = std::move(*c);
        return {};
    }

    /// Writes the fields of `fields` (a patch, or every field) to one record as `user`.
    /// `base_version` is the version the caller's copy derives from; without one the write is
    /// unconditional. A field written since `base_version` answers `version_conflict` with the
    /// server's record in `out`; every REST write counts as a writer of its own, so the caller's
    /// own earlier REST writes count too. A refused write (scope, types, unknown fields) answers
    /// its code, and `out` holds the server's record when one exists. On success `out` is the
    /// record as it is now.
    diagnostics put_record(std::string_view user, std::string_view collection,
                           std::string_view id, const json::object& fields,
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
    struct field_meta {
        std::uint64_t version = 0;
        std::string writer;
    };
    struct stored_record {
        json::object value;
        bool deleted = false;
        std::uint64_t version = 0;
        hlc_stamp stamp;
        std::string last_writer;
        std::vector<field_meta> fields;
    };
    using feed_map = std::map<std::uint64_t, std::string>;
    struct collection_state {
        collection_schema schema;
        /// Keyed by (owner, key): owner is the user of a per-user record, and empty for a shared
        /// record; a shared record's per-user values live under (user, key).
        std::unordered_map<std::string, stored_record> records;
        /// Per owner: version -> key, the latest version of each record only.
        std::map<std::string, feed_map, std::less<>> feeds;
    };

    static diagnostics unknown_collection(std::string_view name) {
        return {make_error_code(errc::unknown_collection),
                "unknown collection '" + std::string(name) + "'"};
    }
    static diagnostics not_found(const collection_schema& schema, std::string_view key) {
        return {make_error_code(errc::not_found),
                schema.name + "/" + std::string(key) + " does not exist"};
    }

    /// The key of an id written in a URL path: a string id as is, an integer id as decimal
    /// digits (an optional '-', no '+', no leading or trailing junk).
    static diagnostics key_from_text(const collection_schema& schema, std::string_view text,
                                     std::string& key) {
        if (schema.key == key_kind::string) return key_from_json(schema, json::string(text), key);
        std::int64_t n = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (text.empty() || ec != std::errc{} || p != text.data() + text.size())
            return {make_error_code(errc::invalid_id), "id must be an integer"};
        key = std::to_string(n);
        if (key != text) return {make_error_code(errc::invalid_id), "id must be an integer"};
        return {};
    }

    diagnostics rest_write(std::string_view user, std::string_view collection,
                           std::string_view id, mutation_op op, const json::object* fields,
                           std::optional<std::uint64_t> base_version, change& out) {
        if (user.empty()) return {make_error_code(errc::unauthorized), "no authenticated user"};
        std::lock_guard lock(mutex_);
        auto* coll = find(collection);
        if (!coll) return unknown_collection(collection);
        std::string key;
        if (auto d = key_from_text(coll->schema, id, key)) return d;
        auto current = view(*coll, user, key);
        if (op == mutation_op::remove && (!current || current->deleted))
            return not_found(coll->schema, key);
        mutation m;
        m.collection = coll->schema.name;
        m.id = key_to_json(coll->schema, key);
        m.op = op;
        if (fields) m.fields = *fields;
        // Unconditional: based on what the caller would see now.
        m.base_version = base_version ? *base_version : current ? current->version : 0;
        // A writer id of its own per request, so that no earlier write is ever "this client's".
        const auto writer = "rest:" + std::string(user) + ":" + std::to_string(++rest_writes_);
        const auto now = config_.clock();
        m.stamp = hlc_tick(clock_, now, "rest:" + std::string(user));
        auto result = apply_one(user, writer, *coll, key, m);
        switch (result.status) {
        case mutation_status::applied:
            out = *view(*coll, user, key);
            return {};
        case mutation_status::conflict:
            out = std::move(*result.server);
            return {make_error_code(errc::version_conflict),
                    coll->schema.name + "/" + key + " was written since version " +
                        std::to_string(m.base_version) + "; it is now at version " +
                        std::to_string(out.version)};
        case mutation_status::rejected:
            out = result.server ? std::move(*result.server) : change{};
            for (int e = 1; e <= int(errc::server_error); ++e)
                if (result.error_code == to_string(errc(e)))
                    return {make_error_code(errc(e)), result.error_message};
            return {make_error_code(errc::invalid_field), result.error_message};
        }
        return {};
    }

    template <class T>
    static diagnostics parse_body(std::string_view body, T& out) {
        boost::system::error_code ec;
        auto jv = json::parse(body, ec);
        if (ec) return {make_error_code(errc::malformed_json), "body is not JSON: " + ec.message()};
        return from_json(jv, out);
    }

    static service_response error_response(const diagnostics& d) {
        const auto code = d.code.category() == offsync_category() ? static_cast<errc>(d.code.value())
                                                                  : errc::server_error;
        return {http_status(d.code), json::serialize(error_body(code, d.message))};
    }

    collection_state* find(std::string_view name) {
        auto it = collections_.find(name);
        return it == collections_.end() ? nullptr : &it->second;
    }
    static const feed_map* feed_of(const collection_state& c, std::string_view owner) {
        auto it = c.feeds.find(owner);
        return it == c.feeds.end() ? nullptr : &it->second;
    }
    static std::string record_id(std::string_view owner, std::string_view key) {
        std::string id;
        id.reserve(owner.size() + 1 + key.size());
        id.append(owner).push_back('\0');
        id.append(key);
        return id;
    }
    static stored_record* find_record(collection_state& c, std::string_view owner,
                                      std::string_view key) {
        auto it = c.records.find(record_id(owner, key));
        return it == c.records.end() ? nullptr : &it->second;
    }
    static const stored_record* find_record(const collection_state& c, std::string_view owner,
                                            std::string_view key) {
        return find_record(const_cast<collection_state&>(c), owner, key);
    }

    /// The record as `user` sees it: the shared or owned record, with the user's own values of
    /// per-user fields laid over it.
    static std::optional<change> view(const collection_state& c, std::string_view user,
                                      std::string_view key) {
        const auto& schema = c.schema;
        const bool shared = schema.scope == scope::shared;
        const auto* base = find_record(c, shared ? std::string_view() : user, key);
        if (!base) return std::nullopt;
        change out;
        out.id = key_to_json(schema, key);
        out.version = base->version;
        out.deleted = base->deleted;
        out.stamp = base->stamp;
        if (base->deleted) return out;
        out.value = base->value;
        if (shared && schema.per_user_mask) {
            const auto* own = find_record(c, user, key);
            for (std::size_t i = 0; i < schema.fields.size(); ++i) {
                if (!((schema.per_user_mask >> i) & 1)) continue;
                const auto& f = schema.fields[i];
                const auto* v = own ? own->value.if_contains(f) : nullptr;
                out.value[f] = v ? *v : schema.defaults.at(f);
            }
            if (own && own->version > out.version) {
                out.version = own->version;
                out.stamp = own->stamp;
            }
        }
        return out;
    }

    mutation_result rejected(errc code, std::string message,
                             std::optional<change> server = std::nullopt) {
        mutation_result r;
        r.status = mutation_status::rejected;
        r.error_code = to_string(code);
        r.error_message = std::move(message);
        r.server = std::move(server);
        return r;
    }

    mutation_result apply_one(std::string_view user, const std::string& client,
                              collection_state& coll, const std::string& key, const mutation& m) {
        const auto& schema = coll.schema;
        const bool shared = schema.scope == scope::shared;
        const std::string base_owner = shared ? std::string() : std::string(user);
        auto* base = find_record(coll, base_owner, key);
        auto* own = shared && schema.per_user_mask ? find_record(coll, user, key) : nullptr;
        auto current = [&] { return view(coll, user, key); };

        std::uint64_t patch_mask = 0;
        if (m.op == mutation_op::upsert) {
            if (auto d = detail::validate_value(schema, key, m.fields))
                return rejected(errc(d.code.value()), d.message, current());
            for (const auto& [name, v] : m.fields) {
                const auto i = *schema.field_index(name);
                if (!schema.client_may_write(i))
                    return rejected(errc::read_only,
                                    "field '" + std::string(name) + "' of " + schema.name +
                                        " is read-only to clients",
                                    current());
                patch_mask |= std::uint64_t{1} << i;
            }
        } else if (shared && !schema.client_writable) {
            return rejected(errc::read_only, schema.name + " records cannot be deleted by clients",
                            current());
        }
        if (shared && !schema.client_writable && (!base || base->deleted))
            return rejected(errc::not_found, schema.name + "/" + key + " does not exist");

        // Conflict: something this mutation writes was written since its base by another client.
        auto newer = [&](std::uint64_t version, const std::string& writer) {
            return version > m.base_version && writer != client;
        };
        bool conflict = false;
        if (base && base->deleted) {
            conflict = m.op == mutation_op::upsert && newer(base->version, base->last_writer);
        } else if (base) {
            const auto mask = m.op == mutation_op::remove ? schema.all_fields_mask() : patch_mask;
            for (std::size_t i = 0; i < schema.fields.size() && !conflict; ++i) {
                if (!((mask >> i) & 1)) continue;
                const bool per_user = (schema.per_user_mask >> i) & 1 && shared;
                const auto* holder = per_user ? own : base;
                if (holder && i < holder->fields.size())
                    conflict = newer(holder->fields[i].version, holder->fields[i].writer);
            }
        }
        if (conflict) {
            mutation_result r;
            r.status = mutation_status::conflict;
            r.server = current();
            return r;
        }

        mutation_result r;
        if (m.op == mutation_op::upsert && patch_mask == 0 && base && !base->deleted) {
            // Nothing to write: answer with the version the client's record now matches.
            r.version = current()->version;
            return r;
        }
        if (m.op == mutation_op::remove) {
            r.version = !base ? last_version_
                        : base->deleted ? base->version
                                        : tombstone(coll, base_owner, key, m.stamp, client);
            return r;
        }
        const auto shared_mask = patch_mask & ~(shared ? schema.per_user_mask : 0);
        const auto own_mask = patch_mask & (shared ? schema.per_user_mask : 0);
        if (shared_mask || !shared) r.version = write(coll, base_owner, key, m.fields, shared_mask,
                                                      m.stamp, client);
        if (own_mask) r.version = write(coll, std::string(user), key, m.fields, own_mask, m.stamp,
                                        client);
        return r;
    }

    /// Writes the `mask` fields of `fields` into the record (owner, key) at a new version.
    std::uint64_t write(collection_state& coll, const std::string& owner, const std::string& key,
                        const json::object& fields, std::uint64_t mask, const hlc_stamp& stamp,
                        const std::string& writer) {
        const auto& schema = coll.schema;
        const auto version = ++last_version_;
        auto& rec = coll.records[record_id(owner, key)];
        auto& feed = coll.feeds[owner];
        if (rec.version) feed.erase(rec.version);
        const bool fresh = rec.version == 0 || rec.deleted;
        if (fresh) {
            rec.value = schema.defaults;
            rec.value[schema.key_field] = key_to_json(schema, key);
            rec.fields.assign(schema.fields.size(), field_meta{version, writer});
        }
        rec.fields.resize(schema.fields.size());
        for (std::size_t i = 0; i < schema.fields.size(); ++i) {
            if (!((mask >> i) & 1)) continue;
            if (const auto* v = fields.if_contains(schema.fields[i])) {
                rec.value[schema.fields[i]] = *v;
                rec.fields[i] = {version, writer};
            }
        }
        rec.deleted = false;
        rec.version = version;
        rec.stamp = stamp;
        rec.last_writer = writer;
        feed.emplace(version, key);
        return version;
    }

    std::uint64_t tombstone(collection_state& coll, const std::string& owner,
                            const std::string& key, const hlc_stamp& stamp,
                            const std::string& writer) {
        const auto version = ++last_version_;
        auto& rec = coll.records[record_id(owner, key)];
        auto& feed = coll.feeds[owner];
        if (rec.version) feed.erase(rec.version);
        rec.value = {};
        rec.deleted = true;
        rec.version = version;
        rec.stamp = stamp;
        rec.last_writer = writer;
        feed.emplace(version, key);
        return version;
    }

    service_config config_;
    mutable std::mutex mutex_;
    std::map<std::string, collection_state, std::less<>> collections_;
    /// (user, client id) -> mutation id -> its result, for idempotent retries.
    std::unordered_map<std::string, std::map<std::uint64_t, mutation_result>> applied_;
    std::uint64_t last_version_ = 0;
    std::uint64_t rest_writes_ = 0;
    hlc_state clock_;
};

} // namespace offsync::server
