# SPDX-License-Identifier: MIT
"""Triage of a guest's serial console: what went wrong, and a title for it.

Buckets (docs/fuzzing-guest-drivers.md, "Outcome buckets"):
  crash              Oops, kernel BUG, KASAN, UBSAN, general protection fault,
                     page fault, panic
  warn               WARNING: (the kernel went on)
  lockup             soft lockup, hung task, RCU stall
  hang-untimed-wait  the guest stopped making progress and the stuck task
                     waits in wait_for_completion() (no timeout) under an hv
                     driver: a wait the driver leaves untimed by design
  hang               no progress and nothing explains it
  clean              none of the above

A title is the event's first line with the variable parts (addresses,
PIDs, CPU numbers, times, build paths) removed, plus the first stack frame
in the hv drivers (or in a module named with --frame-module); findings are
deduplicated by it.
"""

import hashlib
import re

# Modules whose frames name a finding (the drivers under test).
HV_MODULES = {"hv_vmbus", "hv_utils", "hv_storvsc", "hv_netvsc", "hv_sock", "hid_hyperv",
              "hyperv_keyboard", "hv_balloon", "hyperv_fb", "pci_hyperv", "fzpc"}
# Built-in files of those drivers, for kernels built with them =y.
HV_FUNC_PREFIXES = ("vmbus_", "hv_", "storvsc_", "netvsc_", "rndis_", "hvs_", "kvp_", "vss_",
                    "fcopy_", "heartbeat_", "shutdown_", "timesync_", "util_", "fzpc_")

BUCKET_ORDER = ["crash", "lockup", "hang-untimed-wait", "hang", "warn", "clean"]

_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# " func+0x1a/0x40 [mod]", "RIP: 0010:func+0x1a/0x40 [mod]", "[<0>] func+0x1a/0x40 [mod]"
_FRAME = re.compile(r"(?:^|\s|:|\[<[0-9a-f]+>\]\s)(\?\s)?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+"
                    r"(?:\s\[([\w-]+)\])?")


def clean_lines(text):
    """Console text -> lines without carriage returns, timestamps, or
    non-printable bytes."""
    out = []
    for raw in text.replace("\r", "").split("\n"):
        line = "".join(c if " " <= c <= "~" or c == "\t" else "?" for c in raw)
        out.append(_TS.sub("", line).rstrip())
    return out


def _frames(lines, extra_modules):
    """(function, module, in the drivers under test, stale) of each frame in
    lines, in order; stale: printed with '?' (a return address left on the
    stack, maybe not a caller)."""
    mods = HV_MODULES | set(extra_modules)
    for line in lines:
        for m in _FRAME.finditer(line):
            # ".isra.0", ".constprop.0", ".part.0", ".cold": the same function
            func, mod = re.sub(r"\.(isra|constprop|part|cold|llvm)(\.\d+)?", "", m.group(2)), m.group(3)
            hv = (mod in mods) if mod else func.startswith(HV_FUNC_PREFIXES)
            yield func, mod, hv, bool(m.group(1))


def first_hv_frame(lines, extra_modules=(), strict=False):
    """The first frame in the drivers under test; without one, the first
    stale ('?') frame in them (a CPU stuck in a hypercall leaves only
    those), then the first frame (neither with strict)."""
    frames = list(_frames(lines, extra_modules))
    for want_stale in (False, True):
        for func, mod, hv, stale in frames:
            if hv and stale == want_stale:
                return func
    if strict:
        return None
    return next((f for f, _, _, stale in frames if not stale), None)


def _untimed_wait(lines):
    """The stack shows a wait without a timeout."""
    # wait_for_completion() itself sleeps in schedule_timeout(MAX_...): look
    # at the waiting API the driver called, not at the scheduler below it.
    # A tail call often leaves only __wait_for_common, which the timed
    # variants share: the caller sees the task stuck past the stall time
    # (25 s, longer than the hv drivers' own timeouts), so a wait that
    # names no timeout counts as untimed.
    text = "\n".join(l for l in lines if not re.match(r"\s*\? ", l))
    waits = re.findall(r"\b(\w*wait_for_completion\w*|__wait_for_common|wait_for_common\w*|"
                       r"wait_event\w*|msleep\w*|usleep\w*)\+", text)
    return bool(waits) and not any("timeout" in w or "sleep" in w for w in waits)


def _norm(s):
    s = re.sub(r"0x[0-9a-fA-F]+", "ADDR", s)
    s = re.sub(r"\b[0-9a-f]{8,16}\b", "ADDR", s)
    s = re.sub(r"CPU#?:? ?\d+", "CPU", s)
    s = re.sub(r"PID: \d+", "PID", s)
    return re.sub(r"\s+", " ", s).strip()


class Event:
    def __init__(self, bucket, head, index):
        self.bucket, self.head, self.index = bucket, head, index
        self.frame = None

    @property
    def title(self):
        # A WARNING's first line already names its function.
        if not self.frame or self.head.endswith(" " + self.frame):
            return self.head
        return self.head + " in " + self.frame

    def as_dict(self):
        return {"bucket": self.bucket, "title": self.title, "line": self.index + 1}


def match_event(line):
    """(bucket, head) if line starts a kernel report, else None."""
    m = re.search(r"kernel BUG at (\S+):(\d+)!", line)
    if m:
        return "crash", "kernel BUG at %s:%s" % (m.group(1).rsplit("/", 1)[-1], m.group(2))
    m = re.search(r"BUG: KASAN: ([\w-]+) in ([\w.]+)", line)
    if m:
        return "crash", "KASAN: %s in %s" % (m.group(1), m.group(2))
    m = re.search(r"UBSAN: ([\w -]+?) in (\S+?):(\d+)", line)
    if m:
        return "crash", "UBSAN: %s in %s:%s" % (m.group(1).strip(), m.group(2).rsplit("/", 1)[-1],
                                                  m.group(3))
    m = re.search(r"BUG: KFENCE: ([\w-]+)", line)
    if m:
        return "crash", "KFENCE: " + m.group(1)
    m = re.search(r"watchdog: BUG: soft lockup", line)
    if m:
        return "lockup", "soft lockup"
    m = re.search(r"INFO: task ([^:\s]+):\d+ blocked for more than", line)
    if m:
        return "lockup", "hung task %s" % m.group(1)
    if re.search(r"rcu: INFO: \w+ (detected stalls|self-detected stall)", line):
        return "lockup", "RCU stall"
    m = re.search(r"BUG: kernel NULL pointer dereference", line)
    if m:
        return "crash", "BUG: kernel NULL pointer dereference"
    m = re.search(r"BUG: unable to handle page fault", line)
    if m:
        return "crash", "BUG: unable to handle page fault"
    if re.search(r"general protection fault", line):
        return "crash", "general protection fault"
    m = re.search(r"\bBUG: ([^,\[]+)", line)
    if m and "soft lockup" not in line:
        return "crash", "BUG: " + _norm(re.sub(r"\d+", "N", m.group(1)))
    m = re.search(r"WARNING: CPU: \d+ PID: \d+ at (\S+):(\d+) ([\w.]+)", line)
    if m:
        return "warn", "WARNING at %s:%s %s" % (m.group(1).rsplit("/", 1)[-1], m.group(2), m.group(3))
    m = re.search(r"WARNING: CPU: \d+ PID: \d+ at ([\w.]+)", line)
    if m:
        return "warn", "WARNING in " + m.group(1)
    m = re.search(r"Kernel panic - not syncing: (.*)", line)
    if m:
        return "crash", "Kernel panic: " + _norm(re.sub(r"\d+", "N", m.group(1)))
    if re.search(r"^Oops: |\binvalid opcode: ", line):
        return "crash", "Oops"
    return None


def _report_end(lines, i):
    """Index past the report that starts at lines[i]: its trace ends with
    '---[ end trace' or a line like '</TASK>' followed by a non-trace line,
    or 80 lines."""
    end = min(len(lines), i + 80)
    for j in range(i + 1, end):
        if "---[ end trace" in lines[j] or "end Kernel panic" in lines[j]:
            return j + 1
        # Oops lines continue the report they follow; a panic has a stack of
        # its own (the panic path), which must not name the report.
        if (j > i + 1 and match_event(lines[j])
                and not re.match(r"(Oops: |invalid opcode: )", lines[j])):
            return j
    return end


def events(text, extra_modules=()):
    """Every kernel report in the console, in order, with its title."""
    lines = clean_lines(text)
    found = []
    i = 0
    while i < len(lines):
        ev = match_event(lines[i])
        if not ev:
            i += 1
            continue
        end = _report_end(lines, i)
        if ev[1].startswith("Kernel panic") and found:
            # The consequence of the report before it (oops=panic,
            # softlockup_panic=1): not a finding of its own.
            i = end if end > i else i + 1
            continue
        e = Event(ev[0], ev[1], i)
        body = lines[i:end]
        e.frame = first_hv_frame(body, extra_modules)
        if e.bucket == "lockup" and e.head.startswith("hung task") and _untimed_wait(body):
            e.bucket = "hang-untimed-wait"
            e.head = "untimed wait: " + e.head
        found.append(e)
        i = end if end > i else i + 1
    return found


def _blocked_tasks(lines):
    """A SysRq-w dump ("task:COMM state:D ..." then its trace, per task) as
    [(comm, lines)]."""
    out = []
    for line in lines:
        m = re.match(r"task:(\S+)\s+state:", line)
        if m:
            out.append((m.group(1), []))
        elif out:
            out[-1][1].append(line)
    return out


def stall_event(text, extra_modules=()):
    """The guest's own stall report (guest/fuzz.sh's watchdog: FUZZ-STALL,
    FUZZ-STACK + /proc/PID/stack per process, FUZZ-BLOCKED + the kernel's
    blocked-task dump, FUZZ-STALL-END) as an event, or None.  The stuck
    task is the first blocked one with a frame in the drivers under test
    (the module tool's own, then the kernel's dump: an asynchronous probe
    waits in a kworker); the title names that frame, not the task, whose
    name differs between runs of the same bug."""
    lines = clean_lines(text)
    for i, line in enumerate(lines):
        if not line.startswith("FUZZ-STALL "):
            continue
        end = next((j for j in range(i, len(lines)) if lines[j].startswith("FUZZ-STALL-END")),
                   len(lines))
        body = lines[i:end]
        split = next((k for k, b in enumerate(body) if b.startswith("FUZZ-BLOCKED")), len(body))
        stacks, blocked = body[:split], _blocked_tasks(body[split:])
        procs = []  # (comm, /proc stack)
        for b in stacks:
            m = re.match(r"FUZZ-STACK (\S+)", b)
            if m:
                procs.append((m.group(1), []))
            elif procs:
                procs[-1][1].append(b)
        frame, untimed = None, False
        for comm, st in procs:
            frame = first_hv_frame(st, extra_modules, strict=True)
            if frame:
                dump = next((t for c, t in blocked if c == comm), [])
                untimed = _untimed_wait(dump)
                break
        if not frame:
            for comm, dump in blocked:
                frame = first_hv_frame(dump, extra_modules, strict=True)
                if frame:
                    untimed = _untimed_wait(dump)
                    break
        if frame and untimed:
            e = Event("hang-untimed-wait", "untimed wait", i)
        elif frame:
            e = Event("hang", "no progress", i)
        else:
            # A printk the serial console interleaved into the line is not
            # part of the step: cut at the kernel's timestamp.
            step = re.split(r"\[\s*\d+\.\d+\]", line[len("FUZZ-STALL "):])[0]
            step = re.sub(r"\d+", "N", step.strip())
            e = Event("hang", "no progress: %s" % re.sub(r"\s+", " ", step), i)
        e.frame = frame
        return e
    return None


def classify(text, ignore=(), extra_modules=(), stalled=False):
    """The verdict of one boot's console: (bucket, title, [Event...]).
    ignore: titles (or 're:'-prefixed regexes) that are not findings (e.g.
    the nested rig's own boot warning).  stalled: the host saw no progress
    (the guest stopped answering)."""
    evs = [e for e in events(text, extra_modules) if not is_listed(e.title, ignore)]
    if stalled:
        s = stall_event(text, extra_modules)
        if s is None:
            s = Event("hang", "no progress: guest stopped answering", 0)
        if not any(e.bucket in ("crash", "lockup", "hang-untimed-wait") for e in evs):
            evs.append(s)
    if not evs:
        return "clean", "", []
    worst = min(evs, key=lambda e: BUCKET_ORDER.index(e.bucket))
    return worst.bucket, worst.title, evs


def is_listed(title, patterns):
    for p in patterns:
        if p.startswith("re:"):
            if re.search(p[3:], title):
                return True
        elif p == title:
            return True
    return False


def read_list(path):
    """A known-findings or ignore list: one title (or re:REGEX) a line, '#' comments."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def finding_id(title):
    return hashlib.sha1(title.encode()).hexdigest()[:10]
