#!/usr/bin/python3
"""Helper for crates/repository/tests/formats_live.rs: let borg 1.2.4 replay / read / verify.

usage: repository_live.py COMMAND ARGS...   (prints JSON on stdout)
  replay KIND OPS_JSON OUT_IDX      apply ops (['set', hexkey, v..] / ['del', hexkey] / ['get', hexkey])
                                    to a fresh NSIndex/ChunkIndex, write it to OUT_IDX
  dump KIND IDX                     read IDX with borg, print {"len": n, "entries": [[hex, [v..]], ...]}
  sample KIND IDX HEXKEYS_JSON      read IDX with borg, print len, load seconds and values of some keys
  verify REPO TXN                   open index.TXN / hints.TXN through IntegrityCheckedFile with the
                                    digests of integrity.TXN exactly like Repository.open_index/prepare_txn
  hostid                            print borg's platform.hostid and process id
"""
import json
import os
import sys
import time

from borg.hashindex import NSIndex, ChunkIndex
from borg.helpers import msgpack
from borg.logger import setup_logging

setup_logging(stream=sys.stderr, level='warning')

CLS = {'NSIndex': NSIndex, 'ChunkIndex': ChunkIndex}


def main():
    cmd = sys.argv[1]
    if cmd == 'replay':
        idx = CLS[sys.argv[2]]()
        with open(sys.argv[3]) as f:
            ops = json.load(f)
        for op in ops:
            k = bytes.fromhex(op[1])
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
        idx.write(sys.argv[4])
        print(json.dumps({'len': len(idx)}))
    elif cmd == 'dump':
        idx = CLS[sys.argv[2]].read(sys.argv[3])
        print(json.dumps({'len': len(idx), 'entries': [[k.hex(), list(v)] for k, v in idx.iteritems()]}))
    elif cmd == 'sample':
        t = time.perf_counter()
        idx = CLS[sys.argv[2]].read(sys.argv[3])
        dt = time.perf_counter() - t
        with open(sys.argv[4]) as f:
            keys = json.load(f)
        print(json.dumps({'len': len(idx), 'load_seconds': dt,
                          'values': [list(idx[bytes.fromhex(k)]) if bytes.fromhex(k) in idx else None for k in keys]}))
    elif cmd == 'verify':
        from borg.crypto.file_integrity import IntegrityCheckedFile, FileIntegrityError
        repo, txn = sys.argv[2], int(sys.argv[3])
        with open(os.path.join(repo, 'integrity.%d' % txn), 'rb') as f:
            integrity = msgpack.unpack(f)
        out = {}
        t = time.perf_counter()
        try:
            with IntegrityCheckedFile(os.path.join(repo, 'index.%d' % txn), write=False,
                                      integrity_data=integrity[b'index'].decode()) as fd:
                idx = NSIndex.read(fd)
            out['index_len'] = len(idx)
            out['index_load_seconds'] = time.perf_counter() - t
            with IntegrityCheckedFile(os.path.join(repo, 'hints.%d' % txn), write=False,
                                      integrity_data=integrity[b'hints'].decode()) as fd:
                hints = msgpack.unpack(fd)
            out['hints_version'] = hints[b'version']
            out['segments'] = {str(k): v for k, v in hints[b'segments'].items()}
            out['compact'] = {str(k): v for k, v in hints[b'compact'].items()}
            out['storage_quota_use'] = hints[b'storage_quota_use']
            out['shadow_index'] = {k.hex(): v for k, v in hints[b'shadow_index'].items()}
            out['ok'] = True
        except FileIntegrityError as e:
            out['ok'] = False
            out['error'] = 'FileIntegrityError: %s' % e
        except ValueError as e:
            out['ok'] = False
            out['error'] = 'ValueError: %s' % e
        print(json.dumps(out))
    elif cmd == 'hostid':
        from borg import platform
        print(json.dumps({'hostid': platform.hostid, 'process_id': list(platform.get_process_id())}))
    else:
        raise SystemExit('unknown command')


if __name__ == '__main__':
    main()
