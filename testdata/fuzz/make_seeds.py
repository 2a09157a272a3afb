#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets under fuzz/ (testdata/fuzz/<target>/seeds/) and the
keys they open real objects with (testdata/fuzz/keys/), from tiny repositories made by the real
borg 1.2.4 (/usr/bin/borg's Python package): `borg init -e MODE` for none, authenticated,
authenticated-blake2, repokey, repokey-blake2 and keyfile-blake2, then `borg create` of a few small
files with each compressor (lz4, zstd, zlib, lzma, none, obfuscate), `borg delete` of one archive
(so hints and segments carry DELETEs and compaction data), `borg key export` (--paper too).

borg runs in-process with its PBKDF2 iteration count patched to 1 (passphrase `rborg-fuzz`), so the
key seeds and testdata/fuzz/keys/ open fast; one extra repokey repository keeps borg's real
100 000 iterations for the key loader's parse path. Every seed is a real borg file or object, in
the input layout of its target (a selector byte in front where the target has one; see each
fuzz/fuzz_targets/<target>.rs). The output is deterministic in shape, not in bytes (borg's keys
and IDs are random): re-running replaces all seeds.
Run: /usr/bin/python3 testdata/fuzz/make_seeds.py"""
import configparser
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PASSPHRASE = 'rborg-fuzz'
TARGETS = ['segment', 'index', 'hints', 'index_files', 'repo_config', 'key_blob', 'chunk_envelope',
           'decompress', 'decompress_lz4', 'decompress_zstd', 'decompress_lzma', 'decompress_zlib',
           'compress_roundtrip', 'manifest', 'archive_meta', 'items', 'config_yaml']
# the key order of fuzz/fuzz_targets/common/keys.rs (0: none)
ENVELOPE_KEYS = ['none', 'authenticated', 'authenticated-blake2', 'repokey', 'repokey-blake2']
# the KeyType order of fuzz/fuzz_targets/key_blob.rs
KEY_TYPES = {'none': 0, 'authenticated': 1, 'authenticated-blake2': 2, 'repokey': 3, 'keyfile': 4,
             'repokey-blake2': 5, 'keyfile-blake2': 6}
WEAK_BORG = ('import sys, borg.crypto.key as k; k.PBKDF2_ITERATIONS = 1; '
             'from borg.archiver import main; sys.argv[0] = "borg"; main()')


def borg(env, *args, weak=True):
    cmd = ['/usr/bin/python3', '-c', WEAK_BORG] if weak else ['/usr/bin/borg']
    subprocess.run(cmd + list(args), env=env, check=True, stdout=subprocess.DEVNULL)


def write(target, name, data):
    d = os.path.join(HERE, target, 'seeds')
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def segment_entries(path):
    """(tag, id, data) of every entry of a segment file (LoggedIO format)."""
    with open(path, 'rb') as f:
        buf = f.read()
    assert buf[:8] == b'BORG_SEG'
    pos, out = 8, []
    while pos < len(buf):
        crc, size, tag = struct.unpack_from('<IIB', buf, pos)
        body = buf[pos + 9:pos + size]
        out.append((tag, body[:32], body[32:]) if tag in (0, 1) else (tag, b'', b''))
        pos += size
    return out


def objects(repo):
    """id -> stored object of the repository's live PUTs (later PUTs win, DELETEs remove)."""
    objs = {}
    for seg in sorted(glob.glob(os.path.join(repo, 'data', '*', '*')),
                      key=lambda p: int(os.path.basename(p))):
        for tag, id_, data in segment_entries(seg):
            if tag == 0:
                objs[id_] = data
            elif tag == 1:
                objs.pop(id_, None)
    return objs


def plaintext(obj):
    """Decompressed payload of an object of an unencrypted (none/authenticated) repository."""
    from borg.compress import Compressor
    return Compressor("lz4").decompress(obj[1:])


def main():
    for t in TARGETS:
        shutil.rmtree(os.path.join(HERE, t, 'seeds'), ignore_errors=True)
    shutil.rmtree(os.path.join(HERE, 'keys'), ignore_errors=True)
    os.makedirs(os.path.join(HERE, 'keys'))
    tmp = tempfile.mkdtemp(prefix='rborg-seeds-')
    env = dict(os.environ, BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=os.path.join(tmp, 'base'),
               BORG_KEYS_DIR=os.path.join(tmp, 'keys'), BORG_CACHE_DIR=os.path.join(tmp, 'cache'),
               BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK='yes',
               BORG_RELOCATED_REPO_ACCESS_IS_OK='yes', BORG_DISPLAY_PASSPHRASE='no')
    src = os.path.join(tmp, 'src')
    os.makedirs(os.path.join(src, 'sub'))
    with open(os.path.join(src, 'text.txt'), 'w') as f:
        f.write(''.join(f'line {i} of a small text file\n' for i in range(200)))
    with open(os.path.join(src, 'sub', 'random.bin'), 'wb') as f:
        f.write(os.urandom(3000))
    with open(os.path.join(src, 'sub', 'zeros'), 'wb') as f:
        f.write(bytes(5000))
    os.symlink('text.txt', os.path.join(src, 'link'))

    modes = ['none', 'authenticated', 'authenticated-blake2', 'repokey', 'repokey-blake2',
             'keyfile-blake2']
    compressions = ['lz4', 'zstd,3', 'zlib,6', 'lzma,1', 'none', 'obfuscate,3,zstd,1']
    for mode in modes:
        repo = os.path.join(tmp, mode)
        borg(env, 'init', '-e', mode, repo)
        comps = compressions if mode == 'none' else ['lz4', 'zstd,3']
        for i, comp in enumerate(comps):
            with open(os.path.join(src, 'changing.txt'), 'w') as f:
                f.write(f'archive {i} compressed with {comp}\n' * (20 + i))
            borg(env, 'create', '-C', comp, f'{repo}::a{i}', src)
        borg(env, 'delete', f'{repo}::a0')
        kt = KEY_TYPES[mode]
        ids = sorted(int(p.rsplit('.', 1)[1]) for p in glob.glob(os.path.join(repo, 'index.*')))
        txn = ids[-1]
        read = lambda name: open(os.path.join(repo, name), 'rb').read()  # noqa: E731
        index, hints, integrity = read(f'index.{txn}'), read(f'hints.{txn}'), read(f'integrity.{txn}')
        write('index', f'{mode}-index', b'\x00' + index)
        write('hints', f'{mode}-hints', hints)
        write('index_files', f'{mode}', struct.pack('<III', txn, len(integrity), len(hints))
              + integrity + hints + index)
        write('repo_config', f'{mode}-config', read('config'))
        segs = sorted(glob.glob(os.path.join(repo, 'data', '*', '*')),
                      key=lambda p: int(os.path.basename(p)))
        for seg in segs[:3] if mode in ('none', 'repokey-blake2') else segs[:1]:
            write('segment', f'{mode}-segment-{os.path.basename(seg)}', open(seg, 'rb').read())
        cache = glob.glob(os.path.join(tmp, 'cache', '*', 'chunks'))
        if mode == 'none' and cache:
            write('index', 'none-cache-chunks', b'\x01' + open(cache[0], 'rb').read())

        objs = objects(repo)
        manifest = objs[bytes(32)]
        if mode in ENVELOPE_KEYS:
            k = ENVELOPE_KEYS.index(mode)
            write('manifest', f'{mode}-stored', bytes([k]) + manifest)
            # the manifest (ID 0) is not an ID-checked object: the manifest target has it
            picked = [i for i in sorted(objs) if i != bytes(32)][:5]
            for n, id_ in enumerate(picked):
                write('chunk_envelope', f'{mode}-{n}', bytes([k]) + id_ + objs[id_])
        if mode != 'keyfile-blake2' and mode != 'none':
            cp = configparser.ConfigParser()
            cp.read_string(read('config').decode())
            key_text = cp['repository']['key']
            with open(os.path.join(HERE, 'keys', f'{mode}.key'), 'w') as f:
                f.write(key_text.strip() + '\n')
            write('key_blob', f'{mode}-repokey', bytes([0x20 | kt]) + key_text.encode())
        if mode != 'none':
            out = os.path.join(tmp, f'{mode}.export')
            borg(env, 'key', 'export', repo, out)
            exported = open(out, 'rb').read()
            write('key_blob', f'{mode}-keyfile', bytes([0x10 | kt]) + exported)
            borg(env, 'key', 'export', '--paper', repo, out + '.paper')
            cp = configparser.ConfigParser()
            cp.read_string(read('config').decode())
            repo_id = bytes.fromhex(cp['repository']['id'])
            write('key_blob', f'{mode}-paper', b'\x30' + repo_id + open(out + '.paper', 'rb').read())
            from borg.crypto.key import KeyfileKeyBase, Passphrase
            from binascii import a2b_base64
            body = exported.decode().split('\n', 1)[1]
            plain = KeyfileKeyBase.decrypt_key_file(None, a2b_base64(body), Passphrase(PASSPHRASE))
            write('key_blob', f'{mode}-plain', bytes([kt]) + plain)
        if mode in ('none', 'authenticated', 'authenticated-blake2'):
            k = ENVELOPE_KEYS.index(mode)
            mplain = plaintext(manifest)
            write('manifest', f'{mode}-plain', bytes([0x80 | k]) + mplain)
            m = msgpack.unpackb(mplain, raw=True)
            for name, entry in sorted(m[b'archives'].items())[:2]:
                meta = plaintext(objs[entry[b'id']])
                write('archive_meta', f'{mode}-{name.decode()}', bytes([k]) + meta)
                write('archive_meta', f'{mode}-{name.decode()}-tam', bytes([0x80 | k]) + meta)
                if mode == 'none':
                    stream = b''.join(plaintext(objs[i])
                                      for i in msgpack.unpackb(meta, raw=True)[b'items'])
                    write('items', f'{name.decode()}-whole', b'\xff' + stream)
                    write('items', f'{name.decode()}-pieces', b'\x07' + stream)
        if mode == 'none':
            # every stored payload: one per compressor and kind of object
            by_type = {}
            for id_, obj in sorted(objs.items()):
                payload = obj[1:]
                by_type.setdefault(payload[:2], []).append(payload)
            for hdr, payloads in sorted(by_type.items()):
                for n, p in enumerate(sorted(payloads, key=len)[:3]):
                    write('decompress', f'{hdr.hex()}-{n}', p)
                    direct = {b'\x01\x00': 'decompress_lz4', b'\x03\x00': 'decompress_zstd',
                              b'\x02\x00': 'decompress_lzma', b'\x78\x9c': 'decompress_zlib'}
                    if hdr in direct:
                        write(direct[hdr], f'{n}', b'\x00' + p[2:])
                        write(direct[hdr], f'{n}-hint', b'\x01' + struct.pack(
                            '<I', len(plaintext(b'\x02' + p))) + p[2:])
            for n, name in enumerate(['text.txt', 'sub/random.bin', 'sub/zeros']):
                data = open(os.path.join(src, name), 'rb').read()[:4096]
                for sel in range(17):
                    if sel % 4 == n % 4:
                        write('compress_roundtrip', f'{name.replace("/", "-")}-{sel}',
                              bytes([sel]) + data)
    # the real KDF (100 000 iterations): only parsed up to its iteration count by key_blob
    repo = os.path.join(tmp, 'repokey-real-kdf')
    borg(env, 'init', '-e', 'repokey', repo, weak=False)
    cp = configparser.ConfigParser()
    cp.read(os.path.join(repo, 'config'))
    write('key_blob', 'repokey-real-kdf', bytes([0x20 | KEY_TYPES['repokey']])
          + cp['repository']['key'].encode())
    for path in sorted(glob.glob(os.path.join(ROOT, 'testdata', 'config', '*.yaml'))):
        write('config_yaml', os.path.basename(path), open(path, 'rb').read())
    shutil.rmtree(tmp)


if __name__ == '__main__':
    sys.exit(main())
