# SPDX-License-Identifier: MIT
"""vmbus-fuzz command line: run, replay, minimize, triage."""

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time

from . import boot, campaign, triage

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.dirname(TOOLS)
FUZZ_GUEST = os.path.join(SRC, "tests", "fuzz-guest")
NESTED_RUN = os.path.join(SRC, "tests", "e2e", "nested-run")
DEFAULT_IGNORE = os.path.join(FUZZ_GUEST, "ignore.txt")

EPILOG = """\
examples:
  vmbus-fuzz run --duration 600 --seed 42 --out /tmp/camp
  vmbus-fuzz run --kernel ~/linux/arch/x86/boot/bzImage --kver 6.1.0-kasan --duration 3600
  vmbus-fuzz replay /tmp/camp/crash-1a2b3c4d5e
  vmbus-fuzz minimize /tmp/camp/crash-1a2b3c4d5e
  vmbus-fuzz triage console.log
Without --direct, the campaign runs inside one L1 VM of tests/e2e/nested-run
(QEMU TCG with nested SVM), for hosts whose KVM has no Hyper-V emulation.
Details: docs/fuzzing-guest-drivers.md.
"""


def _find_binary(build, names):
    for n in names:
        for pat in ("src/*/%s" % n, "src/*/*/%s" % n, "%s" % n):
            hits = [h for h in glob.glob(os.path.join(build, pat)) if os.access(h, os.X_OK)]
            if hits:
                return os.path.abspath(hits[0])
    return None


def _newest_kernel():
    ks = sorted(glob.glob("/boot/vmlinuz-*"))
    return ks[-1] if ks else None


def _seed(s):
    return int(s, 0) & (2 ** 64 - 1)


def _common(p):
    p.add_argument("--build", default=os.path.join(SRC, "build"),
                   help="meson build directory with the binaries (default: SRC/build)")
    p.add_argument("--vmbusd", help="the fuzzing daemon (default: BUILD's vmbusd-guestfuzz)")
    p.add_argument("--vmm", help="vmbus-vmm (default: BUILD's)")
    p.add_argument("--vmbusctl", help="vmbusctl (default: BUILD's)")
    p.add_argument("--direct", action="store_true",
                   help="this host's KVM has Hyper-V emulation: no nested L1")
    p.add_argument("--l1-timeout", type=int, default=0,
                   help="seconds for the nested L1 (default: duration + 10 min)")
    p.add_argument("--out", help="output directory")


def _resolve(args, need_mutate=True):
    b = args.build
    args.vmm = args.vmm or _find_binary(b, ["vmbus-vmm"])
    args.vmbusctl = args.vmbusctl or _find_binary(b, ["vmbusctl"])
    if not args.vmbusd:
        args.vmbusd = _find_binary(b, ["vmbusd-guestfuzz"])
    for what in ("vmm", "vmbusctl", "vmbusd"):
        v = getattr(args, what)
        if not v or not os.access(v, os.X_OK):
            sys.exit("vmbus-fuzz: no %s (build the project, or pass --%s)" % (what, what))
        setattr(args, what, os.path.abspath(v))


def _nested(args, argv, timeout):
    """Run this command again with --direct inside a nested-run L1 whose
    shared directory is args.out."""
    cmd = [NESTED_RUN, "--quiet", "--timeout", str(timeout), "--out", args.out, "--",
           sys.executable if sys.executable.startswith("/usr/") else "/usr/bin/python3",
           os.path.join(TOOLS, "vmbus-fuzz")] + argv + ["--direct"]
    print("vmbus-fuzz: in a nested L1: %s" % " ".join(shlex.quote(c) for c in cmd), flush=True)
    return subprocess.call(cmd)


# ---- run ------------------------------------------------------------------

def _build_initrd(args):
    kver = args.kver
    if not kver:
        base = os.path.basename(args.kernel)
        kver = base[len("vmlinuz-"):] if base.startswith("vmlinuz-") else None
    if not kver or not os.path.isdir("/lib/modules/" + kver):
        sys.exit("vmbus-fuzz: no /lib/modules/%s for the guest's modules: pass --kver or --initrd"
                 % kver)
    out = os.path.join(args.out, "initrd-fuzz.gz")
    cmd = [os.path.join(FUZZ_GUEST, "mkinitramfs-fuzz"), "--kver", kver]
    for m in args.module:
        cmd += ["--module", m]
    subprocess.check_call(cmd + [out], stdout=subprocess.DEVNULL)
    return out


def cmd_run(args, argv):
    args.out = os.path.abspath(args.out or "vmbus-fuzz-%d" % int(time.time()))
    os.makedirs(args.out, exist_ok=True)
    args.kernel = os.path.abspath(args.kernel or _newest_kernel() or "")
    if not os.path.isfile(args.kernel):
        sys.exit("vmbus-fuzz: no guest kernel (install linux-image-amd64 or pass --kernel)")
    _resolve(args)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(8), "little")
    if not args.direct:
        # Prepare on the host (the initramfs needs the host's module tree),
        # then the same command inside L1.
        if not args.initrd:
            args.initrd = _build_initrd(args)
        argv = _replace_opt(argv, "--initrd", args.initrd)
        argv = _replace_opt(argv, "--seed", "0x%x" % args.seed)
        argv = _replace_opt(argv, "--out", args.out)
        t = args.l1_timeout or ((args.duration or 3600) + 600)
        return _nested(args, argv, t)
    if not args.initrd:
        args.initrd = _build_initrd(args)
    mods = args.mods.split(",") if args.mods else ["hv_utils"]
    plugins, vsps = list(args.plugin), ["heartbeat", "shutdown", "timesync", "kvp"]
    for m in args.module:
        name = os.path.basename(m).rsplit(".ko", 1)[0]
        if name not in mods:
            mods.append(name)
    for p in plugins:
        vsps.append(os.path.basename(p).rsplit(".so", 1)[0])
    vsps += [v for v in args.vsp if v not in vsps]
    params = {}
    for kv in args.vsp_param:
        k, _, v = kv.partition("=")
        params[k] = v
    ignore = triage.read_list(args.ignore) if args.ignore and os.path.exists(args.ignore) else []
    known = triage.read_list(args.known) if args.known else []
    cfg = boot.BootConfig(vmbusd=args.vmbusd, vmm=args.vmm, vmbusctl=args.vmbusctl,
                          kernel=args.kernel, initrd=os.path.abspath(args.initrd),
                          plugins=[os.path.abspath(p) for p in plugins], vsps=vsps,
                          vsp_params=params, vm_params=args.vm_param, mods=mods,
                          iterations=args.iterations_per_boot,
                          hold=args.hold, cmdline_extra=args.cmdline or "",
                          mutate=not args.no_mutate, fuzz_knobs=args.fuzz, ignore=ignore,
                          frame_modules=args.frame_module)
    c = campaign.Campaign(cfg, args.out, args.seed, duration_s=args.duration, boots=args.boots,
                          known=known, until=args.until)
    try:
        summary = c.run()
    except RuntimeError as e:
        print("vmbus-fuzz: %s" % e, file=sys.stderr)
        return 2
    fail_on = set(args.fail_on.split(",")) - {"none", ""}
    bad = [f for f in summary["findings"] if f["bucket"] in fail_on and not f["known"]]
    missing = [u for u in args.until if not any(triage.is_listed(f["title"], [u])
                                                 for f in summary["findings"])]
    print("vmbus-fuzz: %d boots, %d iterations in %.0f s (%.1f/min), %d findings, %d new"
          " in {%s}%s" % (summary["boots"], summary["iterations"], summary["elapsed_s"],
                          summary["iterations_per_min"], len(summary["findings"]), len(bad),
                          ",".join(sorted(fail_on)),
                          ("; not found: " + ", ".join(missing)) if missing else ""), flush=True)
    for f in summary["findings"]:
        print("  %-17s %s%s  [%s after %.0f s, seen %d]" % (
            f["bucket"], f["title"], " (known)" if f["known"] else "", os.path.basename(f["dir"]),
            f["found_after_s"], f["count"]))
    return 1 if bad or missing else 0


def _replace_opt(argv, opt, value):
    out, i, seen = [], 0, False
    while i < len(argv):
        if argv[i] == opt:
            out += [opt, value]
            i += 2
            seen = True
        elif argv[i].startswith(opt + "="):
            out.append("%s=%s" % (opt, value))
            i += 1
            seen = True
        else:
            out.append(argv[i])
            i += 1
    return out if seen else out + [opt, value]


# ---- replay ---------------------------------------------------------------

def cmd_replay(args, argv):
    d = os.path.abspath(args.finding)
    with open(os.path.join(d, "verdict.json")) as f:
        v = json.load(f)
    transcript = os.path.abspath(args.transcript or os.path.join(d, "transcript"))
    if not os.path.isfile(transcript):
        sys.exit("vmbus-fuzz: %s has no transcript to replay" % d)
    args.out = os.path.abspath(args.out or os.path.join(d, "replay"))
    os.makedirs(args.out, exist_ok=True)
    _resolve(args)
    if not args.direct:
        argv = _replace_opt(argv, "--out", args.out)
        return _nested(args, argv, args.l1_timeout or 900)
    # One iteration more than the original boot had begun before the report
    # (the replay ends as soon as the title comes back).
    iters = max(v.get("iteration") or 0, v.get("iterations_in_boot") or 0) + 1
    # Paths in verdict.json are relative to the finding's directory.
    cfg = boot.BootConfig(vmbusd=args.vmbusd, vmm=args.vmm, vmbusctl=args.vmbusctl,
                          kernel=args.kernel or os.path.join(d, v["kernel"]),
                          initrd=os.path.abspath(args.initrd or os.path.join(d, v["initrd"])),
                          plugins=[os.path.join(d, p) for p in v.get("plugins", [])],
                          vsps=v["vsps"],
                          vsp_params=v.get("vsp_params", {}), vm_params=v.get("vm_params", []),
                          mods=v["mods"], iterations=iters,
                          cmdline_extra="", mutate=True, replay=transcript,
                          ignore=triage.read_list(DEFAULT_IGNORE) if os.path.exists(DEFAULT_IGNORE) else [],
                          frame_modules=v.get("frame_modules", []), stop_titles=[v["title"]])
    res = boot.run_boot(cfg, args.out, _seed(v["seed"]))
    titles = [e.title for e in res.events]
    same = v["title"] in titles or res.title == v["title"]
    result = {"finding": v["title"], "replayed": res.title, "bucket": res.bucket,
              "same_title": same, "iterations": res.iterations, "wall_s": round(res.wall_s, 1),
              "events": [e.as_dict() for e in res.events]}
    with open(os.path.join(args.out, "replay.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("vmbus-fuzz: replay of %s: %s (%s) after %.0f s, %d iterations -> %s" % (
        os.path.basename(d), res.title or "clean", res.bucket, res.wall_s, res.iterations,
        "SAME TITLE" if same else "DIFFERENT (wanted: %s)" % v["title"]), flush=True)
    return 0 if same else 1


# ---- minimize -------------------------------------------------------------

def cmd_minimize(args, argv):
    d = os.path.abspath(args.finding)
    mini = args.minimizer or _find_binary(args.build, ["vmbus-fuzz-minimize"])
    if not mini:
        sys.exit("vmbus-fuzz: no vmbus-fuzz-minimize (build the project or pass --minimizer)")
    out = os.path.join(d, "transcript.min")
    # Each candidate is replayed (in its own directory); exit 0 = still the same title.
    check = [sys.executable, os.path.join(TOOLS, "vmbus-fuzz"), "replay", d, "--transcript", "{}",
             "--out", os.path.join(d, "minimize-run")]
    for opt in ("build", "vmbusd", "vmm", "vmbusctl"):
        if getattr(args, opt, None):
            check += ["--" + opt, getattr(args, opt)]
    if args.direct:
        check.append("--direct")
    return subprocess.call([mini, "-o", out, os.path.join(d, "transcript"), "--"] + check)


# ---- triage ---------------------------------------------------------------

def cmd_triage(args, argv):
    with open(args.console, "rb") as f:
        text = f.read().decode("latin-1")
    ignore = triage.read_list(args.ignore) if args.ignore and os.path.exists(args.ignore) else []
    bucket, title, evs = triage.classify(text, ignore, args.frame_module, stalled=args.stalled)
    print(json.dumps({"bucket": bucket, "title": title, "id": triage.finding_id(title) if title else None,
                      "events": [e.as_dict() for e in evs]}, indent=2))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="vmbus-fuzz", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Fuzz a Linux guest's VMBus drivers from the host "
                                             "(vmbusd-guestfuzz + vmbus-vmm), triage and replay "
                                             "what crashes.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="a campaign", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Writes OUT/crash-<id>/{transcript,console.log,seed,verdict.json} per "
                              "finding, OUT/findings.json, and a progress line every 10 s.\n"
                              "Exit status: 0; 1 a finding of a --fail-on bucket not in --known, or "
                              "an --until title not found; 2 usage; 77 a prerequisite missing.")
    _common(r)
    r.add_argument("--seed", type=_seed, help="campaign seed (boot k uses seed+k); default random")
    r.add_argument("--duration", type=int, help="seconds of fuzzing")
    r.add_argument("--boots", type=int, help="number of guest boots")
    r.add_argument("--kernel", help="guest bzImage (default: newest /boot/vmlinuz-*)")
    r.add_argument("--kver", help="the kernel's module version (/lib/modules/KVER) for the initramfs")
    r.add_argument("--initrd", help="a ready fuzz initramfs (tests/fuzz-guest/mkinitramfs-fuzz)")
    r.add_argument("--module", action="append", default=[],
                   help="an extra guest module FILE.ko to put in the initramfs and reload")
    r.add_argument("--mods", help="modules reloaded each iteration, comma list (default hv_utils)")
    r.add_argument("--plugin", action="append", default=[],
                   help="a VSP plugin NAME.so offered to the guest (VSP NAME)")
    r.add_argument("--vsp-param", action="append", default=[], metavar="VSP.KEY=VALUE")
    r.add_argument("--vsp", action="append", default=[],
                   help="a built-in VSP offered besides the IC ones (storvsp, netvsp)")
    r.add_argument("--vm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a line of the VM's config section (storvsp.disk=PATH readonly, "
                        "netvsp.tap=NAME)")
    r.add_argument("--fuzz", action="append", default=[], metavar="KEY=VALUE",
                   help="a mutation knob of vmbusd-guestfuzz (p=, class=, after=, ...)")
    r.add_argument("--no-mutate", action="store_true",
                   help="--vmbusd is a plain vmbusd: stimulus and triage only")
    r.add_argument("--iterations-per-boot", type=int, default=20,
                   help="module-reload iterations before a fresh boot (default 20)")
    r.add_argument("--hold", type=int, default=2, help="seconds the modules stay loaded (default 2)")
    r.add_argument("--cmdline", help="extra guest kernel command line")
    r.add_argument("--known", help="list of known finding titles (one a line, re:REGEX allowed)")
    r.add_argument("--ignore", default=DEFAULT_IGNORE,
                   help="titles that are not findings (default tests/fuzz-guest/ignore.txt)")
    r.add_argument("--fail-on", default="crash", help="buckets that fail the run (default crash)")
    r.add_argument("--until", action="append", default=[], metavar="TITLE",
                   help="stop once every such title (or re:REGEX) was found; fail if one was not")
    r.add_argument("--frame-module", action="append", default=[],
                   help="a module whose frames name findings (besides the hv drivers)")

    p = sub.add_parser("replay", help="re-run a finding's transcript, check the title")
    _common(p)
    p.add_argument("finding", help="a crash-<id> directory")
    p.add_argument("--transcript", help="another transcript (e.g. a minimized one)")
    p.add_argument("--kernel")
    p.add_argument("--initrd")

    m = sub.add_parser("minimize", help="shrink a finding's transcript (vmbus-fuzz-minimize)")
    _common(m)
    m.add_argument("finding")
    m.add_argument("--minimizer")

    t = sub.add_parser("triage", help="classify a console log")
    t.add_argument("console")
    t.add_argument("--ignore", default=DEFAULT_IGNORE)
    t.add_argument("--frame-module", action="append", default=[])
    t.add_argument("--stalled", action="store_true", help="the guest had stopped answering")

    args = ap.parse_args(argv)
    sub_argv = argv
    if args.cmd == "run":
        if args.duration is None and args.boots is None:
            args.duration = 600
        return cmd_run(args, sub_argv)
    if args.cmd == "replay":
        return cmd_replay(args, sub_argv)
    if args.cmd == "minimize":
        return cmd_minimize(args, sub_argv)
    return cmd_triage(args, sub_argv)
