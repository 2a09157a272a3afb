//! borg's buzhash rolling hash and content-defined cut rule (borg 1.2.4 `_chunker.c`,
//! `chunker.pyx` class `Chunker`).
//!
//! The hash of a window `w[0..n]` is `XOR_k rotl(T[w[k]], (n-1-k) mod 32)` where
//! `T[b] = TABLE_BASE[b] ^ seed`. Rolling by one byte is
//! `rotl(h, 1) ^ rotl(T[out], n mod 32) ^ T[in]`.
//!
//! Cut rule (derived from `chunker_process`): a chunk starting at `s` with `avail` bytes
//! available up to `min(s + 2^max, EOF)`:
//! * if the input ends within `2^min + window` bytes, the rest of the input is one chunk;
//! * otherwise the first window start `p` in `s + 2^min .. end - window` (exclusive: the window
//!   must be followed by at least one available byte) whose hash has the low `mask_bits` bits
//!   clear ends the chunk at `p` (the chunk does *not* include the window);
//! * if there is none, the chunk ends at `end` (max size or EOF).

use crate::is_all_zero;
use crate::params::BuzhashParams;

/// borg's fixed buzhash base table (`table_base` in `_chunker.c`); the effective table is this
/// XOR-ed with the key's 32-bit chunk seed.
pub const TABLE_BASE: [u32; 256] = [
    0xe7f831ec, 0xf4026465, 0xafb50cae, 0x6d553c7a, 0xd639efe3, 0x19a7b895, 0x9aba5b21, 0x5417d6d4,
    0x35fd2b84, 0xd1f6a159, 0x3f8e323f, 0xb419551c, 0xf444cebf, 0x21dc3b80, 0xde8d1e36, 0x84a32436,
    0xbeb35a9d, 0xa36f24aa, 0xa4e60186, 0x98d18ffe, 0x3f042f9e, 0xdb228bcd, 0x096474b7, 0x5c20c2f7,
    0xf9eec872, 0xe8625275, 0xb9d38f80, 0xd48eb716, 0x22a950b4, 0x3cbaaeaa, 0xc37cddd3, 0x8fea6f6a,
    0x1d55d526, 0x7fd6d3b3, 0xdaa072ee, 0x4345ac40, 0xa077c642, 0x8f2bd45b, 0x28509110, 0x55557613,
    0xffc17311, 0xd961ffef, 0xe532c287, 0xaab95937, 0x46d38365, 0xb065c703, 0xf2d91d0f, 0x92cd4bb0,
    0x4007c712, 0xf35509dd, 0x505b2f69, 0x557ead81, 0x310f4563, 0xbddc5be8, 0x9760f38c, 0x701e0205,
    0x00157244, 0x14912826, 0xdc4ca32b, 0x67b196de, 0x5db292e8, 0x8c1b406b, 0x01f34075, 0xfa2520f7,
    0x73bc37ab, 0x1e18bc30, 0xfe2c6cb3, 0x20c522d0, 0x5639e3db, 0x942bda35, 0x899af9d1, 0xced44035,
    0x98cc025b, 0x255f5771, 0x70fefa24, 0xe928fa4d, 0x2c030405, 0xb9325590, 0x20cb63bd, 0xa166305d,
    0x80e52c0a, 0xa8fafe2f, 0x1ad13f7d, 0xcfaf3685, 0x6c83a199, 0x7d26718a, 0xde5dfcd9, 0x79cf7355,
    0x8979d7fb, 0xebf8c55e, 0xebe408e4, 0xcd2affba, 0xe483be6e, 0xe239d6de, 0x5dc1e9e0, 0x0473931f,
    0x851b097c, 0xac5db249, 0x09c0f9f2, 0xd8d2f134, 0xe6f38e41, 0xb1c71bf1, 0x52b6e4db, 0x07224424,
    0x6cf73e85, 0x4f25d89c, 0x782a7d74, 0x10a68dcd, 0x3a868189, 0xd570d2dc, 0x69630745, 0x9542ed86,
    0x331cd6b2, 0xa84b5b28, 0x07879c9d, 0x38372f64, 0x7185db11, 0x25ba7c83, 0x01061523, 0xe6792f9f,
    0xe5df07d1, 0x4321b47f, 0x7d2469d8, 0x1a3a4f90, 0x48be29a3, 0x669071af, 0x8ec8dd31, 0x0810bfbf,
    0x813a06b4, 0x68538345, 0x65865ddc, 0x43a71b8e, 0x78619a56, 0x5a34451d, 0x5bdaa3ed, 0x71edc7e9,
    0x17ac9a20, 0x78d10bfa, 0x6c1e7f35, 0xd51839d9, 0x240cbc51, 0x33513cc1, 0xd2b4f795, 0xccaa8186,
    0x0babe682, 0xa33cf164, 0x18c643ea, 0xc1ca105f, 0x9959147a, 0x6d3d94de, 0x0b654fbe, 0xed902ca0,
    0x7d835cb5, 0x99ba1509, 0x6445c922, 0x495e76c2, 0xf07194bc, 0xa1631d7e, 0x677076a5, 0x89fffe35,
    0x1a49bcf3, 0x8e6c948a, 0x0144c917, 0x8d93aea1, 0x16f87ddf, 0xc8f25d49, 0x1fb11297, 0x27e750cd,
    0x2f422da1, 0xdee89a77, 0x1534c643, 0x457b7b8b, 0xaf172f7a, 0x6b9b09d6, 0x33573f7f, 0xf14e15c4,
    0x526467d5, 0xaf488241, 0x87c3ee0d, 0x33be490c, 0x95aa6e52, 0x43ec242e, 0xd77de99b, 0xd018334f,
    0x5b78d407, 0x498eb66b, 0xb1279fa8, 0xb38b0ea6, 0x90718376, 0xe325dee2, 0x8e2f2cba, 0xcaa5bdec,
    0x9d652c56, 0xad68f5cb, 0xa77591af, 0x88e37ee8, 0xf8faa221, 0xfcbbbe47, 0x4f407786, 0xaf393889,
    0xf444a1d9, 0x15ae1a2f, 0x40aa7097, 0x6f9486ac, 0x29d232a3, 0xe47609e9, 0xe8b631ff, 0xba8565f4,
    0x11288749, 0x46c9a838, 0xeb1b7cd8, 0xf516bbb1, 0xfb74fda0, 0x010996e6, 0x4c994653, 0x1d889512,
    0x53dcd9a3, 0xdd074697, 0x1e78e17c, 0x637c98bf, 0x930bb219, 0xcf7f75b0, 0xcb9355fb, 0x9e623009,
    0xe466d82c, 0x28f968d3, 0xfeb385d9, 0x238e026c, 0xb8ed0560, 0x0c6a027a, 0x3d6fec4b, 0xbb4b2ec2,
    0xe715031c, 0xeded011d, 0xcdc4d3b9, 0xc456fc96, 0xdd0eea20, 0xb3df8ec9, 0x12351993, 0xd9cbb01c,
    0x603147a2, 0xcf37d17d, 0xf7fcd9dc, 0xd8556fa3, 0x104c8131, 0x13152774, 0xb4715811, 0x6a72c2c9,
    0xc5ae37bb, 0xa76ce12a, 0x8150d8f3, 0x2ec29218, 0xa35f0984, 0x48c0647e, 0x0b5ff98c, 0x71893f7b,
];

/// A seeded buzhash over a fixed window size.
#[derive(Clone, Debug)]
pub struct BuzHash {
    table: [u32; 256],
    /// `table` rotated by `window % 32`: the contribution of the byte leaving the window.
    out_table: [u32; 256],
    window: usize,
}

impl BuzHash {
    /// Table for `seed` (the key's `chunk_seed`, a signed 32-bit int in borg; used as its
    /// two's-complement `u32`, like `seed & 0xffffffff` in `chunker.pyx`) and window size.
    pub fn new(seed: i32, window: usize) -> Self {
        let s = seed as u32;
        let table = TABLE_BASE.map(|v| v ^ s);
        let rot = (window & 0x1f) as u32;
        let out_table = table.map(|v| v.rotate_left(rot));
        BuzHash {
            table,
            out_table,
            window,
        }
    }

    /// The window size this table rolls over.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Hash of `data` taken as one window (borg's `buzhash()`); `data.len()` need not equal the
    /// configured window. Returns 0 for empty input (borg's C code would misbehave there).
    pub fn hash(&self, data: &[u8]) -> u32 {
        let n = data.len();
        data.iter().enumerate().fold(0u32, |sum, (k, &b)| {
            sum ^ self.table[usize::from(b)].rotate_left(((n - 1 - k) & 0x1f) as u32)
        })
    }

    /// Roll the hash of a window of `len` bytes by one byte (borg's `buzhash_update`).
    pub fn update(&self, sum: u32, remove: u8, add: u8, len: usize) -> u32 {
        sum.rotate_left(1)
            ^ self.table[usize::from(remove)].rotate_left((len & 0x1f) as u32)
            ^ self.table[usize::from(add)]
    }

    /// Scan window starts `from .. d.len() - window` (requires `d.len() >= from + window`)
    /// starting with `sum` = hash of the window at `from`. Returns `Ok(p)` for the first window
    /// start whose hash has no bit of `mask` set, or `Err(sum)` with the (unexamined) hash of
    /// the window at `d.len() - window` if there is none.
    #[inline]
    pub(crate) fn scan(
        &self,
        d: &[u8],
        from: usize,
        mut sum: u32,
        mask: u32,
    ) -> Result<usize, u32> {
        let w = self.window;
        let last = d.len() - w;
        let outgoing = &d[from..last];
        let incoming = &d[from + w..];
        let (tab, otab) = (&self.table, &self.out_table);

        // Four bytes per iteration. The hashes at positions q+1..q+4 are computed from the hash
        // at q and per-byte terms that do not depend on it, so the serial dependency is one
        // rotate plus one xor per 4 bytes instead of per byte.
        let mut oc = outgoing.chunks_exact(4);
        let mut ic = incoming.chunks_exact(4);
        let mut q = from;
        for (o, i) in (&mut oc).zip(&mut ic) {
            let x0 = otab[usize::from(o[0])] ^ tab[usize::from(i[0])];
            let x1 = otab[usize::from(o[1])] ^ tab[usize::from(i[1])];
            let x2 = otab[usize::from(o[2])] ^ tab[usize::from(i[2])];
            let x3 = otab[usize::from(o[3])] ^ tab[usize::from(i[3])];
            let y2 = x0.rotate_left(1) ^ x1;
            let y3 = y2.rotate_left(1) ^ x2;
            let y4 = y3.rotate_left(1) ^ x3;
            let s1 = sum.rotate_left(1) ^ x0;
            let s2 = sum.rotate_left(2) ^ y2;
            let s3 = sum.rotate_left(3) ^ y3;
            if (sum & mask == 0) | (s1 & mask == 0) | (s2 & mask == 0) | (s3 & mask == 0) {
                let hit = if sum & mask == 0 {
                    0
                } else if s1 & mask == 0 {
                    1
                } else if s2 & mask == 0 {
                    2
                } else {
                    3
                };
                return Ok(q + hit);
            }
            sum = sum.rotate_left(4) ^ y4;
            q += 4;
        }
        for (&o, &i) in oc.remainder().iter().zip(ic.remainder()) {
            if sum & mask == 0 {
                return Ok(q);
            }
            sum = sum.rotate_left(1) ^ otab[usize::from(o)] ^ tab[usize::from(i)];
            q += 1;
        }
        debug_assert_eq!(q, last);
        // The window at `last` is not examined: borg only tests a window while the byte after
        // it is buffered (it needs that byte to roll on).
        Err(sum)
    }
}

/// Outcome of asking an engine for the end of the chunk that starts at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The chunk is the first `n` bytes (0 only for an empty buffer at EOF).
    At(usize),
    /// More input is needed to decide.
    NeedMore,
}

/// Resumable buzhash cut finder (state survives `NeedMore` so refills do not rescan).
#[derive(Clone, Debug)]
pub(crate) struct BuzEngine {
    hash: BuzHash,
    /// Hash of a window of zero bytes (see [`BuzEngine::skip_zero_run`]).
    zero_window: u32,
    mask: u32,
    min: usize,
    max: usize,
    /// `(next window start to examine, its hash)` for the chunk in progress.
    resume: Option<(usize, u32)>,
}

impl BuzEngine {
    pub(crate) fn new(p: &BuzhashParams, seed: i32) -> Self {
        let hash = BuzHash::new(seed, p.window_size as usize);
        BuzEngine {
            zero_window: hash.hash(&vec![0; hash.window]),
            hash,
            mask: p.mask(),
            min: p.min_size(),
            max: p.max_size(),
            resume: None,
        }
    }

    pub(crate) fn max_size(&self) -> usize {
        self.max
    }

    /// `d` starts at the chunk start; `eof` says no bytes follow `d`.
    pub(crate) fn find(&mut self, d: &[u8], eof: bool) -> Cut {
        let d = &d[..d.len().min(self.max)];
        let complete = eof || d.len() == self.max;
        let w = self.hash.window;
        if d.len() <= self.min + w {
            // borg only starts hashing once min_size + window + 1 bytes are buffered.
            return if eof {
                self.resume = None;
                Cut::At(d.len())
            } else {
                Cut::NeedMore
            };
        }
        let (from, sum) = match self.resume {
            Some(state) => state,
            None => (self.min, self.hash.hash(&d[self.min..self.min + w])),
        };
        let from = self.skip_zero_run(d, from, sum);
        match self.hash.scan(d, from, sum, self.mask) {
            Ok(p) => {
                self.resume = None;
                Cut::At(p)
            }
            Err(_) if complete => {
                self.resume = None;
                Cut::At(d.len())
            }
            Err(sum) => {
                self.resume = Some((d.len() - w, sum));
                Cut::NeedMore
            }
        }
    }

    pub(crate) fn reset(&mut self) {
        self.resume = None;
    }

    /// Where scanning may resume when the window at `from` (hash `sum`) lies in a run of zero
    /// bytes: every window inside the run has that same hash, so if it is no cut, none of them
    /// is, and the scan can go on from the last window before the first non-zero byte (or the
    /// end of `d`), with the hash unchanged. Sparse files and zeroed regions of disk images
    /// (the 256 MiB `sparse.img` of the benchmark dataset) otherwise cost a full buzhash pass.
    /// The cut points are the same either way (`live_borg::random_inputs_match_borg` chunks
    /// zero runs against borg).
    fn skip_zero_run(&self, d: &[u8], from: usize, sum: u32) -> usize {
        let w = self.hash.window;
        if sum != self.zero_window || sum & self.mask == 0 || !is_all_zero(&d[from..from + w]) {
            return from;
        }
        let after = &d[from + w..];
        from + zero_prefix_len(after)
    }
}

/// How many bytes at the start of `d` are zero: 32 bytes at a time (which the compiler turns
/// into vector compares), then byte by byte.
fn zero_prefix_len(d: &[u8]) -> usize {
    let blocks = d.chunks_exact(32);
    let mut n = 0;
    for block in blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            break;
        }
        n += 32;
    }
    n + d[n..].iter().take_while(|&&b| b == 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The cut rule of the module docs, one window hash at a time.
    fn reference_cut(h: &BuzHash, p: &BuzhashParams, d: &[u8]) -> usize {
        let (w, min) = (h.window(), p.min_size());
        let end = d.len().min(p.max_size());
        if end <= min + w {
            return end;
        }
        (min..end - w)
            .find(|&q| h.hash(&d[q..q + w]) & p.mask() == 0)
            .unwrap_or(end)
    }

    /// Skipping zero runs cuts where hashing every window does: runs at chunk starts, in the
    /// middle, at the end, shorter and longer than the window, and a seed whose zero-window
    /// hash is itself a cut.
    #[test]
    fn zero_runs_cut_as_every_window_would() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for round in 0..60 {
            let p = BuzhashParams {
                min_exp: 8,
                max_exp: 14,
                mask_bits: rng.gen_range(1..=10),
                window_size: rng.gen_range(1..=300),
            };
            let seed: i32 = rng.gen();
            let mut d = vec![0u8; 60_000];
            let mut pos = 0;
            while pos < d.len() {
                let run = rng.gen_range(1..9_000).min(d.len() - pos);
                if rng.gen_bool(0.5) {
                    rng.fill(&mut d[pos..pos + run]);
                }
                pos += run;
            }
            let mut engine = BuzEngine::new(&p, seed);
            let h = BuzHash::new(seed, p.window_size as usize);
            let mut start = 0;
            while start < d.len() {
                let want = reference_cut(&h, &p, &d[start..]);
                assert_eq!(
                    engine.find(&d[start..], true),
                    Cut::At(want),
                    "round {round} at {start}"
                );
                start += want;
            }
        }
    }
}
