# SPDX-License-Identifier: MIT
"""Unit test of vmbus-fuzz's console triage (tools/vmbusfuzz/triage.py):
buckets, titles, deduplication.  The consoles are written here in the
kernel's report format (not captured from a machine, except that the first
one has the shape fzpc.ko's BUG_ON printed on the nested rig)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from vmbusfuzz import triage  # noqa: E402

BUG_FZPC = """\
FUZZ-ITER 1 begin\r
[    6.040537] kernel BUG at /tmp/fzpc-build.vIaJa2/fzpc.c:94!\r
[    6.398424] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\r
[    6.743647] CPU: 0 PID: 114 Comm: insmod Tainted: G        W  OE      6.1.0-57-amd64 #1\r
[    7.284647] RIP: 0010:fzpc_on_data+0x15/0x40 [fzpc]\r
[   10.724057] Call Trace:\r
[   10.742335]  <IRQ>\r
[   10.760000]  fzpc_on_channel_callback+0x95/0x140 [fzpc]\r
[   10.772467]  vmbus_on_event+0x26/0xe0 [hv_vmbus]\r
[   10.815191]  tasklet_action_common.constprop.0+0x149/0x240\r
[   12.163466]  </IRQ>\r
[   17.520014] Modules linked in: fzpc(OE+) hv_utils hv_vmbus\r
[   18.000000] ---[ end trace 0000000000000000 ]---\r
[   18.100000] Kernel panic - not syncing: Fatal exception in interrupt\r
"""

# The shape of the page fault CI's stock campaign found at d0af46e (cut).
PF_RING = """\
FUZZ-ITER 5 begin\r
[   12.885456] BUG: unable to handle page fault for address: ffffce9d80684000\r
[   12.901560] #PF: supervisor read access in kernel mode\r
[   12.955073] CPU: 0 PID: 14 Comm: ksoftirqd/0 Tainted: G        W          6.1.0-57-amd64 #1\r
[   12.984334] RIP: 0010:__memcpy+0x12/0x20\r
[   13.235397] Call Trace:\r
[   13.243337]  <TASK>\r
[   13.250236]  hv_pkt_iter_first+0x82/0xc0 [hv_vmbus]\r
[   13.265043]  hv_ringbuffer_read+0xa4/0xf0 [hv_vmbus]\r
[   13.282013]  hv_kvp_onchannelcallback+0x81/0x2a0 [hv_utils]\r
[   13.299333]  vmbus_on_event+0x26/0xe0 [hv_vmbus]\r
[   13.410126]  </TASK>\r
[   13.416327] Modules linked in: hv_utils hv_vmbus [last unloaded: hv_vmbus]\r
"""

KNOWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known-findings.txt")

XSAVE_WARN = """\
[    0.100000] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:833 fpu__init_system_xstate+0x4b1/0x7b0
[    0.100100] RIP: 0010:fpu__init_system_xstate+0x4b1/0x7b0
[    0.100200] ---[ end trace 0000000000000000 ]---
FUZZ-READY mods=hv_utils hold=2
"""

WARN_VMBUS = """\
[   20.000000] WARNING: CPU: 1 PID: 77 at drivers/hv/channel_mgmt.c:512 vmbus_add_channel_work+0x2a/0x1c0 [hv_vmbus]
[   20.000100] RIP: 0010:vmbus_add_channel_work+0x2a/0x1c0 [hv_vmbus]
[   20.000200] Call Trace:
[   20.000300]  <TASK>
[   20.000400]  process_one_work+0x1c4/0x380
[   20.000500] ---[ end trace 0000000000000000 ]---
"""

HUNG_UNTIMED = """\
[  60.000000] INFO: task insmod:203 blocked for more than 30 seconds.
[  60.000100]       Tainted: G        W          6.1.0-57-amd64 #1
[  60.000200] task:insmod          state:D stack:0     pid:203   ppid:1      flags:0x00004000
[  60.000300] Call Trace:
[  60.000400]  <TASK>
[  60.000500]  __schedule+0x34d/0x9e0
[  60.000600]  schedule+0x5a/0xd0
[  60.000700]  schedule_timeout+0x118/0x150
[  60.000800]  wait_for_completion+0x86/0x150
[  60.000900]  vmbus_establish_gpadl+0x2c0/0x3c0 [hv_vmbus]
[  60.001000]  __vmbus_open+0x120/0x560 [hv_vmbus]
[  60.001100]  </TASK>
"""

HUNG_TIMED = HUNG_UNTIMED.replace("wait_for_completion+", "wait_for_completion_timeout+")

SOFT_LOCKUP = """\
[  90.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [kworker/0:1:33]
[  90.000100] RIP: 0010:hv_ringbuffer_read+0x40/0x120 [hv_vmbus]
[  90.000200] Call Trace:
[  90.000300]  vmbus_recvpacket+0x10/0x20 [hv_vmbus]
[  90.000400]  hv_kvp_onchannelcallback+0x60/0x300 [hv_utils]
[  91.000000] Kernel panic - not syncing: softlockup: hung tasks
"""

# A vCPU stuck in a hypercall: the RIP has no symbol and every frame of the
# trace is a stale '?' one; the panic that follows has a stack of its own.
LOCKUP_IN_HYPERCALL = """\
[   40.757232] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [swapper/0:0]
[   41.407690] Modules linked in: hv_utils hv_vmbus [last unloaded: hv_vmbus]
[   41.554596] RIP: 0010:0xffffcf82c000b003
[   43.314833] Call Trace:
[   43.319004]  <IRQ>
[   43.322592]  ? vmbus_set_event+0x4d/0x70 [hv_vmbus]
[   43.339258]  ? hv_ringbuffer_read+0xac/0xf0 [hv_vmbus]
[   44.037027]  </IRQ>
[   44.412067] Kernel panic - not syncing: softlockup: hung tasks
[   44.465309] Call Trace:
[   44.508392]  dump_stack_lvl+0x44/0x5c
[   44.536843]  panic+0x118/0x2f4
"""

NULL_DEREF = """\
[  30.100000] BUG: kernel NULL pointer dereference, address: 0000000000000018
[  30.100100] #PF: supervisor read access in kernel mode
[  30.100200] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  30.100300] RIP: 0010:hv_kvp_onchannelcallback+0x9c/0x300 [hv_utils]
[  30.100400] Call Trace:
[  30.100500]  <IRQ>
[  30.100600]  ? __die+0x20/0x70
[  30.100700]  vmbus_on_event+0x26/0xe0 [hv_vmbus]
"""

# guest/fuzz.sh's watchdog: /proc/PID/stack (no scheduler frames), then the
# kernel's blocked-task dump (SysRq w) read back from the log.
GUEST_STALL = """\
FUZZ-ITER 2 begin
FUZZ-STALL 2 unload
FUZZ-STACK rmmod 245
[<0>] vmbus_teardown_gpadl+0x18b/0x1f0 [hv_vmbus]
[<0>] vmbus_close_internal+0xdd/0xf0 [hv_vmbus]
[<0>] util_remove+0x2b/0x40 [hv_utils]
[<0>] __do_sys_delete_module+0x1b9/0x330
FUZZ-BLOCKED
sysrq: Show Blocked State
task:kworker/0:2     state:D stack:0     pid:40    ppid:2      flags:0x00004000
Call Trace:
 <TASK>
 __schedule+0x34d/0x9e0
 schedule+0x5a/0xd0
 msleep+0x2a/0x40
 </TASK>
task:rmmod           state:D stack:0     pid:245   ppid:1      flags:0x00004000
Call Trace:
 <TASK>
 __schedule+0x34d/0x9e0
 schedule+0x5a/0xd0
 schedule_timeout+0x118/0x150
 WAIT+0x86/0x150
 vmbus_teardown_gpadl+0x18b/0x1f0 [hv_vmbus]
 vmbus_close_internal+0xdd/0xf0 [hv_vmbus]
 </TASK>
FUZZ-STALL-END
"""


# insmod waits for an asynchronous probe; the kworker running it is stuck in
# the driver (the shape seen on the nested rig with a dropped GPADL_CREATED).
ASYNC_PROBE_STALL = """\
FUZZ-STALL 1 load hv_utils
FUZZ-STACK insmod 120
[<0>] async_synchronize_cookie_domain+0x114/0x150
[<0>] do_init_module+0x17a/0x1f0
FUZZ-BLOCKED
sysrq: Show Blocked State
task:kworker/u2:2    state:D stack:0     pid:27    ppid:2      flags:0x00004000
Workqueue: events_unbound async_run_entry_fn
Call Trace:
 <TASK>
 __schedule+0x34d/0xa00
 schedule+0x5a/0xd0
 schedule_timeout+0x11a/0x150
 __wait_for_common+0x94/0x1e0
 ? usleep_range_state+0x90/0x90
 __vmbus_establish_gpadl.isra.0+0x647/0x750 [hv_vmbus]
 ? shutdown_onchannelcallback+0x190/0x190 [hv_utils]
 __vmbus_open+0xde/0x560 [hv_vmbus]
 </TASK>
FUZZ-STALL-END
"""


class Triage(unittest.TestCase):
    def test_bug_title_has_file_line_and_first_driver_frame(self):
        bucket, title, evs = triage.classify(BUG_FZPC)
        self.assertEqual(bucket, "crash")
        # the scratch build path and the timestamps are gone; RIP is the first frame
        self.assertEqual(title, "kernel BUG at fzpc.c:94 in fzpc_on_data")
        # the panic that follows is its consequence, not a finding of its own
        self.assertEqual([e.title for e in evs], [title])

    def test_same_bug_other_boot_same_title(self):
        other = BUG_FZPC.replace("vIaJa2", "Qq81zz").replace("PID: 114", "PID: 9").replace(
            "6.040537", "123.456789").replace("+0x15/0x40", "+0x17/0x40")
        self.assertEqual(triage.classify(other)[1], triage.classify(BUG_FZPC)[1])
        self.assertEqual(triage.finding_id(triage.classify(other)[1]),
                         triage.finding_id(triage.classify(BUG_FZPC)[1]))

    def test_ignored_boot_warning_is_clean(self):
        ignore = triage.read_list(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "ignore.txt"))
        self.assertEqual(triage.classify(XSAVE_WARN, ignore)[0], "clean")
        # without the list it is a finding
        self.assertEqual(triage.classify(XSAVE_WARN)[0], "warn")

    def test_warning(self):
        bucket, title, _ = triage.classify(WARN_VMBUS)
        self.assertEqual(bucket, "warn")
        self.assertEqual(title, "WARNING at channel_mgmt.c:512 vmbus_add_channel_work")

    def test_hung_task_in_untimed_wait(self):
        bucket, title, _ = triage.classify(HUNG_UNTIMED)
        self.assertEqual(bucket, "hang-untimed-wait")
        self.assertEqual(title, "untimed wait: hung task insmod in vmbus_establish_gpadl")

    def test_hung_task_in_timed_wait_is_a_lockup(self):
        bucket, title, _ = triage.classify(HUNG_TIMED)
        self.assertEqual(bucket, "lockup")
        self.assertEqual(title, "hung task insmod in vmbus_establish_gpadl")

    def test_soft_lockup(self):
        bucket, title, _ = triage.classify(SOFT_LOCKUP)
        self.assertEqual(bucket, "lockup")
        self.assertEqual(title, "soft lockup in hv_ringbuffer_read")

    def test_lockup_with_only_stale_frames(self):
        bucket, title, _ = triage.classify(LOCKUP_IN_HYPERCALL)
        self.assertEqual(bucket, "lockup")
        self.assertEqual(title, "soft lockup in vmbus_set_event")

    def test_null_deref_skips_stale_frames(self):
        bucket, title, _ = triage.classify(NULL_DEREF)
        self.assertEqual(bucket, "crash")
        self.assertEqual(title, "BUG: kernel NULL pointer dereference in hv_kvp_onchannelcallback")

    def test_guest_stall_in_untimed_wait(self):
        console = GUEST_STALL.replace("WAIT+", "wait_for_completion+")
        bucket, title, _ = triage.classify(console, stalled=True)
        self.assertEqual(bucket, "hang-untimed-wait")
        self.assertEqual(title, "untimed wait in vmbus_teardown_gpadl")

    def test_guest_stall_in_timed_wait_is_a_hang(self):
        # the other blocked task's msleep is not rmmod's wait
        console = GUEST_STALL.replace("WAIT+", "wait_for_completion_timeout+")
        bucket, title, _ = triage.classify(console, stalled=True)
        self.assertEqual(bucket, "hang")
        self.assertEqual(title, "no progress in vmbus_teardown_gpadl")

    def test_stall_in_asynchronous_probe(self):
        # the kworker's hv frame names it; "? usleep" is a stale address, and
        # the compiler's .isra.0 suffix is not part of the title
        bucket, title, _ = triage.classify(ASYNC_PROBE_STALL, stalled=True)
        self.assertEqual(bucket, "hang-untimed-wait")
        self.assertEqual(title, "untimed wait in __vmbus_establish_gpadl")

    def test_stall_step_with_a_kernel_line_appended(self):
        # the serial console interleaved a printk into the watchdog's line:
        # the step ends where the kernel's timestamp begins
        console = ("FUZZ-ITER 1 begin\nFUZZ-STALL 1 load  hv_utils hv_storvsc [   36.286224] "
                   "hv_storvsc 6e5f1a2c-0b7d-4c3e-9a41-5d2c7f000000: Incorrect transaction ID\n"
                   "FUZZ-BLOCKED\nFUZZ-STALL-END\n")
        bucket, title, _ = triage.classify(console, stalled=True)
        self.assertEqual((bucket, title), ("hang", "no progress: N load hv_utils hv_storvsc"))

    def test_silent_guest(self):
        bucket, title, _ = triage.classify("FUZZ-ITER 3 begin\n", stalled=True)
        self.assertEqual((bucket, title), ("hang", "no progress: guest stopped answering"))

    def test_clean(self):
        self.assertEqual(triage.classify("FUZZ-ITER 1 begin\nFUZZ-ITER 1 end\n"),
                         ("clean", "", []))

    def test_known_list_regex(self):
        self.assertTrue(triage.is_listed("kernel BUG at fzpc.c:94 in fzpc_on_data",
                                         ["re:^kernel BUG at fzpc\\.c:"]))
        self.assertFalse(triage.is_listed("kernel BUG at fzpc.c:94 in fzpc_on_data",
                                          ["kernel BUG at fzpc.c:95 in fzpc_on_data"]))

    def test_stock_known_list(self):
        # The list CI's stock campaign checks against: the ring-index page
        # fault it met is known, a fault elsewhere in the drivers is not.
        known = triage.read_list(KNOWN)
        bucket, title, _ = triage.classify(PF_RING)
        self.assertEqual((bucket, title),
                         ("crash", "BUG: unable to handle page fault in hv_pkt_iter_first"))
        self.assertTrue(triage.is_listed(title, known))
        self.assertTrue(triage.is_listed(
            "kernel BUG at list_debug.c:49 in __list_del_entry_valid", known))
        self.assertFalse(triage.is_listed(
            "BUG: unable to handle page fault in hv_kvp_onchannelcallback", known))
        self.assertFalse(triage.is_listed(
            "BUG: kernel NULL pointer dereference in hv_pkt_iter_first", known))

if __name__ == "__main__":
    unittest.main()
