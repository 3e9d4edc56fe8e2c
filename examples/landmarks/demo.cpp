// The Landmarks story, in one process: a server and two devices of one user. The devices go
// offline, each favorites a landmark and both change the same reservation; they sync, the
// reservation conflicts and waits for the user, who keeps the laptop's version; both devices
// end equal to the server. Exits non-zero if any step of the story does not hold.
#include "model.hpp"

#include <offsync/offsync.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

namespace asio = boost::asio;
using landmarks::Landmark;
using landmarks::Reservation;
using engine_type = offsync::basic_sync_engine<offsync::memory_storage, offsync::loopback_transport>;

namespace {

int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) {
        std::printf("  !! expected: %s\n", what);
        ++failures;
    }
}

struct device {
    device(const char* name, asio::io_context& io, offsync::server::sync_service& server)
        : name(name), replica(storage), transport(io.get_executor(), server, "alice"),
          engine(io.get_executor(), replica, transport), io(io) {
        engine.add_collections(landmarks::models{}); // each with its traits' policy
    }

    offsync::sync_report sync() {
        std::optional<offsync::sync_report> out;
        engine.async_sync([&](offsync::error_code, offsync::sync_report r) { out = std::move(r); });
        io.restart();
        io.run();
        const auto& r = *out;
        std::printf("  [%s] sync: pushed %zu, applied %zu, pulled %zu, conflicts %zu%s%s\n", name,
                    r.pushed, r.applied, r.pulled, r.conflict_count(),
                    r.error ? ", error: " : "", r.error ? r.error_message.c_str() : "");
        for (const auto& c : r.conflicts)
            std::printf("  [%s]   conflict on %s/%s -> %s\n", name, c.collection.c_str(),
                        c.key.c_str(), offsync::to_string(c.outcome));
        return *out;
    }

    void show() {
        std::printf("  [%s] favorites:", name);
        for (const auto& l : replica.list<Landmark>())
            if (l.is_favorite) std::printf(" %s;", l.name.c_str());
        auto r = replica.get<Reservation>("r-1");
        std::printf("  reservation r-1: party of %d, %s, \"%s\"\n", r ? r->party_size : 0,
                    r ? r->status.c_str() : "-", r ? r->notes.c_str() : "");
    }

    const char* name;
    offsync::memory_storage storage;
    offsync::basic_replica<offsync::memory_storage> replica;
    offsync::loopback_transport transport;
    engine_type engine;
    asio::io_context& io;
};

void favorite(device& d, std::int64_t id) {
    auto l = *d.replica.get<Landmark>(id);
    l.is_favorite = true;
    d.replica.put(l);
    std::printf("  [%s] favorites %s (offline)\n", d.name, l.name.c_str());
}

} // namespace

int main(int argc, char** argv) {
    const char* catalog_path = argc > 1 ? argv[1] : LANDMARKS_CATALOG;
    std::ifstream file(catalog_path);
    if (!file) {
        std::fprintf(stderr, "cannot open catalog %s\n", catalog_path);
        return 2;
    }
    std::stringstream text;
    text << file.rdbuf();

    offsync::server::sync_service server;
    server.add_collections(landmarks::models{});
    server.add_user("alice"); // reservations are shared by name: the service knows its users
    boost::system::error_code parse_error;
    const auto catalog = boost::json::parse(text.str(), parse_error);
    if (parse_error || !catalog.is_array()) {
        std::fprintf(stderr, "catalog %s is not a JSON array\n", catalog_path);
        return 2;
    }
    for (const auto& item : catalog.as_array()) {
        if (!item.is_object()) {
            std::fprintf(stderr, "catalog entries must be objects\n");
            return 2;
        }
        offsync::diagnostics error;
        if (!server.admin_put("landmarks", item.as_object(), {}, &error)) {
            std::fprintf(stderr, "bad catalog entry: %s\n", error.message.c_str());
            return 2;
        }
    }

    asio::io_context io;
    device phone("phone ", io, server), laptop("laptop", io, server);

    std::puts("1. Both devices sync the catalog; the phone books a visit to Half Dome.");
    Reservation booking{"r-1", 1, std::chrono::sys_days{std::chrono::year{2026} / 12 / 24}, 2,
                        "confirmed", "", {"alice"}};
    phone.replica.put(booking);
    phone.sync();
    laptop.sync();
    expect(laptop.replica.get<Reservation>("r-1").has_value(), "the laptop sees the booking");

    std::puts("\n2. Offline: each device favorites a landmark, and both change the booking.");
    favorite(phone, 1);
    favorite(laptop, 2);
    auto on_phone = *phone.replica.get<Reservation>("r-1");
    on_phone.party_size = 3;
    on_phone.notes = "bringing a friend";
    phone.replica.put(on_phone);
    std::puts("  [phone ] party of 3, note \"bringing a friend\" (offline)");
    auto on_laptop = *laptop.replica.get<Reservation>("r-1");
    on_laptop.party_size = 4;
    laptop.replica.put(on_laptop);
    std::puts("  [laptop] party of 4 (offline)");
    std::printf("  [laptop] waiting to sync: %zu landmark, %zu reservation\n",
                laptop.replica.pending<Landmark>().dirty,
                laptop.replica.pending<Reservation>().dirty);

    std::puts("\n3. Back online: the phone syncs first, then the laptop.");
    expect(!phone.sync().error, "the phone's round succeeds");
    auto report = laptop.sync();
    expect(report.deferred == 1, "the party size conflicts and is asked of the user");
    auto conflicts = laptop.replica.conflicts<Reservation>();
    expect(conflicts.size() == 1, "one conflict waits on the laptop");
    if (!conflicts.empty() && conflicts[0].mine && conflicts[0].server)
        std::printf("  [laptop] conflict: yours has party_size %d, the server's has %d\n",
                    int(conflicts[0].mine->party_size), int(conflicts[0].server->party_size));

    std::puts("\n4. The user keeps the laptop's party size; the phone's note, a field the laptop"
              "\n   did not touch, is kept too.");
    laptop.replica.resolve<Reservation>("r-1", offsync::resolve_choice::keep_mine);
    laptop.sync();
    phone.sync();

    std::puts("\n5. Converged:");
    phone.show();
    laptop.show();
    auto p = *phone.replica.get<Reservation>("r-1");
    auto l = *laptop.replica.get<Reservation>("r-1");
    expect(p.party_size == 4 && l.party_size == 4, "party of 4 everywhere");
    expect(p.notes == "bringing a friend" && l.notes == "bringing a friend", "the note survives");
    expect(phone.replica.get<Landmark>(1)->is_favorite && phone.replica.get<Landmark>(2)->is_favorite,
           "both favorites on the phone");
    expect(laptop.replica.get<Landmark>(1)->is_favorite &&
               laptop.replica.get<Landmark>(2)->is_favorite,
           "both favorites on the laptop");
    expect(server.get("bob", "landmarks", "1")->value.at("is_favorite") == false,
           "favorites are alice's own: bob sees none");
    expect(laptop.replica.conflicts<Reservation>().empty() && laptop.replica.pending<Reservation>().dirty == 0,
           "nothing left to sync");
    std::puts(failures ? "\nThe story did not hold." : "\nEvery replica equals the server.");
    return failures ? 1 : 0;
}
