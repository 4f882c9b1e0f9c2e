# SPDX-License-Identifier: MIT
# Helpers of the e2e group drivers that boot L1 once for a scenario script
# (tests/e2e/run-ic, run-storage, run-net); sourced by bash.  The caller
# sets prog (its name, for messages).

# run_exes VAR...: each variable names an executable (--VAR); made absolute.
run_exes() {
    local v
    for v in "$@"; do
        [ -x "${!v}" ] || { echo "$prog: --$v: no executable '${!v}'" >&2; exit 2; }
        printf -v "$v" '%s' "$(realpath "${!v}")"
    done
}

# run_kernel: kernel (the guest's bzImage, default the newest in /boot) and
# kver, its version.
run_kernel() {
    [ -n "$kernel" ] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
    [ -r "$kernel" ] || { echo "$prog: no guest kernel (apt-get install linux-image-amd64)" >&2; exit 2; }
    kver=${kernel##*/vmlinuz-}
}

# run_outdir NAME: out, absolute, made (a new /tmp/e2e-NAME.* if unset).
run_outdir() {
    [ -n "$out" ] || out=$(mktemp -d "/tmp/e2e-$1.XXXXXX")
    mkdir -p "$out"
    out=$(cd "$out" && pwd -P)
}

# run_attempts ATTEMPTS TIMEOUT "STATUS..." -- CMD...: CMD inside a fresh L1
# (tests/e2e/nested-run, TIMEOUT seconds, logs in $out), again while it
# ends with one of STATUS, the nested rig's flakes (docs/vmm.md), at most
# ATTEMPTS times; a failed attempt's logs move to $out/attemptN.  Sets rc.
#   125  L1 died (nested-run: no status from L1)
#   3    the L2 guest only reset itself or froze (the scenario's verdict)
#   124  L1 gave no verdict before TIMEOUT: for scenarios that always
#        report before it, L1 itself froze
run_attempts() {
    local attempts=$1 tmo=$2 retry=" $3 " attempt
    shift 4
    for attempt in $(seq "$attempts"); do
        "$here/nested-run" --quiet --timeout "$tmo" --out "$out" -- "$@"
        rc=$?
        [ "$attempt" -lt "$attempts" ] || break
        case "$retry" in *" $rc "*) ;; *) break ;; esac
        case "$rc" in
        125) echo "$prog: L1 died (nested-TCG flake, see above); running the group again" ;;
        3) echo "$prog: the L2 guest reset itself or froze (nested-TCG flake, see above); running the group again" ;;
        124) echo "$prog: L1 gave no verdict within ${tmo}s (L1 froze: nested-TCG flake); running the group again" ;;
        esac
        # Keep this attempt's logs for a look at the flake.
        mkdir -p "$out/attempt$attempt"
        mv "$out"/*.serial "$out"/*.log "$out"/*.txt "$out/attempt$attempt/" 2>/dev/null
    done
}
