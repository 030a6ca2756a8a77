#!/bin/sh
# demo.sh TANDEM - the main job on the embedded uvm backend, narrated:
# run the pagetest guest, save it while it runs, prove its memory invariant
# on the saved image, restore it in a new process, and show it carries on
# from where it stopped.
set -eu
T=${1:-build/tandem}
G=$(dirname "$T")/../build/guests
[ -d "$G" ] || G=build/guests
W=$(mktemp -d /tmp/tandem-demo-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$W"' EXIT INT TERM

say() { printf '\n== %s\n' "$*"; }
wait_sock() { for _ in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
passes() { "$T" vm status --control "$1" | sed 's/.*"report":\[[0-9]*,[0-9]*,[0-9]*,\([0-9]*\).*/\1/'; }

say "1. run the pagetest guest (256 MiB, 4096 pages written in order, for ever)"
"$T" vm run "$G/pagetest.elf" --cmdline "pages=4096 print=2000" \
	--control "$W/a.sock" &
pid=$!
wait_sock "$W/a.sock"
sleep 1
"$T" vm status --control "$W/a.sock"
echo "passes so far: $(passes "$W/a.sock")"

say "2. save it while it runs (pause at an event-channel boundary or by preemption)"
"$T" vm save --control "$W/a.sock" "$W/guest.snap" --stop
wait $pid || true
pid=""
ls -l "$W/guest.snap"

say "3. check invariant I4 on the saved memory image"
"$T" vm check "$W/guest.snap"

say "4. restore it in a new process: it continues where it stopped"
"$T" vm restore "$W/guest.snap" --control "$W/b.sock" &
pid=$!
wait_sock "$W/b.sock"
sleep 1
echo "passes after the restore: $(passes "$W/b.sock")"
"$T" vm save --control "$W/b.sock" "$W/again.snap" --stop
wait $pid || true
pid=""
"$T" vm check "$W/again.snap"

say "done: the guest moved between processes with its memory, registers and devices intact"
