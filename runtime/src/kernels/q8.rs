//! `Y = X · Wᵀ` for int8 weights with AVX-512 VNNI: the activations are quantised on the fly,
//! row by row, to int8 (`q = round(x / s)`, `s = max |x| / 127`, ties to even), and the
//! products run as 8-bit integer dot products, 64 multiply-adds per `vpdpbusd` (four times an
//! f32 FMA's 16).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the activations are stored offset by 128
//! (`u = q + 128`) and the offset is taken out afterwards with the weight row's sum:
//! `Σ q·w = Σ u·w − 128 · Σ w`. The integer sums are exact; the result is
//! `(s_x · s_w) · Σ q·w` in f32.
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; weight rows are read with
//! masked loads that stop at `k`, activations from the stack buffer this module fills.

use core::arch::x86_64::*;

use super::Dims;

/// The stack buffer the quantised activation rows are packed into (as many rows as fit are
/// quantised at once, and the weights are read once per such group).
const PACK_BYTES: usize = 128 * 1024;
/// The longest rows this kernel takes (at least four rows must fit in the buffer).
pub const MAX_K: usize = PACK_BYTES / 4;

/// Quantises a row to int8 with one scale (`s = max |x| / 127`, `q = x / s` rounded to
/// nearest, ties to even, as `vcvtps2dq` does): writes `q + 128` into `out`, then 128 (the
/// encoding of 0) up to `len`, a multiple of 16; returns `s` (0 for a zero row).
#[inline(always)]
unsafe fn quantise_row(x: &[f32], out: *mut u8, len: usize) -> f32 {
    let k = x.len();
    let mut maxv = _mm512_setzero_ps();
    let mut i = 0;
    while i < k {
        let m: __mmask16 = if k - i >= 16 { 0xffff } else { (1u16 << (k - i)) - 1 };
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        maxv = _mm512_max_ps(maxv, _mm512_abs_ps(v));
        i += 16;
    }
    let max = _mm512_reduce_max_ps(maxv);
    let scale = max / 127.0;
    let inv = _mm512_set1_ps(if max > 0.0 { 127.0 / max } else { 0.0 });
    let offset = _mm_set1_epi8(-128);
    let mut i = 0;
    while i + 16 <= len {
        let m: __mmask16 = if i >= k {
            0
        } else if k - i >= 16 {
            0xffff
        } else {
            (1u16 << (k - i)) - 1
        };
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        let q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
        // |q| ≤ 127: the saturating narrowing only narrows; adding −128 as bytes is + 128.
        let b = _mm_add_epi8(_mm512_cvtsepi32_epi8(q), offset);
        _mm_storeu_si128(out.add(i).cast(), b);
        i += 16;
    }
    scale
}

/// `Y = X · Wᵀ` for `w` int8 with one scale per row (`w_scales`). `d.k ≤ MAX_K`, no
/// accumulation (the caller falls back to the widening product otherwise).
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and AVX-512 VNNI; `super::check_matmul` passed for `d`
/// with `w` as the weights, and `w_scales` holds `d.out` scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn matmul_vnni(x: &[f32], w: *const i8, w_scales: &[f32], y: *mut f32, d: Dims) {
    const MR: usize = 4;
    const NR: usize = 4;
    let kp = d.k.div_ceil(64) * 64;
    // Not zeroed (128 KiB per call would cost more than quantising): `quantise_row` writes
    // every byte of each row it packs before the tiles read it.
    let mut storage = core::mem::MaybeUninit::<[u8; PACK_BYTES]>::uninit();
    let packed: *mut u8 = storage.as_mut_ptr().cast();
    let mut x_scales = [0.0f32; PACK_BYTES / 64];
    let pack_rows = (PACK_BYTES / kp).min(x_scales.len());
    let mut r0 = 0;
    while r0 < d.rows {
        let n = pack_rows.min(d.rows - r0);
        for (i, s) in x_scales.iter_mut().enumerate().take(n) {
            let row = x.get((r0 + i) * d.xs..(r0 + i) * d.xs + d.k).unwrap_or(&[]);
            *s = quantise_row(row, packed.add(i * kp), kp);
        }
        let mut o = 0;
        while o < d.out {
            let nr = NR.min(d.out - o);
            let wp = w.add(o * d.ws);
            let sums = row_sums::<NR>(wp, d.ws, d.k, nr);
            let mut sw = [0.0f32; NR];
            for (j, s) in sw.iter_mut().enumerate().take(nr) {
                *s = w_scales.get(o + j).copied().unwrap_or(0.0);
            }
            let mut r = 0;
            while r < n {
                let mr = MR.min(n - r);
                let totals = if mr == MR && nr == NR {
                    tile_4x4(packed.add(r * kp), kp, wp, d.ws, d.k)
                } else {
                    tile_any(packed.add(r * kp), kp, mr, wp, d.ws, d.k, nr)
                };
                if mr == MR && nr == NR {
                    // The 16 results at once: rows i, columns j of `totals` as one vector.
                    let t = _mm512_loadu_si512(totals.as_ptr().cast());
                    let s4 = _mm_loadu_si128(sums.as_ptr().cast());
                    let exact = _mm512_sub_epi32(t, _mm512_slli_epi32(_mm512_broadcast_i32x4(s4), 7));
                    let sw4 = _mm512_broadcast_f32x4(_mm_loadu_ps(sw.as_ptr()));
                    let sx = |i: usize| x_scales.get(r + i).copied().unwrap_or(0.0);
                    let (s0, s1, s2, s3) = (sx(0), sx(1), sx(2), sx(3));
                    let sx16 = _mm512_set_ps(s3, s3, s3, s3, s2, s2, s2, s2, s1, s1, s1, s1, s0, s0, s0, s0);
                    let v = _mm512_mul_ps(_mm512_mul_ps(sx16, sw4), _mm512_cvtepi32_ps(exact));
                    let mut out = [0.0f32; 16];
                    _mm512_storeu_ps(out.as_mut_ptr(), v);
                    for (i, row) in out.chunks_exact(4).enumerate() {
                        let yp = y.add((r0 + r + i) * d.ys + o);
                        _mm_storeu_ps(yp, _mm_loadu_ps(row.as_ptr()));
                    }
                } else {
                    for (i, row) in totals.iter().enumerate().take(mr) {
                        let sx = x_scales.get(r + i).copied().unwrap_or(0.0);
                        let yp = y.add((r0 + r + i) * d.ys + o);
                        for (j, ((&t, &s), &sum)) in row.iter().zip(&sw).zip(&sums).enumerate().take(nr) {
                            *yp.add(j) = (sx * s) * (t - 128 * sum) as f32;
                        }
                    }
                }
                r += mr;
            }
            o += nr;
        }
        r0 += n;
    }
}

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

/// `Σ w` of `nr ≤ N` weight rows.
#[inline(always)]
unsafe fn row_sums<const N: usize>(w: *const i8, ws: usize, k: usize, nr: usize) -> [i32; N] {
    let ones = _mm512_set1_epi8(1);
    let mut acc = [_mm512_setzero_si512(); N];
    let mut kk = 0;
    while kk < k {
        let m = step_mask(kk, k);
        for (j, a) in acc.iter_mut().enumerate().take(nr) {
            let wv = _mm512_maskz_loadu_epi8(m, w.add(j * ws + kk).cast());
            *a = _mm512_dpbusd_epi32(*a, ones, wv);
        }
        kk += 64;
    }
    let mut out = [0i32; N];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = _mm512_reduce_add_epi32(a);
    }
    out
}

/// Per 128-bit lane, `[Σa, Σb, Σc, Σd]` of that lane of four vectors.
#[inline(always)]
unsafe fn reduce4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m512i {
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd))
}

/// The 4 × 4 sums `Σ u·w` of four packed activation rows and four weight rows.
#[inline(always)]
unsafe fn tile_4x4(x: *const u8, kp: usize, w: *const i8, ws: usize, k: usize) -> [[i32; 4]; 4] {
    let mut acc = [[_mm512_setzero_si512(); 4]; 4];
    let mut kk = 0;
    while kk < k {
        let m = step_mask(kk, k);
        let xv: [__m512i; 4] = core::array::from_fn(|i| _mm512_loadu_si512(x.add(i * kp + kk).cast()));
        let wv: [__m512i; 4] = core::array::from_fn(|j| _mm512_maskz_loadu_epi8(m, w.add(j * ws + kk).cast()));
        for (row, &xv) in acc.iter_mut().zip(&xv) {
            for (a, &wv) in row.iter_mut().zip(&wv) {
                *a = _mm512_dpbusd_epi32(*a, xv, wv);
            }
        }
        kk += 64;
    }
    // 16 sums at once, as the f32 kernel does: transpose-and-add within 128-bit lanes, then
    // across them.
    let groups = acc.map(|[a, b, c, d]| reduce4(a, b, c, d));
    let [g0, g1, g2, g3] = groups;
    let t0 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(g0, g1), _mm512_shuffle_i32x4::<0b11_10_11_10>(g0, g1));
    let t1 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(g2, g3), _mm512_shuffle_i32x4::<0b11_10_11_10>(g2, g3));
    let sums =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1), _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1));
    let mut out = [[0i32; 4]; 4];
    _mm512_storeu_si512(out.as_mut_ptr().cast(), sums);
    out
}

/// The sums of `mr ≤ 4` activation rows and `nr ≤ 4` weight rows (the edges of a product).
#[inline(always)]
unsafe fn tile_any(x: *const u8, kp: usize, mr: usize, w: *const i8, ws: usize, k: usize, nr: usize) -> [[i32; 4]; 4] {
    let mut acc = [[_mm512_setzero_si512(); 4]; 4];
    let mut kk = 0;
    while kk < k {
        let m = step_mask(kk, k);
        for j in 0..nr {
            let wv = _mm512_maskz_loadu_epi8(m, w.add(j * ws + kk).cast());
            for (i, row) in acc.iter_mut().enumerate().take(mr) {
                let xv = _mm512_loadu_si512(x.add(i * kp + kk).cast());
                if let Some(a) = row.get_mut(j) {
                    *a = _mm512_dpbusd_epi32(*a, xv, wv);
                }
            }
        }
        kk += 64;
    }
    let mut out = [[0i32; 4]; 4];
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        for (o, &a) in o.iter_mut().zip(a) {
            *o = _mm512_reduce_add_epi32(a);
        }
    }
    out
}
