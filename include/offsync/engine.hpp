// offsync — the sync engine: push-then-pull rounds on an Asio executor.
#pragma once

#include <offsync/concepts.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/detail/pull_fsm.hpp>
#include <offsync/detail/push_fsm.hpp>
#include <offsync/detail/recording_transaction.hpp>
#include <offsync/detail/replica_logic.hpp>
#include <offsync/detail/subset_state.hpp>
#include <offsync/replica.hpp>
#include <offsync/report.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace offsync {

/// Tuning and hooks of a sync engine.
struct engine_config {
    /// Mutations per push request. Each request costs a server transaction and a disk sync at
    /// both ends, so fewer, larger ones push faster (docs/benchmarks.md). The reference
    /// server takes up to 1,000 (`service_config::max_mutations_per_push`); a server that
    /// answers `batch_too_large` makes the engine halve its batches until they fit.
    std::size_t push_batch_size = 1000;
    /// Changes per pull page (a server sends at most 5,000). Larger pages cost the server
    /// more CPU and memory without pulling faster (docs/benchmarks.md).
    std::uint32_t pull_page_size = 1000;
    /// The first batch of each push pass and the first page of each pull are this large (or
    /// the sizes above, if smaller), and each next one twice as large as the one before, up to
    /// those sizes: a round with a few hundred changes still overlaps client and server work,
    /// and a long one soon sends full requests.
    std::size_t first_push_batch_size = 250;
    std::uint32_t first_pull_page_size = 500;
    /// Push passes per collection and round. A pass after the first re-pushes records a
    /// conflict policy rebased (a last-write-wins local win); the bound stops two clients that
    /// keep overwriting each other from holding a round forever.
    int max_push_passes = 3;
    /// Push requests sent and not yet answered, at most: with 2, the server finds the next
    /// batch waiting when it has answered one, instead of waiting for the client to read the
    /// answer and send again (docs/benchmarks.md). Taken up to the transport's
    /// `max_requests_in_flight()` (`pipelining_transport`); a transport without it is sent one
    /// request at a time. A failed request ends the round after the ones behind it have
    /// finished; their records stay dirty and are pushed again, with the same mutation ids.
    /// So the server must remember that many pushes plus one for retries: more than 2 needs a
    /// server whose `idempotency_window` covers them (the reference server's default, 20,000
    /// results, covers 19 pushes of 1,000).
    std::size_t max_push_requests_in_flight = 2;
    /// The longest a round may run; zero for no limit. Past it, the round stops at its next
    /// step, as a cancelled one does (after the requests in flight have finished, keeping
    /// what it had applied), and reports `boost::asio::error::timed_out` (`retry_later`).
    /// Each request is bounded by the transport's own timeouts; this bounds their number, so
    /// that a server answering page after page of nothing cannot hold a device for ever. The
    /// default leaves a first sync of millions of records room on a slow network.
    std::chrono::milliseconds round_timeout = std::chrono::minutes{10};
    /// Progress events, called on the engine's strand. Must not block.
    std::function<void(const sync_event&)> on_event;
};

/// Syncs one replica with one server: a round pushes every collection's dirty records in
/// batches, settles conflicts with each collection's policy, then pulls every collection's
/// change feed page by page. Each batch result and each page (with its cursor) is applied in
/// one store transaction.
///
/// Single flight: a request while a round runs waits for one more round after it; any number
/// of such requests share that one round.
///
/// Cancellation: `async_sync` supports terminal cancellation through its handler's associated
/// cancellation slot. Cancelling a request that waits for the next round removes it; cancelling
/// the running round stops it at its next step (every request sharing it completes with
/// `boost::asio::error::operation_aborted`). What was acknowledged stays acknowledged, nothing is half
/// applied, and the next round continues where this one stopped.
///
/// Thread safety: `async_sync` may be called from any thread; the round runs on the engine's
/// strand. Lifetime: the engine, its replica and its transport must outlive every operation.
template <storage_policy Storage, transport_policy Transport>
class basic_sync_engine {
public:
    using executor_type = boost::asio::strand<boost::asio::any_io_executor>;
    using completion_signature = void(error_code, sync_report);

    basic_sync_engine(boost::asio::any_io_executor ex, basic_replica<Storage>& replica,
                      Transport& transport, engine_config config = {})
        : strand_(boost::asio::make_strand(std::move(ex))), replica_(replica), transport_(transport),
          config_(std::move(config)) {
        if (config_.push_batch_size == 0 || config_.pull_page_size == 0)
            throw std::invalid_argument("offsync: batch and page sizes must be positive");
        if (config_.max_push_requests_in_flight == 0)
            throw std::invalid_argument("offsync: max_push_requests_in_flight must be positive");
        if (config_.round_timeout < std::chrono::milliseconds::zero())
            throw std::invalid_argument("offsync: round_timeout must not be negative");
        auto txn = replica_.storage().begin();
        client_id_ = txn.client_id();
    }

    basic_sync_engine(const basic_sync_engine&) = delete;
    basic_sync_engine& operator=(const basic_sync_engine&) = delete;

    executor_type get_executor() const noexcept { return strand_; }
    const std::string& client_id() const noexcept { return client_id_; }

    /// Syncs `T`'s collection with the policy its traits name (last-write-wins if none).
    template <synced_model T>
    void add_collection() {
        if constexpr (requires { typename model_traits<T>::conflict_policy; })
            add_collection(schema_of<T>(), typename model_traits<T>::conflict_policy{});
        else
            add_collection(schema_of<T>(), last_write_wins{});
    }

    /// Syncs every collection of a model list (the list the server serves), each with its
    /// traits' policy, in the list's order.
    template <synced_model... T>
    void add_collections(collections<T...>) {
        (add_collection<T>(), ...);
    }

    /// Syncs `T`'s collection with `policy`.
    template <synced_model T, conflict_policy Policy>
    void add_collection(Policy policy) {
        add_collection(schema_of<T>(), std::move(policy));
    }

    /// Syncs a collection described at run time. Collections sync in the order added.
    /// Call before the first round.
    template <conflict_policy Policy>
    void add_collection(collection_schema schema, Policy policy) {
        for (const auto& c : collections_)
            if (c.schema.name == schema.name)
                throw std::invalid_argument("offsync: collection added twice: " + schema.name);
        collections_.push_back(
            {std::move(schema), [p = std::move(policy)](const conflict& c) -> resolution {
                 return p(c);
             }});
    }

    /// Partial sync: this device syncs only `part` of `T`'s collection (docs/sharing.md
    /// "Partial sync"). It takes effect at the next round's pull: the records the new subset
    /// drops leave the device (one with unpushed edits stays until they are pushed), and the
    /// records it adds arrive as a backfill, without pulling again what the device holds. The
    /// subset is kept in the store with the cursor; set it at every start, after adding the
    /// collections (a device that stops setting one syncs the whole collection again).
    ///
    /// Throws `sync_error` (`unknown_field`, `invalid_field`) for a subset that does not fit
    /// the collection, and `std::invalid_argument` for a collection not added; either way
    /// nothing changes. May be called from any thread.
    template <synced_model T>
    void set_subset(sync_subset part)
        requires subset_keeping_transaction<typename Storage::transaction>
    {
        set_subset(model_traits<T>::collection, std::move(part));
    }
    void set_subset(std::string_view collection, sync_subset part)
        requires subset_keeping_transaction<typename Storage::transaction>
    {
        const auto* entry = find_collection(collection);
        if (!entry)
            throw std::invalid_argument("offsync: set_subset of a collection not added: " +
                                        std::string(collection));
        if (auto d = check_subset(entry->schema, part))
            throw sync_error(d.code, std::move(d.message));
        std::lock_guard lock(subsets_mutex_);
        wanted_subsets_[std::string(collection)] = std::move(part);
    }

    /// The subset this device asks for of `collection` (the whole collection unless
    /// `set_subset` said otherwise).
    sync_subset subset(std::string_view collection) const {
        std::lock_guard lock(subsets_mutex_);
        const auto it = wanted_subsets_.find(collection);
        return it == wanted_subsets_.end() ? sync_subset{} : it->second;
    }

    /// Runs a sync round (or joins the one that will start after the running one).
    /// Completes with `(error_code, sync_report)`: the code is the round's error (a transport
    /// failure, a store failure, `operation_aborted`), the report what got done either way.
    template <class Token = boost::asio::deferred_t>
    auto async_sync(Token&& token = {}) {
        return boost::asio::async_initiate<Token, completion_signature>(
            [this](auto raw_handler) {
                boost::asio::any_io_executor work = boost::asio::prefer(
                    boost::asio::get_associated_executor(raw_handler, strand_),
                    boost::asio::execution::outstanding_work.tracked);
                // Type-erase first: the erased handler forwards the caller's slot to a slot of
                // its own, and that inner slot is the one to listen on.
                handler_type handler(std::move(raw_handler));
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                const auto id = ++last_waiter_id_;
                // Installed before anything is queued, so a cancellation emitted right after
                // this call is not lost; it reaches the strand after the request itself.
                if (slot.is_connected())
                    slot.assign([this, id](boost::asio::cancellation_type type) {
                        if (type != boost::asio::cancellation_type::none)
                            boost::asio::dispatch(strand_, [this, id] { cancel_waiter(id); });
                    });
                boost::asio::dispatch(strand_, [this, slot, id, work = std::move(work),
                                         h = std::move(handler)]() mutable {
                    enqueue(waiter{std::move(h), slot, std::move(work), id});
                });
            },
            token);
    }

    /// Pending counts of one collection (dirty, parked conflicts, rejections).
    pending_counts pending(std::string_view collection) {
        return replica_.storage().pending(collection);
    }

    /// Pending counts summed over every collection added: what a status line shows as
    /// "changes waiting". Call it after the collections are added.
    pending_counts pending() {
        pending_counts total;
        for (const auto& c : collections_) {
            const auto counts = replica_.storage().pending(c.schema.name);
            total.dirty += counts.dirty;
            total.conflicts += counts.conflicts;
            total.rejected += counts.rejected;
        }
        return total;
    }

    /// The transport rounds use, for what it knows beyond a round's result (an HTTP
    /// transport's `retry_after()`, which background sync honours).
    Transport& transport() noexcept { return transport_; }

private:
    using handler_type = boost::asio::any_completion_handler<completion_signature>;
    struct waiter {
        handler_type handler;
        boost::asio::cancellation_slot slot;
        boost::asio::any_io_executor work;
        std::uint64_t id;
    };
    struct collection_entry {
        collection_schema schema;
        std::function<resolution(const conflict&)> policy;
    };

    const collection_entry* find_collection(std::string_view name) const {
        for (const auto& c : collections_)
            if (c.schema.name == name) return &c;
        return nullptr;
    }

    void enqueue(waiter w) {
        (running_ ? next_ : current_).push_back(std::move(w));
        if (!running_) start_round();
    }

    void cancel_waiter(std::uint64_t id) {
        for (auto it = next_.begin(); it != next_.end(); ++it) {
            if (it->id != id) continue;
            sync_report aborted;
            aborted.error = boost::asio::error::operation_aborted;
            aborted.error_message = "cancelled before its round began";
            complete(std::move(*it), std::move(aborted));
            next_.erase(it);
            return;
        }
        for (const auto& w : current_)
            if (w.id == id) cancel_round();
    }

    /// Stops the running round at its next step; a request it waits for is cancelled too (it
    /// then finishes with `operation_aborted`, or with its answer if the server had already
    /// given it: an answer worth applying).
    void cancel_round() {
        round_cancelled_ = true;
        if (landing_) landing_->emit(boost::asio::cancellation_type::terminal);
        landing_ = nullptr;
    }

    void complete(waiter w, sync_report report) {
        if (w.slot.is_connected()) w.slot.clear();
        // `work` is the handler's own executor (with outstanding work tracked while it waits):
        // the handler never runs inside this strand's call stack.
        auto ex = w.work;
        boost::asio::post(ex, [h = std::move(w.handler), work = std::move(w.work),
                        r = std::move(report)]() mutable {
            auto ec = r.error;
            std::move(h)(ec, std::move(r));
        });
    }

    void start_round() {
        running_ = true;
        round_cancelled_ = false;
        round_timed_out_ = false;
        landing_ = nullptr;
        // A century is no limit either (and would overflow the clock's nanoseconds).
        const bool unbounded = config_.round_timeout == std::chrono::milliseconds::zero() ||
                               config_.round_timeout > std::chrono::hours(24 * 365 * 100);
        round_deadline_ = unbounded ? std::chrono::steady_clock::time_point::max()
                                    : std::chrono::steady_clock::now() + config_.round_timeout;
        boost::asio::co_spawn(strand_, run_round(), [this](std::exception_ptr ep, sync_report r) {
            if (ep && !r.error) {
                r.error = make_error_code(errc::storage_failure);
                r.error_message = "unexpected exception in a sync round";
            }
            finish_round(std::move(r));
        });
    }

    void finish_round(sync_report report) {
        auto done = std::move(current_);
        current_.clear();
        for (auto& w : done) complete(std::move(w), report);
        if (next_.empty()) {
            running_ = false;
            return;
        }
        current_ = std::move(next_);
        next_.clear();
        start_round();
    }

    void emit(sync_event::kind what, const std::string& collection, std::size_t count = 0,
              std::string message = {}, std::string key = {}) {
        if (config_.on_event)
            config_.on_event(sync_event{what, collection, std::move(key), count, std::move(message)});
    }

    boost::asio::awaitable<sync_report> run_round() {
        // The round is cancelled through round_cancelled_ alone, which the state machines
        // check at each step: Asio's automatic throw at a co_await could leave a request
        // behind.
        const auto started = std::chrono::steady_clock::now();
        sync_report report;
        emit(sync_event::kind::round_started, {});
        try {
            for (auto& c : collections_) co_await push_collection(c, report);
            for (auto& c : collections_) co_await pull_collection(c, report);
        } catch (const boost::system::system_error& e) {
            report.error = e.code();
            report.error_message = without_code_suffix(e);
        } catch (const std::exception& e) {
            report.error = make_error_code(errc::storage_failure);
            report.error_message = e.what();
        }
        if (round_timed_out_ && report.error == boost::asio::error::operation_aborted) {
            report.error = boost::asio::error::timed_out;
            report.error_message = "the round ran longer than round_timeout (" +
                                   std::to_string(config_.round_timeout.count()) +
                                   " ms); what it had applied is kept";
        }
        report.duration = std::chrono::steady_clock::now() - started;
        if (report.error) emit(sync_event::kind::error, {}, 0, report.error_message);
        emit(sync_event::kind::round_finished, {}, report.pushed + report.pulled);
        co_return report;
    }

    /// A push batch built from the store (its mutation ids persisted) and not yet answered.
    struct prepared_push {
        push_request request;
        std::vector<detail::sent_mutation> sent;
    };

    /// Builds the next batch of `c` after key `after` (moved past it), of at most `size`
    /// mutations; nullopt when none is left.
    std::optional<prepared_push> prepare_push(collection_entry& c, std::string& after,
                                              std::size_t size) {
        for (;;) {
            prepared_push batch;
            batch.request.client_id = client_id_;
            auto txn = replica_.storage().begin();
            auto records = detail::pushable_batch(txn, c.schema.name, after, size);
            if (records.empty()) return std::nullopt;
            after = records.back().first;
            detail::build_push(txn, c.schema, records, batch.request, batch.sent);
            txn.commit();
            if (!batch.request.mutations.empty()) return batch;
        }
    }

    /// One transport request in flight. The engine sends the next request before it applies
    /// the answer to the last one, so the server works on one while the client writes its
    /// store for the other (pushes may have up to push_depth() in flight, pulls one). A round
    /// never leaves a request behind: whatever ends it (a cancellation, a store failure), it
    /// first waits for every request in flight to finish, so nothing outlives the round.
    template <class Request, class Response>
    struct flight {
        flight(const executor_type& ex, Request r)
            : request(std::move(r)), wake(ex, boost::asio::steady_timer::time_point::max()) {}
        flight(const flight&) = delete;
        flight& operator=(const flight&) = delete;

        Request request; ///< owned here: the transport may read it until it completes
        error_code ec;
        Response response;
        bool done = false;
        boost::asio::steady_timer wake; ///< never expires; cancelled when the answer arrives
        boost::asio::cancellation_signal cancel;
    };
    using push_flight = flight<push_request, push_response>;
    using pull_flight = flight<pull_request, pull_response>;

    /// The completion handler of a flight's request: runs on the strand, stores the answer and
    /// wakes the round. It shares the flight, which the round awaits anyway: even a round
    /// ended by a bug could not leave the request writing into freed memory.
    template <class Request, class Response>
    auto answer_to(const std::shared_ptr<flight<Request, Response>>& f) {
        return boost::asio::bind_cancellation_slot(
            f->cancel.slot(),
            boost::asio::bind_executor(strand_, [this, f](error_code ec, Response r) {
                f->ec = ec;
                f->response = std::move(r);
                f->done = true;
                // A finished request is not cancelled any more, even before the round resumes.
                if (landing_ == &f->cancel) landing_ = nullptr;
                f->wake.cancel();
            }));
    }

    std::shared_ptr<push_flight> launch(push_request request) {
        auto f = std::make_shared<push_flight>(strand_, std::move(request));
        transport_.async_push(f->request, answer_to(f));
        return f;
    }
    std::shared_ptr<pull_flight> launch(pull_request request) {
        auto f = std::make_shared<pull_flight>(strand_, std::move(request));
        transport_.async_pull(f->request, answer_to(f));
        return f;
    }

    /// Waits until the flight's request has finished. A cancellation of the round meanwhile is
    /// passed on to the request, which then finishes with `operation_aborted`, or with its
    /// answer if the server had already given it (an answer worth applying).
    template <class Flight>
    boost::asio::awaitable<void> land(Flight& f) {
        if (f.done) co_return;
        if (round_cancelled_)
            f.cancel.emit(boost::asio::cancellation_type::terminal);
        else
            landing_ = &f.cancel; // cancel_round() passes a cancellation on
        // Whatever ends the wait (even an exception), the pointer does not outlive it.
        struct forget_landing {
            boost::asio::cancellation_signal*& landing;
            ~forget_landing() { landing = nullptr; }
        } guard{landing_};
        while (!f.done)
            co_await f.wake.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }

    /// Whether the round is to stop: cancelled, or past its deadline (which cancels it).
    bool stopping_round() {
        if (!round_cancelled_ && std::chrono::steady_clock::now() >= round_deadline_) {
            round_timed_out_ = true;
            round_cancelled_ = true;
        }
        return round_cancelled_;
    }

    static void throw_aborted() {
        throw boost::system::system_error(boost::asio::error::operation_aborted);
    }

    /// Ends the round for a request that failed, naming the cause the transport gave and
    /// keeping the server's `Retry-After` in the report.
    /// A system_error's message without the " : message [category:value]" that what() adds:
    /// the report has the code beside it, and people read the message.
    static std::string without_code_suffix(const boost::system::system_error& e) {
        std::string what = e.what();
        const std::string suffix = ": " + e.code().what();
        if (what.size() > suffix.size() &&
            what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
            what.resize(what.size() - suffix.size());
        return what;
    }

    [[noreturn]] static void request_failed(error_code ec, std::string what,
                                            const request_failure& failure,
                                            sync_report& report) {
        if (failure.retry_after) report.retry_after = failure.retry_after;
        if (!failure.message.empty()) what += ": " + failure.message;
        throw boost::system::system_error(ec, what);
    }

    /// How many push requests may be unanswered at once (engine_config and transport agree).
    std::size_t push_depth() const {
        if constexpr (pipelining_transport<Transport>)
            return std::max<std::size_t>(
                1, std::min<std::size_t>(config_.max_push_requests_in_flight,
                                         transport_.max_requests_in_flight()));
        else
            return 1;
    }

    /// A store or send step of a driver that threw: the exception is kept and rethrown when the
    /// state machine says the push or pull is over (after every request in flight finished).
    template <class Event>
    struct step_failure {
        std::exception_ptr caught;
        Event take() {
            caught = std::current_exception();
            return Event{Event::kind::failed};
        }
    };

    /// A push request sent, with what it was built from.
    struct pushed_batch {
        std::shared_ptr<push_flight> flight;
        std::vector<detail::sent_mutation> sent;
    };

    /// Waits for every request still in flight; their answers are not applied (their records
    /// stay pushable and go again with the same mutation ids, which the server recognises).
    boost::asio::awaitable<void> land_all(std::deque<pushed_batch>& flying) {
        for (auto& b : flying) co_await land(*b.flight);
        flying.clear();
    }

    /// Pushes `c`: detail::push_fsm decides (batches, requests in flight, passes, halving on
    /// `batch_too_large`, cancellation); this performs what it asks for.
    boost::asio::awaitable<void> push_collection(collection_entry& c, sync_report& report) {
        using act = detail::push_action::kind;
        using ev = detail::push_event;
        detail::push_fsm fsm({push_depth(), config_.first_push_batch_size, push_batch_size_,
                              config_.max_push_passes});
        std::string after;                  // the last key built into a batch
        std::optional<prepared_push> next;  // built, not sent
        std::deque<pushed_batch> flying;    // sent, in the order sent
        std::optional<pushed_batch> landed; // answered, not yet applied
        step_failure<ev> failure; // a store or send failure, rethrown when it ends
        ev event;
        for (;;) {
            const auto step =
                fsm.resume(std::exchange(event, ev{ev::kind::resumed}), stopping_round());
            if (step.what == act::build_batch) {
                try {
                    if (step.first_of_pass) after.clear();
                    next = prepare_push(c, after, step.size);
                    event = ev{next ? ev::kind::built : ev::kind::none_left};
                } catch (...) {
                    event = failure.take();
                }
            } else if (step.what == act::send_batch) {
                try {
                    flying.push_back({launch(std::move(next->request)), std::move(next->sent)});
                    next.reset();
                    event = ev{ev::kind::sent};
                } catch (...) {
                    event = failure.take();
                }
            } else if (step.what == act::await_answer) {
                co_await land(*flying.front().flight);
                landed = std::move(flying.front());
                flying.pop_front();
                const auto& f = *landed->flight;
                if (!f.ec) report.pushed += f.request.mutations.size();
                event = ev::answered(f.ec, f.request.mutations.size());
            } else if (step.what == act::apply_answer) {
                try {
                    auto& f = *landed->flight;
                    event = ev::applied(
                        apply_push_results(c, f.request, landed->sent, f.response, report));
                } catch (...) {
                    event = failure.take();
                }
                landed.reset();
            } else if (step.what == act::shrink_batches) {
                push_batch_size_ = step.size;
                try { // the app's event handler may throw
                    emit(sync_event::kind::error, c.schema.name, 0,
                         "the server refused a push of " +
                             std::to_string(landed->flight->request.mutations.size()) +
                             " mutations as too large; pushing " + std::to_string(step.size) +
                             " at a time");
                } catch (...) {
                    event = failure.take();
                }
                landed.reset();
            } else if (step.what == act::await_all) {
                co_await land_all(flying);
            } else if (step.what == act::rethrow) {
                std::rethrow_exception(failure.caught);
            } else { // finish
                // Aborted because the round was cancelled; a request the transport itself
                // aborted is reported with its cause like any other failure.
                if (step.ec == boost::asio::error::operation_aborted && round_cancelled_)
                    throw_aborted();
                if (step.ec) request_failed(step.ec, "push to '" + c.schema.name + "'",
                                            landed ? landed->flight->response.failure
                                                   : request_failure{},
                                            report);
                co_return;
            }
        }
    }

    /// What one batch's results did, for the report and the app's events.
    struct push_outcomes {
        std::size_t applied = 0;
        bool rebased = false; ///< a record was rebased and needs another push
        std::vector<conflict_report> conflicts;
        std::vector<rejection_report> rejections;
        detail::commit_notes settled; ///< what the conflicts' settlement wrote, for listeners
    };

    /// Applies one batch's results in one transaction; reports only after it committed.
    /// Returns whether a record was rebased and needs another push.
    bool apply_push_results(collection_entry& c, const push_request& request,
                            const std::vector<detail::sent_mutation>& sent,
                            const push_response& response, sync_report& report) {
        if (response.results.size() != request.mutations.size())
            throw boost::system::system_error(make_error_code(errc::bad_response),
                                              "push answered with the wrong number of results");
        auto outcomes = store_push_results(c, request, sent, response);
        replica_.changes().publish(std::move(outcomes.settled));
        report_push_results(c.schema.name, outcomes, report);
        return outcomes.rebased;
    }

    /// The transaction of `apply_push_results`. It holds the store's lock: it ends before any
    /// event handler runs, so a handler may read the store. Conflict policies run inside it and
    /// must not.
    push_outcomes store_push_results(collection_entry& c, const push_request& request,
                                     const std::vector<detail::sent_mutation>& sent,
                                     const push_response& response) {
        const auto& schema = c.schema;
        const auto now = replica_.clock()();
        push_outcomes out;
        bool all_held = true; // every applied write is stored at its version
        // The records the server answers with are stored too: all checked first, so that an
        // answer holding one that does not decode is applied not at all (and no conflict
        // policy has run for it).
        for (std::size_t i = 0; i < response.results.size(); ++i)
            if (const auto& server = response.results[i].server; server && !server->deleted)
                detail::expect_server_value(schema, sent[i].key, server->value,
                                            "the server's record");
        auto txn = replica_.storage().begin();
        // Settling a conflict may change a record's value, which listeners hear of;
        // acknowledgements and rejections do not.
        detail::recording_transaction<typename Storage::transaction> settling(
            txn, replica_.changes().begin(schema.name));
        for (std::size_t i = 0; i < response.results.size(); ++i) {
            const auto& result = response.results[i];
            const auto& key = sent[i].key;
            if (result.mutation_id != request.mutations[i].mutation_id)
                throw boost::system::system_error(make_error_code(errc::bad_response),
                                                  "push results out of order");
            if (result.status == mutation_status::applied) {
                if (result.server && result.server->version != result.version)
                    throw boost::system::system_error(
                        make_error_code(errc::bad_response),
                        "an applied result carries a record of another version");
                all_held &= detail::apply_applied(txn, schema, sent[i], result.version, now,
                                                  result.server ? &*result.server : nullptr);
                ++out.applied;
                continue;
            }
            auto rec = txn.load(schema.name, key);
            // Edited since the push was built: the newer edit goes out next round and meets
            // the conflict (or the rejection) itself, with the policy deciding on it.
            if (!rec || rec->generation != sent[i].generation) continue;
            if (result.status == mutation_status::rejected) {
                detail::park_rejected(txn, schema, key, *rec, result, now);
                out.rejections.push_back(
                    {schema.name, key, result.error_code, result.error_message});
                continue;
            }
            auto entry = resolve_pushed_conflict(c, settling, key, std::move(*rec), result, now);
            out.rebased |= entry.outcome == conflict_outcome::kept_local ||
                           entry.outcome == conflict_outcome::merged;
            out.conflicts.push_back(std::move(entry));
        }
        // A write outside the device's subset leaves it once the server has it. (The pull
        // may never answer it: the server reads the subscribed groups' feeds only.)
        if constexpr (subset_keeping_transaction<typename Storage::transaction>) {
            if (const auto part = subset(schema.name); !part.everything())
                for (std::size_t i = 0; i < response.results.size(); ++i)
                    if (response.results[i].status == mutation_status::applied)
                        evict_if_outside(settling, schema, sent[i].key, part, now);
        }
        // The feed between the cursor and this push's writes holds only them, and the store
        // holds each at its version: the pull would bring back nothing but their echoes.
        if (const auto& own = response.own_writes;
            own && all_held && own->collection == schema.name) {
            const auto cursor = txn.cursor(schema.name);
            if (cursor >= own->after && cursor < own->through)
                txn.set_cursor(schema.name, own->through);
        }
        txn.commit();
        out.settled = settling.take();
        return out;
    }

    /// A pushed record the server answered with a conflict: the collection's policy decides,
    /// and `detail::apply_resolution` stores the decision.
    template <class Transaction>
    conflict_report resolve_pushed_conflict(collection_entry& c, Transaction& txn,
                                            const std::string& key, local_record rec,
                                            const mutation_result& result, std::int64_t now) {
        const auto& schema = c.schema;
        if (!result.server)
            throw boost::system::system_error(make_error_code(errc::bad_response),
                                              "conflict without the server's record");
        const conflict details{schema,         key,            rec.value,    rec.deleted,
                               rec.modified_at, rec.dirty_mask, *result.server};
        const auto decision = c.policy(details);
        conflict_report entry{schema.name, key, conflict_outcome::deferred, rec.value,
                              rec.deleted, *result.server};
        entry.outcome = detail::apply_resolution(txn, schema, key, std::move(rec),
                                                 *result.server, decision, now);
        return entry;
    }

    /// Counts a committed batch's outcomes in the report and tells the app about them.
    void report_push_results(const std::string& collection, push_outcomes& outcomes,
                             sync_report& report) {
        report.applied += outcomes.applied;
        emit(sync_event::kind::batch_pushed, collection, outcomes.applied);
        for (auto& r : outcomes.rejections) {
            ++report.rejected;
            emit(sync_event::kind::mutation_rejected, collection, 1, r.code + ": " + r.message,
                 r.key);
            report.rejections.push_back(std::move(r));
        }
        for (auto& entry : outcomes.conflicts) {
            emit(sync_event::kind::conflict_detected, collection, 1, {}, entry.key);
            emit(sync_event::kind::conflict_resolved, collection, 1, to_string(entry.outcome),
                 entry.key);
            switch (entry.outcome) {
            case conflict_outcome::kept_local: ++report.kept_local; break;
            case conflict_outcome::took_server:
                ++report.took_server;
                report.discarded.push_back(entry);
                break;
            case conflict_outcome::merged: ++report.merged; break;
            case conflict_outcome::deferred: ++report.deferred; break;
            }
            report.conflicts.push_back(std::move(entry));
        }
    }

    /// Pulls `c`'s change feed: detail::pull_fsm decides (pages, the page ahead, echo
    /// markers and their fallback, the `cursor_ahead` restart, cancellation); this performs
    /// what it asks for. With a subset that changed, a backfill comes first (`settle_subset`):
    /// the same loop, with the pages advancing the backfill instead of the cursor.
    boost::asio::awaitable<void> pull_collection(collection_entry& c, sync_report& report) {
        std::optional<detail::device_subset_state> subset_state;
        if constexpr (subset_keeping_transaction<typename Storage::transaction>)
            subset_state = settle_subset(c);
        detail::device_subset_state* state = subset_state ? &*subset_state : nullptr;
        // One coroutine for both phases: a nested one per phase trips GCC 12's
        // -Wmismatched-new-delete on Asio's frame allocator in the app's builds.
        using act = detail::pull_action::kind;
        using ev = detail::pull_event;
        const auto& schema = c.schema;
        for (int phase = state && state->backfill ? 0 : 1; phase < 2; ++phase) {
            const bool backfill = phase == 0;
            std::uint64_t since = 0;
            if (backfill) {
                since = state->backfill_cursor;
            } else {
                auto txn = replica_.storage().begin();
                since = txn.cursor(schema.name);
            }
            detail::pull_fsm fsm({since, config_.first_pull_page_size, config_.pull_page_size});
            std::deque<std::shared_ptr<pull_flight>> flying; // asked for, in order
            std::shared_ptr<pull_flight> page;               // arrived, not yet applied
            step_failure<ev> failure; // a store or send failure, rethrown when it ends
            ev event;
            for (;;) {
                const auto step =
                    fsm.resume(std::exchange(event, ev{ev::kind::resumed}), stopping_round());
                if (step.what == act::request_page) {
                    if (step.refetch)
                        emit(sync_event::kind::error, schema.name, 0,
                             "the store does not hold a write the server has from it; pulling in "
                             "full");
                    try {
                        // A backfill brings records the store lacks: no echoes to look for.
                        const bool echoes = step.echoes && !backfill;
                        pull_request request{schema.name, step.since, step.page_size,
                                             echoes ? client_id_ : std::string()};
                        if (state) request.subset = state->subset;
                        if (backfill) request.backfill = state->backfill;
                        flying.push_back(launch(std::move(request)));
                        event = ev{ev::kind::sent};
                    } catch (...) {
                        event = failure.take();
                    }
                } else if (step.what == act::await_page || step.what == act::drop_page) {
                    co_await land(*flying.front());
                    page = std::move(flying.front());
                    flying.pop_front();
                    const auto& r = page->response;
                    event = ev::page(page->ec, r.cursor, r.has_more, r.changes.empty());
                } else if (step.what == act::apply_page) {
                    try {
                        const bool held =
                            apply_page(schema, page->response, backfill ? state : nullptr);
                        if (held) {
                            report.pulled += page->response.changes.size();
                            emit(sync_event::kind::page_pulled, schema.name,
                                 page->response.changes.size());
                        }
                        event = ev::applied(held);
                    } catch (...) {
                        event = failure.take();
                    }
                } else if (step.what == act::reset_cursor) {
                    try {
                        auto txn = replica_.storage().begin();
                        txn.set_cursor(schema.name, 0);
                        // The server lost history: a backfill's `until` means nothing now.
                        if (backfill) end_backfill(txn, schema.name, *state);
                        txn.commit();
                        emit(sync_event::kind::error, schema.name, 0,
                             "cursor ahead of the server; pulling from the start");
                        // What the backfill was for comes with the pull from 0 that follows.
                        if (backfill) break;
                    } catch (...) {
                        event = failure.take();
                    }
                } else if (step.what == act::rethrow) {
                    std::rethrow_exception(failure.caught);
                } else { // finish
                    if (step.ec == boost::asio::error::operation_aborted && round_cancelled_)
                        throw_aborted();
                    if (*step.message) throw boost::system::system_error(step.ec, step.message);
                    if (step.ec) request_failed(step.ec, "pull from '" + schema.name + "'",
                                                page ? page->response.failure : request_failure{},
                                                report);
                    // A backfill the server ended without a last page to apply (an empty
                    // one at the cursor) is over too.
                    if (backfill && state->backfill) {
                        auto txn = replica_.storage().begin();
                        end_backfill(txn, schema.name, *state);
                        txn.commit();
                    }
                    break;
                }
            }
        }
    }

    /// Compares the subset the app wants with the one the store holds and, if they differ,
    /// moves to the new one in one transaction: evicts the clean records it drops, and records
    /// the backfill (or the restart from 0) that `detail::plan_subset_change` decides.
    detail::device_subset_state settle_subset(const collection_entry& c)
        requires subset_keeping_transaction<typename Storage::transaction>
    {
        const auto& schema = c.schema;
        const auto wanted = subset(schema.name);
        std::optional<detail::device_subset_state> stored;
        {
            auto txn = replica_.storage().begin();
            stored = detail::decode_subset_state(txn.subset_state(schema.name));
        }
        if (stored && stored->subset == wanted) return *stored;
        if (!stored)
            emit(sync_event::kind::error, schema.name, 0,
                 "the store's subset state cannot be read; pulling the subset from the start");
        // Listed before the transaction begins: a memory store's transaction holds its lock.
        auto held = replica_.storage().list(schema.name);
        const auto now = replica_.clock()();
        auto& hub = replica_.changes();
        auto store_txn = replica_.storage().begin();
        detail::recording_transaction<typename Storage::transaction> txn(store_txn,
                                                                         hub.begin(schema.name));
        auto plan = detail::plan_subset_change(stored, wanted, txn.cursor(schema.name));
        if (plan.restart) txn.set_cursor(schema.name, 0);
        for (auto& [key, listed] : held)
            if (!subset_matches(schema, listed.value, wanted))
                evict_if_outside(txn, schema, key, wanted, now);
        txn.set_subset_state(schema.name, detail::encode_subset_state(plan.next));
        txn.commit();
        hub.publish(txn.take(), /*distinct_keys=*/true);
        return plan.next;
    }

    /// Ends the backfill of `state`, in `txn`.
    template <class Txn>
    static void end_backfill(Txn& txn, const std::string& collection,
                             detail::device_subset_state& state) {
        state.backfill.reset();
        if constexpr (subset_keeping_transaction<Txn>)
            txn.set_subset_state(collection, detail::encode_subset_state(state));
    }

    /// Removes record `key` from the device if it is outside `part` and the server holds it as
    /// the device does (clean, not parked): as a removal from the server would. A record with
    /// unpushed edits stays until they are pushed.
    template <class Txn>
    static void evict_if_outside(Txn& txn, const collection_schema& schema,
                                 const std::string& key, const sync_subset& part,
                                 std::int64_t now) {
        const auto rec = txn.load(schema.name, key);
        if (!rec || rec->deleted || rec->dirty() || rec->parked != park_state::none ||
            subset_matches(schema, rec->value, part))
            return;
        change gone;
        gone.id = key_to_json(schema, key);
        gone.version = rec->base_version;
        gone.deleted = true;
        detail::apply_pulled(txn, schema, gone, now);
    }

    /// Applies one pull page and its cursor in one transaction (a backfill's page: the state
    /// `backfill` it advances, or ends on its last page). Returns false, having applied
    /// nothing, if an echo marker does not match the store (the page must come in full).
    bool apply_page(const collection_schema& schema, pull_response& page,
                    detail::device_subset_state* backfill = nullptr) {
        const auto now = replica_.clock()();
        auto& hub = replica_.changes();
        auto store_txn = replica_.storage().begin();
        detail::recording_transaction<typename Storage::transaction> txn(
            store_txn, page.changes.empty() ? detail::commit_notes{} : hub.begin(schema.name));
        txn.reserve_notes(page.changes.size());
        const hlc_stamp* newest = nullptr;
        bool insert_first = true;
        for (auto& change : page.changes) {
            if (!detail::apply_pulled(txn, schema, change, now, &insert_first)) return false;
            if (!newest || *newest < change.stamp) newest = &change.stamp;
        }
        if (newest) {
            auto clock = txn.clock();
            hlc_observe(clock, *newest, now);
            txn.set_clock(clock);
        }
        std::optional<detail::device_subset_state> next;
        if (backfill) {
            next = *backfill;
            if (page.has_more) next->backfill_cursor = page.cursor;
            else next->backfill.reset();
            if constexpr (subset_keeping_transaction<typename Storage::transaction>)
                txn.set_subset_state(schema.name, detail::encode_subset_state(*next));
        } else {
            txn.set_cursor(schema.name, page.cursor);
        }
        txn.commit();
        if (next) *backfill = std::move(*next);
        hub.publish(txn.take(), /*distinct_keys=*/true); // a page holds each record once
        return true;
    }

    executor_type strand_;
    basic_replica<Storage>& replica_;
    Transport& transport_;
    engine_config config_;
    /// config_.push_batch_size, halved each time a server answers `batch_too_large`.
    std::size_t push_batch_size_ = config_.push_batch_size;
    std::string client_id_;
    std::vector<collection_entry> collections_;
    bool running_ = false;
    // Lists: a cancelled waiter leaves from the middle, and erasing from a vector would
    // move-assign the waiters behind it, which recurses forever in Boost 1.81's
    // any_completion_handler.
    std::list<waiter> current_, next_;
    std::atomic<std::uint64_t> last_waiter_id_{0};
    /// The running round has been cancelled: it stops at its next step.
    bool round_cancelled_ = false;
    /// The running round passed its deadline (`engine_config::round_timeout`), which
    /// cancelled it.
    bool round_timed_out_ = false;
    std::chrono::steady_clock::time_point round_deadline_ = std::chrono::steady_clock::time_point::max();
    /// The cancellation of the request the round waits for, if it waits for one.
    boost::asio::cancellation_signal* landing_ = nullptr;
    /// The subsets the app asked for (`set_subset`), by collection; read by rounds.
    mutable std::mutex subsets_mutex_;
    std::map<std::string, sync_subset, std::less<>> wanted_subsets_;
};

} // namespace offsync
