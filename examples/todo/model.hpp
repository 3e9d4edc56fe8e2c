// The to-do app's models, shared by its server and its device program: tasks, which merge by
// last-write-wins, and comments, whose concurrent edits the user settles.
#pragma once

#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/model.hpp>

#include <boost/describe/class.hpp>

#include <string>
#include <string_view>

// [snippet: models]
namespace todo {

struct Task {
    std::string id;
    std::string title;
    bool done = false;
    int priority = 0;  // 0 (someday) to 3 (now)
    std::string due;   // "2027-01-31", or empty
};
BOOST_DESCRIBE_STRUCT(Task, (), (id, title, done, priority, due))

struct Comment {
    std::string id;
    std::string task_id;
    std::string text;
};
BOOST_DESCRIBE_STRUCT(Comment, (), (id, task_id, text))

} // namespace todo

template <>
struct offsync::model_traits<todo::Task> {
    static constexpr std::string_view collection = "tasks";
    static constexpr auto key = &todo::Task::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    using conflict_policy = offsync::last_write_wins; // the later edit of a field wins
};

template <>
struct offsync::model_traits<todo::Comment> {
    static constexpr std::string_view collection = "comments";
    static constexpr auto key = &todo::Comment::id;
    static constexpr offsync::scope scope = offsync::scope::per_user;
    using conflict_policy = offsync::ask_user; // two edits of one comment wait for the user
};

namespace todo {
/// What the server serves and every device syncs: one list, so they cannot disagree.
using models = offsync::collections<Task, Comment>;
}
// [end snippet]
