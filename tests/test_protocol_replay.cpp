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

    asio::io_context io;
    std::istringstream tokens(token + " alice\n");
    server::http_server srv(io.get_executor(), *service,
                            server::token_file_authenticator::parse(tokens));
    srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    auto work = asio::make_work_guard(io);
    std::thread server_thread([&] { io.run_for(std::chrono::seconds(30)); });

    asio::io_context client_io;
    asio::ip::tcp::socket socket(client_io);
    socket.connect(srv.local_endpoint());
    boost::beast::flat_buffer buffer;
    auto exchange = [&](http::verb verb, const std::string& target, const std::string& body) {
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + token);
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

    socket.close();
    srv.async_shutdown([&](error_code) { work.reset(); });
    server_thread.join();
}
