#!/usr/bin/python3
"""Time borg 1.2.4's own Repository class for the operations of benches/benches/repository.rs.

Run with the system python that has borg: /usr/bin/python3 bench_borg.py [DIR]
Prints MB/s for put+commit and get of 256 x 64 KiB objects and the latency of a
1 KiB put + commit (median of several runs). Results go into docs/repository.md.
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository

OBJ = 64 * 1024
COUNT = 256


def objects():
    import random
    rnd = random.Random(1)
    return [(rnd.randbytes(32), rnd.randbytes(OBJ)) for _ in range(COUNT)]


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else '.'
    objs = objects()
    mb = OBJ * COUNT / 1e6
    with tempfile.TemporaryDirectory(dir=base) as d:
        put_times = []
        for n in range(int(os.environ.get('BENCH_REPS', '30'))):
            path = os.path.join(d, 'p%d' % n)
            with Repository(path, create=True, exclusive=True) as r:
                t = time.perf_counter()
                for i, data in objs:
                    r.put(i, data)
                r.commit(compact=False)
                put_times.append(time.perf_counter() - t)
            if n > 0:
                shutil.rmtree(path)
        get_times = []
        with Repository(os.path.join(d, 'p0'), exclusive=True) as r:
            for _ in range(10):
                t = time.perf_counter()
                for i, _ in objs:
                    r.get(i)
                get_times.append(time.perf_counter() - t)
        commit_times = []
        with Repository(os.path.join(d, 'c'), create=True, exclusive=True) as r:
            for k in range(60):
                t = time.perf_counter()
                r.put(k.to_bytes(8, 'little') + bytes(24), bytes([7]) * 1024)
                r.commit(compact=False)
                commit_times.append(time.perf_counter() - t)
    print('borg put_64KiB_x256_commit: %.1f MB/s' % (mb / statistics.median(put_times)))
    print('borg get_64KiB_x256: %.1f MB/s' % (mb / statistics.median(get_times)))
    print('borg commit_1KiB: %.2f ms' % (1000 * statistics.median(commit_times)))


if __name__ == '__main__':
    main()
