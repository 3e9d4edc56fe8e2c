// offsync — the hook the fault-injecting test decorators ask before each operation they forward
// (testing/faulty_storage.hpp on the client, testing/faulty_server_store.hpp on the server).
#pragma once

#include <offsync/error.hpp>

#include <functional>
#include <string>
#include <string_view>

namespace offsync {

/// Asked with an operation's name before a decorator forwards the operation; `true` makes it
/// throw instead, so the wrapped store never sees it. An empty hook injects nothing.
using fault_hook = std::function<bool(std::string_view operation)>;

namespace detail {

/// Throws what a failing store throws, `sync_error` with `errc::storage_failure` and the message
/// "injected <what> failure at <operation>", if `hook` asks for a fault at `operation`.
inline void inject_fault(const fault_hook& hook, std::string_view what,
                         std::string_view operation) {
    if (hook && hook(operation))
        throw sync_error(make_error_code(errc::storage_failure),
                         "injected " + std::string(what) + " failure at " +
                             std::string(operation));
}

} // namespace detail
} // namespace offsync
