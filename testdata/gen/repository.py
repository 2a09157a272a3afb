#!/usr/bin/python3
"""Generate test vectors for crates/repository (R1 "formats": hashindex, hints,
index/integrity files, config) using borg 1.2.4's own modules and CLI.

Run:  /usr/bin/python3 testdata/gen/repository.py   (from the workspace root)
Writes testdata/repository/*.  Everything except the real repository (whose ids
depend on random chunker seeds / repo ids) is deterministic.

Key recipe shared with the Rust tests (splitmix64): key(i) = 4 little-endian u64
outputs of splitmix64 seeded with seed*1_000_003 + i.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from borg.hashindex import NSIndex, ChunkIndex
from borg.helpers import msgpack

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'repository')
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def key(seed, i):
    s = (seed * 1000003 + i) & MASK
    out = b''
    for _ in range(4):
        s, z = splitmix64(s)
        out += struct.pack('<Q', z)
    return out


class Rng:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s, z = splitmix64(self.s)
        return z

    def below(self, n):
        return self.next() % n


def gen_ops(seed, n_ops, keyspace, p_del, p_get, value_words):
    """A random op sequence over keys 0..keyspace: ['set', k, v...] / ['del', k] / ['get', k]."""
    rng = Rng(seed)
    ops = []
    for _ in range(n_ops):
        r = rng.below(100)
        k = rng.below(keyspace)
        if r < p_del:
            ops.append(['del', k])
        elif r < p_del + p_get:
            ops.append(['get', k])
        else:
            ops.append(['set', k] + [rng.below(1 << 32) % 0xfffffc00 if w == 0 else rng.below(1 << 32)
                                     for w in range(value_words)])
    return ops


def apply_ops(idx, seed, ops):
    for op in ops:
        k = key(seed, op[1])
        if op[0] == 'set':
            idx[k] = tuple(op[2:])
        elif op[0] == 'del':
            try:
                del idx[k]
            except KeyError:
                pass
        else:
            try:
                idx[k]
            except KeyError:
                pass


def write_scenario(name, cls, seed, ops, compact=False):
    idx = cls()
    apply_ops(idx, seed, ops)
    if compact:
        idx.compact()
    fn = name + '.idx'
    idx.write(os.path.join(OUT, fn))
    if compact:
        idx = cls.read(os.path.join(OUT, fn), permit_compact=True)
    entries = sorted((k.hex(), list(v)) for k, v in idx.iteritems())
    return {'name': name, 'kind': cls.__name__, 'seed': seed, 'ops': ops, 'file': fn, 'compact': compact,
            'num_entries': len(idx), 'file_size': os.path.getsize(os.path.join(OUT, fn)), 'entries': entries}


def hashindex_vectors():
    scenarios = []
    # (name, class, seed, n_ops, keyspace, p_del, p_get, value words)
    plans = [
        ('ns_empty', NSIndex, 1, 0, 1, 0, 0, 2),
        ('ns_small', NSIndex, 2, 10, 1000, 0, 0, 2),
        ('ns_grow', NSIndex, 3, 1600, 100000, 0, 0, 2),        # 1031 -> 2053 -> 4099 buckets
        ('ns_churn', NSIndex, 4, 6000, 700, 35, 15, 2),       # tombstones, same-size rebuilds, lookups
        ('ns_overwrite', NSIndex, 5, 2000, 300, 10, 10, 2),
        ('chunks_churn', ChunkIndex, 6, 3000, 900, 30, 10, 3),
    ]
    for name, cls, seed, n, ks, pd, pg, vw in plans:
        scenarios.append(write_scenario(name, cls, seed, gen_ops(seed, n, ks, pd, pg, vw)))
    # shrink: fill, then delete most (4099 -> ... -> 1031 buckets)
    seed = 7
    ops = [['set', i, i, i * 3] for i in range(3000)] + [['del', i] for i in range(2950)]
    scenarios.append(write_scenario('ns_shrink', NSIndex, seed, ops))
    # compacted ChunkIndex (cache chunks.archive.d format), read with permit_compact=True
    seed = 8
    scenarios.append(write_scenario('chunks_compact', ChunkIndex, seed, gen_ops(seed, 1500, 600, 30, 0, 3),
                                    compact=True))
    with open(os.path.join(OUT, 'hashindex.json'), 'w') as f:
        json.dump({'key_recipe': 'splitmix64(seed*1000003+i) x4 LE u64', 'scenarios': scenarios}, f)


def hints_vectors():
    ks = [key(9, i) for i in range(3)]
    v2 = {b'version': 2, b'segments': {1: 3, 300: 70000, 5: 0}, b'compact': {5: 1234, 1: 1 << 20},
          b'storage_quota_use': 1 << 35, b'shadow_index': {ks[0]: [1, 5], ks[1]: [], ks[2]: [300]}}
    v2_min = {b'version': 2, b'segments': {}, b'compact': {}}  # hints without the optional keys
    v1 = {b'version': 1, b'segments': {0: 1, 2: 7}, b'compact': [2, 0]}
    desc = []
    for name, obj in (('hints_v2', v2), ('hints_v2_min', v2_min), ('hints_v1', v1)):
        with open(os.path.join(OUT, name + '.bin'), 'wb') as f:
            msgpack.pack(obj, f)

        def conv(o):
            if isinstance(o, dict):
                return {(k.decode() if isinstance(k, bytes) and len(k) < 32 else
                         (k.hex() if isinstance(k, bytes) else str(k))): conv(v) for k, v in o.items()}
            if isinstance(o, list):
                return [conv(x) for x in o]
            return o
        desc.append({'name': name, 'file': name + '.bin', 'content': conv(obj)})
    with open(os.path.join(OUT, 'hints.json'), 'w') as f:
        json.dump(desc, f, indent=1)


def real_repo_vectors():
    """A tiny real repository made by the borg CLI: its index/hints/integrity/config files."""
    tmp = tempfile.mkdtemp()
    try:
        env = dict(os.environ, BORG_BASE_DIR=os.path.join(tmp, 'base'),
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK='yes', BORG_PASSPHRASE='rborg-test')
        repo = os.path.join(tmp, 'repo')
        src = os.path.join(tmp, 'src')
        os.mkdir(src)
        rng = Rng(42)
        for i in range(5):
            with open(os.path.join(src, 'f%d' % i), 'wb') as f:
                f.write(b''.join(struct.pack('<Q', rng.next()) for _ in range(4000 * (i + 1))))
        subprocess.check_call(['borg', 'init', '-e', 'repokey', repo], env=env)
        subprocess.check_call(['borg', 'create', repo + '::a1', src], env=env, cwd=tmp)
        subprocess.check_call(['borg', 'create', repo + '::a2', src], env=env, cwd=tmp)
        subprocess.check_call(['borg', 'delete', repo + '::a1'], env=env)
        names = sorted(os.listdir(repo))
        txn = [int(n.split('.')[1]) for n in names if n.startswith('index.')][0]
        out = {'transaction_id': txn}
        for base in ('index', 'hints', 'integrity'):
            shutil.copy(os.path.join(repo, '%s.%d' % (base, txn)), os.path.join(OUT, 'real_%s.%d' % (base, txn)))
        shutil.copy(os.path.join(repo, 'config'), os.path.join(OUT, 'real_config'))
        idx = NSIndex.read(os.path.join(repo, 'index.%d' % txn))
        out['index_entries'] = sorted((k.hex(), list(v)) for k, v in idx.iteritems())
        with open(os.path.join(repo, 'hints.%d' % txn), 'rb') as f:
            h = msgpack.unpack(f)
        out['hints'] = {'segments': {str(k): v for k, v in h[b'segments'].items()},
                        'compact': {str(k): v for k, v in h[b'compact'].items()},
                        'storage_quota_use': h[b'storage_quota_use'],
                        'shadow_index': {k.hex(): v for k, v in h[b'shadow_index'].items()}}
        with open(os.path.join(repo, 'integrity.%d' % txn), 'rb') as f:
            integ = msgpack.unpack(f)
        out['integrity'] = {k.decode(): (v.decode() if isinstance(v, bytes) else v) for k, v in integ.items()}
        from configparser import ConfigParser
        c = ConfigParser(interpolation=None)
        c.read(os.path.join(repo, 'config'))
        out['config'] = dict(c['repository'])
        with open(os.path.join(OUT, 'real_repo.json'), 'w') as f:
            json.dump(out, f, indent=1)
    finally:
        shutil.rmtree(tmp)


def config_vectors():
    """configparser output for a few configs, incl. multi-line and odd values."""
    from configparser import ConfigParser
    cases = []
    for name, items in (
        ('plain', [('version', '1'), ('segments_per_dir', '1000'), ('max_segment_size', '524288000'),
                   ('append_only', '0'), ('storage_quota', '0'), ('additional_free_space', '0'),
                   ('id', '00' * 32)]),
        ('extra', [('version', '1'), ('segments_per_dir', '5'), ('max_segment_size', '1048576'),
                   ('append_only', '1'), ('storage_quota', '10G'), ('additional_free_space', '2M'),
                   ('id', 'ab' * 32), ('key', 'aGVsbG8=\nd29ybGQ=\nZm9v'), ('custom_thing', 'x = y')]),
    ):
        c = ConfigParser(interpolation=None)
        c.add_section('repository')
        for k, v in items:
            c.set('repository', k, v)
        fn = 'config_%s.ini' % name
        with open(os.path.join(OUT, fn), 'w') as f:
            c.write(f)
        cases.append({'name': name, 'file': fn, 'items': items})
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(cases, f, indent=1)


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    hashindex_vectors()
    hints_vectors()
    config_vectors()
    real_repo_vectors()
    print('ok', file=sys.stderr)
