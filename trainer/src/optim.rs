//! Optimisers of the reference: Adam-atan2 with decoupled weight decay for the network, sign-SGD
//! for the puzzle-embedding rows a batch used, and the warm-up + cosine schedule.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Adam with `atan2(m̂, √v̂)` in place of `m̂ / (√v̂ + ε)` (no ε to tune, bounded steps) and
/// decoupled weight decay.
pub struct AdamAtan2 {
    pub vars: Vec<Var>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub step: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
}

impl AdamAtan2 {
    pub fn new(vars: Vec<Var>, beta1: f64, beta2: f64, weight_decay: f64) -> Result<Self> {
        let m = vars.iter().map(|v| v.as_tensor().zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(AdamAtan2 { vars, m, v, step: 0, beta1, beta2, weight_decay })
    }

    /// One step of the `adam-atan2` kernel (0.0.3, the reference's optimiser):
    /// `p ← p·(1 − lr·wd)`, `m ← lerp(m, g, 1 − β₁)`, `v ← lerp(v, g², 1 − β₂)`,
    /// `p ← p − (lr / bc₁)·atan2(m, √v / √bc₂)` with `bcᵢ = 1 − βᵢ^step`. The step count is
    /// shared; parameters without a gradient are left alone (no decay either).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for ((var, m), v) in self.vars.iter().zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            *m = lerp(m, g, 1.0 - self.beta1)?;
            *v = lerp(v, &g.sqr()?, 1.0 - self.beta2)?;
            let update = atan2(m, &(v.sqrt()? / bc2_sqrt)?)?;
            var.set(&(decayed - (update * step_size)?)?)?;
        }
        Ok(())
    }
}

/// `a + t·(b − a)` in the kernel's order, `t·b + (a − t·a)` (there two fused multiply-adds).
fn lerp(a: &Tensor, b: &Tensor, t: f64) -> Result<Tensor> {
    (b * t)? + (a - (a * t)?)?
}

/// `atan2(y, x)` for `x ≥ 0` (always the case here: `x = √v̂`), elementwise, from operations
/// candle has on every device: `atan2(y, x) = 2·atan(y / (√(x² + y²) + x))`, whose argument lies
/// in [-1, 1]; 0 where `x = y = 0`.
fn atan2(y: &Tensor, x: &Tensor) -> Result<Tensor> {
    let r = (x.sqr()? + y.sqr()?)?.sqrt()?;
    let denom = (r + x)?;
    let zero = denom.eq(0.0)?;
    let safe = zero.where_cond(&denom.ones_like()?, &denom)?;
    let t = (y / safe)?;
    let t = zero.where_cond(&t.zeros_like()?, &t)?;
    atan_unit(&t)? * 2.0
}

/// `atan(t)` for |t| ≤ 1: above tan(π/8) use `atan(a) = π/4 + atan((a − 1)/(a + 1))`, then the
/// Taylor series on |u| ≤ tan(π/8) to u¹⁹ (error below 2e-8).
fn atan_unit(t: &Tensor) -> Result<Tensor> {
    let a = t.abs()?;
    let big = a.gt(std::f64::consts::SQRT_2 - 1.0)?;
    let reduced = ((&a - 1.0)? / (&a + 1.0)?)?;
    let u = big.where_cond(&reduced, &a)?;
    let u2 = u.sqr()?;
    // Horner over c_k = (−1)^k / (2k + 1), k = 9 down to 0.
    let coefficient = |k: i32| if k % 2 == 0 { 1.0 } else { -1.0 } / f64::from(2 * k + 1);
    let mut poly = (u2.ones_like()? * coefficient(9))?;
    for k in (0..9).rev() {
        poly = ((poly * &u2)? + coefficient(k))?;
    }
    let atan_u = (poly * &u)?;
    let offset = (big.to_dtype(atan_u.dtype())? * std::f64::consts::FRAC_PI_4)?;
    let atan_a = (offset + atan_u)?;
    t.lt(0.0)?.where_cond(&atan_a.neg()?, &atan_a)
}

/// Sign-SGD with decoupled weight decay on the rows of an embedding table that the batch used
/// (the reference's sparse puzzle-embedding optimiser).
pub struct SignSgdRows {
    pub var: Var,
    pub weight_decay: f64,
}

impl SignSgdRows {
    /// `rows_used` `[N, 1]` f32 mask (1 where the batch used the row).
    pub fn step(&self, grads: &GradStore, rows_used: &Tensor, lr: f64) -> Result<()> {
        let Some(g) = grads.get(self.var.as_tensor()) else { return Ok(()) };
        let p = self.var.as_tensor();
        let updated = ((p * (1.0 - lr * self.weight_decay))? - (g.sign()? * lr)?)?;
        let mask = rows_used.broadcast_as(p.shape())?.ne(0.0)?;
        self.var.set(&mask.where_cond(&updated, p)?)
    }
}

/// Linear warm-up to `base_lr`, then a cosine from `base_lr` down to `min_ratio · base_lr`.
pub fn learning_rate(step: u64, base_lr: f64, warmup: u64, total: u64, min_ratio: f64) -> f64 {
    if step < warmup {
        return base_lr * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    base_lr * (min_ratio + (1.0 - min_ratio) * cosine.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn atan2_matches_std() {
        let d = Device::Cpu;
        let ys: Vec<f32> = vec![0.0, 1.0, -1.0, 3.0, -0.2, 1e-8, 5.0, -7.0, 0.4, 0.0];
        let xs: Vec<f32> = vec![1.0, 1.0, 1.0, 0.1, 2.0, 1e-8, 0.0, 3.0, 0.97, 0.0];
        let y = Tensor::new(ys.as_slice(), &d).unwrap();
        let x = Tensor::new(xs.as_slice(), &d).unwrap();
        let got = atan2(&y, &x).unwrap().to_vec1::<f32>().unwrap();
        for ((g, yy), xx) in got.iter().zip(&ys).zip(&xs) {
            let want = if *yy == 0.0 && *xx == 0.0 { 0.0 } else { yy.atan2(*xx) };
            assert!((g - want).abs() < 1e-6, "atan2({yy}, {xx}) = {g}, want {want}");
        }
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert_eq!(learning_rate(0, 1.0, 10, 110, 0.1), 0.0);
        assert!((learning_rate(5, 1.0, 10, 110, 0.1) - 0.5).abs() < 1e-12);
        assert!((learning_rate(10, 1.0, 10, 110, 0.1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(60, 1.0, 10, 110, 0.1) - 0.55).abs() < 1e-12);
        assert!((learning_rate(110, 1.0, 10, 110, 0.1) - 0.1).abs() < 1e-12);
        assert!((learning_rate(500, 1.0, 10, 110, 1.0) - 1.0).abs() < 1e-12);
    }
}
