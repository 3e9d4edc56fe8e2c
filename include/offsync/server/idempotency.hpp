// offsync — idempotent pushes: the results the service remembers per client, so that a retried
// mutation (a push whose answer was lost) is answered as it was the first time, not applied
// twice.
#pragma once

#include <offsync/protocol/messages.hpp>
#include <offsync/server/store.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace offsync::server::detail {

/// One client's remembered results, for the length of one push (inside its transaction).
/// `client` is the store's key of the client: the user and the client id, so that two users'
/// devices never share results.
class remembered_results {
public:
    remembered_results(server_store& store, std::string client)
        : store_(store), client_(std::move(client)), newest_(store_.newest_result(client_)) {}

    /// The result remembered for `mutation_id`, if any. A client's ids grow; ids above the
    /// newest remembered one are new and are not looked up (a first upload is all such ids).
    std::optional<mutation_result> recall(std::uint64_t mutation_id) {
        if (newest_ && mutation_id > *newest_) return std::nullopt;
        return store_.find_result(client_, mutation_id);
    }

    /// Remembers `result`; a repeat of its id later in the same push is then recalled.
    void remember(const mutation_result& result) {
        store_.remember_result(client_, result);
        if (newest_ && result.mutation_id > *newest_) newest_ = result.mutation_id;
    }

    /// Forgets all but the client's `window` newest results. After a push's results are all
    /// remembered, so that a retry within the push has been answered already.
    void keep_newest(std::size_t window) { store_.keep_newest_results(client_, window); }

private:
    server_store& store_;
    std::string client_;
    std::optional<std::uint64_t> newest_; ///< nullopt: the store cannot tell; look every id up
};

} // namespace offsync::server::detail
