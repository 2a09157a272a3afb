#!/usr/bin/python3
"""Generate rborg-compress test vectors with borg 1.2.4's own compress module.

Run with the system python that has borg installed:

    /usr/bin/python3 testdata/gen/compress.py [outdir]
    /usr/bin/python3 testdata/gen/compress.py --bench   # borg's throughput, see docs/compress.md

Writes (default outdir: testdata/compress):
  manifest.json   inputs (as PRNG recipes), and one entry per (spec, input) blob
  blobs/*.bin     borg's compressed output, byte for byte
  specs.json      spec strings and how borg's CompressionSpec parses them

Inputs are not committed; they are regenerated from a splitmix64 recipe that the
Rust tests implement identically (crates/compress/tests/common/mod.rs).
"""
import json
import os
import random
import sys

from borg.compress import CompressionSpec, Compressor

MASK = (1 << 64) - 1

# A fixed vocabulary for text-like inputs (shared with the Rust recipe).
WORDS = (b"the of and to in is that for it as was with be by on not he this are or "
         b"his from at which but have an they you were her she there been one all we "
         b"their has would when if so no will more can said who up out about them into "
         b"repository archive chunk segment compression backup borg deduplication key "
         b"encryption index manifest lz4 zstd zlib lzma obfuscate data file directory").split()


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def gen_random(seed, n):
    rng = SplitMix64(seed)
    out = bytearray()
    while len(out) < n:
        out += rng.next().to_bytes(8, 'little')
    return bytes(out[:n])


def gen_text(seed, n):
    rng = SplitMix64(seed)
    out = bytearray()
    while len(out) < n:
        v = rng.next()
        out += WORDS[v % len(WORDS)]
        out += b'\n' if (v >> 32) % 12 == 0 else b' '
    return bytes(out[:n])


def gen_mixed(seed, n):
    """4 KiB blocks cycling text, random, zeros."""
    out = bytearray()
    i = 0
    while len(out) < n:
        kind = i % 3
        if kind == 0:
            out += gen_text(seed + i, 4096)
        elif kind == 1:
            out += gen_random(seed + i, 4096)
        else:
            out += bytes(4096)
        i += 1
    return bytes(out[:n])


def make_input(recipe):
    kind, seed, n = recipe['kind'], recipe['seed'], recipe['len']
    if kind == 'zeros':
        return bytes(n)
    if kind == 'byte':
        return bytes([seed & 0xff]) * n
    if kind == 'random':
        return gen_random(seed, n)
    if kind == 'text':
        return gen_text(seed, n)
    if kind == 'mixed':
        return gen_mixed(seed, n)
    raise ValueError(kind)


INPUTS = {
    'empty': {'kind': 'zeros', 'seed': 0, 'len': 0},
    'one': {'kind': 'byte', 'seed': 0x61, 'len': 1},
    'text': {'kind': 'text', 'seed': 1, 'len': 8192},
    'random': {'kind': 'random', 'seed': 2, 'len': 4096},
    'zeros': {'kind': 'zeros', 'seed': 0, 'len': 65536},
    'mixed': {'kind': 'mixed', 'seed': 3, 'len': 102400},
}

SPECS = [
    'none', 'lz4',
    'zstd,1', 'zstd,3', 'zstd,10', 'zstd,22',
    'zlib,0', 'zlib,6', 'zlib,9',
    'lzma,0', 'lzma,6', 'lzma,9',
    'auto,lz4', 'auto,zstd,3', 'auto,zlib,6', 'auto,lzma,6', 'auto,none',
    'obfuscate,1,none', 'obfuscate,2,lz4', 'obfuscate,3,zstd,3', 'obfuscate,110,none',
    'obfuscate,114,auto,zlib,6', 'obfuscate,5,lzma,1', 'obfuscate,116,zstd,1',
]

MAX_BLOB = 256 * 1024  # skip (randomly) oversized obfuscated blobs to keep the area small

# Spec strings to compare parsing against borg, valid and invalid.
SPEC_STRINGS = [
    '', 'none', 'lz4', 'zstd', 'zlib', 'lzma', 'auto', 'obfuscate', 'invalid', 'LZ4', ' lz4',
    'none,3', 'lz4,5', 'lz4,5,6', 'lz4,', 'none,x',
    'zstd,0', 'zstd,1', 'zstd,3', 'zstd,10', 'zstd,22', 'zstd,23', 'zstd,-1', 'zstd,', 'zstd,x',
    'zstd, 5', 'zstd,+5', 'zstd,05', 'zstd,1_0', 'zstd,1__0', 'zstd,_10', 'zstd,10_', 'zstd,5.0',
    'zstd,3,1', 'zstd,99999999999999999999999',
    'zlib,0', 'zlib,6', 'zlib,9', 'zlib,10', 'zlib,-0', 'zlib,9,invalid',
    'lzma,0', 'lzma,6', 'lzma,9', 'lzma,10', 'lzma,9,invalid', 'lzma,-1',
    'auto,lz4', 'auto,none', 'auto,zstd', 'auto,zstd,10', 'auto,zlib,9', 'auto,lzma,6',
    'auto,zstd,23', 'auto,zstd,3,1', 'auto,auto,lz4', 'auto,auto,zstd', 'auto,auto,zstd,3',
    'auto,obfuscate,1', 'auto,obfuscate,1,lz4', 'auto,bogus', 'auto,lz4,7', 'auto,',
    'obfuscate,1,none', 'obfuscate,2,lz4', 'obfuscate,6,zstd,3', 'obfuscate,2,auto,zstd,10',
    'obfuscate,110,none', 'obfuscate,123,lzma,9', 'obfuscate,0,none', 'obfuscate,7,none',
    'obfuscate,109,none', 'obfuscate,124,none', 'obfuscate,1', 'obfuscate,x,none',
    'obfuscate,1,obfuscate,2,none', 'obfuscate,1,auto,auto,lz4', 'obfuscate,1,lz4,1,2',
    'obfuscate,1,zstd,3,1', 'obfuscate,1,auto,zstd,10,1', 'obfuscate,1,zstd,0',
    'obfuscate, 110 ,none', 'obfuscate,1,obfuscate,2,lz4,7',
]


def spec_tree(cs):
    """A JSON description of a parsed CompressionSpec: [name, level?, inner?]."""
    if cs.name in ('none', 'lz4'):
        return [cs.name]
    if cs.name in ('zlib', 'lzma', 'zstd'):
        return [cs.name, cs.level]
    if cs.name == 'auto':
        return ['auto', spec_tree(cs.inner)]
    if cs.name == 'obfuscate':
        return ['obfuscate', cs.level, spec_tree(cs.inner)]
    raise ValueError(cs.name)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'compress')
    blobdir = os.path.join(outdir, 'blobs')
    os.makedirs(blobdir, exist_ok=True)
    for f in os.listdir(blobdir):
        os.unlink(os.path.join(blobdir, f))

    random.seed(20240425)  # ObfuscateSize pads using python's random module
    vectors = []
    for spec in SPECS:
        compressor = CompressionSpec(spec).compressor
        for name, recipe in INPUTS.items():
            data = make_input(recipe)
            blob = compressor.compress(data)
            blob = bytes(blob)
            if len(blob) > MAX_BLOB:
                continue
            assert Compressor('none').decompress(blob) == data  # borg reads its own blob
            fname = '%s__%s.bin' % (spec.replace(',', '_'), name)
            with open(os.path.join(blobdir, fname), 'wb') as f:
                f.write(blob)
            vectors.append({
                'spec': spec,
                'input': name,
                'file': 'blobs/' + fname,
                'header': blob[:2].hex(),
                'detected': Compressor.detect(blob).name,
                'compressed_len': len(blob),
            })
    manifest = {
        'generator': 'testdata/gen/compress.py',
        'borg_compress_api': __import__('borg.compress', fromlist=['API_VERSION']).API_VERSION,
        'inputs': INPUTS,
        'vectors': vectors,
    }
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write('\n')

    specs = []
    for s in SPEC_STRINGS:
        try:
            tree = spec_tree(CompressionSpec(s))
            specs.append({'spec': s, 'ok': True, 'tree': tree})
        except ValueError:
            specs.append({'spec': s, 'ok': False})
    with open(os.path.join(outdir, 'specs.json'), 'w') as f:
        json.dump(specs, f, indent=1)
        f.write('\n')
    print('%d vectors, %d spec strings -> %s' % (len(vectors), len(specs), outdir))


BENCH_SPECS = ['lz4', 'zstd,3', 'zstd,10', 'zlib,6', 'lzma,6']


def bench():
    """borg's own throughput on the inputs of benches/benches/compress.rs."""
    import time
    size = 1 << 20
    inputs = [('text', gen_text(7, size)), ('random', gen_random(8, size))]
    decompressor = Compressor('none')

    def best_rate(fn, min_time=2.0):
        best, spent, runs = float('inf'), 0.0, 0
        while spent < min_time or runs < 3:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best, spent, runs = min(best, dt), spent + dt, runs + 1
        return size / best / 1e6

    print('spec      input   ratio   compress MB/s  decompress MB/s')
    for spec in BENCH_SPECS:
        c = CompressionSpec(spec).compressor
        for name, data in inputs:
            blob = c.compress(data)
            assert decompressor.decompress(blob) == data
            comp = best_rate(lambda: c.compress(data))
            decomp = best_rate(lambda: decompressor.decompress(blob))
            print('%-9s %-7s %.4f  %13.1f  %15.1f' % (spec, name, len(blob) / len(data), comp, decomp))


if __name__ == '__main__':
    if sys.argv[1:] == ['--bench']:
        bench()
    else:
        main()
