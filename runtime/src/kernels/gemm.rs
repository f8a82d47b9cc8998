//! The f32 product `Y = X · Wᵀ` on SIMD cores, written once over a small per-ISA trait
//! ([`Lanes`]): outer-product register tiles over packed weight panels, the BLIS / XNNPACK
//! design.
//!
//! The weights stay in the blob in their stored `[out, in]` layout. A panel of `NR` weight
//! rows and `KC` values of `k` is packed on the fly into a stack buffer, transposed so that
//! step `t` of the panel is `NR` consecutive f32 (`panel[t·NR + j] = W[o + j][k0 + t]`, f16 and
//! bf16 widened once here instead of once per activation row). An `MR × NR` tile of outputs
//! then keeps `MR · NR / L` vector accumulators: per step it loads `NR / L` panel vectors,
//! broadcasts one activation per row and issues `MR · NR / L` multiply-adds (fused but on SSE2) — no
//! horizontal sums, and the activations are read in place. A panel is packed once and passed
//! by every row of the product, so packing costs `1 / rows` of the arithmetic.
//!
//! Loops: `k` in blocks of `KC` (the panel stays in L1, or L2 for AVX-512's 64 KiB), weight
//! panels, row tiles. The first
//! block of `k` stores (or adds, with `accumulate`), the later ones add: sums are per block,
//! then across blocks, so f32 results differ from the dot-product order in the last bits.
//! Edge tiles read the last valid activation row again and pack zero weight rows; only valid
//! outputs are stored.
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; `matmul` reads rows
//! `< d.rows` of `k` values of `x`, rows `< d.out` of `w`, writes rows `< d.rows` of `d.out`
//! values of `y`.

use super::prefetch::Prefetch;
use super::{Dims, Element};

/// `k` values per packed panel: the whole `k` of the 27M model's products but its MLP's down
/// projection, one block in place of two. Measured on a Zen 4 (82 × 512 · (1536 × 512)ᵀ): the
/// AVX-512 tile 1.32 ms at 512 against 1.44 ms at 256 and 1.55 ms at 128, though its panel
/// (64 KiB) no longer fits L1; AVX2 within noise of 256.
pub(crate) const KC: usize = 512;
/// The widest panel of this ISA's tiles (outputs per tile): it sizes the stack buffer.
#[cfg(target_arch = "x86_64")]
pub(crate) const MAX_NR: usize = 32;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const MAX_NR: usize = 16;

/// The vector operations of one ISA that the f32 product needs, and its panel packing.
pub(crate) trait Lanes {
    type V: Copy;
    /// f32 values per vector.
    const L: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// `*p` in every lane.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// `acc + a · b`, fused.
    unsafe fn fma(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Packs `n ≤ nr` weight rows `ws` apart, `kc` values each from `w`, into
    /// `panel[t·nr + j]`; rows `n..nr` are zeros. `nr` is a multiple of 8.
    unsafe fn pack<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32);
    /// Whether [`Lanes::prefetch`] does anything (else the product keeps no prefetch cursor).
    const PREFETCH: bool = false;
    /// Asks for the cache line at `p` (a hint: no fault, no effect on results).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
}

/// A packed panel (cache-line aligned: the tile's panel loads never split a line).
#[repr(C, align(64))]
struct Panel([f32; MAX_NR * KC]);

/// Where a product's weights are: rows of `E` in their stored `[out, in]` layout (`ws`
/// apart), packed a panel at a time, or f32 already in the converter's 16-row panels
/// ([`crate::blob::DType::F32Panels`]: row `r`, column `c` at `(r / 16)·16·k + 16·c + r % 16`).
#[derive(Clone, Copy)]
pub(crate) enum Weights<E> {
    Rows(*const E),
    Panels(*const f32),
}

/// `Y = X · Wᵀ` with `MR`-row tiles of `NV` vectors of outputs.
///
/// # Safety
/// The CPU has the features `S` uses (the caller is compiled with them); see the module.
#[inline(always)]
pub(crate) unsafe fn matmul<S: Lanes, E: Element, const MR: usize, const NV: usize>(
    x: *const f32,
    w: *const E,
    y: *mut f32,
    d: Dims,
) {
    run::<S, E, MR, NV>(x, Weights::Rows(w), y, d)
}

/// `Y = X · Wᵀ` for `W` stored as [`crate::blob::DType::F32Panels`]: the loops, blocks of `k`
/// and tiles of [`matmul`], so the same sums in the same order and the same bits, but the tiles
/// read the panels in place and nothing is packed. `d.ws` is not read: panel rows are `d.k`
/// long.
///
/// # Safety
/// As [`matmul`]; `w` holds `⌈d.out / 16⌉ · 16 · d.k` values (`super::check_panels`).
#[inline(always)]
pub(crate) unsafe fn matmul_panels<S: Lanes, const MR: usize, const NV: usize>(
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    d: Dims,
) {
    run::<S, f32, MR, NV>(x, Weights::Panels(w), y, d)
}

/// The loops of both: blocks of `k`, panels of `NV·L` outputs, tiles of `MR` rows. A row-major
/// panel is packed into the stack buffer; a stored panel is read where it is: a tile's vector
/// `v` reads outputs `o + v·L ..`, which lie in stored panel `(o + v·L) / 16`, and a last tile
/// wider than the stored panels that remain (AVX-512's 32 outputs over one panel of 16) is
/// copied into the buffer, zeros after.
#[inline(always)]
unsafe fn run<S: Lanes, E: Element, const MR: usize, const NV: usize>(
    x: *const f32,
    w: Weights<E>,
    y: *mut f32,
    d: Dims,
) {
    const P: usize = crate::blob::F32_PANEL_ROWS;
    let nr = NV * S::L;
    const { assert!(NV * S::L <= MAX_NR && (NV * S::L).is_multiple_of(8) && P.is_multiple_of(S::L)) };
    let held = d.out.div_ceil(P) * P;
    // Not zeroed: `pack` and the copy write every value the tiles read (steps < kc, columns < nr).
    let mut buffer = core::mem::MaybeUninit::<Panel>::uninit();
    let buffer = buffer.as_mut_ptr().cast::<f32>();
    let packed = |panel: *const f32| (panel, nr, core::array::from_fn(|v| v * S::L));
    let mut k0 = 0;
    while k0 < d.k {
        let kc = KC.min(d.k - k0);
        let add = d.accumulate || k0 > 0;
        let mut o = 0;
        while o < d.out {
            let n = nr.min(d.out - o);
            let (panels, mut next): ((*const f32, usize, [usize; NV]), Prefetch) = match w {
                Weights::Rows(w) => {
                    S::pack(w.add(o * d.ws + k0), d.ws, n, kc, nr, buffer);
                    (packed(buffer), Prefetch::next_panel(w, &d, o, k0, nr, kc))
                }
                Weights::Panels(w) if o + nr <= held => {
                    let lane = o % P;
                    let at = |v: usize| (lane + v * S::L) / P * P * d.k + (lane + v * S::L) % P - lane;
                    let start = w.add(o / P * P * d.k + k0 * P + lane);
                    ((start, P, core::array::from_fn(at)), Prefetch::next_panels(w, &d, o, k0, nr, kc))
                }
                Weights::Panels(w) => {
                    for t in 0..kc {
                        for j in 0..nr {
                            let c = o + j;
                            *buffer.add(t * nr + j) =
                                if c < held { *w.add(crate::blob::f32_panel_index(c, k0 + t, d.k)) } else { 0.0 };
                        }
                    }
                    (packed(buffer), Prefetch::next_panels(w, &d, o, k0, nr, kc))
                }
            };
            let mut r = 0;
            while r < d.rows {
                let m = MR.min(d.rows - r);
                let out = Out { y: y.add(r * d.ys + o), ys: d.ys, rows: m, cols: n, add };
                tile::<S, MR, NV>(x.add(r * d.xs + k0), d.xs, panels, kc, out, &mut next);
                r += MR;
            }
            o += nr;
        }
        k0 += kc;
    }
}

/// Where a tile's results go: `rows × cols` valid outputs from `y`, rows `ys` apart, stored or
/// added.
#[derive(Clone, Copy)]
struct Out {
    y: *mut f32,
    ys: usize,
    rows: usize,
    cols: usize,
    add: bool,
}

/// One `MR × NV·L` tile over `kc` steps of a panel `(start, step, offsets)`: vector `v` of
/// step `t` at `start + t·step + offsets[v]` (a packed panel: `step = NV·L`, `offsets[v] =
/// v·L`); rows past `out.rows` repeat the last valid one (computed, not stored).
#[inline(always)]
unsafe fn tile<S: Lanes, const MR: usize, const NV: usize>(
    x: *const f32,
    xs: usize,
    (panel, step, offsets): (*const f32, usize, [usize; NV]),
    kc: usize,
    out: Out,
    next: &mut Prefetch,
) {
    let rows: [*const f32; MR] = core::array::from_fn(|i| x.add(i.min(out.rows - 1) * xs));
    let mut acc = [[S::zero(); NV]; MR];
    let mut p = panel;
    for t in 0..kc {
        let b: [S::V; NV] = core::array::from_fn(|v| S::load(p.add(*offsets.as_ptr().add(v))));
        for (row, &xr) in acc.iter_mut().zip(&rows) {
            let a = S::splat(xr.add(t));
            for (c, &bv) in row.iter_mut().zip(&b) {
                *c = S::fma(*c, a, bv);
            }
        }
        p = p.add(step);
        if S::PREFETCH {
            next.step(S::prefetch);
        }
    }
    for (i, row) in acc.iter().enumerate().take(out.rows) {
        let yr = out.y.add(i * out.ys);
        for (v, &c) in row.iter().enumerate() {
            let col = v * S::L;
            if col + S::L <= out.cols {
                let dst = yr.add(col);
                S::store(dst, if out.add { S::add(S::load(dst), c) } else { c });
            } else if col < out.cols {
                let mut lanes = [0.0f32; MAX_NR];
                S::store(lanes.as_mut_ptr(), c);
                for (j, &l) in lanes.iter().enumerate().take(out.cols - col) {
                    let dst = yr.add(col + j);
                    *dst = if out.add { *dst + l } else { l };
                }
            }
        }
    }
}

/// The scalar part of a panel's packing: rows `vec_rows..n` at every step, rows `0..vec_rows` at
/// the steps `vec_steps..kc` (those the ISA's transposes did not cover), and zeros in rows
/// `n..nr`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack_rest<E: Element>(
    w: *const E,
    ws: usize,
    n: usize,
    vec_rows: usize,
    vec_steps: usize,
    kc: usize,
    nr: usize,
    panel: *mut f32,
) {
    for t in 0..kc {
        let step = panel.add(t * nr);
        let from = if t < vec_steps { vec_rows } else { 0 };
        for j in from..n {
            *step.add(j) = (*w.add(j * ws + t)).to_f32();
        }
        for j in n..nr {
            *step.add(j) = 0.0;
        }
    }
}
