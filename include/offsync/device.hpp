// offsync — one object per device: its store, replica, transport, engine and, when asked for,
// background sync, built from the list of model types it syncs.
//
//     using app_models = offsync::collections<Task, Comment>;
//     offsync::device<app_models> phone(io.get_executor(),
//                                       {.database = "phone.db",
//                                        .server = "http://127.0.0.1:8090",
//                                        .token = "phone-token-0123456789"});
//     phone.put(Task{"t1", "Buy milk"});
//     auto [ec, report] = co_await phone.async_sync(asio::as_tuple(asio::use_awaitable));
//
// The pieces stay reachable (`replica()`, `engine()`, `storage()`, `transport()`) and the
// six-object form (docs/concepts.md) stays for apps that need other stores or transports.
// This header includes the SQLite store and the HTTP transport, never the server.
#pragma once

#include <offsync/background.hpp>
#include <offsync/changes.hpp>
#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/conflict/server_wins.hpp>
#include <offsync/engine.hpp>
#include <offsync/model.hpp>
#include <offsync/query.hpp>
#include <offsync/replica.hpp>
#include <offsync/storage/sqlite.hpp>
#include <offsync/transport/http.hpp>
#include <offsync/transport/http_live.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace offsync {

/// What a device needs to know; everything but `database` and `server` has a default.
struct device_config {
    /// The SQLite file of the device's store, created on first use.
    std::string database;
    /// The server, as `http://host[:port][/base]`; checked at construction.
    std::string server;
    /// A fixed Bearer token. For tokens that expire, set `token_provider` instead.
    std::string token;
    /// Returns the token for the next request (see `http_transport_config::token_provider`);
    /// takes precedence over `token`.
    std::function<std::string(bool refresh)> token_provider;
    /// Timeouts, pipelining, user agent. Its host, port and base path come from `server`.
    http_transport_config transport;
    sqlite_config storage;
    engine_config engine;
};

/// A device that syncs the collections of `Models` (`collections<T...>`) in a SQLite file with
/// an offsync server over HTTP. Each collection syncs with its traits' `conflict_policy`
/// (last-write-wins if it names none), in the order listed.
///
/// The typed members accept only the listed types (a `static_assert` says which is not);
/// they throw `sync_error` like `basic_replica`'s. Edits made through the device start a
/// background round after the debounce, once `start_background` has been called.
///
/// Errors: the constructor throws `sync_error` with `errc::invalid_configuration` for a bad
/// server URL or transport setting, and `sync_error` (or `std::invalid_argument`) for a store
/// that cannot be opened or a bad engine setting.
///
/// Thread safety: as the pieces'; the typed members may be called from any thread, rounds run
/// on the engine's strand. Lifetime: with background sync started, `co_await
/// device.async_stop()` (signature `void()`) before destroying the device, so no round is
/// left running on it; without, let every `async_sync` complete first.
template <class Models>
class device;

template <synced_model... T>
class device<collections<T...>> {
public:
    using models = collections<T...>;
    using storage_type = sqlite_storage;
    using transport_type = http_transport;
    using replica_type = basic_replica<sqlite_storage>;
    using engine_type = basic_sync_engine<sqlite_storage, http_transport>;
    using background_type = background_sync<engine_type>;
    using executor_type = boost::asio::any_io_executor;

    device(executor_type ex, device_config config)
        : ex_(ex), storage_(checked(config).database, config.storage), replica_(storage_),
          transport_(ex, transport_config(config)),
          engine_(ex, replica_, transport_, std::move(config.engine)) {
        engine_.add_collections(models{});
    }

    device(const device&) = delete;
    device& operator=(const device&) = delete;
    ~device() {
        if (live_) live_->stop();
        if (background_) background_->stop();
    }

    executor_type get_executor() const noexcept { return ex_; }
    const std::string& client_id() const noexcept { return engine_.client_id(); }

    // --- Edits and reads, typed. See basic_replica for each.

    template <synced_model M>
    bool put(const M& value) {
        listed<M>();
        const bool changed = replica_.put(value);
        if (changed) edited();
        return changed;
    }
    template <synced_model M>
    bool erase(const key_type_t<M>& key) {
        listed<M>();
        const bool changed = replica_.template erase<M>(key);
        if (changed) edited();
        return changed;
    }
    template <synced_model M>
    std::optional<M> get(const key_type_t<M>& key) {
        listed<M>();
        return replica_.template get<M>(key);
    }
    template <synced_model M>
    std::vector<M> list() {
        listed<M>();
        return replica_.template list<M>();
    }
    template <synced_model M>
    page<M> list(const page_request& request) {
        listed<M>();
        return replica_.template list<M>(request);
    }
    template <synced_model M>
    std::vector<M> find(const query<M>& q) {
        listed<M>();
        return replica_.find(q);
    }
    template <synced_model M>
    page<M> find(const query<M>& q, const page_request& request) {
        listed<M>();
        return replica_.find(q, request);
    }
    template <synced_model M>
    std::vector<M> find(const field_test<M>& test) {
        return find(query<M>(test));
    }
    template <synced_model M>
    page<M> find(const field_test<M>& test, const page_request& request) {
        return find(query<M>(test), request);
    }
    /// Declares an index on a field of `M`, for `find` (sqlite_storage::create_index).
    template <synced_model M, class F>
    void create_index(F M::*member) {
        listed<M>();
        storage_.create_index(member);
    }

    // --- Conflicts and rejections, typed.

    template <synced_model M>
    std::vector<record_conflict<M>> conflicts() {
        listed<M>();
        return replica_.template conflicts<M>();
    }
    template <synced_model M>
    std::vector<rejected_record<M>> rejected() {
        listed<M>();
        return replica_.template rejected<M>();
    }
    template <synced_model M>
    void resolve(const key_type_t<M>& key, resolve_choice choice) {
        listed<M>();
        replica_.template resolve<M>(key, choice);
        edited();
    }
    template <synced_model M>
    void resolve_merged(const M& merged) {
        listed<M>();
        replica_.resolve_merged(merged);
        edited();
    }
    template <synced_model M>
    void drop_rejected(const key_type_t<M>& key) {
        listed<M>();
        replica_.template drop_rejected<M>(key);
    }

    /// What waits to be synced, over every collection.
    pending_counts pending() { return engine_.pending(); }

    /// Partial sync: this device syncs only `part` of `M`'s collection from the next round
    /// on (basic_sync_engine::set_subset; docs/sharing.md "Partial sync"). Set it at every
    /// start. Throws `sync_error` for a subset that does not fit the collection.
    template <synced_model M>
    void set_subset(sync_subset part) {
        listed<M>();
        engine_.template set_subset<M>(std::move(part));
    }

    // --- Change listeners. Callbacks run on the device's executor unless given another.

    template <synced_model M, class Callback>
    [[nodiscard]] subscription subscribe(Callback callback) {
        listed<M>();
        return replica_.template subscribe<M>(ex_, std::move(callback));
    }
    template <synced_model M, class Callback>
    [[nodiscard]] subscription subscribe(query<M> q, Callback callback) {
        listed<M>();
        return replica_.template subscribe<M>(ex_, std::move(q), std::move(callback));
    }
    template <synced_model M>
    [[nodiscard]] change_stream<M> watch(std::optional<query<M>> q = std::nullopt) {
        listed<M>();
        return replica_.template watch<M>(ex_, std::move(q));
    }

    // --- Sync.

    /// Runs a round now: completes with `(error_code, sync_report)`; see basic_sync_engine.
    template <class Token = boost::asio::deferred_t>
    auto async_sync(Token&& token = {}) {
        return engine_.async_sync(std::forward<Token>(token));
    }

    /// Starts background sync (basic_background_sync): periodic rounds, retries with backoff,
    /// a round after edits made through the device. A second call does nothing.
    void start_background(background_config config = {}) {
        if (background_) return;
        background_ = std::make_unique<background_type>(engine_, std::move(config));
        background_->start();
    }
    /// The background scheduler, if started: for `sync_now()`, `state()` and the other triggers.
    background_type* background() noexcept { return background_.get(); }

    /// Opens the server's change stream (docs/live.md), so that another device's change
    /// reaches this one in milliseconds rather than at the next periodic round. Each hint runs
    /// a round through background sync, which this starts with its defaults if it is not
    /// running, and so does each (re)opening of the stream: what changed while it was closed
    /// was announced to nobody. While the stream is lost, periodic rounds carry on. The
    /// device sets `config.client_id`, `on_change` and `on_open`; `on_state` and the backoff
    /// are the app's. A second call does nothing. Throws `sync_error`
    /// (`errc::invalid_configuration`) for a bad backoff.
    void start_live(live_config config = {}) {
        if (live_) return;
        if (!background_) start_background();
        config.client_id = engine_.client_id();
        auto* scheduler = background_.get();
        config.on_change = [scheduler](const change_hint&) { scheduler->remote_change(); };
        config.on_open = [scheduler] { scheduler->remote_change(); };
        live_ = std::make_unique<http_change_stream>(ex_, transport_.config(), std::move(config));
        live_->start();
    }
    /// The change stream's state: `off` until `start_live`.
    live_state live() const { return live_ ? live_->state() : live_state::off; }
    /// The change stream, if started: for `last_error()` and `opened()`.
    http_change_stream* live_stream() noexcept { return live_.get(); }

    /// Stops the change stream and background sync, and completes (signature `void()`) once
    /// no round runs on the device any more; completes at once if background sync was never
    /// started.
    template <class Token = boost::asio::deferred_t>
    auto async_stop(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void()>(
            [this](auto handler) {
                if (live_) live_->stop();
                if (background_) {
                    background_->async_stop(std::move(handler));
                    return;
                }
                auto ex = boost::asio::get_associated_executor(handler, ex_);
                boost::asio::post(ex, std::move(handler));
            },
            token);
    }

    // --- The pieces, for what the facade does not cover.

    replica_type& replica() noexcept { return replica_; }
    engine_type& engine() noexcept { return engine_; }
    storage_type& storage() noexcept { return storage_; }
    transport_type& transport() noexcept { return transport_; }

private:
    template <class M>
    static constexpr void listed() {
        static_assert(is_listed_v<M, models>,
                      "offsync::device: this model type is not in the device's collections<...>");
    }

    /// Refuses a configuration that cannot work before anything is opened: a bad server URL
    /// leaves no database file behind.
    static const device_config& checked(const device_config& c) {
        if (c.database.empty())
            throw sync_error(make_error_code(errc::invalid_configuration),
                             "device: no database file given");
        (void)parse_server_url(c.server);
        return c;
    }

    static http_transport_config transport_config(const device_config& c) {
        auto t = c.transport;
        auto url = parse_server_url(c.server);
        t.host = std::move(url.host);
        t.port = url.port;
        t.base_path = std::move(url.base_path);
        if (c.token_provider) {
            // The change stream calls it from its own strand, beside the transport's: one call
            // at a time, as the provider was written for.
            t.token_provider = [provider = c.token_provider,
                                one_at_a_time = std::make_shared<std::mutex>()](bool refresh) {
                std::lock_guard lock(*one_at_a_time);
                return provider(refresh);
            };
        } else if (!c.token.empty()) {
            t.token_provider = [token = c.token](bool) { return token; };
        }
        return t;
    }

    void edited() {
        if (background_) background_->local_edit();
    }

    executor_type ex_;
    sqlite_storage storage_;
    replica_type replica_;
    http_transport transport_;
    engine_type engine_;
    std::unique_ptr<background_type> background_;
    std::unique_ptr<http_change_stream> live_;
};

} // namespace offsync
