#!/usr/bin/env bash
# Installs what offsync needs to build on Debian bookworm. Idempotent: installs only what is
# missing. Never installs libboost-dev / libboost-all-dev: those pull Boost 1.74 and remove 1.81.
set -euo pipefail
packages=(cmake ninja-build g++ ccache libboost1.81-dev libboost-json1.81-dev catch2 libsqlite3-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    echo "offsync setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
