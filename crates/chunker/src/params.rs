//! Chunker parameter specs (`--chunker-params`), as parsed by borg 1.2.4's
//! `borg.helpers.parseformat.ChunkerParams` and stored in an archive's `chunker_params` metadata.
//!
//! Accepted spec strings (case-insensitive algorithm name, surrounding whitespace ignored):
//!
//! | spec | meaning |
//! |---|---|
//! | `default` | `buzhash,19,23,21,4095` ([`ChunkerParams::DEFAULT`]) |
//! | `buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW` | borg's content-defined chunker |
//! | `MIN_EXP,MAX_EXP,MASK_BITS,WINDOW` | legacy (borg < 1.2) form, means buzhash |
//! | `fixed,BLOCK_SIZE[,HEADER_SIZE]` | fixed-size blocks, optional header block |
//! | `fastcdc,MIN_EXP,AVG_EXP,MAX_EXP` | rborg extension: FastCDC 2020 (not understood by borg) |

use std::fmt;
use std::str::FromStr;

/// borg's `MAX_DATA_SIZE` (constants.py): the largest payload a repository object may carry
/// (20 MiB minus the 41-byte PUT header). Fixed block and header sizes must not exceed it.
pub const MAX_DATA_SIZE: u32 = 20_971_479;

/// borg's `HASH_WINDOW_SIZE` (constants.py): 4095 bytes, deliberately not a multiple of 32 so that
/// the seed does not cancel out of the buzhash (see the comment at the top of borg's `_chunker.c`).
pub const HASH_WINDOW_SIZE: u32 = 0xfff;

/// Smallest allowed size exponent (2^6 = 64 B), the same floor borg uses for buzhash minimums.
pub const MIN_EXP_FLOOR: u8 = 6;
/// Largest allowed size exponent (2^23 = 8 MiB), borg's cap on the maximum chunk size.
pub const MAX_EXP_CEILING: u8 = 23;

/// Parameters of borg's buzhash content-defined chunker (`buzhash,MIN,MAX,MASK,WINDOW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BuzhashParams {
    /// `CHUNK_MIN_EXP`: chunks are at least `2^min_exp` bytes (except the last one).
    pub min_exp: u8,
    /// `CHUNK_MAX_EXP`: chunks are at most `2^max_exp` bytes.
    pub max_exp: u8,
    /// `HASH_MASK_BITS`: a cut happens where the low `mask_bits` bits of the rolling hash are 0,
    /// giving chunks of about `2^mask_bits` bytes.
    pub mask_bits: u8,
    /// `HASH_WINDOW_SIZE`: bytes covered by the rolling hash.
    pub window_size: u32,
}

impl BuzhashParams {
    /// Minimum chunk size in bytes.
    pub fn min_size(&self) -> usize {
        1usize << self.min_exp
    }
    /// Maximum chunk size in bytes.
    pub fn max_size(&self) -> usize {
        1usize << self.max_exp
    }
    /// The cut mask `(1 << mask_bits) - 1`.
    pub fn mask(&self) -> u32 {
        (1u32 << self.mask_bits) - 1
    }
}

/// Parameters of borg's fixed-size chunker (`fixed,BLOCK_SIZE[,HEADER_SIZE]`, `ChunkerFixed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedParams {
    /// Size of every block (the last block of a range may be shorter).
    pub block_size: u32,
    /// Size of a leading header block (0: none). A header larger than `block_size` is itself cut
    /// into `block_size` pieces, exactly as borg does.
    pub header_size: u32,
}

/// Parameters of the FastCDC 2020 chunker (rborg extension, `fastcdc,MIN_EXP,AVG_EXP,MAX_EXP`).
///
/// Uses the `fastcdc` crate's `v2020` cut function with normalization level 1; the gear table is
/// XOR-ed with the key's chunk seed (see [`crate::Chunker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FastCdcParams {
    /// Minimum chunk size exponent (6..=20).
    pub min_exp: u8,
    /// Average (target) chunk size exponent (8..=22).
    pub avg_exp: u8,
    /// Maximum chunk size exponent (10..=23).
    pub max_exp: u8,
}

impl FastCdcParams {
    /// Minimum chunk size in bytes.
    pub fn min_size(&self) -> usize {
        1usize << self.min_exp
    }
    /// Average chunk size in bytes.
    pub fn avg_size(&self) -> usize {
        1usize << self.avg_exp
    }
    /// Maximum chunk size in bytes.
    pub fn max_size(&self) -> usize {
        1usize << self.max_exp
    }
}

/// A validated chunker configuration: what `--chunker-params` parses to and what an archive's
/// `chunker_params` metadata tuple describes.
///
/// `Display` prints the full normalized tuple (`buzhash,19,23,21,4095`, `fixed,4096,0`,
/// `fastcdc,19,21,23`), which `FromStr` parses back to the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkerParams {
    /// borg's buzhash content-defined chunker.
    Buzhash(BuzhashParams),
    /// borg's fixed-size chunker.
    Fixed(FixedParams),
    /// FastCDC 2020 (rborg only).
    FastCdc(FastCdcParams),
}

/// Why a chunker spec was rejected. Messages match borg 1.2.4's `ValueError`s where borg has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A field is not a (Python-`int()`-style) decimal integer.
    #[error("invalid literal for int() with base 10: '{0}'")]
    InvalidInteger(String),
    /// `fixed` block size below 64 bytes.
    #[error("block_size must not be less than 64 Bytes")]
    BlockSizeTooSmall,
    /// `fixed` block or header size above [`MAX_DATA_SIZE`].
    #[error("block_size and header_size must not exceed MAX_DATA_SIZE [{MAX_DATA_SIZE}]")]
    SizeTooLarge,
    /// Negative `fixed` header size. borg 1.2.4 accepts it (and then treats it as "no header");
    /// rborg rejects it so that the stored tuple always means what it says.
    #[error("header_size must not be negative")]
    NegativeHeaderSize,
    /// buzhash: not `chunk_min <= chunk_mask <= chunk_max`.
    #[error("required: chunk_min <= chunk_mask <= chunk_max")]
    MaskNotBetweenMinAndMax,
    /// buzhash: minimum exponent below 6.
    #[error("min. chunk size exponent must not be less than 6 (2^6 = 64B min. chunk size)")]
    MinExpTooSmall,
    /// buzhash: maximum exponent above 23.
    #[error("max. chunk size exponent must not be more than 23 (2^23 = 8MiB max. chunk size)")]
    MaxExpTooLarge,
    /// buzhash: `window + 2^min + 1 > 2^max`. borg's parser accepts this but its `Chunker`
    /// constructor then fails with `AssertionError: too small max_size`.
    #[error("too small max_size (required: window_size + 2^chunk_min + 1 <= 2^chunk_max)")]
    MaxSizeTooSmall,
    /// buzhash: window size below 1. borg's parser accepts it, its C chunker would then read
    /// out of bounds; rborg rejects it.
    #[error("hash window size must be at least 1")]
    WindowTooSmall,
    /// fastcdc: exponents out of range or not ordered.
    #[error("fastcdc: required 6 <= min_exp <= 20, 8 <= avg_exp <= 22, 10 <= max_exp <= 23 and min_exp <= avg_exp <= max_exp")]
    FastCdcOutOfRange,
    /// An algorithm name in archive metadata that is neither buzhash, fixed nor fastcdc.
    #[error("unknown chunker algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// Anything else (wrong field count, unknown algorithm in a spec string).
    #[error("invalid chunker params")]
    Invalid,
}

/// Parse an integer the way Python's `int(str)` does for ASCII input: surrounding whitespace,
/// an optional sign, decimal digits with single `_` separators between digits.
fn py_int(field: &str) -> Result<i64, ParamsError> {
    let err = || ParamsError::InvalidInteger(field.to_string());
    let s = field.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(err());
    }
    let mut value: i64 = 0;
    for b in digits.bytes() {
        match b {
            b'_' => continue,
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i64::from(b - b'0')))
                    .ok_or_else(err)?;
            }
            _ => return Err(err()),
        }
    }
    Ok(if neg { -value } else { value })
}

impl ChunkerParams {
    /// borg's `CHUNKER_PARAMS` default for file contents: `buzhash,19,23,21,4095`
    /// (512 KiB min, 8 MiB max, ~2 MiB average).
    pub const DEFAULT: ChunkerParams = ChunkerParams::Buzhash(BuzhashParams {
        min_exp: 19,
        max_exp: 23,
        mask_bits: 21,
        window_size: HASH_WINDOW_SIZE,
    });

    /// borg's `ITEMS_CHUNKER_PARAMS` for the archive item-metadata stream: `buzhash,15,19,17,4095`.
    pub const ITEMS: ChunkerParams = ChunkerParams::Buzhash(BuzhashParams {
        min_exp: 15,
        max_exp: 19,
        mask_bits: 17,
        window_size: HASH_WINDOW_SIZE,
    });

    /// Algorithm name as stored in the first element of the metadata tuple.
    pub fn algorithm(&self) -> &'static str {
        match self {
            ChunkerParams::Buzhash(_) => "buzhash",
            ChunkerParams::Fixed(_) => "fixed",
            ChunkerParams::FastCdc(_) => "fastcdc",
        }
    }

    /// The numeric elements of the metadata tuple (after the algorithm name).
    pub fn numbers(&self) -> Vec<i64> {
        match *self {
            ChunkerParams::Buzhash(p) => vec![
                p.min_exp.into(),
                p.max_exp.into(),
                p.mask_bits.into(),
                p.window_size.into(),
            ],
            ChunkerParams::Fixed(p) => vec![p.block_size.into(), p.header_size.into()],
            ChunkerParams::FastCdc(p) => vec![p.min_exp.into(), p.avg_exp.into(), p.max_exp.into()],
        }
    }

    /// The largest chunk this configuration can produce (buffer sizing).
    pub fn max_chunk_size(&self) -> usize {
        match self {
            ChunkerParams::Buzhash(p) => p.max_size(),
            ChunkerParams::Fixed(p) => p.block_size.max(p.header_size) as usize,
            ChunkerParams::FastCdc(p) => p.max_size(),
        }
    }

    /// Build from an archive's `chunker_params` metadata tuple, like borg's
    /// `normalize_chunker_params` (helpers/misc.py): `algo` is `None` for the pre-1.2 4-tuple
    /// `(min, max, mask, window)`, which means buzhash. Unknown algorithms are an error
    /// (borg 1.2.4 fails an assertion there).
    pub fn from_parts(algo: Option<&str>, numbers: &[i64]) -> Result<Self, ParamsError> {
        match (algo, numbers) {
            (None, [min, max, mask, window]) | (Some("buzhash"), [min, max, mask, window]) => {
                Self::buzhash_checked(*min, *max, *mask, *window)
            }
            (Some("fixed"), [block]) => Self::fixed_checked(*block, 0),
            (Some("fixed"), [block, header]) => Self::fixed_checked(*block, *header),
            (Some("fastcdc"), [min, avg, max]) => Self::fastcdc_checked(*min, *avg, *max),
            (Some(a), _) if !matches!(a, "buzhash" | "fixed" | "fastcdc") => {
                Err(ParamsError::UnknownAlgorithm(a.to_string()))
            }
            _ => Err(ParamsError::Invalid),
        }
    }

    fn fixed_checked(block: i64, header: i64) -> Result<Self, ParamsError> {
        if block < 64 {
            return Err(ParamsError::BlockSizeTooSmall);
        }
        let max = i64::from(MAX_DATA_SIZE);
        if block > max || header > max {
            return Err(ParamsError::SizeTooLarge);
        }
        if header < 0 {
            return Err(ParamsError::NegativeHeaderSize);
        }
        // Both are now within 0..=MAX_DATA_SIZE, so the conversions cannot fail.
        Ok(ChunkerParams::Fixed(FixedParams {
            block_size: u32::try_from(block).map_err(|_| ParamsError::SizeTooLarge)?,
            header_size: u32::try_from(header).map_err(|_| ParamsError::SizeTooLarge)?,
        }))
    }

    fn buzhash_checked(min: i64, max: i64, mask: i64, window: i64) -> Result<Self, ParamsError> {
        if !(min <= mask && mask <= max) {
            return Err(ParamsError::MaskNotBetweenMinAndMax);
        }
        if min < i64::from(MIN_EXP_FLOOR) {
            return Err(ParamsError::MinExpTooSmall);
        }
        if max > i64::from(MAX_EXP_CEILING) {
            return Err(ParamsError::MaxExpTooLarge);
        }
        if window < 1 {
            return Err(ParamsError::WindowTooSmall);
        }
        // Here 6 <= min <= mask <= max <= 23.
        if window + (1i64 << min) + 1 > (1i64 << max) {
            return Err(ParamsError::MaxSizeTooSmall);
        }
        Ok(ChunkerParams::Buzhash(BuzhashParams {
            min_exp: min as u8,
            max_exp: max as u8,
            mask_bits: mask as u8,
            window_size: window as u32,
        }))
    }

    fn fastcdc_checked(min: i64, avg: i64, max: i64) -> Result<Self, ParamsError> {
        let ok = (6..=20).contains(&min)
            && (8..=22).contains(&avg)
            && (10..=i64::from(MAX_EXP_CEILING)).contains(&max)
            && min <= avg
            && avg <= max;
        if !ok {
            return Err(ParamsError::FastCdcOutOfRange);
        }
        Ok(ChunkerParams::FastCdc(FastCdcParams {
            min_exp: min as u8,
            avg_exp: avg as u8,
            max_exp: max as u8,
        }))
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams::DEFAULT
    }
}

impl FromStr for ChunkerParams {
    type Err = ParamsError;

    /// Parse a `--chunker-params` spec, following borg 1.2.4's `ChunkerParams()` control flow
    /// (including its quirk that *any* 4-field spec is the legacy buzhash form), plus the
    /// `fastcdc,MIN_EXP,AVG_EXP,MAX_EXP` extension.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = s.trim().split(',').collect();
        let count = fields.len();
        let algo = fields[0].to_lowercase();
        if algo == "fixed" && (2..=3).contains(&count) {
            let block = py_int(fields[1])?;
            let header = if count == 3 { py_int(fields[2])? } else { 0 };
            return Self::fixed_checked(block, header);
        }
        if algo == "default" && count == 1 {
            return Ok(ChunkerParams::DEFAULT);
        }
        if algo == "fastcdc" && count == 4 {
            let min = py_int(fields[1])?;
            let avg = py_int(fields[2])?;
            let max = py_int(fields[3])?;
            return Self::fastcdc_checked(min, avg, max);
        }
        if (algo == "buzhash" && count == 5) || count == 4 {
            let mut n = [0i64; 4];
            for (slot, field) in n.iter_mut().zip(&fields[count - 4..]) {
                *slot = py_int(field)?;
            }
            return Self::buzhash_checked(n[0], n[1], n[2], n[3]);
        }
        Err(ParamsError::Invalid)
    }
}

impl fmt::Display for ChunkerParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm())?;
        for n in self.numbers() {
            write!(f, ",{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_rules() {
        assert_eq!(py_int(" 42 "), Ok(42));
        assert_eq!(py_int("+7"), Ok(7));
        assert_eq!(py_int("-7"), Ok(-7));
        assert_eq!(py_int("4_096"), Ok(4096));
        assert_eq!(py_int("007"), Ok(7));
        for bad in [
            "",
            " ",
            "_1",
            "1_",
            "1__0",
            "0x10",
            "1.0",
            "--1",
            "99999999999999999999",
        ] {
            assert!(py_int(bad).is_err(), "{bad:?}");
        }
    }
}
