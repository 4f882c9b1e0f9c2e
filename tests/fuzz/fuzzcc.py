#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build one libFuzzer executable with clang, whatever compiler meson uses.

usage: fuzzcc.py CC OUTPUT DEPFILE CFLAG... [--link LDFLAG...] -- SOURCE...

Compiles each source to its own object (so each gets a dependency file),
links them with the same flags, and writes one merged depfile for ninja,
so editing any included header rebuilds the fuzzer.  LDFLAGs (libraries
such as -luring) are given to the link step only.
"""
import os
import subprocess
import sys


def parse_depfile(path):
    with open(path) as f:
        text = f.read().replace('\\\n', ' ')
    deps = []
    for line in text.splitlines():
        if ':' not in line:
            continue
        deps.extend(line.split(':', 1)[1].split())
    return deps


def main(argv):
    if len(argv) < 5 or '--' not in argv:
        sys.exit(__doc__)
    cc, out, depfile = argv[1:4]
    sep = argv.index('--')
    cflags, sources = argv[4:sep], argv[sep + 1:]
    ldflags = []
    if '--link' in cflags:
        at = cflags.index('--link')
        cflags, ldflags = cflags[:at], cflags[at + 1:]
    objdir = out + '.p'
    os.makedirs(objdir, exist_ok=True)
    objs, deps = [], []
    for i, src in enumerate(sources):
        stem = '%02d-%s' % (i, os.path.basename(src))
        obj = os.path.join(objdir, stem + '.o')
        dep = os.path.join(objdir, stem + '.d')
        subprocess.run([cc] + cflags + ['-MD', '-MF', dep, '-c', src, '-o', obj], check=True)
        objs.append(obj)
        deps.extend(parse_depfile(dep))
    subprocess.run([cc] + cflags + objs + ldflags + ['-o', out], check=True)
    uniq = sorted(set(deps))
    with open(depfile, 'w') as f:
        f.write('%s: %s\n' % (out.replace(' ', '\\ '),
                              ' '.join(d.replace(' ', '\\ ') for d in uniq)))


if __name__ == '__main__':
    try:
        main(sys.argv)
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode or 1)
