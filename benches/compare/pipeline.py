#!/usr/bin/env python3
"""Whole-pipeline comparison: rborg against borg 1.2.4 (and restic, when installed) on one dataset.

    benches/compare/pipeline.py [--rborg target/release/rborg] [--size-mib 1024] [--seed 1]
                                [--rounds 3] [--work /var/tmp/rborg-pipeline]

Makes the dataset with testdata/gen/gen-dataset.py (the workplace's bench/gen-dataset.py), then, for each
round, runs every tool in turn (alternating the order between rounds, since these machines are noisy):
a first backup into a fresh repository (repokey-blake2, zstd,3 for borg and rborg; restic's defaults), an
unchanged re-run (the files cache), extract/restore of everything, and check --verify-data / check
--read-data. After the rounds the dataset is mutated once (gen-dataset --mutate, about 2% changed) and every
tool backs it up again into its last repository, --rounds times, each time from a saved copy of that
repository and cache. Each command runs under /usr/bin/time, which gives wall time, user+sys CPU and
peak RSS (and, in the log, page faults, waits and preemptions). Prints medians per operation and the
ratios rborg/borg and rborg/restic.
Every extraction is kept until the end (rounds x tools x the dataset's size on disk under --work; 10 GB
for the defaults), so that no extraction runs right after a deletion (see the comment at the extract).
On a VM that reports free memory to its host, every tool runs on memory touched beforehand (see
back_guest_memory). Keep other work off the machine while it runs (a fuzzer too: `nice` does not reach across sessions when
the kernel groups processes by session, /proc/sys/kernel/sched_autogroup_enabled).
"""
import argparse
import atexit
import mmap
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
GEN = os.path.join(ROOT, 'testdata', 'gen', 'gen-dataset.py')
PASSPHRASE = 'pipeline-bench'


def timed(argv, cwd, env):
    """Runs argv under /usr/bin/time; returns (wall s, cpu s, peak RSS MiB) and a line of detail
    for the log (user and system CPU, page faults, waits and preemptions: what tells a run that
    came out slow, such as the 4 GiB unchanged re-run's slow mode in docs/performance.md, from
    one that did more work). Fails loudly.

    Dirty pages are written out first: the step before (an extraction, the dataset mutation) left
    hundreds of MB for the kernel to write back, which otherwise lands in whichever command runs
    next (its commit's fsync waits for the disk) and was measured as that tool's time."""
    os.sync()
    with tempfile.NamedTemporaryFile('r') as t:
        cmd = ['/usr/bin/time', '-o', t.name, '-f', '%e %U %S %M %F %R %w %c'] + argv
        res = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if res.returncode not in (0, 1):  # 1 = borg warning
            sys.exit('failed (%d): %s\n%s' % (res.returncode, ' '.join(argv), res.stderr.decode()[-2000:]))
        wall, user, sys_, rss, major, minor, waits, preempted = t.read().split()[-8:]
    detail = '%s s user, %s s sys, %s major / %s minor faults, %s waits, %s preempted' % (
        user, sys_, major, minor, waits, preempted)
    return (float(wall), float(user) + float(sys_), int(rss) / 1024), detail


def warm(data_parent):
    """Reads the whole dataset, so that the backup timed next finds it in the page cache whichever
    tool ran before: at 4 GiB the extractions and repositories of the tools before it had pushed
    part of the dataset out of the cache, and the backup after them read it from disk."""
    subprocess.run('tar -C %s -cf - data | cat > /dev/null' % shlex.quote(data_parent), shell=True, check=True)


REPORTING_ORDER = '/sys/module/page_reporting/parameters/page_reporting_order'


def back_guest_memory():
    """Puts every tool on memory the hypervisor already backs, as on bare metal (undone at exit).

    These machines are VMs whose balloon driver reports free guest pages to the host (free page
    reporting), which takes them away: the next first touch of such a page costs a fault in the host,
    2.2-3 s of system time per GB here (writing 2 GB into a new file: 4.8 s of sys on reported
    memory, 0.33 s on memory touched before). Extractions and backups allocate gigabytes of page
    cache, so whichever tool ran while reported memory was left paid for it and the next one, once
    memory was full and the kernel recycled pages, did not: at 4 GiB restic, which ran after borg
    and rborg, extracted on recycled pages. So, when root may: reporting is switched off for the
    run (its order set past the largest buddy order, restored at the end) and the free memory is
    touched once, leaving a GiB free. Reporting comes back on at exit, however the run ends."""
    try:
        with open(REPORTING_ORDER) as f:
            saved = f.read().strip()
        with open('/proc/buddyinfo') as f:
            orders = len(f.readline().split()) - 4  # "Node 0, zone DMA" then one count per order
        with open(REPORTING_ORDER, 'w') as f:
            f.write(str(orders))
    except OSError as e:
        print('free page reporting left as it is (%s): timings include the host\'s faults' % e, file=sys.stderr)
        return
    free = next(int(l.split()[1]) * 1024 for l in open('/proc/meminfo') if l.startswith('MemFree:'))
    size = max(free - (1 << 30), 0)
    m = mmap.mmap(-1, size)
    for off in range(0, size, mmap.PAGESIZE):
        m[off] = 1
    m.close()
    print('free page reporting off for the run (was order %s), %d MiB of guest memory touched'
          % (saved, size >> 20), file=sys.stderr)

    def restore():
        with open(REPORTING_ORDER, 'w') as f:
            f.write(saved)
    atexit.register(restore)


class Tool:
    def __init__(self, name, exe, base):
        self.name, self.exe, self.base = name, exe, base

    def env(self):
        env = dict(os.environ, BORG_PASSPHRASE=PASSPHRASE, RESTIC_PASSWORD=PASSPHRASE,
                   BORG_BASE_DIR=os.path.join(self.base, 'home'), RESTIC_CACHE_DIR=os.path.join(self.base, 'cache'),
                   BORG_RELOCATED_REPO_ACCESS_IS_OK='yes', BORG_CHECK_I_KNOW_WHAT_I_AM_DOING='YES')
        env.pop('BORG_REPO', None)
        env.pop('RESTIC_REPOSITORY', None)
        return env


class Borgish(Tool):
    """borg 1.2.4, or rborg through its borg command line."""

    def cmd(self, *args):
        return self.exe + list(args)

    def fresh_repo(self, repo):
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        subprocess.run(self.cmd('init', '-e', 'repokey-blake2', repo), env=self.env(), check=True,
                       stdout=subprocess.DEVNULL)

    def backup(self, repo, name, data_parent):
        return self.cmd('create', '-C', 'zstd,3', '%s::%s' % (repo, name), 'data'), data_parent

    def restore(self, repo, name, target):
        return self.cmd('extract', '%s::%s' % (repo, name)), target

    def check(self, repo):
        return self.cmd('check', '--verify-data', repo), None

    def version(self):
        return self.cmd('--version'), None


class Restic(Tool):
    def cmd(self, repo, *args):
        return self.exe + ['-q', '-r', repo] + list(args)

    def fresh_repo(self, repo):
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        subprocess.run(self.cmd(repo, 'init'), env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def backup(self, repo, name, data_parent):
        return self.cmd(repo, 'backup', '--tag', name, 'data'), data_parent

    def restore(self, repo, name, target):
        return self.cmd(repo, 'restore', 'latest', '--target', target), None

    def check(self, repo):
        return self.cmd(repo, 'check', '--read-data'), None

    def version(self):
        return self.exe + ['version'], None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rborg', default=os.path.join(ROOT, 'target', 'release', 'rborg'))
    ap.add_argument('--size-mib', type=int, default=1024)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--work', default='/var/tmp/rborg-pipeline')
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data_parent = os.path.join(work, 'src')
    os.makedirs(data_parent)
    subprocess.run([sys.executable, GEN, os.path.join(data_parent, 'data'), '--size-mib', str(args.size_mib),
                    '--seed', str(args.seed)], check=True)

    back_guest_memory()
    tools = [Borgish('borg', ['/usr/bin/borg'], os.path.join(work, 'borg')),
             Borgish('rborg', [os.path.abspath(args.rborg), 'borg'], os.path.join(work, 'rborg'))]
    if shutil.which('restic'):
        tools.append(Restic('restic', [shutil.which('restic')], os.path.join(work, 'restic')))
    results = {}  # (tool, op) -> list of (wall, cpu, rss)

    def record(tool, op, measured):
        sample, detail = measured
        results.setdefault((tool.name, op), []).append(sample)
        print('  %s %s: %.2f s wall, %.2f s cpu, %.0f MiB (%s)' % ((tool.name, op) + sample + (detail,)),
              file=sys.stderr)

    for rnd in range(args.rounds):
        order = tools if rnd % 2 == 0 else list(reversed(tools))
        for tool in order:
            repo = os.path.join(tool.base, 'repo')
            tool.fresh_repo(repo)
            env = tool.env()
            warm(data_parent)
            argv, cwd = tool.backup(repo, 'first', data_parent)
            record(tool, 'first backup', timed(argv, cwd, env))
            warm(data_parent)
            argv, cwd = tool.backup(repo, 'unchanged', data_parent)
            record(tool, 'unchanged re-run', timed(argv, cwd, env))
            # every extraction gets its own directory, all deleted at the end: ext4 without a
            # journal (these VMs) makes each file creation scan past recently deleted inodes
            # (ext4's recently_deleted()), which made an extract that followed a deletion up to
            # twice as slow, depending on which tool ran just before; after deleting a few
            # hundred thousand files, file creation takes minutes to recover (about ten here,
            # docs/performance.md "Scaling to 4 GiB"), so wait that long before the next run
            target = os.path.join(work, 'restore', '%s-%d' % (tool.name, rnd))
            os.makedirs(target)
            argv, cwd = tool.restore(repo, 'first', target)
            record(tool, 'extract everything', timed(argv, cwd or target, env))
            argv, cwd = tool.check(repo)
            record(tool, 'check --verify-data', timed(argv, cwd or work, env))
            argv, cwd = tool.version()
            record(tool, '--version start-up', timed(argv, work, env))
        print('round %d done' % (rnd + 1), file=sys.stderr)

    subprocess.run([sys.executable, GEN, os.path.join(data_parent, 'data'), '--mutate', '--seed', '2'], check=True)
    # the backup after the mutation is repeated like the other steps: each tool's repository and
    # cache (its whole base directory) are saved once and put back before every run, so that each
    # run finds the state the first one did
    for tool in tools if args.rounds > 1 else []:
        shutil.copytree(tool.base, tool.base + '.saved', symlinks=True)
    for rnd in range(args.rounds):
        for tool in (tools if rnd % 2 == 0 else list(reversed(tools))):
            if rnd > 0:
                shutil.rmtree(tool.base)
                shutil.copytree(tool.base + '.saved', tool.base, symlinks=True)
            repo = os.path.join(tool.base, 'repo')
            warm(data_parent)
            argv, cwd = tool.backup(repo, 'mutated', data_parent)
            record(tool, 'after --mutate', timed(argv, cwd, tool.env()))

    ops = ['first backup', 'unchanged re-run', 'after --mutate', 'extract everything', 'check --verify-data',
           '--version start-up']
    names = [t.name for t in tools]
    print('\nmedians over %d rounds; dataset %d MiB seed %d'
          % (args.rounds, args.size_mib, args.seed))
    header = '| operation | ' + ' | '.join('%s wall / cpu / RSS' % n for n in names) + ' | rborg/borg wall |'
    if 'restic' in names:
        header += ' rborg/restic wall |'
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    for op in ops:
        med = {}
        cells = []
        for n in names:
            samples = results.get((n, op), [])
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            rss = max(s[2] for s in samples)
            med[n] = wall
            cells.append('%.2f s / %.2f s / %.0f MiB' % (wall, cpu, rss))
        row = '| %s | %s | %.2f |' % (op, ' | '.join(cells), med['rborg'] / med['borg'] if med['borg'] else 0)
        if 'restic' in med:
            row += ' %.2f |' % (med['rborg'] / med['restic'] if med['restic'] else 0)
        print(row)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
