// offsync — one page of a collection's change feed, merged from up to two feeds of the store:
// a shared collection with per-user fields has its shared records in one feed and each user's
// own values in another, and a user sees both as one feed, in version order.
#pragma once

#include <offsync/server/store.hpp>

#include <cstddef>
#include <optional>
#include <vector>

namespace offsync::server::detail {

/// Walks two feed pages (each ascending by version) as one, in version order, for at most
/// `limit` records. Each page must hold one record more than the limit when more follow in its
/// feed, so that `has_more()` can tell. The same key may come from both pages (the shared record
/// and this user's values of it): the caller counts it once.
class feed_merge {
public:
    /// The record taken next, and whether it came from the second page.
    struct step {
        server_record& record;
        bool second;
    };

    feed_merge(std::vector<server_record>& first, std::vector<server_record>& second,
               std::size_t limit)
        : pages_{&first, &second}, limit_(limit) {}

    /// The next record in version order, nullopt once `limit` records were taken or both
    /// pages are used up.
    std::optional<step> next() {
        if (taken_ == limit_ || !(live(0) || live(1))) return std::nullopt;
        const int f = !live(0)   ? 1
                      : !live(1) ? 0
                                 : ((*pages_[0])[next_[0]].version <
                                            (*pages_[1])[next_[1]].version
                                        ? 0
                                        : 1);
        ++taken_;
        return step{(*pages_[f])[next_[f]++], f == 1};
    }

    /// Whether records are left beyond those taken.
    bool has_more() const { return live(0) || live(1); }

private:
    bool live(int f) const { return next_[f] < pages_[f]->size(); }

    std::vector<server_record>* pages_[2];
    std::size_t next_[2] = {0, 0};
    std::size_t limit_;
    std::size_t taken_ = 0;
};

} // namespace offsync::server::detail
