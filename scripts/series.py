#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Generate and check the patch series of the project (make patches).

The series is made of the files the build uses, so it cannot drift from them:

- kernel/patches/NNNN-*.patch, in order, each one patch of the series: its
  commit message (From:, Subject:, body, Signed-off-by:), then its changes to
  files that exist in the base tree, and to files an earlier patch added
  (possibly none);
- kernel/series, which names for each of those patches the new files it adds
  (kernel/files.map gives where each one comes from in this repository).

A new file is added by its patch as the repository has it, less what later
patches change in it: their hunks on it are applied in reverse, last patch
first, to the repository's file. A `mod x;` line (with its doc comments and
attributes) and the `use` items that go through `x` are left out of a parent
module until the patch that adds `x`, so that each step of the series stands on
its own.

  series.py base-hunks PATCH
                       print PATCH without its hunks on new files (what
                       scripts/build.sh applies to the kernel tree; it links
                       the new files in whole)

  series.py base       make the base repository from the kernel source package
  series.py generate   write the series and its cover letter to $VPMEM_CACHE/patches
  series.py check      apply it with git am to a clean copy of the base, compare
                       the result with the tree the build uses, run checkpatch
"""

import fnmatch
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get('VPMEM_CACHE') or
                     pathlib.Path(os.environ.get('XDG_CACHE_HOME') or
                                  pathlib.Path.home() / '.cache') / 'virtio-pmem-rs')
KERNEL_SRC = pathlib.Path(os.environ.get('KERNEL_SRC') or CACHE / 'linux-7.3')
BASE = CACHE / 'series' / 'base'
OUT = pathlib.Path(os.environ.get('VPMEM_PATCHES') or CACHE / 'patches')
# Fixed dates make the base and the series the same commits on every machine.
DATE = '2026-11-15T00:00:00+00:00'


def log(msg):
    print(f'[series] {msg}', file=sys.stderr, flush=True)


def die(msg):
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


def git(*args, cwd=BASE, env=None, inp=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(['git', '-c', 'core.autocrlf=false', '-c', 'gc.auto=0', *args],
                       cwd=cwd, env=e, input=inp, capture_output=True,
                       text=not isinstance(inp, bytes))
    if check and r.returncode:
        die(f'git {" ".join(args)}: {r.stderr.strip()}')
    return r


# ------------------------------------------------------------------ the base

def source_package():
    debs = sorted((CACHE / 'dl').glob('linux-source-7.3_*.deb'))
    if not debs:
        die('no linux-source-7.3 package in $VPMEM_CACHE/dl: run make setup')
    return debs[-1]


def base_name():
    """Names the base: the upstream release and the package it came from."""
    deb = source_package().name
    pkg_version = deb.split('_')[1]
    return pkg_version.split('-')[0], pkg_version


def ensure_base():
    stamp = BASE / '.git' / 'vpmem-base'
    deb = source_package()
    if stamp.is_file() and stamp.read_text().strip() == deb.name:
        return
    release, pkg_version = base_name()
    log(f'base: unpacking {deb.name} into {BASE}')
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    tar = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', str(deb)], stdout=subprocess.PIPE)
    inner = subprocess.Popen(['tar', '-xO', '--wildcards', './usr/src/linux-source-*.tar.*'],
                             stdin=tar.stdout, stdout=subprocess.PIPE)
    subprocess.run(['tar', '-xJ', '--strip-components=1', '-C', str(BASE)],
                   stdin=inner.stdout, check=True)
    if inner.wait() or tar.wait():
        die(f'cannot unpack {deb}')
    log('base: committing it')
    git('init', '-q', '-b', 'base')
    git('add', '-A', '-f', '.')
    env = {'GIT_AUTHOR_NAME': 'Linux', 'GIT_AUTHOR_EMAIL': 'linux@kernel.org',
           'GIT_COMMITTER_NAME': 'Linux', 'GIT_COMMITTER_EMAIL': 'linux@kernel.org',
           'GIT_AUTHOR_DATE': DATE, 'GIT_COMMITTER_DATE': DATE}
    git('commit', '-q', '-m', f'Linux {release} (Debian linux-source-7.3 {pkg_version})', env=env)
    stamp.write_text(deb.name + '\n')


# ------------------------------------------------------------- the series

def read_files_map():
    """Returns {tree path: repo path} from kernel/files.map."""
    files = {}
    for line in (REPO / 'kernel' / 'files.map').read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        src, dst = line.split()[:2]
        if dst in files:
            die(f'files.map: {dst} twice')
        files[dst] = src
    return files


def read_series():
    """Returns [(patch file, [tree paths it adds])] in order, checked against files.map."""
    patches = sorted(p.name for p in (REPO / 'kernel' / 'patches').glob('*.patch'))
    adds = {p: [] for p in patches}
    current = None
    for n, line in enumerate((REPO / 'kernel' / 'series').read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        if not line[0].isspace():
            current = line.strip()
            if current not in adds:
                die(f'kernel/series:{n}: no kernel/patches/{current}')
        elif current is None:
            die(f'kernel/series:{n}: a file before any patch')
        else:
            adds[current].append(line.strip())
    files = read_files_map()
    # A line may name several files with a shell pattern.
    for p, paths in adds.items():
        adds[p] = [f for pat in paths for f in
                   (sorted(fnmatch.filter(files, pat)) if '*' in pat else [pat])]
    seen = {}
    for p, paths in adds.items():
        for path in paths:
            if path not in files:
                die(f'kernel/series: {path} ({p}) is not in kernel/files.map')
            if path in seen:
                die(f'kernel/series: {path} added by {seen[path]} and {p}')
            seen[path] = p
    missing = sorted(set(files) - set(seen))
    if missing:
        die(f'kernel/series: no patch adds {", ".join(missing)}')
    return [(p, adds[p]) for p in patches], files


def split_patch(text):
    """Returns (author, subject, body, diff) of a kernel/patches file."""
    head, sep, diff = text.partition('\n---\n')
    if not sep:
        die('a patch without its "---" line')
    m = re.match(r'From: (.*)\nSubject: \[PATCH\] (.*(?:\n .*)*)\n\n', head)
    if not m:
        die(f'a patch without From:/Subject: headers: {head[:60]!r}')
    body = head[m.end():].strip('\n') + '\n'
    return m.group(1), ' '.join(m.group(2).split()), body, diff


def split_sections(diff):
    """Returns [(tree path, section text)] of a diff, a section per `diff --git` header."""
    sections = []
    for part in re.split(r'(?m)^(?=diff --git )', diff):
        m = re.match(r'diff --git a/(\S+) b/', part)
        if m:
            sections.append((m.group(1), part))
    return sections


def base_hunks(path):
    """Prints a kernel/patches file without its sections on new files (kernel/files.map)."""
    files = read_files_map()
    author, subject, body, diff = split_patch(pathlib.Path(path).read_text())
    sys.stdout.write(''.join(text for dst, text in split_sections(diff) if dst not in files))


def file_versions(series, files):
    """Returns {tree path: [(patch index, text)]}: each new file as it stands from the patch
    that adds it on, newest version first.

    The repository has the last version. Each patch after the one that adds a file may change
    it: its hunks on that file, applied in reverse to the repository's file (last patch first),
    give the versions before.
    """
    added = {path: i for i, (_, adds) in enumerate(series) for path in adds}
    later = {}
    for i, (name, _) in enumerate(series):
        diff = split_patch((REPO / 'kernel' / 'patches' / name).read_text())[3]
        for path, text in split_sections(diff):
            if path not in files:
                continue
            if i <= added[path]:
                die(f'{name} changes {path}, which a later patch adds')
            later.setdefault(path, []).append((i, text))
    versions = {}
    with tempfile.TemporaryDirectory(prefix='vpmem-rev.') as tmp:
        f = pathlib.Path(tmp) / 'file'
        for path, src in files.items():
            changes = later.get(path, [])
            # Each version holds from a patch on: the one that adds the file, then each one
            # that changes it.
            starts = [added[path]] + [i for i, _ in changes]
            text = (REPO / src).read_text()
            versions[path] = [(starts.pop(), text)]
            for i, hunks in reversed(changes):
                f.write_text(text)
                r = subprocess.run(['patch', '-R', '-s', '-f', '--fuzz=0', '--no-backup-if-mismatch',
                                    '-r', '-', str(f)], input=hunks, capture_output=True, text=True)
                if r.returncode:
                    die(f'{series[i][0]}: its hunks on {path} do not apply in reverse to '
                        f'{src} as it stands after the patches that follow:\n{r.stdout}{r.stderr}')
                text = f.read_text()
                versions[path].append((starts.pop(), text))
    return versions


def version_at(versions, path, step):
    """Returns the text of new file `path` after patch `step`."""
    for i, text in versions[path]:
        if i <= step:
            return text
    die(f'{path}: no version at patch {step + 1}')


MOD_RE = re.compile(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;')
USE_RE = re.compile(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+(?:self::)?([a-z_][a-z0-9_]*)::')


def child_paths(parent, name):
    stem = parent[:-3]
    return (f'{stem}/{name}.rs', f'{stem}/{name}/mod.rs', f'{os.path.dirname(parent)}/{name}.rs')


def filter_modules(path, text, present, all_files):
    """Leaves out of `text` the modules not added yet, and what uses them."""
    if not path.endswith('.rs'):
        return text
    lines = text.splitlines(keepends=True)
    absent = set()
    for line in lines:
        m = MOD_RE.match(line)
        if m:
            cands = child_paths(path, m.group(1))
            if any(c in all_files for c in cands) and not any(c in present for c in cands):
                absent.add(m.group(1))
    if not absent:
        return text
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        m = MOD_RE.match(line) or USE_RE.match(line)
        if m and m.group(1) in absent:
            # Drop the attached doc comments and attributes too.
            while out and re.match(r'^\s*(///|#\[)', out[-1]):
                out.pop()
            while not lines[i].rstrip().endswith(';'):
                i += 1
            i += 1
            # No two blank lines left behind.
            if out and out[-1].strip() == '' and i < len(lines) and lines[i].strip() == '':
                i += 1
            continue
        out.append(line)
        i += 1
    return ''.join(out)


def generate():
    ensure_base()
    series, files = read_series()
    all_files = set(files)
    work = pathlib.Path(tempfile.mkdtemp(prefix='vpmem-series.'))
    env = {'GIT_INDEX_FILE': str(work / 'index')}
    git('read-tree', 'base', env=env)
    parent = git('rev-parse', 'base').stdout.strip()
    versions = file_versions(series, files)
    present = []
    written = {}
    for step, (name, adds) in enumerate(series):
        author, subject, body, diff = split_patch(
            (REPO / 'kernel' / 'patches' / name).read_text())
        diff = ''.join(text for path, text in split_sections(diff) if path not in files)
        if diff:
            (work / 'diff').write_text(diff)
            r = git('apply', '--cached', '-p1', str(work / 'diff'), env=env, check=False)
            if r.returncode:
                die(f'{name} does not apply to the base after the patches before it:\n{r.stderr}')
        present += adds
        # Every new file as it stands at this step, written again when that changes.
        for path in present:
            text = version_at(versions, path, step)
            text = filter_modules(path, text, set(present), all_files)
            if written.get(path) == text:
                continue
            written[path] = text
            sha = git('hash-object', '-w', '--stdin', inp=text).stdout.strip()
            mode = '100755' if os.access(REPO / files[path], os.X_OK) else '100644'
            git('update-index', '--add', '--cacheinfo', f'{mode},{sha},{path}', env=env)
        tree = git('write-tree', env=env).stdout.strip()
        a_name, a_mail = re.match(r'(.*?)\s*<(.*)>', author).groups()
        cenv = dict(env, GIT_AUTHOR_NAME=a_name, GIT_AUTHOR_EMAIL=a_mail,
                    GIT_COMMITTER_NAME=a_name, GIT_COMMITTER_EMAIL=a_mail,
                    GIT_AUTHOR_DATE=DATE, GIT_COMMITTER_DATE=DATE)
        parent = git('commit-tree', tree, '-p', parent, '-F', '-', env=cenv,
                     inp=f'{subject}\n\n{body}').stdout.strip()
    git('update-ref', 'refs/heads/series', parent)
    shutil.rmtree(work)

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    git('format-patch', '-q', '--cover-letter', '--no-signature', '--thread=shallow',
        '-o', str(OUT), 'base..series')
    cover(next(OUT.glob('0000-cover-letter.patch')))
    n = len(list(OUT.glob('*.patch'))) - 1
    log(f'{n} patches and a cover letter in {OUT}')


def cover(path):
    """Fills in the cover letter's subject and text from kernel/cover-letter."""
    release, pkg_version = base_name()
    src = (REPO / 'kernel' / 'cover-letter').read_text()
    subject, _, blurb = src.partition('\n\n')
    blurb = blurb.replace('@BASE@', f'Linux {release} as Debian ships it in '
                          f'linux-source-7.3 {pkg_version}')
    text = path.read_text()
    text = text.replace('*** SUBJECT HERE ***', subject.strip())
    text = text.replace('*** BLURB HERE ***', blurb.strip())
    path.write_text(text)


# ------------------------------------------------------------------ checks

def check():
    ensure_base()
    patches = sorted(OUT.glob('[0-9]*.patch'))
    if not patches:
        die(f'no series in {OUT}: run make patches')
    patches = [p for p in patches if not p.name.startswith('0000-')]
    fail = 0
    wt = pathlib.Path(tempfile.mkdtemp(prefix='vpmem-am.'))
    try:
        log(f'git am: {len(patches)} patches onto a clean copy of the base')
        git('worktree', 'add', '-q', '--detach', str(wt), 'base')
        r = git('-c', 'user.name=check', '-c', 'user.email=check@localhost',
                'am', '-q', '--whitespace=error-all', *map(str, patches), cwd=wt, check=False)
        if r.returncode:
            print(r.stdout + r.stderr, file=sys.stderr)
            die('the series does not apply to the base')

        log(f'compare: the tree after git am against the tree the build uses ({KERNEL_SRC})')
        fail |= compare(wt)

        log('MAINTAINERS: every file the series adds has an entry')
        fail |= maintained(wt)

        log('checkpatch --strict: every patch')
        # checkpatch asks, for each patch that adds files, whether MAINTAINERS needs
        # updating (FILE_PATH_CHANGES): maintained() answered that for every file.
        # Its SPDX check runs scripts/spdxcheck.py, which needs python3-ply.
        env = dict(os.environ, PATH='/usr/bin:' + os.environ.get('PATH', ''))
        for p in patches:
            r = subprocess.run(['perl', 'scripts/checkpatch.pl', '--strict', '--quiet',
                                '--show-types', '--ignore', 'FILE_PATH_CHANGES', str(p)],
                               cwd=wt, capture_output=True, text=True, env=env)
            if r.returncode or r.stderr.strip():
                print(r.stdout + r.stderr, file=sys.stderr)
                log(f'checkpatch: {p.name}: FAILED')
                fail = 1
            else:
                log(f'checkpatch: {p.name}: clean')
    finally:
        git('worktree', 'remove', '--force', str(wt), check=False)
        shutil.rmtree(wt, ignore_errors=True)
    if fail:
        die('the series check failed')
    log('series: applies, gives the tree the build uses, checkpatch --strict clean')


# New files that belong to an existing subsystem, whose maintainers they get (the series adds
# their F: lines): the MAINTAINERS entry each must fall under.
SUBSYSTEM_FILES = {
    'rust/kernel/driver/attribute.rs': 'DRIVER CORE, KOBJECTS, DEBUGFS AND SYSFS',
}


def maintained(wt):
    """Checks that get_maintainer.pl names a maintainer for each new file: the series' author,
    or for the files of SUBSYSTEM_FILES the maintainers of their entry."""
    added = git('diff', '--name-only', '--diff-filter=A', 'base', 'HEAD', cwd=wt).stdout.split()
    author = split_patch(sorted((REPO / 'kernel' / 'patches').glob('*.patch'))[0].read_text())[0]
    ours = 0
    for path in added:
        entry = SUBSYSTEM_FILES.get(path)
        r = subprocess.run(['perl', 'scripts/get_maintainer.pl', '--no-git', '--no-git-fallback',
                            '--no-l', '--no-r', '--no-s', '-f', path],
                           cwd=wt, capture_output=True, text=True)
        names = [line.split(' (')[0] for line in r.stdout.splitlines()]
        if entry is not None:
            if f'(maintainer:{entry})' not in r.stdout:
                print(f'  {path}: not under {entry}: {r.stdout.split(chr(10))}', file=sys.stderr)
                return 1
        elif author not in names:
            print(f'  {path}: maintainers {names} do not include {author}', file=sys.stderr)
            return 1
        else:
            ours += 1
    log(f'MAINTAINERS: {ours} new files are maintained by {author}, '
        f'{len(added) - ours} by their subsystem ({", ".join(sorted(SUBSYSTEM_FILES))})')
    return 0


def compare(wt):
    """Compares every file of the worktree with the build tree, following the links there."""
    changed = git('diff', '--name-only', 'base', 'HEAD', cwd=wt).stdout.split()
    env = {'GIT_INDEX_FILE': str(wt.parent / (wt.name + '.index'))}
    git('read-tree', 'HEAD', cwd=wt, env=env)
    r = git('--work-tree', str(KERNEL_SRC), 'status', '--porcelain', '--no-renames',
            '--untracked-files=all', cwd=wt, env=env)
    os.unlink(env['GIT_INDEX_FILE'])
    bad = []
    for line in r.stdout.splitlines():
        state, path = line[:2], line[3:]
        if state == '??':
            # The build's own bookkeeping files.
            if not path.startswith('.vpmem-'):
                bad.append(f'only in the build tree: {path}')
            continue
        build = KERNEL_SRC / path
        if state.strip() == 'T' and build.is_symlink():
            if build.resolve().is_file() and build.resolve().read_bytes() == (wt / path).read_bytes():
                continue
        bad.append(f'differs ({state.strip()}): {path}')
    for b in bad:
        print(f'  {b}', file=sys.stderr)
    log(f'compare: {len(changed)} files changed by the series, '
        f'{len(bad)} differences from the build tree')
    return 1 if bad else 0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'generate'
    if cmd == 'base':
        ensure_base()
    elif cmd == 'generate':
        generate()
    elif cmd == 'check':
        check()
    elif cmd == 'base-hunks' and len(sys.argv) == 3:
        base_hunks(sys.argv[2])
    else:
        die(f'usage: {sys.argv[0]} base|generate|check|base-hunks PATCH')


if __name__ == '__main__':
    main()
