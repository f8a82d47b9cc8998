//! Error-compensating int4 rounding (GPTQ, Frantar et al. 2022, "Accurate Post-Training
//! Quantization for Generative Pre-trained Transformers").
//!
//! Rounding every weight to its nearest int4 level minimises the error of the weights; what
//! matters is the error of the products `W·x` on the inputs the model really sees. With the
//! second moments `H = Σ x·xᵀ` of a matrix's inputs (collected on calibration data), GPTQ
//! rounds the columns of each row one after the other and moves each rounding error onto the
//! columns not yet rounded, in the direction that `H` says cancels it best. The blocks, scales
//! and codes are exactly those of plain Q4_0 (`quantise_q4`): the runtime cannot tell the
//! difference, only the products are closer to the `f32` ones.

use std::collections::BTreeMap;

use hrm_runtime::blob::{TensorId, Q4_BLOCK, Q4_BLOCK_BYTES};
use hrm_runtime::kernels;
use hrm_runtime::DType;

use crate::{observe_runs, q4_code, q4_scale, write_blob, Checkpoint, Result};

/// Input rows gathered before they are folded into a matrix's moments (one product each).
const CHUNK: usize = 1024;

/// The share of the mean diagonal of `H` added to its diagonal (the reference's `percdamp`):
/// keeps the inverse well conditioned when some inputs are (nearly) linearly dependent.
const DAMP: f64 = 0.01;

/// `Σ x·xᵀ` over the input rows `x` of one matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// Values per input row (the matrix's column count).
    pub width: usize,
    /// `width × width`, row-major.
    pub sum: Vec<f64>,
    /// Input rows seen.
    pub rows: u64,
    pending: Vec<f32>,
}

impl Moments {
    fn new(width: usize) -> Moments {
        Moments { width, sum: vec![0.0; width * width], rows: 0, pending: Vec::with_capacity(CHUNK * width) }
    }

    fn push(&mut self, row: &[f32]) {
        self.pending.extend_from_slice(row);
        self.rows += 1;
        if self.pending.len() >= CHUNK * self.width {
            self.fold();
        }
    }

    /// Adds the pending rows' `Xᵀ·X` to the sum (an `f32` product of at most `CHUNK` terms per
    /// entry, summed in `f64` across chunks).
    fn fold(&mut self) {
        let w = self.width;
        let n = self.pending.len() / w.max(1);
        if n == 0 {
            return;
        }
        let mut xt = vec![0.0f32; w * n];
        kernels::transpose(&self.pending, n, w, &mut xt);
        let mut product = vec![0.0f32; w * w];
        let d = kernels::Dims { rows: w, out: w, k: n, xs: n, ws: n, ys: w, accumulate: false };
        if kernels::matmul(&xt, &xt, &mut product, d).is_ok() {
            for (s, p) in self.sum.iter_mut().zip(&product) {
                *s += f64::from(*p);
            }
        }
        self.pending.clear();
    }
}

/// The input moments of every layer matrix, from the `f32` model run on calibration inputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputMoments {
    matrices: BTreeMap<u32, Moments>,
}

impl InputMoments {
    /// The moments of the layer matrix `id`, when the calibration run multiplied it.
    pub fn get(&self, id: TensorId) -> Option<&Moments> {
        self.matrices.get(&id.code()).filter(|m| m.rows > 0)
    }

    /// Runs the model with `f32` weights on `inputs` (tokens and puzzle identifier), every
    /// segment, and collects the moments of each layer matrix's inputs. `progress` is called
    /// after each example.
    pub fn collect(checkpoint: &Checkpoint, inputs: &[(Vec<u32>, u32)], progress: &dyn Fn()) -> Result<InputMoments> {
        let blob = write_blob(checkpoint, DType::F32)?;
        let mut moments = InputMoments::default();
        observe_runs(&blob, inputs, &mut moments, progress)?;
        for m in moments.matrices.values_mut() {
            m.fold();
        }
        Ok(moments)
    }
}

impl hrm_runtime::fixed::Observer for InputMoments {
    fn observe(&mut self, _site: usize, _values: &[f32]) {}

    fn input(&mut self, matrix: TensorId, x: &[f32], width: usize, stride: usize) {
        if width == 0 || stride < width {
            return;
        }
        let m = self.matrices.entry(matrix.code()).or_insert_with(|| Moments::new(width));
        if m.width != width {
            return;
        }
        for row in x.chunks_exact(stride) {
            m.push(&row[..width]);
        }
    }
}

/// `H = L·Lᵀ` for symmetric positive definite `H` (`n × n`, row-major); `None` when `H` is not.
fn cholesky(h: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let v = h[i * n + j] - dot;
            if i == j {
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = v / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// The upper-triangular `U` with `H⁻¹ = Uᵀ·U`: the factor GPTQ reads its updates from (row `j`
/// of `U` spreads the error of column `j` over the later columns).
fn inverse_factor(h: &[f64], n: usize) -> Option<Vec<f64>> {
    let l = cholesky(h, n)?;
    // L⁻¹ (lower triangular), by forward substitution.
    let mut inv = vec![0.0f64; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0 / l[i * n + i];
        for j in 0..i {
            let s: f64 = (j..i).map(|k| l[i * n + k] * inv[k * n + j]).sum();
            inv[i * n + j] = -s / l[i * n + i];
        }
    }
    // H⁻¹ = L⁻ᵀ·L⁻¹.
    let mut hinv = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (i..n).map(|k| inv[k * n + i] * inv[k * n + j]).sum();
            hinv[i * n + j] = s;
            hinv[j * n + i] = s;
        }
    }
    // H⁻¹ = M·Mᵀ with M lower, so U = Mᵀ.
    let m = cholesky(&hinv, n)?;
    let mut u = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            u[j * n + i] = m[i * n + j];
        }
    }
    Some(u)
}

/// The dampened, normalised `H` of `moments`, and the columns no input ever reached (their
/// weights do not matter: GPTQ sets them to zero).
fn dampened(moments: &Moments, damp: f64) -> (Vec<f64>, Vec<bool>) {
    let n = moments.width;
    let scale = 1.0 / moments.rows.max(1) as f64;
    let mut h: Vec<f64> = moments.sum.iter().map(|v| v * scale).collect();
    let mut dead = vec![false; n];
    for (i, dead) in dead.iter_mut().enumerate() {
        if h[i * n + i] <= 0.0 {
            *dead = true;
            for j in 0..n {
                h[i * n + j] = 0.0;
                h[j * n + i] = 0.0;
            }
            h[i * n + i] = 1.0;
        }
    }
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    for i in 0..n {
        h[i * n + i] += damp * mean;
    }
    (h, dead)
}

/// Q4_0 blocks of `values` (`rows × cols`, row-major) as [`crate::quantise_q4`] lays them
/// out, rounded with GPTQ's error compensation for inputs with `moments` (which must be of
/// width `cols`). Falls back to plain rounding when `H` cannot be factored even with
/// a hundred times the usual dampening.
pub fn quantise_q4_compensated(
    values: &[f32],
    rows: usize,
    cols: usize,
    moments: &Moments,
) -> Option<(Vec<half::f16>, Vec<u8>)> {
    if moments.width != cols || values.len() != rows * cols {
        return None;
    }
    let (u, dead) = [DAMP, 10.0 * DAMP, 100.0 * DAMP].iter().find_map(|&damp| {
        let (h, dead) = dampened(moments, damp);
        inverse_factor(&h, cols).map(|u| (u, dead))
    })?;
    let nb = cols.div_ceil(Q4_BLOCK);
    let mut scales = Vec::with_capacity(rows * nb);
    let mut nibbles = Vec::with_capacity(rows * nb * Q4_BLOCK_BYTES);
    let mut w = vec![0.0f64; cols];
    for row in values.chunks_exact(cols.max(1)).take(rows) {
        for (w, (&v, &dead)) in w.iter_mut().zip(row.iter().zip(&dead)) {
            *w = if dead { 0.0 } else { f64::from(v) };
        }
        for block in 0..nb {
            let start = block * Q4_BLOCK;
            let end = (start + Q4_BLOCK).min(cols);
            // The step is chosen on the block as the earlier columns' errors left it.
            let mut v = [0.0f32; Q4_BLOCK];
            for (v, &w) in v.iter_mut().zip(&w[start..end]) {
                *v = w as f32;
            }
            let scale = q4_scale(&v);
            let d = scale.to_f32();
            scales.push(scale);
            let mut codes = [8u8; Q4_BLOCK];
            for j in start..end {
                let code = q4_code(w[j] as f32, d);
                codes[j - start] = code;
                let error = (w[j] - f64::from(d) * (f64::from(code) - 8.0)) / u[j * cols + j];
                for k in j + 1..cols {
                    w[k] -= error * u[j * cols + k];
                }
            }
            for j in 0..Q4_BLOCK_BYTES {
                nibbles.push(codes[j] | (codes[j + Q4_BLOCK_BYTES] << 4));
            }
        }
    }
    Some((scales, nibbles))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The values of the matrix as the runtime reads them.
    fn decode(scales: &[half::f16], nibbles: &[u8], rows: usize, cols: usize) -> Vec<f32> {
        let m = hrm_runtime::Matrix { rows, cols, weights: hrm_runtime::Weights::Q4 { scales, nibbles } };
        (0..rows * cols).map(|i| m.get(i).unwrap()).collect()
    }

    /// Mean squared error of `W·x` against `W'·x` over the inputs `xs`.
    fn product_error(a: &[f32], b: &[f32], xs: &[f32], rows: usize, cols: usize) -> f64 {
        let mut e = 0.0f64;
        for x in xs.chunks_exact(cols) {
            for r in 0..rows {
                let row = |w: &[f32]| -> f64 {
                    w[r * cols..(r + 1) * cols].iter().zip(x).map(|(w, x)| f64::from(*w) * f64::from(*x)).sum()
                };
                e += (row(a) - row(b)).powi(2);
            }
        }
        e / (xs.len() / cols * rows) as f64
    }

    #[test]
    fn the_inverse_factor_reproduces_the_inverse() {
        let n = 5;
        let a = noise(3, n * n);
        // H = A·Aᵀ + I is symmetric positive definite.
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| f64::from(a[i * n + k]) * f64::from(a[j * n + k])).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_factor(&h, n).unwrap();
        // H · (Uᵀ·U) = I.
        for i in 0..n {
            for j in 0..n {
                let hinv = |a: usize, b: usize| (0..n).map(|k| u[k * n + a] * u[k * n + b]).sum::<f64>();
                let v: f64 = (0..n).map(|k| h[i * n + k] * hinv(k, j)).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9, "({i},{j}) = {v}");
            }
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none(), "an indefinite matrix has no factor");
    }

    #[test]
    fn compensation_lowers_the_product_error_on_correlated_inputs() {
        let (rows, cols, samples) = (24, 80, 600);
        let w = noise(1, rows * cols);
        // Inputs with strongly correlated columns: a few factors mixed into all columns, plus
        // a little independent noise (as activations are).
        let factors = 6;
        let mix = noise(2, factors * cols);
        let f = noise(4, samples * factors);
        let eps = noise(5, samples * cols);
        let mut xs = vec![0.0f32; samples * cols];
        for s in 0..samples {
            for c in 0..cols {
                xs[s * cols + c] = (0..factors).map(|k| f[s * factors + k] * mix[k * cols + c]).sum::<f32>()
                    + 0.05 * eps[s * cols + c];
            }
        }
        let mut moments = Moments::new(cols);
        for x in xs.chunks_exact(cols) {
            moments.push(x);
        }
        moments.fold();
        assert_eq!(moments.rows, samples as u64);

        let (s, q) = crate::quantise_q4(&w, rows, cols);
        let plain = decode(&s, &q, rows, cols);
        let (s, q) = quantise_q4_compensated(&w, rows, cols, &moments).unwrap();
        assert_eq!((s.len(), q.len()), (rows * 3, rows * 3 * Q4_BLOCK_BYTES), "the Q4_0 layout");
        let compensated = decode(&s, &q, rows, cols);
        let (e_plain, e_comp) =
            (product_error(&w, &plain, &xs, rows, cols), product_error(&w, &compensated, &xs, rows, cols));
        assert!(e_comp < 0.5 * e_plain, "product error: compensated {e_comp}, plain {e_plain}");
        // The padding of the last block stays code 8 (zero).
        for r in 0..rows {
            let last = &q[(r * 3 + 2) * Q4_BLOCK_BYTES..(r * 3 + 3) * Q4_BLOCK_BYTES];
            for (j, &byte) in last.iter().enumerate() {
                for (k, code) in [(j, byte & 15), (j + Q4_BLOCK_BYTES, byte >> 4)] {
                    if 64 + k >= cols {
                        assert_eq!(code, 8);
                    }
                }
            }
        }
    }

    #[test]
    fn a_width_mismatch_is_refused() {
        let moments = Moments::new(4);
        assert!(quantise_q4_compensated(&[0.0; 8], 2, 4, &moments).is_some(), "no inputs: all columns dead");
        assert!(quantise_q4_compensated(&[0.0; 10], 2, 5, &moments).is_none());
    }
}
