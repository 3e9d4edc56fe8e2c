#!/usr/bin/env bash
# What each public header costs a translation unit that includes it alone: the lines the
# preprocessor hands the compiler, and the seconds g++ takes to compile it at -O0 (the
# templates it instantiates are not counted: a header alone instantiates little). Prints a
# Markdown table, heaviest first, for docs/compile-time.md. Run it on an idle machine.
#
#   scripts/header-cost.sh [CXX]
set -euo pipefail
cd "$(dirname "$0")/.."
cxx=${1:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O0 -Iinclude -w)
echo "| header | preprocessed lines | compile at -O0 (s) |"
echo "|---|---:|---:|"
find include/offsync -name '*.hpp' -not -path '*/detail/*' | sed 's|^include/||' | sort |
while read -r header; do
    printf '#include <%s>\n' "$header" >"$work/tu.cpp"
    lines=$("$cxx" "${flags[@]}" -E "$work/tu.cpp" | wc -l)
    start=$(date +%s.%N)
    "$cxx" "${flags[@]}" -c "$work/tu.cpp" -o "$work/tu.o"
    end=$(date +%s.%N)
    awk -v h="$header" -v l="$lines" -v s="$start" -v e="$end" 'BEGIN { printf "%s\t%s\t%.2f\n", h, l, e - s }'
done | sort -t$'\t' -k3 -rn | awk -F'\t' '{ printf "| `%s` | %s | %s |\n", $1, $2, $3 }'
