//! The msgpack subset borg 1.2's RPC speaks, with the bounds of borg's `get_limited_unpacker`
//! (`borg/helpers/msgpack.py`).
//!
//! borg 1.2 packs with `use_bin_type=False` (every `bytes` and `str` becomes a msgpack *str*) and
//! unpacks with `raw=True` (every str comes back as `bytes`), so [`Value::Bytes`] stands for both
//! and is always written as a msgpack str. The decoder is incremental ([`decode`] reports an
//! incomplete buffer instead of failing) and bounded: string, array and map lengths and the
//! nesting depth are checked against [`Limits`] before anything is allocated, so hostile input
//! cannot make it allocate more than the limits allow.
//!
//! ```
//! use rborg_remote::msgpack::{decode, to_vec, Value, SERVER_LIMITS};
//! let msg = Value::map(vec![("i", Value::Int(1)), ("m", Value::bytes("__len__"))]);
//! let bytes = to_vec(&msg);
//! assert_eq!(bytes[0], 0x82); // a fixmap of two entries, keys as msgpack str
//! assert_eq!(decode(&bytes[..3], &SERVER_LIMITS), Ok(None)); // incomplete
//! assert_eq!(decode(&bytes, &SERVER_LIMITS), Ok(Some((msg, bytes.len()))));
//! ```

/// A decoded msgpack value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil` (Python `None`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// Any msgpack integer.
    Int(i128),
    /// float32 or float64.
    Float(f64),
    /// A msgpack str or bin (Python `bytes` with `raw=True`).
    Bytes(Vec<u8>),
    /// An array (Python list or tuple).
    Array(Vec<Value>),
    /// A map, in wire order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A str value from text or bytes.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    /// A map with text keys.
    pub fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::bytes(k), v))
                .collect(),
        )
    }

    /// The bytes of a str/bin value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value of an integer.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A number as seconds (ints and floats).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Python truthiness for the flags borg sends (`None`/`False`/0 are false).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// Looks up a text key of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Bounds on what [`decode`] accepts (borg's `get_limited_unpacker`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest str/bin (borg: `MAX_OBJECT_SIZE`).
    pub max_str: usize,
    /// Longest array.
    pub max_array: usize,
    /// Largest map.
    pub max_map: usize,
    /// Deepest nesting.
    pub max_depth: usize,
}

/// borg's `MAX_OBJECT_SIZE` (`constants.py`): the largest repository object, plus a little room
/// for the msgpack envelope.
pub const MAX_OBJECT_SIZE: usize = 20 * 1024 * 1024;

/// The most bytes a reader buffers for one message (borg's unpacker `max_buffer_size`); a
/// peer announcing more is cut off, so many maximal strings in one message cannot exhaust memory.
pub const MAX_BUFFER: usize = 3 * MAX_OBJECT_SIZE;

/// What `borg serve` accepts from a client (`get_limited_unpacker('server')`).
pub const SERVER_LIMITS: Limits = Limits {
    max_str: MAX_OBJECT_SIZE,
    max_array: 100,
    max_map: 100,
    max_depth: 8,
};

/// What a client accepts from `borg serve` (`get_limited_unpacker('client')`: list/scan results
/// hold up to `LIST_SCAN_LIMIT` ids).
pub const CLIENT_LIMITS: Limits = Limits {
    max_str: MAX_OBJECT_SIZE,
    max_array: 100_000,
    max_map: 100,
    max_depth: 8,
};

/// The input is not valid (or not acceptable) msgpack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid msgpack data: {0}")]
pub struct DecodeError(pub String);

enum Stop {
    Incomplete,
    Invalid(String),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    /// false for the measuring pass, which checks completeness without copying strings
    build: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::Incomplete)?;
        if end > self.buf.len() {
            return Err(Stop::Incomplete);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, Stop> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize, max: usize, what: &str) -> Result<usize, Stop> {
        let len = self.be(n)?;
        if len > max as u64 {
            return Err(Stop::Invalid(format!(
                "{what} of {len} exceeds the limit {max}"
            )));
        }
        Ok(len as usize)
    }

    fn str_of(&mut self, len: usize) -> Result<Value, Stop> {
        if len > self.limits.max_str {
            return Err(Stop::Invalid(format!(
                "string of {len} bytes exceeds the limit {}",
                self.limits.max_str
            )));
        }
        let bytes = self.take(len)?;
        Ok(if self.build {
            Value::Bytes(bytes.to_vec())
        } else {
            Value::Nil
        })
    }

    fn array_of(&mut self, len: usize, depth: usize) -> Result<Value, Stop> {
        if len > self.limits.max_array {
            return Err(Stop::Invalid(format!(
                "array of {len} items exceeds the limit"
            )));
        }
        // never trust the length for the allocation: each item needs at least one byte
        let mut items = Vec::with_capacity(len.min(self.buf.len() - self.pos));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map_of(&mut self, len: usize, depth: usize) -> Result<Value, Stop> {
        if len > self.limits.max_map {
            return Err(Stop::Invalid(format!(
                "map of {len} items exceeds the limit"
            )));
        }
        let mut items = Vec::with_capacity(len.min(self.buf.len() - self.pos));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            items.push((k, v));
        }
        Ok(Value::Map(items))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Stop> {
        if depth > self.limits.max_depth {
            return Err(Stop::Invalid("nesting too deep".into()));
        }
        let marker = self.take(1)?[0];
        let l = self.limits;
        Ok(match marker {
            0x00..=0x7f => Value::Int(i128::from(marker)),
            0x80..=0x8f => return self.map_of(usize::from(marker & 0x0f), depth),
            0x90..=0x9f => return self.array_of(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => return self.str_of(usize::from(marker & 0x1f)),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 | 0xd9 => {
                let n = self.len(1, l.max_str, "string")?;
                return self.str_of(n);
            }
            0xc5 | 0xda => {
                let n = self.len(2, l.max_str, "string")?;
                return self.str_of(n);
            }
            0xc6 | 0xdb => {
                let n = self.len(4, l.max_str, "string")?;
                return self.str_of(n);
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xcc => Value::Int(i128::from(self.be(1)?)),
            0xcd => Value::Int(i128::from(self.be(2)?)),
            0xce => Value::Int(i128::from(self.be(4)?)),
            0xcf => Value::Int(i128::from(self.be(8)?)),
            0xd0 => Value::Int(i128::from(self.be(1)? as u8 as i8)),
            0xd1 => Value::Int(i128::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::Int(i128::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::Int(i128::from(self.be(8)? as i64)),
            0xdc => {
                let n = self.len(2, l.max_array, "array")?;
                return self.array_of(n, depth);
            }
            0xdd => {
                let n = self.len(4, l.max_array, "array")?;
                return self.array_of(n, depth);
            }
            0xde => {
                let n = self.len(2, l.max_map, "map")?;
                return self.map_of(n, depth);
            }
            0xdf => {
                let n = self.len(4, l.max_map, "map")?;
                return self.map_of(n, depth);
            }
            0xe0..=0xff => Value::Int(i128::from(marker as i8)),
            // 0xc1 is never used; ext types are not part of borg's RPC (max_ext_len=0)
            other => {
                return Err(Stop::Invalid(format!(
                    "unsupported msgpack type 0x{other:02x}"
                )))
            }
        })
    }
}

/// Decodes one value from the start of `buf`: `Ok(None)` when `buf` holds only part of a value,
/// else the value and the number of bytes it used.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, DecodeError> {
    // a reader calls this again after every read: first measure without copying, so that a
    // large message arriving in pieces is not copied over and over
    let mut measure = Cursor {
        buf,
        pos: 0,
        limits,
        build: false,
    };
    match measure.value(0) {
        Ok(_) => {}
        Err(Stop::Incomplete) => return Ok(None),
        Err(Stop::Invalid(m)) => return Err(DecodeError(m)),
    }
    let mut c = Cursor {
        buf: &buf[..measure.pos],
        pos: 0,
        limits,
        build: true,
    };
    match c.value(0) {
        Ok(v) => Ok(Some((v, c.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Invalid(m)) => Err(DecodeError(m)),
    }
}

/// Appends the msgpack encoding of `v` to `out`, the way borg's `packb(use_bin_type=False)` does.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    use rmp::encode as e;
    // writing into a Vec cannot fail, so the io results are ignored
    match v {
        Value::Nil => e::write_nil(out).unwrap_or(()),
        Value::Bool(b) => e::write_bool(out, *b).unwrap_or(()),
        Value::Int(i) => {
            if *i >= 0 {
                let _ = e::write_uint(out, u64::try_from(*i).unwrap_or(u64::MAX));
            } else {
                let _ = e::write_sint(out, i64::try_from(*i).unwrap_or(i64::MIN));
            }
        }
        Value::Float(f) => {
            let _ = e::write_f64(out, *f);
        }
        Value::Bytes(b) => {
            let _ = e::write_str_len(out, b.len() as u32);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            let _ = e::write_array_len(out, items.len() as u32);
            for i in items {
                encode(i, out);
            }
        }
        Value::Map(items) => {
            let _ = e::write_map_len(out, items.len() as u32);
            for (k, v) in items {
                encode(k, out);
                encode(v, out);
            }
        }
    }
}

/// The encoding of `v` as a new buffer.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_incomplete() {
        let v = Value::map(vec![
            ("i", Value::Int(7)),
            ("m", Value::bytes("get")),
            (
                "a",
                Value::Array(vec![
                    Value::Int(-3),
                    Value::Int(1 << 40),
                    Value::Float(0.1),
                    Value::Nil,
                    Value::Bool(true),
                    Value::Bytes(vec![0xff; 300]),
                ]),
            ),
        ]);
        let bytes = to_vec(&v);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], &SERVER_LIMITS), Ok(None));
        }
        assert_eq!(
            decode(&bytes, &SERVER_LIMITS),
            Ok(Some((v.clone(), bytes.len())))
        );
    }

    #[test]
    fn limits_are_enforced_before_allocation() {
        // str32 claiming 4 GiB
        assert!(decode(&[0xdb, 0xff, 0xff, 0xff, 0xff], &SERVER_LIMITS).is_err());
        // array32 claiming 4 G items
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff], &SERVER_LIMITS).is_err());
        // deep nesting
        assert!(decode(&[0x91; 64], &SERVER_LIMITS).is_err());
        // ext types and the never-used marker
        assert!(decode(&[0xc1], &SERVER_LIMITS).is_err());
        assert!(decode(&[0xd4, 1, 2], &SERVER_LIMITS).is_err());
    }
}
