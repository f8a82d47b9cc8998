//! The integer-only forward pass: the same computation as the `f32` one in `session.rs`, with
//! every activation a fixed-point integer.
//!
//! Conventions (TFLM / CMSIS-NN style):
//! - an activation at a site with `f` fraction bits is `round(v · 2^f)`, saturated to ±32767
//!   and held as `i16` ([`Config::fixed_arena_plan`](crate::Config::fixed_arena_plan): about
//!   half the `f32` arena); every store into an activation buffer saturates, so every value
//!   there is within ±32767 (never −32768), which the products' exact `i32` sums rely on;
//! - a product with `int8` weights accumulates `i16 × i8` in `i32` (in chunks short enough that
//!   it cannot overflow) and then `i64`; the row's `f32` scale is read as an exact integer
//!   mantissa and a power of two ([`decompose_f32`]), so requantisation is one integer multiply
//!   and a rounding shift;
//! - RMSNorm divides by an integer square root, SiLU uses a sigmoid table, softmax an `e^-x`
//!   table, RoPE the stored table converted to Q15.
//!
//! Nothing here uses a floating-point instruction: the results are the same integers on every
//! platform. `f32` values stored in the blob (scales, `H_init`, biases, the rotary table, the
//! norm's epsilon) are only ever read as bits.

use super::math::{
    decompose_f32, exp_neg_q30, fixed_from_f32_bits, mul_pow2_round, rsqrt, shift_round, shift_round_i64, sigmoid_q15,
    NarrowSigmoid, NARROW_SIGMOID_FRAC,
};
use super::{FixedOutcome, LayerSite, Sites, State, MAX_FRAC, MIN_FRAC};
use crate::blob::{LayerPart, Level, TensorId, TensorLayout};
use crate::config::{Config, HaltRule, ModelKind, PosEncoding};
use crate::ensemble::LatentNoise;
use crate::kernels::{check_matmul, Dims};
use crate::model::{Matrix, Model, Weights};
use crate::{Activations, DType, Error};

/// The saturation bound of a stored activation.
const ACT_MAX: i64 = 32767;
/// The `d = fy − fx` the assembly requantisation takes (`arm_thumb2`, `arm_dsp`, `riscv`):
/// there a scale's shift in 25..=63 implies a normal exponent (formats have −8 to 24 fraction
/// bits, so every product's `d` is within).
#[cfg(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"))]
const ASM_REQUANT_D: core::ops::RangeInclusive<i32> = -129..=86;
/// Elements per `i32` partial sum of a dot product: `256 · 32767 · 127 < 2^31`.
const DOT_CHUNK: usize = 256;
/// `round(2^30 / √2)`: the reference's scale of `embedding + position` in Q30.
const FRAC_1_SQRT_2_Q30: i64 = 759_250_125;
/// Extra fraction bits of the embedding before its final rounding.
const EMBED_EXTRA: i32 = 16;

fn sat16(v: i64) -> i16 {
    v.clamp(-ACT_MAX, ACT_MAX) as i16
}

fn sat32(v: i64) -> i32 {
    v.clamp(-(i32::MAX as i64), i32::MAX as i64) as i32
}

/// `v` from `from` to `to` fraction bits, rounded.
fn rescale(v: i64, from: i32, to: i32) -> i64 {
    shift_round_i64(v, from - to)
}

/// The integer forward pass of a fixed-point blob, over buffers the session carves from its
/// arena ([`State`]).
#[derive(Debug, Clone, Copy)]
pub struct Forward<'m> {
    model: Model<'m>,
    config: Config,
    sites: Sites,
    formats: &'m [i32],
}

fn split<T>(buf: &mut [T], at: usize) -> Result<(&mut [T], &mut [T]), Error> {
    buf.split_at_mut_checked(at).ok_or(Error::ArenaTooSmall { needed: at, got: 0 })
}

/// What a product's outputs are stored as: activations `i16`, saturated to ±32767; the logits
/// and the Q head `i32`.
trait Output: Copy {
    fn saturated(v: i64) -> Self;
    /// The outputs for the microcontroller loops, which take either (one copy of their code:
    /// a copy per type was 8 to 13 KB more flash).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn rows(y: &mut [Self]) -> Rows<'_>;
}

impl Output for i16 {
    fn saturated(v: i64) -> i16 {
        sat16(v)
    }
    fn rows(y: &mut [i16]) -> Rows<'_> {
        Rows::Activations(y)
    }
}

impl Output for i32 {
    fn saturated(v: i64) -> i32 {
        sat32(v)
    }
    fn rows(y: &mut [i32]) -> Rows<'_> {
        Rows::Wide(y)
    }
}

/// A product's output buffer, of either type.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
enum Rows<'y> {
    Activations(&'y mut [i16]),
    Wide(&'y mut [i32]),
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::Activations(y) => y.len(),
            Rows::Wide(y) => y.len(),
        }
    }

    /// The saturation bound.
    fn limit(&self) -> i64 {
        match self {
            Rows::Activations(_) => ACT_MAX,
            Rows::Wide(_) => i64::from(i32::MAX),
        }
    }

    /// `y[i] = v`, saturated (nothing where `i` is past the end).
    fn store(&mut self, i: usize, v: i64) {
        match self {
            Rows::Activations(y) => {
                if let Some(y) = y.get_mut(i) {
                    *y = sat16(v);
                }
            }
            Rows::Wide(y) => {
                if let Some(y) = y.get_mut(i) {
                    *y = sat32(v);
                }
            }
        }
    }

    /// Values `at..end` as activations, if they are activations and exist (for the assembly
    /// requantisation).
    #[cfg_attr(
        not(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32")),
        allow(dead_code)
    )]
    fn activations(&mut self, at: usize, end: usize) -> Option<&mut [i16]> {
        match self {
            Rows::Activations(y) => y.get_mut(at..end),
            Rows::Wide(_) => None,
        }
    }
}

impl<'m> Forward<'m> {
    /// Checks that the blob is a fixed-point one this path can run: every matrix `int8`, every
    /// vector and the rotary table `f32`, and a format per site within range.
    pub fn new(model: Model<'m>) -> Result<Forward<'m>, Error> {
        let config = *model.config();
        if model.header().activations != Activations::Fixed {
            return Err(Error::InvalidHeader("not a fixed-point blob"));
        }
        let layout = TensorLayout::of(config, Activations::Fixed);
        for index in 0..layout.count() {
            let spec = layout.spec(index).ok_or(Error::InvalidHeader("tensor table layout"))?;
            let entry = model.entry(index)?;
            let want = match spec.id {
                TensorId::ActivationFormats => DType::I32,
                TensorId::RopeCos | TensorId::RopeSin => DType::F32,
                _ if spec.rank == 1 => DType::F32,
                _ => DType::I8,
            };
            if entry.dtype != want.code() {
                return Err(Error::InvalidHeader("a fixed-point blob stores matrices as int8 and vectors as f32"));
            }
        }
        let formats = match model.tensor(TensorId::ActivationFormats)?.weights {
            Weights::I32(f) => f,
            _ => return Err(Error::InvalidHeader("activation formats must be i32")),
        };
        if formats.iter().any(|f| !(MIN_FRAC..=MAX_FRAC).contains(f)) {
            return Err(Error::InvalidHeader("activation format out of range"));
        }
        Ok(Forward { model, config, sites: Sites::new(&config), formats })
    }

    /// Fraction bits of `site`.
    pub fn format(&self, site: usize) -> i32 {
        self.formats.get(site).copied().unwrap_or(0)
    }

    fn layer(&self, level: Level, layer: u32, part: LayerPart) -> Result<Matrix<'m>, Error> {
        self.model.layer(level, layer, part)
    }

    /// The site of `layer` of `level`.
    fn site(&self, level: Level, layer: u32, site: LayerSite) -> usize {
        self.sites.at(level, layer, site)
    }

    /// Embeds an example (already checked by the session) and resets the carry.
    // Never inlined: firmware checks find it by name in the disassembly (no float calls).
    #[inline(never)]
    pub fn embed(&self, tokens: &[u32], puzzle_id: u32, st: &mut State<'_>) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let prefix = c.puzzle_emb_len as usize;
        let fz = self.format(Sites::STATE);
        // √h in Q16, exact for square h.
        let sqrt_h = super::math::isqrt_u64((h as u64) << 32) as i64;
        let hi = fz + EMBED_EXTRA;
        let tok = self.model.tensor(TensorId::TokenEmbedding)?;
        let puzzle = if c.puzzle_emb_ndim > 0 { Some(self.model.tensor(TensorId::PuzzleEmbedding)?) } else { None };
        let pos = match c.pos_encoding {
            PosEncoding::Learned => Some(self.model.tensor(TensorId::PositionEmbedding)?),
            _ => None,
        };
        for (p, row) in st.input.chunks_exact_mut(h).enumerate() {
            for (i, x) in row.iter_mut().enumerate() {
                // The value times √h, with `hi` fraction bits.
                let mut v = if p < prefix {
                    match puzzle {
                        Some(m) if p * h + i < m.cols => element(&m, puzzle_id as usize, p * h + i, sqrt_h, hi)?,
                        _ => 0,
                    }
                } else {
                    let token = *tokens.get(p - prefix).ok_or(Error::InputLength { expected: 0, got: 0 })?;
                    element(&tok, token as usize, i, sqrt_h, hi)?
                };
                if let Some(pos) = pos {
                    v = shift_round(
                        v.saturating_add(element(&pos, p, i, sqrt_h, hi)?) as i128 * FRAC_1_SQRT_2_Q30 as i128,
                        30,
                    );
                }
                *x = sat16(rescale(v, hi, fz));
            }
        }
        let init = |id, out: &mut [i16]| -> Result<(), Error> {
            let m = self.model.tensor(id)?;
            let Weights::F32(v) = m.weights else { return Err(Error::InvalidHeader("init vectors must be f32")) };
            for row in out.chunks_exact_mut(h) {
                for (o, x) in row.iter_mut().zip(v) {
                    *o = sat16(i64::from(fixed_from_f32_bits(x.to_bits(), fz).unwrap_or(0)));
                }
            }
            Ok(())
        };
        init(TensorId::HInit, st.z_h)?;
        init(TensorId::LInit, st.z_l)?;
        Ok(())
    }

    /// One ACT segment from the current carry: the logits (format [`Sites::LOGITS`]) and Q.
    #[inline(never)]
    pub fn step(&self, st: &mut State<'_>, mut noise: Option<&mut LatentNoise>) -> Result<FixedOutcome, Error> {
        let c = self.config;
        let h_level = match c.kind {
            ModelKind::Hrm => Level::H,
            ModelKind::Trm => Level::L,
        };
        for _ in 0..c.h_cycles {
            for _ in 0..c.l_cycles {
                for ((l, &hv), &x) in st.z_l.iter_mut().zip(st.z_h.iter()).zip(st.input.iter()) {
                    *l = sat16(i64::from(*l) + i64::from(hv) + i64::from(x));
                }
                self.module(Level::L, st.z_l, st.scratch, st.scores)?;
                if let Some(n) = noise.as_deref_mut() {
                    n.add_fixed(st.z_l, ACT_MAX);
                }
            }
            for (hv, &l) in st.z_h.iter_mut().zip(st.z_l.iter()) {
                *hv = sat16(i64::from(*hv) + i64::from(l));
            }
            self.module(h_level, st.z_h, st.scratch, st.scores)?;
            if let Some(n) = noise.as_deref_mut().filter(|n| n.on_z_h()) {
                n.add_fixed(st.z_h, ACT_MAX);
            }
        }

        let h = c.hidden_size as usize;
        let prefix = c.puzzle_emb_len as usize;
        let (fz, fl, fq) = (self.format(Sites::STATE), self.format(Sites::LOGITS), self.format(Sites::Q));
        let lm = self.model.tensor(TensorId::LmHead)?;
        let token_rows = st.z_h.get(prefix * h..).unwrap_or(&[]);
        let v = c.vocab_size as usize;
        linear(&lm, token_rows, h, st.logits, v, c.seq_len as usize, fz, fl)?;
        let mut q = [0i32; 2];
        let first = st.z_h.get(..h).ok_or(Error::NotReset)?;
        linear(&self.model.tensor(TensorId::QHeadWeight)?, first, h, &mut q, 2, 1, fz, fq)?;
        let Weights::F32(bias) = self.model.tensor(TensorId::QHeadBias)?.weights else {
            return Err(Error::InvalidHeader("q_head.bias must be f32"));
        };
        for (q, b) in q.iter_mut().zip(bias) {
            *q = sat32(i64::from(*q) + i64::from(fixed_from_f32_bits(b.to_bits(), fq).unwrap_or(0)));
        }
        let [q_halt, q_continue] = q;
        let halt_requested = match c.halt_rule {
            HaltRule::HaltOverContinue => q_halt > q_continue,
            HaltRule::HaltPositive => q_halt > 0,
        };
        Ok(FixedOutcome { q_halt, q_continue, frac: fq, halt_requested })
    }

    /// `z ← blocks(z)`.
    fn module(&self, level: Level, z: &mut [i16], scratch: &mut [i16], scores: &mut [i32]) -> Result<(), Error> {
        let layers = match level {
            Level::H => self.config.h_layers,
            Level::L => self.config.l_layers,
        };
        for layer in 0..layers {
            if self.config.has_attention() {
                self.attention(level, layer, z, scratch, scores)?;
            } else {
                self.token_mix(level, layer, z, scratch)?;
            }
            self.channel_mlp(level, layer, z, scratch)?;
        }
        Ok(())
    }

    /// `z ← rms_norm(z + attention(z))`, laid out as the `f32` path lays it out.
    fn attention(
        &self,
        level: Level,
        layer: u32,
        z: &mut [i16],
        scratch: &mut [i16],
        scores: &mut [i32],
    ) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = c.positions();
        let hd = c.head_dim();
        let r = c.query_block();
        let fz = self.format(Sites::STATE);
        let fin = self.format(self.site(level, layer, LayerSite::MixerIn));
        let fact = self.format(self.site(level, layer, LayerSite::MixerAct));
        let fout = self.format(self.site(level, layer, LayerSite::MixerOut));
        let wqkv = self.layer(level, layer, LayerPart::Qkv)?;
        let wo = self.layer(level, layer, LayerPart::AttnOut)?;

        let (q, rest) = split(scratch, s * h)?;
        let (k, rest) = split(rest, s * h)?;
        let (vt, rest) = split(rest, h * s)?;
        let (heads_out, _) = split(rest, s * h)?;
        let (scores, _) = split(scores, r * s)?;

        linear(&wqkv.rows(0, h)?, z, h, q, h, s, fz, fin)?;
        linear(&wqkv.rows(h, h)?, z, h, k, h, s, fz, fin)?;
        linear(&wqkv.rows(2 * h, h)?, z, h, heads_out, h, s, fz, fin)?;
        transpose(heads_out, s, h, vt);
        if c.pos_encoding == PosEncoding::Rope {
            let half = hd / 2;
            let (Weights::F32(cos), Weights::F32(sin)) =
                (self.model.tensor(TensorId::RopeCos)?.weights, self.model.tensor(TensorId::RopeSin)?.weights)
            else {
                return Err(Error::InvalidHeader("rotary table must be f32"));
            };
            for (((q_row, k_row), cos), sin) in
                q.chunks_exact_mut(h).zip(k.chunks_exact_mut(h)).zip(cos.chunks_exact(half)).zip(sin.chunks_exact(half))
            {
                for head in q_row.chunks_exact_mut(hd).chain(k_row.chunks_exact_mut(hd)) {
                    rope(head, cos, sin);
                }
            }
        }

        // 1/√head_dim as a multiplier and shift.
        let (inv_sqrt, inv_shift) = rsqrt(hd as u64);
        for head in 0..c.num_heads as usize {
            let off = head * hd;
            for start in (0..s).step_by(r) {
                let n = r.min(s - start);
                for (i, row) in scores.chunks_exact_mut(s).take(n).enumerate() {
                    let qi = q.get((start + i) * h + off..(start + i) * h + off + hd).unwrap_or(&[]);
                    // Scores with `fin` fraction bits.
                    for (j, score) in row.iter_mut().enumerate() {
                        let kj = k.get(j * h + off..j * h + off + hd).unwrap_or(&[]);
                        *score = sat32(shift_round(dot(qi, kj) as i128, fin));
                    }
                    softmax_q30(row, inv_sqrt, inv_shift, fin);
                    for d in 0..hd {
                        let v_row = vt.get((off + d) * s..(off + d + 1) * s).unwrap_or(&[]);
                        let acc = dot(row, v_row);
                        if let Some(o) = heads_out.get_mut((start + i) * h + off + d) {
                            *o = sat16(shift_round(acc as i128, 30 + fin - fact));
                        }
                    }
                }
            }
        }
        linear(&wo, heads_out, h, q, h, s, fact, fout)?;
        for (x, p) in z.chunks_exact_mut(h).zip(q.chunks_exact(h)) {
            residual_norm(x, p, fout, fz, self.config.rms_norm_eps.to_bits());
        }
        Ok(())
    }

    /// TRM `mlp_t`: the SwiGLU over the sequence axis of every channel.
    fn token_mix(&self, level: Level, layer: u32, z: &mut [i16], scratch: &mut [i16]) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = c.positions();
        let wgu = self.layer(level, layer, LayerPart::TokenGateUp)?;
        let wd = self.layer(level, layer, LayerPart::TokenDown)?;
        let formats = self.swiglu_formats(level, layer, LayerSite::MixerIn);
        let (columns, rest) = split(scratch, h * s)?;
        let (proj, rest) = split(rest, h * s)?;
        transpose(z, s, h, columns);
        self.swiglu_rows(&wgu, &wd, c.mlp_t_inter, columns, h, proj, rest, formats)?;
        for (column, p) in columns.chunks_exact_mut(s).zip(proj.chunks_exact(s)) {
            residual_norm(column, p, formats.3, formats.0, c.rms_norm_eps.to_bits());
        }
        transpose(columns, h, s, z);
        Ok(())
    }

    /// `z ← rms_norm(z + swiglu(z))` over all rows.
    fn channel_mlp(&self, level: Level, layer: u32, z: &mut [i16], scratch: &mut [i16]) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = z.len() / h.max(1);
        let wgu = self.layer(level, layer, LayerPart::GateUp)?;
        let wd = self.layer(level, layer, LayerPart::Down)?;
        let formats = self.swiglu_formats(level, layer, LayerSite::MlpIn);
        let (proj, rest) = split(scratch, s * h)?;
        self.swiglu_rows(&wgu, &wd, c.mlp_inter, z, s, proj, rest, formats)?;
        for (x, p) in z.chunks_exact_mut(h).zip(proj.chunks_exact(h)) {
            residual_norm(x, p, formats.3, formats.0, c.rms_norm_eps.to_bits());
        }
        Ok(())
    }

    /// `(input, gate/up, activation, output)` formats of a SwiGLU whose first site is `first`.
    fn swiglu_formats(&self, level: Level, layer: u32, first: LayerSite) -> (i32, i32, i32, i32) {
        let (gu, act, out) = match first {
            LayerSite::MixerIn => (LayerSite::MixerIn, LayerSite::MixerAct, LayerSite::MixerOut),
            _ => (LayerSite::MlpIn, LayerSite::MlpAct, LayerSite::MlpOut),
        };
        (
            self.format(Sites::STATE),
            self.format(self.site(level, layer, gu)),
            self.format(self.site(level, layer, act)),
            self.format(self.site(level, layer, out)),
        )
    }

    /// `out = swiglu(x)` for `rows` rows, with the `f32` path's two strategies (the results
    /// do not depend on which runs: every value is computed by the same integer operations).
    #[allow(clippy::too_many_arguments)]
    fn swiglu_rows(
        &self,
        gate_up: &Matrix<'_>,
        down: &Matrix<'_>,
        inter: u32,
        x: &[i16],
        rows: usize,
        out: &mut [i16],
        scratch: &mut [i16],
        (fx, fgu, fact, fout): (i32, i32, i32, i32),
    ) -> Result<(), Error> {
        let width = gate_up.cols;
        let out_width = down.rows;
        let inter = inter as usize;
        let block = self.config.block as usize;
        let silu = SiluMul::new(fgu, fact);
        if block >= rows {
            let b = self.config.inter_block(inter as u32);
            let (a, rest) = split(scratch, rows * inter)?;
            let (gu, _) = split(rest, rows * 2 * b)?;
            for start in (0..inter).step_by(b.max(1)) {
                let n = b.min(inter - start);
                linear(&gate_up.rows(start, n)?, x, width, gu, 2 * b, rows, fx, fgu)?;
                let up_out = gu.get_mut(b..).unwrap_or(&mut []);
                linear(&gate_up.rows(inter + start, n)?, x, width, up_out, 2 * b, rows, fx, fgu)?;
                for (row, a) in gu.chunks_exact(2 * b).zip(a.chunks_exact_mut(inter)).take(rows) {
                    let (g, u) = row.split_at(b);
                    silu.rows_into(a.get_mut(start..start + n).unwrap_or(&mut []), g, u);
                }
            }
            linear(down, a, inter, out, out_width, rows, fact, fout)
        } else {
            let (gu, _) = split(scratch, block * 2 * inter)?;
            for start in (0..rows).step_by(block.max(1)) {
                let n = block.min(rows - start);
                let xs = x.get(start * width..).unwrap_or(&[]);
                linear(gate_up, xs, width, gu, 2 * inter, n, fx, fgu)?;
                for row in gu.chunks_exact_mut(2 * inter).take(n) {
                    let (g, u) = row.split_at_mut(inter);
                    silu.rows_in_place(g, u);
                }
                let o = out.get_mut(start * out_width..).unwrap_or(&mut []);
                linear(down, gu, 2 * inter, o, out_width, n, fact, fout)?;
            }
            Ok(())
        }
    }

    /// The predicted token of every position: the first largest logit, as `torch.argmax`.
    #[inline(never)]
    pub fn predictions(&self, logits: &[i32], out: &mut [u32]) -> Result<(), Error> {
        let v = self.config.vocab_size as usize;
        let n = self.config.seq_len as usize;
        if out.len() != n {
            return Err(Error::OutputLength { expected: n, got: out.len() });
        }
        for (o, row) in out.iter_mut().zip(logits.chunks_exact(v)) {
            let mut best = 0usize;
            for (i, &x) in row.iter().enumerate() {
                if x > row.get(best).copied().unwrap_or(i32::MIN) {
                    best = i;
                }
            }
            *o = best as u32;
        }
        Ok(())
    }
}

/// The value of `m[row][col]` times `mul` (an integer with 16 fraction bits) with `frac`
/// fraction bits: `int8` elements through their row's scale, `f32` ones from their bits.
fn element(m: &Matrix<'_>, row: usize, col: usize, mul: i64, frac: i32) -> Result<i64, Error> {
    let missing = Error::OutputLength { expected: col, got: m.cols };
    let i = row.checked_mul(m.cols).and_then(|r| r.checked_add(col)).ok_or(missing)?;
    match m.weights {
        Weights::I8 { scales, values } => {
            let q = i64::from(*values.get(i).ok_or(missing)?);
            let (mant, exp) = scale_of(scales, row)?;
            Ok(mul_pow2_round(q * mul, mant, exp + frac - EMBED_EXTRA))
        }
        Weights::F32(v) => {
            let x = i64::from(fixed_from_f32_bits(v.get(i).ok_or(missing)?.to_bits(), frac - EMBED_EXTRA).unwrap_or(0));
            Ok(x.saturating_mul(mul))
        }
        _ => Err(Error::InvalidHeader("a fixed-point blob stores matrices as int8")),
    }
}

/// The exact mantissa and exponent of row `row`'s scale.
fn scale_of(scales: &[f32], row: usize) -> Result<(i32, i32), Error> {
    let bits = scales.get(row).ok_or(Error::OutputLength { expected: row, got: scales.len() })?.to_bits();
    decompose_f32(bits).ok_or(Error::InvalidHeader("a weight scale is not finite"))
}

/// `Σ a[i]·w[i]` for `int8` weights and `i16` activations, exact: so the same on every
/// platform whichever loop computes it.
fn dot_i8(w: &[i8], x: &[i16]) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::cpu::x86_level() != crate::kernels::cpu::X86Level::Baseline {
        // SAFETY: the CPU has AVX2 (the level says so, checked at compile or run time).
        return unsafe { dot_i8_avx2(w, x) };
    }
    dot_i8_portable(w, x)
}

/// The same loop compiled for AVX2 (eight 32-bit lanes), where the x86-64 baseline has no
/// 32-bit vector multiply.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(w: &[i8], x: &[i16]) -> i64 {
    dot_i8_portable(w, x)
}

#[inline(always)]
fn dot_i8_portable(w: &[i8], x: &[i16]) -> i64 {
    let mut total = 0i64;
    for (wc, xc) in w.chunks(DOT_CHUNK).zip(x.chunks(DOT_CHUNK)) {
        let mut acc = 0i32;
        for (&w, &x) in wc.iter().zip(xc) {
            acc = acc.wrapping_add(i32::from(w).wrapping_mul(i32::from(x)));
        }
        total += i64::from(acc);
    }
    total
}

/// `Σ a[i]·b[i]` in `i64` (scores of `i16` queries and keys, `i32` probabilities times `i16`
/// values).
fn dot<A: Copy + Into<i64>, B: Copy + Into<i64>>(a: &[A], b: &[B]) -> i64 {
    let mut acc = 0i64;
    for (&x, &y) in a.iter().zip(b) {
        acc = acc.wrapping_add(x.into() * y.into());
    }
    acc
}

/// `Y = X · Wᵀ` with `int8` `W`: `rows` rows of `X` (`xs` apart, `fx` fraction bits) into
/// `rows` rows of `Y` (`ys` apart, `fy` fraction bits). Each weight row is read once for all the
/// rows, as in the `f32` path.
#[allow(clippy::too_many_arguments)]
fn linear<T: Output>(
    w: &Matrix<'_>,
    x: &[i16],
    xs: usize,
    y: &mut [T],
    ys: usize,
    rows: usize,
    fx: i32,
    fy: i32,
) -> Result<(), Error> {
    let Weights::I8 { scales, values } = w.weights else {
        return Err(Error::InvalidHeader("a fixed-point blob stores matrices as int8"));
    };
    let k = w.cols;
    let d = Dims { rows, out: w.rows, k, xs, ws: k, ys, accumulate: false };
    check_matmul(x.len(), values.len(), y.len(), d)?;
    let store = |y: &mut [T], r: usize, o: usize, sum: i64| -> Result<(), Error> {
        let (mant, exp) = scale_of(scales, o)?;
        let v = mul_pow2_round(sum, mant, exp + fy - fx);
        if let Some(out) = y.get_mut(r * ys + o) {
            *out = T::saturated(v);
        }
        Ok(())
    };
    // Microcontrollers (and every target but x86-64, whose AVX2 loop above is faster there):
    // each activation row packed once as i16, then register tiles of four weight rows.
    #[cfg(not(target_arch = "x86_64"))]
    if k <= DOT_CHUNK {
        return linear_packed(values, scales, k, x, xs, rows, w.rows, &mut T::rows(y), ys, fy - fx);
    }
    for o in 0..w.rows {
        let w_row = values.get(o * k..o * k + k).unwrap_or(&[]);
        for r in 0..rows {
            let x_row = x.get(r * xs..r * xs + k).unwrap_or(&[]);
            store(y, r, o, dot_i8(w_row, x_row))?;
        }
    }
    Ok(())
}

/// [`linear`]'s sums for rows of at most [`DOT_CHUNK`] values (so `i32` sums are exact, and
/// equal to [`dot_i8`]'s): each activation row packed once (in the tile's order), then four
/// weight rows at a time against it: on the Cortex-M DSP extension with
/// `SMLAD` (two multiply-adds an instruction, the int8 kernels' tile; four activation rows at
/// once where there are four, [`linear_rows4`]), elsewhere a scalar loop
/// of one `i16` load and four `i8` loads and multiply-adds per value (M0/M3, RISC-V).
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn linear_packed(
    values: &[i8],
    scales: &[f32],
    k: usize,
    x: &[i16],
    xs: usize,
    rows: usize,
    out: usize,
    y: &mut Rows<'_>,
    ys: usize,
    fy_minus_fx: i32,
) -> Result<(), Error> {
    let kp = k.div_ceil(64) * 64;
    // Every row's scale, and k values of every weight row, exist (checked once, so that the
    // loops below index without failing).
    let (Some(scales), Some(values)) = (scales.get(..out), values.get(..out * k)) else {
        return Err(Error::InvalidHeader("a matrix is shorter than its shape"));
    };
    let mut r = 0;
    while r < rows {
        // Four rows at once where there are four (a work block of 4 or more): each scale taken
        // apart once for the four, and with the DSP extension each weight word extended once.
        if rows - r >= 4 && k > 0 {
            linear_rows4(values, scales, k, x, xs, r, out, y, ys, fy_minus_fx)?;
            r += 4;
            continue;
        }
        // Word-aligned: the DSP tile reads the row with `LDRD`, which faults on an address that
        // is not a multiple of 4 (an `[i16]` is only 2-aligned). Made here, for the last rows
        // only: zeroing it in every call cost 0.4 M instructions a fixed-point segment (M4F).
        #[repr(C, align(8))]
        struct Packed([i16; DOT_CHUNK.div_ceil(64) * 64]);
        let mut packed = Packed([0; DOT_CHUNK.div_ceil(64) * 64]);
        let pack = &mut packed.0;
        let row = x.get(r * xs..r * xs + k).unwrap_or(&[]);
        let dst = pack.get_mut(..kp).unwrap_or(&mut []);
        let (head, rest) = dst.split_at_mut(row.len().min(kp));
        for (p, &v) in head.iter_mut().zip(row) {
            *p = v;
        }
        rest.fill(0);
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        // SAFETY: `pack` holds kp ≥ k values; DSP is a feature of the target.
        unsafe {
            crate::kernels::arm_dsp::reorder(pack.as_mut_ptr(), kp)
        };
        if r * ys + out > y.len() {
            return Err(Error::OutputLength { expected: r * ys + out, got: y.len() });
        }
        let packed_row = pack.get(..kp).unwrap_or(&[]);
        for (b, (block, scales)) in values.chunks(4 * k).zip(scales.chunks(4)).enumerate() {
            let sums = sums4(packed_row, block, k);
            for (j, (&sum, &scale)) in sums.iter().zip(scales).enumerate() {
                y.store(r * ys + 4 * b + j, requantise(sum, scale, fy_minus_fx)?);
            }
        }
        r += 1;
    }
    Ok(())
}

/// `round(sum × scale × 2^(fy − fx))`, half away from zero: [`mul_pow2_round`] of a 32-bit sum
/// by the scale's exact mantissa and exponent, written out so that a 32-bit core pays one
/// 32 × 32 multiply and one 64-bit rounding shift per output (`|sum × mantissa| < 2^55`).
/// Calling `mul_pow2_round` itself instead gave the same integers but 4.6 % more instructions
/// a puzzle on the M4F (8,027 M against 7,673 M; its `i64` argument is not narrowed back).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn requantise(sum: i32, scale: f32, fy_minus_fx: i32) -> Result<i64, Error> {
    let (mant, exp) = decompose_f32(scale.to_bits()).ok_or(Error::InvalidHeader("a weight scale is not finite"))?;
    let shift = (exp + fy_minus_fx).saturating_neg();
    Ok(shift_round_i64(i64::from(sum) * i64::from(mant), shift))
}

/// Rows `r0..r0 + 4` of [`linear_packed`]: per four weight rows, each scale taken apart once
/// ([`Requant`]) for the four rows' outputs, and the four outputs of a row requantised in
/// 32-bit arithmetic. On the DSP extension the four rows are packed interleaved as `i16` (the
/// 4 × 4 tile's layout: per group of four values `x0 x2 x1 x3`, the rows' groups one after
/// the other) and each weight word is extended once for the four rows; elsewhere (M0, M3,
/// RISC-V) each row is packed on its own and takes the scalar loop. The same sums, so the same
/// integers, as four passes of one row, which took a scale apart for every output (a
/// fixed-point segment on the M3: 708.1 M instructions then, 673.6 M now).
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn linear_rows4(
    values: &[i8],
    scales: &[f32],
    k: usize,
    x: &[i16],
    xs: usize,
    r0: usize,
    out: usize,
    y: &mut Rows<'_>,
    ys: usize,
    fy_minus_fx: i32,
) -> Result<(), Error> {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    use crate::kernels::int8::Int8Tile;
    // Helium (Cortex-M55): the rows read where they lie, no packing.
    #[cfg(all(target_arch = "arm", feature = "helium"))]
    if k > 0 {
        return linear_rows4_mve(values, scales, k, x, xs, r0, out, y, ys, fy_minus_fx);
    }
    const KP_MAX: usize = DOT_CHUNK.div_ceil(64) * 64;
    let kp = k.div_ceil(64) * 64;
    // `linear` sends rows of at most DOT_CHUNK values, and `linear_packed` no empty ones.
    if k == 0 || kp > KP_MAX {
        return Err(Error::InvalidHeader("a fixed-point product's rows do not fit the packed rows"));
    }
    // Word-aligned for the tile's `LDM`s.
    #[repr(C, align(8))]
    struct Packed<T>([T; 4 * KP_MAX]);
    // Thumb-2 without DSP (the M3): `i32` values, the four rows interleaved value by value
    // (`kernels::arm_thumb2`); else `i16`. The first 4·k values, all the tile reads, are
    // written below, so the 4 KiB are not zeroed first (5 M instructions a fixed-point
    // segment on the M3).
    #[cfg(all(target_arch = "arm", target_feature = "thumb2", not(target_feature = "dsp")))]
    let mut packed = Packed([core::mem::MaybeUninit::<i32>::uninit(); 4 * KP_MAX]);
    // With DSP every group the tile reads (the first ⌈k/4⌉ of each row) is written below, so
    // the 2 KiB are not zeroed first (2.5 M instructions a fixed-point segment on the M4F).
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    let mut packed = Packed([core::mem::MaybeUninit::<i16>::uninit(); 4 * KP_MAX]);
    #[cfg(not(all(target_arch = "arm", target_feature = "thumb2")))]
    let mut packed = Packed([0i16; 4 * KP_MAX]);
    for i in 0..4 {
        let row = x.get((r0 + i) * xs..(r0 + i) * xs + k).unwrap_or(&[]);
        // Group g of row i at 4·(4g + i): whole groups in assembly (the iterator chain of
        // `skip`, `step_by` and `chunks` took about 30 instructions a value on the M4F), then
        // the last partial one (and, for a row shorter than k, which no caller passes, zero
        // groups up to ⌈k/4⌉).
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        {
            let whole = row.len() / 4;
            // SAFETY: row holds 4·whole values; group g of row i is at 4·(4g + i) < 4·KP_MAX
            // (whole ≤ k/4 ≤ KP_MAX/4), 4-aligned (the buffer is 8-aligned).
            unsafe {
                crate::kernels::arm_dsp::pack_groups(row.as_ptr(), whole, packed.0.as_mut_ptr().add(4 * i).cast())
            };
            for g in whole..k.div_ceil(4) {
                let value = |j: usize| row.get(4 * g + j).copied().unwrap_or(0);
                let at = 4 * (4 * g + i);
                if let Some(dst) = packed.0.get_mut(at..at + 4) {
                    for (d, v) in dst.iter_mut().zip([value(0), value(2), value(1), value(3)]) {
                        d.write(v);
                    }
                }
            }
        }
        // Value t of row i at 4·t + i, zeros past the row up to k (the iterator chain of
        // `skip` and `step_by` took about 10 instructions a value on the M3).
        #[cfg(all(target_arch = "arm", target_feature = "thumb2", not(target_feature = "dsp")))]
        {
            let n = row.len().min(k);
            // SAFETY: 4·t + i < 4·k ≤ 4·KP_MAX (k ≤ kp ≤ KP_MAX, checked above; i < 4).
            unsafe {
                let dst = packed.0.as_mut_ptr().add(i);
                for (t, v) in row.iter().take(n).enumerate() {
                    (*dst.add(4 * t)).write(i32::from(*v));
                }
                for t in n..k {
                    (*dst.add(4 * t)).write(0);
                }
            }
        }
        #[cfg(target_arch = "riscv32")]
        for (dst, &v) in packed.0.chunks_exact_mut(4).zip(row) {
            if let Some(dst) = dst.get_mut(i) {
                *dst = v;
            }
        }
        // Row i at i·kp.
        #[cfg(not(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32")))]
        for (dst, &v) in packed.0.iter_mut().skip(i * kp).zip(row) {
            *dst = v;
        }
    }
    let y_len = y.len();
    let last = (r0 + 3) * ys + out;
    if last > y_len {
        return Err(Error::OutputLength { expected: last, got: y_len });
    }
    let mut o = 0;
    // Thumb-2 and RISC-V cores, outputs into activations: whole blocks of four weight rows
    // straight from the tile into the requantisation, both in assembly, the bounds checked once
    // here (the checks, the tile's sums copied out and a call to `store_requantised` per tile
    // were about 130 instructions a tile on the M4F, 84 on RISC-V). `requantise_4x4` stores
    // through `y0` only.
    #[cfg(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"))]
    if let (true, Some(_), Some(_), Some(y0)) =
        (ASM_REQUANT_D.contains(&fy_minus_fx), values.get(..out * k), scales.get(..out), y.activations(r0 * ys, last))
    {
        let y0 = y0.as_mut_ptr();
        // With DSP: all the whole blocks of four columns in one call, the sums requantised in
        // registers (a column whose scale is off the fast path, and the rest, by the loops
        // below).
        #[cfg(target_feature = "dsp")]
        if k >= 4 {
            // SAFETY: as below, for every whole block of four weight rows at once; d checked
            // above.
            let done = unsafe {
                crate::kernels::arm_dsp::rows4_requantised(
                    packed.0.as_ptr().cast(),
                    values.as_ptr(),
                    k,
                    out / 4 * 4,
                    scales.as_ptr(),
                    fy_minus_fx,
                    y0,
                    ys,
                )
            };
            o = done / 4 * 4;
        }
        #[cfg(target_feature = "dsp")]
        let mut sums = core::mem::MaybeUninit::<[[i32; 4]; 4]>::uninit();
        while o + 4 <= out {
            // SAFETY: rows o..o + 4 of k values and their scales exist (checked above); the
            // packed rows hold kp ≥ k values as the tile reads them (word-aligned); the tile's
            // outputs y0[i·ys + o + j] for i, j < 4 are below last − r0·ys.
            unsafe {
                let w = values.as_ptr().add(o * k);
                let ptrs = [w, w.add(k), w.add(2 * k), w.add(3 * k)];
                // The tile writes all 16 sums.
                #[cfg(target_feature = "dsp")]
                crate::kernels::arm_dsp::tile4x4(packed.0.as_ptr().cast(), &ptrs, k, sums.as_mut_ptr().cast());
                #[cfg(target_feature = "dsp")]
                let sums = sums.assume_init_ref();
                #[cfg(all(target_arch = "arm", not(target_feature = "dsp")))]
                let sums = &crate::kernels::arm_thumb2::tile4x4(packed.0.as_ptr().cast(), &ptrs, k);
                #[cfg(target_arch = "riscv32")]
                let sums =
                    &crate::kernels::riscv::tile4x4(&packed.0, &ptrs.map(|p| core::slice::from_raw_parts(p, k)), k);
                #[cfg(target_arch = "arm")]
                use crate::kernels::arm_thumb2::requantise_4x4;
                #[cfg(target_arch = "riscv32")]
                use crate::kernels::riscv::requantise_4x4;
                // A scale off the fast path: this block and the rest by the loop below.
                if !requantise_4x4(y0.add(o), ys, sums, scales.as_ptr().add(o), fy_minus_fx) {
                    break;
                }
            }
            o += 4;
        }
    }
    while o < out {
        let Some((rows, block_scales)) = weight_block(values, scales, k, o, out) else { break };
        #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
        let ptrs = rows.map(<[i8]>::as_ptr);
        // SAFETY: four interleaved rows of kp ≥ k values (zero past k, in the tile's order,
        // word-aligned), every pointer k values of the block; DSP is a feature of the target.
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        let sums = unsafe { crate::kernels::arm_dsp::Dsp4x4::tile(&[0; 4], packed.0.as_ptr().cast(), kp, &ptrs, k) };
        // SAFETY: four interleaved rows of kp ≥ k `i32` values (word-aligned), every pointer k
        // values of the block; the target has Thumb-2.
        #[cfg(all(target_arch = "arm", target_feature = "thumb2", not(target_feature = "dsp")))]
        let sums = unsafe { crate::kernels::arm_thumb2::tile4x4(packed.0.as_ptr().cast(), &ptrs, k) };
        #[cfg(target_arch = "riscv32")]
        let sums = crate::kernels::riscv::tile4x4(&packed.0, &rows, k);
        #[cfg(not(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32")))]
        let sums: [[i32; 4]; 4] =
            { core::array::from_fn(|i| sums4_called(packed.0.get(i * kp..i * kp + k).unwrap_or(&[]), rows[0], k)) };
        store_requantised(y, r0 * ys + o, ys, &sums, block_scales, fy_minus_fx)?;
        o += block_scales.len();
    }
    Ok(())
}

/// The block of weight rows `o..o + n`, `n = min(4, out − o)`, as the tiles take it: four
/// slices from each row's start to the block's end (a block of fewer than four rows repeats
/// its last row: computed, then dropped; the first is the whole block, as `sums4` takes it),
/// and the rows' scales; `None` where the matrix is shorter than that.
#[cfg(not(target_arch = "x86_64"))]
fn weight_block<'w>(
    values: &'w [i8],
    scales: &'w [f32],
    k: usize,
    o: usize,
    out: usize,
) -> Option<([&'w [i8]; 4], &'w [f32])> {
    let n = 4.min(out.checked_sub(o)?);
    let block = values.get(o * k..(o + n) * k)?;
    let rows = core::array::from_fn(|j| block.get(j.min(n.saturating_sub(1)) * k..).unwrap_or(block));
    Some((rows, scales.get(o..o + n)?))
}

/// [`linear_rows4`] with Helium (`kernels::arm_mve`): per block of four weight rows the four
/// activation rows' sums straight from the arena's `i16` rows (no packing), then
/// [`store_requantised`] (the Thumb-2 requantisation).
#[cfg(all(target_arch = "arm", feature = "helium"))]
#[allow(clippy::too_many_arguments)]
fn linear_rows4_mve(
    values: &[i8],
    scales: &[f32],
    k: usize,
    x: &[i16],
    xs: usize,
    r0: usize,
    out: usize,
    y: &mut Rows<'_>,
    ys: usize,
    fy_minus_fx: i32,
) -> Result<(), Error> {
    let row = |i: usize| x.get((r0 + i) * xs..(r0 + i) * xs + k).map(<[i16]>::as_ptr);
    let (Some(x0), Some(x1), Some(x2), Some(x3)) = (row(0), row(1), row(2), row(3)) else {
        return Err(Error::InvalidHeader("a fixed-point product's rows are shorter than its matrix"));
    };
    let mut o = 0;
    while o < out {
        let (rows, block_scales) = weight_block(values, scales, k, o, out)
            .ok_or(Error::InvalidHeader("a matrix is shorter than its shape"))?;
        // SAFETY: four activation rows of k values and four weight rows of k values; k ≥ 1.
        let sums = unsafe { crate::kernels::arm_mve::tile4x4(&[x0, x1, x2, x3], &rows.map(<[i8]>::as_ptr), k) };
        store_requantised(y, r0 * ys + o, ys, &sums, block_scales, fy_minus_fx)?;
        o += block_scales.len();
    }
    Ok(())
}

/// The tile's 4 × 4 sums requantised into `y`: row `i`'s outputs (as many as `scales` has, at
/// most four) at `at + i · ys`, column `j` with `scales[j]`'s [`Requant`], built here once for
/// the four rows; [`Requant::apply_high`] where the scale takes the high word (every real
/// model's) and the limit fits 32 bits (`limit32`). One call a tile, not inlined: inlined
/// copies were flash the firmware does not have to spare, and a call per row of the tile cost
/// about 10 instructions an output more. (The caller built the four `Requant`s before, passed
/// in memory: about 35 instructions each on the M4F.)
#[cfg(not(target_arch = "x86_64"))]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn store_requantised(
    y: &mut Rows<'_>,
    at: usize,
    ys: usize,
    sums: &[[i32; 4]; 4],
    scales: &[f32],
    fy_minus_fx: i32,
) -> Result<(), Error> {
    use super::math::Requant;
    let n = scales.len().min(4);
    let last = at + 3 * ys + n;
    if last > y.len() {
        return Err(Error::OutputLength { expected: last, got: y.len() });
    }
    // Four columns into activations: the assembly loop, unless a scale leaves its fast path.
    #[cfg(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"))]
    if let ([_, _, _, _], true) = (scales, ASM_REQUANT_D.contains(&fy_minus_fx)) {
        #[cfg(target_arch = "arm")]
        use crate::kernels::arm_thumb2::requantise_4x4;
        #[cfg(target_arch = "riscv32")]
        use crate::kernels::riscv::requantise_4x4;
        // SAFETY: y holds 3·ys + 4 values (checked above), scales four; d in −129..=86.
        if let Some(y) = y.activations(at, last) {
            if unsafe { requantise_4x4(y.as_mut_ptr(), ys, sums, scales.as_ptr(), fy_minus_fx) } {
                return Ok(());
            }
        }
    }
    for (j, &scale) in scales.iter().enumerate().take(n) {
        let q = Requant::new(scale, fy_minus_fx).ok_or(Error::InvalidHeader("a weight scale is not finite"))?;
        for (i, sums) in sums.iter().enumerate() {
            let Some(&sum) = sums.get(j) else { continue };
            let limit = y.limit();
            let v = match u32::try_from(limit) {
                Ok(l) if q.is_high() => i64::from(q.apply_high(sum, l)),
                _ => q.apply(sum, limit),
            };
            y.store(at + i * ys + j, v);
        }
    }
    Ok(())
}

/// `Σ x·w_j` of a packed row against the (up to) four weight rows of `block` (`k` values
/// each), with `SMLAD`. Sums past the block's rows are 0.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
fn sums4(x: &[i16], block: &[i8], k: usize) -> [i32; 4] {
    use crate::kernels::int8::Int8Tile;
    let nr = block.len() / k.max(1);
    if x.len() < k || nr == 0 || k == 0 {
        return [0; 4];
    }
    // A block of fewer than four rows repeats its last row (computed, then dropped).
    let ptrs: [*const i8; 4] =
        core::array::from_fn(|j| block.get(j.min(nr - 1) * k..).map_or(block.as_ptr(), <[i8]>::as_ptr));
    // SAFETY: the row holds k values (padded to a multiple of 64, zero past k, in the tile's
    // order) and every pointer k values of the block; DSP is a feature of the target.
    let sums = unsafe { crate::kernels::arm_dsp::Dsp1x4::tile(&[0; 4], x.as_ptr().cast(), x.len(), &ptrs, k) };
    sums[0]
}

/// [`sums4`] called rather than inlined: [`linear_rows4`]'s four rows would otherwise hold four
/// copies of its loop (inlined: on the M3 3.3 KB more flash and 0.4 % more instructions a
/// segment; RISC-V ran 3 % fewer).
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32")))]
#[inline(never)]
fn sums4_called(x: &[i16], block: &[i8], k: usize) -> [i32; 4] {
    sums4(x, block, k)
}

/// `Σ x·w_j` of a packed row against the (up to) four weight rows of `block`: one `i16` load
/// and four `i8` loads and multiply-adds per value, the four sums in registers. Sums past the
/// block's rows are 0.
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "arm", target_feature = "dsp"))))]
#[inline(always)]
fn sums4(x: &[i16], block: &[i8], k: usize) -> [i32; 4] {
    let row = |j: usize| block.get(j * k..j * k + k).unwrap_or(&[]);
    let [w0, w1, w2, w3] = [row(0), row(1), row(2), row(3)];
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    let x = x.get(..k).unwrap_or(&[]);
    if w3.len() == k {
        for ((((&x, &b0), &b1), &b2), &b3) in x.iter().zip(w0).zip(w1).zip(w2).zip(w3) {
            let x = i32::from(x);
            a0 += x * i32::from(b0);
            a1 += x * i32::from(b1);
            a2 += x * i32::from(b2);
            a3 += x * i32::from(b3);
        }
        return [a0, a1, a2, a3];
    }
    // The last block of a matrix whose rows are not a multiple of four.
    let dot = |w: &[i8]| x.iter().zip(w).map(|(&x, &w)| i32::from(x) * i32::from(w)).sum::<i32>();
    [dot(w0), dot(w1), dot(w2), 0]
}

/// `dst[c][r] = src[r][c]` for a row-major `src[rows, cols]`.
fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    if cols == 0 || rows == 0 {
        return;
    }
    // Both lengths checked once, then pointers: the checked store per value below took about 6
    // instructions a value more on the M4F (1.0 M a fixed-point segment); safe iterators
    // (`step_by` over either side) took more still.
    let n = rows * cols;
    if let (Some(src), Some(dst)) = (src.get(..n), dst.get_mut(..n)) {
        let (from, to) = (src.as_ptr(), dst.as_mut_ptr());
        for r in 0..rows {
            // SAFETY: r·cols + c < n and c·rows + r < n for r < rows, c < cols; both slices
            // hold n values.
            unsafe {
                let (mut s, mut d) = (from.add(r * cols), to.add(r));
                for _ in 0..cols {
                    *d = *s;
                    s = s.add(1);
                    d = d.add(rows);
                }
            }
        }
        return;
    }
    for (r, row) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if let Some(d) = dst.get_mut(c * rows + r) {
                *d = v;
            }
        }
    }
}

/// Rotary embedding of one head (halves `[v1, v2]`), the table read as Q15.
fn rope(v: &mut [i16], cos: &[f32], sin: &[f32]) {
    let half = v.len() / 2;
    let (v1, v2) = v.split_at_mut(half);
    for (((a, b), c), s) in v1.iter_mut().zip(v2.iter_mut()).zip(cos).zip(sin) {
        let c = i64::from(fixed_from_f32_bits(c.to_bits(), 15).unwrap_or(0));
        let s = i64::from(fixed_from_f32_bits(s.to_bits(), 15).unwrap_or(0));
        let (x1, x2) = (i64::from(*a), i64::from(*b));
        *a = sat16(shift_round((x1 * c - x2 * s) as i128, 15));
        *b = sat16(shift_round((x2 * c + x1 * s) as i128, 15));
    }
}

/// Softmax of one row of scores (`frac` fraction bits, not yet divided by √head_dim, which
/// `inv_sqrt · 2^-inv_shift` is), in place, as probabilities in Q30.
fn softmax_q30(row: &mut [i32], inv_sqrt: u64, inv_shift: i32, frac: i32) {
    let max = row.iter().copied().max().unwrap_or(0);
    let mut sum = 0u64;
    for x in row.iter_mut() {
        let gap = i64::from(max) - i64::from(*x);
        // (max − x)/√hd with 8 more fraction bits.
        let t = shift_round(gap as i128 * inv_sqrt as i128, inv_shift - 8).max(0) as u64;
        let e = if frac + 8 < 0 { 0 } else { exp_neg_q30(t, (frac + 8) as u32) };
        *x = e as i32;
        sum += u64::from(e);
    }
    // The largest score contributes e^0 = 2^30, so the sum is at least that.
    let inv_sum = (1u64 << 62) / sum.max(1);
    for x in row.iter_mut() {
        *x = ((*x as u64 * inv_sum) >> 32) as i32;
    }
}

/// `silu(g) · u` for `g`, `u` with `fgu` fraction bits, into `fact` fraction bits. Inlined
/// into the SwiGLU's loop, so that what depends only on the formats is computed once a row.
#[inline(always)]
fn silu_mul(g: i16, u: i16, fgu: i32, fact: i32) -> i16 {
    let (x, frac) = if fgu < 0 { (i64::from(g) << -fgu, 0) } else { (i64::from(g), fgu as u32) };
    let sig = i64::from(sigmoid_q15(x, frac));
    // |g · σ · u| < 2^46: the product fits i64.
    let p = i64::from(g) * sig * i64::from(u);
    sat16(shift_round_i64(p, 15 + 2 * fgu - fact))
}

/// [`silu_mul`] at one pair of formats, for whole rows: what depends only on them worked out
/// once, and for the usual case (`0 ≤ fgu ≤ 18`, a shift in `17..=63`: every
/// SiLU of a calibrated model, the built-in one's are near 25) the same integers in 32-bit
/// arithmetic but one 32 × 32 → 64 multiply, whose high word is the rounding's. The general
/// path took about 150 instructions an element on the Cortex-M4F, most of them the checks and
/// branches of formats known before the row.
#[derive(Clone, Copy)]
struct SiluMul {
    fgu: i32,
    fact: i32,
    /// The sigmoid at `fgu` and the rounding of `(g·u)·σ` by `2^(15 + 2·fgu − fact)`, when
    /// the fast path applies.
    narrow: Option<(NarrowSigmoid, ProductRounding)>,
}

impl SiluMul {
    fn new(fgu: i32, fact: i32) -> Self {
        let shift = 15 + 2 * i64::from(fgu) - i64::from(fact);
        let narrow = if (0..=NARROW_SIGMOID_FRAC as i32).contains(&fgu) && (17..=63).contains(&shift) {
            let shift = shift as u32;
            let rounding = ProductRounding { pre: 33u32.saturating_sub(shift), high: shift.saturating_sub(33) };
            Some((NarrowSigmoid::new(fgu as u32), rounding))
        } else {
            None
        };
        Self { fgu, fact, narrow }
    }

    /// `out[i] = silu_mul(g[i], u[i], fgu, fact)`.
    #[inline(never)]
    fn rows_into(&self, out: &mut [i16], g: &[i16], u: &[i16]) {
        match self.narrow {
            Some((sigmoid, rounding)) => {
                for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                    *o = Self::narrow(sigmoid, rounding, g, u);
                }
            }
            None => {
                for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                    *o = silu_mul_cold(g, u, self.fgu, self.fact);
                }
            }
        }
    }

    /// `g[i] = silu_mul(g[i], u[i], fgu, fact)`. (Two passes, `g ← g·u` and `u ← σ(g)` then
    /// the rounding, so that each loop would keep its constants in registers, took 3 % more
    /// instructions a segment on the Cortex-M4F than this one loop.)
    #[inline(never)]
    fn rows_in_place(&self, g: &mut [i16], u: &[i16]) {
        match self.narrow {
            Some((sigmoid, rounding)) => {
                #[cfg(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"))]
                if (4..=15).contains(&sigmoid.frac()) && rounding.high == 0 {
                    self.rows_in_place_asm(sigmoid.frac(), rounding.pre, g, u);
                    return;
                }
                for (g, &u) in g.iter_mut().zip(u) {
                    *g = Self::narrow(sigmoid, rounding, *g, u);
                }
            }
            None => {
                for (g, &u) in g.iter_mut().zip(u) {
                    *g = silu_mul_cold(*g, u, self.fgu, self.fact);
                }
            }
        }
    }

    /// [`SiluMul::rows_in_place`] on a Thumb-2 or RISC-V core for `4 ≤ frac ≤ 15` and a
    /// rounding shift of at most 33 (the built-in model's activation formats have 7 to 11
    /// fraction bits, its SiLU shifts are near 25): the assembly loop.
    #[cfg(any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"))]
    fn rows_in_place_asm(&self, frac: u32, rounding_pre: u32, g: &mut [i16], u: &[i16]) {
        #[cfg(target_arch = "arm")]
        use crate::kernels::arm_thumb2::silu_rows;
        #[cfg(target_arch = "riscv32")]
        use crate::kernels::riscv::silu_rows;
        let n = g.len().min(u.len());
        // SAFETY: both slices hold n values; frac and the shift were checked by the caller.
        unsafe { silu_rows(g.as_mut_ptr(), u.as_ptr(), n, &super::math::SIGMOID_SEGMENTS, frac, rounding_pre) };
    }

    /// `silu_mul(g, u, fgu, fact)` where `narrow` is `Some((sigmoid, rounding))`. With `fgu ≥ 0`
    /// the sigmoid's input is `g` itself at `fgu` fraction bits (`sigmoid_q15`'s narrow path:
    /// `fgu ≤ 18`); `g·σ·u` is `(g·u)·σ` (`|g·u| ≤ 2^30`, `0 ≤ σ ≤ 2^15`: below 2^45, so
    /// `shift_round_i64` is `shift_round_small`), rounded half away from zero on its magnitude,
    /// and `sat16` clamps the magnitude to 32767 either side.
    #[inline(always)]
    fn narrow(sigmoid: NarrowSigmoid, rounding: ProductRounding, g: i16, u: i16) -> i16 {
        let gu = i32::from(g) * i32::from(u);
        rounding.apply(gu, sigmoid.eval(i32::from(g)) as u32) as i16
    }
}

/// `sat16(shift_round_small(gu · sig, shift))` for `|gu| ≤ 2^30`, `sig ≤ 2^15` and a `shift`
/// in `17..=63`, as [`Requant::apply_high`](super::math::Requant::apply_high) does it:
/// `⌊|v| / 2^(shift−1)⌋` is the high word of `|gu| · (sig · 2^pre)` shifted right by `high`
/// (`pre = max(0, 33 − shift) ≤ 16`, so `sig · 2^pre < 2^32` and the product `< 2^61`;
/// `high = max(0, shift − 33)`), then rounded half away from zero on the magnitude and clamped
/// to 32767 either side. No 64-bit shift.
#[derive(Clone, Copy)]
struct ProductRounding {
    pre: u32,
    high: u32,
}

impl ProductRounding {
    #[inline(always)]
    fn apply(self, gu: i32, sig: u32) -> i32 {
        let magnitude = u64::from(gu.unsigned_abs()) * u64::from(sig << self.pre);
        let halves = ((magnitude >> 32) as u32) >> self.high;
        let v = ((halves >> 1) + (halves & 1)).min(ACT_MAX as u32) as i32;
        if gu < 0 {
            -v
        } else {
            v
        }
    }
}

/// [`silu_mul`] out of line, for formats off the narrow path (none in a calibrated model):
/// inlined, its 64-bit paths took the registers of [`SiluMul`]'s loops, which then spilled.
#[cold]
#[inline(never)]
fn silu_mul_cold(g: i16, u: i16, fgu: i32, fact: i32) -> i16 {
    silu_mul(g, u, fgu, fact)
}

/// `x ← rms_norm(x + p)`: `x` with `fz` fraction bits, `p` with `fp`; `eps` as `f32` bits.
fn residual_norm(x: &mut [i16], p: &[i16], fp: i32, fz: i32, eps: u32) {
    if x.is_empty() || p.len() < x.len() {
        return;
    }
    if (-7..=31).contains(&(fp - fz)) {
        residual_norm_narrow(x, p, fp - fz, fz, eps);
    } else {
        residual_norm_general(x, p, fp, fz, eps);
    }
}

/// [`residual_norm`] for every pair of formats: 64-bit sums saturated, 64- and 128-bit
/// rounding. Each `x + p` is computed twice, for the sum of squares and for the output.
fn residual_norm_general(x: &mut [i16], p: &[i16], fp: i32, fz: i32, eps: u32) {
    let n = x.len() as u64;
    if n == 0 {
        return;
    }
    let sum = |x: i16, p: i16| i64::from(x) + rescale(i64::from(p), fp, fz);
    let mut squares = 0u64;
    for (&x, &p) in x.iter().zip(p) {
        let t = sum(x, p);
        squares = squares.saturating_add(t.saturating_mul(t) as u64);
    }
    let eps = fixed_from_f32_bits(eps, 2 * fz).unwrap_or(0).max(0) as u64;
    let mean = (squares / n).saturating_add(eps).max(1);
    let (inv, shift) = rsqrt(mean);
    // inv ≤ 2^32: with |t| < 2^30 the product fits i64, and shift_round_i64 rounds it as
    // shift_round would the i128 (no i128 multiply on 32-bit cores).
    let inv_i64 = i64::try_from(inv).unwrap_or(i64::MAX);
    for (x, &p) in x.iter_mut().zip(p) {
        let t = sat32(sum(*x, p));
        *x = if t.unsigned_abs() < 1 << 30 && inv <= 1 << 32 {
            sat16(shift_round_i64(i64::from(t) * inv_i64, shift - fz))
        } else {
            sat16(shift_round(i128::from(t) * i128::from(inv), shift - fz))
        };
    }
}

/// [`residual_norm`] where `p`'s format has at most 7 fraction bits fewer than `x`'s (`fp −
/// fz` in `−7..=31`): every residual add of a calibrated model (the built-in model's have
/// `fp − fz` of −1 and −2). Then `p` rescaled is `p · 2^(fz − fp)` or `shift_round_small` of
/// it (on 32-bit magnitudes), `|t| ≤ 32767 · 129 < 2^23`, so `t²` is a 32 × 32 → 64 multiply
/// and no row's sum of squares can overflow (`n · 2^46`), and the normalised value `t · inv`
/// (`inv ≤ 2^32`) is below 2^55, rounded on its magnitude and clamped by `sat16`. The same
/// integers as [`residual_norm_general`] without its 64-bit saturating arithmetic, which took
/// about 230 instructions a value on the Cortex-M4F. The first pass sums the squares without
/// storing; the second computes each `x + p` again and stores it normalised.
fn residual_norm_narrow(x: &mut [i16], p: &[i16], rescale_shift: i32, fz: i32, eps: u32) {
    let n = x.len() as u64;
    let Some(p) = p.get(..x.len()) else { return };
    let sum = |x: i16, p: i16| {
        let p = i32::from(p);
        let p = if rescale_shift > 0 {
            let rounded = (((p.unsigned_abs() >> (rescale_shift - 1)) + 1) >> 1) as i32;
            if p < 0 {
                -rounded
            } else {
                rounded
            }
        } else {
            p << rescale_shift.unsigned_abs()
        };
        i32::from(x) + p
    };
    let first_pass = || {
        let mut squares = 0u64;
        for (&x, &p) in x.iter().zip(p) {
            let t = i64::from(sum(x, p));
            squares += (t * t) as u64;
        }
        squares
    };
    // Thumb-2: both passes in assembly where `p` is scaled up (the built-in model's adds).
    #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
    let in_assembly = rescale_shift <= 0;
    #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
    let squares = if in_assembly {
        // SAFETY: x and p hold x.len() ≥ 1 values (`residual_norm` returns on an empty row).
        unsafe {
            crate::kernels::arm_thumb2::residual_squares(x.as_ptr(), p.as_ptr(), x.len(), rescale_shift.unsigned_abs())
        }
    } else {
        first_pass()
    };
    #[cfg(not(all(target_arch = "arm", target_feature = "thumb2")))]
    let squares = first_pass();
    let eps = fixed_from_f32_bits(eps, 2 * fz).unwrap_or(0).max(0) as u64;
    let mean = (squares / n).saturating_add(eps).max(1);
    let (inv, shift) = rsqrt(mean);
    let out_shift = shift - fz;
    match (u32::try_from(inv), u32::try_from(out_shift)) {
        // `|t| · 2^9 < 2^32`, so `h`, the high word of `(|t| · 2^9) · inv`, is `⌊|t| · inv /
        // 2^23⌋` and `(|t| · inv) >> (out_shift − 1)` is `h >> (out_shift − 24)`: one
        // 32 × 32 → 64 multiply and 32-bit shifts (the 64-bit shift by a variable amount took
        // about a dozen instructions on 32-bit cores).
        #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
        (Ok(inv), Ok(out_shift @ 24..=55)) if in_assembly => {
            // SAFETY: as above, and every |t| < 2^23.
            unsafe {
                crate::kernels::arm_thumb2::residual_normalise(
                    x.as_mut_ptr(),
                    p.as_ptr(),
                    x.len(),
                    rescale_shift.unsigned_abs(),
                    inv,
                    out_shift - 24,
                )
            };
        }
        (Ok(inv), Ok(out_shift @ 24..=55)) => {
            let down = out_shift - 24;
            for (x, &p) in x.iter_mut().zip(p) {
                let t = sum(*x, p);
                let h = ((u64::from(t.unsigned_abs() << 9) * u64::from(inv)) >> 32) as u32;
                let r = h >> down;
                let v = ((r >> 1) + (r & 1)).min(ACT_MAX as u32) as i16;
                *x = if t < 0 { -v } else { v };
            }
        }
        (Ok(inv), Ok(out_shift @ 1..=63)) => {
            for (x, &p) in x.iter_mut().zip(p) {
                let t = sum(*x, p);
                let magnitude = u64::from(t.unsigned_abs()) * u64::from(inv);
                let rounded = ((magnitude >> (out_shift - 1)) + 1) >> 1;
                let v = rounded.min(ACT_MAX as u64) as i16;
                *x = if t < 0 { -v } else { v };
            }
        }
        _ => {
            for (x, &p) in x.iter_mut().zip(p) {
                *x = sat16(shift_round(i128::from(sum(*x, p)) * i128::from(inv), out_shift));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 generator from `seed` (nonzero).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    fn apply(silu: &SiluMul, g: i16, u: i16) -> i16 {
        let mut out = [0];
        silu.rows_into(&mut out, &[g], &[u]);
        let mut in_place = [g];
        silu.rows_in_place(&mut in_place, &[u]);
        assert_eq!(out, in_place);
        out[0]
    }

    #[test]
    fn residual_norm_narrow_path_equals_the_general_path() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let eps = [1e-5f32, 1e-6, 0.0, 3.0];
        for case in 0..4000 {
            let n = [1usize, 2, 7, 64, 85, 300][case % 6];
            let fz = (next() % 16) as i32 - 2;
            let fp = fz + (next() % 41) as i32 - 8;
            // Small rows and rows at the ends of i16 (the sums of squares at their largest).
            let spread = [3u64, 300, 32_767, 65_535][(case / 6) % 4];
            let mut value = || ((next() % (spread + 1)) as i64 - (spread / 2) as i64).clamp(-32_767, 32_767) as i16;
            let x: std::vec::Vec<i16> = (0..n).map(|_| value()).collect();
            let p: std::vec::Vec<i16> = (0..n).map(|_| value()).collect();
            let e = eps[case % 4].to_bits();
            let (mut fast, mut general) = (x.clone(), x.clone());
            residual_norm(&mut fast, &p, fp, fz, e);
            residual_norm_general(&mut general, &p, fp, fz, e);
            assert_eq!(fast, general, "n {n} fp {fp} fz {fz} x {x:?} p {p:?}");
        }
    }

    #[test]
    fn silu_rows_in_place_equal_silu_mul_value_by_value() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let (fgu, fact) = ((next() % 24) as i32 - 2, (next() % 40) as i32 - 4);
            let silu = SiluMul::new(fgu, fact);
            let n = 1 + (next() % 300) as usize;
            let mut value = || ((next() % 65_535) as i32 - 32_767) as i16;
            let g: std::vec::Vec<i16> = (0..n).map(|_| value()).collect();
            let u: std::vec::Vec<i16> = (0..n).map(|_| value()).collect();
            let want: std::vec::Vec<i16> = g.iter().zip(&u).map(|(&g, &u)| silu_mul(g, u, fgu, fact)).collect();
            let mut got = g.clone();
            silu.rows_in_place(&mut got, &u);
            assert_eq!(got, want, "fgu {fgu} fact {fact}");
        }
    }

    /// The Thumb-2 loop's arithmetic (`kernels::arm_thumb2::silu_rows`), step by step as its
    /// instructions compute it: `None` where the loop stops (a value outside `i16`).
    fn thumb2_silu_steps(g: i32, u: i32, frac: u32, rounding_pre: u32) -> Option<i32> {
        let (lim, w) = (1i32 << (frac + 4), frac - 4);
        if (g.wrapping_add(0x8000) | u.wrapping_add(0x8000)) as u32 >= 0x10000 {
            return None;
        }
        let gu = g * u;
        let pos = g + lim;
        let sig = if pos <= 0 {
            0
        } else if pos >= lim << 1 {
            32768
        } else {
            let r0 = (pos as u32 & ((1 << w) - 1)) as i32;
            let [w0, w1] = super::super::math::SIGMOID_SEGMENTS[(pos as u32 >> w) as usize];
            // SMLATB: the top half of w0 (−k4) times the bottom half of r₀, plus c·2^w.
            let t = ((w1 << w) as i32).wrapping_add(i32::from((w0 >> 16) as i16) * i32::from(r0 as i16));
            // SMMUL: the high word.
            let h = ((i64::from(r0 << (39 - 2 * frac)) * i64::from(t)) >> 32) as i32;
            // The DSP loop's SMMULR of half the product (the high word rounded) is (h + 1) >> 1.
            let rounded = ((i64::from(r0 << (38 - 2 * frac)) * i64::from(t) + (1 << 31)) >> 32) as i32;
            assert_eq!(rounded, (h + 1) >> 1, "SMMULR form: g {g} frac {frac}");
            (w0 & 0xffff) as i32 + ((h + 1) >> 1)
        };
        let sign = gu >> 31;
        let magnitude = ((gu ^ sign) - sign) as u32;
        let high = ((u64::from(magnitude) * u64::from((sig as u32) << rounding_pre)) >> 32) as u32;
        // USAT #15 of (high + 1) >> 1.
        let v = (((high + 1) >> 1) as i32).clamp(0, 32767);
        Some((v ^ sign) - sign)
    }

    #[test]
    fn silu_rows_arithmetic_equals_silu_mul() {
        // Every format the loop takes (frac 4..=15, shifts 17..=33), g over the whole i16
        // range (a stride with a random offset) and its edges, u at its edges and in between.
        let mut next = xorshift(0x51_7cc1_b727_220a);
        let us = [-32_768, -32_767, -20_001, -255, -1, 0, 1, 3, 4_099, 32_767];
        for frac in 4..=15u32 {
            for shift in 17..=33 {
                let (fgu, fact) = (frac as i32, 15 + 2 * frac as i32 - shift);
                let pre = (33 - shift) as u32;
                let gs = (-32_768..=32_767).step_by(7).map(|g: i32| (g + (next() % 7) as i32).min(32_767));
                let lim = 1 << (frac + 4);
                let edges = [-32_768, -lim, 1 - lim, lim - 1, lim, 32_767].map(|g: i32| g.clamp(-32_768, 32_767));
                for g in gs.chain(edges) {
                    for &u in &us {
                        let want = i32::from(silu_mul(g as i16, u as i16, fgu, fact));
                        assert_eq!(
                            thumb2_silu_steps(g, u, frac, pre),
                            Some(want),
                            "g {g} u {u} frac {frac} shift {shift}"
                        );
                    }
                }
                for (g, u) in [(32_768, 1), (1, -32_769), (-40_000, 5), (i32::MIN, 0)] {
                    assert_eq!(thumb2_silu_steps(g, u, frac, pre), None);
                }
            }
        }
    }

    #[test]
    fn silu_rows_equal_the_general_silu_mul() {
        // Every format pair a calibrated model can have and then some (negative and wide
        // `fgu`, shifts outside 1..=63), g over the whole i16 range and beyond, u at its edges
        // and a spread of values in between.
        let us: [i16; 13] = [-32_768, -32_767, -20_001, -4_097, -255, -7, -1, 0, 1, 3, 100, 4_099, 32_767];
        for fgu in -3..=22 {
            for fact in (-2..=50).step_by(4) {
                let silu = SiluMul::new(fgu, fact);
                for g in (-32_768..=32_767).step_by(17).chain([-32_768, -32_767, 32_767]) {
                    for &u in &us {
                        assert_eq!(apply(&silu, g, u), silu_mul(g, u, fgu, fact), "g {g} u {u} fgu {fgu} fact {fact}");
                    }
                }
            }
        }
    }
}
