//! x86-64 matrix products: AVX-512F and AVX2 + FMA + F16C micro-kernels.
//!
//! Both compute tiles of `Y = X · Wᵀ` in the dot-product form (the weights stay in their stored
//! `[out, in]` layout, read in place): an `MR × NR` tile of outputs keeps one vector accumulator
//! per output, loads `MR` activation rows and `NR` weight rows per step along `k` and issues
//! `MR · NR` fused multiply-adds, then reduces each accumulator horizontally. Weight elements
//! are widened to f32 in registers (F16C's `vcvtph2ps` for f16, a 16-bit shift for bf16).
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; every load and store
//! below stays inside those ranges (the `k` tail goes through a zero-padded stack copy).

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::Dims as Shape;

/// Loads of weight elements as f32 vectors.
pub trait X86Element: Copy + Default {
    /// 16 elements from `p`.
    unsafe fn load16(p: *const Self) -> __m512;
    /// 8 elements from `p`.
    unsafe fn load8(p: *const Self) -> __m256;
}

impl X86Element for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
}

impl X86Element for f16 {
    #[inline(always)]
    unsafe fn load16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
}

impl X86Element for bf16 {
    #[inline(always)]
    unsafe fn load16(p: *const bf16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())), 16))
    }
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())), 16))
    }
}

/// Copies the last `n < L` elements of a row into a zero-padded buffer, so the tail of `k` is
/// one more full-width step.
#[inline(always)]
unsafe fn tail<T: Copy + Default, const L: usize>(p: *const T, n: usize) -> [T; L] {
    let mut buf = [T::default(); L];
    core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
    buf
}

#[inline(always)]
unsafe fn tile16<E: X86Element, const MR: usize, const NR: usize>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let full = s.k / 16 * 16;
    let mut kk = 0;
    while kk < full {
        let xv: [__m512; MR] = core::array::from_fn(|i| _mm512_loadu_ps(x.add(i * s.xs + kk)));
        let wv: [__m512; NR] = core::array::from_fn(|j| E::load16(w.add(j * s.ws + kk)));
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(x, w, *a);
            }
        }
        kk += 16;
    }
    if kk < s.k {
        let n = s.k - kk;
        let xv: [__m512; MR] = core::array::from_fn(|i| {
            let b = tail::<f32, 16>(x.add(i * s.xs + kk), n);
            _mm512_loadu_ps(b.as_ptr())
        });
        let wv: [__m512; NR] = core::array::from_fn(|j| {
            let b = tail::<E, 16>(w.add(j * s.ws + kk), n);
            E::load16(b.as_ptr())
        });
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(x, w, *a);
            }
        }
    }
    if MR == 4 && NR == 4 {
        // 16 sums at once: transpose-and-add instead of 16 horizontal reductions.
        let mut groups = [_mm512_setzero_ps(); 4];
        for (g, row) in groups.iter_mut().zip(acc.iter()) {
            if let [a, b, c, d] = row[..] {
                *g = reduce4(a, b, c, d);
            }
        }
        let t0 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(groups[0], groups[1]),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(groups[0], groups[1]),
        );
        let t1 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(groups[2], groups[3]),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(groups[2], groups[3]),
        );
        let sums =
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(t0, t1), _mm512_shuffle_f32x4::<0b11_01_11_01>(t0, t1));
        let lanes = [
            _mm512_extractf32x4_ps::<0>(sums),
            _mm512_extractf32x4_ps::<1>(sums),
            _mm512_extractf32x4_ps::<2>(sums),
            _mm512_extractf32x4_ps::<3>(sums),
        ];
        for (i, lane) in lanes.into_iter().enumerate() {
            let p = y.add(i * s.ys);
            let v = if s.accumulate { _mm_add_ps(_mm_loadu_ps(p), lane) } else { lane };
            _mm_storeu_ps(p, v);
        }
        return;
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            let p = y.add(i * s.ys + j);
            let v = _mm512_reduce_add_ps(a);
            *p = if s.accumulate { *p + v } else { v };
        }
    }
}

/// Per 128-bit lane `l`, the partial sums `[Σa, Σb, Σc, Σd]` of lane `l` of four vectors.
#[inline(always)]
unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m512 {
    let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(ab, cd), _mm512_shuffle_ps::<0b11_10_11_10>(ab, cd))
}

/// `Y = X · Wᵀ` with AVX-512F.
#[target_feature(enable = "avx512f,fma,f16c")]
pub unsafe fn matmul_avx512<E: X86Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
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
                (true, true) => tile16::<E, MR, NR>(xp, wp, yp, s),
                (true, false) => tile16::<E, MR, 1>(xp, wp, yp, s),
                (false, true) => tile16::<E, 1, NR>(xp, wp, yp, s),
                (false, false) => tile16::<E, 1, 1>(xp, wp, yp, s),
            }
            r += if tall { MR } else { 1 };
        }
        o += if wide { NR } else { 1 };
    }
}

#[inline(always)]
unsafe fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn tile8<E: X86Element, const MR: usize, const NR: usize>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let full = s.k / 8 * 8;
    let mut kk = 0;
    while kk < full {
        let xv: [__m256; MR] = core::array::from_fn(|i| _mm256_loadu_ps(x.add(i * s.xs + kk)));
        let wv: [__m256; NR] = core::array::from_fn(|j| E::load8(w.add(j * s.ws + kk)));
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = _mm256_fmadd_ps(x, w, *a);
            }
        }
        kk += 8;
    }
    if kk < s.k {
        let n = s.k - kk;
        let xv: [__m256; MR] = core::array::from_fn(|i| {
            let b = tail::<f32, 8>(x.add(i * s.xs + kk), n);
            _mm256_loadu_ps(b.as_ptr())
        });
        let wv: [__m256; NR] = core::array::from_fn(|j| {
            let b = tail::<E, 8>(w.add(j * s.ws + kk), n);
            E::load8(b.as_ptr())
        });
        for (row, &x) in acc.iter_mut().zip(&xv) {
            for (a, &w) in row.iter_mut().zip(&wv) {
                *a = _mm256_fmadd_ps(x, w, *a);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            let p = y.add(i * s.ys + j);
            let v = hsum8(a);
            *p = if s.accumulate { *p + v } else { v };
        }
    }
}

/// `Y = X · Wᵀ` with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn matmul_avx2<E: X86Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    const MR: usize = 4;
    const NR: usize = 2;
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
                (true, true) => tile8::<E, MR, NR>(xp, wp, yp, s),
                (true, false) => tile8::<E, MR, 1>(xp, wp, yp, s),
                (false, true) => tile8::<E, 1, NR>(xp, wp, yp, s),
                (false, false) => tile8::<E, 1, 1>(xp, wp, yp, s),
            }
            r += if tall { MR } else { 1 };
        }
        o += if wide { NR } else { 1 };
    }
}

/// The portable product's arithmetic (`super::dot`: eight lanes, each a multiply then an add
/// per element, never fused; the tree `((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7))`, then the tail in
/// order) in AVX2 registers, four weight rows at a time: the portable loop's bits, faster.
///
/// # Safety
/// The CPU has AVX2; `super::check_matmul` passed for `s`.
#[target_feature(enable = "avx2")]
pub unsafe fn same_order_avx2(x: *const f32, w: *const f32, y: *mut f32, s: Shape) {
    let full = s.k / 8 * 8;
    let mut o = 0;
    while o < s.out {
        let n = 4.min(s.out - o);
        // Missing rows of an edge block repeat the last one (computed, then dropped).
        let wr: [*const f32; 4] = core::array::from_fn(|j| w.add((o + j.min(n - 1)) * s.ws));
        for r in 0..s.rows {
            let xr = x.add(r * s.xs);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut kk = 0;
            while kk < full {
                let xv = _mm256_loadu_ps(xr.add(kk));
                for (a, &p) in acc.iter_mut().zip(&wr) {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_loadu_ps(p.add(kk)), xv));
                }
                kk += 8;
            }
            for (j, (a, &p)) in acc.iter().zip(&wr).enumerate().take(n) {
                let b = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let h = _mm_hadd_ps(b, b);
                let v = _mm_cvtss_f32(h) + _mm_cvtss_f32(_mm_movehdup_ps(h));
                let mut tail = 0.0f32;
                for i in full..s.k {
                    tail += *p.add(i) * *xr.add(i);
                }
                let out = y.add(r * s.ys + o + j);
                *out = if s.accumulate { *out + (v + tail) } else { v + tail };
            }
        }
        o += n;
    }
}
