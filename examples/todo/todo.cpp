// todo: one device of the to-do app on the command line, its data in a SQLite file, synced
// with todo-server.
//
//   todo --db FILE [--server URL] [--token TOKEN] COMMAND [ARGS]
//
//   add ID TITLE [--due YYYY-MM-DD] [--priority 0-3]   a task
//   done ID                                            ticks a task off
//   remove ID                                          deletes a task
//   list [--open] [--due-before YYYY-MM-DD]            tasks, by a typed query
//   comment ID TASK_ID TEXT                            writes (or rewrites) a comment
//   comments                                           every comment
//   sync                                               one round with the server
//   conflicts                                          comments edited on two devices at once
//   resolve ID mine|server|merge [TEXT]                settles one
//   watch SECONDS                                      syncs in the background for that long,
//                                                      printing every change as it lands
//
// --server and --token default to $TODO_SERVER and $TODO_TOKEN. Edits work offline; `sync`
// sends them. Exit status: 0 done, 1 a sync that failed (the reason on stderr), 2 a bad
// command line or configuration, 3 an unknown task or comment.
#include "model.hpp"

#include <offsync/device.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;

namespace {

[[noreturn]] void fail(int status, const std::string& why) {
    std::fprintf(stderr, "todo: %s\n", why.c_str());
    std::exit(status);
}

struct command_line {
    offsync::device_config config;
    std::vector<std::string> words; // the command and its arguments, options taken out
    std::string due, due_before;
    int priority = 0;
    bool open_only = false;
};

command_line parse(int argc, char** argv) {
    command_line c;
    if (const char* s = std::getenv("TODO_SERVER")) c.config.server = s;
    if (const char* t = std::getenv("TODO_TOKEN")) c.config.token = t;
    for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(2, "missing value after " + word);
            return argv[++i];
        };
        if (word == "--db") c.config.database = value();
        else if (word == "--server") c.config.server = value();
        else if (word == "--token") c.config.token = value();
        else if (word == "--due") c.due = value();
        else if (word == "--due-before") c.due_before = value();
        else if (word == "--open") c.open_only = true;
        else if (word == "--priority") {
            const auto text = value();
            if (text.size() != 1 || text[0] < '0' || text[0] > '3')
                fail(2, "--priority takes 0, 1, 2 or 3, not '" + text + "'");
            c.priority = text[0] - '0';
        } else if (word.rfind("--", 0) == 0) fail(2, "unknown option " + word);
        else c.words.push_back(word);
    }
    if (c.words.empty()) fail(2, "no command (add, done, remove, list, comment, comments, sync, "
                                 "conflicts, resolve, watch)");
    if (c.config.database.empty()) fail(2, "--db FILE is required");
    if (c.config.server.empty()) c.config.server = "http://127.0.0.1:8090";
    c.config.transport.connect_timeout = std::chrono::seconds(3);
    c.config.transport.request_timeout = std::chrono::seconds(10);
    return c;
}

void need(const command_line& c, std::size_t n, const char* usage) {
    if (c.words.size() != n) fail(2, std::string("usage: todo ") + usage);
}

void print(const todo::Task& t) {
    std::printf("%s [%c] %s%s%s (priority %d)\n", t.id.c_str(), t.done ? 'x' : ' ',
                t.title.c_str(), t.due.empty() ? "" : ", due ", t.due.c_str(), t.priority);
}

using device = offsync::device<todo::models>;

// [snippet: sync]
/// One round, run to its end on the program's io_context.
int sync(asio::io_context& io, device& d) {
    std::optional<offsync::sync_report> report;
    d.async_sync([&](offsync::error_code, offsync::sync_report r) { report = std::move(r); });
    io.run();
    io.restart();
    if (report->error) {
        std::fprintf(stderr, "todo: sync failed: %s\n", report->error_message.c_str());
        return 1;
    }
    std::printf("synced: %zu sent, %zu received, %zu conflict(s) to settle\n",
                report->applied, report->pulled, report->deferred);
    return 0;
}
// [end snippet]

// [snippet: watch]
/// Syncs in the background for `seconds`, printing every task and comment that changes.
int watch(asio::io_context& io, device& d, int seconds) {
    auto tasks = d.subscribe<todo::Task>([](const std::vector<offsync::record_change<todo::Task>>& changes) {
        for (const auto& c : changes) {
            if (c.value) std::printf("changed: "), print(*c.value);
            else std::printf("removed: %s\n", c.key.c_str());
        }
        std::fflush(stdout);
    });
    auto comments = d.subscribe<todo::Comment>([](const auto& changes) {
        for (const auto& c : changes)
            std::printf("comment %s: %s\n", c.key.c_str(),
                        c.value ? c.value->text.c_str() : "(removed)");
        std::fflush(stdout);
    });
    offsync::background_config schedule;
    schedule.earliest_begin = std::chrono::milliseconds(0);
    schedule.interval = std::chrono::milliseconds(200);
    d.start_background(schedule);

    asio::steady_timer stop(io, std::chrono::seconds(seconds));
    stop.async_wait([&](offsync::error_code) { d.async_stop([] {}); });
    io.run(); // returns once the last round has ended
    return 0;
}
// [end snippet]

} // namespace

int main(int argc, char** argv) {
    auto c = parse(argc, argv);
    asio::io_context io;
    try {
        device d(io.get_executor(), c.config);
        const auto& cmd = c.words[0];
        if (cmd == "add") {
            need(c, 3, "add ID TITLE [--due YYYY-MM-DD] [--priority 0-3]");
            d.put(todo::Task{c.words[1], c.words[2], false, c.priority, c.due});
        } else if (cmd == "done") {
            need(c, 2, "done ID");
            auto task = d.get<todo::Task>(c.words[1]);
            if (!task) fail(3, "no task '" + c.words[1] + "'");
            task->done = true;
            d.put(*task);
        } else if (cmd == "remove") {
            need(c, 2, "remove ID");
            if (!d.erase<todo::Task>(c.words[1])) fail(3, "no task '" + c.words[1] + "'");
        } else if (cmd == "list") {
            need(c, 1, "list [--open] [--due-before YYYY-MM-DD]");
            // [snippet: list]
            offsync::query<todo::Task> q;
            if (c.open_only) q.and_where(offsync::field(&todo::Task::done) == false);
            if (!c.due_before.empty()) // tasks with a due date before it
                q.and_where(offsync::field(&todo::Task::due) != "")
                    .and_where(offsync::field(&todo::Task::due) < c.due_before);
            for (const auto& task : d.find(q)) print(task);
            // [end snippet]
        } else if (cmd == "comment") {
            need(c, 4, "comment ID TASK_ID TEXT");
            if (!d.get<todo::Task>(c.words[2])) fail(3, "no task '" + c.words[2] + "'");
            d.put(todo::Comment{c.words[1], c.words[2], c.words[3]});
        } else if (cmd == "comments") {
            need(c, 1, "comments");
            for (const auto& comment : d.list<todo::Comment>())
                std::printf("%s on %s: %s\n", comment.id.c_str(), comment.task_id.c_str(),
                            comment.text.c_str());
        } else if (cmd == "sync") {
            need(c, 1, "sync");
            return sync(io, d);
        } else if (cmd == "conflicts") {
            need(c, 1, "conflicts");
            // [snippet: conflicts]
            for (const auto& conflict : d.conflicts<todo::Comment>())
                std::printf("%s: mine \"%s\", the server's \"%s\"\n", conflict.key.c_str(),
                            conflict.mine ? conflict.mine->text.c_str() : "(deleted)",
                            conflict.server ? conflict.server->text.c_str() : "(deleted)");
            // [end snippet]
        } else if (cmd == "resolve") {
            if (c.words.size() < 3) fail(2, "usage: todo resolve ID mine|server|merge [TEXT]");
            const auto& id = c.words[1];
            const auto& how = c.words[2];
            // [snippet: resolve]
            if (how == "mine") {
                d.resolve<todo::Comment>(id, offsync::resolve_choice::keep_mine);
            } else if (how == "server") {
                d.resolve<todo::Comment>(id, offsync::resolve_choice::use_server);
            } else if (how == "merge" && c.words.size() == 4) {
                auto comment = d.get<todo::Comment>(id);
                if (!comment) fail(3, "no comment '" + id + "'");
                comment->text = c.words[3];
                d.resolve_merged(*comment);
            } else {
                fail(2, "usage: todo resolve ID mine|server|merge TEXT");
            }
            // [end snippet]
        } else if (cmd == "watch") {
            need(c, 2, "watch SECONDS");
            const int seconds = std::atoi(c.words[1].c_str());
            if (seconds < 1 || seconds > 3600) fail(2, "watch takes 1 to 3600 seconds");
            return watch(io, d, seconds);
        } else {
            fail(2, "unknown command '" + cmd + "'");
        }
        return 0;
    } catch (const offsync::sync_error& e) {
        const bool missing = e.code() == offsync::errc::no_such_conflict ||
                             e.code() == offsync::errc::not_parked;
        fail(missing ? 3 : 2, e.what());
    }
}
