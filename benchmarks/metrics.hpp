// offsync-bench: what a measurement reads about this process and the machine: wall and CPU
// time, the peak resident set, page faults, the load average, and the CPUs it runs on.
// Linux only (/proc, getrusage, sched_setaffinity).
#pragma once

#include <boost/json/object.hpp>

#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace offsync_bench {

using steady = std::chrono::steady_clock;

inline double seconds_since(steady::time_point t) {
    return std::chrono::duration<double>(steady::now() - t).count();
}
inline double ms(steady::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// ---------------------------------------------------------------------------------------------
// Memory: peak resident set of this process, resettable so each scenario reports its own.

/// A field of /proc/self/status in kB ("VmHWM", "VmRSS"), or -1.
inline long status_kb(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t n = std::strlen(field);
    while (std::getline(in, line))
        if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
            return std::atol(line.c_str() + n + 1);
    return -1;
}

/// Returns freed heap to the system and restarts the peak (VmHWM) from the current RSS.
/// Linux only; if clear_refs is not writable the peak stays the process's lifetime peak.
inline void reset_peak_rss() {
    malloc_trim(0);
    std::ofstream("/proc/self/clear_refs") << "5";
}
inline double peak_rss_mb() { return double(status_kb("VmHWM")) / 1024.0; }

/// CPU time (user + system) this process has used, in seconds: less disturbed than wall time
/// by other work on a shared machine.
inline double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// Page faults (minor and major) this process has taken: on a virtual machine each costs
/// microseconds, and a round that touches new memory or new code pays them.
inline std::int64_t page_faults() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/// The system's 1-minute load average, recorded with every row as a noise indicator.
/// Raises this process's limit of open descriptors to its hard limit: idle change streams
/// hold one socket each.
inline void raise_descriptor_limit() {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

inline double load_average() {
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

// ---------------------------------------------------------------------------------------------
// CPUs.

/// Keeps this process, and the threads it starts from now on, on the CPUs of `list`
/// (comma-separated numbers). The harness's two processes can then be placed apart: on a
/// machine whose cores differ in speed, where each lands decides the figures.
inline void pin_to(const std::string& list) {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        std::size_t used = 0;
        int cpu = -1;
        try {
            cpu = std::stoi(item, &used);
        } catch (const std::exception&) {
        }
        if (cpu < 0 || cpu >= CPU_SETSIZE || used != item.size())
            throw std::invalid_argument("'" + list + "' is not a list of CPU numbers");
        CPU_SET(cpu, &set);
    }
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        throw std::runtime_error("cannot run on CPUs " + list + ": " + std::strerror(errno));
}

/// A fixed loop of integer arithmetic, in ms. A function of its own, aligned to a cache line:
/// where the compiler places the loop changes its speed by up to half (a loop that straddles a
/// 64-byte line ran at 60-95 ms where the same loop within one line ran at 43-55), so without
/// a fixed placement the figure would differ between two builds of the same source.
[[gnu::noinline, gnu::aligned(64)]] inline double calibration_loop_ms() {
    const auto start = steady::now();
    volatile std::uint64_t sink = 0;
    for (std::uint64_t i = 0; i < 100'000'000; ++i) sink = sink + i * i;
    return ms(steady::now() - start);
}

/// How long a fixed loop of integer arithmetic takes on each CPU this process may use, in ms.
/// Written before and after the measurements: the cores of a shared virtual machine do not
/// always run at the same speed (on the project machine one of the two sometimes runs the loop
/// at half the speed of the other), and the figures follow.
inline boost::json::object machine_row() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    boost::json::object loop_ms;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) continue;
        loop_ms[std::to_string(cpu)] = calibration_loop_ms();
    }
    sched_setaffinity(0, sizeof allowed, &allowed);
    return {{"scenario", "machine"}, {"cpu_loop_ms", std::move(loop_ms)},
            {"load_avg", load_average()}};
}

} // namespace offsync_bench
