//! Products with int4 weights (ggml's Q4_0 blocks, `DType::Q4`) on the integer kernels of the
//! int8 arithmetic (`super::int8`), the same on every ISA.
//!
//! Row `o` of `W` is cut into blocks of 32 values, block `b` being `d[o][b] · (n − 8)` with
//! `n` a nibble and `d` an `f16` scale. `Y = X · Wᵀ`:
//! 1. each activation row is quantised once, as for int8 weights: `q`, `s_x`
//!    (`int8::row_scale`, `int8::quantise`);
//! 2. per block, `S_b = Σ q · (n − 8)` over its 32 values, exact in `i32` (at most
//!    `32 · 127 · 8` in magnitude; the padding past `k` is `q = 0`);
//! 3. `a ← a + f32(S_b) · f32(d_b)` for `b = 0, 1, …` in order from `a = 0` (a product rounded,
//!    then a sum rounded: no fused multiply-add anywhere), then `y = s_x · a`.
//!
//! Step 2 is an exact integer and step 3 one fixed sequence of roundings, so every kernel gives
//! the same bits. Two drivers, as for int8, hold the loops:
//! - [`matmul_panels`] over `int8::Int8Lanes` (AVX2's `vpmaddwd`, NEON's `SDOT`): each panel's
//!   nibbles are decoded to int8 rows and packed by the ISA's own int8 packing, then each block's
//!   exact sums are added, scaled, to `f32` accumulators (`Int8Lanes::add_scaled`);
//! - [`matmul_blocks`] over [`Q4Tile`]: dot-product tiles that read the nibbles in place (the
//!   Cortex-M DSP extension, the portable tile).
//!
//! Before, int4 weights were widened to `f32` and multiplied as floats (on a Cortex-M4F about
//! 4.7 instructions per multiply-accumulate, a third of them decoding).

use half::f16;

use super::int8::{pack_row, quantise, row_scale, Int8Lanes, Panel, MAX_MR, MAX_NR, PACK_BYTES, PANEL_BYTES};
use super::{Dims, Element};
use crate::blob::{Q4_BLOCK, Q4_BLOCK_BYTES};

/// Step 3's accumulation of one block: `a + f32(S) · d`.
#[inline(always)]
pub fn add_block(a: f32, sum: i32, d: f32) -> f32 {
    a + sum as f32 * d
}

/// Value `t` of a block's 16 bytes, `n − 8`: byte `t` holds value `t` in its low nibble, byte
/// `t − 16` value `t` in its high nibble.
#[inline(always)]
fn value(block: &[u8; Q4_BLOCK_BYTES], t: usize) -> i8 {
    let b = block.get(t % Q4_BLOCK_BYTES).copied().unwrap_or(0x88);
    let n = if t < Q4_BLOCK_BYTES { b & 0x0f } else { b >> 4 };
    n as i8 - 8
}

/// The 32 values of a block as `i8`.
#[inline(always)]
fn decode(block: &[u8; Q4_BLOCK_BYTES]) -> [i8; Q4_BLOCK] {
    let mut out = [0i8; Q4_BLOCK];
    let (low, high) = out.split_at_mut(Q4_BLOCK_BYTES);
    for ((l, h), &b) in low.iter_mut().zip(high.iter_mut()).zip(block) {
        *l = (b & 0x0f) as i8 - 8;
        *h = (b >> 4) as i8 - 8;
    }
    out
}

/// The int4 product's weights: `rows` rows of `blocks` blocks, `scales` one per block and
/// `nibbles` 16 bytes per block, row after row (`blob.rs`'s layout).
#[derive(Clone, Copy)]
pub struct Q4Rows<'a> {
    pub scales: &'a [f16],
    pub nibbles: &'a [u8],
    /// Blocks per row (`k.div_ceil(32)`).
    pub blocks: usize,
}

impl<'a> Q4Rows<'a> {
    /// Whether `out` rows are there.
    pub fn holds(&self, out: usize) -> bool {
        let n = out.saturating_mul(self.blocks);
        self.scales.len() >= n && self.nibbles.len() / Q4_BLOCK_BYTES >= n
    }

    /// The rows from `o` on.
    pub fn from_row(&self, o: usize) -> Q4Rows<'a> {
        let n = o.saturating_mul(self.blocks);
        Q4Rows {
            scales: self.scales.get(n..).unwrap_or(&[]),
            nibbles: self.nibbles.get(n.saturating_mul(Q4_BLOCK_BYTES)..).unwrap_or(&[]),
            blocks: self.blocks,
        }
    }
}

/// The reference: one output at a time, every value decoded where it is used. The other
/// kernels are compared with it bit for bit.
pub fn matmul_reference(x: &[f32], w: Q4Rows<'_>, y: &mut [f32], d: Dims) {
    for r in 0..d.rows {
        let row = x.get(r * d.xs..r * d.xs + d.k).unwrap_or(&[]);
        let (sx, inv) = row_scale(row);
        for o in 0..d.out {
            let mut a = 0.0f32;
            for b in 0..w.blocks {
                let i = o * w.blocks + b;
                let (Some(&scale), Some(bytes)) =
                    (w.scales.get(i), w.nibbles.get(i * Q4_BLOCK_BYTES..(i + 1) * Q4_BLOCK_BYTES))
                else {
                    continue;
                };
                let Ok(bytes) = <&[u8; Q4_BLOCK_BYTES]>::try_from(bytes) else { continue };
                let mut s = 0i32;
                for t in 0..Q4_BLOCK {
                    let at = b * Q4_BLOCK + t;
                    if at < d.k {
                        s += quantise(*row.get(at).unwrap_or(&0.0), inv) * i32::from(value(bytes, t));
                    }
                }
                a = add_block(a, s, scale.to_f32());
            }
            if let Some(out) = y.get_mut(r * d.ys + o) {
                *out = sx * a;
            }
        }
    }
}

/// A dot-product micro-kernel of the int4 product: the exact sums (step 2) of `MR` packed
/// activation rows against one block of one weight row, read in place.
pub trait Q4Tile {
    /// Activation rows of a tile (at most 4).
    const MR: usize;
    /// Bytes of one block of a tile's packed rows (at most 272).
    const BLOCK_BYTES: usize;
    /// Writes row `i` of a tile's block at `block`: `values` (at most 32; zero past them)
    /// quantised with `inv`.
    ///
    /// # Safety
    /// `block` has `BLOCK_BYTES` writable bytes, 4-aligned; `i < MR`; the CPU has the features.
    unsafe fn pack(values: &[f32], inv: f32, block: *mut u8, i: usize);
    /// `S[i]` (step 2) for rows `i < MR` of the packed block at `q` and the 16 bytes at `w`.
    ///
    /// # Safety
    /// `q` is a block written by [`Self::pack`] for every row `< MR`; `w` has 16 readable bytes.
    unsafe fn block(q: *const u8, w: *const u8) -> [i32; 4];

    /// Step 3 over `blocks ≥ 1` consecutive blocks of one weight row: `a[i] ←
    /// add_block(a[i], S_b[i], d_b)` for `b` in order, the packed blocks at `q` (`BLOCK_BYTES`
    /// apart), their weights at `w` (16 bytes apart) and steps at `scales`. The default calls
    /// [`Self::block`] for each.
    ///
    /// # Safety
    /// As [`Self::block`] for each block; `scales` has `blocks` values.
    #[inline(always)]
    unsafe fn row(q: *const u8, w: *const u8, scales: *const f16, blocks: usize, a: &mut [f32; 4]) {
        for b in 0..blocks {
            let s = Self::block(q.add(b * Self::BLOCK_BYTES), w.add(b * Q4_BLOCK_BYTES));
            // The kernels' widening (a Cortex-M FPU's `VCVTB`, not the `half` crate's in software).
            let scale = Element::to_f32(*scales.add(b));
            for (a, &s) in a.iter_mut().zip(&s).take(Self::MR) {
                *a = add_block(*a, s, scale);
            }
        }
    }

    /// All `out` outputs of a full tile (`MR` rows) over whole rows of `blocks ≥ 1` blocks:
    /// `y[i·ys + j] = sx[i] · a_ij`, `a_ij` step 3 from 0 over weight row `j` (rows `blocks`
    /// blocks apart at `w` and `scales`). The default calls [`Self::row`] for each.
    ///
    /// # Safety
    /// As [`Self::row`] for each weight row; `y` has rows `i < MR` of `out` values `ys` apart.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn outputs(
        q: *const u8,
        w: *const u8,
        scales: *const f16,
        blocks: usize,
        out: usize,
        sx: &[f32; 4],
        y: *mut f32,
        ys: usize,
    ) {
        for j in 0..out {
            let mut a = [0.0f32; 4];
            Self::row(q, w.add(j * blocks * Q4_BLOCK_BYTES), scales.add(j * blocks), blocks, &mut a);
            for (i, (&a, &sx)) in a.iter().zip(sx).enumerate().take(Self::MR) {
                *y.add(i * ys + j) = sx * a;
            }
        }
    }
}

/// The portable tile: `MR` rows of `i8`, the block decoded once for all of them.
pub struct Portable<const MR: usize>;

impl<const MR: usize> Q4Tile for Portable<MR> {
    const MR: usize = MR;
    const BLOCK_BYTES: usize = MR * Q4_BLOCK;

    #[inline(always)]
    unsafe fn pack(values: &[f32], inv: f32, block: *mut u8, i: usize) {
        pack_row(values, inv, block.add(i * Q4_BLOCK), Q4_BLOCK, 1);
    }

    #[inline(always)]
    unsafe fn block(q: *const u8, w: *const u8) -> [i32; 4] {
        let w = decode(&*w.cast::<[u8; Q4_BLOCK_BYTES]>());
        let mut out = [0i32; 4];
        for (i, s) in out.iter_mut().enumerate().take(MR) {
            let q = &*q.add(i * Q4_BLOCK).cast::<[i8; Q4_BLOCK]>();
            *s = q.iter().zip(&w).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        }
        out
    }
}

/// Bytes of [`matmul_blocks`]'s buffer of packed blocks: the int8 buffer and room for the
/// per-block words some tiles store beside the values (the Cortex-M tile: 16 bytes a block).
const BLOCKS_BYTES: usize = PACK_BYTES + PACK_BYTES / 16;

/// `Y = X · Wᵀ` in the int4 arithmetic with the dot-product tile `T`: row tiles of `T::MR`,
/// their blocks packed (as many as the buffer holds, the rest in further chunks), then for
/// every output the blocks in order. Between chunks an output's running sum `a` waits in its
/// `y` slot.
///
/// # Safety
/// The CPU has `T`'s features; `x` and `y` hold the rows `d` describes (`check_matmul`), `w`
/// holds `d.out` rows of `d.k.div_ceil(32)` blocks; `d.rows, d.out, d.k > 0`.
#[inline(always)]
pub unsafe fn matmul_blocks<T: Q4Tile>(x: &[f32], w: Q4Rows<'_>, y: &mut [f32], d: Dims) {
    const { assert!(T::BLOCK_BYTES <= 272 && T::MR <= 4) };
    let mut storage = core::mem::MaybeUninit::<[u64; BLOCKS_BYTES / 8]>::uninit();
    let pack: *mut u8 = storage.as_mut_ptr().cast();
    let per_chunk = (BLOCKS_BYTES / T::BLOCK_BYTES).max(1);
    let nb = w.blocks;
    let mut r = 0;
    while r < d.rows {
        let m = T::MR.min(d.rows - r);
        let mut sx = [0.0f32; 4];
        let mut invs = [0.0f32; 4];
        let rows: [&[f32]; 4] =
            core::array::from_fn(
                |i| {
                    if i < m {
                        x.get((r + i) * d.xs..(r + i) * d.xs + d.k).unwrap_or(&[])
                    } else {
                        &[]
                    }
                },
            );
        for ((s, inv), row) in sx.iter_mut().zip(invs.iter_mut()).zip(&rows).take(m) {
            (*s, *inv) = row_scale(row);
        }
        let mut b0 = 0;
        while b0 < nb {
            let bn = per_chunk.min(nb - b0);
            for b in 0..bn {
                let block = pack.add(b * T::BLOCK_BYTES);
                let at = (b0 + b) * Q4_BLOCK;
                for (i, (row, &inv)) in rows.iter().zip(&invs).enumerate().take(T::MR) {
                    let part = row.get(at..(at + Q4_BLOCK).min(row.len())).unwrap_or(&[]);
                    T::pack(part, inv, block, i);
                }
            }
            let last = b0 + bn == nb;
            if m == T::MR && bn == nb {
                // A full tile and the whole row in one chunk: every output in the tile's loop.
                T::outputs(
                    pack,
                    w.nibbles.as_ptr(),
                    w.scales.as_ptr(),
                    nb,
                    d.out,
                    &sx,
                    y.as_mut_ptr().add(r * d.ys),
                    d.ys,
                );
                b0 += bn;
                continue;
            }
            for o in 0..d.out {
                let mut a = [0.0f32; 4];
                if b0 > 0 {
                    for (i, a) in a.iter_mut().enumerate().take(m) {
                        *a = *y.as_ptr().add((r + i) * d.ys + o);
                    }
                }
                let first = o * nb + b0;
                let wp = w.nibbles.as_ptr().add(first * Q4_BLOCK_BYTES);
                T::row(pack, wp, w.scales.as_ptr().add(first), bn, &mut a);
                for (i, (&a, &sx)) in a.iter().zip(&sx).enumerate().take(m) {
                    let p = y.as_mut_ptr().add((r + i) * d.ys + o);
                    *p = if last { sx * a } else { a };
                }
            }
            b0 += bn;
        }
        r += T::MR;
    }
}

/// [`matmul_blocks`] with the portable tile: four rows at a time (each block decoded once for
/// four of them); on a host, a single row alone. A microcontroller pads a single row to four
/// instead: one copy of the driver less, about 3 KB of flash. Not inlined into the dispatcher
/// (its buffer).
///
/// # Safety
/// The conditions of [`matmul_blocks`].
#[inline(never)]
pub(crate) unsafe fn matmul_portable(x: &[f32], w: Q4Rows<'_>, y: &mut [f32], d: Dims) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if d.rows == 1 {
        return matmul_blocks::<Portable<1>>(x, w, y, d);
    }
    matmul_blocks::<Portable<4>>(x, w, y, d)
}

/// `Y = X · Wᵀ` in the int4 arithmetic with outer-product `MR × NV·L` tiles of `T` (whose
/// packed activations carry no offset): `int8::matmul_panels`'s loops, each panel's nibbles
/// decoded to int8 rows (zero past `k`) and packed by `T::pack`, its block scales widened
/// once, and the tile's exact sums added to `f32` accumulators at the end of every block.
///
/// # Safety
/// The CPU has `T`'s features; the conditions of [`matmul_blocks`].
#[inline(always)]
pub unsafe fn matmul_panels<T: Int8Lanes, const MR: usize, const NV: usize>(
    x: &[f32],
    w: Q4Rows<'_>,
    y: &mut [f32],
    d: Dims,
) {
    let nr = NV * T::L;
    const { assert!(MR <= MAX_MR && T::G * T::ABYTES == 4 && T::OFFSET == 0 && Q4_BLOCK.is_multiple_of(4)) };
    debug_assert!(nr <= MAX_NR);
    let ab = T::ABYTES;
    let wb = 4 / T::G;
    let nb = w.blocks;
    // Values per chunk of k: whole blocks, as many as the panel and (for all rows) the
    // activation buffer hold.
    let kc_panel = PANEL_BYTES / (nr * wb) / Q4_BLOCK * Q4_BLOCK;
    let all_rows = d.rows.div_ceil(MR) * MR;
    let mut kc = (PACK_BYTES / (all_rows * ab) / Q4_BLOCK * Q4_BLOCK).min(kc_panel);
    let mut group = all_rows;
    if kc < 256.min(kc_panel) {
        kc = 256.min(kc_panel);
        group = (PACK_BYTES / (kc * ab) / MR * MR).max(MR);
    }
    let kc = kc.min(nb * Q4_BLOCK);
    let chunk_blocks = kc / Q4_BLOCK;
    let mut storage = core::mem::MaybeUninit::<[u64; PACK_BYTES / 8]>::uninit();
    let pack: *mut u8 = storage.as_mut_ptr().cast();
    let mut panel = core::mem::MaybeUninit::<Panel>::uninit();
    let panel: *mut u8 = panel.as_mut_ptr().cast();
    // The panel's weights decoded to int8 rows, and its block scales (`nr` per block).
    let mut decoded = core::mem::MaybeUninit::<[u64; PANEL_BYTES / 8]>::uninit();
    let decoded: *mut i8 = decoded.as_mut_ptr().cast();
    let mut block_scales = [0.0f32; PANEL_BYTES / Q4_BLOCK];
    let mut x_scales = [0.0f32; PACK_BYTES / Q4_BLOCK];
    let mut invs = [0.0f32; PACK_BYTES / Q4_BLOCK];
    let mut acc = [0.0f32; MAX_MR * MAX_NR];
    let mut r0 = 0;
    while r0 < d.rows {
        let n = group.min(d.rows - r0);
        for (i, (s, inv)) in x_scales.iter_mut().zip(invs.iter_mut()).enumerate().take(n) {
            let row = x.get((r0 + i) * d.xs..(r0 + i) * d.xs + d.k).unwrap_or(&[]);
            (*s, *inv) = row_scale(row);
        }
        let mut b0 = 0;
        while b0 < nb {
            let bn = chunk_blocks.min(nb - b0);
            let (k0, kp) = (b0 * Q4_BLOCK, bn * Q4_BLOCK);
            let kn = kp.min(d.k - k0);
            for i in 0..n {
                let row = x.get((r0 + i) * d.xs + k0..(r0 + i) * d.xs + k0 + kn).unwrap_or(&[]);
                pack_row(row, *invs.as_ptr().add(i), pack.add(i * kp * ab), kp, ab);
            }
            let last = b0 + bn == nb;
            let mut o = 0;
            while o < d.out {
                let nn = nr.min(d.out - o);
                for j in 0..nr {
                    let row = decoded.add(j * kp);
                    for b in 0..bn {
                        let (values, scale) = if j < nn {
                            let at = (o + j) * nb + b0 + b;
                            let bytes = &*w.nibbles.as_ptr().add(at * Q4_BLOCK_BYTES).cast::<[u8; Q4_BLOCK_BYTES]>();
                            (decode(bytes), Element::to_f32(*w.scales.as_ptr().add(at)))
                        } else {
                            ([0; Q4_BLOCK], 0.0)
                        };
                        row.add(b * Q4_BLOCK).cast::<[i8; Q4_BLOCK]>().write(values);
                        *block_scales.as_mut_ptr().add(b * nr + j) = scale;
                    }
                }
                T::pack(decoded, kp, nr, kp, kp, nr, panel);
                let mut r = 0;
                while r < n {
                    let m = MR.min(n - r);
                    let rows: [*const u8; MR] =
                        core::array::from_fn(|i| pack.add((r + i.min(m - 1)) * kp * ab).cast_const());
                    for i in 0..m {
                        let yr = y.as_ptr().add((r0 + r + i) * d.ys + o);
                        for j in 0..nr {
                            *acc.as_mut_ptr().add(i * nr + j) = if b0 > 0 && j < nn { *yr.add(j) } else { 0.0 };
                        }
                    }
                    panel_tile::<T, MR, NV>(&rows, panel, bn, block_scales.as_ptr(), acc.as_mut_ptr());
                    for i in 0..m {
                        let yr = y.as_mut_ptr().add((r0 + r + i) * d.ys + o);
                        let sx = *x_scales.as_ptr().add(r + i);
                        for j in 0..nn {
                            let a = *acc.as_ptr().add(i * nr + j);
                            *yr.add(j) = if last { sx * a } else { a };
                        }
                    }
                    r += MR;
                }
                o += nr;
            }
            b0 += bn;
        }
        r0 += n;
    }
}

/// One `MR × NV·L` tile over `blocks` blocks: each block's exact sums, scaled by its
/// `scales` (`NV · L` per block), added to the running sums at `acc` (`MR` rows of `NV · L`).
#[inline(always)]
unsafe fn panel_tile<T: Int8Lanes, const MR: usize, const NV: usize>(
    rows: &[*const u8; MR],
    panel: *const u8,
    blocks: usize,
    scales: *const f32,
    acc: *mut f32,
) {
    let lane_bytes = T::L * 4;
    let nr = NV * T::L;
    let mut p = panel;
    let mut a = 0;
    for b in 0..blocks {
        let mut sums = [[T::zero(); NV]; MR];
        for _ in 0..Q4_BLOCK / T::G {
            let w: [T::V; NV] = core::array::from_fn(|v| T::load(p.add(v * lane_bytes)));
            for (row, &q) in sums.iter_mut().zip(rows) {
                let av = T::splat(q.add(a));
                for (c, &wv) in row.iter_mut().zip(&w) {
                    *c = T::madd(*c, av, wv);
                }
            }
            p = p.add(NV * lane_bytes);
            a += 4;
        }
        let s = scales.add(b * nr);
        for (i, row) in sums.iter().enumerate() {
            for (v, &c) in row.iter().enumerate() {
                T::add_scaled(acc.add(i * nr + v * T::L), c, s.add(v * T::L));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A deterministic pseudo-random sequence (xorshift).
    fn noise(seed: u32, n: usize) -> Vec<u32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s
            })
            .collect()
    }

    /// Weights and activations of one shape: scales of several magnitudes, every nibble.
    fn operands(rows: usize, out: usize, k: usize, seed: u32) -> (Vec<f32>, Vec<f16>, Vec<u8>) {
        let nb = k.div_ceil(Q4_BLOCK);
        let x = noise(seed, rows * k).iter().map(|&v| (v % 2001) as f32 / 1000.0 - 1.0).collect();
        let scales = noise(seed + 1, out * nb).iter().map(|&v| f16::from_f32((1 + v % 97) as f32 * 1e-3)).collect();
        let mut nibbles: Vec<u8> = noise(seed + 2, out * nb * Q4_BLOCK_BYTES).iter().map(|&v| v as u8).collect();
        // The padding of each row's last block is nibble 8 (value 0), as the converter writes.
        for o in 0..out {
            for t in k..nb * Q4_BLOCK {
                let at = (o * nb + t / Q4_BLOCK) * Q4_BLOCK_BYTES + t % Q4_BLOCK_BYTES;
                let b = &mut nibbles[at];
                *b = if t % Q4_BLOCK < Q4_BLOCK_BYTES { (*b & 0xf0) | 8 } else { (*b & 0x0f) | 0x80 };
            }
        }
        (x, scales, nibbles)
    }

    /// The decoding: every nibble in both halves of a byte.
    #[test]
    fn values_are_nibbles_minus_eight() {
        let mut block = [0u8; Q4_BLOCK_BYTES];
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j as u8) | ((15 - j as u8) << 4);
        }
        let v = decode(&block);
        for (t, &got) in v.iter().enumerate() {
            let want = if t < 16 { t as i8 - 8 } else { (15 - (t - 16)) as i8 - 8 };
            assert_eq!(got, want, "value {t}");
            assert_eq!(value(&block, t), want, "value {t}");
        }
    }

    /// The reference against the widened weights in f64: the error is the activations'
    /// quantisation alone (half a step of `s_x` per value, times the weight).
    #[test]
    fn reference_is_close_to_the_exact_product() {
        let (rows, out, k) = (3, 5, 77);
        let (x, scales, nibbles) = operands(rows, out, k, 7);
        let w = Q4Rows { scales: &scales, nibbles: &nibbles, blocks: k.div_ceil(Q4_BLOCK) };
        let mut y = std::vec![0.0f32; rows * out];
        matmul_reference(&x, w, &mut y, Dims::dense(rows, out, k));
        for r in 0..rows {
            let row = &x[r * k..(r + 1) * k];
            let sx = row.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for o in 0..out {
                let mut exact = 0.0f64;
                let mut bound = 0.0f64;
                for (t, &xv) in row.iter().enumerate() {
                    let i = o * w.blocks + t / Q4_BLOCK;
                    let bytes: &[u8; 16] = nibbles[i * 16..(i + 1) * 16].try_into().unwrap();
                    let wv = f64::from(scales[i].to_f32()) * f64::from(value(bytes, t % Q4_BLOCK));
                    exact += f64::from(xv) * wv;
                    bound += 0.5 * f64::from(sx) * wv.abs();
                }
                let got = f64::from(y[r * out + o]);
                assert!((got - exact).abs() <= bound * 1.01 + 1e-6, "row {r} out {o}: {got} against {exact}");
            }
        }
    }

    /// Every kernel of this build, bit for bit against the reference, over shapes that reach
    /// partial blocks, edge tiles, several chunks and strided operands.
    #[test]
    fn kernels_equal_the_reference_bit_for_bit() {
        let mut shapes = Vec::new();
        for &rows in &[1, 2, 3, 4, 5, 7, 9, 13] {
            for &out in &[1, 3, 4, 5, 16, 17, 33] {
                for &k in &[1, 5, 31, 32, 33, 64, 85, 100, 256] {
                    shapes.push((rows, out, k));
                }
            }
        }
        // Rows longer than a chunk of every driver's buffer.
        shapes.push((5, 7, 4000));
        shapes.push((82, 20, 512));
        type Kernel = fn(&[f32], Q4Rows<'_>, &mut [f32], Dims);
        let mut kernels: Vec<(&str, Kernel)> = std::vec![
            ("portable", |x, w, y, d| unsafe { matmul_portable(x, w, y, d) }),
            ("portable 4", |x, w, y, d| unsafe { matmul_blocks::<Portable<4>>(x, w, y, d) }),
            ("dispatch", |x, w, y, d| super::super::matmul_q4(x, w, y, d).unwrap()),
        ];
        #[cfg(target_arch = "x86_64")]
        kernels.push(("sse2", |x, w, y, d| unsafe { super::super::q8::matmul_q4_sse2(x, w, y, d) }));
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            kernels.push(("avx2", |x, w, y, d| unsafe { super::super::q8::matmul_q4_avx2(x, w, y, d) }));
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            kernels.push(("neon sdot", |x, w, y, d| unsafe { super::super::neon::matmul_q4_dot(x, w, y, d) }));
        } else {
            std::eprintln!("SKIPPED: this core has no dot product; its int4 kernel is not checked here");
        }
        for (seed, &(rows, out, k)) in shapes.iter().enumerate() {
            // Strided activations and outputs.
            let (xs, ys) = (k + 3, out + 2);
            let (x_dense, scales, nibbles) = operands(rows, out, k, seed as u32 * 3 + 11);
            let mut x = std::vec![f32::NAN; rows * xs];
            for r in 0..rows {
                x[r * xs..r * xs + k].copy_from_slice(&x_dense[r * k..(r + 1) * k]);
            }
            let w = Q4Rows { scales: &scales, nibbles: &nibbles, blocks: k.div_ceil(Q4_BLOCK) };
            let d = Dims { rows, out, k, xs, ws: k, ys, accumulate: false };
            let mut want = std::vec![-1.0f32; rows * ys];
            matmul_reference(&x, w, &mut want, d);
            for (name, kernel) in &kernels {
                let mut got = std::vec![-1.0f32; rows * ys];
                kernel(&x, w, &mut got, d);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{name}: rows {rows} out {out} k {k}, value {i}: {g} against {e}"
                    );
                }
            }
        }
    }
}
