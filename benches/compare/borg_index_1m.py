#!/usr/bin/python3
"""borg 1.2.4's repository index at 1 million entries: insert, save and load (with the
integrity-checked file borg's Repository uses) and peak RSS. Run with the system python3."""
import os
import resource
import sys
import tempfile
import time

from borg.crypto.file_integrity import IntegrityCheckedFile
from borg.hashindex import NSIndex
from borg.logger import setup_logging

setup_logging(level="error")

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, 'index.1')
    t = time.perf_counter()
    idx = NSIndex()
    for i in range(N):
        idx[os.urandom(32)] = (i // 1000, (i % 1000) * 64)
    t_insert = time.perf_counter() - t
    t = time.perf_counter()
    with IntegrityCheckedFile(path, write=True) as fd:
        idx.write(fd)
        fd.flush()
        os.fsync(fd.fileno())
    integrity = fd.integrity_data
    t_save = time.perf_counter() - t
    del idx
    t = time.perf_counter()
    with IntegrityCheckedFile(path, write=False, integrity_data=integrity) as fd:
        back = NSIndex.read(fd)
    t_load = time.perf_counter() - t
    assert len(back) == N
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f'borg: {N} entries: insert {t_insert:.3f} s, save {t_save:.3f} s, load {t_load:.3f} s, '
      f'peak RSS {rss1 / 1024:.0f} MiB (baseline {rss0 / 1024:.0f} MiB)')
