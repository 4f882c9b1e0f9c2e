# SPDX-License-Identifier: MIT
# Integration services (hv_utils) with the host's vmbusctl driving them
# (tests/e2e/ic-l1).  Needs the extra archive of tests/e2e/mkinitramfs-ic
# (/sbin/poweroff, hv_kvp_daemon + libc, /etc files).
#
#   1. clock set to 2001 before hv_utils loads; timesync must fix it
#   2. hv_utils binds heartbeat, shutdown, timesync, KVP
#   3. hv_kvp_daemon runs; the host's pool-0 keys must show up in
#      /var/lib/hyperv/.kvp_pool_0 (e2e.kvpkey=KEY, set by the host after
#      E2E-IC-READY; e2e.kvppreset=KEY, preset in vmbusd's config)
#      and a pool-1 record written here must reach the host
#   4. clock set back to 2001 after E2E-KVP-DONE; the host's
#      'timesync sync' command must fix it (E2E-CLOCK-RESET, E2E-CLOCK2)
#   5. wait (e2e.wait seconds) for the host's shutdown request: hv_utils runs
#      /sbin/poweroff (busybox), which sends SIGUSR2 to PID 1, i.e. to this
#      shell; the trap below notes it, this script reports and returns, and
#      /init powers the guest off.
# Markers: E2E-CLOCK, E2E-IC-READY, E2E-KVP pool=0 key=K value=V,
#          E2E-KVP-SEEN key=K, E2E-KVP-DONE, E2E-CLOCK-RESET, E2E-CLOCK2,
#          E2E-POWEROFF-SIGNAL, E2E-RESULT ...
E2E_POWEROFF=""
trap 'E2E_POWEROFF=usr2' USR2
trap 'E2E_POWEROFF=term' TERM
trap 'E2E_POWEROFF=usr1' USR1

ic_wait=$(e2e_param e2e.wait || echo 90)
kvpkey=$(e2e_param e2e.kvpkey || true)
kvppreset=$(e2e_param e2e.kvppreset || true)

hostname e2e-guest

# 1. A clock far off: 2001, set before hv_utils exists.
date -s '2001-02-03 04:05:06' >/dev/null 2>&1 || e2e_fail "date -s failed"
e2e_result "clock_before=$(date +%s)"

e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
echo "E2E-VMBUS-UP"
e2e_load_upto hv_utils
e2e_settle_devices
echo "E2E-VMBUS-READY"
e2e_report
for svc in Heartbeat Shutdown TimeSync; do
    v=$(dmesg | sed -n "s/.*hv_utils: $svc IC version \([0-9.]*\).*/\1/p" | tail -n 1)
    e2e_result "ic_$svc=${v:-none}"
done

# Timesync: the host sends a SYNC once the channel is negotiated.
i=0
while [ "$(date +%s)" -lt 1500000000 ] && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
e2e_result "clock_wait_ds=$i"
echo "E2E-CLOCK now=$(date +%s)"

# KVP: hv_kvp_daemon in the foreground (-n), a child of this shell.
i=0
while [ ! -c /dev/vmbus/hv_kvp ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -c /dev/vmbus/hv_kvp ] && [ -x /usr/sbin/hv_kvp_daemon ]; then
    mkdir -p /var/lib/hyperv
    # A guest-side key (pool 1, "guest"): the daemon reads the pool files
    # at start; the host lists them with 'vmbusctl kvp list VM guest'.
    guestkey=$(e2e_param e2e.kvpguest || true)
    [ -z "$guestkey" ] || e2e_kvp_add 1 "$guestkey" "written by the guest"
    /usr/sbin/hv_kvp_daemon -n </dev/null >/tmp/kvp.log 2>&1 &
    kvp_pid=$!
    e2e_result "kvp_daemon=started"
else
    e2e_fail "no /dev/vmbus/hv_kvp or no /usr/sbin/hv_kvp_daemon"
    kvp_pid=""
fi
echo "E2E-IC-READY"

# Wait for the host's keys in pool 0.
i=0
while [ $i -lt $((ic_wait * 2)) ] && [ -z "$E2E_POWEROFF" ]; do
    ok=1
    [ -z "$kvpkey" ] || e2e_kvp_has 0 "$kvpkey" || ok=0
    [ -z "$kvppreset" ] || e2e_kvp_has 0 "$kvppreset" || ok=0
    [ $ok = 1 ] && break
    sleep 0.5
    i=$((i + 1))
done
e2e_kvp_dump 0
for k in $kvppreset $kvpkey; do
    if e2e_kvp_has 0 "$k"; then echo "E2E-KVP-SEEN key=$k"; else e2e_fail "KVP key $k not in pool 0"; fi
done
if [ -n "$kvp_pid" ] && kill -0 "$kvp_pid" 2>/dev/null; then
    e2e_result "kvp_daemon=running"
else
    e2e_fail "hv_kvp_daemon is not running"
    cat /tmp/kvp.log 2>/dev/null
fi
v=$(dmesg | sed -n "s/.*hv_utils: KVP IC version \([0-9.]*\).*/\1/p" | tail -n 1)
e2e_result "ic_KVP=${v:-none}"
echo "E2E-KVP-DONE"

# Live SYNC: back to 2001; the host sends 'timesync timesync sync'.
if [ -z "$E2E_POWEROFF" ]; then
    date -s '2001-02-03 04:05:06' >/dev/null 2>&1
    echo "E2E-CLOCK-RESET now=$(date +%s)"
    i=0
    while [ "$(date +%s)" -lt 1500000000 ] && [ $i -lt 300 ] && [ -z "$E2E_POWEROFF" ]; do
        sleep 0.1
        i=$((i + 1))
    done
    e2e_result "clock2_wait_ds=$i"
    echo "E2E-CLOCK2 now=$(date +%s)"
fi

# Wait for the host's shutdown request.
i=0
while [ -z "$E2E_POWEROFF" ] && [ $i -lt "$ic_wait" ]; do
    sleep 1
    i=$((i + 1))
done
if [ "$E2E_POWEROFF" = usr2 ]; then
    echo "E2E-POWEROFF-SIGNAL"
    e2e_result "poweroff=orderly"
elif [ -n "$E2E_POWEROFF" ]; then
    e2e_fail "PID 1 got SIG${E2E_POWEROFF} instead of poweroff's SIGUSR2"
else
    e2e_fail "no shutdown request within ${ic_wait}s"
fi
dmesg | grep -E 'hv_utils: (Shutdown|Restart) request|orderly' | sed 's/^/E2E-LOG /'
e2e_dmesg_check
[ "$E2E_FAILED" = 0 ] || e2e_dump_dmesg
trap - USR1 USR2 TERM
