// offsync — umbrella header of the client side: models, typed queries, change listeners, the
// replica, the engine, background sync, the in-memory store, the loopback and HTTP transports,
// and the in-process sync service the loopback talks to. Not included: the SQLite stores
// (they need SQLite: storage/sqlite.hpp, server/sqlite_store.hpp), the device facade
// (device.hpp, which includes the SQLite store) and the HTTP server (server.hpp).
#pragma once

#include <offsync/background.hpp>
#include <offsync/changes.hpp>
#include <offsync/concepts.hpp>
#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/conflict/resolution.hpp>
#include <offsync/conflict/server_wins.hpp>
#include <offsync/engine.hpp>
#include <offsync/forwarding.hpp>
#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/json_codec.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>
#include <offsync/query.hpp>
#include <offsync/replica.hpp>
#include <offsync/report.hpp>
#include <offsync/server/sync_service.hpp>
#include <offsync/storage/memory.hpp>
#include <offsync/record.hpp>
#include <offsync/transport/http.hpp>
#include <offsync/transport/loopback.hpp>
