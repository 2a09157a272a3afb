//! FastCDC 2020 engine (rborg extension), built on the `fastcdc` crate's `v2020::cut_gear`.
//!
//! Normalization level 1 (the crate's default): mask bits `avg_exp + 1` before the average size,
//! `avg_exp - 1` after it. The gear tables are XOR-ed with the 32-bit chunk seed repeated into
//! both halves of a `u64` (`seed64 = (s << 32) | s`, `s = chunk_seed as u32`); seed 0 gives the
//! crate's stock tables.
//!
//! The scan is the crate's loop rewritten for speed (same cut points, see [`scan_bytes`]):
//! the one-byte form of the hash, four independent chains per block of data, and pre-shifted
//! tables so that each byte costs one load-and-add and one test-and-branch.

use crate::buzhash::Cut;
use crate::params::FastCdcParams;
use fastcdc::v2020::{get_gear_with_seed, MASKS};

#[derive(Clone, Debug)]
pub(crate) struct GearEngine {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    shifted: Box<Shifted>,
    /// `(next pair index, hash)` of a partially scanned chunk (streaming, once more than `min`
    /// bytes were buffered).
    resume: Option<(usize, u64)>,
}

/// The 64-bit gear seed derived from borg's 32-bit chunk seed.
pub fn gear_seed(seed: i32) -> u64 {
    let s = u64::from(seed as u32);
    (s << 32) | s
}

impl GearEngine {
    pub(crate) fn new(p: &FastCdcParams, seed: i32) -> Self {
        // Level 1 normalization, as fastcdc::v2020::FastCDC::new uses.
        let bits = usize::from(p.avg_exp);
        let (gear, _) = get_gear_with_seed(gear_seed(seed));
        GearEngine {
            min: p.min_size(),
            avg: p.avg_size(),
            max: p.max_size(),
            mask_s: MASKS[bits + 1],
            mask_l: MASKS[bits - 1],
            shifted: shifted_tables(&gear),
            gear,
            resume: None,
        }
    }

    pub(crate) fn max_size(&self) -> usize {
        self.max
    }

    pub(crate) fn find(&mut self, d: &[u8], eof: bool) -> Cut {
        let complete = eof || d.len() >= self.max;
        let d = &d[..d.len().min(self.max)];
        if complete && self.resume.is_none() {
            return Cut::At(self.cut(d));
        }
        if !complete && d.len() <= self.min {
            return Cut::NeedMore;
        }
        // Scan what is buffered now and resume after a refill, so each piece is hashed while
        // it is still in cache. This gives the same cut points as `cut` on the whole chunk:
        // with `R` (> `d.len()` > `min`) bytes in the end, the small mask applies below
        // `min(avg, R)`, which covers everything below `min(avg, d.len())`; the large mask
        // applies from `avg` on, which is only reached once `d.len() >= avg`.
        let (g, t) = (&*self.gear, &*self.shifted);
        let (mut index, mut hash) = self.resume.take().unwrap_or((self.min / 2, 0));
        let small_end = self.avg.min(d.len()) / 2;
        if let Some(p) = scan_pairs(d, &mut index, small_end, &mut hash, self.mask_s, g, t) {
            return Cut::At(p);
        }
        if complete || d.len() >= self.avg {
            let end = d.len() / 2;
            if let Some(p) = scan_pairs(d, &mut index, end, &mut hash, self.mask_l, g, t) {
                return Cut::At(p);
            }
        }
        if complete {
            Cut::At(d.len())
        } else {
            self.resume = Some((index, hash));
            Cut::NeedMore
        }
    }

    pub(crate) fn reset(&mut self) {
        self.resume = None;
    }

    /// Same result as `fastcdc::v2020::cut_gear(d, min, avg, max, ...)` (checked against the
    /// crate in tests/api.rs), computed by [`scan_bytes`].
    fn cut(&self, d: &[u8]) -> usize {
        let mut remaining = d.len();
        if remaining <= self.min {
            return remaining;
        }
        let mut center = self.avg;
        if remaining > self.max {
            remaining = self.max;
        } else if remaining < center {
            center = remaining;
        }
        let mut index = self.min / 2;
        let mut hash = 0u64;
        let (g, t) = (&*self.gear, &*self.shifted);
        if let Some(p) = scan_pairs(d, &mut index, center / 2, &mut hash, self.mask_s, g, t) {
            return p;
        }
        if let Some(p) = scan_pairs(d, &mut index, remaining / 2, &mut hash, self.mask_l, g, t) {
            return p;
        }
        remaining
    }
}

/// Gear-hash byte pairs `index .. end` (pair `i` = bytes `2i, 2i+1`), testing the hash after the
/// first byte of a pair against `mask << 1` and after the second against `mask`, like the
/// fastcdc crate. Returns the cut offset, or updates `index`/`hash` and returns `None`.
///
/// The crate's pair form is the one-byte gear hash `H = 2H + gear[b]` in disguise: with
/// `gear_ls = gear << 1`, its hash after the first byte of a pair is `2H` (tested against
/// `mask << 1`, i.e. `H & mask`, as the masks have bit 63 clear) and after the second byte `H`.
/// So this tests `H & mask` after every byte of `2 * index .. 2 * end`.
#[inline(always)]
fn scan_pairs(
    d: &[u8],
    index: &mut usize,
    end: usize,
    hash: &mut u64,
    mask: u64,
    g: &[u64; 256],
    t: &Shifted,
) -> Option<usize> {
    if *index >= end {
        return None;
    }
    let from = 2 * *index;
    match scan_bytes(&d[from..2 * end], *hash, mask, g, t) {
        Err(p) => Some(from + p),
        Ok(h) => {
            *hash = h;
            *index = end;
            None
        }
    }
}

/// `H` after byte `b` from `H` before it.
#[inline(always)]
fn roll(h: u64, b: u8, g: &[u64; 256]) -> u64 {
    (h << 1).wrapping_add(g[usize::from(b)])
}

/// Bytes of history that fully determine `H`: every older byte is shifted out of the 64 bits.
const WINDOW: usize = 64;
/// Bytes per chain in a block of four: long enough that re-hashing [`WINDOW`] bytes per segment
/// costs little (~1.5%), short enough that a match wastes little work past it.
const SEG: usize = 4096;
/// Shortest segment worth the [`WINDOW`] bytes of warm-up.
const MIN_SEG: usize = 4 * WINDOW;

/// Hash `r` starting from `h`, testing `H & mask` after every byte: `Err(p)` for the first
/// match (after byte `p`), `Ok(H)` after all of `r` without one. (`Err` is the rare exit, so
/// `?` can propagate it.)
///
/// `H` after byte `p` only depends on bytes `p - 63 ..= p`. So each block of `4 * SEG` bytes
/// is cut into four segments scanned in lock step, each later segment first re-hashing the
/// [`WINDOW`] bytes before it to start from the exact `H`: four independent dependency chains
/// instead of one serial chain, same results.
fn scan_bytes(r: &[u8], mut h: u64, mask: u64, g: &[u64; 256], t: &Shifted) -> Result<u64, usize> {
    // A match is expected about every `2^bits` bytes. Keep blocks at most 1/8 of that, so the
    // work done past a match (the rest of its block, plus redoing part of it one chain at a
    // time) stays small when chunks are small.
    let seg = ((1usize << mask.count_ones()) / 32).min(SEG) / GROUP * GROUP;
    let mut done = 0;
    if seg >= MIN_SEG {
        let mut blocks = r.chunks_exact(4 * seg);
        for block in &mut blocks {
            h = scan_block(block, seg, h, mask, g, t).map_err(|p| done + p)?;
            done += block.len();
        }
        let tail = blocks.remainder();
        let seg = tail.len() / 4 / GROUP * GROUP;
        if seg >= MIN_SEG {
            h = scan_block(&tail[..4 * seg], seg, h, mask, g, t).map_err(|p| done + p)?;
            done += 4 * seg;
        }
    }
    scan_serial(&r[done..], h, mask, g, t).map_err(|p| done + p)
}

/// Bytes per group in [`scan_block`].
const GROUP: usize = 8;

// `mask << (GROUP - 1)` must keep every mask bit (see `scan_block`).
const _: () = {
    let mut i = 0;
    while i < MASKS.len() {
        assert!(MASKS[i] >> (64 - (GROUP - 1)) == 0);
        i += 1;
    }
};

/// `shifted[s][x] = gear[x] << s` for `s < GROUP`.
pub(crate) type Shifted = [[u64; 256]; GROUP];

pub(crate) fn shifted_tables(g: &[u64; 256]) -> Box<Shifted> {
    let mut t = Box::new([[0u64; 256]; GROUP]);
    for (s, row) in t.iter_mut().enumerate() {
        for (v, &x) in row.iter_mut().zip(g) {
            *v = x << s;
        }
    }
    t
}

/// [`scan_bytes`] on `b` (`4 * seg` bytes, `seg` a multiple of [`GROUP`] and `>= WINDOW`) as
/// four interleaved chains.
///
/// Per group of [`GROUP`] bytes a chain keeps `A = H << (GROUP - 1 - i)` after its byte `i`
/// instead of `H`: `A` starts at `H << GROUP` and each byte adds `gear[x] << (GROUP - 1 - i)`
/// from a pre-shifted table, one load-and-add instead of a shift plus a load-and-add. The test
/// `A & (mask << (GROUP - 1 - i)) == 0` equals `H & mask == 0` because the masks stay below
/// bit 48 (checked at compile time below), so no tested bit is shifted out. At the end of a
/// group `A` is `H` again.
#[inline(always)]
fn scan_block(
    b: &[u8],
    seg: usize,
    h: u64,
    mask: u64,
    g: &[u64; 256],
    t: &Shifted,
) -> Result<u64, usize> {
    // Warm up chains 1..3 on the WINDOW bytes before their segments, side by side.
    let mut hs = [h, 0, 0, 0];
    let before = |k: usize| &b[k * seg - WINDOW..k * seg];
    for ((&x1, &x2), &x3) in before(1).iter().zip(before(2)).zip(before(3)) {
        hs[1] = roll(hs[1], x1, g);
        hs[2] = roll(hs[2], x2, g);
        hs[3] = roll(hs[3], x3, g);
    }
    let ms: [u64; GROUP] = std::array::from_fn(|s| mask << s);
    let (l0, l1, l2, l3) = (
        &b[..seg],
        &b[seg..2 * seg],
        &b[2 * seg..3 * seg],
        &b[3 * seg..4 * seg],
    );
    let groups = l0
        .chunks_exact(GROUP)
        .zip(l1.chunks_exact(GROUP))
        .zip(l2.chunks_exact(GROUP).zip(l3.chunks_exact(GROUP)));
    let mut hit = None;
    'outer: for (q, ((c0, c1), (c2, c3))) in groups.enumerate() {
        let [mut a0, mut a1, mut a2, mut a3] = hs.map(|h| h << GROUP);
        for i in 0..GROUP {
            let s = GROUP - 1 - i;
            a0 = a0.wrapping_add(t[s][usize::from(c0[i])]);
            a1 = a1.wrapping_add(t[s][usize::from(c1[i])]);
            a2 = a2.wrapping_add(t[s][usize::from(c2[i])]);
            a3 = a3.wrapping_add(t[s][usize::from(c3[i])]);
            // Separate tests: each compiles to one fused test-and-branch, rarely taken.
            if a0 & ms[s] == 0 {
                hit = Some(q);
                break 'outer;
            }
            if a1 & ms[s] == 0 {
                hit = Some(q);
                break 'outer;
            }
            if a2 & ms[s] == 0 {
                hit = Some(q);
                break 'outer;
            }
            if a3 & ms[s] == 0 {
                hit = Some(q);
                break 'outer;
            }
        }
        hs = [a0, a1, a2, a3];
    }
    let Some(q) = hit else {
        return Ok(hs[3]);
    };
    // Some chain matched in group `q`: redo that group and the rest of each segment one chain
    // at a time, in order, so the first match wins. `hs` holds `H` at the group's start.
    let mut last = hs[3];
    for (k, &hk) in hs.iter().enumerate() {
        let start = k * seg + q * GROUP;
        last = scan_serial(&b[start..(k + 1) * seg], hk, mask, g, t).map_err(|p| start + p)?;
    }
    Ok(last)
}

/// One chain, for short ranges and to finish segments after a match in [`scan_block`]. Uses
/// the same pre-shifted accumulator as [`scan_block`]: its serial dependency is one add per
/// byte (plus one shift per group) instead of a shift and an add.
fn scan_serial(r: &[u8], mut h: u64, mask: u64, g: &[u64; 256], t: &Shifted) -> Result<u64, usize> {
    let ms: [u64; GROUP] = std::array::from_fn(|s| mask << s);
    let mut groups = r.chunks_exact(GROUP);
    for (q, c) in (&mut groups).enumerate() {
        let mut a = h << GROUP;
        for i in 0..GROUP {
            let s = GROUP - 1 - i;
            a = a.wrapping_add(t[s][usize::from(c[i])]);
            if a & ms[s] == 0 {
                return Err(q * GROUP + i);
            }
        }
        h = a;
    }
    let done = r.len() - groups.remainder().len();
    for (p, &b) in groups.remainder().iter().enumerate() {
        h = roll(h, b, g);
        if h & mask == 0 {
            return Err(done + p);
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's rolling loop, one byte at a time.
    fn naive(r: &[u8], mut h: u64, mask: u64, g: &[u64; 256]) -> Result<u64, usize> {
        for (p, &b) in r.iter().enumerate() {
            h = roll(h, b, g);
            if h & mask == 0 {
                return Err(p);
            }
        }
        Ok(h)
    }

    fn bytes(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn pair_tables_are_one_shift_apart() {
        // scan_pairs relies on gear_ls == gear << 1 (also with a seed).
        for seed in [0, 1, -1, 123_456_789] {
            let (g, gl) = get_gear_with_seed(gear_seed(seed));
            assert!(g.iter().zip(gl.iter()).all(|(&a, &b)| a << 1 == b));
        }
    }

    #[test]
    fn block_scan_equals_naive_scan() {
        let (g, _) = get_gear_with_seed(gear_seed(-42));
        let t = shifted_tables(&g);
        let data = bytes(3 << 20, 7);
        // Sparse masks use the four-chain blocks, dense ones the single chain; resume the scan
        // after each match like the chunker does.
        for bits in [5, 9, 11, 13, 15, 17] {
            let mask = MASKS[bits];
            let (mut pos, mut h, mut matches) = (0, 0x1234_5678_9abc_def0u64, 0);
            while pos < data.len() {
                let r = &data[pos..];
                let want = naive(r, h, mask, &g);
                assert_eq!(scan_bytes(r, h, mask, &g, &t), want, "bits {bits} at {pos}");
                match want {
                    Ok(_) => break,
                    Err(p) => {
                        matches += 1;
                        h = r[..=p].iter().fold(h, |h, &b| roll(h, b, &g));
                        pos += p + 1;
                    }
                }
            }
            assert!(matches > 10, "bits {bits}: {matches} matches");
        }
    }

    #[test]
    fn block_matches_in_every_chain_resolve_to_the_first() {
        let (g, _) = get_gear_with_seed(0);
        let t = shifted_tables(&g);
        let data = bytes(4 * 512, 99);
        // Frequent matches (5 mask bits): every chain matches somewhere in each block.
        for start in (0..512).step_by(8) {
            for seg in [64, 128, 256, 384] {
                let b = &data[start..start + 4 * seg];
                let want = naive(b, 77, MASKS[5], &g);
                assert_eq!(scan_block(b, seg, 77, MASKS[5], &g, &t), want);
                // and a mask that rarely matches: all chains run to the end
                let want = naive(b, 77, MASKS[20], &g);
                assert_eq!(scan_block(b, seg, 77, MASKS[20], &g, &t), want);
            }
        }
    }
}
