// The error table: wire names, messages and groups of offsync's codes.
#include <offsync/error.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/error.hpp>

#include <set>
#include <string>

using offsync::condition;
using offsync::errc;
using offsync::error_code;
using offsync::make_error_code;

TEST_CASE("errc: every code's wire name decodes to itself, and names are unique", "[error]") {
    std::set<std::string> names;
    for (const auto& row : offsync::detail::errc_table) {
        INFO(row.wire_name);
        CHECK(std::string(offsync::to_string(row.code)) == row.wire_name);
        CHECK(offsync::errc_from_string(row.wire_name) == row.code);
        CHECK(names.insert(row.wire_name).second);
        CHECK(make_error_code(row.code).message() == row.message);
    }
    // Codes added after server_error are decoded too (a loop up to server_error lost them).
    CHECK(offsync::errc_from_string("headers_too_large") == errc::headers_too_large);
    CHECK(offsync::errc_from_string("method_not_allowed") == errc::method_not_allowed);
}

TEST_CASE("errc: unknown names and values are told apart from real codes", "[error]") {
    CHECK(!offsync::errc_from_string(""));
    CHECK(!offsync::errc_from_string("no_such_code"));
    CHECK(!offsync::errc_from_string("NOT_FOUND")); // wire names are exact
    const error_code beyond(999, offsync::offsync_category());
    CHECK(beyond.message() == "unknown offsync error");
    CHECK(std::string(offsync::to_string(static_cast<errc>(999))) == "unknown");
    CHECK(std::string(offsync::to_string(static_cast<errc>(-1))) == "unknown");
}

TEST_CASE("errc_of: offsync's codes as themselves, others as the fallback", "[error]") {
    CHECK(offsync::errc_of(make_error_code(errc::read_only)) == errc::read_only);
    CHECK(offsync::errc_of(boost::asio::error::connection_refused) == errc::server_error);
    CHECK(offsync::errc_of(boost::asio::error::connection_refused, errc::transport_failure) ==
          errc::transport_failure);
    CHECK(offsync::errc_of(error_code(999, offsync::offsync_category())) == errc::server_error);
    CHECK(offsync::errc_of(error_code{}, errc::bad_response) == errc::bad_response);
}

TEST_CASE("conditions group the codes a caller acts on alike", "[error]") {
    for (auto e : {errc::malformed_json, errc::invalid_field, errc::unknown_field,
                   errc::unknown_collection, errc::invalid_id, errc::batch_too_large,
                   errc::cursor_ahead, errc::read_only, errc::forbidden, errc::not_found,
                   errc::version_conflict, errc::method_not_allowed,
                   errc::unsupported_media_type, errc::headers_too_large}) {
        INFO(offsync::to_string(e));
        const error_code ec = e;
        CHECK(ec == condition::bad_request);
        CHECK(ec != condition::retry_later);
    }
    for (auto e : {errc::transport_failure, errc::bad_response, errc::server_error}) {
        const error_code ec = e;
        CHECK(ec == condition::retry_later);
        CHECK(ec != condition::bad_request);
    }
    CHECK(error_code(errc::unauthorized) == condition::unauthorized);
    for (auto e : {errc::storage_failure, errc::no_such_conflict, errc::not_parked})
        CHECK(error_code(e) == condition::local_storage);
    // Every code but ok is in exactly one group.
    for (const auto& row : offsync::detail::errc_table) {
        const error_code ec = row.code;
        int groups = 0;
        for (auto c : {condition::bad_request, condition::unauthorized, condition::retry_later,
                       condition::local_storage})
            groups += ec == c;
        INFO(row.wire_name);
        CHECK(groups == (row.code == errc::ok ? 0 : 1));
    }
}

TEST_CASE("conditions: the network's own errors are retry_later, a cancellation is none",
          "[error]") {
    for (error_code ec : {error_code(boost::asio::error::connection_refused),
                          error_code(boost::asio::error::connection_reset),
                          error_code(boost::asio::error::timed_out),
                          error_code(boost::asio::error::host_not_found),
                          error_code(boost::asio::error::eof),
                          error_code(boost::asio::error::broken_pipe)}) {
        INFO(ec.message());
        CHECK(ec == condition::retry_later);
        CHECK(ec != condition::bad_request);
    }
    // A name that will not resolve however long one waits is no reason to retry.
    CHECK(error_code(boost::asio::error::no_recovery) != condition::retry_later);
    const error_code aborted = boost::asio::error::operation_aborted;
    for (auto c : {condition::bad_request, condition::unauthorized, condition::retry_later,
                   condition::local_storage})
        CHECK(aborted != c);
    CHECK(make_error_condition(condition::retry_later).message() ==
          "the request may succeed later");
}
