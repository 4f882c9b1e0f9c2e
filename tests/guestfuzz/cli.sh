#!/bin/sh
# guestfuzz_cli: the fuzzing binaries as a user runs them.
#  - vmbusd-guestfuzz warns loudly at start and per VM, with the seed and the
#    transcript path, survives a fuzzed vmbus-simguest session, writes the
#    transcript; --replay applies it and says so;
#  - vmbus-fuzz-minimize --dump reads it, and minimizing against a command
#    that "crashes" iff two chosen mutations are present keeps exactly those;
#  - the production vmbusd holds no trace of the hook, and `meson install`
#    installs vmbusd but not vmbusd-guestfuzz.
# Usage: cli.sh VMBUSD VMBUSD-GUESTFUZZ VMBUS-FUZZ-MINIMIZE VMBUS-SIMGUEST BUILD-ROOT
set -u
vmbusd=$1
gfuzz=$2
minimize=$3
simguest=$4
build=$5

tmp=$(mktemp -d /tmp/vmbusd-gf-cli.XXXXXX) || exit 1
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() {
    echo "guestfuzz_cli: $*"
    for f in "$tmp"/*.log; do
        [ -f "$f" ] && { echo "---- $f ----"; tail -n 40 "$f"; }
    done
    exit 1
}

cat >"$tmp/vmbusd.conf" <<CONF
[vm demo]
vsp = echo heartbeat shutdown timesync kvp

[vsp echo]
channels = 2

[vsp heartbeat]
interval_ms = 200
CONF

# start LOG ARGS...: vmbusd-guestfuzz in the background, wait for its socket
start() {
    log=$1
    shift
    rm -f "$tmp/vu.sock"
    "$gfuzz" --socket "$tmp/vu.sock" --control '' --config "$tmp/vmbusd.conf" \
        --transcript-dir "$tmp" "$@" >"$tmp/$log" 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$tmp/vu.sock" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            fail "vmbusd-guestfuzz did not start"
        fi
        sleep 0.1
    done
}
stop() {
    kill -0 "$pid" 2>/dev/null || fail "vmbusd-guestfuzz is gone after the fuzzed session"
    kill "$pid"
    wait "$pid" || fail "vmbusd-guestfuzz exited $? on SIGTERM"
    pid=
}

# guest SESSION-LOG: one vmbus-simguest session.  The simulated guest is a
# test tool, not a hardened driver: under a lying host it may fail or loop,
# so its time and output are bounded.
guest() {
    timeout -s KILL 20 "$simguest" --socket "$tmp/vu.sock" --name demo --packets 60 \
        --seconds 1 --wait-ms 400 2>&1 | head -c 200000 >"$tmp/$1"
}

# --- a seeded run: the guest may fail, vmbusd may not.  Only the echo
# channels' traffic and the partition's messages are mutated: the CLI is
# under test here, not the simulated guest's integration services. ---
start fuzz.log --seed 1234 --fuzz p=0.1 --fuzz w.delay=0 --fuzz class=echo --fuzz msgs=1
guest simguest.log
stop
grep -q 'WARNING: GUEST-DRIVER FUZZING BUILD.*mode=fuzz seed=0x00000000000004d2' \
    "$tmp/fuzz.log" || fail "no start warning with the seed"
line=$(grep 'partition demo (id 1): WARNING: FUZZING this VM' "$tmp/fuzz.log") ||
    fail "no per-VM warning"
tr=${line##*transcript=}
[ "$tr" = "$tmp/demo-1.vfz" ] && [ -s "$tr" ] || fail "transcript '$tr' missing"

"$minimize" --dump "$tr" >"$tmp/dump.txt" || fail "--dump failed"
grep -q '^vm .* demo$' "$tmp/dump.txt" || fail "no VM record"
grep -q '^guest-msg' "$tmp/dump.txt" || fail "no guest message recorded"
grep -q '^host' "$tmp/dump.txt" || fail "no host action recorded"
nmut=$(grep -c '^mut' "$tmp/dump.txt")
[ "$nmut" -ge 3 ] || fail "only $nmut mutations with p=0.1"

# --- minimize: "crash" iff the first and the last mutation are present ---
first=$(grep '^mut' "$tmp/dump.txt" | head -n 1 | cut -c 20-)
last=$(grep '^mut' "$tmp/dump.txt" | tail -n 1 | cut -c 20-)
cat >"$tmp/oracle.sh" <<ORACLE
#!/bin/sh
"$minimize" --dump "\$1" >"\$1.txt" || exit 1
grep -qF -- "$first" "\$1.txt" && grep -qF -- "$last" "\$1.txt"
ORACLE
chmod +x "$tmp/oracle.sh"
"$minimize" -q -o "$tmp/min.vfz" "$tr" -- "$tmp/oracle.sh" {} >"$tmp/minimize.log" 2>&1 ||
    fail "minimize exited $?"
"$minimize" --dump "$tmp/min.vfz" >"$tmp/min.txt" || fail "--dump of the result"
[ "$(grep -c '^mut' "$tmp/min.txt")" -eq 2 ] || fail "minimized to $(grep -c '^mut' "$tmp/min.txt") mutations, not 2"
grep -qF -- "$first" "$tmp/min.txt" && grep -qF -- "$last" "$tmp/min.txt" ||
    fail "the minimized transcript lost a needed mutation"
# A transcript that does not crash: exit 2.
"$minimize" -q -o "$tmp/none.vfz" "$tr" -- false >/dev/null 2>&1
[ $? -eq 2 ] || fail "minimize of a non-crashing transcript did not exit 2"

# --- replay: applies the transcript, writes its own ---
start replay.log --replay "$tr"
guest simguest2.log
stop
grep -q "WARNING: GUEST-DRIVER FUZZING BUILD.*(mode=replay mutations=$nmut replay=$tr)" \
    "$tmp/replay.log" || fail "no replay warning naming $nmut mutations of $tr"
[ -s "$tmp/demo-1.1.vfz" ] || fail "the replay overwrote the transcript it replays"
"$minimize" --dump "$tmp/demo-1.1.vfz" | head -n 1 | grep -q '(replay)' || fail "replay flag"

# --- the production binary ---
if nm "$vmbusd" | grep -q 'gf_\|xp_fuzz'; then fail "vmbusd links the fuzzing hook"; fi
if grep -q 'FUZZING' "$vmbusd"; then fail "vmbusd contains the fuzzing warning text"; fi
"$vmbusd" --help | grep -q -- '--seed' && fail "vmbusd offers --seed"
installed=$(meson introspect --installed "$build") || fail "meson introspect"
echo "$installed" | grep -q '/vmbusd"' || fail "vmbusd is not installed: $installed"
echo "$installed" | grep -q 'guestfuzz\|fuzz-minimize' && fail "a fuzzing binary is installed"
echo "guestfuzz_cli: $nmut mutations recorded, minimized to 2, replayed"
exit 0
