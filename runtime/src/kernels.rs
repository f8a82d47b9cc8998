//! The numeric kernels: every loop over weights or activations lives here so that faster
//! versions (SIMD, quantised) can replace them one by one.
//!
//! Plain scalar Rust written so that the compiler can vectorise it (independent accumulators,
//! exact-size chunks). None of them index out of bounds: lengths are checked once at entry
//! and the loops run over iterators.

use half::{bf16, f16};

use crate::Error;

/// A stored weight element that widens to `f32`.
pub trait Element: Copy + bytemuck::Pod {
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

const LANES: usize = 8;

/// `Σ w[i]·x[i]` over the shorter of the two, with [`LANES`] independent partial sums.
#[inline]
pub fn dot<E: Element>(w: &[E], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let wc = w.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (wv, xv) in wc.zip(xc) {
        for ((a, &wi), &xi) in acc.iter_mut().zip(wv).zip(xv) {
            *a += wi.to_f32() * xi;
        }
    }
    let mut tail = 0.0f32;
    for (&wi, &xi) in wr.iter().zip(xr) {
        tail += wi.to_f32() * xi;
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// `y = W·x` for a row-major `W[y.len(), x.len()]` (the reference stores linear layers as
/// `[out, in]`).
pub fn matvec<E: Element>(w: &[E], x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    let cols = x.len();
    let needed = cols.checked_mul(y.len()).ok_or(Error::InvalidHeader("matrix too large"))?;
    if cols == 0 || w.len() != needed {
        return Err(Error::OutputLength { expected: needed, got: w.len() });
    }
    for (row, out) in w.chunks_exact(cols).zip(y.iter_mut()) {
        *out = dot(row, x);
    }
    Ok(())
}

/// `y = W·x` where `x` is a column of a row-major matrix: `x[i] = src[i·stride + col]`.
/// Used by `mlp_t`, which mixes the sequence axis of each channel.
pub fn gather_column(src: &[f32], stride: usize, col: usize, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(src.chunks_exact(stride)) {
        *o = row.get(col).copied().unwrap_or(0.0);
    }
}

/// Inverse of [`gather_column`].
pub fn scatter_column(dst: &mut [f32], stride: usize, col: usize, values: &[f32]) {
    for (v, row) in values.iter().zip(dst.chunks_exact_mut(stride)) {
        if let Some(d) = row.get_mut(col) {
            *d = *v;
        }
    }
}

/// `v ← v / sqrt(mean(v²) + eps)` (the reference's post-norm, no learned scale).
pub fn rms_norm(v: &mut [f32], eps: f32) {
    if v.is_empty() {
        return;
    }
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let mut tail = 0.0f32;
    for &x in chunks.remainder() {
        tail += x * x;
    }
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    let sum = acc.iter().sum::<f32>() + tail;
    let mean = sum / v.len() as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for x in v.iter_mut() {
        *x *= scale;
    }
}

/// `a ← a + b` elementwise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `a ← a + (b + c)` elementwise, the reference's order for `z_L + (z_H + x)`.
pub fn add_sum_assign(a: &mut [f32], b: &[f32], c: &[f32]) {
    for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
        *x += y + z;
    }
}

/// In-place softmax.
pub fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        *x = libm::expf(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in v.iter_mut() {
        *x *= inv;
    }
}

#[inline]
fn silu(g: f32) -> f32 {
    g / (1.0 + libm::expf(-g))
}

/// SwiGLU activation in place: `gate_up = [gate | up]` → `gate[i] ← silu(gate[i]) · up[i]`;
/// returns the activated half.
pub fn swiglu(gate_up: &mut [f32]) -> &mut [f32] {
    let (gate, up) = gate_up.split_at_mut(gate_up.len() / 2);
    for (g, &u) in gate.iter_mut().zip(up.iter()) {
        *g = silu(*g) * u;
    }
    gate
}

/// Rotary embedding of one head vector at one position: halves `[v1, v2]` become
/// `[v1·cos − v2·sin, v2·cos + v1·sin]` (the reference's `rotate_half`, not interleaved pairs).
pub fn rope(v: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = v.len() / 2;
    let (v1, v2) = v.split_at_mut(half);
    for (((a, b), &c), &s) in v1.iter_mut().zip(v2.iter_mut()).zip(cos).zip(sin) {
        let (x1, x2) = (*a, *b);
        *a = x1 * c - x2 * s;
        *b = x2 * c + x1 * s;
    }
}

/// Index of the largest value (the first one on ties), as `torch.argmax`.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_value {
            best = i;
            best_value = x;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_matches_naive_sum_for_all_dtypes() {
        let rows = 5;
        let cols = 19; // not a multiple of the lanes
        let w: [f32; 95] = core::array::from_fn(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0);
        let x: [f32; 19] = core::array::from_fn(|i| (i as f32 - 9.0) / 8.0);
        let mut want = [0.0f32; 5];
        for r in 0..rows {
            want[r] = (0..cols).map(|c| w[r * cols + c] * x[c]).sum();
        }
        let mut y = [0.0f32; 5];
        matvec(&w, &x, &mut y).unwrap();
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // The values are exact in f16 and bf16 (quarters of small integers).
        let w16: [f16; 95] = core::array::from_fn(|i| f16::from_f32(w[i]));
        let wb16: [bf16; 95] = core::array::from_fn(|i| bf16::from_f32(w[i]));
        matvec(&w16, &x, &mut y).unwrap();
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
        matvec(&wb16, &x, &mut y).unwrap();
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(matvec(&w[..94], &x, &mut y).is_err());
    }

    #[test]
    fn norms_and_activations() {
        let mut v = [3.0f32, 4.0];
        rms_norm(&mut v, 0.0);
        // mean of squares 12.5 → scale 1/sqrt(12.5)
        assert!((v[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
        let mut p = [1.0f32, 2.0, 3.0];
        softmax(&mut p);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let mut gu = [0.0f32, 1.0, 5.0, 2.0];
        let out = swiglu(&mut gu);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 2.0 / (1.0 + (-1.0f32).exp()) * 1.0).abs() < 1e-6);
        let mut h = [1.0f32, 2.0, 3.0, 4.0];
        rope(&mut h, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(h, [-3.0, 2.0, 1.0, 4.0]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }
}
