// offsync — kept so that code written before December 2026 still compiles: the client store's
// record types moved to <offsync/record.hpp>, where the rules in detail/ may include them.
#pragma once

#include <offsync/record.hpp>
