// docs/protocol.md's push and pull examples, replayed against the real HTTP server: the same
// history the page describes is written first, then each request of the page is sent and the
// answer must equal the page's response. If the protocol changes, this fails until the page
// is brought up to date.
#include "support/world.hpp"

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

using namespace offsync_test;
namespace http = boost::beast::http;

namespace {

/// The fenced blocks of a Markdown page, in order, with their info string ("json" or "").
std::vector<std::pair<std::string, std::string>> fenced_blocks(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in);
    std::vector<std::pair<std::string, std::string>> blocks;
    std::string line, info, body;
    bool inside = false;
    while (std::getline(in, line)) {
        if (line.rfind("```", 0) == 0) {
            if (inside) blocks.emplace_back(info, body);
            else { info = line.substr(3); body.clear(); }
            inside = !inside;
        } else if (inside) {
            body += line + "\n";
        }
    }
    return blocks;
}

const char* const phone = "3f2c9a1e-5b7d-4c1a-9e0f-2d6b8a4c7e11";
const char* const laptop = "9b1d4e7a-0c2f-4a8b-b3d5-6e9f1a2c4b80";
const std::string token = "replay-token-0123456789";

json::object reservation_value(const char* id, const char* date, int party, const char* status) {
    return json::object{{"id", id},         {"landmark_id", 1},   {"date", date},
                        {"party_size", party}, {"status", status}, {"notes", ""}};
}

/// The real HTTP server on 127.0.0.1, on a thread of its own, and one client connection to it.
struct replay_server {
    replay_server(server::sync_service& service, const std::string& token_lines) {
        std::istringstream tokens(token_lines);
        srv.emplace(io.get_executor(), service, server::token_file_authenticator::parse(tokens));
        srv->listen({asio::ip::make_address("127.0.0.1"), 0});
        srv->start();
        thread = std::thread([this] { io.run_for(std::chrono::seconds(30)); });
        socket.connect(srv->local_endpoint());
    }
    ~replay_server() {
        socket.close();
        srv->async_shutdown([this](error_code) { work.reset(); });
        thread.join();
    }
    /// Sends one request with `bearer`'s token; the answer must be 200 and JSON.
    json::value exchange(http::verb verb, const std::string& target, const std::string& body,
                         const std::string& bearer) {
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + bearer);
        if (!body.empty()) {
            req.set(http::field::content_type, "application/json");
            req.body() = body;
            req.prepare_payload();
        }
        http::write(socket, req);
        http::response<http::string_body> res;
        http::read(socket, buffer, res);
        CHECK(res.result_int() == 200);
        return json::parse(res.body());
    }

    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
    std::optional<server::http_server> srv;
    std::thread thread;
    asio::io_context client_io;
    asio::ip::tcp::socket socket{client_io};
    boost::beast::flat_buffer buffer;
};

} // namespace

TEST_CASE("docs/protocol.md's examples replay against the real server", "[http][docs]") {
    manual_clock clock;
    clock.now_ms = 1764000000000;
    auto service = make_service(clock);

    // The history the page describes: the catalog entry, three reservations from the phone,
    // and the laptop's change of r-2's status.
    Landmark dome = half_dome();
    dome.category = "Mountains";
    dome.image_name = "halfdome";
    dome.latitude = 37.7459;
    dome.longitude = -119.5332;
    dome.description = "A granite dome.";
    REQUIRE(service->admin_put("landmarks", to_json_object(dome)) == 1);
    push_request setup{phone, {}};
    std::uint64_t id = 1;
    for (auto [key, date, party] : {std::tuple{"r-1", "2026-12-24T00:00:00.000Z", 2},
                                    std::tuple{"r-2", "2026-12-31T00:00:00.000Z", 4},
                                    std::tuple{"r-4", "2027-01-15T00:00:00.000Z", 3}}) {
        setup.mutations.push_back({id, "reservations", json::value(key), mutation_op::upsert, 0,
                                   hlc_stamp{1764000000000, std::uint32_t(id), phone},
                                   reservation_value(key, date, party, "confirmed")});
        ++id;
    }
    push_response ignored;
    REQUIRE(!service->push("alice", setup, ignored));
    push_request laptop_edit{laptop,
                             {{1, "reservations", json::value("r-2"), mutation_op::upsert, 3,
                               hlc_stamp{1764000060000, 0, laptop},
                               json::object{{"status", "cancelled"}}}}};
    REQUIRE(!service->push("alice", laptop_edit, ignored));
    REQUIRE(service->last_version() == 5);

    replay_server srv(*service, token + " alice\n");
    auto exchange = [&](http::verb verb, const std::string& target, const std::string& body) {
        return srv.exchange(verb, target, body, token);
    };

    const auto blocks = fenced_blocks(OFFSYNC_DOCS_DIR "/protocol.md");
    std::vector<json::value> examples;
    std::vector<std::string> pull_targets;
    for (const auto& [info, body] : blocks) {
        if (info == "json") examples.push_back(json::parse(body));
        else if (body.rfind("GET /v1/sync/pull?", 0) == 0)
            pull_targets.push_back(body.substr(4, body.find('\n') - 4));
    }
    // The page's order: a stamp, the push request, its response, then the two pull pages.
    REQUIRE(examples.size() >= 5);
    REQUIRE(pull_targets.size() >= 2);

    CHECK(exchange(http::verb::post, "/v1/sync/push", json::serialize(examples[1])) ==
          examples[2]);
    CHECK(exchange(http::verb::get, pull_targets[0], {}) == examples[3]);
    CHECK(exchange(http::verb::get, pull_targets[1], {}) == examples[4]);

}

/// The service of the grouped examples (lists and items) on the page's clock, and the writes
/// of Alice's phone that make their history.
struct grouped_history {
    manual_clock clock;
    std::optional<server::sync_service> service;

    explicit grouped_history(std::initializer_list<const char*> users) {
        clock.now_ms = 1764000000000;
        server::service_config config;
        config.clock = clock.as_wall_clock();
        service.emplace(config);
        service->add_collection<List>();
        service->add_collection<Item>();
        for (const char* user : users) service->add_user(user);
    }
    /// Alice's phone writes `fields` to `key` of `collection`, based on `base`, stamped with
    /// the page's time and `id` as its logical count.
    void write(std::uint64_t id, const char* collection, json::value key, std::uint64_t base,
               json::object fields) {
        push_request request{phone,
                             {{id, collection, std::move(key), mutation_op::upsert, base,
                               hlc_stamp{1764000000000, std::uint32_t(id), phone},
                               std::move(fields)}}};
        push_response response;
        REQUIRE_FALSE(service->push("alice", request, response));
        REQUIRE(response.results[0].status == mutation_status::applied);
    }
};

TEST_CASE("docs/protocol.md's grouped pull replays against the real server", "[http][docs]") {
    // The history the page describes: Alice's phone shares a list of two items with Bob, Bob
    // pulls them, and Alice takes him off the list.
    grouped_history history({"alice", "bob"});
    auto& service = *history.service;
    auto write = [&](std::uint64_t id, const char* collection, const char* key,
                     std::uint64_t base, json::object fields) {
        history.write(id, collection, json::value(key), base, std::move(fields));
    };
    write(1, "lists", "weekend", 0,
          {{"id", "weekend"}, {"title", "Weekend shop"}, {"members", json::array{"alice", "bob"}}});
    write(2, "items", "i1", 0, {{"id", "i1"}, {"list_id", "weekend"}, {"name", "bread"}});
    write(3, "items", "i2", 0, {{"id", "i2"}, {"list_id", "weekend"}, {"name", "apples"}});
    pull_response before;
    REQUIRE_FALSE(service.pull("bob", {"items", 0, 100}, before));
    REQUIRE(before.changes.size() == 2);
    write(4, "lists", "weekend", 1, {{"members", json::array{"alice"}}});

    const std::string bob_token = "bob-replay-token-0123";
    replay_server srv(service, bob_token + " bob\n");
    const auto blocks = fenced_blocks(OFFSYNC_DOCS_DIR "/protocol.md");
    std::string target;
    std::optional<json::value> expected;
    for (std::size_t i = 0; i + 1 < blocks.size(); ++i)
        if (blocks[i].second.rfind("GET /v1/sync/pull?collection=items", 0) == 0 &&
            blocks[i].second.find("subset=") == std::string::npos) {
            target = blocks[i].second.substr(4, blocks[i].second.find('\n') - 4);
            REQUIRE(blocks[i + 1].first == "json");
            expected = json::parse(blocks[i + 1].second);
        }
    REQUIRE(expected);
    CHECK(target == "/v1/sync/pull?collection=items&since=" + std::to_string(before.cursor) +
                        "&limit=100");
    const auto answer = srv.exchange(http::verb::get, target, {}, bob_token);
    INFO(json::serialize(answer));
    CHECK(answer == *expected);
}

TEST_CASE("docs/protocol.md's subset pulls replay against the real server", "[http][docs][partial]") {
    // The history the page describes: Alice's lists `weekend` and `office`, two items in the
    // first and one in the second, written by her phone.
    grouped_history history({"alice"});
    auto& service = *history.service;
    auto write = [&](std::uint64_t id, const char* collection, json::object fields) {
        const auto key = fields.at("id");
        history.write(id, collection, key, 0, std::move(fields));
    };
    write(1, "lists", {{"id", "weekend"}, {"title", "Weekend shop"}, {"members", json::array{"alice"}}});
    write(2, "lists", {{"id", "office"}, {"title", "Office"}, {"members", json::array{"alice"}}});
    write(3, "items", {{"id", "i1"}, {"list_id", "weekend"}, {"name", "bread"}});
    write(4, "items", {{"id", "o1"}, {"list_id", "office"}, {"name", "paper"}});
    write(5, "items", {{"id", "i2"}, {"list_id", "weekend"}, {"name", "apples"}});

    const std::string alice_token = "alice-replay-token-012";
    replay_server srv(service, alice_token + " alice\n");
    const auto blocks = fenced_blocks(OFFSYNC_DOCS_DIR "/protocol.md");
    int replayed = 0;
    for (std::size_t i = 0; i + 1 < blocks.size(); ++i) {
        const auto& text = blocks[i].second;
        if (text.rfind("GET /v1/sync/pull?collection=items", 0) != 0 ||
            text.find("subset=") == std::string::npos)
            continue;
        const auto target = text.substr(4, text.find('\n') - 4);
        REQUIRE(blocks[i + 1].first == "json");
        const auto answer = srv.exchange(http::verb::get, target, {}, alice_token);
        INFO(target);
        INFO(json::serialize(answer));
        CHECK(answer == json::parse(blocks[i + 1].second));
        ++replayed;
    }
    CHECK(replayed == 2);
}
