// offsync — a store transaction that notes the records it writes, for change listeners.
#pragma once

#include <offsync/changes.hpp>
#include <offsync/forwarding.hpp>

#include <string_view>
#include <utility>

namespace offsync::detail {

/// Wraps a store transaction it does not own and hands every record written through it to
/// the change listeners' builders (`commit_notes`, from `change_hub::begin`), which decode it
/// for the subscriptions as it is written: no read and no copy of its own. Nothing is noted
/// when nobody watches the collection. Writes of metadata alone (`save_metadata`,
/// `acknowledge`) change no value and are not noted. The optional capabilities are forwarded
/// (forwarding.hpp), so the rules take the same paths as on the bare transaction. A record
/// saved as `deleted` is noted as gone: a local delete hides it from the app at once.
template <class Txn>
class recording_transaction : public forwarding_transaction<Txn&> {
public:
    recording_transaction(Txn& next, commit_notes notes)
        : forwarding_transaction<Txn&>(next), notes_(std::move(notes)) {}

    /// What was written, to publish (`change_hub::publish`) once the wrapped transaction has
    /// committed.
    commit_notes take() { return std::exchange(notes_, {}); }
    bool recording() const noexcept { return notes_.recording(); }
    /// About `n` records will be written (a pull page's size).
    void reserve_notes(std::size_t n) { notes_.reserve(n); }

    void save(std::string_view c, std::string_view k, const local_record& r) {
        this->next().save(c, k, r);
        note(k, r);
    }
    void remove(std::string_view c, std::string_view k) {
        this->next().remove(c, k);
        if (notes_.recording()) notes_.note(k, nullptr);
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
        if (notes_.recording()) notes_.note(k, r.deleted ? nullptr : &r.value);
    }

    commit_notes notes_;
};

} // namespace offsync::detail
