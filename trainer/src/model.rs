//! HRM and TRM in candle, with trainable parameters named as in the reference state dict.
//!
//! The forward pass is the runtime's (`hrm-runtime`), batched: every sub-layer is one matrix
//! product over `[B·S, ·]`, attention one batched product per head group.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Result, Tensor, Var, D};
use hrm_convert::{Checkpoint, HostTensor};
use hrm_runtime::blob::{LayerPart, Level, TensorId, TensorLayout};
use hrm_runtime::{Config, ModelKind, PosEncoding};
use rand::Rng;

/// Which module calls of a segment keep their gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradMode {
    /// Inference: no graph at all.
    None,
    /// The reference's approximation: HRM keeps the last L call and the last H call, TRM the whole
    /// last H cycle (its L calls and its H call).
    OneStep,
    /// Every call (for checking the approximation on tiny models).
    Full,
}

/// The carry between segments.
#[derive(Debug, Clone)]
pub struct Carry {
    pub z_h: Tensor,
    pub z_l: Tensor,
}

/// What one segment produced.
#[derive(Debug, Clone)]
pub struct SegmentOut {
    pub carry: Carry,
    /// `[B, seq_len, V]`.
    pub logits: Tensor,
    /// `[B]`.
    pub q_halt: Tensor,
    pub q_continue: Tensor,
}

/// The model: its configuration and its parameters.
pub struct Net {
    pub config: Config,
    pub device: Device,
    /// By [`TensorId::code`].
    params: BTreeMap<u32, Var>,
    /// `cos`, `sin` `[S, head_dim]` (the reference's tables, halves repeated).
    rope: Option<(Tensor, Tensor)>,
}

fn host_to_tensor(t: &HostTensor, device: &Device) -> Result<Tensor> {
    Tensor::from_slice(&t.data, t.shape.as_slice(), device)
}

impl Net {
    /// Every parameter the configuration needs, in table order (the rotary tables are derived).
    pub fn parameter_ids(config: &Config) -> Vec<(TensorId, Vec<usize>)> {
        let layout = TensorLayout::new(*config);
        (0..layout.count())
            .filter_map(|i| layout.spec(i))
            .filter(|s| !s.always_f32())
            .map(|s| (s.id, s.shape.iter().take(s.rank as usize).map(|&d| d as usize).collect()))
            .collect()
    }

    fn with_params(config: Config, device: &Device, params: BTreeMap<u32, Var>) -> Result<Net> {
        let rope = if config.pos_encoding == PosEncoding::Rope {
            let (s, hd) = (config.positions(), config.head_dim());
            let half = hd / 2;
            let (mut cos, mut sin) = (Vec::with_capacity(s * hd), Vec::with_capacity(s * hd));
            for p in 0..s {
                let row: Vec<(f32, f32)> =
                    (0..half).map(|i| hrm_runtime::blob::rope_value(config.rope_theta, hd, p, i)).collect();
                for _ in 0..2 {
                    cos.extend(row.iter().map(|v| v.0));
                    sin.extend(row.iter().map(|v| v.1));
                }
            }
            Some((Tensor::from_vec(cos, (s, hd), device)?, Tensor::from_vec(sin, (s, hd), device)?))
        } else {
            None
        };
        Ok(Net { config, device: device.clone(), params, rope })
    }

    /// A model with the weights of a checkpoint (official or the trainer's own).
    pub fn from_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Net> {
        let mut params = BTreeMap::new();
        for (id, _) in Self::parameter_ids(&ck.config) {
            let host = ck.tensor(id).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {id}")))?;
            params.insert(id.code(), Var::from_tensor(&host_to_tensor(host, device)?)?);
        }
        Self::with_params(ck.config, device, params)
    }

    /// The reference's initialisation: truncated normal (±2σ, σ corrected for the truncation)
    /// with σ = 1/√fan_in for linear layers and 1/√h for token embeddings, σ = 1 for the
    /// initial states, a zero Q head with bias −5, zero puzzle embeddings.
    pub fn init(config: Config, rng: &mut impl Rng, device: &Device) -> Result<Net> {
        let h = config.hidden_size as f64;
        let mut params = BTreeMap::new();
        for (id, shape) in Self::parameter_ids(&config) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = match id {
                TensorId::QHeadWeight | TensorId::PuzzleEmbedding => vec![0.0; n],
                TensorId::QHeadBias => vec![-5.0; n],
                TensorId::HInit | TensorId::LInit => {
                    // The reference stores these in bfloat16.
                    truncated_normal(rng, n, 1.0).into_iter().map(round_bf16).collect()
                }
                TensorId::TokenEmbedding | TensorId::PositionEmbedding => truncated_normal(rng, n, 1.0 / h.sqrt()),
                _ => {
                    let fan_in = *shape.last().unwrap_or(&1) as f64;
                    truncated_normal(rng, n, 1.0 / fan_in.sqrt())
                }
            };
            params.insert(id.code(), Var::from_tensor(&Tensor::from_vec(data, shape.as_slice(), device)?)?);
        }
        Self::with_params(config, device, params)
    }

    /// A copy computing in `dtype` (f64 for gradient checks; bf16 on GPUs).
    pub fn to_dtype(&self, dtype: DType) -> Result<Net> {
        let params = self
            .params
            .iter()
            .map(|(k, v)| Ok((*k, Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let rope = match &self.rope {
            Some((c, s)) => Some((c.to_dtype(dtype)?, s.to_dtype(dtype)?)),
            None => None,
        };
        Ok(Net { config: self.config, device: self.device.clone(), params, rope })
    }

    pub fn var(&self, id: TensorId) -> Result<&Var> {
        self.params.get(&id.code()).ok_or_else(|| candle_core::Error::Msg(format!("no parameter {id}")))
    }

    /// All parameters with their ids.
    pub fn vars(&self) -> impl Iterator<Item = (TensorId, &Var)> {
        self.params.iter().filter_map(|(code, var)| TensorId::from_code(*code).map(|id| (id, var)))
    }

    /// A parameter as a tensor: tracked by autograd when `grad`, else detached (no graph).
    fn w(&self, id: TensorId, grad: bool) -> Result<Tensor> {
        let t = self.var(id)?.as_tensor();
        Ok(if grad { t.clone() } else { t.detach() })
    }

    fn layer_w(&self, level: Level, layer: u32, part: LayerPart, grad: bool) -> Result<Tensor> {
        self.w(TensorId::Layer { level, layer: layer as u16, part }, grad)
    }

    /// The weights as host tensors, for saving or converting into a blob.
    pub fn to_checkpoint(&self) -> Result<Checkpoint> {
        let mut named = Vec::new();
        for (id, var) in self.vars() {
            let t = var.as_tensor();
            let data = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            named.push((id.to_string(), HostTensor { shape: t.dims().to_vec(), data }));
        }
        Checkpoint::from_tensors(self.config, named).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// Embeds a batch: `inputs` `[B, seq_len]` and `puzzle_ids` `[B]` (u32) → `[B, S, h]`.
    pub fn embed(&self, inputs: &Tensor, puzzle_ids: &Tensor, grad: bool) -> Result<Tensor> {
        let c = &self.config;
        let (b, seq) = inputs.dims2()?;
        let h = c.hidden_size as usize;
        let tok = self.w(TensorId::TokenEmbedding, grad)?;
        let mut x = tok.index_select(&inputs.flatten_all()?, 0)?.reshape((b, seq, h))?;
        let p = c.puzzle_emb_len as usize;
        if p > 0 {
            let table = self.w(TensorId::PuzzleEmbedding, grad)?;
            let mut puzzle = table.index_select(puzzle_ids, 0)?;
            let pad = p * h - c.puzzle_emb_ndim as usize;
            if pad > 0 {
                puzzle = puzzle.pad_with_zeros(1, 0, pad)?;
            }
            x = Tensor::cat(&[&puzzle.reshape((b, p, h))?, &x], 1)?;
        }
        if c.pos_encoding == PosEncoding::Learned {
            let pos = self.w(TensorId::PositionEmbedding, grad)?;
            x = (x.broadcast_add(&pos)? * f64::from(std::f32::consts::FRAC_1_SQRT_2))?;
        }
        x * f64::from((c.hidden_size as f32).sqrt())
    }

    /// `z_H`, `z_L` of a fresh example, `[B, S, h]`.
    pub fn initial_carry(&self, batch: usize) -> Result<Carry> {
        let shape = (batch, self.config.positions(), self.config.hidden_size as usize);
        Ok(Carry {
            z_h: self.w(TensorId::HInit, false)?.broadcast_as(shape)?.contiguous()?,
            z_l: self.w(TensorId::LInit, false)?.broadcast_as(shape)?.contiguous()?,
        })
    }

    /// Replaces the carry of the slots where `reset` (`[B]`, u8) is 1 by the initial states.
    pub fn reset_carry(&self, carry: &Carry, reset: &Tensor) -> Result<Carry> {
        let fresh = self.initial_carry(carry.z_h.dim(0)?)?;
        let mask = reset.reshape((reset.dim(0)?, 1, 1))?.broadcast_as(carry.z_h.shape())?;
        Ok(Carry { z_h: mask.where_cond(&fresh.z_h, &carry.z_h)?, z_l: mask.where_cond(&fresh.z_l, &carry.z_l)? })
    }

    /// Module calls in one segment: `H_cycles · (L_cycles + 1)`, L calls then an H call per
    /// cycle.
    pub fn calls_per_segment(&self) -> u32 {
        self.config.h_cycles * (self.config.l_cycles + 1)
    }

    /// Index of the first call that keeps its gradient under [`GradMode::OneStep`]: HRM keeps
    /// the last L call and the last H call, TRM the whole last cycle.
    pub fn one_step_start(&self) -> u32 {
        match self.config.kind {
            ModelKind::Hrm => self.calls_per_segment() - 2,
            ModelKind::Trm => self.calls_per_segment() - (self.config.l_cycles + 1),
        }
    }

    /// Runs module calls `range` of a segment (see [`Net::calls_per_segment`]) from `carry`:
    /// an L call is `z_L ← L(z_L + (z_H + x))`, an H call `z_H ← H(z_H + z_L)`.
    pub fn run_calls(&self, carry: &Carry, x: &Tensor, range: std::ops::Range<u32>, grad: bool) -> Result<Carry> {
        let h_level = match self.config.kind {
            ModelKind::Hrm => Level::H,
            ModelKind::Trm => Level::L,
        };
        let per_cycle = self.config.l_cycles + 1;
        let x = if grad { x.clone() } else { x.detach() };
        let (mut z_h, mut z_l) = (carry.z_h.clone(), carry.z_l.clone());
        for call in range {
            if call % per_cycle < self.config.l_cycles {
                z_l = self.module(Level::L, (&z_l + (&z_h + &x)?)?, grad)?;
            } else {
                z_h = self.module(h_level, (&z_h + &z_l)?, grad)?;
            }
        }
        Ok(Carry { z_h, z_l })
    }

    /// Logits (`[B, seq_len, V]`, prefix rows dropped) and Q values of `z_H`.
    pub fn heads(&self, z_h: &Tensor, grad: bool) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.config;
        let p = c.puzzle_emb_len as usize;
        let logits = linear(&z_h.narrow(1, p, c.seq_len as usize)?, &self.w(TensorId::LmHead, grad)?)?;
        let q = linear(&z_h.narrow(1, 0, 1)?.squeeze(1)?, &self.w(TensorId::QHeadWeight, grad)?)?
            .broadcast_add(&self.w(TensorId::QHeadBias, grad)?)?;
        Ok((logits, q.narrow(1, 0, 1)?.squeeze(1)?, q.narrow(1, 1, 1)?.squeeze(1)?))
    }

    /// One ACT segment from `carry` on the embedded input `x` (`[B, S, h]`).
    pub fn segment(&self, carry: &Carry, x: &Tensor, mode: GradMode) -> Result<SegmentOut> {
        let total = self.calls_per_segment();
        let carry = match mode {
            GradMode::None => self.run_calls(carry, x, 0..total, false)?,
            GradMode::Full => self.run_calls(carry, x, 0..total, true)?,
            GradMode::OneStep => {
                let start = self.one_step_start();
                let before = self.run_calls(carry, x, 0..start, false)?;
                // Everything before the gradient region is a constant.
                let before = Carry { z_h: before.z_h.detach(), z_l: before.z_l.detach() };
                self.run_calls(&before, x, start..total, true)?
            }
        };
        let (logits, q_halt, q_continue) = self.heads(&carry.z_h, mode != GradMode::None)?;
        Ok(SegmentOut { carry, logits, q_halt, q_continue })
    }

    fn module(&self, level: Level, mut z: Tensor, grad: bool) -> Result<Tensor> {
        let layers = match level {
            Level::H => self.config.h_layers,
            Level::L => self.config.l_layers,
        };
        for layer in 0..layers {
            z = if self.config.mlp_t {
                self.token_mix(level, layer, &z, grad)?
            } else {
                self.attention(level, layer, &z, grad)?
            };
            let gate_up = self.layer_w(level, layer, LayerPart::GateUp, grad)?;
            let down = self.layer_w(level, layer, LayerPart::Down, grad)?;
            let out = swiglu(&z, &gate_up, &down)?;
            z = rms_norm(&(z + out)?, self.config.rms_norm_eps)?;
        }
        Ok(z)
    }

    fn attention(&self, level: Level, layer: u32, z: &Tensor, grad: bool) -> Result<Tensor> {
        let c = &self.config;
        let (b, s, h) = z.dims3()?;
        let nh = c.num_heads as usize;
        let hd = c.head_dim();
        let qkv = linear(z, &self.layer_w(level, layer, LayerPart::Qkv, grad)?)?.reshape((b, s, 3 * nh, hd))?;
        let heads = |start: usize| qkv.narrow(2, start, nh)?.transpose(1, 2)?.contiguous();
        let (mut q, mut k, v) = (heads(0)?, heads(nh)?, heads(2 * nh)?);
        if let Some((cos, sin)) = &self.rope {
            q = rope(&q, cos, sin)?;
            k = rope(&k, cos, sin)?;
        }
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let attn = softmax(&scores)?.matmul(&v)?;
        let attn = attn.transpose(1, 2)?.reshape((b, s, h))?;
        let out = linear(&attn, &self.layer_w(level, layer, LayerPart::AttnOut, grad)?)?;
        rms_norm(&(z + out)?, c.rms_norm_eps)
    }

    /// TRM `mlp_t`: SwiGLU over the sequence axis, post-norm over it.
    fn token_mix(&self, level: Level, layer: u32, z: &Tensor, grad: bool) -> Result<Tensor> {
        let zt = z.transpose(1, 2)?.contiguous()?;
        let gate_up = self.layer_w(level, layer, LayerPart::TokenGateUp, grad)?;
        let down = self.layer_w(level, layer, LayerPart::TokenDown, grad)?;
        let out = swiglu(&zt, &gate_up, &down)?;
        rms_norm(&(zt + out)?, self.config.rms_norm_eps)?.transpose(1, 2)?.contiguous()
    }
}

/// `x · Wᵀ` over the last axis of `x` (any leading shape).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (rows, cols) = w.dims2()?;
    let n: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((n, cols))?.matmul(&w.t()?)?;
    let mut out = dims;
    *out.last_mut().unwrap_or(&mut 0) = rows;
    y.reshape(out)
}

fn swiglu(x: &Tensor, gate_up: &Tensor, down: &Tensor) -> Result<Tensor> {
    let gu = linear(x, gate_up)?;
    let inter = gu.dim(D::Minus1)? / 2;
    let gate = gu.narrow(D::Minus1, 0, inter)?;
    let up = gu.narrow(D::Minus1, inter, inter)?;
    linear(&(candle_nn::Activation::Silu.forward(&gate)? * up)?, down)
}

/// `x / sqrt(mean(x²) + eps)` over the last axis.
pub fn rms_norm(x: &Tensor, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + f64::from(eps))?.sqrt()?)
}

/// Softmax over the last axis, differentiable (the max shift is a constant).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// `v·cos + rotate_half(v)·sin` on `[B, nh, S, hd]`.
fn rope(v: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = v.dim(D::Minus1)?;
    let half = hd / 2;
    let v1 = v.narrow(D::Minus1, 0, half)?;
    let v2 = v.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&v2.neg()?, &v1], D::Minus1)?;
    v.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// Truncated normal on ±2σ with σ corrected so that the truncated distribution has std `std`
/// (the reference's `trunc_normal_init_`), by rejection.
pub fn truncated_normal(rng: &mut impl Rng, n: usize, std: f64) -> Vec<f32> {
    // std of a standard normal truncated to ±2: sqrt(1 − 2·2·φ(2)/(Φ(2)−Φ(−2))).
    const TRUNCATED_STD: f64 = 0.879_626_035_404_561_1;
    let comp = std / TRUNCATED_STD;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // Box–Muller pair.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        for z in [r * (std::f64::consts::TAU * u2).cos(), r * (std::f64::consts::TAU * u2).sin()] {
            if z.abs() <= 2.0 && out.len() < n {
                out.push((z * comp) as f32);
            }
        }
    }
    out
}

fn round_bf16(v: f32) -> f32 {
    // Round to nearest even on the upper 16 bits, as torch's bfloat16 conversion does.
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_normal_has_the_requested_spread() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let v = truncated_normal(&mut rng, 200_000, 0.5);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((std - 0.5).abs() < 0.005, "{std}");
        let bound = 2.0 * 0.5 / 0.879_626_035_404_561_1;
        assert!(v.iter().all(|&x| f64::from(x).abs() <= bound + 1e-6));
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    use rand::SeedableRng;
}
