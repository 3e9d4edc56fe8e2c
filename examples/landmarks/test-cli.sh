#!/usr/bin/env bash
# End-to-end tests of the `landmarks` command-line device against a real landmarks-server on
# 127.0.0.1 (CTest runs one case per test).
#
#   examples/landmarks/test-cli.sh BUILD_DIR CASE
#
# CASE: happy-path, server-down, bad-token, unknown-ids, usage, json, watch, sharing. Every command runs under
# `timeout`; the server and the temporary files are removed however the test ends.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unset LANDMARKS_DB LANDMARKS_SERVER LANDMARKS_TOKEN LANDMARKS_USER # only what the script passes counts
build=${1:?usage: test-cli.sh BUILD_DIR CASE}
case_name=${2:?usage: test-cli.sh BUILD_DIR CASE}
# BUILD_DIR is the project's build directory, or the directory holding the programs themselves.
bin=$build/examples/landmarks
[ ! -x "$build/landmarks" ] || bin=$build
cli=$bin/landmarks

work=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-test.XXXXXX")
server_pid=
cleanup() {
    stop_server
    rm -rf "$work"
}
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token_of() { awk -v user="$1" '$2 == user { print $1 }' "$here/tokens.txt"; }
alice=$(token_of alice)
bob=$(token_of bob)
carol=$(token_of carol)

failures=0
failed() {
    echo "FAIL: $*"
    echo "  exit status: $rc"
    sed 's/^/  stdout: /' "$work/stdout"
    sed 's/^/  stderr: /' "$work/stderr"
    failures=$((failures + 1))
}

# Starts landmarks-server on a free port; sets $server to HOST:PORT.
start_server() {
    "$bin/landmarks-server" --port 0 --data "$work/server.db" --tokens "$here/tokens.txt" \
        --catalog "$here/catalog.json" >"$work/server.log" 2>"$work/server.err" &
    server_pid=$!
    local port=
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) with.*/\1/p' "$work/server.err")
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        cat "$work/server.err"
        echo "FAIL: landmarks-server did not start"
        exit 1
    fi
    server=127.0.0.1:$port
}

server=127.0.0.1:1 # until a server starts: an address nothing listens on
token=$alice

# The user a token signs in as (tokens.txt), passed as --user: a new reservation's first member.
user_of_token() { awk -v token="$1" '$1 == token { print $2 }' "$here/tokens.txt"; }

# lm DEVICE ARGS...: runs `landmarks` on DEVICE's file with $server and $token (and the token's
# user); sets $rc and leaves stdout and stderr in $work/stdout and $work/stderr.
lm() {
    local db=$1
    shift
    rc=0
    last_args="$* (on $db)"
    local auth=()
    [ -z "$token" ] || auth=(--token "$token")
    local user
    user=$(user_of_token "$token")
    [ -z "$user" ] || auth+=(--user "$user")
    timeout 60 "$cli" --db "$work/$db.db" --server "$server" "${auth[@]}" --timeout 20 "$@" \
        >"$work/stdout" 2>"$work/stderr" || rc=$?
}

# expect STATUS [TEXT]: the last command exited with STATUS and, if given, printed TEXT
# (stdout or stderr).
expect() {
    local what="landmarks ${last_args:-}"
    if [ "$rc" -ne "$1" ]; then
        failed "$what: expected exit status $1"
        return 0
    fi
    if [ $# -ge 2 ] && ! grep -qF -- "$2" "$work/stdout" "$work/stderr"; then
        failed "$what: expected output containing '$2'"
    fi
}

# run EXPECTED-STATUS [TEXT] -- DEVICE ARGS...: lm + expect.
run() {
    local want=$1 text=
    shift
    if [ "$1" != "--" ]; then
        text=$1
        shift
    fi
    shift # --
    lm "$@"
    if [ -n "$text" ]; then expect "$want" "$text"; else expect "$want"; fi
}

# A JSON parser to check --json output with, if the machine has one (Debian's base image has
# neither jq nor python3; then a shape check has to do).
jq=$(command -v jq || true)
python=
if [ -z "$jq" ] && command -v python3 >/dev/null 2>&1; then
    python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
fi

# The last command printed exactly one JSON document on stdout.
json_valid() {
    if [ "$(wc -l <"$work/stdout")" -ne 1 ]; then
        failed "landmarks ${last_args:-}: expected one line of JSON on stdout"
        return 0
    fi
    local ok=0
    if [ -n "$jq" ]; then
        "$jq" -e . <"$work/stdout" >/dev/null 2>&1 || ok=1
    elif [ -n "$python" ]; then
        "$python" -c 'import json, sys; json.load(sys.stdin)' <"$work/stdout" 2>/dev/null || ok=1
    else
        grep -qE '^\{.*\}$' "$work/stdout" || ok=1
    fi
    [ "$ok" -eq 0 ] || failed "landmarks ${last_args:-}: stdout is not valid JSON"
}

json_has() { # json_has TEXT: the last --json document contains TEXT
    grep -qF -- "$1" "$work/stdout" || failed "landmarks ${last_args:-}: JSON lacks '$1'"
}

case_happy_path() {
    start_server
    # Both of alice's devices fetch the catalog; the phone books a visit, the laptop sees it.
    run 0 "pulled 34" -- phone sync
    run 0 "Reserved r-1" -- phone reserve 1 --id r-1 --date 2026-12-24 --party 2
    run 0 "(pending)" -- phone list reservations
    run 0 -- phone sync
    run 0 -- laptop sync
    run 0 "r-1" -- laptop list reservations
    # A reservation without --id gets an id of its own.
    run 0 "Reserved r-" -- laptop reserve 3 --date 2027-05-01
    # Offline edits on both: different favorites, the same reservation's party size.
    local online=$server
    server=127.0.0.1:1
    run 0 -- phone favorite 1
    run 0 -- laptop favorite 2
    run 0 -- phone reserve 1 --id r-1 --party 3 --notes "window seat"
    run 0 -- laptop reserve 1 --id r-1 --party 5
    run 3 "cannot reach the server" -- laptop sync
    # Back online (the same server: it kept running).
    server=$online
    run 0 "Everything is in sync" -- phone sync
    run 1 "waits for you" -- laptop sync
    run 0 "party_size" -- laptop conflicts
    run 0 "Conflicts    1" -- laptop status
    lm laptop --json status
    json_has '"conflicts":1'
    # This time the server's version wins.
    run 0 "Took the server's version of r-1" -- laptop resolve r-1 use-server
    run 5 "no conflict or rejected change waits on 'r-1'" -- laptop resolve r-1 use-server
    run 0 "Everything is in sync" -- laptop sync
    run 0 -- phone sync
    for device in phone laptop; do
        lm "$device" --json list reservations
        json_has '"id":"r-1","landmark_id":1,"date":"2026-12-24T00:00:00.000Z","party_size":3,"status":"confirmed","notes":"window seat"'
        lm "$device" --json list favorites
        json_has '"id":1,'
        json_has '"id":2,'
    done
    # A cancellation and an unfavorite travel too.
    run 0 "Cancelled r-1" -- phone cancel r-1
    run 0 "Already cancelled" -- phone cancel r-1
    run 0 "no longer a favorite" -- phone unfavorite 2
    run 0 -- phone sync
    run 0 -- laptop sync
    lm laptop --json list reservations
    json_has '"status":"cancelled"'
    lm laptop --json list favorites
    json_has '"id":1,'
    if grep -qF '"id":2,' "$work/stdout"; then failed "laptop: landmark 2 is still a favorite"; fi
    # The last sync is remembered in the file.
    lm laptop --json status
    json_has '"result":"ok"'
    json_has '"dirty":0,"conflicts":0,"rejected":0,"last_sync"'
    # Bob sees none of it.
    token=$bob
    run 0 -- bob sync
    lm bob --json list reservations
    json_has '"reservations":[]'
    lm bob --json list favorites
    json_has '"landmarks":[]'
}

case_server_down() {
    # Never any server: the first sync fails, edits keep working.
    run 0 "No landmarks on this device yet" -- phone list
    run 3 "cannot reach the server at 127.0.0.1:1" -- phone sync
    run 3 "nothing is lost" -- phone sync
    lm phone --json sync
    json_valid
    json_has '"exit_code":3'
    json_has '"code":"unreachable"'
    # With a catalog fetched, every command but sync works with the server gone.
    start_server
    run 0 -- phone sync
    local gone=$server
    stop_server
    server=$gone
    run 0 -- phone list
    run 0 -- phone favorite 4
    run 0 -- phone reserve 4 --id r-9 --party 2 --date 2026-08-01
    run 0 -- phone cancel r-9
    run 0 "No conflicts" -- phone conflicts
    run 3 "cannot reach the server at $gone" -- phone sync
    run 0 "To push      2 changes" -- phone status
    run 0 "failed: cannot reach the server" -- phone status
    lm phone --json status
    json_has '"result":"unreachable"'
    json_has '"dirty":2'
    # The server comes back (a new one, in memory: the phone's catalog and edits go up again).
    start_server
    run 0 "Everything is in sync" -- phone sync
}

case_bad_token() {
    start_server
    token=not-a-token
    run 4 "refused the token (401 Unauthorized)" -- phone sync
    lm phone --json sync
    json_valid
    json_has '"exit_code":4'
    json_has '"code":"unauthorized"'
    token=
    run 4 "sync needs a token" -- phone sync
    LANDMARKS_TOKEN=$bob run 0 "pulled 34" -- phone sync
    run 0 "Last sync" -- phone status
}

case_unknown_ids() {
    run 5 "no catalog yet" -- phone favorite 1
    start_server
    run 0 -- phone sync
    run 5 "no landmark 999 in the catalog" -- phone favorite 999
    run 5 "no landmark 999" -- phone unfavorite 999
    run 5 "no landmark 999" -- phone reserve 999
    run 5 "no reservation 'r-nope'" -- phone cancel r-nope
    run 5 "no conflict or rejected change waits on 'r-nope'" -- phone resolve r-nope keep-mine
    lm phone --json cancel r-nope
    json_valid
    json_has '"exit_code":5'
    json_has '"code":"unknown_reservation"'
    lm phone --json favorite 999
    json_has '"code":"unknown_landmark"'
}

case_usage() {
    run 2 "no command given" -- phone
    run 2 "unknown command 'frobnicate'" -- phone frobnicate
    run 2 "unknown option --bogus" -- phone list --bogus
    run 2 "missing value after --notes" -- phone reserve 1 --notes
    run 2 "usage: landmarks favorite" -- phone favorite
    run 2 "a landmark id is a number" -- phone favorite abc
    run 2 "--party takes a number" -- phone reserve 1 --party 0
    run 2 "--date takes a day" -- phone reserve 1 --date 2026-13-01
    # A day the reservation's date cannot hold was wrapped into another (9999 became 1816).
    run 2 "from 1677-09-22 to 2262-04-11" -- phone reserve 1 --date 9999-12-31
    run 2 "from 1677-09-22 to 2262-04-11" -- phone reserve 1 --date 1600-01-01
    run 2 "belong to the reserve command" -- phone list --party 3
    run 2 "resolve takes keep-mine or use-server" -- phone resolve r-1 maybe
    run 2 "list shows landmarks, favorites or reservations" -- phone list bogus
    run 2 "--server takes HOST:PORT" -- phone --server nohost sync
    run 2 "--timeout takes seconds" -- phone --timeout 0 sync
    run 0 "exit status:" -- phone help
    for command in list favorite unfavorite reserve cancel sync status conflicts resolve watch share unshare members; do
        grep -q "^  $command" "$work/stdout" || failed "help does not mention $command"
    done
    run 0 "usage: landmarks" -- phone --help
    lm phone --json frobnicate
    json_valid
    json_has '"exit_code":2'
    # A file that is not a database is a storage error, and the file is left alone.
    echo "not a database" >"$work/junk.db"
    run 6 "not a usable SQLite database" -- junk status
    grep -qx "not a database" "$work/junk.db" || failed "the junk file was changed"
    run 6 "cannot open" -- missing-dir/x list
    # The server refuses a data file that exists but holds no store (a truncated file) rather
    # than start afresh with versions from 1.
    : >"$work/empty-server.db"
    rc=0
    timeout 20 "$bin/landmarks-server" --port 0 --data "$work/empty-server.db" \
        --tokens "$here/tokens.txt" --catalog "$here/catalog.json" \
        >"$work/stdout" 2>"$work/stderr" || rc=$?
    last_args="landmarks-server --data (an empty file)"
    expect 1 "holds no offsync server store"
    [ ! -s "$work/empty-server.db" ] || failed "the empty data file was written to"
}

case_json() {
    start_server
    local commands=(
        "sync" "list" "list favorites" "list reservations" "favorite 1" "unfavorite 1"
        "favorite 2" "reserve 1 --id r-1 --party 2 --date 2026-12-24 --notes x" "cancel r-1"
        "status" "conflicts" "sync"
    )
    local c
    for c in "${commands[@]}"; do
        # shellcheck disable=SC2086 # word splitting intended
        lm phone --json $c
        expect 0
        json_valid
        json_has "\"exit_code\":0"
    done
    # A conflict and its resolution, in JSON.
    run 0 -- laptop sync
    run 0 -- laptop reserve 1 --id r-1 --party 7
    run 0 -- phone reserve 1 --id r-1 --party 8
    run 0 -- phone sync
    lm laptop --json sync
    expect 1
    json_valid
    json_has '"outcome":"deferred"'
    lm laptop --json conflicts
    json_valid
    json_has '"mine":{'
    json_has '"server":{'
    # reserve also confirms the reservation the laptop had seen cancelled
    json_has '"changed_here":["party_size","status"]'
    lm laptop --json resolve r-1 keep-mine
    json_valid
    json_has '"choice":"keep-mine"'
    # Errors are JSON too.
    lm laptop --json resolve r-1 keep-mine
    json_valid
    json_has '"exit_code":5'
}

case_watch() {
    # Server down: every round fails, with backoff (1 s, then 2 s), and the exit says why.
    run 3 "cannot reach the server" -- phone watch --rounds 2 --interval 1
    run 0 "failed: cannot reach the server" -- phone status
    start_server
    # The laptop edits while the phone watches: the phone's rounds bring its edit down.
    run 0 -- laptop sync
    run 0 -- laptop reserve 2 --id r-w --party 3
    run 0 -- laptop sync
    run 0 "Stopped after 2 rounds" -- phone watch --rounds 2 --interval 1
    expect 0 "changed: reservation r-w, " # ... and prints the record that changed as it lands
    run 0 "r-w" -- phone list reservations
    run 0 "To push      0 changes" -- phone status
    lm phone --json watch --rounds 1 --interval 1
    expect 0
    json_valid
    json_has '"rounds":1'
    json_has '"dirty":0'
    json_has '"changes":['
    # A refused token ends the watch with exit 4; bad values are usage errors.
    token=not-a-token-at-all-0000
    run 4 "refused the token" -- phone watch --rounds 1
    token=$alice
    run 2 "--interval takes seconds" -- phone watch --interval 0
    run 2 "--rounds takes a number" -- phone watch --rounds x
    run 2 "belong to the watch command" -- phone sync --rounds 2
    # Ctrl-C (SIGINT) stops a watch without a round limit cleanly.
    interrupt_watch 2
    last_args="watch (interrupted)"
    expect 0 "Stopped after"
    # Ctrl-C while a round hangs (the server frozen with SIGSTOP): the round is cancelled,
    # which is no failure of the sync; the watch ends at once with exit 0 and says so.
    kill -STOP "$server_pid"
    interrupt_watch 1
    kill -CONT "$server_pid"
    last_args="watch (interrupted mid-round)"
    expect 0 "The round in progress was cancelled"
}

# interrupt_watch SECONDS: runs the phone's `watch` without a round limit, sends it SIGINT after
# SECONDS, and waits for it (at most 20 s, then SIGKILL); sets $rc. Not under `timeout`, which
# would pass the signal on twice (to the program and to its process group).
interrupt_watch() {
    "$cli" --db "$work/phone.db" --server "$server" --token "$alice" watch --interval 1 \
        >"$work/stdout" 2>"$work/stderr" &
    local watch_pid=$!
    sleep "$1"
    kill -INT "$watch_pid"
    for _ in $(seq 200); do
        kill -0 "$watch_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$watch_pid" 2>/dev/null || true
    rc=0
    wait "$watch_pid" || rc=$?
}

case_sharing() {
    start_server
    # Alice books, shares the booking with Bob; he sees it, edits its notes, she sees his edit.
    run 0 -- phone sync
    run 0 "Reserved r-1" -- phone reserve 1 --id r-1 --date 2026-12-24 --party 2
    run 0 "Shared r-1 with bob; its members: alice, bob" -- phone share r-1 bob
    run 0 "already shared with bob" -- phone share r-1 bob
    run 0 -- phone sync
    token=$bob
    run 0 -- bob sync
    run 0 "is shared by: alice, bob" -- bob members r-1
    run 0 "Changed r-1" -- bob reserve 1 --id r-1 --notes "bob brings snacks"
    run 0 "Everything is in sync" -- bob sync
    token=$alice
    run 0 -- phone sync
    lm phone --json list reservations
    json_has '"notes":"bob brings snacks","members":["alice","bob"]'
    # Carol never sees it, and her booking of the same id is refused, never merged into it.
    token=$carol
    run 0 -- carol sync
    lm carol --json list reservations
    json_has '"reservations":[]'
    run 0 -- carol reserve 2 --id r-1
    run 1 "rejected" -- carol sync
    run 0 "forbidden" -- carol status
    run 2 "cannot be kept" -- carol resolve r-1 keep-mine
    run 0 "no longer shares it with you" -- carol resolve r-1 use-server
    lm carol --json list reservations
    json_has '"reservations":[]'
    # Bob edits offline while Alice takes him off: his device drops the booking, and his edit
    # waits as rejected until he drops it; Alice's copy never sees it.
    token=$bob
    server_saved=$server
    server=127.0.0.1:1
    run 0 -- bob reserve 1 --id r-1 --party 9
    server=$server_saved
    token=$alice
    run 0 "Unshared r-1 with bob; its members: alice" -- phone unshare r-1 bob
    run 0 "not shared with bob" -- phone unshare r-1 bob
    run 0 -- phone sync
    token=$bob
    run 1 "rejected" -- bob sync
    run 0 "forbidden" -- bob status
    run 0 "no longer shares it with you" -- bob resolve r-1 use-server
    lm bob --json list reservations
    json_has '"reservations":[]'
    run 0 "Everything is in sync" -- bob sync
    token=$alice
    run 0 -- phone sync
    lm phone --json list reservations
    json_has '"party_size":2,"status":"confirmed","notes":"bob brings snacks","members":["alice"]'
    # Bad input: each refused, nothing changed.
    run 2 "cannot unshare a reservation with yourself" -- phone unshare r-1 alice
    run 2 "usage: landmarks share" -- phone share r-1
    run 2 "a user name is 1 to 256 printable bytes" -- phone share r-1 "bad name"
    run 5 "no reservation 'r-nope'" -- phone share r-nope bob
    run 5 "no reservation 'r-nope'" -- phone members r-nope
    lm phone --json members r-1
    json_has '"members":["alice"]'
    # A name the server does not know: the sync reports the change rejected, it is dropped,
    # and the booking stays as the server has it.
    run 0 -- phone share r-1 zed
    run 1 "rejected" -- phone sync
    run 0 "is not a known user" -- phone status
    run 0 "the server's version stays" -- phone resolve r-1 use-server
    lm phone --json members r-1
    json_has '"members":["alice"]'
    # A new booking needs to know who books it.
    rc=0
    timeout 60 "$cli" --db "$work/phone.db" --server "$server" --token "$alice" reserve 1 \
        >"$work/stdout" 2>"$work/stderr" || rc=$?
    last_args="reserve 1 without --user"
    expect 2 "needs --user NAME"
    rc=0
    timeout 60 "$cli" --db "$work/phone.db" --server "$server" --token "$alice" unshare r-1 bob \
        >"$work/stdout" 2>"$work/stderr" || rc=$?
    last_args="unshare without --user"
    expect 2 "needs --user NAME"
    rc=0
    LANDMARKS_USER=alice timeout 60 "$cli" --db "$work/phone.db" --server "$server" \
        --token "$alice" reserve 1 >"$work/stdout" 2>"$work/stderr" || rc=$?
    last_args="reserve 1 with LANDMARKS_USER"
    expect 0 "Reserved r-"
    run 2 "--user takes a user name" -- phone --user "" list
}

case_partial_sync() {
    start_server
    # Alice books a visit for 2026 and one for 2027 on her phone; her tablet keeps 2027 on.
    run 0 -- phone sync
    run 0 "Reserved r-old" -- phone reserve 1 --id r-old --date 2026-12-24
    run 0 "Reserved r-new" -- phone reserve 2 --id r-new --date 2027-03-01
    run 0 -- phone sync
    run 0 -- tablet sync
    lm tablet --json status
    json_has '"reservations":2,'
    json_has '"reservations_from":null'
    run 0 "This device now syncs reservations dated from 2027-01-01 on (from the next sync)" \
        -- tablet sync-from 2027-01-01
    run 0 "already syncs reservations dated from 2027-01-01" -- tablet sync-from 2027-01-01
    run 0 -- tablet sync
    lm tablet --json list reservations
    json_has '"id":"r-new"'
    if grep -qF '"id":"r-old"' "$work/stdout"; then failed "the tablet still holds r-old"; fi
    run 0 "syncing those dated from 2027-01-01 on" -- tablet status
    # The server keeps r-old: the phone still has it, and a change to it does not reach the
    # tablet; a booking moved into 2027 does.
    run 0 -- phone reserve 1 --id r-old --notes "still on"
    run 0 -- phone sync
    run 0 -- tablet sync
    lm tablet --json list reservations
    if grep -qF '"id":"r-old"' "$work/stdout"; then failed "r-old came back to the tablet"; fi
    run 0 -- phone reserve 1 --id r-old --date 2027-02-02
    run 0 -- phone sync
    run 0 -- tablet sync
    lm tablet --json list reservations
    json_has '"id":"r-old"'
    # An edit made offline to a booking the subset then drops is pushed before it leaves.
    run 0 -- tablet sync-from 2027-03-01
    run 0 "Changed r-old" -- tablet reserve 1 --id r-old --notes "from the tablet"
    run 0 "Everything is in sync" -- tablet sync
    lm tablet --json list reservations
    if grep -qF '"id":"r-old"' "$work/stdout"; then failed "r-old stayed on the tablet"; fi
    run 0 -- phone sync
    lm phone --json list reservations
    json_has '"notes":"from the tablet"'
    # `all` brings every booking back; it survives a restart of the program (each command is one).
    run 0 "This device now syncs all reservations" -- tablet sync-from all
    run 0 -- tablet sync
    lm tablet --json list reservations
    json_has '"id":"r-old"'
    json_has '"id":"r-new"'
    lm tablet --json status
    json_has '"reservations_from":null'
    # Bad input: refused, nothing changed.
    run 2 "sync-from takes a day as YYYY-MM-DD or 'all', not '2027-13-01'" -- tablet sync-from 2027-13-01
    run 2 "usage: landmarks sync-from" -- tablet sync-from
    run 2 "usage: landmarks sync-from" -- tablet sync-from 2027-01-01 2027-02-01
    lm tablet --json status
    json_has '"reservations_from":null'
}

case "$case_name" in
happy-path) case_happy_path ;;
server-down) case_server_down ;;
bad-token) case_bad_token ;;
unknown-ids) case_unknown_ids ;;
usage) case_usage ;;
json) case_json ;;
watch) case_watch ;;
sharing) case_sharing ;;
partial-sync) case_partial_sync ;;
*)
    echo "test-cli.sh: unknown case '$case_name'" >&2
    exit 2
    ;;
esac

if [ "$failures" -ne 0 ]; then
    echo "$case_name: $failures check(s) failed"
    exit 1
fi
echo "$case_name: every check passed"
