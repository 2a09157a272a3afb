//! msgpack exactly as borg 1.2 writes it.
//!
//! borg 1.2 packs with `msgpack.packb(obj, use_bin_type=False)` (see `borg/helpers/msgpack.py`):
//! both `str` and `bytes` become the legacy *raw* family (fixstr / str16 / str32 — **never**
//! str8 `0xd9`, which msgpack-python only emits with `use_bin_type=True`), integers take the
//! smallest encoding in msgpack-python's order, floats are always float64 and dicts wrapped in
//! `StableDict` are written with sorted keys. Anything hashed or MACed by borg (key blobs,
//! TAMs) must be reproduced byte for byte, which `rmpv`'s own encoder does not do, so this
//! module has its own small encoder. Decoding uses `rmpv` (depth-limited, bounded
//! preallocation, so untrusted input cannot make it panic or over-allocate).

use rmpv::Value;

use crate::error::{Error, Result};

/// Serialize `value` the way borg 1.2 (`use_bin_type=False`) does.
///
/// Map entries are written in the order given; use [`sort_map_keys`] first where borg uses a
/// `StableDict` (all key blobs and the top level of TAM'd metadata).
pub fn pack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    pack_into(value, &mut out);
    out
}

/// Append the borg-compatible encoding of `value` to `out`.
pub fn pack_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                pack_uint(u, out)
            } else if let Some(s) = i.as_i64() {
                pack_sint(s, out)
            }
        }
        Value::F32(f) => {
            // Python floats are doubles; an F32 can only come from a non-borg source.
            out.push(0xcb);
            out.extend_from_slice(&f64::from(*f).to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::String(s) => pack_raw(s.as_bytes(), out),
        Value::Binary(b) => pack_raw(b, out),
        Value::Array(items) => {
            pack_container_header(items.len(), 0x90, 0xdc, 0xdd, out);
            for item in items {
                pack_into(item, out);
            }
        }
        Value::Map(entries) => {
            pack_container_header(entries.len(), 0x80, 0xde, 0xdf, out);
            for (k, v) in entries {
                pack_into(k, out);
                pack_into(v, out);
            }
        }
        Value::Ext(ty, data) => {
            let len = data.len();
            match len {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                _ if len < 0x100 => {
                    out.push(0xc7);
                    out.push(len as u8);
                }
                _ if len < 0x10000 => {
                    out.push(0xc8);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(0xc9);
                    out.extend_from_slice(&(len as u32).to_be_bytes());
                }
            }
            out.push(*ty as u8);
            out.extend_from_slice(data);
        }
    }
}

fn pack_uint(u: u64, out: &mut Vec<u8>) {
    if u < 0x80 {
        out.push(u as u8);
    } else if u <= 0xff {
        out.push(0xcc);
        out.push(u as u8);
    } else if u <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

fn pack_sint(s: i64, out: &mut Vec<u8>) {
    // only called for negative values (non-negative ones are handled as unsigned)
    if s >= -32 {
        out.push(s as i8 as u8);
    } else if s >= -0x80 {
        out.push(0xd0);
        out.push(s as i8 as u8);
    } else if s >= -0x8000 {
        out.push(0xd1);
        out.extend_from_slice(&(s as i16).to_be_bytes());
    } else if s >= -0x8000_0000 {
        out.push(0xd2);
        out.extend_from_slice(&(s as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&s.to_be_bytes());
    }
}

fn pack_raw(b: &[u8], out: &mut Vec<u8>) {
    let len = b.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 0x10000 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn pack_container_header(len: usize, fix: u8, m16: u8, m32: u8, out: &mut Vec<u8>) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len < 0x10000 {
        out.push(m16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Sort the entries of a map by key bytes, as Python's `StableDict.items()` (`sorted()`) does
/// for str keys (UTF-8 byte order equals code point order). Non-maps are left unchanged.
pub fn sort_map_keys(value: &mut Value) {
    if let Value::Map(entries) = value {
        entries.sort_by(|(a, _), (b, _)| key_bytes(a).cmp(key_bytes(b)));
    }
}

/// Raw bytes of a str/bin key (what borg sees with `raw=True`), or empty for other types.
pub fn key_bytes(v: &Value) -> &[u8] {
    match v {
        Value::String(s) => s.as_bytes(),
        Value::Binary(b) => b,
        _ => &[],
    }
}

/// Decode one msgpack object from the start of `data` (trailing bytes are ignored, like borg's
/// `Unpacker.unpack()`).
pub fn unpack(data: &[u8]) -> Result<Value> {
    let mut rd = data;
    rmpv::decode::read_value(&mut rd).map_err(|e| Error::Msgpack(e.to_string()))
}

/// How much of a buffer the msgpack object at its start takes, found by [`value_len`] without
/// decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueLen {
    /// The object is complete and takes this many bytes.
    Complete(usize),
    /// The buffer ends inside the object: more data may complete it (rmpv's `UnexpectedEof`).
    Incomplete,
    /// The object can never be read: it nests deeper than rmpv's `MAX_DEPTH`.
    TooDeep,
}

/// The length of the msgpack object at the start of `data`, with exactly the outcome
/// `rmpv::decode::read_value` would have (same depth accounting, the reserved marker `0xc1`
/// read as nil, a short buffer incomplete) but no allocation: streaming readers (an archive's
/// item stream arrives in chunk-sized pieces) learn where an object ends, or that it has not
/// arrived yet, before decoding it once.
pub fn value_len(data: &[u8]) -> ValueLen {
    // rmpv spends one unit of its depth budget on every value, one more on the body of a
    // container, str (two: str and bin data) or ext (two), and checks the budget before
    // reading: `budget` is what the next value starts with
    let mut budget = rmpv::decode::MAX_DEPTH as u16;
    // containers being read: (values still to read, the budget each starts with)
    let mut open: Vec<(u64, u16)> = Vec::new();
    let mut pos = 0usize;
    let be = |at: usize, n: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(n)?)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    loop {
        let Some(inner) = budget.checked_sub(1) else {
            return ValueLen::TooDeep;
        };
        let Some(&marker) = data.get(pos) else {
            return ValueLen::Incomplete;
        };
        pos += 1;
        // (bytes of the length field, what follows it)
        let (len_bytes, kind) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0..=0xc3 => (0, Body::Fixed(0)),
            0xcc | 0xd0 => (0, Body::Fixed(1)),
            0xcd | 0xd1 => (0, Body::Fixed(2)),
            0xce | 0xd2 | 0xca => (0, Body::Fixed(4)),
            0xcf | 0xd3 | 0xcb => (0, Body::Fixed(8)),
            0xa0..=0xbf => (0, Body::Str(u64::from(marker & 0x1f))),
            0xd9 => (1, Body::Str(0)),
            0xda => (2, Body::Str(0)),
            0xdb => (4, Body::Str(0)),
            0xc4 => (1, Body::Bin(0)),
            0xc5 => (2, Body::Bin(0)),
            0xc6 => (4, Body::Bin(0)),
            0xd4 => (0, Body::Ext(1)),
            0xd5 => (0, Body::Ext(2)),
            0xd6 => (0, Body::Ext(4)),
            0xd7 => (0, Body::Ext(8)),
            0xd8 => (0, Body::Ext(16)),
            0xc7 => (1, Body::Ext(0)),
            0xc8 => (2, Body::Ext(0)),
            0xc9 => (4, Body::Ext(0)),
            0x90..=0x9f => (0, Body::Array(u64::from(marker & 0x0f))),
            0xdc => (2, Body::Array(0)),
            0xdd => (4, Body::Array(0)),
            0x80..=0x8f => (0, Body::Map(u64::from(marker & 0x0f))),
            0xde => (2, Body::Map(0)),
            0xdf => (4, Body::Map(0)),
        };
        let len = if len_bytes == 0 {
            None
        } else {
            let Some(n) = be(pos, len_bytes) else {
                return ValueLen::Incomplete;
            };
            pos += len_bytes;
            Some(n)
        };
        let skip = |pos: &mut usize, n: u64| -> bool {
            match usize::try_from(n).ok().and_then(|n| pos.checked_add(n)) {
                Some(end) if end <= data.len() => {
                    *pos = end;
                    true
                }
                _ => false,
            }
        };
        match kind {
            Body::Fixed(n) => {
                if !skip(&mut pos, n) {
                    return ValueLen::Incomplete;
                }
            }
            Body::Str(fixed) | Body::Bin(fixed) => {
                // str: str data then bin data; bin: bin data
                let units = if matches!(kind, Body::Str(_)) { 2 } else { 1 };
                if inner < units {
                    return ValueLen::TooDeep;
                }
                if !skip(&mut pos, len.unwrap_or(fixed)) {
                    return ValueLen::Incomplete;
                }
            }
            Body::Ext(fixed) => {
                // ext body (one unit), its type byte, then bin data (one more unit)
                if inner < 1 {
                    return ValueLen::TooDeep;
                }
                if !skip(&mut pos, 1) {
                    return ValueLen::Incomplete;
                }
                if inner < 2 {
                    return ValueLen::TooDeep;
                }
                if !skip(&mut pos, len.unwrap_or(fixed)) {
                    return ValueLen::Incomplete;
                }
            }
            Body::Array(fixed) | Body::Map(fixed) => {
                let Some(child) = inner.checked_sub(1) else {
                    return ValueLen::TooDeep;
                };
                let n = len.unwrap_or(fixed);
                let values = if matches!(kind, Body::Map(_)) {
                    2 * n
                } else {
                    n
                };
                if values > 0 {
                    open.push((values, child));
                }
            }
        }
        // the next value: of the innermost container with values left, or none
        loop {
            match open.last_mut() {
                None => return ValueLen::Complete(pos),
                Some((0, _)) => {
                    open.pop();
                }
                Some((left, child)) => {
                    *left -= 1;
                    budget = *child;
                    break;
                }
            }
        }
    }
}

/// What follows a marker (and its length field, if any), for [`value_len`]: the size or
/// count of a fixed-size form.
#[derive(Clone, Copy)]
enum Body {
    Fixed(u64),
    Str(u64),
    Bin(u64),
    Ext(u64),
    Array(u64),
    Map(u64),
}

/// Look up `key` in a msgpack map (str or bin key, compared as raw bytes like borg's `raw=True`).
/// Of a key repeated in a (damaged or forged) map the last value counts, as in the Python dict
/// borg unpacks into.
pub fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .rev()
        .find(|(k, _)| key_bytes(k) == key.as_bytes())
        .map(|(_, v)| v)
}

/// Raw bytes of a str or bin value.
pub fn as_raw(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// rmpv's verdict on the object at the start of `data`, in [`ValueLen`] terms.
    fn rmpv_len(data: &[u8]) -> ValueLen {
        use rmpv::decode::Error as E;
        let mut rd = data;
        match rmpv::decode::read_value(&mut rd) {
            Ok(_) => ValueLen::Complete(data.len() - rd.len()),
            Err(E::DepthLimitExceeded) => ValueLen::TooDeep,
            Err(E::InvalidMarkerRead(e) | E::InvalidDataRead(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{data:?}");
                ValueLen::Incomplete
            }
        }
    }

    fn item_like() -> Value {
        Value::Map(vec![
            (Value::from("path"), Value::from("home/user/file.txt")),
            (Value::from("mode"), Value::from(0o100644)),
            (
                Value::from("mtime"),
                Value::from(1_700_000_000_123_456_789i64),
            ),
            (
                Value::from("chunks"),
                Value::Array(vec![Value::Array(vec![
                    Value::Binary(vec![7; 32]),
                    Value::from(70_000),
                    Value::from(30_000),
                ])]),
            ),
            (Value::from("xattrs"), Value::Map(vec![])),
            (Value::from("f"), Value::F64(1.5)),
            (Value::from("e"), Value::Ext(5, vec![1, 2, 3])),
            (Value::from("n"), Value::Nil),
        ])
    }

    #[test]
    fn value_len_matches_rmpv_on_every_prefix() {
        let mut stream = pack(&item_like());
        stream.extend(pack(&Value::from("next")));
        let first = pack(&item_like()).len();
        assert_eq!(value_len(&stream), ValueLen::Complete(first));
        for end in 0..=stream.len() {
            let prefix = &stream[..end];
            assert_eq!(value_len(prefix), rmpv_len(prefix), "prefix of {end} bytes");
        }
        // every marker, alone, short and padded
        for marker in 0..=255u8 {
            for pad in [0usize, 1, 2, 3, 5, 9, 17, 40] {
                let mut d = vec![marker];
                d.extend(std::iter::repeat_n(0u8, pad));
                assert_eq!(value_len(&d), rmpv_len(&d), "marker {marker:#x} + {pad}");
            }
        }
    }

    #[test]
    fn value_len_matches_rmpv_at_the_depth_limit() {
        // rmpv recurses: an unoptimized build needs more than a test thread's stack
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(depth_limit_cases)
            .unwrap()
            .join()
            .unwrap();
    }

    fn depth_limit_cases() {
        let nested = |n: usize| [vec![0x91u8; n], vec![0x05]].concat();
        assert_eq!(value_len(&nested(500)), ValueLen::Complete(501));
        assert_eq!(value_len(&nested(1020)), ValueLen::TooDeep);
        // n nested arrays around a leaf of each kind (str, bin, ext, map, int), complete and cut
        let leaves: [&[u8]; 7] = [
            b"\xa1x",
            b"\xc4\x01x",
            b"\xd4\x01x",
            b"\xc7\x01\x01x",
            b"\x80",
            b"\x81\x01\x02",
            b"\x05",
        ];
        for n in (500..520).chain(1015..1030) {
            for leaf in leaves {
                for wrap in [0x91u8, 0x81] {
                    let mut d = vec![wrap; n];
                    if wrap == 0x81 {
                        // a map of one pair: an int key, then the nested value
                        d = std::iter::repeat_n([0x81u8, 0x00], n).flatten().collect();
                    }
                    d.extend_from_slice(leaf);
                    for cut in [0, 1, 2] {
                        let data = &d[..d.len().saturating_sub(cut)];
                        assert_eq!(
                            value_len(data),
                            rmpv_len(data),
                            "{n} x {wrap:#x}, {leaf:?} - {cut}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn value_len_matches_rmpv_on_random_bytes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // markers weighted towards containers and length fields, small lengths
        let pool: Vec<u8> = (0..=255u8)
            .chain([
                0x91, 0x92, 0x82, 0xdc, 0xde, 0xd9, 0xc4, 0xc7, 0xd4, 0xc1, 0x00, 0x01, 0x02,
            ])
            .collect();
        for round in 0..200_000 {
            let len = rng.gen_range(0..48);
            let data: Vec<u8> = (0..len)
                .map(|_| pool[rng.gen_range(0..pool.len())])
                .collect();
            assert_eq!(value_len(&data), rmpv_len(&data), "round {round}: {data:?}");
        }
    }

    #[test]
    fn ints_like_msgpack_python() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (256, &[0xcd, 0x01, 0x00]),
            (100000, &[0xce, 0x00, 0x01, 0x86, 0xa0]),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-129, &[0xd1, 0xff, 0x7f]),
            (-40000, &[0xd2, 0xff, 0xff, 0x63, 0xc0]),
        ];
        for (v, want) in cases {
            assert_eq!(pack(&Value::from(*v)), *want, "{v}");
        }
    }

    #[test]
    fn raw_never_uses_str8() {
        let b = vec![7u8; 40];
        let p = pack(&Value::Binary(b.clone()));
        assert_eq!(&p[..3], &[0xda, 0x00, 40]);
        assert_eq!(pack(&Value::from("abc")), b"\xa3abc");
        assert_eq!(
            unpack(&p).unwrap(),
            Value::String(String::from_utf8(b).unwrap().into())
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(unpack(&[0xda, 0x00]).is_err());
        assert!(unpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(unpack(&[]).is_err());
    }
}
