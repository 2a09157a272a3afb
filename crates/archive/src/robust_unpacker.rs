//! A restartable msgpack stream reader for damaged item streams (borg 1.2.4 `archive.py`
//! `RobustUnpacker` and `valid_msgpacked_dict`).
//!
//! `borg check` reads an archive's item stream chunk by chunk. When a chunk is missing or
//! garbled, the bytes that follow no longer start at an item boundary; after [`resync`] the
//! reader drops bytes one at a time until what follows looks like a packed item dict (a map whose
//! first key is one of the known item keys) that unpacks and passes the validator, and goes on
//! from there.
//!
//! [`resync`]: RobustUnpacker::resync

use rborg_crypto::msgpack;
use rmpv::Value;

/// Why the stream could not be read at the current position (borg: `msgpack.UnpackException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid msgpack data: {0}")]
pub struct UnpackError(pub String);

/// borg's `valid_msgpacked_dict`: does `d` start with a msgpack map (fixmap or map16) whose first
/// key is a string starting with one of `keys_serialized` (each a packed key name)?
pub fn valid_msgpacked_dict(d: &[u8], keys_serialized: &[Vec<u8>]) -> bool {
    let Some(&first) = d.first() else {
        return false;
    };
    let offs = if first & 0xf0 == 0x80 {
        1
    } else if first == 0xde {
        3
    } else {
        return false;
    };
    let Some(&key_marker) = d.get(offs) else {
        return false;
    };
    if key_marker & 0xe0 != 0xa0 && !matches!(key_marker, 0xd9..=0xdb) {
        return false;
    }
    let rest = &d[offs..];
    keys_serialized.iter().any(|k| rest.starts_with(k))
}

/// The packed form of a key name as borg 1.2 packs it (`msgpack.packb(name.encode())`, a raw
/// string).
pub fn packed_key(name: &str) -> Vec<u8> {
    msgpack::pack(&Value::from(name))
}

/// Outcome of decoding one value at the start of a buffer.
enum Decoded {
    Value(Value, usize),
    Incomplete,
    Invalid(String),
}

fn decode_one(data: &[u8]) -> Decoded {
    // rmpv reads the reserved marker as nil; msgpack-python (borg) refuses it
    if data.first() == Some(&0xc1) {
        return Decoded::Invalid("reserved marker 0xc1".into());
    }
    // decoded (allocating) only once it is all there: a resync tries every offset
    let len = match msgpack::value_len(data) {
        msgpack::ValueLen::Complete(len) => len,
        msgpack::ValueLen::Incomplete => return Decoded::Incomplete,
        msgpack::ValueLen::TooDeep => return Decoded::Invalid("depth limit exceeded".into()),
    };
    match msgpack::unpack(&data[..len]) {
        Ok(v) => Decoded::Value(v, len),
        Err(e) => Decoded::Invalid(e.to_string()),
    }
}

/// borg's `RobustUnpacker`: a streaming msgpack reader that can skip to the next plausible
/// item after damage.
pub struct RobustUnpacker<F: Fn(&Value) -> bool> {
    keys_serialized: Vec<Vec<u8>>,
    validator: F,
    /// Bytes collected while resyncing (scanned from the start on every attempt).
    buffered: Vec<u8>,
    resyncing: bool,
    /// The normal stream: `stream[pos..]` is not consumed yet.
    stream: Vec<u8>,
    pos: usize,
    /// Where the value [`RobustUnpacker::next_value`] returned last starts in `stream` (it ends
    /// at `pos`).
    last_start: usize,
}

impl<F: Fn(&Value) -> bool> RobustUnpacker<F> {
    /// A reader whose resync looks for maps starting with one of `item_keys` and accepts the
    /// first value `validator` approves.
    pub fn new(validator: F, item_keys: &[String]) -> Self {
        RobustUnpacker {
            keys_serialized: item_keys.iter().map(|k| packed_key(k)).collect(),
            validator,
            buffered: Vec::new(),
            resyncing: false,
            stream: Vec::new(),
            pos: 0,
            last_start: 0,
        }
    }

    /// Forgets everything not read yet and scans the following data for the next item.
    pub fn resync(&mut self) {
        self.buffered.clear();
        self.last_start = self.pos;
        self.resyncing = true;
    }

    /// Appends the next piece of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        if self.resyncing {
            self.buffered.extend_from_slice(data);
        } else {
            if self.pos > 0 {
                self.stream.drain(..self.pos);
                self.pos = 0;
                self.last_start = 0;
            }
            self.stream.extend_from_slice(data);
        }
    }

    /// The next value, `Ok(None)` when more data is needed, or an error for undecodable bytes
    /// (the caller then reports and calls [`RobustUnpacker::resync`]).
    pub fn next_value(&mut self) -> Result<Option<Value>, UnpackError> {
        if self.resyncing {
            let mut start = 0;
            while start < self.buffered.len() {
                let data = &self.buffered[start..];
                if valid_msgpacked_dict(data, &self.keys_serialized) {
                    if let Decoded::Value(v, len) = decode_one(data) {
                        if (self.validator)(&v) {
                            self.stream = data.to_vec();
                            self.last_start = 0;
                            self.pos = len;
                            self.resyncing = false;
                            self.buffered.clear();
                            return Ok(Some(v));
                        }
                    }
                }
                start += 1;
            }
            return Ok(None);
        }
        match decode_one(&self.stream[self.pos..]) {
            Decoded::Value(v, len) => {
                self.last_start = self.pos;
                self.pos += len;
                Ok(Some(v))
            }
            Decoded::Incomplete => Ok(None),
            Decoded::Invalid(e) => Err(UnpackError(e)),
        }
    }

    /// The packed bytes of the value [`RobustUnpacker::next_value`] returned last, as they
    /// stand in the stream: a check that leaves an item alone copies them instead of packing
    /// the item again. Empty before the first value and after the next [`feed`] or [`resync`].
    ///
    /// [`feed`]: RobustUnpacker::feed
    /// [`resync`]: RobustUnpacker::resync
    pub fn last_raw(&self) -> &[u8] {
        if self.resyncing {
            return &[];
        }
        &self.stream[self.last_start.min(self.pos)..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rborg_crypto::msgpack;

    fn item(path: &str) -> Vec<u8> {
        msgpack::pack(&Value::Map(vec![
            (Value::from("path"), Value::from(path)),
            (Value::from("mtime"), Value::from(1)),
        ]))
    }

    fn has_path(v: &Value) -> bool {
        msgpack::map_get(v, "path").is_some()
    }

    fn path_of(v: &Value) -> String {
        String::from_utf8_lossy(msgpack::as_raw(msgpack::map_get(v, "path").unwrap()).unwrap())
            .into_owned()
    }

    #[test]
    fn recognises_packed_item_dicts() {
        let keys = vec![packed_key("path"), packed_key("mtime")];
        assert!(valid_msgpacked_dict(&item("a"), &keys));
        assert!(!valid_msgpacked_dict(&item("a")[1..], &keys));
        assert!(!valid_msgpacked_dict(&[0x81], &keys));
        assert!(!valid_msgpacked_dict(&[], &keys));
        let other = msgpack::pack(&Value::Map(vec![(Value::from("xyz"), Value::from(1))]));
        assert!(!valid_msgpacked_dict(&other, &keys));
    }

    #[test]
    fn resync_skips_to_the_next_item() {
        let keys: Vec<String> = vec!["path".into(), "mtime".into()];
        let mut u = RobustUnpacker::new(has_path, &keys);
        let mut stream = item("one");
        let second = item("two");
        stream.extend_from_slice(&second[..4]);
        u.feed(&stream);
        assert_eq!(path_of(&u.next_value().unwrap().unwrap()), "one");
        assert!(u.next_value().unwrap().is_none());
        // the chunk holding the rest of "two" is lost; the next chunk starts mid-item
        u.resync();
        let mut next = b"garbage\xc1".to_vec();
        next.extend_from_slice(&item("three"));
        next.extend_from_slice(&item("four"));
        u.feed(&next[..5]);
        assert!(u.next_value().unwrap().is_none());
        u.feed(&next[5..]);
        assert_eq!(path_of(&u.next_value().unwrap().unwrap()), "three");
        assert_eq!(u.last_raw(), item("three"));
        assert_eq!(path_of(&u.next_value().unwrap().unwrap()), "four");
        assert_eq!(u.last_raw(), item("four"));
        assert!(u.next_value().unwrap().is_none());
    }

    #[test]
    fn last_raw_is_the_stored_form_of_each_value() {
        let keys: Vec<String> = vec!["path".into()];
        let mut u = RobustUnpacker::new(has_path, &keys);
        assert!(u.last_raw().is_empty());
        let (one, two) = (item("one"), item("two"));
        let mut stream = one.clone();
        stream.extend_from_slice(&two[..3]);
        u.feed(&stream);
        u.next_value().unwrap().unwrap();
        assert_eq!(u.last_raw(), one);
        assert!(u.next_value().unwrap().is_none());
        u.feed(&two[3..]);
        assert!(u.last_raw().is_empty());
        u.next_value().unwrap().unwrap();
        assert_eq!(u.last_raw(), two);
    }

    #[test]
    fn invalid_bytes_are_an_error_not_a_panic() {
        let keys: Vec<String> = vec!["path".into()];
        let mut u = RobustUnpacker::new(has_path, &keys);
        u.feed(&[0xc1, 0x00]);
        assert!(u.next_value().is_err());
    }
}
