#!/usr/bin/python3
"""Test-vector generator (and live oracle) for rborg-crypto.

Run with the system python that has borg 1.2.4 installed:

    /usr/bin/python3 testdata/gen/crypto.py gen      # rewrites testdata/crypto/*
    /usr/bin/python3 testdata/gen/crypto.py live     # JSON request on stdin -> JSON answer on stdout
    /usr/bin/python3 testdata/gen/crypto.py bench    # borg's MB/s per mode (for docs/crypto.md)
    /usr/bin/python3 testdata/gen/crypto.py live-repo  # {"path": repo} on stdin -> manifest/archives

Key material is fixed (derived from sha512 of labels) and borg's os.urandom is
replaced by a deterministic stream while generating, so re-running `gen`
reproduces the committed files byte for byte.
"""
import hashlib
import json
import os
import sys
import atexit
import shutil
import tempfile
from binascii import hexlify, unhexlify


def scratch_dir(prefix):
    """A temporary directory removed when this script exits (the Rust tests run it many times)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


os.environ.setdefault('BORG_BASE_DIR', scratch_dir('rborg-crypto-gen-'))

from borg.logger import setup_logging  # noqa: E402
setup_logging(level='warning')
import borg.crypto.key as bk  # noqa: E402
from borg.crypto.key import (PlaintextKey, KeyfileKey, RepoKey, AuthenticatedKey,  # noqa: E402
                             Blake2KeyfileKey, Blake2RepoKey, Blake2AuthenticatedKey, Passphrase)
from borg.crypto.keymanager import KeyManager  # noqa: E402
from borg.helpers import msgpack, StableDict  # noqa: E402
from borg.helpers.parseformat import Location  # noqa: E402

MODES = {
    'none': PlaintextKey,
    'authenticated': AuthenticatedKey,
    'authenticated-blake2': Blake2AuthenticatedKey,
    'repokey': RepoKey,
    'keyfile': KeyfileKey,
    'repokey-blake2': Blake2RepoKey,
    'keyfile-blake2': Blake2KeyfileKey,
}

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'crypto')


def h(b):
    return hexlify(bytes(b)).decode()


def det_bytes(label, n):
    out = b''
    i = 0
    while len(out) < n:
        out += hashlib.sha512(b'%s-%d' % (label.encode(), i)).digest()
        i += 1
    return out[:n]


class DetRandom:
    """Deterministic replacement for os.urandom (generator only)."""
    def __init__(self, label):
        self.label = label
        self.counter = 0

    def __call__(self, n):
        self.counter += 1
        return det_bytes('%s-%d' % (self.label, self.counter), n)


class FakeRepo:
    def __init__(self, repo_id):
        self.id = repo_id
        self.id_str = h(repo_id)
        self._location = Location('/tmp/rborg-fake-repo')
        self.key = None

    def get_free_nonce(self):
        return None

    def commit_nonce_reservation(self, next_unreserved, start_nonce):
        pass

    def load_key(self):
        return self.key

    def save_key(self, data):
        self.key = data


def make_key(mode, repo, material):
    cls = MODES[mode]
    key = cls(repo)
    if cls is PlaintextKey:
        return key
    key.repository_id = repo.id
    key.enc_key = material['enc_key']
    key.enc_hmac_key = material['enc_hmac_key']
    key.id_key = material['id_key']
    key.chunk_seed = material['chunk_seed']
    key.tam_required = material.get('tam_required', True)
    key.init_ciphers()
    return key


def material_for(mode, label):
    blake2 = 'blake2' in mode
    mlen = 128 if blake2 else 32
    m = dict(enc_key=det_bytes(label + '-enc', 32))
    if blake2:
        m['enc_hmac_key'] = det_bytes(label + '-mac', 64) + bytes(64)
        m['id_key'] = det_bytes(label + '-id', 64) + bytes(64)
    else:
        m['enc_hmac_key'] = det_bytes(label + '-mac', mlen)
        m['id_key'] = det_bytes(label + '-id', mlen)
    seed = int.from_bytes(det_bytes(label + '-seed', 4), 'big')
    if seed & 0x80000000:
        seed -= 1 << 32
    m['chunk_seed'] = seed
    return m


def encrypt_envelope(key, payload, nonce):
    if isinstance(key, (PlaintextKey, bk.AuthenticatedKeyBase)):
        return key.TYPE_STR + payload
    return key.cipher.encrypt(payload, header=key.TYPE_STR, iv=nonce)


def save_key(key, mode, passphrase, tmpdir):
    """Return the key blob text borg writes (keyfile text for keyfile modes, config string for repo modes)."""
    if MODES[mode] is PlaintextKey:
        return None
    pp = Passphrase(passphrase)
    if MODES[mode].STORAGE == bk.KeyBlobStorage.KEYFILE:
        target = os.path.join(tmpdir, 'keyfile-' + mode)
        if os.path.exists(target):
            os.unlink(target)
        key.save(target, pp, create=True)
        with open(target) as fd:
            return fd.read()
    key.save(key.repository, pp)
    return key.repository.key.decode('utf-8')


def load_key(mode, repo, blob, passphrase, tmpdir):
    cls = MODES[mode]
    key = cls(repo)
    if cls.STORAGE == bk.KeyBlobStorage.KEYFILE:
        target = os.path.join(tmpdir, 'load-' + mode)
        with open(target, 'w') as fd:
            fd.write(blob)
        ok = key.load(target, Passphrase(passphrase))
    else:
        repo.key = blob.encode('utf-8')
        ok = key.load(repo, Passphrase(passphrase))
    if ok:
        key.init_ciphers()
    return key if ok else None


def sample_manifest():
    return StableDict({
        'version': 1,
        'archives': StableDict({
            'host-2023-01-01': StableDict({'id': det_bytes('a1', 32), 'time': '2023-01-01T10:00:00.000000'}),
            'zzz-ärchive': StableDict({'id': det_bytes('a2', 32), 'time': '2023-02-01T10:00:00.123456'}),
        }),
        'timestamp': '2023-02-01T10:00:01.000000',
        'config': StableDict({'tam_required': True}),
        'item_keys': tuple(sorted(['path', 'mode', 'uid', 'gid', 'user', 'group', 'mtime', 'chunks', 'size'])),
    })


def sample_archive():
    return StableDict({
        'version': 1,
        'name': 'host-2023-01-01',
        'items': [det_bytes('i1', 32), det_bytes('i2', 32)],
        'cmdline': ['borg', 'create', '::host-2023-01-01', '/home'],
        'hostname': 'host',
        'username': 'root',
        'time': '2023-01-01T10:00:00.000000',
        'time_end': '2023-01-01T10:05:00.000000',
        'chunker_params': ('buzhash', 19, 23, 21, 4095),
        'size': 123456789012,
        'nfiles': -1,
    })


def gen():
    os.makedirs(OUT, exist_ok=True)
    tmpdir = scratch_dir('rborg-crypto-keys-')
    real_urandom = os.urandom
    os.urandom = DetRandom('gen')
    try:
        vectors = {'borg_version': __import__('borg').__version__, 'modes': []}
        paper = []
        payloads = [b'', b'\x00\x00abc', b'\x00\x00' + det_bytes('payload', 1000), det_bytes('odd', 33)]
        id_inputs = [b'', b'abc', det_bytes('idinput', 4097)]
        for i, mode in enumerate(MODES):
            repo_id = det_bytes('repo-' + mode, 32)
            repo = FakeRepo(repo_id)
            material = material_for(mode, 'key-' + mode)
            key = make_key(mode, repo, material)
            passphrase = 'pass-%s-äö €' % mode if i % 2 else 'secret %d' % i
            entry = {
                'mode': mode,
                'type': key.TYPE,
                'name': key.NAME,
                'repository_id': h(repo_id),
                'passphrase': passphrase,
                'chunk_seed': key.chunk_seed,
            }
            if MODES[mode] is not PlaintextKey:
                entry.update(enc_key=h(key.enc_key), enc_hmac_key=h(key.enc_hmac_key), id_key=h(key.id_key))
                blob = save_key(key, mode, passphrase, tmpdir)
                entry['key_text'] = blob
                # sanity: borg can load what it wrote
                loaded = load_key(mode, FakeRepo(repo_id), blob, passphrase, tmpdir)
                assert loaded is not None and loaded.id_key == key.id_key
                assert load_key(mode, FakeRepo(repo_id), blob, passphrase + 'x', tmpdir) is None
                keyblob = blob.split('\n', 1)[1] if blob.startswith('BORG_KEY ') else blob
                km = KeyManager.__new__(KeyManager)
                km.repository = repo
                km.keyblob = keyblob
                km.keyblob_storage = MODES[mode].STORAGE
                entry['export_keyfile'] = km.get_keyfile_data()
                p = os.path.join(tmpdir, 'paper-' + mode)
                km.export_paperkey(p)
                with open(p) as fd:
                    entry['export_paper'] = fd.read()
            entry['id_hashes'] = [{'data': h(d), 'id': h(key.id_hash(d))} for d in id_inputs]
            envs = []
            for j, payload in enumerate(payloads):
                nonce = [0, 1, 0x0123456789abcdef, 2**64 - 2**20][j]
                env = encrypt_envelope(key, payload, nonce)
                assert bytes(key.decrypt(None, env, decompress=False)) == payload
                envs.append({'payload': h(payload), 'nonce': nonce, 'envelope': h(env)})
            entry['envelopes'] = envs
            # TAMs
            tams = []
            for ctx, d in ((b'manifest', sample_manifest()), (b'archive', sample_archive())):
                plain = msgpack.packb(d)
                packed = key.pack_and_authenticate_metadata(d, context=ctx)
                salt = msgpack.unpackb(packed)[b'tam'][b'salt']
                if ctx == b'manifest':
                    unpacked, verified = key.unpack_and_verify_manifest(packed)
                    assert verified
                tams.append({'context': ctx.decode(), 'unauthenticated': h(plain),
                             'salt': h(salt), 'packed': h(packed)})
            entry['tams'] = tams
            vectors['modes'].append(entry)
        with open(os.path.join(OUT, 'vectors.json'), 'w') as fd:
            json.dump(vectors, fd, indent=1, ensure_ascii=False)
            fd.write('\n')
    finally:
        os.urandom = real_urandom


def gen_argon2():
    """Opt-in borg-2 style key protection (argon2 chacha20-poly1305), built like borg master's
    encrypt_key_file_argon2 with argon2-cffi + cryptography (borg 2 is not installed), around a
    borg-1.2 key blob; also records borg 1.2.4's refusal message. Needs python3-argon2."""
    try:
        import argon2.low_level
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError:
        print('argon2-cffi / cryptography missing: argon2.json not regenerated', file=sys.stderr)
        return
    from borg.item import Key as KeyItem
    import msgpack as real_msgpack
    mode = 'repokey'
    repo_id = det_bytes('argon2-repo', 32)
    m = material_for(mode, 'argon2')
    plain = msgpack.packb(KeyItem(version=1, repository_id=repo_id, enc_key=m['enc_key'],
                                  enc_hmac_key=m['enc_hmac_key'], id_key=m['id_key'],
                                  chunk_seed=m['chunk_seed'], tam_required=True).as_dict())
    passphrase = 'argon2 pässword'
    salt = det_bytes('argon2-salt', 16)
    args = dict(time_cost=3, memory_cost=2**16, parallelism=4)
    k = argon2.low_level.hash_secret_raw(secret=passphrase.encode(), hash_len=32, salt=salt,
                                         type=argon2.low_level.Type.ID, **args)
    ct_tag = ChaCha20Poly1305(k).encrypt(bytes(12), plain, None)
    data = ct_tag[-16:] + ct_tag[:-16]  # borg's AEAD layout: MAC first, then ciphertext
    enc = StableDict(version=1, algorithm='argon2 chacha20-poly1305', salt=salt, data=data,
                     **{'argon2_' + k2: v for k2, v in args.items()}, argon2_type='id')
    blob = real_msgpack.packb(enc, use_bin_type=True)  # borg 2 packs with use_bin_type=True
    key = RepoKey(FakeRepo(repo_id))
    try:
        key.decrypt_key_file(blob, Passphrase(passphrase))
        refusal = None
    except Exception as e:  # noqa
        refusal = str(e.get_message() if hasattr(e, 'get_message') else e)
    out = {'mode': mode, 'repository_id': h(repo_id), 'passphrase': passphrase, 'salt': h(salt),
           'enc_key': h(m['enc_key']), 'enc_hmac_key': h(m['enc_hmac_key']), 'id_key': h(m['id_key']),
           'chunk_seed': m['chunk_seed'], 'blob': h(blob), 'borg_1_2_refusal': refusal}
    with open(os.path.join(OUT, 'argon2.json'), 'w') as fd:
        json.dump(out, fd, indent=1, ensure_ascii=False)
        fd.write('\n')


def live():
    """Answer one JSON request from stdin using borg's own code (used by the Rust live tests)."""
    req = json.load(sys.stdin)
    tmpdir = scratch_dir('rborg-crypto-live-')
    mode = req['mode']
    repo = FakeRepo(unhexlify(req['repository_id']))
    res = {}
    if MODES[mode] is PlaintextKey:
        key = make_key(mode, repo, {})
    else:
        key = load_key(mode, repo, req['key_text'], req['passphrase'], tmpdir)
        if key is None:
            res['error'] = 'passphrase wrong'
            json.dump(res, sys.stdout)
            return
        res['material'] = {'enc_key': h(key.enc_key), 'enc_hmac_key': h(key.enc_hmac_key),
                           'id_key': h(key.id_key), 'chunk_seed': key.chunk_seed,
                           'tam_required': key.tam_required}
    res['id_hashes'] = [h(key.id_hash(unhexlify(d))) for d in req.get('id_inputs', [])]
    out = []
    for env in req.get('envelopes', []):
        try:
            out.append({'payload': h(bytes(key.decrypt(None, unhexlify(env), decompress=False)))})
        except Exception as e:  # noqa
            out.append({'error': '%s: %s' % (type(e).__name__, e)})
    res['decrypted'] = out
    tams = []
    for t in req.get('manifests', []):
        try:
            unpacked, verified = key.unpack_and_verify_manifest(unhexlify(t))
            tams.append({'verified': verified})
        except Exception as e:  # noqa
            tams.append({'error': '%s: %s' % (type(e).__name__, e)})
    res['manifests'] = tams
    # borg encrypts a payload with a given nonce, so Rust can decrypt borg's output of fresh data
    enc = []
    for item in req.get('encrypt', []):
        enc.append(h(encrypt_envelope(key, unhexlify(item['payload']), item['nonce'])))
    res['encrypted'] = enc
    json.dump(res, sys.stdout)


def live_repo():
    """Read a real repository made by `borg init`/`borg create` (path on stdin as JSON) and
    return its manifest envelope, borg's view of the decrypted payload and the archive objects."""
    from borg.repository import Repository
    from borg.helpers import Manifest, Location
    req = json.load(sys.stdin)
    repo = Repository(req['path'], exclusive=True)
    repo._location = Location(req['path'])
    res = {}
    with repo:
        manifest, key = Manifest.load(repo, Manifest.NO_OPERATION_CHECK)
        data = repo.get(Manifest.MANIFEST_ID)
        payload = bytes(key.decrypt(None, data, decompress=False))
        res['repository_id'] = h(repo.id)
        res['manifest_envelope'] = h(data)
        res['manifest_payload'] = h(payload)
        res['manifest_plain'] = h(key.decompress(payload))
        archives = []
        for info in manifest.archives.list():
            adata = repo.get(info.id)
            apayload = bytes(key.decrypt(info.id, adata, decompress=False))
            archives.append({'id': h(info.id), 'envelope': h(adata), 'payload': h(apayload),
                             'plain': h(key.decompress(apayload))})
        res['archives'] = archives
    json.dump(res, sys.stdout)


def bench():
    """Throughput of borg's own id_hash / envelope encrypt / decrypt on a 1 MiB chunk (MB/s)."""
    import time
    data = det_bytes('bench', 1 << 20)
    res = {}
    for mode in MODES:
        repo = FakeRepo(det_bytes('bench-repo', 32))
        key = make_key(mode, repo, material_for(mode, 'bench'))
        env = encrypt_envelope(key, data, 12345)
        ops = {
            'id_hash': lambda: key.id_hash(data),
            'encrypt': lambda: encrypt_envelope(key, data, 12345),
            'decrypt': lambda: key.decrypt(None, env, decompress=False),
        }
        for name, fn in ops.items():
            fn()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 1.0:
                fn()
                n += 1
            dt = time.perf_counter() - t0
            res.setdefault(name, {})[mode] = round(n * len(data) / dt / 1e6, 1)
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'gen'
    if cmd == 'gen':
        gen()
        gen_argon2()
    elif cmd == 'live':
        live()
    elif cmd == 'live-repo':
        live_repo()
    elif cmd == 'bench':
        bench()
    else:
        sys.exit('usage: crypto.py gen|live|live-repo|bench')
