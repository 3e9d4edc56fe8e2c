#!/usr/bin/env bash
# The story of docs/tutorial.md with the programs already built: a todo-server on 127.0.0.1 and
# Alice's phone and laptop, each a `todo` device on its own SQLite file. The phone adds tasks,
# the laptop receives them; both comment on one task while offline, the laptop settles the
# conflict, and a `watch` on one device sees the other's edit arrive. Bob sees nothing of it.
#
#   examples/todo/tutorial.sh BUILD_DIR
#
# Checks every step and exits non-zero if the story does not hold. Stops the server and removes
# its temporary files however it ends.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unset TODO_SERVER TODO_TOKEN
build=${1:?usage: tutorial.sh BUILD_DIR}
bin=$build/examples/todo
[ ! -x "$build/todo" ] || bin=$build
for program in todo todo-server; do
    [ -x "$bin/$program" ] || { echo "tutorial: $bin/$program is not built" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/todo-tutorial.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
expect() { # expect DESCRIPTION COMMAND...
    local what=$1
    shift
    if ! "$@"; then
        echo "  !! expected: $what"
        failures=$((failures + 1))
    fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }

"$bin/todo-server" --port 0 --data "$work/server.db" --tokens "$here/tokens.txt" \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/server.out")
[ -n "$url" ] || { echo "tutorial: the server did not start" >&2; cat "$work/server.err" >&2; exit 1; }
echo "server at $url"

alice=alice-phone-and-laptop-01
bob=bob-only-device-000000001
phone() { timeout 30 "$bin/todo" --db "$work/phone.db" --server "$url" --token "$alice" "$@"; }
laptop() { timeout 30 "$bin/todo" --db "$work/laptop.db" --server "$url" --token "$alice" "$@"; }
offline_laptop() { timeout 30 "$bin/todo" --db "$work/laptop.db" --server http://127.0.0.1:1 --token "$alice" "$@"; }
bobs() { timeout 30 "$bin/todo" --db "$work/bob.db" --server "$url" --token "$bob" "$@"; }

echo "== the phone adds tasks and syncs"
phone add t1 "Buy milk" --due 2027-01-10 --priority 1
phone add t2 "Book flights" --due 2027-01-31 --priority 3
phone add t3 "Paint the fence" --priority 0
out=$(phone sync)
echo "$out"
expect "the phone sends its three tasks" contains "$out" "synced: 3 sent"

echo "== the laptop receives them and queries them"
out=$(laptop sync)
expect "the laptop receives three tasks" contains "$out" "3 received"
out=$(laptop list --due-before 2027-01-20)
echo "$out"
expect "only milk is due before the 20th" contains "$out" "t1 [ ] Buy milk"
expect "flights are due later" lacks "$out" "t2"
expect "a task without a due date is not listed" lacks "$out" "t3"
laptop done t1
out=$(laptop list --open)
expect "a task ticked off leaves the open list" lacks "$out" "t1"
laptop sync >/dev/null

echo "== both comment on the flights while apart; the laptop settles it"
phone sync >/dev/null
laptop comment c1 t2 "window seats"
laptop sync >/dev/null
phone sync >/dev/null
phone comment c1 t2 "window seats, please"
offline_laptop comment c1 t2 "aisle seats" # the laptop is offline
out=$(offline_laptop sync || true)
phone sync >/dev/null
out=$(laptop sync)
echo "$out"
expect "the laptop meets one conflict" contains "$out" "1 conflict(s) to settle"
out=$(laptop conflicts)
echo "$out"
expect "the conflict shows both sides" contains "$out" 'c1: mine "aisle seats", the server'"'"'s "window seats, please"'
laptop resolve c1 merge "window or aisle, whichever is free"
out=$(laptop resolve c1 mine 2>&1 && echo settled-twice || echo "exit $?")
expect "a conflict cannot be settled twice" contains "$out" "exit 3"
laptop sync >/dev/null
phone sync >/dev/null
out=$(phone comments)
echo "$out"
expect "the merged comment reaches the phone" contains "$out" "c1 on t2: window or aisle, whichever is free"
expect "no conflict is left" test -z "$(laptop conflicts)"

echo "== a watch on the laptop sees the phone's edit arrive"
laptop watch 4 >"$work/watch.out" 2>&1 &
watch_pid=$!
sleep 1
phone add t4 "Renew passport" --due 2027-02-15 --priority 2
phone sync >/dev/null
wait "$watch_pid" || true
out=$(cat "$work/watch.out")
echo "$out"
expect "the watch prints the new task" contains "$out" "changed: t4 [ ] Renew passport"

echo "== Bob sees none of Alice's tasks"
bobs sync >/dev/null
expect "Bob's list is empty" test -z "$(bobs list)"

echo "== bad input is refused, saying why"
out=$(phone add t9 "x" --priority 7 2>&1 || echo "exit $?")
expect "a priority out of range" contains "$out" "--priority takes 0, 1, 2 or 3"
out=$(timeout 30 "$bin/todo" --db "$work/phone.db" --server "http://127.0.0.1:99999" list 2>&1 || echo "exit $?")
expect "a port out of range, with exit 2" contains "$out" "is not a number from 1 to 65535"
out=$(timeout 30 "$bin/todo" --db "$work/phone.db" --server "$url" --token wrong-token-00000000 sync 2>&1 || echo "exit $?")
expect "a refused token fails the sync, naming the cause" contains "$out" "exit 1"
expect "the cause is the token" contains "$out" "HTTP 401: token not accepted"
out=$(phone done nope 2>&1 || echo "exit $?")
expect "an unknown task" contains "$out" "exit 3"
printf 'short alice\n' >"$work/bad-tokens.txt"
out=$("$bin/todo-server" --port 0 --tokens "$work/bad-tokens.txt" --data "$work/x.db" 2>&1 || echo "exit $?")
expect "a bad tokens file names its line" contains "$out" "bad-tokens.txt:1: token shorter than 16 bytes"

if [ "$failures" -ne 0 ]; then
    echo "tutorial: $failures step(s) did not turn out as described" >&2
    exit 1
fi
echo "tutorial: every step turned out as described"
