// offsync — random identifiers: a store's client id.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

namespace offsync {

/// Generates a random RFC 4122 version-4 UUID string.
inline std::string make_uuid() {
    std::random_device rd;
    std::mt19937_64 gen((std::uint64_t(rd()) << 32) ^ rd());
    std::uint64_t hi = gen(), lo = gen();
    hi = (hi & ~std::uint64_t(0xF000)) | 0x4000;
    lo = (lo & ~(std::uint64_t(0xC) << 60)) | (std::uint64_t(0x8) << 60);
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", unsigned(hi >> 32),
                  unsigned((hi >> 16) & 0xFFFF), unsigned(hi & 0xFFFF), unsigned(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
    return buf;
}

} // namespace offsync
