//! x86-64 matrix products: the vector operations of AVX2 + FMA + F16C and of AVX-512F for the
//! one f32 micro-kernel (`super::gemm`: outer-product tiles over packed weight panels), the
//! packing transposes, and the fixed-order AVX2 loop of [`same_order_avx2`].
//!
//! Tiles: SSE2 (the baseline) 6 rows × 8 outputs, AVX2 6 rows × 16 outputs (12 accumulators of its 16 registers, 2 panel vectors, one
//! broadcast), AVX-512 12 rows × 32 outputs (24 of 32). Weight elements are widened to f32 while
//! a panel is packed (F16C's `vcvtph2ps` for f16, a 16-bit shift for bf16), eight at a time,
//! then transposed eight by eight in registers; at the SSE2 baseline four at a time (f16 with
//! integer operations), transposed four by four.
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; every load and store
//! below stays inside those ranges.

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::gemm::{self, Lanes};
use super::{Dims as Shape, Element};

/// Loads of weight elements as f32 vectors.
pub trait X86Element: Copy + Default {
    /// 8 elements from `p` (AVX2 and F16C).
    unsafe fn load8(p: *const Self) -> __m256;
    /// 4 elements from `p` with SSE2 alone.
    unsafe fn load4(p: *const Self) -> __m128;
}

impl X86Element for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> __m128 {
        _mm_loadu_ps(p)
    }
}

impl X86Element for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> __m128 {
        halves_to_f32_sse2(_mm_loadl_epi64(p.cast()))
    }
}

impl X86Element for bf16 {
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())), 16))
    }
    #[inline(always)]
    unsafe fn load4(p: *const bf16) -> __m128 {
        // Each value as the high half of a 32-bit lane: the 16-bit shift of `load8`.
        _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(p.cast())))
    }
}

/// The four halves in the low 64 bits of `h` as f32, with SSE2's integer operations (the
/// baseline has no F16C): the bits of `half::f16::to_f32` for every input (a unit test runs
/// all 65,536). Exponent and mantissa move into place as an f32 whose exponent is the half's,
/// and one multiply by 2^112 rebiases it, subnormal halves included (exact: a power of two);
/// infinities and NaNs get the all-ones exponent, NaNs also the quiet bit, as `half` sets it.
/// (F. Giesen's conversion; with the MXCSR's denormals-are-zero set, which nothing here does,
/// subnormal halves would become zeros.)
#[inline(always)]
unsafe fn halves_to_f32_sse2(h: __m128i) -> __m128 {
    let h = _mm_unpacklo_epi16(h, _mm_setzero_si128());
    let magnitude = _mm_and_si128(h, _mm_set1_epi32(0x7fff));
    let sign = _mm_slli_epi32::<16>(_mm_xor_si128(h, magnitude));
    let scaled = _mm_mul_ps(
        _mm_castsi128_ps(_mm_slli_epi32::<13>(magnitude)),
        _mm_castsi128_ps(_mm_set1_epi32((127 + 112) << 23)),
    );
    // Infinity and NaN (magnitude ≥ 0x7c00): the exponent all ones; NaN (> 0x7c00): the quiet bit.
    let special = _mm_and_si128(_mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7bff)), _mm_set1_epi32(0x7f80_0000));
    let quiet = _mm_and_si128(_mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7c00)), _mm_set1_epi32(0x0040_0000));
    _mm_or_ps(scaled, _mm_castsi128_ps(_mm_or_si128(_mm_or_si128(special, quiet), sign)))
}

/// Columns of an 8 × 8 block: `out[q][i] = r[i][q]`.
#[inline(always)]
pub(super) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
    // t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]; t1 the same of columns 2, 3 | 6, 7.
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    // u0 = column 0 of rows 0–3 | column 4 of rows 0–3; u1 columns 1 | 5, u2 2 | 6, u3 3 | 7;
    // v0–v3 the same of rows 4–7.
    const LO: i32 = 0b01_00_01_00;
    const HI: i32 = 0b11_10_11_10;
    let (u0, u1) = (_mm256_shuffle_ps::<LO>(t0, t2), _mm256_shuffle_ps::<HI>(t0, t2));
    let (u2, u3) = (_mm256_shuffle_ps::<LO>(t1, t3), _mm256_shuffle_ps::<HI>(t1, t3));
    let (v0, v1) = (_mm256_shuffle_ps::<LO>(t4, t6), _mm256_shuffle_ps::<HI>(t4, t6));
    let (v2, v3) = (_mm256_shuffle_ps::<LO>(t5, t7), _mm256_shuffle_ps::<HI>(t5, t7));
    [
        _mm256_permute2f128_ps::<0x20>(u0, v0),
        _mm256_permute2f128_ps::<0x20>(u1, v1),
        _mm256_permute2f128_ps::<0x20>(u2, v2),
        _mm256_permute2f128_ps::<0x20>(u3, v3),
        _mm256_permute2f128_ps::<0x31>(u0, v0),
        _mm256_permute2f128_ps::<0x31>(u1, v1),
        _mm256_permute2f128_ps::<0x31>(u2, v2),
        _mm256_permute2f128_ps::<0x31>(u3, v3),
    ]
}

/// The panel packing of both levels: groups of 8 rows × 8 steps widened and transposed in
/// registers, the rest (a last partial group of rows, the steps past the last group of 8, the
/// zero rows) by `gemm::pack_rest`.
#[inline(always)]
unsafe fn pack8<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
    let (rows8, steps8) = (n / 8 * 8, kc / 8 * 8);
    let mut j0 = 0;
    while j0 < rows8 {
        let mut t0 = 0;
        while t0 < steps8 {
            let rows: [__m256; 8] = core::array::from_fn(|i| E::load8(w.add((j0 + i) * ws + t0)));
            for (q, c) in transpose8(rows).into_iter().enumerate() {
                _mm256_storeu_ps(panel.add((t0 + q) * nr + j0), c);
            }
            t0 += 8;
        }
        j0 += 8;
    }
    gemm::pack_rest(w, ws, n, rows8, steps8, kc, nr, panel);
}

/// The SSE2 panel packing: groups of 4 rows × 4 steps widened ([`X86Element::load4`]) and
/// transposed in registers, the rest by `gemm::pack_rest`.
#[inline(always)]
unsafe fn pack4<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
    let (rows4, steps4) = (n / 4 * 4, kc / 4 * 4);
    let mut j0 = 0;
    while j0 < rows4 {
        let mut t0 = 0;
        while t0 < steps4 {
            let [r0, r1, r2, r3]: [__m128; 4] = core::array::from_fn(|i| E::load4(w.add((j0 + i) * ws + t0)));
            // t0 = r0[0] r1[0] r0[1] r1[1], t1 = r0[2] r1[2] r0[3] r1[3]; t2, t3 of rows 2, 3.
            let (t0v, t1v) = (_mm_unpacklo_ps(r0, r1), _mm_unpackhi_ps(r0, r1));
            let (t2v, t3v) = (_mm_unpacklo_ps(r2, r3), _mm_unpackhi_ps(r2, r3));
            let columns =
                [_mm_movelh_ps(t0v, t2v), _mm_movehl_ps(t2v, t0v), _mm_movelh_ps(t1v, t3v), _mm_movehl_ps(t3v, t1v)];
            for (q, c) in columns.into_iter().enumerate() {
                _mm_storeu_ps(panel.add((t0 + q) * nr + j0), c);
            }
            t0 += 4;
        }
        j0 += 4;
    }
    gemm::pack_rest(w, ws, n, rows4, steps4, kc, nr, panel);
}

/// AVX2 + FMA + F16C.
pub struct Avx2;

impl Lanes for Avx2 {
    type V = __m256;
    const L: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m256 {
        _mm256_broadcast_ss(&*p)
    }
    #[inline(always)]
    unsafe fn fma(acc: __m256, a: __m256, b: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    // Into L2: the 6 × 16 tiles' panel (32 KiB) and activation rows already fill L1. On a Zen 4
    // the 27M f32 segment took 156 ms with T1 against 169 ms with T0; AVX-512's 64 KiB panel
    // lives in L2 anyway, and there T0 measured 150 ms against 152.
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
    #[inline(always)]
    unsafe fn pack<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
        pack8(w, ws, n, kc, nr, panel)
    }
}

/// AVX-512F (+ FMA, F16C for the packing).
pub struct Avx512;

impl Lanes for Avx512 {
    type V = __m512;
    const L: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m512 {
        _mm512_set1_ps(*p)
    }
    #[inline(always)]
    unsafe fn fma(acc: __m512, a: __m512, b: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
    #[inline(always)]
    unsafe fn pack<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
        pack8(w, ws, n, kc, nr, panel)
    }
}

/// SSE2, the x86-64 baseline: no FMA (a multiply, then an add) and no F16C, so f16 is widened
/// with integer operations ([`halves_to_f32_sse2`]) while a panel is packed, four by four
/// ([`pack4`]; before, the scalar loop packed every panel, and a baseline f16 product ran at
/// 0.76× the f32 one).
pub struct Sse2;

impl Lanes for Sse2 {
    type V = __m128;
    const L: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> __m128 {
        _mm_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m128 {
        _mm_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m128 {
        _mm_load1_ps(p)
    }
    #[inline(always)]
    unsafe fn fma(acc: __m128, a: __m128, b: __m128) -> __m128 {
        _mm_add_ps(acc, _mm_mul_ps(a, b))
    }
    #[inline(always)]
    unsafe fn add(a: __m128, b: __m128) -> __m128 {
        _mm_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m128) {
        _mm_storeu_ps(p, v)
    }
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
    #[inline(always)]
    unsafe fn pack<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
        pack4(w, ws, n, kc, nr, panel)
    }
}

/// `Y = X · Wᵀ` with SSE2: 6 × 8 tiles (12 accumulators, 2 panel vectors, one broadcast of the
/// 16 registers).
pub unsafe fn matmul_sse2<E: Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    gemm::matmul::<Sse2, E, 6, 2>(x, w, y, s)
}

/// `Y = X · Wᵀ` with AVX-512F: 12 × 32 tiles.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn matmul_avx512<E: Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    gemm::matmul::<Avx512, E, 12, 2>(x, w, y, s)
}

/// `Y = X · Wᵀ` with AVX2, FMA and F16C: 6 × 16 tiles.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn matmul_avx2<E: Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    gemm::matmul::<Avx2, E, 6, 2>(x, w, y, s)
}

/// [`matmul_sse2`] on 16-row panels stored by the converter (`gemm::matmul_panels`).
pub unsafe fn matmul_sse2_panels(x: *const f32, w: *const f32, y: *mut f32, s: Shape) {
    gemm::matmul_panels::<Sse2, 6, 2>(x, w, y, s)
}

/// [`matmul_avx512`] on 16-row panels stored by the converter (`gemm::matmul_panels`).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn matmul_avx512_panels(x: *const f32, w: *const f32, y: *mut f32, s: Shape) {
    gemm::matmul_panels::<Avx512, 12, 2>(x, w, y, s)
}

/// [`matmul_avx2`] on 16-row panels stored by the converter (`gemm::matmul_panels`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn matmul_avx2_panels(x: *const f32, w: *const f32, y: *mut f32, s: Shape) {
    gemm::matmul_panels::<Avx2, 6, 2>(x, w, y, s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse2_half_conversion_gives_the_bits_of_half_for_every_value() {
        for first in (0..=u16::MAX).step_by(4) {
            let bits: [u16; 4] = core::array::from_fn(|i| first + i as u16);
            let mut got = [0.0f32; 4];
            unsafe { _mm_storeu_ps(got.as_mut_ptr(), halves_to_f32_sse2(_mm_loadl_epi64(bits.as_ptr().cast()))) };
            for (g, b) in got.iter().zip(bits) {
                assert_eq!(g.to_bits(), f16::from_bits(b).to_f32().to_bits(), "half {b:#06x}");
            }
        }
    }

    /// The SSE2 product of f16 and bf16 weights is that of the same weights widened to f32
    /// beforehand (the packing widens exactly and transposes), on shapes with partial groups of
    /// rows and steps.
    #[test]
    fn sse2_panels_widen_exactly() {
        for (rows, out, k) in [(1, 1, 1), (3, 5, 7), (7, 9, 13), (13, 17, 33), (6, 33, 520)] {
            let x: std::vec::Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0).collect();
            let w: std::vec::Vec<f32> = (0..out * k).map(|i| ((i * 11 % 17) as f32 - 8.3) / 4.1).collect();
            let s = Shape { rows, out, k, xs: k, ws: k, ys: out, accumulate: false };
            let product = |w: &[f32]| {
                let mut y = std::vec![0.0f32; rows * out];
                unsafe { matmul_sse2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), s) };
                y
            };
            let w16: std::vec::Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let mut y = std::vec![0.0f32; rows * out];
            unsafe { matmul_sse2(x.as_ptr(), w16.as_ptr(), y.as_mut_ptr(), s) };
            let want = product(&w16.iter().map(|v| v.to_f32()).collect::<std::vec::Vec<_>>());
            assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "f16 {rows}x{k}->{out}");
            let wb: std::vec::Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            unsafe { matmul_sse2(x.as_ptr(), wb.as_ptr(), y.as_mut_ptr(), s) };
            let want = product(&wb.iter().map(|v| v.to_f32()).collect::<std::vec::Vec<_>>());
            assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "bf16 {rows}x{k}->{out}");
        }
    }
}
