// offsync — change listeners: the app learns which records a commit changed, with their new
// typed values, to update its UI without re-reading everything.
//
// Every commit that changes records (a local edit, an applied pull page, a conflict settled by
// a push's results) is published to the replica's change_hub once it has committed. The
// committing thread copies each record it writes into one arena per commit (no second read,
// nothing at all when nobody listens); each subscription delivers on an executor of the app's
// choosing, off the store's lock (a callback may read and write the store), decoded to the
// model type once for all subscriptions of that type, and coalesced (what piled up while a
// delivery was queued arrives as one, each key once with its latest value).
#pragma once

#include <offsync/error.hpp>
#include <offsync/model.hpp>
#include <offsync/query.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/storage_ptr.hpp>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace offsync {

/// One record as a commit left it, at the JSON level: its key text and its value, or no value
/// when the commit deleted it (or it is a local delete waiting to be pushed).
struct stored_change {
    std::string key;
    std::optional<boost::json::object> value;
};

/// What one commit changed in one collection, in the order it wrote the records.
struct committed_changes {
    std::string collection;
    std::vector<stored_change> records;
    /// Each key appears once (a pull page); else a key may repeat, the last one counting.
    bool distinct_keys = false;
};

/// One record a subscription is told about.
template <synced_model T>
struct record_change {
    key_type_t<T> key{};
    /// The record now. Empty when it was deleted; for a query subscription, also when it no
    /// longer matches the query (it leaves the results); and when it does not decode.
    std::optional<T> value;
    /// Set (`errc::undecodable_record`, naming the collection, the key and the field) when the
    /// stored value does not decode as `T`; the record is left in the store as it is.
    diagnostics error;
};

/// The key value of a key text (`key_of`'s inverse); throws `sync_error` (`invalid_id`) for a
/// text that is not a key of `T`.
template <synced_model T>
key_type_t<T> key_from_text(std::string_view text) {
    using K = key_type_t<T>;
    if constexpr (std::is_integral_v<K>) {
        K value{};
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc{} || end != text.data() + text.size())
            throw sync_error(make_error_code(errc::invalid_id),
                             std::string(model_traits<T>::collection) + ": '" +
                                 std::string(text) + "' is not an integer key");
        return value;
    } else {
        return K(text);
    }
}

/// Decodes a stored value of `T`. The error (`errc::undecodable_record`) names the collection,
/// the key and the field; the store is not touched.
template <synced_model T>
diagnostics decode_fresh_record(std::string_view key, const boost::json::object& value, T& out);

template <synced_model T>
diagnostics decode_record(std::string_view key, const boost::json::object& value, T& out) {
    out = T{};
    return decode_fresh_record(key, value, out);
}

/// `decode_record` into a `T` that is default-constructed already.
template <synced_model T>
diagnostics decode_fresh_record(std::string_view key, const boost::json::object& value, T& out) {
    if (auto d = from_json_object(value, out))
        return {make_error_code(errc::undecodable_record),
                std::string(model_traits<T>::collection) + "/" + std::string(key) + ": " +
                    d.message};
    return {};
}

namespace detail {
/// A commit's changes as the hub hands them out, with their decoding to each model type that
/// subscriptions watch them as: done once, by the first subscription of the type to deliver
/// them, on its executor, and shared by the others.
class published_changes {
public:
    explicit published_changes(committed_changes c) : changes_(std::move(c)) {}
    const committed_changes& changes() const noexcept { return changes_; }

    /// The changes decoded by `decode` for model `model`, decoded now if no one has yet.
    template <class Decode>
    std::shared_ptr<const void> decoded(const void* model, Decode&& decode) {
        std::lock_guard lock(mutex_);
        for (const auto& [m, d] : decoded_)
            if (m == model) return d;
        auto d = decode(changes_);
        decoded_.emplace_back(model, d);
        return d;
    }

private:
    committed_changes changes_;
    std::mutex mutex_;
    std::vector<std::pair<const void*, std::shared_ptr<const void>>> decoded_;
};

/// What the hub holds of a subscription: where its changes go.
class change_subscriber {
public:
    explicit change_subscriber(std::string collection) : collection_(std::move(collection)) {}
    virtual ~change_subscriber() = default;
    const std::string& collection() const noexcept { return collection_; }
    /// Takes a commit's changes; called on the committing thread, after the commit.
    virtual void offer(const std::shared_ptr<published_changes>& changes) = 0;
    /// Delivers nothing more; waits for a delivery running on another thread to end.
    virtual void cancel() = 0;

private:
    std::string collection_;
};

/// The records one commit writes in one collection, noted as it writes them when somebody
/// watches the collection (else noting does nothing). The values are copied into one arena
/// per commit: no allocation per node, and they go together once delivered. Decoding waits for
/// the subscriptions' executors, off the committing thread and the store's lock.
class commit_notes {
public:
    commit_notes() = default;
    explicit commit_notes(std::string collection) : recording_(true) {
        changes_.collection = std::move(collection);
    }

    bool recording() const noexcept { return recording_; }
    void note(std::string_view key, const boost::json::object* value) {
        if (!recording_) return;
        if (!value) {
            changes_.records.push_back({std::string(key), std::nullopt});
            return;
        }
        if (!arena_)
            arena_ = boost::json::make_shared_resource<boost::json::monotonic_resource>();
        changes_.records.push_back({std::string(key), boost::json::object(*value, *arena_)});
    }
    /// About `n` records will come (a pull page's size).
    void reserve(std::size_t n) {
        if (recording_) changes_.records.reserve(n);
    }
    committed_changes take() && { return std::move(changes_); }

private:
    bool recording_ = false;
    committed_changes changes_;
    std::optional<boost::json::storage_ptr> arena_;
};
} // namespace detail

/// Where a replica publishes its commits' changes. Thread-safe. Publishing costs nothing for
/// a collection nobody watches: the committer asks `watching` first and records nothing.
class change_hub {
public:
    /// Whether any subscription watches `collection`.
    bool watching(std::string_view collection) const {
        if (watched_.load(std::memory_order_acquire) == 0) return false;
        std::lock_guard lock(mutex_);
        for (const auto& s : subscribers_)
            if (s->collection() == collection) return true;
        return false;
    }

    /// Starts noting one commit's changes of `collection` (nothing if nobody watches it).
    detail::commit_notes begin(std::string_view collection) const {
        if (!watching(collection)) return {};
        return detail::commit_notes(std::string(collection));
    }

    /// Hands a committed commit's changes to every subscription of its collection.
    /// `distinct_keys`: no key was noted twice (a pull page), so deliveries need not merge.
    void publish(detail::commit_notes notes, bool distinct_keys = false) {
        if (!notes.recording()) return;
        auto changes = std::move(notes).take();
        changes.distinct_keys = distinct_keys;
        publish(std::move(changes));
    }

    /// Hands changes given at the JSON level to every subscription of their collection: what
    /// `publish(commit_notes)` does, and a way to announce writes made behind the replica's
    /// back (or a test's).
    void publish(committed_changes changes) {
        if (changes.records.empty() || watched_.load(std::memory_order_acquire) == 0) return;
        auto shared = std::make_shared<detail::published_changes>(std::move(changes));
        std::vector<std::shared_ptr<detail::change_subscriber>> targets;
        {
            std::lock_guard lock(mutex_);
            for (const auto& s : subscribers_)
                if (s->collection() == shared->changes().collection) targets.push_back(s);
        }
        for (const auto& t : targets) t->offer(shared);
    }

    void add(std::shared_ptr<detail::change_subscriber> s) {
        std::lock_guard lock(mutex_);
        subscribers_.push_back(std::move(s));
        watched_.store(subscribers_.size(), std::memory_order_release);
    }

    /// Removes `s`; false if it was not there (removed already).
    bool remove(const detail::change_subscriber* s) {
        std::lock_guard lock(mutex_);
        const auto n = std::erase_if(subscribers_, [&](const auto& p) { return p.get() == s; });
        watched_.store(subscribers_.size(), std::memory_order_release);
        return n > 0;
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<detail::change_subscriber>> subscribers_;
    std::atomic<std::size_t> watched_{0};
};

/// A subscription's handle: changes are delivered while it lives. Destroying it or calling
/// `unsubscribe()` ends the subscription; from another thread than a running delivery's, it
/// waits for that delivery to end, so once it returns the callback runs no more and may go.
/// From inside the callback it returns at once (the current delivery finishes, no other
/// starts). Movable, not copyable.
class subscription {
public:
    subscription() = default;
    subscription(std::weak_ptr<change_hub> hub, std::shared_ptr<detail::change_subscriber> s)
        : hub_(std::move(hub)), subscriber_(std::move(s)) {}
    subscription(subscription&& other) noexcept = default;
    subscription& operator=(subscription&& other) noexcept {
        if (this != &other) {
            unsubscribe();
            hub_ = std::move(other.hub_);
            subscriber_ = std::move(other.subscriber_);
        }
        return *this;
    }
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { unsubscribe(); }

    /// Ends the subscription. Safe to call twice, from any thread, and from the callback.
    void unsubscribe() {
        if (!subscriber_) return;
        if (auto hub = hub_.lock()) hub->remove(subscriber_.get());
        subscriber_->cancel();
        subscriber_.reset();
    }
    bool active() const noexcept { return subscriber_ != nullptr; }

private:
    std::weak_ptr<change_hub> hub_;
    std::shared_ptr<detail::change_subscriber> subscriber_;
};

namespace detail {

/// Collects what was offered and delivers it on an executor, coalesced and decoded to `T`.
/// `deliver` gets the changes of one delivery; for a query, only keys that match now or that
/// it reported as matching before (and that now leave the results).
template <synced_model T>
class typed_subscriber final : public change_subscriber,
                               public std::enable_shared_from_this<typed_subscriber<T>> {
public:
    using deliver_fn = std::function<void(const std::vector<record_change<T>>&)>;

    typed_subscriber(boost::asio::any_io_executor ex, std::optional<query<T>> filter,
                     deliver_fn deliver)
        : change_subscriber(std::string(model_traits<T>::collection)), ex_(std::move(ex)),
          filter_(std::move(filter)), deliver_(std::move(deliver)) {}

    void offer(const std::shared_ptr<published_changes>& changes) override {
        std::lock_guard lock(mutex_);
        if (!active_) return;
        pending_.push_back(changes);
        if (scheduled_) return;
        scheduled_ = true;
        boost::asio::post(ex_, [self = this->shared_from_this()] { self->run(); });
    }

    void cancel() override {
        std::unique_lock lock(mutex_);
        active_ = false;
        pending_.clear();
        if (delivering_ != std::thread::id{} && delivering_ != std::this_thread::get_id())
            idle_.wait(lock, [&] { return delivering_ == std::thread::id{}; });
    }

private:
    /// One delivery. `scheduled_` stays set until it ends, so that one subscription's
    /// deliveries never overlap, even on an executor of several threads: what is offered
    /// meanwhile waits, and the delivery posts the next one when it ends.
    void run() {
        std::vector<std::shared_ptr<published_changes>> batches;
        {
            std::lock_guard lock(mutex_);
            if (!active_) {
                scheduled_ = false;
                return;
            }
            batches.swap(pending_);
            delivering_ = std::this_thread::get_id();
        }
        struct end_delivery {
            typed_subscriber* self;
            ~end_delivery() {
                {
                    std::lock_guard lock(self->mutex_);
                    self->delivering_ = std::thread::id{};
                    if (self->active_ && !self->pending_.empty())
                        boost::asio::post(self->ex_,
                                          [s = self->shared_from_this()] { s->run(); });
                    else
                        self->scheduled_ = false;
                }
                self->idle_.notify_all();
            }
        } guard{this};
        const auto latest = coalesce(batches);
        // The common case, one page heard by a subscription without a query: the decoded
        // batch itself, shared with the other subscriptions, not a copy.
        if (!filter_ && latest.batches.size() == 1 && latest.latest.size() == latest.batches[0]->size()) {
            if (!latest.batches[0]->empty()) deliver_(*latest.batches[0]);
            return;
        }
        const auto changes = filter(latest);
        if (!changes.empty()) deliver_(changes);
    }

    using decoded_batch = std::vector<record_change<T>>;
    /// `batch` decoded to `T`, once for every subscription of `T`.
    static std::shared_ptr<const decoded_batch> decoded(published_changes& batch) {
        return std::static_pointer_cast<const decoded_batch>(
            batch.decoded(&schema_of<T>(), [](const committed_changes& changes) {
                auto out = std::make_shared<decoded_batch>();
                out->reserve(changes.records.size());
                for (const auto& r : changes.records) {
                    record_change<T> c;
                    try {
                        c.key = key_from_text<T>(r.key);
                    } catch (const sync_error&) {
                        continue; // not a key of T: the store holds something T never wrote
                    }
                    if (r.value) {
                        c.error = decode_fresh_record<T>(r.key, *r.value, c.value.emplace());
                        if (c.error) c.value.reset();
                    }
                    out->push_back(std::move(c));
                }
                return std::shared_ptr<const void>(std::move(out));
            }));
    }

    /// The latest change of each key, in the order keys first changed; `latest` points into
    /// `batches`, which it keeps alive.
    struct coalesced {
        std::vector<std::shared_ptr<const decoded_batch>> batches;
        std::vector<const record_change<T>*> latest;
    };

    static coalesced coalesce(const std::vector<std::shared_ptr<published_changes>>& batches) {
        coalesced out;
        std::size_t total = 0;
        for (const auto& b : batches) {
            out.batches.push_back(decoded(*b));
            total += out.batches.back()->size();
        }
        out.latest.reserve(total);
        if (batches.size() == 1 && batches.front()->changes().distinct_keys) {
            for (const auto& c : *out.batches.front()) out.latest.push_back(&c);
            return out;
        }
        // Keyed by the commits' own key texts (alive in `batches` meanwhile): no allocation
        // per key. A batch some of whose keys were not keys of T has no such alignment.
        std::unordered_map<std::string_view, std::size_t> at;
        at.reserve(total);
        std::deque<std::string> texts; // the keys of unaligned batches (a deque: they stay put)
        for (std::size_t b = 0; b < batches.size(); ++b) {
            const auto& records = batches[b]->changes().records;
            const auto& decoded_records = *out.batches[b];
            const bool aligned = records.size() == decoded_records.size();
            for (std::size_t i = 0; i < decoded_records.size(); ++i) {
                const auto& c = decoded_records[i];
                std::string_view key;
                if (aligned) key = records[i].key;
                else key = texts.emplace_back(key_text(c.key));
                auto [it, fresh] = at.try_emplace(key, out.latest.size());
                if (fresh) out.latest.push_back(&c);
                else out.latest[it->second] = &c;
            }
        }
        return out;
    }

    /// The changes this subscription reports, as values of its own. For a query, only keys
    /// that match now or that it reported as matching before (and that now leave the results).
    std::vector<record_change<T>> filter(const coalesced& changes) {
        std::vector<record_change<T>> out;
        out.reserve(changes.latest.size());
        for (const auto* r : changes.latest) {
            if (!filter_) {
                out.push_back(*r);
                continue;
            }
            const bool matches = r->value && filter_->matches(*r->value);
            auto text = key_text(r->key);
            if (matches) {
                in_results_.insert(std::move(text));
                out.push_back(*r);
            } else if (r->error || in_results_.erase(text) > 0) {
                // Not matching now: news only if it was in the results before (or unreadable).
                record_change<T> c{r->key, std::nullopt, r->error};
                out.push_back(std::move(c));
            }
        }
        return out;
    }

    boost::asio::any_io_executor ex_;
    std::optional<query<T>> filter_;
    deliver_fn deliver_;
    std::mutex mutex_;
    std::condition_variable idle_;
    std::vector<std::shared_ptr<published_changes>> pending_;
    bool scheduled_ = false;
    bool active_ = true;
    std::thread::id delivering_;
    /// Keys a query subscription has reported as matching (touched by deliveries only, which
    /// never overlap: see run()).
    std::unordered_set<std::string> in_results_;
};

} // namespace detail

/// Changes of one collection (or of one query's results) to wait for, Asio style:
/// `co_await stream.async_wait(use_awaitable)` completes with `(error_code,
/// std::vector<record_change<T>>)` once there are some. What arrives between two waits is kept
/// and coalesced (each key once, at its latest value), so a slow reader loses no key.
///
/// One wait at a time: a second while one is pending completes at once with
/// `boost::asio::error::in_progress`. A wait completes with `operation_aborted` when it is
/// cancelled (terminal, partial or total cancellation through its handler's slot), or when the
/// stream has been closed. Completions run on the handler's associated executor, else the
/// stream's. Thread safety: every member may be called from any thread.
template <synced_model T>
class change_stream {
public:
    using executor_type = boost::asio::any_io_executor;
    using completion_signature = void(error_code, std::vector<record_change<T>>);

    change_stream() = default;
    /// Subscribes to `hub`'s changes of `T`'s collection (of `filter`'s results, if given).
    /// `basic_replica::watch` is the usual way to make one.
    change_stream(const std::shared_ptr<change_hub>& hub, executor_type ex,
                  std::optional<query<T>> filter = {})
        : state_(std::make_shared<state>(ex)) {
        auto subscriber = std::make_shared<detail::typed_subscriber<T>>(
            std::move(ex), std::move(filter),
            [weak = std::weak_ptr<state>(state_)](const std::vector<record_change<T>>& changes) {
                if (auto s = weak.lock()) s->feed(changes);
            });
        hub->add(subscriber);
        subscription_ = subscription(hub, std::move(subscriber));
    }
    change_stream(change_stream&&) noexcept = default;
    change_stream& operator=(change_stream&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
            subscription_ = std::move(other.subscription_);
        }
        return *this;
    }
    change_stream(const change_stream&) = delete;
    change_stream& operator=(const change_stream&) = delete;
    /// Closes the stream (a pending wait completes with `operation_aborted`).
    ~change_stream() { close(); }

    template <class Token = boost::asio::deferred_t>
    auto async_wait(Token&& token = {}) {
        return boost::asio::async_initiate<Token, completion_signature>(
            [s = state_](auto raw) {
                // The handler's own executor, with work tracked while it waits; it never runs
                // inside the delivering thread's call stack.
                boost::asio::any_io_executor work = boost::asio::prefer(
                    boost::asio::get_associated_executor(raw, s ? s->ex : executor_type{}),
                    boost::asio::execution::outstanding_work.tracked);
                pending_wait w{handler(std::move(raw)), std::move(work), {}};
                if (!s) {
                    complete(std::move(w), boost::asio::error::operation_aborted, {});
                    return;
                }
                s->wait(std::move(w), s);
            },
            token);
    }

    /// Ends the stream: a pending wait completes with `operation_aborted`; nothing more comes.
    void close() {
        subscription_.unsubscribe();
        if (state_) state_->close();
    }
    bool is_open() const noexcept { return subscription_.active(); }
    executor_type get_executor() const { return state_ ? state_->ex : executor_type{}; }

private:
    using handler = boost::asio::any_completion_handler<completion_signature>;

    struct pending_wait {
        handler h;
        boost::asio::any_io_executor work;
        boost::asio::cancellation_slot slot;
    };

    static void complete(pending_wait w, error_code ec, std::vector<record_change<T>> changes) {
        if (w.slot.is_connected()) w.slot.clear();
        auto ex = w.work;
        boost::asio::post(ex, [h = std::move(w.h), work = std::move(w.work), ec,
                               c = std::move(changes)]() mutable { std::move(h)(ec, std::move(c)); });
    }

    struct state {
        explicit state(executor_type e) : ex(std::move(e)) {}
        executor_type ex;
        std::mutex mutex;
        std::vector<record_change<T>> ready;
        std::unordered_map<std::string, std::size_t> ready_at; // key text -> index in ready
        std::optional<pending_wait> waiter;
        std::uint64_t wait_id = 0;
        bool closed = false;

        void wait(pending_wait w, const std::shared_ptr<state>& self) {
            std::unique_lock lock(mutex);
            if (waiter) {
                lock.unlock();
                complete(std::move(w), boost::asio::error::in_progress, {});
                return;
            }
            if (closed || !ready.empty()) {
                auto changes = take();
                const bool was_closed = closed && changes.empty();
                lock.unlock();
                complete(std::move(w),
                         was_closed ? error_code(boost::asio::error::operation_aborted)
                                    : error_code{},
                         std::move(changes));
                return;
            }
            const auto id = ++wait_id;
            // The erased handler forwards the caller's slot to one of its own: listen on that.
            w.slot = boost::asio::get_associated_cancellation_slot(w.h);
            if (w.slot.is_connected())
                w.slot.assign([weak = std::weak_ptr<state>(self), id](boost::asio::cancellation_type t) {
                    if (t == boost::asio::cancellation_type::none) return;
                    if (auto s = weak.lock()) s->abort(id);
                });
            waiter.emplace(std::move(w));
        }

        void abort(std::uint64_t id) {
            std::unique_lock lock(mutex);
            if (!waiter || wait_id != id) return;
            auto w = std::move(*waiter);
            waiter.reset();
            lock.unlock();
            complete(std::move(w), boost::asio::error::operation_aborted, {});
        }

        void feed(const std::vector<record_change<T>>& changes) {
            std::unique_lock lock(mutex);
            if (closed) return;
            for (const auto& c : changes) {
                auto [it, fresh] = ready_at.try_emplace(key_text(c.key), ready.size());
                if (fresh) ready.push_back(c);
                else ready[it->second] = c;
            }
            if (!waiter || ready.empty()) return;
            auto w = std::move(*waiter);
            waiter.reset();
            auto out = take();
            lock.unlock();
            complete(std::move(w), {}, std::move(out));
        }

        void close() {
            std::unique_lock lock(mutex);
            closed = true;
            ready.clear();
            ready_at.clear();
            if (!waiter) return;
            auto w = std::move(*waiter);
            waiter.reset();
            lock.unlock();
            complete(std::move(w), boost::asio::error::operation_aborted, {});
        }

        std::vector<record_change<T>> take() {
            ready_at.clear();
            return std::exchange(ready, {});
        }
    };

    std::shared_ptr<state> state_;
    subscription subscription_;
};

} // namespace offsync
