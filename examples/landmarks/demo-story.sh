#!/usr/bin/env bash
# The Landmarks story over the network, with programs already built: a landmarks-server on
# 127.0.0.1 and three `landmarks` devices, each on its own SQLite file. Alice's phone and laptop
# go offline, favorite different landmarks and both change one reservation; back online they
# sync, the reservation conflicts, Alice settles it on the laptop, and both devices end equal.
# Bob's device shows that Alice's favorites and reservations are hers alone, until she shares
# the reservation with him: he sees it and edits its notes, she sees his edit, and when she
# takes him off it his device drops it. Then the laptop syncs only next year's bookings
# (partial sync), then all of them again. Last, the laptop watches the server's change stream,
# and a booking made on the phone is on its screen within milliseconds.
#
#   examples/landmarks/demo-story.sh BUILD_DIR
#
# Checks every step itself and exits non-zero if the story does not hold. Stops the server and
# removes its temporary files however it ends. run-demo.sh installs, builds, then runs this.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unset LANDMARKS_DB LANDMARKS_SERVER LANDMARKS_TOKEN LANDMARKS_USER # only what the script passes counts
build=${1:?usage: demo-story.sh BUILD_DIR}
# BUILD_DIR is the project's build directory, or the directory holding the programs themselves.
bin=$build/examples/landmarks
[ ! -x "$build/landmarks" ] || bin=$build
for program in landmarks landmarks-server; do
    if [ ! -x "$bin/$program" ]; then
        echo "demo-story: $bin/$program is not built (ninja -C $build $program)" >&2
        exit 2
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-demo.XXXXXX")
server_pid=
watch_pid=
cleanup() {
    if [ -n "$watch_pid" ]; then
        kill "$watch_pid" 2>/dev/null || true
        wait "$watch_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token_of() { awk -v user="$1" '$2 == user { print $1 }' "$here/tokens.txt"; }
user_of() { awk -v token="$1" '$1 == token { print $2 }' "$here/tokens.txt"; }
alice=$(token_of alice)
bob=$(token_of bob)

# Where the devices sync while "offline": an address no server listens on.
offline=127.0.0.1:1
online=

failures=0
expect() { # expect DESCRIPTION COMMAND...: counts a failure when the command fails
    local what=$1
    shift
    if ! "$@"; then
        echo "  !! expected: $what"
        failures=$((failures + 1))
    fi
}

section() { printf '\n== %s\n' "$*"; }

# The arguments as one would type them: those with spaces in double quotes.
typed() {
    local out=() a
    for a in "$@"; do
        if [[ $a == *" "* ]]; then out+=("\"$a\""); else out+=("$a"); fi
    done
    echo "${out[*]}"
}

# device NAME TOKEN SERVER EXPECTED-EXIT ARGS...: runs one `landmarks` command on NAME's file,
# shows it as typed and its output indented, and checks its exit status.
device() {
    local name=$1 token=$2 server=$3 want=$4 rc=0
    shift 4
    printf '  [%s] $ landmarks %s\n' "$name" "$(typed "$@")"
    timeout 60 "$bin/landmarks" --db "$work/$name.db" --token "$token" \
        --user "$(user_of "$token")" --server "$server" --timeout 20 "$@" >"$work/out" 2>&1 || rc=$?
    sed 's/^/      /' "$work/out"
    expect "landmarks $* on $name exits $want (it exited $rc)" test "$rc" -eq "$want"
}

# json NAME TOKEN ARGS...: a command's --json document, for the checks (not shown).
json() {
    local name=$1 token=$2
    shift 2
    timeout 60 "$bin/landmarks" --db "$work/$name.db" --token "$token" --server "$online" \
        --json "$@" 2>/dev/null || true
}
has() { grep -qF -- "$2" <<<"$1"; }

# wait_for FILE TEXT SECONDS: until FILE holds TEXT, polling every 10 ms; fails after SECONDS.
wait_for() {
    local deadline=$(($(date +%s) + $3))
    until grep -qF -- "$2" "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.01
    done
}

section "1. The server starts with the shared catalog"
"$bin/landmarks-server" --port 0 --data "$work/server.db" --tokens "$here/tokens.txt" \
    --catalog "$here/catalog.json" >"$work/server.log" 2>"$work/server.err" &
server_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) with.*/\1/p' "$work/server.err")
    [ -n "$port" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$work/server.err" >&2
        echo "demo-story: landmarks-server did not start" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "demo-story: landmarks-server printed no port" >&2
    exit 1
fi
online=127.0.0.1:$port
sed 's/^/  /' "$work/server.err"

section "2. Alice's phone and laptop fetch the catalog; the phone books Half Dome"
device phone "$alice" "$online" 0 sync
device phone "$alice" "$online" 0 reserve 1 --id r-1 --date 2026-12-24 --party 2
device phone "$alice" "$online" 0 sync
device laptop "$alice" "$online" 0 sync
device laptop "$alice" "$online" 0 list reservations
expect "the laptop sees the booking" has "$(json laptop "$alice" list reservations)" '"id":"r-1"'

section "3. Offline: each device favorites a landmark, and both change the booking"
device phone "$alice" "$offline" 0 favorite 1
device phone "$alice" "$offline" 0 reserve 1 --id r-1 --party 3 --notes "bringing a friend"
device laptop "$alice" "$offline" 0 favorite 16
device laptop "$alice" "$offline" 0 reserve 1 --id r-1 --party 4
echo "  The laptop tries to sync with no network: nothing is lost, the edits wait."
device laptop "$alice" "$offline" 3 sync
device laptop "$alice" "$offline" 0 status

section "4. Back online: the phone syncs first, then the laptop"
device phone "$alice" "$online" 0 sync
echo "  Both changed the party size: the laptop's sync stops on a conflict (exit 1)."
device laptop "$alice" "$online" 1 sync
device laptop "$alice" "$online" 0 conflicts
doc=$(json laptop "$alice" conflicts)
expect "one conflict, on r-1" has "$doc" '"id":"r-1"'
expect "the laptop changed party_size only" has "$doc" '"changed_here":["party_size"]'

section "5. Alice keeps the laptop's party size; the phone's note, untouched there, stays"
device laptop "$alice" "$online" 0 resolve r-1 keep-mine
device laptop "$alice" "$online" 0 sync
device phone "$alice" "$online" 0 sync

section "6. Converged: both devices equal the server"
for name in phone laptop; do
    device "$name" "$alice" "$online" 0 list favorites
    device "$name" "$alice" "$online" 0 list reservations
done
for name in phone laptop; do
    doc=$(json "$name" "$alice" list reservations)
    expect "$name: r-1 is a party of 4" has "$doc" '"party_size":4'
    expect "$name: r-1 keeps the note" has "$doc" '"notes":"bringing a friend"'
    expect "$name: r-1 is synced" has "$doc" '"sync":"synced"'
    doc=$(json "$name" "$alice" list favorites)
    expect "$name: Half Dome is a favorite" has "$doc" '"id":1,'
    expect "$name: Niagara Falls is a favorite" has "$doc" '"id":16,'
    expect "$name: exactly two favorites" test "$(grep -o '"is_favorite":true' <<<"$doc" | wc -l)" -eq 2
    doc=$(json "$name" "$alice" status)
    expect "$name: nothing waits" has "$doc" '"dirty":0,"conflicts":0,"rejected":0,"last_sync"'
done
expect "phone and laptop hold the same reservations" \
    test "$(json phone "$alice" list reservations)" = "$(json laptop "$alice" list reservations)"
expect "phone and laptop hold the same favorites" \
    test "$(json phone "$alice" list favorites)" = "$(json laptop "$alice" list favorites)"

section "7. Bob's device: the same catalog, none of Alice's favorites or reservations"
device bob "$bob" "$online" 0 sync
device bob "$bob" "$online" 0 list favorites
device bob "$bob" "$online" 0 list reservations
catalog_size=$(grep -c '"id":' "$here/catalog.json")
expect "bob sees the whole catalog ($catalog_size landmarks)" \
    test "$(json bob "$bob" list | grep -o '"is_favorite":' | wc -l)" -eq "$catalog_size"
expect "bob has no favorites" has "$(json bob "$bob" list favorites)" '"landmarks":[]'
expect "bob has no reservations" has "$(json bob "$bob" list reservations)" '"reservations":[]'

section "8. Alice shares r-1 with Bob, who joins the party and edits its notes"
device phone "$alice" "$online" 0 share r-1 bob
device phone "$alice" "$online" 0 sync
device bob "$bob" "$online" 0 sync
device bob "$bob" "$online" 0 list reservations
expect "bob sees r-1" has "$(json bob "$bob" list reservations)" '"id":"r-1"'
device bob "$bob" "$online" 0 reserve 1 --id r-1 --notes "bob brings the snacks"
device bob "$bob" "$online" 0 sync
device laptop "$alice" "$online" 0 sync
device laptop "$alice" "$online" 0 members r-1
doc=$(json laptop "$alice" list reservations)
expect "alice's laptop sees bob's note" has "$doc" '"notes":"bob brings the snacks"'
expect "r-1 is alice's and bob's" has "$doc" '"members":["alice","bob"]'

section "9. Alice takes Bob off r-1: his device drops it, hers keep it"
device laptop "$alice" "$online" 0 unshare r-1 bob
device laptop "$alice" "$online" 0 sync
device bob "$bob" "$online" 0 sync
device bob "$bob" "$online" 0 list reservations
expect "bob no longer has r-1" has "$(json bob "$bob" list reservations)" '"reservations":[]'
device phone "$alice" "$online" 0 sync
doc=$(json phone "$alice" list reservations)
expect "alice's phone keeps r-1 with bob's note" has "$doc" '"notes":"bob brings the snacks"'
expect "r-1 is alice's alone again" has "$doc" '"members":["alice"]'

section "10. Alice's laptop keeps only next year's bookings; the others stay on the server"
device phone "$alice" "$online" 0 reserve 16 --id r-2 --date 2027-06-01 --party 2
device phone "$alice" "$online" 0 sync
device laptop "$alice" "$online" 0 sync-from 2027-01-01
device laptop "$alice" "$online" 0 sync
device laptop "$alice" "$online" 0 list reservations
doc=$(json laptop "$alice" list reservations)
expect "the laptop holds r-2" has "$doc" '"id":"r-2"'
expect "the laptop dropped r-1 (dated 2026)" eval '! has "$doc" "\"id\":\"r-1\""'
expect "the phone keeps both" has "$(json phone "$alice" list reservations)" '"id":"r-1"'
device laptop "$alice" "$online" 0 sync-from all
device laptop "$alice" "$online" 0 sync
expect "r-1 is back on the laptop" has "$(json laptop "$alice" list reservations)" '"id":"r-1"'

section "11. Live: the laptop watches; a booking made on the phone shows there at once"
watch_log=$work/watch.log
printf '  [laptop] $ landmarks watch --interval 3600 &   (a round an hour, and the stream)\n'
"$bin/landmarks" --db "$work/laptop.db" --token "$alice" --user alice --server "$online" \
    --timeout 20 watch --interval 3600 >"$watch_log" 2>&1 &
watch_pid=$!
expect "the laptop's change stream is live" wait_for "$watch_log" "stream live" 20
device phone "$alice" "$online" 0 reserve 12 --id r-3 --notes "booked on the phone"
device phone "$alice" "$online" 0 sync
synced=$(date +%s%N)
expect "the laptop's watch shows r-3" wait_for "$watch_log" "changed: reservation r-3" 10
shown=$(date +%s%N)
kill -INT "$watch_pid"
watch_rc=0
wait "$watch_pid" || watch_rc=$?
watch_pid=
sed 's/^/      /' "$watch_log"
printf '  The laptop showed r-3 %d ms after the phone'"'"'s sync ended (polled every 10 ms);\n' \
    $(((shown - synced) / 1000000))
printf '  no round of its own was due for an hour.\n'
expect "the watch stops cleanly on Ctrl-C (it exited $watch_rc)" test "$watch_rc" -eq 0
expect "the laptop holds r-3" has "$(json laptop "$alice" list reservations)" '"id":"r-3"'

if [ "$failures" -ne 0 ]; then
    printf '\nThe story did not hold: %d check(s) failed. The server said:\n' "$failures"
    tail -n 20 "$work/server.err" "$work/server.log" | sed 's/^/  /'
    exit 1
fi
printf '\nEvery device equals the server: offline edits kept, the conflict settled by Alice,\n'
printf 'r-1 shared with Bob and taken back, a laptop that syncs only part of them, and a\n'
printf 'booking that reached the watching laptop as soon as the phone synced it.\n'
