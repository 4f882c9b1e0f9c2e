#!/bin/sh
# vmbusctl against canned control-socket answers (a stand-in for vmbusd that
# answers every request with the contents of a file): what vmbusd writes is
# shown exactly as before, guest-supplied text cannot drive the terminal,
# and malformed answers are refused with a reason.
# The transcript of all cases is compared with vmbusctl-answers.expected,
# written by the vmbusctl that had its own JSON reader (before jansson), as
# of the commit that added the VMM pid/uid/gid line (the list --rings cases
# at its end: by the commit that added them); the parser's own words after
# "malformed answer from vmbusd:" are left out.
# usage: vmbusctl-answers.sh VMBUSCTL PYTHON3 EXPECTED [--write]
set -eu
vmbusctl=$1
python=$2
expected=$3
write=${4:-}
. "$(dirname "$0")/lib.sh"
sdk_tmp vmbusctl-answers
ctl="$tmp/ctl.sock"
"$python" - "$ctl" "$tmp/answer" <<'PY' &
import os, socket, sys
path, answer = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
# listening before the name appears: a client never finds it refusing
s.bind(path + ".new")
s.listen(4)
os.rename(path + ".new", path)
while True:
    c, _ = s.accept()
    req = b""
    while not req.endswith(b"\n"):
        d = c.recv(4096)
        if not d:
            break
        req += d
    with open(answer, "rb") as f:
        c.sendall(f.read().rstrip(b"\n") + b"\n")
    c.close()
PY
bg_pids=$!
i=0
while [ ! -S "$ctl" ]; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "stand-in control socket missing after 10 s"
    sleep 0.05
done

# case ANSWER-PRINTF-FORMAT ARGS...: vmbusctl's exit status, stdout, stderr
case_() {
    printf "$1" >"$tmp/answer"
    shift
    set +e
    "$vmbusctl" --socket "$ctl" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    set -e
    {
        echo "\$ vmbusctl $*  (exit $got)"
        cat "$tmp/out"
        sed 's/\(malformed answer from vmbusd:\).*/\1 .../' "$tmp/err"
    } >>"$tmp/transcript"
}

# a list answer as vmbusd writes it, with hostile guest strings
list='{"ok":true,"partitions":[{"id":1,"name":"web","vcpus":2,"connected":true,"version":"5.3","messages_in":12,"messages_out":14,"guest_errors":0,"channels":[{"relid":1,"class":"57164f39-9115-4e78-ab55-382f3bd5422d","instance":"7c6a1f4e-3b7d-4f0e-9c31-5a0d2e8b4f01","subchannel":0,"state":"open","target_vp":0,"in_fill_pct":0,"out_fill_pct":3},{"relid":2,"class":"00000000-0000-0000-0000-000000000000","instance":"7c6a1f4e-3b7d-4f0e-9c31-5a0d2e8b4f02","subchannel":1,"state":"offered","target_vp":1,"in_fill_pct":100,"out_fill_pct":0}],"status":{"heartbeat.seq":"42","heartbeat.state":"ok","heartbeat.version":"3.0","kvp.2.OSName":"Linux \\"x\\"\\u001b[2J","kvp.2.C1":"a\\u0085b\\u00e9\\ud83d\\ude00","kvp.0.tab":"a\\tb\\\\c\\/d"}},{"id":7,"name":"caf\\u00e9\\u001b]0;x\\u0007","vcpus":1,"connected":false,"version":"0.0","messages_in":0,"messages_out":0,"guest_errors":1,"channels":[],"status":{}},{"id":8,"name":"8","vcpus":4,"connected":true,"version":"4.0","messages_in":18446744073709551615,"messages_out":1.5e3,"guest_errors":-3,"vmm_pid":4242,"vmm_uid":0,"vmm_gid":"x","channels":[],"status":{"heartbeat.state":"late","heartbeat.seq":"7"}}]}\n'
for args in "--json list" "list" "heartbeat" "heartbeat web" "heartbeat 7" "status web" \
    "status 7" "status 8" "status 9" "--json status web" "kvp get web 0 k"; do
    # shellcheck disable=SC2086
    case_ "$list" $args
done
# a NUL in a string refuses the whole answer
case_ "$(printf '%s' "$list" | sed 's/"kvp.0.tab"/"zz.\\\\u00e9":"\\\\u0000x","kvp.0.tab"/')" status web

# answers to control commands
case_ '{"ok":true,"reply":"line 1\\nline 2 \\u001b[31mred\\u00e9"}\n' control web echo stats
case_ '{"ok":true,"reply":"line 1\\nline 2 \\u001b[31mred\\u00e9"}\n' --json control web echo stats
case_ '{"ok":true,"reply":"value \\u00e9"}\n' kvp get web 0 key
case_ '{"ok":true,"reply":"accepted"}\n' shutdown web --reboot --force
case_ '{"ok":false,"error":"no such VM"}\n' status web
case_ '{"ok":false,"error":"no such VM"}\n' control web echo stats
case_ '{"ok":false,"error":"no such VM"}\n' kvp get web 0 key
case_ '{"ok":false,"error":"kvp: timed out \\u001b"}\n' kvp get web 0 key
case_ '{"ok":false}\n' control web echo stats
case_ '{"ok":true}\n' control web echo stats
case_ '{"ok":true,"reply":5}\n' control web echo stats

# malformed answers: refused, whatever the command
for a in '{"ok":true,\n' '[1]\n' '{"ok":1}\n' '"ok"\n' '\n' '{"ok":true}{}\n' \
    '{"ok":true,"partitions":[{"name":"\303"}]}\n' \
    '{"ok":true,"partitions":[{"name":"\355\240\200"}]}\n' \
    '{"ok":true,"partitions":[],}\n' '{"ok":true,"reply":"\\ud800"}\n' \
    '{"ok":true,"reply":"a\tb"}\n' '{"ok":tru}\n' '{"ok":true,"partitions":[01]}\n'; do
    case_ "$a" list
    case_ "$a" control web echo stats
done
# well-formed but not what vmbusd sends
case_ '{"ok":true}\n' list
case_ '{"ok":true,"partitions":{}}\n' list
case_ '{"ok":true,"partitions":[5,"x",null]}\n' list
case_ '{"ok":true,"partitions":[{}]}\n' list
case_ '{"ok":true,"partitions":[{}]}\n' heartbeat
# list --rings: each open channel's ring header words (vmbusd 0.9 and later)
rings='{"ok":true,"partitions":[{"id":3,"name":"db","vcpus":1,"connected":true,"version":"5.3","messages_in":9,"messages_out":9,"guest_errors":0,"channels":[{"relid":1,"class":"ba6163d9-04a1-4d29-b605-72e2ffb1dc7f","instance":"6e5f1a2c-0b7d-4c3e-9a41-5d2c7f000000","subchannel":0,"state":"open","target_vp":0,"in_fill_pct":1,"out_fill_pct":0,"in_ring":{"write_index":1496,"read_index":1200,"interrupt_mask":1,"pending_send_sz":0},"out_ring":{"write_index":4096,"read_index":4096,"interrupt_mask":0,"pending_send_sz":0}},{"relid":2,"class":"ba6163d9-04a1-4d29-b605-72e2ffb1dc7f","instance":"6e5f1a2c-0b7d-4c3e-9a41-5d2c7f000000","subchannel":1,"state":"offered","target_vp":0,"in_fill_pct":0,"out_fill_pct":0,"in_ring":{"write_index":0,"read_index":0,"interrupt_mask":0,"pending_send_sz":0},"out_ring":{"write_index":0,"read_index":0,"interrupt_mask":0,"pending_send_sz":0}}],"status":{}}]}\n'
case_ "$rings" list --rings
case_ "$rings" list
case_ "$rings" list --ring
# an older vmbusd's answer has no ring words: said so, no failure
case_ "$list" list --rings

if [ "$write" = --write ]; then
    cp "$tmp/transcript" "$expected"
    echo "wrote $expected"
    exit 0
fi
cat "$tmp/transcript"
diff -u "$expected" "$tmp/transcript" || fail "vmbusctl's output differs from $expected"
echo PASS
