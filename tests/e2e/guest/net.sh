# SPDX-License-Identifier: MIT
# The network scenario (host side: tests/e2e/net-l1): hv_netvsc drives the
# synthetic NIC that vmbusd's netvsp serves from a TAP device in L1
# (192.0.2.1, 2001:db8::1; this guest is 192.0.2.2, 2001:db8::2).  The
# transfers use netxfer (tests/e2e/netxfer.c, in /bin): L1 listens on a port
# per transfer, this guest connects; the stream's seed is the port number
# and both ends print what they moved and its hash (E2E-NET-XFER).
# e2e.part=main (default):
#   eth0 comes up with the host's MAC (E2E-NET-IF), pings L1 over IPv4 and
#   IPv6, reports its offloads (ethtool -k); barrier "up"; e2e.bytes each
#   way over IPv4 (ports 5001 up, 5002 down); MTU 9000, then e2e.bytes/16
#   each way over IPv6 (5003, 5004); link down and up, then a transfer
#   (5005); rmmod and modprobe hv_netvsc, the NIC again, pings, barrier
#   "reloaded", transfers (5006 over IPv6, 5007); the kernel log; barrier
#   "end".
# e2e.part=vrss: a 2-vCPU guest's NIC has a channel per vCPU (barrier
#   "queues"); 16 connections each way (ports 5101.., 5201..), then every
#   queue has carried packets both ways (ethtool -S).
# A barrier NAME: the guest prints E2E-NET-BARRIER name=NAME and waits
# (e2e.wait seconds at most) until L1, done with its checks, opens port
# 5099 to it.
# Markers: E2E-NET-IF, E2E-NET-XFER port=P rc=N LINE, E2E-NET-BARRIER,
#          E2E-NET-QUEUES, E2E-NET-QSTAT, E2E-NET-DONE, E2E-RESULT ...
net_wait=$(e2e_param e2e.wait || echo 60)
net_bytes=$(e2e_param e2e.bytes || echo 268435456)
net_part=$(e2e_param e2e.part || echo main)
net_small=$((net_bytes / 16))
host4=192.0.2.1 host6=2001:db8::1

# Kernel log lines of hv_netvsc that are not errors although they match
# the error pattern below (extended regular expressions, one per line).
NET_DMESG_HARMLESS='
'

# net_xfer send|recv HOST PORT BYTES
net_xfer() {
    netxfer "$1" -w "$net_wait" -t "$net_wait" -n "$4" -s "$3" "$2" "$3" > /tmp/xfer.txt 2>&1
    local rc=$?
    echo "E2E-NET-XFER port=$3 rc=$rc $(grep -E '^netxfer: (send|recv) ' /tmp/xfer.txt | sed 's/^netxfer: //')"
    [ $rc = 0 ] || { e2e_fail "transfer on port $3 ($1 $4 bytes, $2): $(grep -E -v '^netxfer: (send|recv) ' /tmp/xfer.txt | head -n 3)"; }
    return $rc
}
net_barrier() {
    echo "E2E-NET-BARRIER name=$1"
    netxfer recv -w "$net_wait" -t "$net_wait" -n 0 "$host4" 5099 > /tmp/barrier.txt 2>&1 ||
        e2e_fail "barrier $1: L1 did not answer: $(head -n 2 /tmp/barrier.txt)"
}
net_ping() {
    if $1 -c 3 -w 30 "$2" > /tmp/ping.txt 2>&1; then
        e2e_result "$3=ok $(grep -E 'packets transmitted|round-trip' /tmp/ping.txt | tr '\n' ' ')"
    else
        e2e_fail "$1 $2 ($3): $(tail -n 2 /tmp/ping.txt | tr '\n' ' ')"
    fi
}
# net_dmesg: hv_netvsc's errors in the kernel log (E2E-RESULT net_dmesg=clean).
net_dmesg() {
    dmesg > /tmp/dmesg.txt
    echo "$NET_DMESG_HARMLESS" | grep -v '^$' > /tmp/harmless.txt
    grep -i -E 'netvsc|vmbus|eth[0-9]' /tmp/dmesg.txt |
        grep -i -E 'error|fail|unable|cannot|can.t|timed out|timeout|invalid|unknown|bad |refus|not supported|unexpected' > /tmp/neterr.txt
    if [ -s /tmp/harmless.txt ]; then
        grep -E -v -f /tmp/harmless.txt /tmp/neterr.txt > /tmp/neterr2.txt
        grep -E -f /tmp/harmless.txt /tmp/neterr.txt | sed 's/^/E2E-LOG known harmless: /'
    else
        cp /tmp/neterr.txt /tmp/neterr2.txt
    fi
    if [ -s /tmp/neterr2.txt ]; then
        e2e_fail "netvsc errors in dmesg:"
        head -n 20 /tmp/neterr2.txt
    else
        e2e_result "net_dmesg=clean"
    fi
    [ "$E2E_FAILED" = 0 ] || grep -i -E 'netvsc|eth[0-9]' /tmp/dmesg.txt | tail -n 30 | sed 's/^/E2E-LOG /'
}
# net_bring_up TAG: wait for the netvsc interface, report it, configure it.
net_bring_up() {
    if ! nif=$(e2e_net_wait_if hv_netvsc "$net_wait"); then
        e2e_fail "$1: no hv_netvsc interface ${net_wait}s after the module loaded"
        ls /sys/class/net
        e2e_dump_dmesg
        return 1
    fi
    echo "E2E-NET-IF tag=$1 name=$nif mac=$(cat "/sys/class/net/$nif/address") mtu=$(cat "/sys/class/net/$nif/mtu")"
    e2e_net_up "$nif" 192.0.2.2/24 2001:db8::2/64 "$net_wait" ||
        { e2e_fail "$1: $nif has no carrier ${net_wait}s after ip link set up"; return 1; }
}

# Interfaces created from here on skip duplicate address detection.
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
e2e_ticker
e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
echo "E2E-VMBUS-UP"
e2e_modprobe hv_netvsc
nif=""
if ! net_bring_up first; then
    :
elif [ "$net_part" = vrss ]; then
    net_ping ping "$host4" ping4
    ndev=$(readlink -f "/sys/class/net/$nif/device")
    # hv_netvsc opens its subchannels from a work item after the probe.
    ncpu=$(grep -c '^processor' /proc/cpuinfo)
    i=0
    while [ "$(ls "$ndev/channels" | wc -l)" -lt "$ncpu" ] && [ $i -lt $((net_wait * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "E2E-NET-QUEUES cpus=$(grep -c '^processor' /proc/cpuinfo) channels=$(ls "$ndev/channels" | wc -l) rx=$(ls -d "/sys/class/net/$nif/queues/rx-"* | wc -l) tx=$(ls -d "/sys/class/net/$nif/queues/tx-"* | wc -l) combined=$(ethtool -l "$nif" 2>/dev/null | awk '/^Combined:/ { v = $2 } END { print v }')"
    net_barrier queues
    i=0
    while [ $i -lt 16 ]; do
        net_xfer recv "$host4" $((5101 + i)) 1048576
        net_xfer send "$host4" $((5201 + i)) 1048576
        i=$((i + 1))
    done
    ethtool -S "$nif" | sed -n -E 's/^ *([rt]x_queue_[0-9]+_packets): *([0-9]+)$/\1 \2/p' |
        while read -r k v; do echo "E2E-NET-QSTAT $k=$v"; done
    net_dmesg
    net_barrier end
else
    net_ping ping "$host4" ping4
    net_ping ping6 "$host6" ping6
    e2e_result "offload=$(ethtool -k "$nif" | sed -n -E 's/^(tx-checksumming|tcp-segmentation-offload): ([a-z]+).*/\1=\2/p' | tr '\n' ' ')"
    net_barrier up

    # ---- the big transfers, IPv4 ----
    net_xfer send "$host4" 5001 "$net_bytes"
    net_xfer recv "$host4" 5002 "$net_bytes"

    # ---- MTU 9000 (hv_netvsc sets up its device again), IPv6 ----
    if ip link set "$nif" mtu 9000; then
        e2e_result "mtu=$(cat "/sys/class/net/$nif/mtu")"
    else
        e2e_fail "ip link set $nif mtu 9000 failed"
    fi
    e2e_net_up "$nif" 192.0.2.2/24 2001:db8::2/64 "$net_wait" || e2e_fail "no carrier after the MTU change"
    net_xfer send "$host6" 5003 "$net_small"
    net_xfer recv "$host6" 5004 "$net_small"

    # ---- link down and up ----
    ip link set "$nif" down || e2e_fail "ip link set $nif down failed"
    e2e_result "down_operstate=$(cat "/sys/class/net/$nif/operstate")"
    e2e_net_up "$nif" 192.0.2.2/24 2001:db8::2/64 "$net_wait" || e2e_fail "no carrier after down and up"
    net_ping ping "$host4" ping4_after_up
    net_xfer send "$host4" 5005 "$net_small"

    # ---- the driver unloaded and loaded again ----
    if rmmod hv_netvsc; then
        [ -e "/sys/class/net/$nif" ] && e2e_fail "$nif still there after rmmod hv_netvsc"
        e2e_result "rmmod=ok"
    else
        e2e_fail "rmmod hv_netvsc failed"
    fi
    e2e_modprobe hv_netvsc
    if net_bring_up reloaded; then
        net_ping ping "$host4" ping4_reloaded
        net_ping ping6 "$host6" ping6_reloaded
        net_barrier reloaded
        net_xfer send "$host6" 5006 "$net_small"
        net_xfer recv "$host4" 5007 "$net_small"
    fi

    net_dmesg
    net_barrier end
fi
e2e_dmesg_check
echo "E2E-NET-DONE"
