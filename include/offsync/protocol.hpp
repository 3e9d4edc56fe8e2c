// offsync — wire protocol v1, all of it: the messages (protocol/messages.hpp), their JSON form
// (protocol/json.hpp, protocol/text_writer.hpp) and their HTTP framing (protocol/http.hpp).
// Sans-I/O: no sockets here. docs/protocol.md describes every message with examples.
#pragma once

#include <offsync/protocol/http.hpp>
#include <offsync/protocol/json.hpp>
#include <offsync/protocol/messages.hpp>
#include <offsync/protocol/text_writer.hpp>
