#!/usr/bin/python3
"""Test vectors for rborg-chunker, produced by borg 1.2.4's own chunker (borg.chunker).

Run with the system python that has borg: /usr/bin/python3 testdata/gen/chunker.py gen
Writes testdata/chunker/vectors.json. Inputs are never stored: each case names a *recipe*
(see make_input) that the Rust tests (crates/chunker/tests/common/mod.rs) rebuild bit-identically.

Subcommands:
  gen                           write the vector file
  chunk SPEC SEED FILE [--sparse]
                                chunk FILE with borg (like `borg create` does: os-level fd) and print
                                the chunk list in the compact format below (used by the live tests)
  bench SPEC SEED FILE          print MB/s of borg's chunker over FILE (file object, like the docs say)

Compact chunk list: space separated LEN, suffixed 'a' for CH_ALLOC (all-zero, data None) or
'h' for CH_HOLE; no suffix for CH_DATA.

Recipes (LEN etc. decimal, SEED unsigned 64-bit):
  zeros:LEN                     LEN zero bytes
  random:SEED:LEN               prng(SEED) bytes
  text:SEED:LEN                 words: for each byte pair (a, b) of prng(SEED): WORDS[a % 16] then
                                '\n' if b % 8 == 0 else ' '; truncated to LEN
  repeat:SEED:BLOCK:LEN         prng(SEED)[:BLOCK] repeated, truncated to LEN
  holes:SEED:RUN:LEN            prng(SEED)[i] if (i // RUN) % 2 == 0 else 0
prng(SEED) = SplitMix64 seeded with SEED: x += 0x9E3779B97F4A7C15; z = x; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
z = (z ^ z>>27) * 0x94D049BB133111EB; output u64le(z ^ z>>31); all mod 2^64; truncated to the length.
"""
import io
import json
import os
import random
import struct
import sys
import time

from borg.chunker import get_chunker
from borg.constants import CH_ALLOC, CH_DATA, CH_HOLE
from borg.helpers.parseformat import ChunkerParams

WORDS = [b"the", b"borg", b"chunk", b"backup", b"of", b"data", b"and", b"repository",
         b"archive", b"to", b"is", b"deduplication", b"in", b"a", b"file", b"xattr"]


M64 = (1 << 64) - 1
RUNS = int(os.environ.get("RUNS", "15"))  # bench: best of RUNS (the machine may be busy)


def prng(seed, n):
    """SplitMix64 (Steele, Lea, Flood 2014) output words, little-endian, truncated to n bytes."""
    words = []
    x = seed
    for _ in range((n + 7) // 8):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        words.append(z ^ (z >> 31))
    return struct.pack("<%dQ" % len(words), *words)[:n]


def make_input(recipe):
    kind, *args = recipe.split(":")
    a = [int(x) for x in args]
    if kind == "zeros":
        return bytes(a[0])
    if kind == "random":
        return prng(a[0], a[1])
    if kind == "text":
        seed, n = a
        r = prng(seed, n + 1)
        out = bytearray()
        j = 0
        while len(out) < n:
            out += WORDS[r[j] % 16]
            out += b"\n" if r[j + 1] % 8 == 0 else b" "
            j += 2
        return bytes(out[:n])
    if kind == "repeat":
        seed, block, n = a
        b = prng(seed, block)
        return (b * (n // block + 1))[:n]
    if kind == "holes":
        seed, run, n = a
        d = bytearray(prng(seed, n))
        for start in range(run, n, 2 * run):
            end = min(start + run, n)
            d[start:end] = bytes(end - start)
        return bytes(d)
    raise ValueError(recipe)


def compact(chunks):
    out = []
    for c in chunks:
        size = c.meta["size"]
        alloc = c.meta["allocation"]
        if alloc == CH_DATA:
            assert c.data is not None and len(c.data) == size
            out.append(str(size))
        elif alloc == CH_ALLOC:
            assert c.data is None
            out.append("%da" % size)
        else:
            assert alloc == CH_HOLE and c.data is None
            out.append("%dh" % size)
    return " ".join(out)


def chunker_for(spec, seed, sparse=False):
    params = ChunkerParams(spec)
    return get_chunker(*params, seed=seed, sparse=sparse)


def chunk_bytes(spec, seed, data, fmap=None):
    ch = chunker_for(spec, seed)
    f = io.BytesIO(data)
    if fmap is not None:
        return compact(ch.chunkify(f, fmap=[tuple(r) for r in fmap]))
    return compact(ch.chunkify(f))


SEEDS = [0, 1, -1, -2 ** 31, 2 ** 31 - 1]
_rng = random.Random(20230405)
SEEDS += [_rng.randrange(-2 ** 31, 2 ** 31) for _ in range(15)]

# (spec, inputs scale): small parameter sets get many chunks from small inputs
BUZHASH_SETS = [
    ("buzhash,19,23,21,4095", "default"),
    ("buzhash,15,19,17,4095", "items"),
    ("buzhash,10,16,12,4095", "small"),
    ("buzhash,8,12,10,63", "small"),
    ("buzhash,12,18,14,1", "small"),
    ("buzhash,8,14,11,64", "small"),
]

FIXED_SPECS = ["fixed,4096", "fixed,4096,512", "fixed,64", "fixed,1000,10000", "fixed,65536,100"]

FASTCDC_SPECS = ["fastcdc,19,21,23", "fastcdc,10,12,16"]  # rborg only: no borg vectors


def short_recipes(spec):
    p = ChunkerParams(spec)
    rec = ["zeros:0", "random:1:1", "random:2:63", "random:3:64", "zeros:100", "random:4:4094",
           "random:5:4095", "random:6:4096", "text:7:5000"]
    if p[0] == "buzhash":
        mn, mx, w = 1 << p[1], 1 << p[2], p[4]
        for i, n in enumerate([mn + w - 1, mn + w, mn + w + 1, mn + w + 2, mx - 1, mx, mx + 1]):
            rec.append("random:%d:%d" % (100 + i, n))
        rec.append("zeros:%d" % (mn + w + 1))
        rec.append("zeros:%d" % (2 * mx + 3))
    return rec


def seeds_for(recipe):
    """All 20 seeds for inputs up to ~1 MiB, fewer for bigger ones (keeps the debug-build Rust
    test run short)."""
    n = int(recipe.split(":")[-1])
    if n <= 1100000:
        return SEEDS
    if n <= 8500000:
        return SEEDS[:6]
    return SEEDS[:3]


def scaled_recipes(scale):
    if scale == "small":
        return ["random:11:262144", "text:12:262144", "repeat:13:3000:262144", "zeros:65536",
                "holes:14:20000:262144"]
    if scale == "items":
        return ["random:20:1048576", "random:21:2097152", "text:22:1048576", "repeat:23:100000:1048576",
                "zeros:1048576", "holes:24:300000:2097152"]
    if scale == "default":
        return ["random:30:1048576", "random:31:4194304", "text:32:2097152", "repeat:33:1500000:4194304",
                "zeros:9000000", "holes:34:1500000:6291456"]
    raise ValueError(scale)


# 64 MiB: only a few seeds, to keep the Rust test run short
BIG = [("buzhash,19,23,21,4095", "random:41:67108864", [-2 ** 31]),
       ("buzhash,15,19,17,4095", "holes:42:5000000:67108864", [2 ** 31 - 1])]

FMAP_CASES = [
    # (spec, recipe, fmap): explicit file maps with holes and gaps (ChunkerFixed fmap parameter)
    ("fixed,4096", "random:51:100000", [[0, 10000, True], [10000, 20000, False], [30000, 70000, True]]),
    ("fixed,4096,1000", "holes:52:8192:100000",
     [[0, 1000, True], [1000, 3000, True], [8192, 8192, False], [16384, 83616, True]]),
    ("fixed,1000", "random:53:50000", [[5000, 3000, True], [20000, 2500, False], [40000, 99999, True]]),
]


def gen(out_path):
    cache = {}

    def data(recipe):
        if recipe not in cache:
            cache[recipe] = make_input(recipe)
        return cache[recipe]

    cases = []
    for spec, scale in BUZHASH_SETS:
        recipes = short_recipes(spec) + scaled_recipes(scale)
        for recipe in recipes:
            for seed in seeds_for(recipe):
                cases.append({"spec": spec, "seed": seed, "input": recipe,
                              "chunks": chunk_bytes(spec, seed, data(recipe))})
        cache.clear()
    for spec, recipe, seeds in BIG:
        for seed in seeds:
            cases.append({"spec": spec, "seed": seed, "input": recipe,
                          "chunks": chunk_bytes(spec, seed, data(recipe))})
        cache.clear()
    for spec in FIXED_SPECS:
        for recipe in short_recipes(spec) + scaled_recipes("small") + ["zeros:300000", "holes:61:65536:1000000"]:
            cases.append({"spec": spec, "seed": 0, "input": recipe,
                          "chunks": chunk_bytes(spec, 0, data(recipe))})
    for spec, recipe, fmap in FMAP_CASES:
        cases.append({"spec": spec, "seed": 0, "input": recipe, "fmap": fmap,
                      "chunks": chunk_bytes(spec, 0, data(recipe), fmap)})

    # parser vectors: borg's ChunkerParams() result or error message
    parse_cases = []
    for s in ["default", "DEFAULT", " default ", "buzhash,19,23,21,4095", "BuzHash,10,16,12,4095",
              "19,23,21,4095", " 19, 23, 21, 4095 ", "buzhash,+19,2_3,21,4095",
              "fixed,4096", "FIXED,4096,512", "fixed,64", "fixed,63", "fixed,20971479",
              "fixed,20971480", "fixed,4096,20971480", "fixed,4096,0", "fixed,4_096",
              "fixed", "fixed,1,2,3", "fixed,4096,0,0", "buzhash,19,23,21", "buzhash,19,23,21,4095,1",
              "buzhash,19,23,24,4095", "buzhash,19,23,18,4095", "buzhash,5,23,21,4095",
              "buzhash,19,24,21,4095", "4,5,6,7", "6,6,6,4095", "10,11,10,1023", "10,11,10,1024", "x,y,z,w", "buzhash,19,23,21,4O95",
              "fastcdc,19,21,23", "", ",", "default,1", "1,2,3", "buzhash", "fixed,abc",
              "fixed,4096,x", "19,23,21,4095.0", "19,23,21,_4095", "19,23,21,40__95"]:
        try:
            r = ChunkerParams(s)
        except ValueError as e:
            parse_cases.append({"spec": s, "error": str(e)})
            continue
        try:
            get_chunker(*r, seed=0, sparse=False)
            parse_cases.append({"spec": s, "ok": [str(x) for x in r]})
        except AssertionError as e:
            # borg parses it, but its Chunker constructor refuses it
            parse_cases.append({"spec": s, "ok": [str(x) for x in r], "constructor_error": str(e)})

    with open(out_path, "w") as f:
        json.dump({"generator": "testdata/gen/chunker.py", "borg": __import__("borg").__version__,
                   "seeds": SEEDS, "cases": cases, "parse": parse_cases}, f, indent=0)
        f.write("\n")
    print("wrote %d chunk cases, %d parse cases to %s" % (len(cases), len(parse_cases), out_path))


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        here = os.path.dirname(os.path.abspath(__file__))
        gen(os.path.join(here, "..", "chunker", "vectors.json"))
    elif cmd == "chunk":
        spec, seed, path = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        sparse = "--sparse" in sys.argv[5:]
        ch = chunker_for(spec, seed, sparse)
        fh = os.open(path, os.O_RDONLY)
        try:
            with open(fh, "rb", closefd=False) as f:
                print(compact(ch.chunkify(None, fh) if spec.startswith("fixed") else ch.chunkify(f, fh)))
        finally:
            os.close(fh)
    elif cmd == "bench":
        spec, seed, path = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        size = os.path.getsize(path)
        best = None
        for _ in range(RUNS):
            with open(path, "rb") as f:
                t0 = time.perf_counter()
                n = len(list(chunker_for(spec, seed).chunkify(f)))
                dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        print("%.1f MB/s (%d chunks, %d bytes, best of %d: %.3f s)" % (size / best / 1e6, n, size, RUNS, best))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
