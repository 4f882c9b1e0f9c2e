#!/usr/bin/env python3
"""The plugin ABI is exactly vsp.h: the vmbusd executable exports the
functions include/vmbusd/vsp.h declares and nothing else, and the linker's
export list (include/vmbusd/vsp.sym) names the same set.

usage: exports.py VMBUSD VSP_H VSP_SYM CC...

The header is read through the C preprocessor (comments gone, C rather than
C++), keeping only the lines that come from vsp.h itself.  The binary's
dynamic symbol table is read with nm; symbols carrying a library version
(stderr@GLIBC_2.2.5) are copies of a shared library's data that the linker
places in every executable that uses them, not vmbusd's; so are data symbols
without a version that a library vmbusd needs defines (a sanitizer build's
__asan_option_detect_stack_use_after_return from libasan).
"""
import os
import re
import shutil
import subprocess
import sys

SKIP = 77


def header_functions(cc, header):
    out = subprocess.run(cc + ['-E', '-x', 'c', header], check=True, capture_output=True,
                         text=True).stdout
    mine = []
    header = os.path.realpath(header)
    current = None
    for line in out.splitlines():
        m = re.match(r'#\s*\d+\s+"([^"]*)"', line)
        if m:
            current = os.path.realpath(m.group(1)) if not m.group(1).startswith('<') else None
            continue
        if current == header:
            mine.append(line)
    text = ' '.join(mine)
    # Bodies of struct/enum definitions are not declarations of vsp.h's own.
    flat, depth = [], 0
    for ch in text:
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        elif depth == 0:
            flat.append(ch)
    funcs, problems = set(), []
    for decl in ''.join(flat).split(';'):
        decl = re.sub(r'__attribute__\s*\(\(.*?\)\)', ' ', decl).strip()
        decl = ' '.join(decl.split())
        if not decl or decl.startswith('typedef '):
            continue
        if re.fullmatch(r'(struct|union|enum)\s+\w+', decl):
            continue  # a type's (forward) declaration
        m = re.match(r'[^(]*?\b([A-Za-z_]\w*)\s*\(', decl)
        if m and not re.match(r'[^(]*\(\s*\*', decl):
            funcs.add(m.group(1))
        else:
            problems.append(decl)
    return funcs, problems


def dynamic_list(path):
    text = re.sub(r'/\*.*?\*/', ' ', open(path).read(), flags=re.S)
    body = re.search(r'\{(.*)\}', text, flags=re.S)
    return {s.strip() for s in body.group(1).split(';') if s.strip()} if body else set()


def dynamic_symbols(path):
    """{name: nm type letter} of path's defined dynamic symbols."""
    out = subprocess.run(['nm', '-D', '--defined-only', path], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            syms[parts[2]] = parts[1]
    return syms


def needed_libraries(binary):
    """The shared libraries the dynamic loader maps for binary (ldd)."""
    out = subprocess.run(['ldd', binary], capture_output=True, text=True).stdout
    return re.findall(r'=>\s*(/\S+)', out)


def exported(binary):
    syms = {n: t for n, t in dynamic_symbols(binary).items() if '@' not in n}
    data = {n for n, t in syms.items() if t in 'BbDdVv'}
    if data:
        # Copy relocations of an unversioned library's data are not vmbusd's.
        for lib in needed_libraries(binary):
            data -= set(dynamic_symbols(lib))
        syms = {n: t for n, t in syms.items() if t not in 'BbDdVv' or n in data}
    return set(syms)


def diff(what, want, got):
    missing, extra = sorted(want - got), sorted(got - want)
    for s in missing:
        print(f'FAIL: {what}: {s} is declared in vsp.h but missing')
    for s in extra:
        print(f'FAIL: {what}: {s} is not a vsp.h function')
    return not missing and not extra


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    binary, header, symlist, cc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    if len(cc) == 1:
        cc = cc[0].split()
    if not shutil.which('nm'):
        print('SKIP: nm (binutils) not found')
        return SKIP
    funcs, problems = header_functions(cc, header)
    for p in problems:
        print(f'FAIL: vsp.h declaration this test cannot classify: {p}')
    if len(funcs) < 10:
        print(f'FAIL: only {len(funcs)} functions found in {header}: {sorted(funcs)}')
        return 1
    print(f'vsp.h declares {len(funcs)} functions')
    ok = diff(f'export list {symlist}', funcs, dynamic_list(symlist))
    ok = diff(f'dynamic symbols of {binary}', funcs, exported(binary)) and ok
    if ok and not problems:
        print('PASS: vmbusd exports exactly the vsp.h functions')
        return 0
    return 1


if __name__ == '__main__':
    sys.exit(main())
