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
//! integer, so an ISA's micro-kernel cannot change a single bit of the result. Two drivers,
//! each written once over a small per-ISA trait, hold the loops around the micro-kernels (row
//! groups packed on the stack, the `k` chunks, the edges):
//! - [`matmul_panels`] over [`Int8Lanes`]: outer-product register tiles over weight panels
//!   packed on the fly, the f32 product's design (AVX2 6 × 16 on `vpmaddwd`, AVX-512 VNNI
//!   8 × 48 on `vpdpbusd`);
//! - [`matmul`] over [`Int8Tile`]: dot-product tiles over the weights in place, for cores whose
//!   products have a row or two and no room for a panel (the Cortex-M DSP extension, the
//!   portable tile) and for VNNI products of few rows.
//!
//! Rows longer than [`MAX_EXACT_K`] (no real model has them; the header allows 2^18) take a
//! slow loop with `i64` sums: the same integers, the same bits.

use super::prefetch::Prefetch;
use super::Dims;

/// The longest row whose sums fit an `i32`: `127 · 128 · 131,072 < 2^31`.
pub const MAX_EXACT_K: usize = 131_072;

/// Bytes of the stack buffer that holds the packed activation rows of one group: on a host
/// enough for a segment's 82 rows of 512 `i16` (the AVX2 form), so that the 27M model's
/// products over 512 values take `k` in one pass (at 64 KiB they took two chunks, 384 + 128,
/// and the AVX2 int8 product 82×512·(1536×512)ᵀ was about 3 % slower: `product_probe`,
/// BENCHMARKS.md); 2 KiB on a microcontroller, four rows of 256 `i16`: at 1 KiB the built-in
/// model's products over 256 values took two chunks, and an int8 puzzle on the M4F 3.1 % more
/// instructions (its measured stack is 1,152 bytes larger: 10,368 bytes).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) const PACK_BYTES: usize = 96 * 1024;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const PACK_BYTES: usize = 2048;

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

    /// Step 3 for a whole tile, where the ISA writes it out (the Cortex-M FPU, whose compiled
    /// loop cost more than its instructions): `y[i · ys + j] = dequantise(sums[i][j], sx[i],
    /// sw[j])` for `i < MR`, `j < 4`, returning true. The default does nothing and returns
    /// false: the driver's own loop then does it.
    ///
    /// # Safety
    /// `sx` has `MR` readable values; `y` has `MR` rows of 4 writable values, `ys` apart.
    #[inline(always)]
    unsafe fn dequantise_tile(sums: &[[i32; 4]; 4], sx: *const f32, sw: &[f32; 4], y: *mut f32, ys: usize) -> bool {
        let _ = (sums, sx, sw, y, ys);
        false
    }

    /// Steps 2 and 3 of one tile of `MR` packed rows at `q` against `columns` weight rows (a
    /// multiple of 4, `ws` values apart from `w`, `k` values each), where the ISA writes that
    /// whole loop out (the Cortex-M DSP with an FPU: a call per tile, the sums' trip through
    /// memory and the driver's loop cost about as much as the dequantisation itself). Writes
    /// `y[i · ys + j]` for `i < MR`, `j` below the count it returns; the default does nothing
    /// and returns 0 (the driver's loop then does every column).
    ///
    /// # Safety
    /// As [`Self::tile`] for each weight row; `sx` has `MR` values, `sw` `columns`; `y` has `MR`
    /// rows of `columns` writable values, `ys` apart.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn row_tile_columns(
        q: *const u8,
        w: *const i8,
        ws: usize,
        k: usize,
        columns: usize,
        sx: *const f32,
        sw: *const f32,
        y: *mut f32,
        ys: usize,
    ) -> usize {
        let _ = (q, w, ws, k, columns, sx, sw, y, ys);
        0
    }
}

/// `max |x|` with NaN ignored, and the quantisation's `(s_x, 127 / m)` (both 0 for a zero row).
/// The maximum is taken on the bits: for magnitudes that are not NaN the order of the bit
/// patterns is the order of the values, and NaN's patterns (above infinity's) are skipped; an
/// integer `max` is a few instructions on every core, where a float `max` that ignores NaN is
/// a compare, a flag transfer and a select on a Cortex-M.
///
/// The maximum is first taken over every pattern, NaN's included: only when it is above
/// infinity's (a NaN is present) does a second pass skip them. One pass of a plain integer
/// maximum is what almost every row takes (on the M4F the skip inside the loop cost 3 of its
/// 10 instructions a value). Not inlined on Arm: the two passes' loops, inlined into every
/// product's instantiation, were 6.6 KB of a Cortex-M firmware's flash.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline)]
pub fn row_scale(x: &[f32]) -> (f32, f32) {
    const INF: u32 = 0x7f80_0000;
    let mut m = max_magnitude_bits(x, |v| v.to_bits() & 0x7fff_ffff);
    if m > INF {
        m = max_magnitude_bits(x, |v| {
            let a = v.to_bits() & 0x7fff_ffff;
            if a > INF {
                0
            } else {
                a
            }
        });
    }
    let m = f32::from_bits(m);
    if m > 0.0 {
        (m / 127.0, 127.0 / m)
    } else {
        (0.0, 0.0)
    }
}

/// The largest `magnitude(v)` over `x` (0 for an empty row), in eight lanes so that it
/// vectorises.
#[inline(always)]
fn max_magnitude_bits(x: &[f32], magnitude: impl Fn(&f32) -> u32) -> u32 {
    let mut acc = [0u32; 8];
    let chunks = x.chunks_exact(8);
    let m = chunks.remainder().iter().map(&magnitude).fold(0, u32::max);
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = (*a).max(magnitude(v));
        }
    }
    acc.iter().fold(m, |m, &a| m.max(a))
}

/// `round_ties_even(v · inv)` clamped to ±127; 0 for NaN. `(t + 1.5·2^23) − 1.5·2^23` rounds
/// `|t| < 2^22` to an integer, ties to even, in the default rounding mode (no libm call, and
/// it vectorises); a larger `t` stays at least 2^22 in magnitude, so clamping after rounding
/// gives what clamping first would. Two ways to finish, the same integer for every input
/// (a unit test compares them): [`quantise_saturating`] where a float's conversion saturates
/// in hardware (Arm: one `VCVT`, NaN to 0; the float clamp would cost a Cortex-M two compares,
/// two flag transfers and selects), [`quantise_selected`] on x86, where LLVM turns a vector
/// of saturating conversions into scalar ones with branches (measured: a quarter of a VNNI
/// product's time went there).
#[inline(always)]
pub fn quantise(v: f32, inv: f32) -> i32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        quantise_selected(v, inv)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        quantise_saturating(v, inv)
    }
}

pub(crate) const ROUNDING: f32 = 12_582_912.0;

/// [`quantise`] with Rust's saturating conversion (an infinite or NaN-free large value to
/// `i32::MIN`/`MAX`, NaN to 0), then an integer clamp.
#[inline(always)]
pub fn quantise_saturating(v: f32, inv: f32) -> i32 {
    let r = ((v * inv + ROUNDING) - ROUNDING) as i32;
    r.clamp(-127, 127)
}

/// [`quantise`] with the clamp and the NaN case as float selects, then a conversion that
/// cannot overflow.
#[inline(always)]
pub fn quantise_selected(v: f32, inv: f32) -> i32 {
    let u = (v * inv + ROUNDING) - ROUNDING;
    #[allow(clippy::eq_op)] // `u == u` is false for NaN only
    let c = if u > 127.0 {
        127.0
    } else if u < -127.0 {
        -127.0
    } else if u == u {
        u
    } else {
        0.0
    };
    // SAFETY: `c` is finite and within ±127.
    unsafe { c.to_int_unchecked::<i32>() }
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
            // Arm: every whole block of four weight rows of each tile of rows in one call,
            // where the ISA has one (`Int8Tile::row_tile_columns`); the rest below.
            #[cfg(target_arch = "arm")]
            if !chunked && n % T::MR == 0 {
                let columns = d.out / 4 * 4;
                let mut done = columns;
                let mut r = 0;
                while r < n {
                    done = done.min(T::row_tile_columns(
                        pack.add(r * kcp * bytes),
                        w.as_ptr(),
                        d.ws,
                        kn,
                        columns,
                        x_scales.as_ptr().add(r),
                        scales.as_ptr(),
                        y.as_mut_ptr().add((r0 + r) * d.ys),
                        d.ys,
                    ));
                    r += T::MR;
                }
                o = done;
            }
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
                    // A whole tile (rows r..r + MR ≤ n ≤ x_scales.len()). Only on Arm: on
                    // x86-64 even this branch, never taken there, made int8 products about 8 %
                    // slower (the compiled loop around the tile changed).
                    #[cfg(target_arch = "arm")]
                    if !chunked
                        && nr == 4
                        && r + T::MR <= n
                        && T::dequantise_tile(
                            &sums,
                            x_scales.as_ptr().add(r),
                            &sw,
                            y.as_mut_ptr().add((r0 + r) * d.ys + o),
                            d.ys,
                        )
                    {
                        r += T::MR;
                        continue;
                    }
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
                                add_chunk_sum(p, s, k0 == 0);
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
            dequantise_chunked(y, d, r0, x_scales.get(..n).unwrap_or(&[]), scales);
        }
        r0 += n;
    }
}

/// [`matmul`] with the portable tile. Not inlined into the dispatcher: its stack buffers
/// (`PACK_BYTES` and the rows' scales, about 108 KiB on a host) would otherwise sit in the
/// dispatcher's frame under every ISA's kernel, which has buffers of its own (measured: an int8
/// segment on AVX2 needed over 224 KiB of stack, the f32 one under 152).
///
/// # Safety
/// The conditions of [`matmul`] (the portable tile needs no CPU feature).
#[inline(never)]
pub(crate) unsafe fn matmul_portable(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Dims) {
    matmul::<Portable>(x, w, scales, y, d)
}

/// A product chunked along `k` keeps each output's exact sum in its `y` slot as `i32` bits:
/// the first chunk's sum stored, the later ones added.
///
/// # Safety
/// `p` is a valid output slot.
#[inline(always)]
unsafe fn add_chunk_sum(p: *mut f32, sum: i32, first: bool) {
    *p = if first {
        f32::from_bits(sum as u32)
    } else {
        f32::from_bits(((*p).to_bits() as i32).wrapping_add(sum) as u32)
    };
}

/// Step 3 for rows `r0..r0 + x_scales.len()` of a product chunked along `k`, whose `y` slots
/// hold the exact sums ([`add_chunk_sum`]).
///
/// # Safety
/// `y` holds the rows `d` describes; `scales` has `d.out` values.
#[inline(always)]
unsafe fn dequantise_chunked(y: &mut [f32], d: Dims, r0: usize, x_scales: &[f32], scales: &[f32]) {
    for (i, &sx) in x_scales.iter().enumerate() {
        let yr = y.as_mut_ptr().add((r0 + i) * d.ys);
        for (o, &sw) in scales.iter().enumerate().take(d.out) {
            let p = yr.add(o);
            *p = dequantise((*p).to_bits() as i32, sx, sw);
        }
    }
}

/// Writes `row` quantised (step 1) at `dst` as `bytes`-wide integers, zero up to `kp` values.
///
/// # Safety
/// `dst` has room for `kp · bytes` bytes, aligned for `bytes`; `row.len() ≤ kp`.
#[inline(always)]
pub(crate) unsafe fn pack_row(row: &[f32], inv: f32, dst: *mut u8, kp: usize, bytes: usize) {
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

/// One ISA's vector operations for the outer-product int8 tiles of [`matmul_panels`]: the
/// BLIS / XNNPACK design of the f32 product (`super::gemm`) on integers. Each `i32` lane of a
/// panel vector holds `G` consecutive values of `k` of one weight row (`G · WBYTES = 4` bytes);
/// an activation row contributes `G` consecutive values (`G · ABYTES = 4` bytes) broadcast to
/// every lane; [`Self::madd`] adds the `G` products of each lane to its `i32` accumulator. No
/// horizontal sums, and each broadcast activation group feeds `NR` outputs.
///
/// # Safety
/// Every method may only be called on a CPU with the ISA's features, with pointers to as many
/// readable (or writable) bytes as it names: a vector's `4 · L` bytes for `load` and `store`,
/// 4 for `splat`.
#[allow(clippy::missing_safety_doc)] // the trait's section covers its methods
pub trait Int8Lanes {
    type V: Copy;
    /// `i32` lanes of a vector.
    const L: usize;
    /// Values of `k` per lane: 2 (`i16` pairs, AVX2's `vpmaddwd`) or 4 (bytes, VNNI's `vpdpbusd`).
    const G: usize;
    /// Bytes of a packed activation (`4 / G`).
    const ABYTES: usize;
    /// What the packed activations carry on top of the quantised value (VNNI's `+128`, for its
    /// unsigned operand); taken out of each sum as `OFFSET · Σ w` of the output's weights.
    const OFFSET: i32 = 0;
    unsafe fn zero() -> Self::V;
    /// `L` lanes of a panel.
    unsafe fn load(p: *const u8) -> Self::V;
    /// The 4 bytes at `p` (`G` packed activations) in every lane.
    unsafe fn splat(p: *const u8) -> Self::V;
    /// `acc + Σ_{g < G} a_g · b_g` per lane, exact.
    unsafe fn madd(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn store(p: *mut i32, v: Self::V);
    /// `out[l] ← out[l] + f32(sums[l]) · scales[l]` for the `L` lanes, each product and sum
    /// rounded (no fused multiply-add): step 3 of the int4 arithmetic (`super::int4`). The
    /// default goes through memory.
    ///
    /// # Safety
    /// `out` and `scales` have `L` values.
    #[inline(always)]
    unsafe fn add_scaled(out: *mut f32, sums: Self::V, scales: *const f32) {
        let mut s = [0i32; 16];
        Self::store(s.as_mut_ptr(), sums);
        for (l, &s) in s.iter().enumerate().take(Self::L) {
            *out.add(l) = super::int4::add_block(*out.add(l), s, *scales.add(l));
        }
    }
    /// Whether [`Int8Lanes::prefetch`] does anything (the next weight panel is then fetched
    /// while the tiles run, as for f32: `gemm::Prefetch`).
    const PREFETCH: bool = false;
    /// Asks for the cache line at `p` (a hint: no fault, no effect on results).
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        let _ = p;
    }
    /// Rewrites a packed activation row of `kp` values in place into the tile's operand form
    /// (VNNI: `q + 128` as unsigned bytes); nothing by default.
    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let _ = (row, kp);
    }
    /// `OFFSET · Σ_{t < kc} w_j[t]` of `n` weight rows `ws` apart into `out` (only called
    /// where `OFFSET ≠ 0`); the scalar loop by default.
    ///
    /// # Safety
    /// Rows `< n` of `w` have `kc` readable values; `out` has `n` values.
    #[inline(always)]
    unsafe fn offset_sums(w: *const i8, ws: usize, n: usize, kc: usize, out: *mut i32) {
        for j in 0..n {
            let row = core::slice::from_raw_parts(w.add(j * ws), kc);
            *out.add(j) = Self::OFFSET * row.iter().map(|&v| i32::from(v)).sum::<i32>();
        }
    }
    /// Packs `n ≤ nr` weight rows `ws` apart, `kc` values each from `w`, into the panel layout
    /// ([`panel_offset`]), zero for rows `n..nr` and values `kc..kcp`. The default is the
    /// scalar loop; an ISA transposes in registers what it can and leaves the rest to it.
    #[inline(always)]
    unsafe fn pack(w: *const i8, ws: usize, n: usize, kc: usize, kcp: usize, nr: usize, panel: *mut u8) {
        pack_panel_rest::<Self>(w, ws, n, 0, 0, kc, kcp, nr, panel);
    }
}

/// Byte offset of weight `(j, t)` (output `j` of the panel, value `t` of its chunk) in a panel
/// of `nr` outputs: groups of `G` values of `k`, each group `nr` lanes of 4 bytes.
#[inline(always)]
pub fn panel_offset<T: Int8Lanes + ?Sized>(j: usize, t: usize, nr: usize) -> usize {
    ((t / T::G) * nr + j) * 4 + (t % T::G) * (4 / T::G)
}

/// The scalar part of a panel's packing: rows `vec_rows..nr` at every value, rows `0..vec_rows`
/// at the values `vec_steps..kcp` (those the ISA's transposes did not cover); rows past `n` and
/// values past `kc` are zero.
///
/// # Safety
/// Rows `< n` of `w` have `kc` readable values `ws` apart; `panel` has room for `nr · kcp`
/// values of `4 / G` bytes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn pack_panel_rest<T: Int8Lanes + ?Sized>(
    w: *const i8,
    ws: usize,
    n: usize,
    vec_rows: usize,
    vec_steps: usize,
    kc: usize,
    kcp: usize,
    nr: usize,
    panel: *mut u8,
) {
    for t in 0..kcp {
        let from = if t < vec_steps { vec_rows } else { 0 };
        for j in from..nr {
            let v = if j < n && t < kc { *w.add(j * ws + t) } else { 0 };
            let dst = panel.add(panel_offset::<T>(j, t, nr));
            if T::G == 2 {
                dst.cast::<i16>().write_unaligned(i16::from(v));
            } else {
                *dst = v as u8;
            }
        }
    }
}

/// Bytes of the packed weight panel of [`matmul_panels`]: 16 outputs × 512 values of `k` as
/// `i16`, or 32 × 512 bytes, in L1 beside the activations it meets.
pub(crate) const PANEL_BYTES: usize = 16 * 1024;

/// A packed weight panel (cache-line aligned).
#[repr(C, align(64))]
pub(crate) struct Panel(pub(crate) [u8; PANEL_BYTES]);

/// The widest tile's outputs (`NR`) and rows (`MR`): they size the tile's result buffer.
pub(crate) const MAX_NR: usize = 64;
pub(crate) const MAX_MR: usize = 16;

/// `Y = X · Wᵀ` in the int8 arithmetic with outer-product `MR × NV·L` tiles of `T` over weight
/// panels packed on the fly (`Int8Lanes`): the same integers, so the same bits, as
/// [`matmul`]. The conditions are [`matmul`]'s.
///
/// Loops: rows in groups whose packed activations fit [`PACK_BYTES`] (all the rows of a
/// segment's products, so that each weight panel is packed once per product; the chunk of `k`
/// shrinks to let them), `k` in chunks, panels of `NR` outputs, tiles of `MR` rows. A product
/// whose `k` takes several chunks sums each chunk's exact integers in `y` (as `i32` bits) and
/// converts at the end, as [`matmul`] does.
///
/// # Safety
/// The CPU has `T`'s features; `x`, `w`, `y` hold the rows `d` describes (`check_matmul`) and
/// `scales` has `d.out` values; `0 < d.k ≤ MAX_EXACT_K`, `d.rows, d.out > 0`.
#[inline(always)]
pub unsafe fn matmul_panels<T: Int8Lanes, const MR: usize, const NV: usize>(
    x: &[f32],
    w: &[i8],
    scales: &[f32],
    y: &mut [f32],
    d: Dims,
) {
    let nr = NV * T::L;
    const { assert!(MR <= MAX_MR && T::G * T::ABYTES == 4) };
    debug_assert!(nr <= MAX_NR);
    let ab = T::ABYTES;
    let wb = 4 / T::G;
    // The longest chunk of k a panel holds, and the group of rows that shares it.
    let kc_panel = PANEL_BYTES / (nr * wb) / K_STEP * K_STEP;
    let all_rows = d.rows.div_ceil(MR) * MR;
    let mut kc = (PACK_BYTES / (all_rows * ab) / K_STEP * K_STEP).min(kc_panel);
    let mut group = all_rows;
    if kc < 256.min(kc_panel) {
        // Too many rows to share one panel at a useful depth: groups of rows at 256 values.
        kc = 256.min(kc_panel);
        group = PACK_BYTES / (kc * ab) / MR * MR;
    }
    let kc = kc.min(d.k);
    let chunked = kc < d.k;
    let stride = kc.div_ceil(4) * 4;
    let group = group.min(PACK_BYTES / K_STEP / MR * MR);
    let mut storage = core::mem::MaybeUninit::<[u64; PACK_BYTES / 8]>::uninit();
    let pack: *mut u8 = storage.as_mut_ptr().cast();
    let mut panel = core::mem::MaybeUninit::<Panel>::uninit();
    let panel: *mut u8 = panel.as_mut_ptr().cast();
    let mut x_scales = [0.0f32; PACK_BYTES / K_STEP];
    let mut invs = [0.0f32; PACK_BYTES / K_STEP];
    let mut sums = [0i32; MAX_MR * MAX_NR];
    let mut col_sums = [0i32; MAX_NR];
    let mut r0 = 0;
    while r0 < d.rows {
        let n = group.min(d.rows - r0);
        for (i, (s, inv)) in x_scales.iter_mut().zip(invs.iter_mut()).enumerate().take(n) {
            let row = x.get((r0 + i) * d.xs..(r0 + i) * d.xs + d.k).unwrap_or(&[]);
            (*s, *inv) = row_scale(row);
        }
        let mut k0 = 0;
        while k0 < d.k {
            let kn = kc.min(d.k - k0);
            let kp = kn.div_ceil(4) * 4;
            for i in 0..n {
                let row = x.get((r0 + i) * d.xs + k0..(r0 + i) * d.xs + k0 + kn).unwrap_or(&[]);
                let dst = pack.add(i * stride * ab);
                pack_row(row, *invs.as_ptr().add(i), dst, kp, ab);
                T::prepare(dst, kp);
            }
            let mut o = 0;
            while o < d.out {
                let nn = nr.min(d.out - o);
                T::pack(w.as_ptr().add(o * d.ws + k0), d.ws, nn, kn, kp, nr, panel);
                if T::OFFSET != 0 {
                    T::offset_sums(w.as_ptr().add(o * d.ws + k0), d.ws, nn, kn, col_sums.as_mut_ptr());
                }
                let mut next = Prefetch::next_panel(w.as_ptr(), &d, o, k0, nr, kn);
                let mut r = 0;
                while r < n {
                    let m = MR.min(n - r);
                    // Rows past the group's end repeat its last row (computed, not stored).
                    let rows: [*const u8; MR] =
                        core::array::from_fn(|i| pack.add((r + i.min(m - 1)) * stride * ab).cast_const());
                    panel_tile::<T, MR, NV>(&rows, panel, kp / T::G, sums.as_mut_ptr(), &mut next);
                    for i in 0..m {
                        let yr = y.as_mut_ptr().add((r0 + r + i) * d.ys + o);
                        let s = sums.as_ptr().add(i * nr);
                        if !chunked {
                            let sx = *x_scales.as_ptr().add(r + i);
                            for j in 0..nn {
                                let sw = *scales.as_ptr().add(o + j);
                                *yr.add(j) = dequantise(*s.add(j) - *col_sums.as_ptr().add(j), sx, sw);
                            }
                        } else {
                            for j in 0..nn {
                                let v = *s.add(j) - *col_sums.as_ptr().add(j);
                                add_chunk_sum(yr.add(j), v, k0 == 0);
                            }
                        }
                    }
                    r += MR;
                }
                o += nr;
            }
            k0 += kn;
        }
        if chunked {
            dequantise_chunked(y, d, r0, x_scales.get(..n).unwrap_or(&[]), scales);
        }
        r0 += n;
    }
}

/// One `MR × NV·L` tile over `groups` groups of `G` values: the exact sums, stored at `out`
/// (`MR` rows of `NV · L` values).
#[inline(always)]
unsafe fn panel_tile<T: Int8Lanes, const MR: usize, const NV: usize>(
    rows: &[*const u8; MR],
    panel: *const u8,
    groups: usize,
    out: *mut i32,
    next: &mut Prefetch,
) {
    let lane_bytes = T::L * 4;
    let mut acc = [[T::zero(); NV]; MR];
    let mut p = panel;
    let mut a = 0;
    for _ in 0..groups {
        let b: [T::V; NV] = core::array::from_fn(|v| T::load(p.add(v * lane_bytes)));
        for (row, &q) in acc.iter_mut().zip(rows) {
            let av = T::splat(q.add(a));
            for (c, &bv) in row.iter_mut().zip(&b) {
                *c = T::madd(*c, av, bv);
            }
        }
        p = p.add(NV * lane_bytes);
        a += 4;
        if T::PREFETCH {
            next.step(T::prefetch);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (v, &c) in row.iter().enumerate() {
            T::store(out.add(i * NV * T::L + v * T::L), c);
        }
    }
}
