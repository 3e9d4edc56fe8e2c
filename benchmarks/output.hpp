// offsync-bench: the JSONL writer. Each measurement is one JSON object on a line of its own,
// to stdout and, with --out, to a file; docs/benchmarks.md explains the fields.
#pragma once

#include "options.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

namespace offsync_bench {

/// Writes rows, each stamped with where the two processes ran (`client_cpus`, `server_cpus`
/// when pinned, `server_threads`).
class output {
public:
    explicit output(const options& o)
        : client_cpus_(o.client_cpus), server_cpus_(o.server_cpus),
          server_threads_(o.server_threads) {
        if (!o.out.empty()) {
            file_.open(o.out, std::ios::trunc);
            if (!file_) throw std::runtime_error("cannot write " + o.out);
        }
    }

    void write(boost::json::object row) {
        if (!client_cpus_.empty()) row["client_cpus"] = client_cpus_;
        if (!server_cpus_.empty()) row["server_cpus"] = server_cpus_;
        row["server_threads"] = server_threads_;
        auto text = boost::json::serialize(row);
        std::cout << text << std::endl;
        if (file_.is_open()) file_ << text << std::endl;
    }

private:
    std::string client_cpus_, server_cpus_;
    int server_threads_;
    std::ofstream file_;
};

} // namespace offsync_bench
