// offsync — a store transaction that notes the records it writes, for change listeners.
#pragma once

#include <offsync/changes.hpp>
#include <offsync/forwarding.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace offsync::detail {

/// Wraps a store transaction it does not own and, when `recording`, notes the value of every
/// record written through it: what the commit will have changed, for the change listeners,
/// with no read of its own. Writes of metadata alone (`save_metadata`, `acknowledge`) change
/// no value and are not noted. The optional capabilities are forwarded (forwarding.hpp), so
/// the rules take the same paths as on the bare transaction. A record saved as `deleted` is
/// noted as gone: a local delete hides it from the app at once.
template <class Txn>
class recording_transaction : public forwarding_transaction<Txn&> {
public:
    recording_transaction(Txn& next, std::string collection, bool recording)
        : forwarding_transaction<Txn&>(next), recording_(recording) {
        noted_.collection = std::move(collection);
    }

    /// What was written, to publish once the wrapped transaction has committed.
    committed_changes take() { return std::exchange(noted_, {noted_.collection, {}}); }
    bool recording() const noexcept { return recording_; }

    void save(std::string_view c, std::string_view k, const local_record& r) {
        this->next().save(c, k, r);
        note(k, r);
    }
    void remove(std::string_view c, std::string_view k) {
        this->next().remove(c, k);
        if (recording_) noted_.records.push_back({std::string(k), std::nullopt});
    }
    bool insert_new(std::string_view c, std::string_view k, const local_record& r)
        requires inserting_transaction<Txn>
    {
        const bool inserted = this->next().insert_new(c, k, r);
        if (inserted) note(k, r);
        return inserted;
    }

private:
    void note(std::string_view k, const local_record& r) {
        if (!recording_) return;
        if (r.deleted) noted_.records.push_back({std::string(k), std::nullopt});
        else noted_.records.push_back({std::string(k), r.value});
    }

    bool recording_;
    committed_changes noted_;
};

} // namespace offsync::detail
