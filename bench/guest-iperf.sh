# SPDX-License-Identifier: MIT
# L2 guest scenario of bench/nested-net (/e2e/guest-iperf.sh, e2e=guest-iperf):
# the NIC under test, e2e.nic=netvsc (hv_netvsc: netvsp) or e2e.nic=virtio
# (virtio-net), as 192.0.2.2 on L1's TAP; then iperf3 against L1's server
# (192.0.2.1) for e2e.time seconds each way (e2e.dirs=tx,rx; or one of
# them), one TCP stream.  Markers:
#   E2E-IPERF-IF name=NAME driver=D offload=...   the interface (checksums, TSO, LRO)
#   E2E-IPERF-BEGIN dir=tx|rx                       a transfer starts
#   E2E-IPERF dir=tx|rx mbit=N retr=N busy=P si=P  guest -> L1 (tx), L1 -> guest (rx);
#       busy, si: the guest's CPU time during the transfer, in percent of its
#       vCPUs' time: all but idle and iowait, and softirq (receive
#       processing) alone.  A guest near 100 % busy is the bottleneck.
#       irq_mb, cs_mb: the guest's interrupts and context switches per MB
#       moved (e2e_irq_ctxt, VMBus's vector included): what each byte
#       costs it in exits.
nic=$(e2e_param e2e.nic || echo netvsc)
secs=$(e2e_param e2e.time || echo 10)
dirs=$(e2e_param e2e.dirs | tr , ' ')
[ -n "$dirs" ] || dirs="tx rx"
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
case "$nic" in
netvsc)
    e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
    e2e_modprobe hv_netvsc
    drv=hv_netvsc
    ;;
virtio)
    e2e_modprobe virtio_pci
    e2e_modprobe virtio_net
    drv=virtio_net
    ;;
*) e2e_fail "unknown e2e.nic=$nic"; drv="" ;;
esac
if [ -n "$drv" ] && nif=$(e2e_net_wait_if "$drv" 60) && e2e_net_up "$nif" 192.0.2.2/24 2001:db8::2/64 30; then
    echo "E2E-IPERF-IF name=$nif driver=$drv offload=$(ethtool -k "$nif" 2>/dev/null | sed -n -E 's/^(tx-checksumming|tcp-segmentation-offload|large-receive-offload): ([a-z]+).*/\1=\2/p' | tr '\n' ',')"
    ping -c 1 -w 20 192.0.2.1 >/dev/null 2>&1 || e2e_fail "no answer to ping from L1"
    for dir in $dirs; do
        r=""
        [ "$dir" = rx ] && r=-R
        # L1 samples its KVM's counters for this guest here and at the
        # E2E-IPERF line (bench/nested-net).
        echo "E2E-IPERF-BEGIN dir=$dir"
        head -n 1 /proc/stat > /tmp/stat0
        ic0=$(e2e_irq_ctxt)
        # The summary line of the side that received: its rate is what arrived.
        if iperf3 -c 192.0.2.1 -t "$secs" -f m $r > /tmp/iperf.txt 2>&1; then
            head -n 1 /proc/stat > /tmp/stat1
            ic1=$(e2e_irq_ctxt)
            # cpu user nice system idle iowait irq softirq steal ...
            cpu=$(cat /tmp/stat0 /tmp/stat1 | awk '{ t = 0; for (i = 2; i <= 9; i++) t += $i
                    if (NR == 1) { t0 = t; i0 = $5 + $6; s0 = $8 } else { dt = t - t0
                    if (dt > 0) printf "busy=%.0f si=%.0f", 100 * (dt - ($5 + $6 - i0)) / dt, 100 * ($8 - s0) / dt } }')
            awk -v d="$dir" -v c="$cpu" -v ic="$ic0 $ic1" '
                / receiver$/ { m = $7; mb = $5 * ($6 == "GBytes" ? 1024 : 1) }
                / sender$/ { r = $9 }
                END { split(ic, v, " "); x = ""
                      if (mb > 0)
                          x = sprintf(" irq_mb=%.1f cs_mb=%.1f", (v[3] - v[1]) / mb,
                                      (v[4] - v[2]) / mb)
                      print "E2E-IPERF dir=" d " mbit=" m " retr=" r " " c x }' /tmp/iperf.txt
        else
            e2e_fail "iperf3 $dir: $(tail -n 3 /tmp/iperf.txt | tr '\n' ' ')"
        fi
    done
else
    e2e_fail "no $drv interface with a carrier"
    e2e_dump_dmesg
fi
