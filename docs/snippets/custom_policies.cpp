// offsync documentation snippets. Every region between `// [snippet: NAME]` and
// `// [end snippet]` appears verbatim in docs/concepts.md; the build compiles this program and
// ctest runs it, so the docs cannot drift away from the library.
//
// The story: one user's to-do list on two devices. The phone uses the shipped pieces
// (memory_storage, loopback_transport, last-write-wins); the laptop uses a store decorator, a
// transport and a conflict policy written here. Both edit one task offline; the laptop's round
// meets the conflict, merges it field by field, and every replica ends equal to the server.
// The program exits non-zero if any round fails or any value is not what the docs promise.

#include <offsync/forwarding.hpp>
#include <offsync/offsync.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asio = boost::asio;

// [snippet: model]
namespace todo {

struct Task {
    std::string id;
    std::string title;
    bool done = false;
    std::int32_t priority = 0;
};
BOOST_DESCRIBE_STRUCT(Task, (), (id, title, done, priority))

} // namespace todo

template <>
struct offsync::model_traits<todo::Task> {
    static constexpr std::string_view collection = "tasks"; // the wire name
    static constexpr auto key = &todo::Task::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    // No `conflict_policy`: add_collection<todo::Task>() falls back to last_write_wins.
};
// [end snippet]

// [snippet: conflict-policy]
// Field by field: a task ticked off on either side stays done, the higher priority wins, and
// any other field keeps this device's value if this device changed it, the server's otherwise.
// A delete on either side is left to last-write-wins.
inline constexpr auto merge_tasks = [](const offsync::conflict& c) -> offsync::resolution {
    if (c.local_deleted || c.server.deleted) return offsync::last_write_wins{}(c);
    // normalize(): every field of the schema, defaults for any the server's record lacks.
    const boost::json::object server = offsync::normalize(c.schema, c.server.value);
    boost::json::object merged = server;
    for (std::size_t i = 0; i < c.schema.fields.size(); ++i) {
        const std::string& name = c.schema.fields[i];
        const boost::json::value& mine = c.local_value.at(name);
        const boost::json::value& theirs = server.at(name);
        if (name == "done")
            merged[name] = mine.as_bool() || theirs.as_bool();
        else if (name == "priority")
            merged[name] =
                std::max(mine.to_number<std::int64_t>(), theirs.to_number<std::int64_t>());
        else if ((c.local_dirty_mask >> i) & 1) // bit i = schema field i
            merged[name] = mine;
    }
    return offsync::resolution::merged(std::move(merged));
};
static_assert(offsync::conflict_policy<decltype(merge_tasks)>);
// [end snippet]

// [snippet: storage-policy]
// A StoragePolicy decorator: counts committed transactions (a metric an app might export).
// forwarding_storage and forwarding_transaction pass every operation through to the store they
// wrap, its optional fast paths included; the decorator writes only what it changes.
class counting_transaction
    : public offsync::forwarding_transaction<offsync::memory_storage::transaction> {
public:
    counting_transaction(offsync::memory_storage::transaction next,
                         std::atomic<std::size_t>& commits)
        : forwarding_transaction(std::move(next)), commits_(&commits) {}

    void commit() {
        next().commit();
        ++*commits_;
    }

private:
    std::atomic<std::size_t>* commits_;
};

class counting_storage
    : public offsync::forwarding_storage<offsync::memory_storage, counting_transaction> {
public:
    counting_transaction begin() { return {next_layer().begin(), commits_}; }
    std::size_t commits() const noexcept { return commits_; }

private:
    std::atomic<std::size_t> commits_{0};
};
static_assert(offsync::storage_policy<counting_storage>);
// [end snippet]

// [snippet: transport-policy]
// A TransportPolicy that calls a sync service in this process through its typed entry points:
// no JSON, no socket, but the shape of every transport. Each operation is an asio::async_compose
// state machine, so it takes any completion token. It hops through the executor once (it never
// completes inside the initiating call), honours terminal cancellation that arrives meanwhile,
// then asks the service and completes with (error_code, response).
class direct_transport {
public:
    using executor_type = asio::any_io_executor;

    direct_transport(executor_type ex, offsync::server::sync_service& service, std::string user)
        : ex_(std::move(ex)), service_(&service), user_(std::move(user)) {}

    executor_type get_executor() const noexcept { return ex_; }
    std::size_t requests() const noexcept { return requests_; }

    template <class Token>
    auto async_push(const offsync::push_request& request, Token&& token) {
        // The request is copied into the operation: with a deferred token the operation may
        // start after the caller's request is gone.
        return run<offsync::push_response>(
            [this, request](offsync::push_response& out) {
                return service_->push(user_, request, out);
            },
            std::forward<Token>(token));
    }

    template <class Token>
    auto async_pull(const offsync::pull_request& request, Token&& token) {
        return run<offsync::pull_response>(
            [this, request](offsync::pull_response& out) {
                return service_->pull(user_, request, out);
            },
            std::forward<Token>(token));
    }

private:
    template <class Response, class Call, class Token>
    auto run(Call call, Token&& token) {
        return asio::async_compose<Token, void(offsync::error_code, Response)>(
            [this, call = std::move(call), posted = false](auto& self) mutable {
                if (!posted) {
                    posted = true;
                    asio::post(ex_, std::move(self)); // resumes this lambda from the executor
                    return;
                }
                Response response;
                if (self.cancelled() != asio::cancellation_type::none) {
                    self.complete(asio::error::operation_aborted, std::move(response));
                    return;
                }
                ++requests_;
                const offsync::diagnostics d = call(response); // a request-level error, if any
                self.complete(d.code, std::move(response));
            },
            token, ex_);
    }

    executor_type ex_;
    offsync::server::sync_service* service_;
    std::string user_;
    std::size_t requests_ = 0;
};
static_assert(offsync::transport_policy<direct_transport>);
// [end snippet]

namespace {

// [snippet: run-round]
// Runs one round to completion with a callback as the completion token.
template <class Engine>
offsync::sync_report run_round(asio::io_context& io, Engine& engine) {
    offsync::sync_report out;
    engine.async_sync([&](offsync::error_code ec, offsync::sync_report report) {
        if (ec) std::fprintf(stderr, "round failed: %s\n", report.error_message.c_str());
        out = std::move(report);
    });
    io.restart();
    io.run();
    return out;
}

// The same with a coroutine: as_tuple turns the outcome into values instead of an exception.
template <class Engine>
asio::awaitable<void> sync_once(Engine& engine, offsync::sync_report& out) {
    auto [ec, report] = co_await engine.async_sync(asio::as_tuple(asio::use_awaitable));
    out = std::move(report);
}
// [end snippet]

int failures = 0;

void expect(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
}

} // namespace

int main() {
    asio::io_context io;

    // [snippet: wire-up]
    offsync::server::sync_service service; // the server side, in this process
    service.add_collection<todo::Task>();

    // The phone: shipped pieces only; its tasks use the traits' default, last-write-wins.
    int phone_rounds = 0;
    offsync::engine_config phone_config;
    phone_config.on_event = [&](const offsync::sync_event& e) {
        if (e.what == offsync::sync_event::kind::round_started) ++phone_rounds;
    };
    offsync::memory_storage phone_store;
    offsync::basic_replica phone(phone_store);
    offsync::loopback_transport phone_link(io.get_executor(), service, "user-1");
    offsync::basic_sync_engine phone_sync(io.get_executor(), phone, phone_link, phone_config);
    phone_sync.add_collection<todo::Task>();

    // The laptop: the custom store, transport and conflict policy of this program.
    counting_storage laptop_store;
    offsync::basic_replica laptop(laptop_store);
    direct_transport laptop_link(io.get_executor(), service, "user-1");
    offsync::basic_sync_engine laptop_sync(io.get_executor(), laptop, laptop_link);
    laptop_sync.add_collection<todo::Task>(merge_tasks);
    // [end snippet]

    // [snippet: offline-edits]
    // The phone creates a task and syncs; the laptop syncs and receives it.
    phone.put(todo::Task{"t-1", "Buy milk", false, 1});
    expect(!run_round(io, phone_sync).error, "the phone's first round");
    expect(!run_round(io, laptop_sync).error, "the laptop's first round");

    // Offline, both edit it: the phone renames it and raises its priority; the laptop ticks it
    // off and sets a lower priority. Only the fields that changed become dirty.
    phone.put(todo::Task{"t-1", "Buy oat milk", false, 5});
    laptop.put(todo::Task{"t-1", "Buy milk", true, 2});
    expect(!run_round(io, phone_sync).error, "the phone pushes its edit");

    // The laptop's push conflicts on `priority` (the phone wrote it after the laptop's base
    // version); merge_tasks decides, and the merged value is pushed in the same round.
    offsync::sync_report report;
    asio::co_spawn(io, sync_once(laptop_sync, report), asio::detached);
    io.restart();
    io.run();
    expect(!report.error, "the laptop's conflicting round");
    expect(report.merged == 1 && report.conflict_count() == 1, "one conflict, merged");
    expect(report.applied == 1, "the merged value was applied");
    // [end snippet]
    expect(report.discarded.empty(), "nothing discarded");
    expect(!run_round(io, phone_sync).error, "the phone pulls the merge");

    const auto on_server = service.get("user-1", "tasks", "t-1");
    expect(on_server && !on_server->deleted, "the server holds the task");
    if (on_server) {
        const auto task = offsync::from_json<todo::Task>(on_server->value);
        expect(task.title == "Buy oat milk", "the phone's title survives");
        expect(task.done, "the laptop's tick survives");
        expect(task.priority == 5, "the higher priority wins");
    }
    for (auto copy : {phone.get<todo::Task>("t-1"), laptop.get<todo::Task>("t-1")}) {
        expect(copy && copy->title == "Buy oat milk" && copy->done && copy->priority == 5,
               "every replica equals the server");
    }
    expect(laptop.pending<todo::Task>().dirty == 0, "nothing left to push");
    expect(laptop_store.commits() > 0 && laptop_link.requests() > 0, "the custom pieces ran");

    // [snippet: timeout]
    // A round bounded in time: a timer emits terminal cancellation into the round's slot.
    phone.put(todo::Task{"t-2", "Call the plumber", false, 3});
    phone_link.faults().delay = std::chrono::seconds(10); // a very slow network
    asio::cancellation_signal stop;
    asio::steady_timer deadline(io, std::chrono::milliseconds(50));
    deadline.async_wait([&](offsync::error_code ec) {
        if (!ec) stop.emit(asio::cancellation_type::terminal);
    });
    offsync::error_code outcome;
    phone_sync.async_sync(asio::bind_cancellation_slot(
        stop.slot(), [&](offsync::error_code ec, offsync::sync_report) {
            deadline.cancel();
            outcome = ec; // asio::error::operation_aborted
        }));
    io.restart();
    io.run();
    // Nothing was acknowledged, so the edit is still dirty; the next round pushes it.
    // [end snippet]
    expect(outcome == asio::error::operation_aborted, "the round was cancelled");
    expect(phone.pending<todo::Task>().dirty == 1, "the cancelled edit stays dirty");
    phone_link.faults().delay = std::chrono::milliseconds(0);

    // [snippet: single-flight]
    // Three requests at once: the first starts a round, the other two share the one after it.
    const int rounds_before = phone_rounds;
    int completed = 0;
    for (int i = 0; i < 3; ++i)
        phone_sync.async_sync([&](offsync::error_code ec, offsync::sync_report) {
            if (!ec) ++completed;
        });
    io.restart();
    io.run();
    // completed == 3, phone_rounds - rounds_before == 2
    // [end snippet]
    expect(completed == 3, "every request completed");
    expect(phone_rounds - rounds_before == 2, "three requests, two rounds");
    expect(phone.pending<todo::Task>().dirty == 0, "the edit went out after the cancellation");
    expect(service.get("user-1", "tasks", "t-2").has_value(), "the server has the second task");

    if (failures) return 1;
    std::puts("offsync doc snippets: ok");
    return 0;
}
