//! x86-64 micro-kernels of the int8 arithmetic (`super::int8`, and the int4 one of
//! `super::int4`, which shares them): the exact sums `Σ q·w` of a tile, with AVX-512 VNNI, AVX2
//! or the baseline's SSE2. Quantisation, the loops around the tiles and the scales are
//! `int8`'s, the same for every ISA, so all give the portable kernel's bits.
//!
//! - **VNNI** (`vpdpbusd`, 64 multiply-adds an instruction): it multiplies unsigned by signed
//!   bytes, so the packed activations are offset by 128 (`u = q + 128`, [`Vnni::prepare`]) and
//!   the offset is taken out with the weight rows' sums: `Σ q·w = Σ u·w − 128 · Σ w`. Products
//!   of [`VNNI_PANEL_ROWS`] rows or more take outer-product 8 × 48 tiles over packed panels
//!   ([`VnniPanels`], `int8::matmul_panels`); fewer rows the 4 × 4 dot-product tile over the
//!   weights in place, which has nothing to pack.
//! - **AVX2** (`vpmaddwd`, 16 multiply-adds an instruction plus an add): outer-product tiles
//!   (`int8::matmul_panels`, the f32 product's design) over weight panels widened to `i16`
//!   pairs while they are packed, activations packed as `i16` and broadcast a pair at a time;
//!   each pair sum is at most `2 · 127 · 128`, so nothing saturates (`vpmaddubsw` would, for
//!   u8 × s8 pairs). The dot-product 4 × 3 tile it replaced ran at 0.9× the f32 product on a
//!   Zen 4 forced to AVX2; this one at 1.3× (BENCHMARKS.md).
//! - **SSE2** (`pmaddwd`, the baseline level): the AVX2 tiles at half the width. The portable
//!   tile it replaced at that level ran at 0.7× the f32 product on a Zen 3; this one at 1.6–1.9×.
//!
//! SAFETY (whole module): callers (`int8::matmul`) pass packed rows of `kp` values and weight
//! rows with at least `k` readable values; weights are never read at or past `k` (masked loads
//! on AVX-512; AVX2's panel packing reads whole 16-value steps only below `k`).

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
    // A loop, not `acc.map(|a| …)`: the closure is a function of its own, compiled without the
    // caller's target features when two callers with different features share it, and then
    // not inlined (measured: the VNNI product 6× slower).
    let mut out = [0i32; 4];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = _mm512_reduce_add_epi32(a);
    }
    out
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

/// `Y = X · Wᵀ` in the int8 arithmetic with the VNNI tile.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and AVX-512 VNNI; the conditions of `int8::matmul`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn matmul_vnni(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul::<Vnni>(x, w, scales, y, d)
}

/// AVX2 outer-product tiles (`int8::matmul_panels`): each `i32` lane holds an `i16` pair of
/// one weight row, the activations are packed as `i16` and broadcast a pair at a time, and
/// `vpmaddwd` then `vpaddd` add both products to the lane (each pair sum is at most
/// `2 · 127 · 128`: nothing saturates).
pub struct Avx2Panels;

impl super::int8::Int8Lanes for Avx2Panels {
    type V = __m256i;
    const L: usize = 8;
    const G: usize = 2;
    const ABYTES: usize = 2;
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p.cast())
    }
    #[inline(always)]
    unsafe fn splat(p: *const u8) -> __m256i {
        _mm256_set1_epi32(p.cast::<i32>().read_unaligned())
    }
    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: __m256i) {
        _mm256_storeu_si256(p.cast(), v)
    }
    #[inline(always)]
    unsafe fn add_scaled(out: *mut f32, sums: __m256i, scales: *const f32) {
        let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_loadu_ps(scales));
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), scaled));
    }
    /// Blocks of 8 rows × 16 values: each row's 16 bytes widened to `i16` (8 pairs, one `ymm`
    /// of pair lanes), then the 8 × 8 lanes transposed so that each vector is one pair of 8 rows.
    #[inline(always)]
    unsafe fn pack(w: *const i8, ws: usize, n: usize, kc: usize, kcp: usize, nr: usize, panel: *mut u8) {
        let (rows8, steps16) = (n / 8 * 8, kc / 16 * 16);
        let mut j0 = 0;
        while j0 < rows8 {
            let mut t0 = 0;
            while t0 < steps16 {
                let rows: [__m256; 8] = core::array::from_fn(|i| {
                    _mm256_castsi256_ps(_mm256_cvtepi8_epi16(_mm_loadu_si128(w.add((j0 + i) * ws + t0).cast())))
                });
                for (q, c) in super::x86::transpose8(rows).into_iter().enumerate() {
                    _mm256_storeu_ps(panel.add(((t0 / 2 + q) * nr + j0) * 4).cast(), c);
                }
                t0 += 16;
            }
            j0 += 8;
        }
        super::int8::pack_panel_rest::<Self>(w, ws, n, rows8, steps16, kc, kcp, nr, panel);
    }
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the AVX2 outer-product tiles: 6 rows × 16 outputs
/// (12 accumulators, 2 panel vectors and a broadcast of the 16 `ymm` registers).
///
/// # Safety
/// The CPU has AVX2; the conditions of `int8::matmul_panels`.
#[target_feature(enable = "avx2")]
pub unsafe fn matmul_avx2(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul_panels::<Avx2Panels, 6, 2>(x, w, scales, y, d)
}

/// The x86-64 baseline's outer-product tiles (SSE2, which every x86-64 CPU has): AVX2's
/// [`Avx2Panels`] at half the width, `pmaddwd` on `i16` pairs. The weight panels are packed
/// by the scalar loop (`int8::pack_panel_rest`).
pub struct Sse2Panels;

impl super::int8::Int8Lanes for Sse2Panels {
    type V = __m128i;
    const L: usize = 4;
    const G: usize = 2;
    const ABYTES: usize = 2;
    #[inline(always)]
    unsafe fn zero() -> __m128i {
        _mm_setzero_si128()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m128i {
        _mm_loadu_si128(p.cast())
    }
    #[inline(always)]
    unsafe fn splat(p: *const u8) -> __m128i {
        _mm_set1_epi32(p.cast::<i32>().read_unaligned())
    }
    #[inline(always)]
    unsafe fn madd(acc: __m128i, a: __m128i, b: __m128i) -> __m128i {
        _mm_add_epi32(acc, _mm_madd_epi16(a, b))
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: __m128i) {
        _mm_storeu_si128(p.cast(), v)
    }
    #[inline(always)]
    unsafe fn add_scaled(out: *mut f32, sums: __m128i, scales: *const f32) {
        let scaled = _mm_mul_ps(_mm_cvtepi32_ps(sums), _mm_loadu_ps(scales));
        _mm_storeu_ps(out, _mm_add_ps(_mm_loadu_ps(out), scaled));
    }
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the SSE2 tiles, 6 rows × 8 outputs (12
/// accumulators, 2 panel vectors and a broadcast of the 16 `xmm` registers): the baseline
/// level's int8 product (the portable tile before).
///
/// # Safety
/// The conditions of `int8::matmul_panels` (SSE2 is part of x86-64).
pub unsafe fn matmul_sse2(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul_panels::<Sse2Panels, 6, 2>(x, w, scales, y, d)
}

/// `Y = X · Wᵀ` in the int4 arithmetic (`super::int4`) with the SSE2 tiles: the baseline
/// level's int4 product.
///
/// # Safety
/// The conditions of `int4::matmul_panels` (SSE2 is part of x86-64).
pub unsafe fn matmul_q4_sse2(x: &[f32], w: super::int4::Q4Rows<'_>, y: &mut [f32], d: super::Dims) {
    super::int4::matmul_panels::<Sse2Panels, 6, 2>(x, w, y, d)
}

/// `Y = X · Wᵀ` in the int4 arithmetic (`super::int4`) with the AVX2 int8 tiles, 6 rows × 16
/// outputs. CPUs with VNNI take it too: their `vpdpbusd` needs offset activations, and so the
/// sums of every block of weights.
///
/// # Safety
/// The CPU has AVX2; the conditions of `int4::matmul_panels`.
#[target_feature(enable = "avx2")]
pub unsafe fn matmul_q4_avx2(x: &[f32], w: super::int4::Q4Rows<'_>, y: &mut [f32], d: super::Dims) {
    super::int4::matmul_panels::<Avx2Panels, 6, 2>(x, w, y, d)
}

/// AVX-512 VNNI outer-product tiles (`int8::matmul_panels`): each `i32` lane holds 4 bytes of
/// `k` of one weight row; the activations are packed as unsigned bytes (`q + 128`) and
/// broadcast 4 at a time, and `vpdpbusd` adds the 4 products to the lane; the offset is taken
/// out with the weight rows' sums (`Σ q·w = Σ u·w − 128 · Σ w`).
pub struct VnniPanels;

impl super::int8::Int8Lanes for VnniPanels {
    type V = __m512i;
    const L: usize = 16;
    const G: usize = 4;
    const ABYTES: usize = 1;
    const OFFSET: i32 = 128;
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
    #[inline(always)]
    unsafe fn zero() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        _mm512_loadu_si512(p.cast())
    }
    #[inline(always)]
    unsafe fn splat(p: *const u8) -> __m512i {
        _mm512_set1_epi32(p.cast::<i32>().read_unaligned())
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: __m512i) {
        _mm512_storeu_si512(p.cast(), v)
    }
    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let flip = _mm512_set1_epi8(-128);
        let mut i = 0;
        while i < kp {
            let m = step_mask(i, kp);
            let p = row.add(i);
            _mm512_mask_storeu_epi8(p.cast(), m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p.cast()), flip));
            i += 64;
        }
    }
    /// Four rows at a time with `vpdpbusd` against ones (masked loads: nothing read at `kc`).
    #[inline(always)]
    unsafe fn offset_sums(w: *const i8, ws: usize, n: usize, kc: usize, out: *mut i32) {
        let mut j = 0;
        while j < n {
            let last = n - 1;
            let rows: [*const i8; 4] = core::array::from_fn(|i| w.add((j + i).min(last) * ws));
            let s = sums(&rows, kc);
            for (i, &v) in s.iter().enumerate().take(n - j) {
                *out.add(j + i) = 128 * v;
            }
            j += 4;
        }
    }
    #[inline(always)]
    unsafe fn pack(w: *const i8, ws: usize, n: usize, kc: usize, kcp: usize, nr: usize, panel: *mut u8) {
        pack_byte_groups::<Self>(w, ws, n, kc, kcp, nr, panel)
    }
}

/// The panel packing of the byte-group lanes (`G = 4`: AVX-512 VNNI, AVX-VNNI): blocks of
/// 8 rows × 32 bytes, 8 lanes of 4 bytes a row, transposed 8 × 8 in `ymm` registers so that
/// each vector holds one 4-byte group of 8 rows; the rest by the scalar loop.
///
/// # Safety
/// As [`super::int8::Int8Lanes::pack`], on a CPU with AVX.
#[inline(always)]
unsafe fn pack_byte_groups<T: super::int8::Int8Lanes>(
    w: *const i8,
    ws: usize,
    n: usize,
    kc: usize,
    kcp: usize,
    nr: usize,
    panel: *mut u8,
) {
    let (rows8, steps32) = (n / 8 * 8, kc / 32 * 32);
    let mut j0 = 0;
    while j0 < rows8 {
        let mut t0 = 0;
        while t0 < steps32 {
            let rows: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(w.add((j0 + i) * ws + t0).cast()));
            for (q, c) in super::x86::transpose8(rows).into_iter().enumerate() {
                _mm256_storeu_ps(panel.add(((t0 / 4 + q) * nr + j0) * 4).cast(), c);
            }
            t0 += 32;
        }
        j0 += 8;
    }
    super::int8::pack_panel_rest::<T>(w, ws, n, rows8, steps32, kc, kcp, nr, panel);
}

/// Rows from which the VNNI product takes the outer-product tiles (one tile's height).
pub const VNNI_PANEL_ROWS: usize = 8;

/// `Y = X · Wᵀ` in the int8 arithmetic with the VNNI outer-product tiles: 8 rows × 48 outputs
/// (24 accumulators, 3 panel vectors and a broadcast of the 32 `zmm` registers).
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX-512VL and AVX-512 VNNI; the conditions of
/// `int8::matmul_panels`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
pub unsafe fn matmul_vnni_panels(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul_panels::<VnniPanels, 8, 3>(x, w, scales, y, d)
}

/// AVX-VNNI outer-product tiles (`int8::matmul_panels`): the AVX-512 VNNI panels' arithmetic
/// (`vpdpbusd` on unsigned `q + 128` against signed weight bytes, the offset taken out with the
/// weight rows' sums) in the VEX-encoded 256-bit form, for CPUs that have it without AVX-512
/// (Intel's Alder Lake and later client cores, Sierra Forest's E-cores). Same integers, so the
/// same bits as every other int8 kernel.
pub struct AvxVnniPanels;

impl super::int8::Int8Lanes for AvxVnniPanels {
    type V = __m256i;
    const L: usize = 8;
    const G: usize = 4;
    const ABYTES: usize = 1;
    const OFFSET: i32 = 128;
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T1>(p.cast())
    }
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p.cast())
    }
    #[inline(always)]
    unsafe fn splat(p: *const u8) -> __m256i {
        _mm256_set1_epi32(p.cast::<i32>().read_unaligned())
    }
    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: __m256i) {
        _mm256_storeu_si256(p.cast(), v)
    }
    /// `q + 128` as unsigned bytes: 32 at a time, then byte by byte up to `kp`.
    #[inline(always)]
    unsafe fn prepare(row: *mut u8, kp: usize) {
        let flip = _mm256_set1_epi8(-128);
        let mut i = 0;
        while i + 32 <= kp {
            let p = row.add(i).cast::<__m256i>();
            _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), flip));
            i += 32;
        }
        while i < kp {
            *row.add(i) ^= 0x80;
            i += 1;
        }
    }
    /// `128 · Σ w` a row at a time: `vpdpbusd` against ones over whole 32-byte steps, then the
    /// tail byte by byte (nothing read at `kc`).
    #[inline(always)]
    unsafe fn offset_sums(w: *const i8, ws: usize, n: usize, kc: usize, out: *mut i32) {
        let ones = _mm256_set1_epi8(1);
        for j in 0..n {
            let row = w.add(j * ws);
            let mut acc = _mm256_setzero_si256();
            let mut t = 0;
            while t + 32 <= kc {
                acc = _mm256_dpbusd_avx_epi32(acc, ones, _mm256_loadu_si256(row.add(t).cast()));
                t += 32;
            }
            let half = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
            let quad = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
            let mut sum = _mm_cvtsi128_si32(_mm_add_epi32(quad, _mm_shuffle_epi32::<0b01>(quad)));
            while t < kc {
                sum += i32::from(*row.add(t));
                t += 1;
            }
            *out.add(j) = 128 * sum;
        }
    }
    #[inline(always)]
    unsafe fn pack(w: *const i8, ws: usize, n: usize, kc: usize, kcp: usize, nr: usize, panel: *mut u8) {
        pack_byte_groups::<Self>(w, ws, n, kc, kcp, nr, panel)
    }
}

/// `Y = X · Wᵀ` in the int8 arithmetic with the AVX-VNNI outer-product tiles: 6 rows × 16
/// outputs, the AVX2 tile's shape (12 accumulators, 2 panel vectors and a broadcast of the 16
/// `ymm` registers), at 4 values of `k` per lane instead of 2 and no separate add.
///
/// # Safety
/// The CPU has AVX2 and AVX-VNNI; the conditions of `int8::matmul_panels`.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn matmul_avx_vnni(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: super::Dims) {
    super::int8::matmul_panels::<AvxVnniPanels, 6, 2>(x, w, scales, y, d)
}
