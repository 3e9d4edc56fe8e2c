// offsync-bench: the scenarios (docs/benchmarks.md, "The scenarios and what bounds them"). Each
// writes its rows to `out` as it measures them.
#pragma once

#include "options.hpp"
#include "output.hpp"

namespace offsync_bench {

/// The sync rounds (push, pull, incremental, conflict, clients) that `o` asks for, in process
/// then end to end as `--mode` says (scenarios_rounds.cpp).
void run_rounds(const options& o, output& out);

/// The bounds a round is measured against, for each N of `o`: the codec, raw SQLite, the sync
/// service alone and, unless in process only, one HTTP request per record
/// (scenarios_baselines.cpp).
void run_baselines(const options& o, output& out);

/// Sharing on the sync service alone: a pull in 1 of n / 1,000 groups, a join's backfill and a
/// leave's eviction, and the push rate of a grouped collection, each next to the same work on
/// a per-user collection (scenarios_sharing.cpp).
void run_sharing(const options& o, output& out);

/// Live changes end to end (HTTP only): the latency from a push's acknowledgement to the hint
/// and to the record in the store of each of `o.devices` listening devices, and the server's
/// memory per idle change stream with `o.idle_streams` open (scenarios_live.cpp).
void run_live(const options& o, output& out);

} // namespace offsync_bench
