# SPDX-License-Identifier: MIT
"""A campaign: boot after boot (boot k uses seed base+k), each boot running
fuzz.iters module-reload iterations in the guest; findings deduplicated by
title into OUT/crash-<id>/; a progress line on the terminal."""

import json
import os
import shutil
import sys
import time

from . import boot, triage


def _fmt_seed(s):
    return "0x%016x" % s


class Campaign:
    def __init__(self, cfg, out, base_seed, duration_s=None, boots=None, known=(),
                 until=(), log=sys.stdout):
        self.cfg, self.out, self.base_seed = cfg, out, base_seed
        self.duration_s, self.max_boots = duration_s, boots
        self.known, self.until = list(known), list(until)
        self.log = log
        self.findings = {}     # title -> summary dict
        self.iterations = 0
        self.boots = 0
        self.t0 = None
        self.last_line = 0.0

    # -- progress ---------------------------------------------------------
    def _progress(self, seed, cur, force=False):
        now = time.monotonic()
        if not force and now - self.last_line < 10:
            return
        self.last_line = now
        el = now - self.t0
        its = self.iterations + (cur.iterations if cur else 0)
        rate = its * 60.0 / el if el > 0 else 0.0
        by = {}
        for f in self.findings.values():
            by[f["bucket"]] = by.get(f["bucket"], 0) + 1
        kinds = ", ".join("%s %d" % kv for kv in sorted(by.items()))
        print("vmbus-fuzz: %5ds boots %d seed %s iterations %d (%.1f/min) findings %d%s"
              % (el, self.boots, _fmt_seed(seed), its, rate, len(self.findings),
                 " (%s)" % kinds if kinds else ""), file=self.log, flush=True)

    # -- findings ---------------------------------------------------------
    def _record(self, ev, res, rundir, seed, boot_index, primary):
        title = ev.title
        if title in self.findings:
            self.findings[title]["count"] += 1
            return None
        fid = triage.finding_id(title)
        d = os.path.join(self.out, "crash-" + fid)
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(os.path.join(rundir, "console.log"), os.path.join(d, "console.log"))
        if res.transcript:
            shutil.copyfile(res.transcript, os.path.join(d, "transcript"))
        with open(os.path.join(d, "seed"), "w") as f:
            f.write(_fmt_seed(seed) + "\n")
        # What the guest ran and the plugins the host offered, so that the
        # directory alone replays (the kernel is named by path: it is the user's).
        shutil.copyfile(self.cfg.initrd, os.path.join(d, "initrd.gz"))
        plugins = []
        for p in self.cfg.plugins:
            shutil.copyfile(p, os.path.join(d, os.path.basename(p)))
            plugins.append(os.path.basename(p))
        known = triage.is_listed(title, self.known)
        verdict = {
            "id": fid,
            "title": title,
            "bucket": ev.bucket,
            "known": known,
            "seed": _fmt_seed(seed),
            "base_seed": _fmt_seed(self.base_seed),
            "boot": boot_index,
            "iteration": res.event_iteration if primary else None,
            "iterations_in_boot": res.iterations,
            "found_after_s": round(time.monotonic() - self.t0, 1),
            "boot_time_s": round(res.event_s, 1) if (primary and res.event_s) else None,
            "campaign_iterations": self.iterations + (res.event_iteration or 0),
            "vmm_exit": res.vmm_rc,
            "stalled": res.stalled,
            "transcript": "transcript" if res.transcript else None,
            "kernel": self.cfg.kernel,
            "initrd": "initrd.gz",
            "cmdline": self.cfg.cmdline(),
            "mods": self.cfg.mods,
            "vsps": self.cfg.vsps,
            "vsp_params": self.cfg.vsp_params,
            "vm_params": self.cfg.vm_params,
            "plugins": plugins,
            "fuzz_knobs": self.cfg.fuzz_knobs,
            "frame_modules": self.cfg.frame_modules,
            "events": [e.as_dict() for e in res.events],
        }
        with open(os.path.join(d, "verdict.json"), "w") as f:
            json.dump(verdict, f, indent=2)
            f.write("\n")
        self.findings[title] = {"id": fid, "title": title, "bucket": ev.bucket, "known": known,
                                "count": 1, "found_after_s": verdict["found_after_s"],
                                "seed": verdict["seed"], "dir": d}
        print("vmbus-fuzz: NEW %s: %s%s -> %s" % (ev.bucket, title, " (known)" if known else "", d),
              file=self.log, flush=True)
        return d

    def _write_summary(self):
        el = time.monotonic() - self.t0
        summary = {
            "base_seed": _fmt_seed(self.base_seed),
            "boots": self.boots,
            "iterations": self.iterations,
            "elapsed_s": round(el, 1),
            "iterations_per_min": round(self.iterations * 60.0 / el, 2) if el > 0 else 0,
            "findings": sorted(self.findings.values(), key=lambda f: f["found_after_s"]),
        }
        with open(os.path.join(self.out, "findings.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        return summary

    def _done_until(self):
        return self.until and all(any(triage.is_listed(t, [u]) for t in self.findings)
                                  for u in self.until)

    # -- the loop ---------------------------------------------------------
    def run(self):
        os.makedirs(self.out, exist_ok=True)
        self.t0 = time.monotonic()
        deadline = self.t0 + self.duration_s if self.duration_s else None
        print("vmbus-fuzz: campaign seed %s, %s, out %s" % (
            _fmt_seed(self.base_seed),
            "%d s" % self.duration_s if self.duration_s else "%s boots" % self.max_boots,
            self.out), file=self.log, flush=True)
        while True:
            if self.max_boots is not None and self.boots >= self.max_boots:
                break
            if deadline and time.monotonic() > deadline - 20:
                break
            if self._done_until():
                break
            seed = (self.base_seed + self.boots) & (2 ** 64 - 1)
            rundir = os.path.join(self.out, "runs", "boot-%04d" % self.boots)
            res = boot.run_boot(self.cfg, rundir, seed, deadline=deadline,
                                progress=lambda r: self._progress(seed, r))
            if res.boot_s is None and res.bucket == "clean" and res.vmm_rc not in (0, 2, 3):
                # Not the guest's doing: vmbus-vmm could not run it at all.
                raise RuntimeError("vmbus-vmm exit %s before the guest started (see %s/vmm.log)"
                                   % (res.vmm_rc, rundir))
            primary_done = False
            for ev in sorted(res.events, key=lambda e: triage.BUCKET_ORDER.index(e.bucket)):
                primary = not primary_done and ev.title == res.title
                # A panic that follows another report of the same boot is its consequence.
                if ev.head.startswith("Kernel panic") and not primary:
                    continue
                self._record(ev, res, rundir, seed, self.boots, primary)
                primary_done |= primary
            self.iterations += res.iterations
            self.boots += 1
            print("vmbus-fuzz: boot %d (seed %s) ended after %.0f s: %d iterations, %s%s" % (
                self.boots - 1, _fmt_seed(seed), res.wall_s, res.iterations, res.bucket,
                (": " + res.title) if res.title else ""), file=self.log, flush=True)
            self._progress(seed, None, force=True)
            # Keep the runs of findings (their files were copied) small: drop the rest.
            if res.bucket == "clean":
                shutil.rmtree(rundir, ignore_errors=True)
            self._write_summary()
        summary = self._write_summary()
        self._progress(self.base_seed + max(self.boots - 1, 0), None, force=True)
        return summary
