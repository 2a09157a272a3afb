#!/usr/bin/python3
"""Writes the seed inputs of the rpc_server fuzz target (rpc_server/seeds/*.bin): whole client streams of
borg 1.2.4's RPC, packed as borg's client packs them (msgpack, use_bin_type=False). Seeds named
ok-* are well-formed sessions that must get no error reply (tests/fuzz_regressions.rs checks).
Run: /usr/bin/python3 testdata/fuzz/make_rpc_server_seeds.py"""
import os
import msgpack

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rpc_server', 'seeds')
os.makedirs(here, exist_ok=True)
pack = msgpack.Packer(use_bin_type=False).pack
ID1, ID2 = bytes(range(32)), bytes(range(1, 33))


def session(calls):
    out = b''
    for i, (m, a) in enumerate(calls, 1):
        out += pack({b'i': i, b'm': m.encode(), b'a': {k.encode(): v for k, v in a.items()}})
    return out


negotiate = ('negotiate', {'client_data': {b'client_version': [1, 2, 4, -1]}})
seeds = {
    'ok-create-put-get': session([
        negotiate,
        ('open', {'path': b'r', 'create': True, 'lock_wait': 1.0, 'lock': True,
                  'exclusive': True, 'append_only': False, 'make_parent_dirs': False}),
        ('get_free_nonce', {}),
        ('commit_nonce_reservation', {'next_unreserved': 4096, 'start_nonce': None}),
        ('save_key', {'keydata': b'key data'}),
        ('load_key', {}),
        ('put', {'id': ID1, 'data': b'chunk one' * 10}),
        ('put', {'id': ID2, 'data': b'chunk two'}),
        ('commit', {'save_space': False, 'compact': True, 'threshold': 0.1, 'cleanup_commits': False}),
        ('__len__', {}),
        ('list', {'limit': 10, 'marker': None}),
        ('list', {'limit': 10, 'marker': ID1}),
        ('scan', {'limit': 1, 'marker': None}),
        ('get', {'id': ID1}),
        ('delete', {'id': ID2}),
        ('commit', {'compact': False}),
        ('check', {'repair': False, 'save_space': False, 'max_duration': 0}),
        ('rollback', {}),
        ('destroy', {}),
    ]),
    'ok-reopen-append-only': session([
        negotiate,
        ('open', {'path': b'/./r2', 'create': True, 'make_parent_dirs': True}),
        ('put', {'id': ID1, 'data': b'x'}),
        ('commit', {}),
        ('open', {'path': b'r2', 'create': False, 'append_only': True, 'exclusive': None}),
        ('delete', {'id': ID1}),
        ('commit', {'compact': True}),
        ('list', {'limit': None, 'marker': None}),
        ('check', {'repair': False, 'max_duration': 0.5}),
    ]),
    'errors': session([
        ('get', {'id': ID1}),  # before open
        negotiate,
        ('open', {'path': b'/etc', 'create': False}),  # not allowed
        ('open', {'path': b'missing', 'create': False}),
        ('no_such_method', {}),
        ('inject_exception', {'kind': b'DoesNotExist'}),
        ('inject_exception', {'kind': b'other'}),
        ('open', {'path': b'r', 'create': True}),
        ('get', {'id': b'short'}),
        ('get', {'id': ID1}),
        ('put', {'id': ID1, 'data': 7}),
        ('list', {'limit': -1}),
        ('commit_nonce_reservation', {'next_unreserved': 10, 'start_nonce': 20}),
        ('break_lock', {}),
        ('destroy', {}),
    ]),
    'legacy-tuples': b''.join(pack(m) for m in [
        (1, 1, b'negotiate', [2]),
        (1, 2, b'open', [b'r', True, 1.0, True, True, False]),
        (1, 3, b'put', [ID1, b'legacy']),
        (1, 4, b'commit', [False]),
        (1, 5, b'get', [ID1]),
        (1, 6, b'get', [ID2]),
    ]),
}
# hostile streams (issue 5): each must get an error reply or a clean end, quickly, without
# allocating what a length prefix claims
neg = pack({b'i': 1, b'm': b'negotiate', b'a': {b'client_data': {b'client_version': [1, 2, 4, -1]}}})
seeds.update({
    'hostile-huge-str32': neg + b'\x81\xa1i\x02' + b'\xdb\xff\xff\xff\xff' + b'x' * 64,
    'hostile-huge-array32': neg + b'\xdd\xff\xff\xff\xff' + b'\xc0' * 64,
    'hostile-huge-map32': neg + b'\xdf\xff\xff\xff\xf0' + b'\xc0' * 64,
    'hostile-deep-nesting': neg + b'\x91' * 100000,
    'hostile-truncated': neg + pack({b'i': 2, b'm': b'open', b'a': {b'path': b'r', b'create': True}})[:-3],
    'hostile-bin-and-ext': neg + b'\xc4\x03abc' + b'\xd4\x01\x00',
    'hostile-bad-fields': neg + b''.join(pack(m) for m in [
        {b'i': 3, b'm': b'open', b'a': {b'path': 7}},
        {b'i': 4, b'm': b'open', b'a': {b'path': b'../../etc', b'create': True}},
        {b'i': 5, b'm': b'open', b'a': {b'path': b'/~root/x', b'create': True}},
        {b'i': 6, b'm': b'open', b'a': {b'path': b'r', b'create': True, b'lock_wait': -1e308}},
        {b'i': 7, b'm': b'list', b'a': {b'limit': 2 ** 63, b'marker': b'x' * 31}},
        {b'i': 8, b'm': b'commit_nonce_reservation', b'a': {b'next_unreserved': -1}},
        {b'i': 9, b'm': b'check', b'a': {b'max_duration': float('nan')}},
        {b'i': 10, b'm': b'__init__', b'a': {}},
    ]),
    'hostile-bad-message': neg + pack({b'i': [1, 2], b'm': 5, b'a': []}),
    'hostile-legacy-garbage': pack((1, 1, b'open', b'notalist')) + pack((2, 2, 3, 4)) + pack((1,)),
})
for name, data in seeds.items():
    with open(os.path.join(here, name + '.bin'), 'wb') as f:
        f.write(data)
