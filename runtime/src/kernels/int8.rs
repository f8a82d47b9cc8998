//! Products with int8 weights: the runtime's one int8 arithmetic, the same on every ISA.
//!
//! `Y = X · Wᵀ` where row `o` of `W` is `s_w[o] · w[o][..]` (int8 values, one f32 scale per
//! row, as the blob stores them):
//! 1. each activation row is quantised on the fly with one scale: `m = max |x|` (NaN ignored),
//!    `s_x = m / 127`, `q = round_ties_even(x · (127 / m))` clamped to ±127 (0 for a zero
//!    row and for a NaN);
//! 2. `S = Σ q · w`, summed exactly: each term is at most `127 · 128` in magnitude, so `i32`
//!    partial sums of up to [`MAX_EXACT_K`] terms cannot overflow;
//! 3. `y = (s_x · s_w) · f32(S)`, the conversion rounding to nearest even.
//!
//! Steps 1 and 3 are written once, here, in portable Rust, for every ISA; step 2 is an exact
//! integer, so an ISA's micro-kernel (an [`Int8Tile`]: AVX-512 VNNI, AVX2, the Cortex-M DSP
//! extension, or the portable one below) cannot change a single bit of the result. The loops
//! around the tiles (row groups packed on the stack, tiles of `MR × NR`, the `k` chunks, the
//! edges) are this file's too. Rows longer than [`MAX_EXACT_K`] (no real model has them; the
//! header allows 2^18) take a slow loop with `i64` sums: the same integers, the same bits.

use super::Dims;

/// The longest row whose sums fit an `i32`: `127 · 128 · 131,072 < 2^31`.
pub const MAX_EXACT_K: usize = 131_072;

/// Bytes of the stack buffer that holds the packed activation rows of one group: a few cache
/// lines' worth of rows on a host (the weights are read once per group), 1 KiB on a
/// microcontroller (whose products have a row or two).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const PACK_BYTES: usize = 64 * 1024;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const PACK_BYTES: usize = 1024;

/// Values of `k` packed per step of the tiles: rows are zero-padded to a multiple of it.
pub const K_STEP: usize = 64;

/// One ISA's micro-kernel: the exact integer sums of an `MR × NR` tile of the product.
pub trait Int8Tile {
    /// Activation rows and weight rows of a tile (at most 4 each).
    const MR: usize;
    const NR: usize;
    /// Bytes per packed activation: 1 (`i8`) or 2 (`i16`).
    const BYTES: usize;
    /// Rewrites a packed row (`kp` values, zero past `k`) in place into the tile's form (VNNI:
    /// offset to unsigned bytes). The default leaves it as quantised.
    ///
    /// # Safety
    /// `row` points to `kp · BYTES` written bytes; the CPU has the ISA's features.
    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let _ = (row, kp);
    }

    /// Writes activation row `i` of a tile, `row` quantised with `inv` (step 1) and zero up to
    /// `kp` values, into the tile's packed block at `tile`: `MR` rows of `kp` values, `BYTES`
    /// each. The default lays the rows one after the other and rewrites each with
    /// [`Self::prepare`]; a tile that reads its rows interleaved lays them out itself.
    ///
    /// # Safety
    /// `tile` has room for `MR · kp · BYTES` bytes, aligned for `BYTES` (4 for `BYTES = 2`);
    /// `i < MR`; `row.len() ≤ kp`; the CPU has the ISA's features.
    #[inline(always)]
    unsafe fn pack(row: &[f32], inv: f32, tile: *mut u8, i: usize, kp: usize) {
        let dst = tile.add(i * kp * Self::BYTES);
        pack_row(row, inv, dst, kp, Self::BYTES);
        Self::prepare(dst, kp);
    }

    /// What a tile needs of its `NR` weight rows besides their values, computed once per block
    /// of weight rows (VNNI: the rows' sums, to undo its offset activations); nothing by default.
    ///
    /// # Safety
    /// `w[j]` points to a weight row of at least `k` readable values; the CPU has the features.
    #[inline(always)]
    unsafe fn panel(w: &[*const i8; 4], k: usize) -> [i32; 4] {
        let _ = (w, k);
        [0; 4]
    }

    /// `out[i][j] = Σ_{t < k} q_i[t] · w_j[t]` for `i < MR`, `j < NR`, with `q_i` row `i` of
    /// the packed block at `q` ([`Self::pack`]: `kp` values a row, `kp` a multiple of
    /// [`K_STEP`], zero from `k` to `kp`).
    ///
    /// # Safety
    /// `q` points to `MR` packed rows of `kp` values each; `w[j]` to weight rows of at least `k`
    /// readable values (never read at or past `k`); the CPU has the ISA's features.
    unsafe fn tile(panel: &[i32; 4], q: *const u8, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4];
}

/// `max |x|` with NaN ignored, and the quantisation's `(s_x, 127 / m)` (both 0 for a zero row).
/// The maximum is taken on the bits: for magnitudes that are not NaN the order of the bit
/// patterns is the order of the values, and NaN's patterns (above infinity's) are skipped; an
/// integer `max` is a few instructions on every core, where a float `max` that ignores NaN is
/// a compare, a flag transfer and a select on a Cortex-M.
#[inline]
pub fn row_scale(x: &[f32]) -> (f32, f32) {
    const INF: u32 = 0x7f80_0000;
    let magnitude = |v: &f32| {
        let a = v.to_bits() & 0x7fff_ffff;
        if a > INF {
            0
        } else {
            a
        }
    };
    let mut acc = [0u32; 8];
    let chunks = x.chunks_exact(8);
    let mut m = chunks.remainder().iter().map(magnitude).fold(0, u32::max);
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = (*a).max(magnitude(v));
        }
    }
    m = acc.iter().fold(m, |m, &a| m.max(a));
    let m = f32::from_bits(m);
    if m > 0.0 {
        (m / 127.0, 127.0 / m)
    } else {
        (0.0, 0.0)
    }
}

/// `round_ties_even(v · inv)` clamped to ±127; 0 for NaN. `(t + 1.5·2^23) − 1.5·2^23` rounds
/// `|t| < 2^22` to an integer, ties to even, in the default rounding mode (no libm call, and
/// it vectorises). The clamp comes after, on the integer: a larger `t` stays at least 2^22 in
/// magnitude (an infinite one infinite, converted with saturation), so it clamps to ±127 as
/// if clamped first, and a NaN converts to 0. An integer clamp is two compares where a float
/// clamp costs a Cortex-M two compares, two flag transfers and selects.
#[inline(always)]
pub fn quantise(v: f32, inv: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let r = ((v * inv + MAGIC) - MAGIC) as i32;
    r.clamp(-127, 127)
}

/// `y = (s_x · s_w) · f32(S)`: step 3, the same for every kernel.
#[inline(always)]
pub fn dequantise(sum: i32, sx: f32, sw: f32) -> f32 {
    (sx * sw) * sum as f32
}

/// The portable micro-kernel (every target, and the x86-64 baseline, where the compiler
/// vectorises it with SSE2's `pmaddwd`): one activation row against four weight rows.
pub struct Portable;

impl Int8Tile for Portable {
    const MR: usize = 1;
    const NR: usize = 4;
    const BYTES: usize = 1;

    #[inline(always)]
    unsafe fn tile(_: &[i32; 4], q: *const u8, _kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        let q = core::slice::from_raw_parts(q.cast::<i8>(), k);
        let rows: [&[i8]; 4] = w.map(|p| core::slice::from_raw_parts(p, k));
        [rows.map(|row| dot_exact(q, row)), [0; 4], [0; 4], [0; 4]]
    }
}

/// `Σ a·b` of int8 values in `i32` (exact for at most [`MAX_EXACT_K`] terms), in 16 lanes so
/// that it vectorises.
#[inline(always)]
fn dot_exact(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let mut tail = 0i32;
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        tail += i32::from(x) * i32::from(y);
    }
    for (x, y) in ac.zip(bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += i32::from(x) * i32::from(y);
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the micro-kernel `T`. `d.accumulate` is false,
/// `0 < d.k ≤ MAX_EXACT_K`, `d.rows, d.out > 0`, and `check_matmul` passed.
///
/// Inlined into each ISA's entry point (compiled with its target features).
///
/// # Safety
/// The CPU has `T`'s features; `x`, `w`, `y` hold the rows `d` describes (`check_matmul`) and
/// `scales` has `d.out` values.
#[inline(always)]
pub unsafe fn matmul<T: Int8Tile>(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Dims) {
    let bytes = T::BYTES;
    let kp_all = d.k.div_ceil(K_STEP) * K_STEP;
    // One pass over k when MR rows of it fit the buffer; else chunks of k, the exact sums of
    // each chunk added up in `y` (as i32 bits) and converted at the end.
    let kc = if T::MR * kp_all * bytes <= PACK_BYTES { d.k } else { PACK_BYTES / (T::MR * bytes) / K_STEP * K_STEP };
    let kcp = kc.div_ceil(K_STEP) * K_STEP;
    let chunked = kc < d.k;
    let mut storage = core::mem::MaybeUninit::<[u64; PACK_BYTES / 8]>::uninit();
    let pack: *mut u8 = storage.as_mut_ptr().cast();
    // Each row's scale and its inverse, for the rows of one group.
    let mut x_scales = [0.0f32; PACK_BYTES / K_STEP];
    let mut invs = [0.0f32; PACK_BYTES / K_STEP];
    let group = (PACK_BYTES / (kcp * bytes) / T::MR * T::MR).clamp(T::MR, x_scales.len() / T::MR * T::MR);
    let mut r0 = 0;
    while r0 < d.rows {
        let n = group.min(d.rows - r0);
        // Rows padded to whole tiles: zero rows whose results are dropped.
        let padded = n.div_ceil(T::MR) * T::MR;
        for (i, (s, inv)) in x_scales.iter_mut().zip(invs.iter_mut()).enumerate().take(n) {
            let row = x.get((r0 + i) * d.xs..(r0 + i) * d.xs + d.k).unwrap_or(&[]);
            (*s, *inv) = row_scale(row);
        }
        let mut k0 = 0;
        while k0 < d.k {
            let kn = kc.min(d.k - k0);
            for i in 0..padded {
                let tile = pack.add(i / T::MR * T::MR * kcp * bytes);
                let row =
                    if i < n { x.get((r0 + i) * d.xs + k0..(r0 + i) * d.xs + k0 + kn).unwrap_or(&[]) } else { &[] };
                let inv = invs.get(i).copied().unwrap_or(0.0);
                T::pack(row, inv, tile, i % T::MR, kcp);
            }
            let mut o = 0;
            while o < d.out {
                let nr = T::NR.min(d.out - o);
                // Missing weight rows of an edge tile repeat the last one (read, then dropped).
                let last = o + nr - 1;
                let wr: [*const i8; 4] = core::array::from_fn(|j| w.as_ptr().add((o + j).min(last) * d.ws + k0));
                let panel = T::panel(&wr, kn);
                // The tile's weight scales, read once for all its row blocks (`scales` has
                // d.out values).
                let sw: [f32; 4] = core::array::from_fn(|j| *scales.as_ptr().add((o + j).min(last)));
                let mut r = 0;
                while r < n {
                    let sums = T::tile(&panel, pack.add(r * kcp * bytes), kcp, &wr, kn);
                    for (i, s) in sums.iter().enumerate().take(T::MR.min(n - r)) {
                        let p = y.as_mut_ptr().add((r0 + r + i) * d.ys + o);
                        if !chunked {
                            // Row r + i < n ≤ x_scales.len().
                            let sx = *x_scales.as_ptr().add(r + i);
                            if nr == 4 {
                                *p = dequantise(s[0], sx, sw[0]);
                                *p.add(1) = dequantise(s[1], sx, sw[1]);
                                *p.add(2) = dequantise(s[2], sx, sw[2]);
                                *p.add(3) = dequantise(s[3], sx, sw[3]);
                            } else {
                                for (j, (&s, &sw)) in s.iter().zip(&sw).enumerate().take(nr) {
                                    *p.add(j) = dequantise(s, sx, sw);
                                }
                            }
                        } else {
                            for (j, &s) in s.iter().enumerate().take(nr) {
                                let p = p.add(j);
                                *p = if k0 == 0 {
                                    f32::from_bits(s as u32)
                                } else {
                                    f32::from_bits(((*p).to_bits() as i32).wrapping_add(s) as u32)
                                };
                            }
                        }
                    }
                    r += T::MR;
                }
                o += nr;
            }
            k0 += kn;
        }
        if chunked {
            for (i, &sx) in x_scales.iter().enumerate().take(n) {
                let yr = y.as_mut_ptr().add((r0 + i) * d.ys);
                for (o, &sw) in scales.iter().enumerate().take(d.out) {
                    let p = yr.add(o);
                    *p = dequantise((*p).to_bits() as i32, sx, sw);
                }
            }
        }
        r0 += n;
    }
}

/// Writes `row` quantised (step 1) at `dst` as `bytes`-wide integers, zero up to `kp` values.
///
/// # Safety
/// `dst` has room for `kp · bytes` bytes, aligned for `bytes`; `row.len() ≤ kp`.
#[inline(always)]
unsafe fn pack_row(row: &[f32], inv: f32, dst: *mut u8, kp: usize, bytes: usize) {
    if bytes == 2 {
        let out = core::slice::from_raw_parts_mut(dst.cast::<i16>(), kp);
        let (head, rest) = out.split_at_mut(row.len());
        for (o, &v) in head.iter_mut().zip(row) {
            *o = quantise(v, inv) as i16;
        }
        rest.fill(0);
    } else {
        let out = core::slice::from_raw_parts_mut(dst.cast::<i8>(), kp);
        let (head, rest) = out.split_at_mut(row.len());
        for (o, &v) in head.iter_mut().zip(row) {
            *o = quantise(v, inv) as i8;
        }
        rest.fill(0);
    }
}

/// Rows longer than [`MAX_EXACT_K`]: each activation quantised where it is used and `i64`
/// sums; the same integers, so the same results, as the tiles.
pub fn matmul_long_rows(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Dims) {
    for r in 0..d.rows {
        let row = x.get(r * d.xs..r * d.xs + d.k).unwrap_or(&[]);
        let (sx, inv) = row_scale(row);
        for (o, &sw) in scales.iter().enumerate().take(d.out) {
            let w_row = w.get(o * d.ws..o * d.ws + d.k).unwrap_or(&[]);
            let mut total = 0i64;
            for (xc, wc) in row.chunks(MAX_EXACT_K).zip(w_row.chunks(MAX_EXACT_K)) {
                let mut acc = 0i32;
                for (&v, &q) in xc.iter().zip(wc) {
                    acc += quantise(v, inv) * i32::from(q);
                }
                total += i64::from(acc);
            }
            if let Some(out) = y.get_mut(r * d.ys + o) {
                // i64 → f32 rounds to nearest even, as i32 → f32 does for the values both hold.
                *out = (sx * sw) * total as f32;
            }
        }
    }
}
