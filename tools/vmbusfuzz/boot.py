# SPDX-License-Identifier: MIT
"""One guest boot of a campaign: vmbusd(-guestfuzz) + vmbus-vmm with the
fuzz initramfs, the host-side stimulus (vmbusctl), and the watch on the
serial console until the guest crashes, stops answering, or finishes its
iterations."""

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from . import triage

# Seconds.  The guest reports a step stuck for STALL_S itself (with stacks);
# the host gives up on a silent guest after HANG_S without a FUZZ- line.
STALL_S = 25
HANG_S = 75
CRASH_DRAIN_S = 40   # a crash report prints slowly on the nested rig's serial port
STIMULUS_PERIOD_S = 4


class BootConfig:
    """Everything one boot needs; built by the campaign or by replay."""

    def __init__(self, **kw):
        self.vmbusd = kw["vmbusd"]
        self.vmm = kw["vmm"]
        self.vmbusctl = kw.get("vmbusctl")
        self.kernel = kw["kernel"]
        self.initrd = kw["initrd"]
        self.plugins = kw.get("plugins", [])       # VSP plugin .so files
        self.vsps = kw.get("vsps", ["heartbeat", "shutdown", "timesync", "kvp"])
        self.vsp_params = kw.get("vsp_params", {})  # "vsp.key" -> value
        self.vm_params = kw.get("vm_params", [])  # "key = value" lines of the VM's section
        self.mods = kw.get("mods", ["hv_utils"])
        self.iterations = kw.get("iterations", 20)
        self.hold = kw.get("hold", 2)
        self.cmdline_extra = kw.get("cmdline_extra", "")
        self.mem = kw.get("mem", "512M")
        self.mutate = kw.get("mutate", True)         # vmbusd is vmbusd-guestfuzz
        self.fuzz_knobs = kw.get("fuzz_knobs", [])
        self.replay = kw.get("replay")               # transcript to replay
        self.ignore = kw.get("ignore", [])
        self.frame_modules = kw.get("frame_modules", [])
        self.stop_titles = kw.get("stop_titles", [])  # end the boot once one of these is seen

    def cmdline(self):
        # loglevel 4 while booting (the nested rig's XSAVE warning at every
        # boot would cost seconds of slow serial output); guest/fuzz.sh raises
        # it to 5 so that WARNINGs of the drivers under test are seen.
        return ("console=ttyS0 quiet loglevel=4 panic=-1 oops=panic softlockup_panic=1 "
                "hung_task_timeout_secs=30 e2e=fuzz fuzz.mods=%s fuzz.iters=%d fuzz.hold=%d "
                "fuzz.stall=%d %s" % (",".join(self.mods), self.iterations, self.hold, STALL_S,
                                      self.cmdline_extra)).strip()


class BootResult:
    def __init__(self):
        self.iterations = 0        # FUZZ-ITER N end lines
        self.started = 0           # FUZZ-ITER N begin lines
        self.vmm_rc = None
        self.stalled = False
        self.bucket = "clean"
        self.title = ""
        self.events = []
        self.transcript = None
        self.seed = None
        self.wall_s = 0.0
        self.boot_s = None         # time to FUZZ-READY
        self.event_iteration = None  # iteration running when the first report started
        self.event_s = None        # seconds from vmm start to the first report
        self.ctl_ok = 0
        self.ctl_failed = 0


def _write_config(path, cfg):
    vm = ["[vm default]", "vsp = " + " ".join(cfg.vsps)]
    for kv in cfg.vm_params:  # e.g. storvsp.disk = PATH, netvsp.tap = NAME
        k, _, v = kv.partition("=")
        vm.append("%s = %s" % (k.strip(), v.strip()))
    lines = vm + ["[vsp heartbeat]", "interval_ms = 1000"]
    hb = len(vm) + 1
    per = {}
    for k, v in cfg.vsp_params.items():
        vsp, key = k.split(".", 1)
        per.setdefault(vsp, []).append("%s = %s" % (key, v))
    for vsp, kv in per.items():
        if vsp == "heartbeat":
            lines[hb:hb] = kv
        else:
            lines += ["[vsp %s]" % vsp] + kv
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class _Stimulus(threading.Thread):
    """Host-side IC traffic while the guest runs: heartbeat queries, KVP
    sets and status reads through vmbusctl (each bounded by its own
    timeout, so a guest that stopped answering cannot block the watch)."""

    def __init__(self, cfg, ctl, name, res):
        super().__init__(daemon=True)
        self.cfg, self.ctl, self.name, self.res = cfg, ctl, name, res
        self.stop = threading.Event()
        self.n = 0

    def _ctl(self, *args):
        try:
            r = subprocess.run([self.cfg.vmbusctl, "-s", self.ctl, "-t", "5"] + list(args),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            ok = r.returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            ok = False
        if ok:
            self.res.ctl_ok += 1
        else:
            self.res.ctl_failed += 1

    def run(self):
        while not self.stop.wait(STIMULUS_PERIOD_S):
            self.n += 1
            self._ctl("heartbeat", self.name)
            self._ctl("kvp", "set", self.name, "external", "vmbus-fuzz-%d" % (self.n % 8),
                      "value-%d" % self.n)
            self._ctl("status", self.name)

    def shutdown(self):
        self._ctl("shutdown", self.name)


def _stop(proc, sig=signal.SIGTERM, wait_s=5):
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_boot(cfg, rundir, seed, deadline=None, progress=None):
    """Boot the guest once in rundir; returns a BootResult.  deadline (time
    .monotonic()) ends the boot early with a shutdown request; progress(res)
    is called about once a second."""
    os.makedirs(rundir, exist_ok=True)
    res = BootResult()
    res.seed = seed
    name = "fuzzvm"
    # Sockets and plugins live in a private local directory: rundir may be
    # a 9p share (the nested rig's --out), which holds neither.
    private = tempfile.mkdtemp(prefix="vmbus-fuzz.")
    sock = os.path.join(private, "vmbus.sock")
    ctl = os.path.join(private, "control.sock")
    conf = os.path.join(rundir, "vmbusd.conf")
    plugdir = os.path.join(private, "plugins")
    console = os.path.join(rundir, "console.log")
    _write_config(conf, cfg)
    # vmbusd refuses plugins others can write or another user owns: a private copy.
    os.makedirs(plugdir, exist_ok=True)
    os.chmod(plugdir, 0o755)
    for p in cfg.plugins:
        dst = os.path.join(plugdir, os.path.basename(p))
        shutil.copyfile(p, dst)
        os.chmod(dst, 0o755)
    for s in (sock, ctl):
        if os.path.exists(s):
            os.unlink(s)

    argv = [cfg.vmbusd, "--config", conf, "--socket", sock, "--control", ctl,
            "--plugin-dir", plugdir, "--log-level", "info"]
    if cfg.mutate:
        if cfg.replay:
            argv += ["--replay", cfg.replay]
        else:
            argv += ["--seed", "0x%016x" % seed]
            for k in cfg.fuzz_knobs:
                argv += ["--fuzz", k]
        argv += ["--transcript-dir", rundir]
    with open(os.path.join(rundir, "vmbusd.argv"), "w") as f:
        f.write(" ".join(argv) + "\n")
    dlog = open(os.path.join(rundir, "vmbusd.log"), "w")
    daemon = subprocess.Popen(argv, stdout=dlog, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(sock) and os.path.exists(ctl):
            break
        if daemon.poll() is not None:
            break
        time.sleep(0.05)
    if daemon.poll() is not None or not os.path.exists(sock):
        _stop(daemon)
        dlog.close()
        shutil.rmtree(private, ignore_errors=True)
        raise RuntimeError("vmbusd did not start (see %s)" % os.path.join(rundir, "vmbusd.log"))

    open(console, "w").close()
    vargv = [cfg.vmm, "--kernel", cfg.kernel, "--initrd", cfg.initrd, "--name", name,
             "--serial-log", console, "--vmbusd", sock, "--no-reboot", "--mem", cfg.mem,
             "--cmdline", cfg.cmdline()]
    vlog = open(os.path.join(rundir, "vmm.log"), "w")
    t0 = time.monotonic()
    vmm = subprocess.Popen(vargv, stdout=vlog, stderr=subprocess.STDOUT)
    stim = _Stimulus(cfg, ctl, name, res) if cfg.vmbusctl else None

    last_progress = t0
    report_seen_at = None     # first crash/lockup report, host clock
    report_done_at = None     # its stack trace is complete
    stall_end_at = None
    shutdown_sent = False
    pos = 0
    text = ""
    pending = ""
    last_cb = 0.0
    try:
        while True:
            now = time.monotonic()
            with open(console, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            if chunk:
                pos += len(chunk)
                new = chunk.decode("latin-1")
                text += new
                # Whole lines only: a read can end in the middle of one.
                pending += new
                cut = pending.rfind("\n") + 1
                complete, pending = pending[:cut], pending[cut:]
                for line in triage.clean_lines(complete):
                    m = re.match(r"FUZZ-ITER (\d+) (begin|end)", line)
                    if m:
                        last_progress = now
                        if m.group(2) == "end":
                            res.iterations = int(m.group(1))
                        else:
                            res.started = int(m.group(1))
                    elif line.startswith("FUZZ-READY"):
                        last_progress = now
                        res.boot_s = now - t0
                        if stim and not stim.is_alive():
                            stim.start()
                    elif line.startswith("FUZZ-STALL-END"):
                        stall_end_at = now
                    elif report_seen_at and not report_done_at and (
                            line.startswith("Modules linked in:") or "---[ end trace" in line):
                        report_done_at = now
                    if report_seen_at is None and (triage.match_event(line) or ("",))[0] in (
                            "crash", "lockup"):
                        report_seen_at = now
                        res.event_iteration = res.started
                        res.event_s = now - t0
            if vmm.poll() is not None:
                break
            if report_seen_at and now - report_seen_at > CRASH_DRAIN_S:
                break
            # The registers printed again and the panic line add nothing to
            # the title; the nested rig's serial port is slow.
            if report_done_at and now - report_done_at > 1.5:
                break
            if cfg.stop_titles and not report_seen_at:
                _, title, _ = triage.classify(text, cfg.ignore, cfg.frame_modules)
                if title and triage.is_listed(title, cfg.stop_titles):
                    report_seen_at = now
            # A report being printed wins over the guest's stall report.
            if stall_end_at and not report_seen_at and now - stall_end_at > 3:
                res.stalled = True
                break
            if not report_seen_at and now - last_progress > HANG_S:
                res.stalled = True
                break
            if deadline and now > deadline and not shutdown_sent:
                shutdown_sent = True
                if stim:
                    stim.shutdown()
                deadline = now + 30  # then stop it
            elif deadline and shutdown_sent and now > deadline:
                break
            if progress and now - last_cb >= 1:
                last_cb = now
                progress(res)
            time.sleep(0.2)
    finally:
        if stim:
            stim.stop.set()
        res.vmm_rc = _stop(vmm)
        vlog.close()
        _stop(daemon)
        dlog.close()
        shutil.rmtree(private, ignore_errors=True)
        res.wall_s = time.monotonic() - t0
    with open(console, "rb") as f:
        text = f.read().decode("latin-1")
    res.bucket, res.title, res.events = triage.classify(text, cfg.ignore, cfg.frame_modules,
                                                        stalled=res.stalled)
    if res.bucket != "clean" and res.event_iteration is None:
        res.event_iteration = res.started
        res.event_s = res.wall_s
    vfz = sorted(glob.glob(os.path.join(rundir, "*.vfz")), key=os.path.getmtime)
    res.transcript = vfz[-1] if vfz else None
    return res
