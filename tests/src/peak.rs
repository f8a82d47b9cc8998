//! The core's arithmetic peak: register-only loops of independent fused multiply-adds
//! (12 accumulators, so that the FMA pipes never wait on a result). The speed bench and
//! `product_probe` report products as a share of it.

/// FLOP of one call of [`fma256`] with `iters` iterations: 12 accumulators × 8 lanes × 2.
pub const fn fma256_flop(iters: u64) -> u64 {
    iters * 12 * 8 * 2
}

/// FLOP of one call of [`fma512`]: 12 accumulators × 16 lanes × 2.
pub const fn fma512_flop(iters: u64) -> u64 {
    iters * 12 * 16 * 2
}

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn fma512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(0.999_999);
    let a = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma256(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let a = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    let mut out = [0.0f32; 8];
    for v in acc {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        for (o, l) in out.iter_mut().zip(lanes) {
            *o += l;
        }
    }
    out.iter().sum()
}
