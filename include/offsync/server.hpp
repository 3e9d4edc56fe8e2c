// offsync — umbrella header of the server side: the sync service, the HTTP server and its
// authenticators. The SQLite server store (server/sqlite_store.hpp) needs SQLite and the
// `offsync::sqlite` target; include it on its own. A device program includes none of this.
#pragma once

#include <offsync/server/auth.hpp>
#include <offsync/server/http_server.hpp>
#include <offsync/server/sync_service.hpp>
