//! `--compression` spec strings, parsed and validated exactly like borg 1.2.4's
//! `CompressionSpec` (`src/borg/compress.pyx`).

use std::fmt;
use std::str::FromStr;

use crate::error::SpecError;

/// Declares a validated compression-level newtype.
macro_rules! level_type {
    ($(#[$meta:meta])* $name:ident, $algo:literal, $min:literal, $max:literal, $default:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u8);

        impl $name {
            /// Smallest level borg accepts for this algorithm.
            pub const MIN: u8 = $min;
            /// Largest level borg accepts for this algorithm.
            pub const MAX: u8 = $max;
            /// Level borg uses when the spec gives none.
            pub const DEFAULT: Self = Self($default);

            /// Validates `level` against borg's range for this algorithm.
            pub fn new(level: i64) -> Result<Self, SpecError> {
                if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&level) {
                    // In range, so the narrowing cannot truncate.
                    Ok(Self(level as u8))
                } else {
                    Err(SpecError::LevelOutOfRange {
                        algorithm: $algo,
                        level,
                        min: i64::from(Self::MIN),
                        max: i64::from(Self::MAX),
                    })
                }
            }

            /// The numeric level.
            pub fn get(self) -> u8 {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::DEFAULT
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

level_type!(
    /// zstd level, 1..=22, default 3 (borg: "default compression level in zstd").
    ZstdLevel, "zstd", 1, 22, 3
);
level_type!(
    /// zlib level, 0..=9, default 6 (borg: "default compression level in py stdlib").
    ZlibLevel, "zlib", 0, 9, 6
);
level_type!(
    /// lzma (xz) preset, 0..=9, default 6.
    LzmaLevel, "lzma", 0, 9, 6
);

/// The SPEC of `obfuscate,SPEC,C[,L]`: either relative random reciprocal size
/// variation (1..=6) or random padding up to `2**(SPEC-100)` bytes (110..=123).
///
/// borg 1.2.4 `ObfuscateSize.__init__`; see also `borg help compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObfuscateLevel(u8);

impl ObfuscateLevel {
    /// Validates `level`: borg accepts `1..=6` and `110..=123`.
    pub fn new(level: i64) -> Result<Self, SpecError> {
        if (1..=6).contains(&level) || (110..=123).contains(&level) {
            Ok(Self(level as u8))
        } else {
            Err(SpecError::ObfuscateLevelOutOfRange { level })
        }
    }

    /// The numeric SPEC value.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for ObfuscateLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A parsed `--compression` spec (borg 1.2.4 `CompressionSpec`).
///
/// Parse with [`str::parse`] / [`CompressionSpec::from_str`]. [`fmt::Display`]
/// writes the shortest canonical spec (default levels omitted, e.g. `zstd` for
/// `zstd,3`), so every value produced by parsing displays as a string that parses
/// back to the same value. (Hand-built nestings that borg's comma counting cannot
/// express, such as `Auto(Auto(Zstd(10)))`, display as strings borg rejects.)
/// Build a [`crate::Compressor`] from it with [`CompressionSpec::compressor`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompressionSpec {
    /// `none`: store as is, behind the `00 00` header.
    None,
    /// `lz4`: raw LZ4 block behind `01 00` (falls back to `none` if not smaller).
    Lz4,
    /// `zstd[,L]`: one zstd frame behind `03 00` (falls back to `none` if not smaller).
    Zstd(ZstdLevel),
    /// `zlib[,L]`: a bare zlib stream, no borg header (detected by the zlib header).
    Zlib(ZlibLevel),
    /// `lzma[,L]`: an .xz stream without integrity check behind `02 00`
    /// (falls back to `none` if not smaller).
    Lzma(LzmaLevel),
    /// `auto,C[,L]`: lz4 trial decides between `none`, `lz4` and `C`.
    Auto(Box<CompressionSpec>),
    /// `obfuscate,SPEC,C[,L]`: compress with `C`, then pad (header `04 00`).
    Obfuscate(ObfuscateLevel, Box<CompressionSpec>),
}

impl Default for CompressionSpec {
    /// borg's default `--compression` is `lz4`.
    fn default() -> Self {
        CompressionSpec::Lz4
    }
}

/// Parses an integer the way Python's `int(str)` does for ASCII input:
/// surrounding whitespace, an optional sign, digits with single `_` separators.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b' || c == '\x0c');
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for c in digits.bytes() {
        match c {
            b'_' => {}
            b'0'..=b'9' => {
                // Saturate: anything this large is out of every range anyway.
                value = value.saturating_mul(10).saturating_add(i64::from(c - b'0'));
            }
            _ => return None,
        }
    }
    Some(if neg { -value } else { value })
}

fn parse_level(algorithm: &'static str, s: &str) -> Result<i64, SpecError> {
    python_int(s).ok_or_else(|| SpecError::InvalidLevel {
        algorithm,
        value: s.to_owned(),
    })
}

impl CompressionSpec {
    /// Parses from the comma-separated values, mirroring `CompressionSpec.__init__`.
    fn from_values(values: &[&str]) -> Result<Self, SpecError> {
        let count = values.len();
        let name = values.first().copied().unwrap_or("");
        match name {
            // borg returns early for these and ignores any further values
            // (`lz4,5` is accepted as `lz4`).
            "none" => Ok(CompressionSpec::None),
            "lz4" => Ok(CompressionSpec::Lz4),
            "zlib" | "lzma" | "zstd" => {
                let algorithm: &'static str = match name {
                    "zlib" => "zlib",
                    "lzma" => "lzma",
                    _ => "zstd",
                };
                let level = match count {
                    1 => None,
                    2 => Some(parse_level(algorithm, values[1])?),
                    _ => return Err(SpecError::WrongArgumentCount { algorithm, count }),
                };
                Ok(match algorithm {
                    "zlib" => {
                        CompressionSpec::Zlib(level.map_or(Ok(ZlibLevel::DEFAULT), ZlibLevel::new)?)
                    }
                    "lzma" => {
                        CompressionSpec::Lzma(level.map_or(Ok(LzmaLevel::DEFAULT), LzmaLevel::new)?)
                    }
                    _ => {
                        CompressionSpec::Zstd(level.map_or(Ok(ZstdLevel::DEFAULT), ZstdLevel::new)?)
                    }
                })
            }
            "auto" => {
                if !(2..=3).contains(&count) {
                    return Err(SpecError::WrongArgumentCount {
                        algorithm: "auto",
                        count,
                    });
                }
                let inner = Self::from_values(&values[1..])?;
                Ok(CompressionSpec::Auto(Box::new(inner)))
            }
            "obfuscate" => {
                if !(3..=5).contains(&count) {
                    return Err(SpecError::WrongArgumentCount {
                        algorithm: "obfuscate",
                        count,
                    });
                }
                let level = ObfuscateLevel::new(parse_level("obfuscate", values[1])?)?;
                let inner = Self::from_values(&values[2..])?;
                Ok(CompressionSpec::Obfuscate(level, Box::new(inner)))
            }
            other => Err(SpecError::UnknownAlgorithm(other.to_owned())),
        }
    }

    /// Builds the compressor for this spec (borg: `CompressionSpec.compressor`).
    pub fn compressor(&self) -> crate::Compressor {
        crate::Compressor::new(self.clone())
    }

    /// The algorithm name as borg spells it (`none`, `lz4`, `zstd`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            CompressionSpec::None => "none",
            CompressionSpec::Lz4 => "lz4",
            CompressionSpec::Zstd(_) => "zstd",
            CompressionSpec::Zlib(_) => "zlib",
            CompressionSpec::Lzma(_) => "lzma",
            CompressionSpec::Auto(_) => "auto",
            CompressionSpec::Obfuscate(..) => "obfuscate",
        }
    }
}

impl FromStr for CompressionSpec {
    type Err = SpecError;

    /// Parses `none`, `lz4`, `zstd[,L]`, `zlib[,L]`, `lzma[,L]`, `auto,C[,L]`,
    /// `obfuscate,SPEC,C[,L]` with borg 1.2.4's exact acceptance rules
    /// (including its quirks: `lz4,anything` is `lz4`; `auto,auto,lz4` and
    /// `obfuscate,1,obfuscate,2,none` nest).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let values: Vec<&str> = s.split(',').collect();
        Self::from_values(&values)
    }
}

impl fmt::Display for CompressionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionSpec::None => f.write_str("none"),
            CompressionSpec::Lz4 => f.write_str("lz4"),
            CompressionSpec::Zstd(l) if *l == ZstdLevel::DEFAULT => f.write_str("zstd"),
            CompressionSpec::Zlib(l) if *l == ZlibLevel::DEFAULT => f.write_str("zlib"),
            CompressionSpec::Lzma(l) if *l == LzmaLevel::DEFAULT => f.write_str("lzma"),
            CompressionSpec::Zstd(l) => write!(f, "zstd,{l}"),
            CompressionSpec::Zlib(l) => write!(f, "zlib,{l}"),
            CompressionSpec::Lzma(l) => write!(f, "lzma,{l}"),
            CompressionSpec::Auto(inner) => write!(f, "auto,{inner}"),
            CompressionSpec::Obfuscate(l, inner) => write!(f, "obfuscate,{l},{inner}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_rules() {
        assert_eq!(python_int("5"), Some(5));
        assert_eq!(python_int(" 5\t"), Some(5));
        assert_eq!(python_int("+5"), Some(5));
        assert_eq!(python_int("-0"), Some(0));
        assert_eq!(python_int("007"), Some(7));
        assert_eq!(python_int("1_0"), Some(10));
        for bad in [
            "", " ", "+", "-", "_1", "1_", "1__0", "5.0", "0x5", "five", "1 0",
        ] {
            assert_eq!(python_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_say_why() {
        let e = |s: &str| s.parse::<CompressionSpec>().unwrap_err();
        assert_eq!(e(""), SpecError::UnknownAlgorithm(String::new()));
        assert_eq!(e("brotli"), SpecError::UnknownAlgorithm("brotli".into()));
        assert_eq!(
            e("zstd,23"),
            SpecError::LevelOutOfRange {
                algorithm: "zstd",
                level: 23,
                min: 1,
                max: 22
            }
        );
        assert_eq!(
            e("zlib,x"),
            SpecError::InvalidLevel {
                algorithm: "zlib",
                value: "x".into()
            }
        );
        assert_eq!(
            e("lzma,1,2"),
            SpecError::WrongArgumentCount {
                algorithm: "lzma",
                count: 3
            }
        );
        assert_eq!(
            e("auto,zstd,3,1"),
            SpecError::WrongArgumentCount {
                algorithm: "auto",
                count: 4
            }
        );
        assert_eq!(
            e("obfuscate,7,lz4"),
            SpecError::ObfuscateLevelOutOfRange { level: 7 }
        );
    }

    #[test]
    fn display_is_minimal_and_reparses() {
        for (input, shown) in [
            ("zstd,3", "zstd"),
            ("zstd,10", "zstd,10"),
            ("lz4,9", "lz4"),
            ("auto,zlib", "auto,zlib"),
            ("auto,auto,zstd", "auto,auto,zstd"),
            ("obfuscate,110,lzma,9", "obfuscate,110,lzma,9"),
            ("obfuscate,1,auto,auto,lz4", "obfuscate,1,auto,auto,lz4"),
        ] {
            let spec: CompressionSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), shown);
            assert_eq!(shown.parse::<CompressionSpec>().unwrap(), spec);
        }
    }
}
