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
