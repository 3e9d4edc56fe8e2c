// offsync — umbrella header: everything a client and an in-process server need.
#pragma once

#include <offsync/background.hpp>
#include <offsync/concepts.hpp>
#include <offsync/conflict/ask_user.hpp>
#include <offsync/conflict/last_write_wins.hpp>
#include <offsync/conflict/resolution.hpp>
#include <offsync/conflict/server_wins.hpp>
#include <offsync/engine.hpp>
#include <offsync/error.hpp>
#include <offsync/hlc.hpp>
#include <offsync/json_codec.hpp>
#include <offsync/model.hpp>
#include <offsync/protocol.hpp>
#include <offsync/replica.hpp>
#include <offsync/report.hpp>
#include <offsync/server/sync_service.hpp>
#include <offsync/storage/memory.hpp>
#include <offsync/record.hpp>
#include <offsync/transport/loopback.hpp>
