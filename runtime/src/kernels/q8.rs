//! x86-64 micro-kernels of the int8 arithmetic (`super::int8`): the exact sums `Σ q·w` of a
//! tile, with AVX-512 VNNI or with AVX2. Quantisation, the loops around the tiles and the
//! scales are `int8`'s, the same for every ISA, so both give the portable kernel's bits.
//!
//! - **VNNI** (`vpdpbusd`, 64 multiply-adds an instruction): it multiplies unsigned by signed
//!   bytes, so the packed activations are offset by 128 (`u = q + 128`, [`Vnni::prepare`]) and
//!   the offset is taken out with the weight rows' sums: `Σ q·w = Σ u·w − 128 · Σ w`.
//! - **AVX2** (`vpmaddwd`, 16 multiply-adds an instruction plus an add): activations packed as
//!   `i16`, weights sign-extended to `i16` in registers (`vpmovsxbw`); each pair sum is at most
//!   `2 · 127 · 128`, so nothing saturates (`vpmaddubsw` would, for u8 × s8 pairs).
//!
//! SAFETY (whole module): callers (`int8::matmul`) pass packed rows of `kp` values and weight
//! rows with at least `k` readable values; weights are never read at or past `k` (masked loads
//! on AVX-512, a zero-padded copy of the tail on AVX2).

use core::arch::x86_64::*;

use super::int8::{Int8Tile, K_STEP};

/// AVX-512F + AVX-512BW + AVX-512 VNNI: a 4 × 4 tile, 16 `zmm` accumulators.
pub struct Vnni;

/// The mask of the bytes of a 64-byte step at `kk` that lie before `k`.
#[inline(always)]
fn step_mask(kk: usize, k: usize) -> __mmask64 {
    let left = k - kk;
    if left >= 64 {
        !0
    } else {
        (1u64 << left) - 1
    }
}

/// Per 128-bit lane, `[Σa, Σb, Σc, Σd]` of that lane of four vectors.
#[inline(always)]
unsafe fn reduce4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m512i {
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd))
}

impl Int8Tile for Vnni {
    const MR: usize = 4;
    const NR: usize = 4;
    const BYTES: usize = 1;

    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let flip = _mm512_set1_epi8(-128);
        let mut i = 0;
        while i < kp {
            let p = row.add(i).cast::<__m512i>();
            _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), flip));
            i += K_STEP;
        }
    }

    /// `Σ w` of the four weight rows.
    #[inline(always)]
    unsafe fn panel(w: &[*const i8; 4], k: usize) -> [i32; 4] {
        sums(w, k)
    }

    #[inline(always)]
    unsafe fn tile(panel: &[i32; 4], q: *const u8, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        tile_vnni(panel, q, kp, w, k)
    }
}

#[inline(always)]
unsafe fn sums(w: &[*const i8; 4], k: usize) -> [i32; 4] {
    let ones = _mm512_set1_epi8(1);
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut kk = 0;
    while kk < k {
        let m = step_mask(kk, k);
        for (a, &p) in acc.iter_mut().zip(w) {
            *a = _mm512_dpbusd_epi32(*a, ones, _mm512_maskz_loadu_epi8(m, p.add(kk)));
        }
        kk += 64;
    }
    acc.map(|a| _mm512_reduce_add_epi32(a))
}

#[inline(always)]
unsafe fn tile_vnni(wsum: &[i32; 4], q: *const u8, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
    let mut acc = [[_mm512_setzero_si512(); 4]; 4];
    let mut kk = 0;
    while kk < k {
        let m = step_mask(kk, k);
        let xv: [__m512i; 4] = core::array::from_fn(|i| _mm512_loadu_si512(q.add(i * kp + kk).cast()));
        let wv: [__m512i; 4] = w.map(|p| _mm512_maskz_loadu_epi8(m, p.add(kk)));
        for (row, &xv) in acc.iter_mut().zip(&xv) {
            for (a, &wv) in row.iter_mut().zip(&wv) {
                *a = _mm512_dpbusd_epi32(*a, xv, wv);
            }
        }
        kk += 64;
    }
    // 16 sums at once: transpose-and-add within 128-bit lanes, then across them.
    let [g0, g1, g2, g3] = acc.map(|[a, b, c, d]| reduce4(a, b, c, d));
    let t0 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(g0, g1), _mm512_shuffle_i32x4::<0b11_10_11_10>(g0, g1));
    let t1 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(g2, g3), _mm512_shuffle_i32x4::<0b11_10_11_10>(g2, g3));
    let totals =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1), _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1));
    let offset = _mm512_slli_epi32(_mm512_broadcast_i32x4(_mm_loadu_si128(wsum.as_ptr().cast())), 7);
    let mut out = [[0i32; 4]; 4];
    _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_sub_epi32(totals, offset));
    out
}

/// AVX2: a 4 × 3 tile, 12 `ymm` accumulators and 3 for the widened weights.
pub struct Avx2;

impl Int8Tile for Avx2 {
    const MR: usize = 4;
    const NR: usize = 3;
    const BYTES: usize = 2;

    #[inline(always)]
    unsafe fn tile(_: &[i32; 4], q: *const u8, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        tile_avx2(q.cast(), kp, w, k)
    }
}

/// One step of 16 values of `k`: `acc[i][j] += Σ pairs of q_i · w_j`.
#[inline(always)]
unsafe fn step_avx2<const MR: usize, const NR: usize>(
    acc: &mut [[__m256i; NR]; MR],
    q: *const i16,
    kp: usize,
    kk: usize,
    wv: &[__m256i; NR],
) {
    for (i, row) in acc.iter_mut().enumerate() {
        let xv = _mm256_loadu_si256(q.add(i * kp + kk).cast());
        for (a, &wv) in row.iter_mut().zip(wv) {
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wv));
        }
    }
}

/// `Σ` of the eight lanes.
#[inline(always)]
unsafe fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

#[inline(always)]
unsafe fn tile_avx2(q: *const i16, kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
    const MR: usize = 4;
    const NR: usize = 3;
    let mut acc = [[_mm256_setzero_si256(); NR]; MR];
    let [w0, w1, w2, _] = *w;
    let rows: [*const i8; NR] = [w0, w1, w2];
    let full = k / 16 * 16;
    let mut kk = 0;
    while kk < full {
        let wv: [__m256i; NR] = rows.map(|p| _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(kk).cast())));
        step_avx2(&mut acc, q, kp, kk, &wv);
        kk += 16;
    }
    if kk < k {
        // The tail of the weight rows through a zero-padded copy (the packed activations are
        // zero there too).
        let wv: [__m256i; NR] = rows.map(|p| {
            let mut buf = [0i8; 16];
            core::ptr::copy_nonoverlapping(p.add(kk), buf.as_mut_ptr(), k - kk);
            _mm256_cvtepi8_epi16(_mm_loadu_si128(buf.as_ptr().cast()))
        });
        step_avx2(&mut acc, q, kp, kk, &wv);
    }
    let mut out = [[0i32; 4]; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (o, &a) in o.iter_mut().zip(a) {
            *o = hsum(a);
        }
    }
    out
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the VNNI tile.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and AVX-512 VNNI; the conditions of `int8::matmul`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn matmul_vnni(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul::<Vnni>(x, w, scales, y, d)
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the AVX2 tile.
///
/// # Safety
/// The CPU has AVX2; the conditions of `int8::matmul`.
#[target_feature(enable = "avx2")]
pub unsafe fn matmul_avx2(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul::<Avx2>(x, w, scales, y, d)
}
