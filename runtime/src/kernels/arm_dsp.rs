//! Cortex-M micro-kernels of the int8 arithmetic (`super::int8`) on the DSP extension (M4, M7,
//! M33 with DSP: `thumbv7em`, `thumbv8m.main` + `dsp`), CMSIS-NN's inner loop: `SMLAD` does
//! two 16 × 16-bit multiply-adds into a 32-bit sum, `SXTB16` sign-extends bytes 0 and 2 of a
//! word (with `ROR #8`, bytes 1 and 3) into two 16-bit halves.
//!
//! The activations are packed once as `i16`, and each group of four reordered
//! `x0 x2 x1 x3` ([`Dsp::prepare`]), so that a word of weights `w0 w1 w2 w3` needs two
//! `SXTB16` and two `SMLAD` against two plain word loads of activations: per four weights and
//! an activation row, one load, two extends (shared by the tile's rows) and two `SMLAD`. The
//! sums are exact (`|q·w| ≤ 127 · 128`, at most `int8::MAX_EXACT_K` terms), so the results are
//! the portable kernel's bits.
//!
//! SAFETY (whole module): callers (`int8::matmul`) pass packed rows of `kp` values (a multiple
//! of 64) and weight rows with at least `k` readable values; weights are read one unaligned
//! word at a time below `k`, the last partial word through a zero-padded copy.

use core::arch::asm;

use super::int8::Int8Tile;

/// Bytes 0 and 2 of `x`, sign-extended, as two halves.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r;
    // SAFETY: a register-only instruction of the DSP extension, which the target has.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// Bytes 1 and 3 of `x`, sign-extended, as two halves.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r;
    // SAFETY: as `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `acc + lo(a)·lo(b) + hi(a)·hi(b)` (signed halves).
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: as `sxtb16`; `smlad` sets only the Q flag, which nothing reads.
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc,
            options(pure, nomem, nostack))
    };
    r
}

/// A tile of `MR` activation rows × `NR` weight rows.
pub struct Dsp<const MR: usize, const NR: usize>;

impl<const MR: usize, const NR: usize> Int8Tile for Dsp<MR, NR> {
    const MR: usize = MR;
    const NR: usize = NR;
    const BYTES: usize = 2;

    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let v = core::slice::from_raw_parts_mut(row.cast::<i16>(), kp);
        for g in v.chunks_exact_mut(4) {
            g.swap(1, 2);
        }
    }

    #[inline(always)]
    unsafe fn tile(_: &[i32; 4], q: *const u8, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        let q = q.cast::<u32>();
        let mut acc = [[0i32; NR]; MR];
        let full = k / 4 * 4;
        let mut t = 0;
        while t < full {
            let ws: [u32; NR] = core::array::from_fn(|j| core::ptr::read_unaligned(w[j].add(t).cast::<u32>()));
            step::<MR, NR>(&mut acc, q, kp, t, &ws);
            t += 4;
        }
        if t < k {
            let ws: [u32; NR] = core::array::from_fn(|j| {
                let mut b = [0u8; 4];
                core::ptr::copy_nonoverlapping(w[j].add(t).cast::<u8>(), b.as_mut_ptr(), k - t);
                u32::from_le_bytes(b)
            });
            step::<MR, NR>(&mut acc, q, kp, t, &ws);
        }
        let mut out = [[0i32; 4]; 4];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, &a) in o.iter_mut().zip(a) {
                *o = a;
            }
        }
        out
    }
}

/// Four values of `k` at `t`: `acc[i][j] += Σ q_i · w_j` over them.
#[inline(always)]
unsafe fn step<const MR: usize, const NR: usize>(
    acc: &mut [[i32; NR]; MR],
    q: *const u32,
    kp: usize,
    t: usize,
    ws: &[u32; NR],
) {
    let even: [u32; NR] = core::array::from_fn(|j| sxtb16(ws[j]));
    let odd: [u32; NR] = core::array::from_fn(|j| sxtb16_ror8(ws[j]));
    for (i, row) in acc.iter_mut().enumerate() {
        // Packed row i, values t..t+4 as `x0 x2 | x1 x3`: two words (kp/2 words a row).
        let x02 = *q.add((i * kp + t) / 2);
        let x13 = *q.add((i * kp + t) / 2 + 1);
        for ((a, &e), &o) in row.iter_mut().zip(&even).zip(&odd) {
            *a = smlad(x13, o, smlad(x02, e, *a));
        }
    }
}
