// offsync documentation snippets for docs/sharing.md. Every region between
// `// [snippet: NAME]` and `// [end snippet]` appears verbatim in that page; the build compiles
// this program and ctest runs it.
//
// The story: shared shopping lists. A server on 127.0.0.1 and two users' devices, each an
// `offsync::device` on a SQLite file of its own. Alice makes a list, shares it with Bob, Bob
// ticks an item off, Alice sees it; Alice stops sharing while Bob edits offline, and Bob's
// device drops the list and parks his edit as refused. Exits non-zero if a step turns out
// otherwise.

#include <offsync/device.hpp>
#include <offsync/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// [snippet: models]
namespace shop {

/// A shopping list. Its id names its group, and `members` are who may see and edit it and
/// its items: writing this record grants and revokes access.
struct List {
    std::string id;
    std::string title;
    std::vector<std::string> members;
};
BOOST_DESCRIBE_STRUCT(List, (), (id, title, members))

/// An item of one list: seen by that list's members, and nobody else.
struct Item {
    std::string id;
    std::string list_id;
    std::string name;
    bool bought = false;
};
BOOST_DESCRIBE_STRUCT(Item, (), (id, list_id, name, bought))

} // namespace shop

template <>
struct offsync::model_traits<shop::List> {
    static constexpr std::string_view collection = "lists";
    static constexpr auto key = &shop::List::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &shop::List::id;        // each list is a group of its own
    static constexpr auto members = &shop::List::members; // ...whose members it lists
    using conflict_policy = offsync::last_write_wins;
};

template <>
struct offsync::model_traits<shop::Item> {
    static constexpr std::string_view collection = "items";
    static constexpr auto key = &shop::Item::id;
    static constexpr offsync::scope scope = offsync::scope::grouped;
    static constexpr auto group = &shop::Item::list_id; // an item belongs to its list's group
    using conflict_policy = offsync::last_write_wins;
};

namespace shop {
using models = offsync::collections<List, Item>;
}
// [end snippet]

namespace asio = boost::asio;

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "sharing snippet: %s\n", what);
        ++failures;
    }
}
std::string temp_path(const char* name) {
    auto p = std::filesystem::temp_directory_path() / (std::string("offsync-sharing-") + name);
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + suffix);
    return p.string();
}
} // namespace

int main() {
    asio::io_context io;

    // [snippet: server]
    offsync::server::sync_service service;
    service.add_collections(shop::models{});
    // Membership names users: the server tells the service who they are.
    std::istringstream tokens("alice-token-0123456789 alice\nbob-token-0123456789ab bob\n");
    auto auth = offsync::server::token_file_authenticator::parse(tokens, "tokens");
    for (const auto& user : auth.users()) service.add_user(user);
    offsync::server::http_server server(io.get_executor(), service, std::move(auth));
    // [end snippet]
    server.listen({asio::ip::make_address("127.0.0.1"), 0});
    server.start();
    const auto url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    const auto alice_db = temp_path("alice.db"), bob_db = temp_path("bob.db"),
               laptop_db = temp_path("laptop.db");

    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        offsync::device_config config;
        config.server = url;
        config.database = alice_db;
        config.token = "alice-token-0123456789";
        offsync::device<shop::models> alice(ex, config);
        config.database = bob_db;
        config.token = "bob-token-0123456789ab";
        offsync::device<shop::models> bob(ex, config);
        auto sync = [](auto& device) -> asio::awaitable<bool> {
            auto [ec, report] = co_await device.async_sync(asio::as_tuple(asio::use_awaitable));
            if (ec) std::fprintf(stderr, "sync: %s\n", report.error_message.c_str());
            co_return !ec;
        };

        // [snippet: share]
        // Alice's list, hers alone at first: a list must name its writer among its members.
        alice.put(shop::List{"weekend", "Weekend shop", {"alice"}});
        alice.put(shop::Item{"i1", "weekend", "bread", false});
        alice.put(shop::Item{"i2", "weekend", "apples", false});
        co_await sync(alice);

        // Sharing is an edit of the list: Bob's next sync brings the list and its items.
        auto list = *alice.get<shop::List>("weekend");
        list.members.push_back("bob");
        alice.put(list);
        co_await sync(alice);
        co_await sync(bob);
        // [end snippet]
        expect(bob.list<shop::Item>().size() == 2, "bob receives both items");

        // [snippet: edit]
        // Bob ticks an item off; Alice's next sync shows it, as between two devices of one user.
        auto bread = *bob.get<shop::Item>("i1");
        bread.bought = true;
        bob.put(bread);
        co_await sync(bob);
        co_await sync(alice);
        // [end snippet]
        expect(alice.get<shop::Item>("i1")->bought, "alice sees bob's edit");

        // [snippet: revoke]
        // Bob edits offline while Alice stops sharing.
        auto apples = *bob.get<shop::Item>("i2");
        apples.name = "green apples";
        bob.put(apples);
        list = *alice.get<shop::List>("weekend");
        list.members = {"alice"};
        alice.put(list);
        co_await sync(alice);

        // Bob's next sync: the list and its items leave his device, and his edit, refused as
        // `forbidden`, waits as a rejected change for the app to show or drop.
        co_await sync(bob);
        for (const auto& refused : bob.rejected<shop::Item>())
            std::printf("not saved: %s (%s)\n", refused.mine->name.c_str(), refused.code.c_str());
        // [end snippet]
        const auto refused = bob.rejected<shop::Item>();
        expect(refused.size() == 1 && refused[0].code == "forbidden" && refused[0].mine &&
                   refused[0].mine->name == "green apples",
               "bob's offline edit is parked as forbidden");
        // The refused edit stays on Bob's device, as he left it, until he drops it.
        const auto left = bob.list<shop::Item>();
        expect(bob.list<shop::List>().empty() && left.size() == 1 && left[0].id == "i2",
               "bob's device drops the list and the items he did not edit");
        bob.drop_rejected<shop::Item>("i2");
        expect(bob.list<shop::Item>().empty(), "dropping the refused edit drops the item");
        expect(alice.get<shop::Item>("i2")->name == "apples", "alice's item is untouched");

        alice.put(shop::List{"office", "Office", {"alice"}});
        alice.put(shop::Item{"o1", "office", "paper", false});
        co_await sync(alice);
        // [snippet: subset]
        // The part of the items a device syncs: the weekend list's, not yet bought.
        offsync::sync_subset part;
        part.groups = std::vector<std::string>{"weekend"};
        part.where = offsync::query<shop::Item>(offsync::field(&shop::Item::bought) == false).spec();
        // What a pull that carries it answers: the apples alone (the bread is bought, the paper
        // is on another list).
        offsync::pull_request request{"items", 0, 100};
        request.subset = part;
        offsync::pull_response page;
        service.pull("alice", request, page);
        // [end snippet]
        std::vector<std::string> live;
        for (const auto& c : page.changes)
            if (!c.deleted) live.push_back(std::string(c.id.as_string()));
        expect(live == std::vector<std::string>{"i2"}, "the subset's pull holds the apples alone");

        // A third device of Alice's, on a file of its own, that syncs one list.
        auto laptop_config = config;
        laptop_config.database = laptop_db;
        laptop_config.token = "alice-token-0123456789";
        offsync::device<shop::models> laptop(ex, laptop_config);
        // [snippet: device-subset]
        // The laptop syncs the weekend list's items only.
        offsync::sync_subset weekend;
        weekend.groups = std::vector<std::string>{"weekend"};
        laptop.set_subset<shop::Item>(weekend);
        // [end snippet]
        co_await sync(laptop);
        std::vector<std::string> on_laptop;
        for (const auto& i : laptop.list<shop::Item>()) on_laptop.push_back(i.id);
        expect(on_laptop == std::vector<std::string>{"i1", "i2"},
               "the laptop holds the weekend list's items alone");
        co_await server.async_shutdown(asio::as_tuple(asio::use_awaitable));
    }, [&](std::exception_ptr e) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                std::fprintf(stderr, "sharing snippet: %s\n", x.what());
            }
            ++failures;
            io.stop();
        }
    });
    io.run();
    for (const auto& path : {alice_db, bob_db, laptop_db})
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    return failures == 0 ? 0 : 1;
}
