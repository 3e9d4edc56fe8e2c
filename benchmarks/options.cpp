// offsync-bench: the argument parser (options.hpp).
#include "options.hpp"

#include <algorithm>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace offsync_bench {

namespace {

std::vector<std::size_t> parse_list(const std::string& s) {
    std::vector<std::size_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(std::stoull(item));
    return out;
}

bool known_scenarios(const std::string& list) {
    static const char* scenarios[] = {"all",      "push",    "pull",     "incremental",
                                      "conflict", "clients", "baseline", "listeners",
                                      "sharing",  "live"};
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ','))
        if (std::find(std::begin(scenarios), std::end(scenarios), item) == std::end(scenarios))
            return false;
    return true;
}

} // namespace

bool options::wants(std::string_view s) const {
    if (scenario == "all") return true;
    std::stringstream in(scenario);
    std::string item;
    while (std::getline(in, item, ','))
        if (item == s) return true;
    return false;
}

void usage(std::ostream& out) {
    out << "usage: offsync-bench [--quick] [--scenario all|push,pull,incremental,conflict,"
           "clients,baseline,listeners,sharing,live]\n"
           "                     [--mode inproc|http|both] [--n LIST] [--k LIST] "
           "[--clients LIST] [--listeners LIST]\n"
           "                     [--devices LIST] [--idle-streams N]\n"
           "                     [--conflicts LIST] [--batch N] [--page N] "
           "[--durability full|normal]\n"
           "                     [--server-store memory|sqlite] [--naive-max N] [--dir DIR] "
           "[--out FILE]\n"
           "                     [--client-cpus LIST] [--server-cpus LIST] "
           "[--server-threads N]\n"
           "LIST is comma-separated, e.g. --n 1000,100000. Output: one JSON line per "
           "measurement.\n";
}

std::optional<int> parse_options(int argc, char** argv, options& o) {
    bool n_set = false, k_set = false, c_set = false, conf_set = false, dev_set = false,
         idle_set = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--quick") o.quick = true;
        else if (a == "--scenario") o.scenario = value();
        else if (a == "--mode") o.mode = value();
        else if (a == "--n") o.n = parse_list(value()), n_set = true;
        else if (a == "--k") o.k = parse_list(value()), k_set = true;
        else if (a == "--clients") o.clients = parse_list(value()), c_set = true;
        else if (a == "--conflicts") o.conflicts = parse_list(value()), conf_set = true;
        else if (a == "--listeners") o.listeners = parse_list(value());
        else if (a == "--devices") o.devices = parse_list(value()), dev_set = true;
        else if (a == "--idle-streams") o.idle_streams = std::stoul(value()), idle_set = true;
        else if (a == "--batch") o.batch = std::stoul(value());
        else if (a == "--page") o.page = std::uint32_t(std::stoul(value()));
        else if (a == "--durability") o.durability = value();
        else if (a == "--server-store") o.server_store = value();
        else if (a == "--naive-max") o.naive_max = std::stoul(value());
        else if (a == "--dir") o.dir = value();
        else if (a == "--out") o.out = value();
        else if (a == "--client-cpus") o.client_cpus = value();
        else if (a == "--server-cpus") o.server_cpus = value();
        else if (a == "--server-threads") o.server_threads = std::max(1, std::stoi(value()));
        else if (a == "--help" || a == "-h") return usage(std::cerr), 0;
        else {
            usage(std::cerr);
            return 2;
        }
    }
    if (o.quick) {
        if (!n_set) o.n = {2000};
        if (!k_set) o.k = {10, 100};
        if (!c_set) o.clients = {4};
        if (!conf_set) o.conflicts = {100};
        if (!dev_set) o.devices = {1, 10};
        if (!idle_set) o.idle_streams = 100;
        o.naive_max = std::min<std::size_t>(o.naive_max, 300);
    }
    if (!known_scenarios(o.scenario) ||
        (o.mode != "inproc" && o.mode != "http" && o.mode != "both")) {
        usage(std::cerr);
        return 2;
    }
    return std::nullopt;
}

} // namespace offsync_bench
