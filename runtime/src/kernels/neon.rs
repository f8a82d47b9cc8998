//! aarch64 matrix products with NEON: the same dot-product tiles as the x86 kernels, four lanes
//! wide, with fused multiply-adds.
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; loads and stores stay
//! inside them (the `k` tail goes through a zero-padded stack copy).

use core::arch::aarch64::*;

use half::{bf16, f16};

use super::Dims as Shape;

/// Loads of weight elements as f32 vectors.
pub trait NeonElement: Sized {
    /// 4 elements from `p`.
    unsafe fn load4(p: *const Self) -> float32x4_t;
}

impl NeonElement for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
}

impl NeonElement for f16 {
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> float32x4_t {
        let v: [f32; 4] = core::array::from_fn(|i| (*p.add(i)).to_f32());
        vld1q_f32(v.as_ptr())
    }
}

impl NeonElement for bf16 {
    #[inline(always)]
    unsafe fn load4(p: *const bf16) -> float32x4_t {
        vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(vld1_u16(p.cast()))))
    }
}

#[inline(always)]
unsafe fn tail<T: Copy + Default>(p: *const T, n: usize) -> [T; 4] {
    let mut buf = [T::default(); 4];
    core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
    buf
}

#[inline(always)]
unsafe fn tile<E: NeonElement + Copy + Default, const MR: usize, const NR: usize>(
    x: *const f32,
    w: *const E,
    y: *mut f32,
    s: Shape,
) {
    let mut acc = [[vdupq_n_f32(0.0); NR]; MR];
    let full = s.k / 4 * 4;
    let mut kk = 0;
    while kk < full {
        let xv: [float32x4_t; MR] = core::array::from_fn(|i| vld1q_f32(x.add(i * s.xs + kk)));
        let wv: [float32x4_t; NR] = core::array::from_fn(|j| E::load4(w.add(j * s.ws + kk)));
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = vfmaq_f32(*a, x, w);
            }
        }
        kk += 4;
    }
    if kk < s.k {
        let n = s.k - kk;
        let xv: [float32x4_t; MR] = core::array::from_fn(|i| vld1q_f32(tail(x.add(i * s.xs + kk), n).as_ptr()));
        let wv: [float32x4_t; NR] = core::array::from_fn(|j| E::load4(tail(w.add(j * s.ws + kk), n).as_ptr()));
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = vfmaq_f32(*a, x, w);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            let p = y.add(i * s.ys + j);
            let v = vaddvq_f32(a);
            *p = if s.accumulate { *p + v } else { v };
        }
    }
}

/// `Y = X · Wᵀ` with NEON.
pub unsafe fn matmul<E: NeonElement + Copy + Default>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    const MR: usize = 4;
    const NR: usize = 4;
    // Weight rows outside, activation rows inside: a tile of weight rows is read from memory
    // once and stays in L1 while every activation row passes it.
    let mut o = 0;
    while o < s.out {
        let wide = s.out - o >= NR;
        let mut r = 0;
        while r < s.rows {
            let tall = s.rows - r >= MR;
            let (xp, wp, yp) = (x.add(r * s.xs), w.add(o * s.ws), y.add(r * s.ys + o));
            match (tall, wide) {
                (true, true) => tile::<E, MR, NR>(xp, wp, yp, s),
                (true, false) => tile::<E, MR, 1>(xp, wp, yp, s),
                (false, true) => tile::<E, 1, NR>(xp, wp, yp, s),
                (false, false) => tile::<E, 1, 1>(xp, wp, yp, s),
            }
            r += if tall { MR } else { 1 };
        }
        o += if wide { NR } else { 1 };
    }
}
