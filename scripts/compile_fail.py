#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Extract the compile_fail examples of the project's Rust files.

The kernel's doctests run as KUnit tests and cannot hold examples that must
not compile, so those are written as ```ignore,compile_fail,EXXXX blocks
(as rust/kernel/types/for_lt.rs does) and checked by scripts/check.sh: each
one becomes an external module that must fail to build with error EXXXX.

  compile_fail.py OUTDIR FILE...

Writes OUTDIR/<n>/cf.rs, OUTDIR/<n>/Kbuild and OUTDIR/<n>/expect (the error
code, then "FILE:LINE"), one directory per example, and in OUTDIR/<n>/ok/ the
same example without the lines marked "// error[EXXXX]", which must build:
so the example fails for the marked reason and no other.
"""
import os
import re
import sys

out = sys.argv[1]
n = 0
for path in sys.argv[2:]:
    lines = open(path).read().split('\n')
    i = 0
    while i < len(lines):
        m = re.match(r'\s*//[/!] ```(\S*)$', lines[i])
        if not m or 'compile_fail' not in m.group(1).split(','):
            i += 1
            continue
        codes = [a for a in m.group(1).split(',') if re.fullmatch(r'E\d{4}', a)]
        if len(codes) != 1:
            sys.exit(f'{path}:{i + 1}: a compile_fail example must name its error code')
        start = i + 1
        body = []
        i += 1
        while not re.match(r'\s*//[/!] ```$', lines[i]):
            text = re.sub(r'^\s*//[/!] ?', '', lines[i])
            # Hidden lines ("# ...") are compiled too, as rustdoc does.
            if text == '#' or text.startswith('# '):
                text = text[2:]
            body.append(text)
            i += 1
        i += 1
        marker = f'// error[{codes[0]}]'
        if not any(marker in line for line in body):
            sys.exit(f'{path}:{start}: no line of the example is marked "{marker}"')
        d = os.path.join(out, str(n))
        for sub, text in ((d, body),
                          (os.path.join(d, 'ok'), [ln for ln in body if marker not in ln])):
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, 'cf.rs'), 'w') as f:
                f.write('// SPDX-License-Identifier: GPL-2.0\n' + '\n'.join(text) + '\n')
            with open(os.path.join(sub, 'Kbuild'), 'w') as f:
                f.write('obj-m := cf.o\n')
        with open(os.path.join(d, 'expect'), 'w') as f:
            f.write(f'{codes[0]}\n{path}:{start}\n')
        n += 1
print(n)
