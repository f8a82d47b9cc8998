//! Running a model: one example at a time, one ACT segment per call.

use crate::blob::{LayerPart, Level, TensorId};
use crate::config::{ArenaPlan, Config, HaltRule, ModelKind, PosEncoding};
use crate::ensemble::{LatentNoise, Noise, Rng, GAUSS_STD};
use crate::fixed::{self, LayerSite, Observer, Sites};
use crate::kernels;
use crate::model::{Matrix, Model, Weights};
use crate::Error;

/// The reference scales `embedding + position` by the literal `0.707106781`, which rounds to
/// the same `f32` as 1/√2.
const LEARNED_POS_SCALE: f32 = core::f32::consts::FRAC_1_SQRT_2;

/// A 64-byte aligned byte buffer for a session's working memory, e.g.
/// `static mut ARENA: Arena<{ HEADER.config.arena_bytes_for(HEADER.activations) }> = Arena::new();`.
#[repr(C, align(64))]
pub struct Arena<const N: usize>(pub [u8; N]);

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena([0; N])
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many segments [`Session::run`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halting {
    /// The reference's evaluation: always `halt_max_steps` segments.
    Fixed,
    /// Exactly this many segments.
    Segments(u32),
    /// Stop after the first segment whose Q head says halt (`q_halt > q_continue`, or
    /// `q_halt > 0` for TRM without the continue head), at most `halt_max_steps`.
    Adaptive,
}

/// What one segment produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentOutcome {
    /// 0 for the first segment of an example.
    pub index: u32,
    pub q_halt: f32,
    pub q_continue: f32,
    /// Whether the Q head asks to halt after this segment.
    pub halt_requested: bool,
    /// Whether this was segment `halt_max_steps - 1` (or later).
    pub at_max: bool,
}

/// Working state for one example: the carry `(z_H, z_L)`, the embedded input, the latest
/// logits and scratch space, all inside the caller's arena.
pub struct Session<'m, 'a> {
    model: Model<'m>,
    config: Config,
    z_h: &'a mut [f32],
    z_l: &'a mut [f32],
    input: &'a mut [f32],
    logits: &'a mut [f32],
    scratch: &'a mut [f32],
    loaded: bool,
    segments: u32,
    q: [f32; 2],
    /// The integer forward pass, for a blob with fixed-point activations (then the buffers
    /// above hold its `i16` and `i32` values: [`Session::integers`]).
    fixed: Option<fixed::Forward<'m>>,
    /// Noise on the latent at every recursion step ([`Session::set_noise`]).
    noise: Option<LatentNoise>,
}

fn split(buf: &mut [f32], at: usize) -> Result<(&mut [f32], &mut [f32]), Error> {
    buf.split_at_mut_checked(at).ok_or(Error::ArenaTooSmall { needed: at, got: 0 })
}

/// The FNV-1a offset basis: where [`Session::outputs_digest`] starts.
pub const DIGEST_START: u32 = 0x811c_9dc5;

impl<'m, 'a> Session<'m, 'a> {
    /// Carves the session's buffers out of `arena`, which must hold at least
    /// [`Model::arena_bytes`] bytes and start at a 4-byte aligned address.
    pub fn new(model: Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        let config = *model.config();
        let activations = model.header().activations;
        let needed = config.arena_bytes_for(activations);
        let got = arena.len();
        let bytes = arena.get_mut(..needed).ok_or(Error::ArenaTooSmall { needed, got })?;
        let floats: &mut [f32] = bytemuck::try_cast_slice_mut(bytes).map_err(|_| Error::ArenaMisaligned)?;
        // For a fixed-point blob the same five buffers, as words of `i16` pairs (the logits
        // `i32`): see `integers`.
        let ArenaPlan { z_l, input, logits, scratch, scratch_len, .. } = config.arena_plan_for(activations);
        let (z_h, rest) = split(floats, z_l)?;
        let (z_l, rest) = split(rest, input - z_l)?;
        let (input, rest) = split(rest, logits - input)?;
        let (logits, rest) = split(rest, scratch - logits)?;
        let (scratch, _) = split(rest, scratch_len)?;
        let fixed = match model.header().activations {
            crate::Activations::F32 => None,
            crate::Activations::Fixed => Some(fixed::Forward::new(model)?),
        };
        Ok(Session {
            model,
            config,
            z_h,
            z_l,
            input,
            logits,
            scratch,
            loaded: false,
            segments: 0,
            q: [0.0; 2],
            fixed,
            noise: None,
        })
    }

    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Adds seeded noise to the latent at every recursion step from now on (`None`: no more):
    /// after each L-module update every value of `z_L` (and after each H update of `z_H`, when
    /// `noise.z_h`) gains `sigma` times an approximately normal draw of [`Rng::gauss_units`],
    /// the generator restarting from `noise.seed`. The draws are integers, so an f32 and a
    /// fixed-point session of one model add the same noise, and every platform the same bits.
    pub fn set_noise(&mut self, noise: Option<Noise>) -> Result<(), Error> {
        self.noise = match noise {
            None => None,
            Some(n) if !(n.sigma.is_finite() && n.sigma >= 0.0 && n.sigma <= 1000.0) => {
                return Err(Error::InvalidNoise);
            }
            Some(n) => {
                let per_unit = f64::from(n.sigma) / GAUSS_STD;
                // The state's fixed-point format (fraction bits), for the integer path.
                let frac = self.fixed.map_or(0, |f| f.format(Sites::STATE));
                let multiplier = libm::round(per_unit * libm::ldexp(1.0, frac + 16)) as i64;
                Some(LatentNoise::new(Rng::new(n.seed), per_unit as f32, multiplier, n.z_h))
            }
        };
        Ok(())
    }

    /// Loads an example: embeds `tokens` (exactly `seq_len` of them, each below `vocab_size`)
    /// with the puzzle embedding of `puzzle_id`, and resets the carry to `H_init`/`L_init`.
    pub fn reset(&mut self, tokens: &[u32], puzzle_id: u32) -> Result<(), Error> {
        let c = self.config;
        self.loaded = false;
        if tokens.len() != c.seq_len as usize {
            return Err(Error::InputLength { expected: c.seq_len as usize, got: tokens.len() });
        }
        if let Some((position, &token)) = tokens.iter().enumerate().find(|(_, &t)| t >= c.vocab_size) {
            return Err(Error::InvalidToken { position, token });
        }
        if puzzle_id >= c.num_puzzle_identifiers {
            return Err(Error::InvalidPuzzleId { id: puzzle_id, count: c.num_puzzle_identifiers });
        }
        if let Some(forward) = self.fixed {
            forward.embed(tokens, puzzle_id, &mut self.integers())?;
            self.segments = 0;
            self.loaded = true;
            return Ok(());
        }
        let h = c.hidden_size as usize;
        let prefix = c.puzzle_emb_len as usize;
        let tok = self.model.tensor(TensorId::TokenEmbedding)?;
        let (prefix_rows, token_rows) = split(self.input, prefix * h)?;

        // Puzzle prefix: the id's vector, zero-padded to P·h values, as P rows.
        prefix_rows.fill(0.0);
        if c.puzzle_emb_ndim > 0 {
            let table = self.model.tensor(TensorId::PuzzleEmbedding)?;
            table.row_into(puzzle_id as usize, prefix_rows)?;
        }
        for (row, &token) in token_rows.chunks_exact_mut(h).zip(tokens) {
            tok.row_into(token as usize, row)?;
        }
        if c.pos_encoding == PosEncoding::Learned {
            let pos = self.model.tensor(TensorId::PositionEmbedding)?;
            for (i, x) in self.input.iter_mut().enumerate() {
                *x = LEARNED_POS_SCALE * (*x + pos.get(i).unwrap_or(0.0));
            }
        }
        let scale = libm::sqrtf(c.hidden_size as f32);
        for x in self.input.iter_mut() {
            *x *= scale;
        }

        let h_init = self.model.tensor(TensorId::HInit)?;
        let l_init = self.model.tensor(TensorId::LInit)?;
        for row in self.z_h.chunks_exact_mut(h) {
            h_init.row_into(0, row)?;
        }
        for row in self.z_l.chunks_exact_mut(h) {
            l_init.row_into(0, row)?;
        }
        self.segments = 0;
        self.loaded = true;
        Ok(())
    }

    /// The buffers as the integer path sees them ([`Config::fixed_arena_plan`]): the state's
    /// `S·h` values `i16` (a buffer of whole words may hold one more), the logits `i32`, the
    /// scratch the attention's scores (`i32`) then `i16` values.
    fn integers(&mut self) -> fixed::State<'_> {
        let state = self.config.positions() * self.config.hidden_size as usize;
        fn values(words: &mut [f32], n: usize) -> &mut [i16] {
            let all: &mut [i16] = bytemuck::cast_slice_mut(words);
            let n = n.min(all.len());
            all.split_at_mut(n).0
        }
        let scores = self.config.attention_scores().min(self.scratch.len());
        let (scores, rest) = self.scratch.split_at_mut(scores);
        fixed::State {
            z_h: values(self.z_h, state),
            z_l: values(self.z_l, state),
            input: values(self.input, state),
            logits: bytemuck::cast_slice_mut(self.logits),
            scores: bytemuck::cast_slice_mut(scores),
            scratch: bytemuck::cast_slice_mut(rest),
        }
    }

    /// Runs one ACT segment from the current carry and computes its logits and Q values.
    pub fn step(&mut self) -> Result<SegmentOutcome, Error> {
        self.step_observed(&mut fixed::Ignore)
    }

    /// [`Session::step`], showing `observer` the activations at every [`Sites`] site (`f32`
    /// blobs only; the converter calibrates the fixed-point formats with it).
    pub fn step_observed(&mut self, observer: &mut dyn Observer) -> Result<SegmentOutcome, Error> {
        if !self.loaded {
            return Err(Error::NotReset);
        }
        if let Some(forward) = self.fixed {
            let mut noise = self.noise;
            let o = forward.step(&mut self.integers(), noise.as_mut())?;
            self.noise = noise;
            let index = self.segments;
            self.segments = self.segments.saturating_add(1);
            // The only floating-point operations of a fixed-point session: the Q values as
            // numbers for the caller (the halting decision was taken on the integers).
            self.q = [fixed_to_f32(o.q_halt, o.frac), fixed_to_f32(o.q_continue, o.frac)];
            return Ok(SegmentOutcome {
                index,
                q_halt: self.q[0],
                q_continue: self.q[1],
                halt_requested: o.halt_requested,
                at_max: self.segments >= self.config.halt_max_steps,
            });
        }
        let c = self.config;
        let sites = Sites::new(&c);
        let net = Net { model: &self.model, config: &c, sites };
        // TRM has one network for both roles; HRM's H role has its own.
        let h_level = match c.kind {
            ModelKind::Hrm => Level::H,
            ModelKind::Trm => Level::L,
        };
        if self.segments == 0 {
            observer.observe(Sites::STATE, self.input);
        }
        for _ in 0..c.h_cycles {
            for _ in 0..c.l_cycles {
                kernels::add_sum_assign(self.z_l, self.z_h, self.input);
                observer.observe(Sites::STATE, self.z_l);
                net.module(Level::L, self.z_l, self.scratch, observer)?;
                if let Some(noise) = &mut self.noise {
                    noise.add_f32(self.z_l);
                }
            }
            kernels::add_assign(self.z_h, self.z_l);
            observer.observe(Sites::STATE, self.z_h);
            net.module(h_level, self.z_h, self.scratch, observer)?;
            if let Some(noise) = self.noise.as_mut().filter(|n| n.on_z_h()) {
                noise.add_f32(self.z_h);
            }
        }

        let h = c.hidden_size as usize;
        let prefix = c.puzzle_emb_len as usize;
        let lm = self.model.tensor(TensorId::LmHead)?;
        let token_rows = self.z_h.get(prefix * h..).unwrap_or(&[]);
        lm.matmul(token_rows, h, self.logits, c.vocab_size as usize, c.seq_len as usize)?;
        let first = self.z_h.get(..h).ok_or(Error::NotReset)?;
        self.model.tensor(TensorId::QHeadWeight)?.matvec(first, &mut self.q)?;
        let bias = self.model.tensor(TensorId::QHeadBias)?;
        for (i, q) in self.q.iter_mut().enumerate() {
            *q += bias.get(i).unwrap_or(0.0);
        }
        observer.observe(Sites::LOGITS, self.logits);
        observer.observe(Sites::Q, &self.q);

        let index = self.segments;
        self.segments = self.segments.saturating_add(1);
        let [q_halt, q_continue] = self.q;
        let halt_requested = match c.halt_rule {
            HaltRule::HaltOverContinue => q_halt > q_continue,
            HaltRule::HaltPositive => q_halt > 0.0,
        };
        Ok(SegmentOutcome { index, q_halt, q_continue, halt_requested, at_max: self.segments >= c.halt_max_steps })
    }

    /// Runs segments until `halting` says stop; returns how many ran.
    pub fn run(&mut self, halting: Halting) -> Result<u32, Error> {
        self.run_with(halting, |_, _| {})
    }

    /// [`Session::run`], calling `after` with the session and the outcome after every segment
    /// (to log it, or fold [`Session::outputs_digest`] over the segments).
    pub fn run_with(&mut self, halting: Halting, mut after: impl FnMut(&Self, &SegmentOutcome)) -> Result<u32, Error> {
        let limit = match halting {
            Halting::Fixed | Halting::Adaptive => self.config.halt_max_steps,
            Halting::Segments(n) => n,
        };
        while self.segments < limit {
            let outcome = self.step()?;
            after(self, &outcome);
            if halting == Halting::Adaptive && outcome.halt_requested {
                break;
            }
        }
        Ok(self.segments)
    }

    /// Segments run since the last reset.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// Logits of the latest segment, `[seq_len, vocab_size]` row-major, of an `f32` blob
    /// (empty for a fixed-point blob: see [`Session::logits_into`]).
    pub fn logits(&self) -> &[f32] {
        if self.fixed.is_some() {
            return &[];
        }
        self.logits
    }

    /// Writes the logits of the latest segment into `out` (`seq_len · vocab_size` values),
    /// converting them from fixed point for a fixed-point blob.
    pub fn logits_into(&self, out: &mut [f32]) -> Result<(), Error> {
        if out.len() != self.logits.len() {
            return Err(Error::OutputLength { expected: self.logits.len(), got: out.len() });
        }
        match self.fixed {
            None => out.copy_from_slice(self.logits),
            Some(forward) => {
                let frac = forward.format(Sites::LOGITS);
                let ints: &[i32] = bytemuck::cast_slice(self.logits);
                for (o, &v) in out.iter_mut().zip(ints) {
                    *o = fixed_to_f32(v, frac);
                }
            }
        }
        Ok(())
    }

    /// Folds the latest segment's outputs into `digest` (FNV-1a, 32 bits): the bits of every
    /// logit as the session holds them (`f32`, or the fixed-point integers) and of `q_halt` and
    /// `q_continue`. Start from [`DIGEST_START`]; the same blob, puzzle and segments give the
    /// same digest on every core and kernel level wherever the arithmetic is the same bits (the
    /// integer-only path everywhere, int8 weights on every x86-64 level).
    pub fn outputs_digest(&self, digest: u32) -> u32 {
        let mut h = digest;
        let words = self.logits.iter().map(|v| v.to_bits()).chain([self.q[0].to_bits(), self.q[1].to_bits()]);
        for word in words {
            for byte in word.to_le_bytes() {
                h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
        }
        h
    }

    pub fn q_halt(&self) -> f32 {
        self.q[0]
    }

    pub fn q_continue(&self) -> f32 {
        self.q[1]
    }

    /// The carry `z_H`, `[S, h]` (prefix rows first); empty for a fixed-point blob.
    pub fn z_h(&self) -> &[f32] {
        if self.fixed.is_some() {
            return &[];
        }
        self.z_h
    }

    /// The carry `z_L`, `[S, h]`; empty for a fixed-point blob.
    pub fn z_l(&self) -> &[f32] {
        if self.fixed.is_some() {
            return &[];
        }
        self.z_l
    }

    /// The predicted token at every position (argmax of the latest logits).
    pub fn predictions(&self, out: &mut [u32]) -> Result<(), Error> {
        let v = self.config.vocab_size as usize;
        let n = self.config.seq_len as usize;
        if let Some(forward) = self.fixed {
            return forward.predictions(bytemuck::cast_slice(self.logits), out);
        }
        if out.len() != n {
            return Err(Error::OutputLength { expected: n, got: out.len() });
        }
        for (o, row) in out.iter_mut().zip(self.logits.chunks_exact(v)) {
            *o = kernels::argmax(row) as u32;
        }
        Ok(())
    }
}

/// The forward pass of the blocks, borrowing the model and the scratch space per call.
struct Net<'r, 'm> {
    model: &'r Model<'m>,
    config: &'r Config,
    sites: Sites,
}

impl Net<'_, '_> {
    fn layer(&self, level: Level, layer: u32, part: LayerPart) -> Result<Matrix<'_>, Error> {
        self.model.layer(level, layer, part)
    }

    /// The site of `layer` of `level`.
    fn site(&self, level: Level, layer: u32, site: LayerSite) -> usize {
        self.sites.at(level, layer, site)
    }

    /// The id of a layer matrix (for the observer).
    fn id(&self, level: Level, layer: u32, part: LayerPart) -> TensorId {
        TensorId::Layer { level, layer: layer as u16, part }
    }

    /// `z ← blocks(z)`; the caller has already added the input injection.
    fn module(&self, level: Level, z: &mut [f32], scratch: &mut [f32], obs: &mut dyn Observer) -> Result<(), Error> {
        let layers = match level {
            Level::H => self.config.h_layers,
            Level::L => self.config.l_layers,
        };
        for layer in 0..layers {
            if self.config.has_attention() {
                self.attention(level, layer, z, scratch, obs)?;
            } else {
                self.token_mix(level, layer, z, scratch, obs)?;
            }
            obs.observe(Sites::STATE, z);
            self.channel_mlp(level, layer, z, scratch, obs)?;
            obs.observe(Sites::STATE, z);
        }
        Ok(())
    }

    /// `z ← rms_norm(z + attention(z))`. Every product covers all positions at once, so each
    /// weight matrix is read once: Q, K and Vᵀ, then the scores of a block of query rows per head,
    /// the heads' outputs, and one output projection.
    fn attention(
        &self,
        level: Level,
        layer: u32,
        z: &mut [f32],
        scratch: &mut [f32],
        obs: &mut dyn Observer,
    ) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = c.positions();
        let hd = c.head_dim();
        let r = c.query_block();
        let wqkv = self.layer(level, layer, LayerPart::Qkv)?;
        let wo = self.layer(level, layer, LayerPart::AttnOut)?;

        let (q, rest) = split(scratch, s * h)?;
        let (k, rest) = split(rest, s * h)?;
        let (vt, rest) = split(rest, h * s)?;
        let (heads_out, rest) = split(rest, s * h)?;
        let (scores, _) = split(rest, r * s)?;

        obs.input(self.id(level, layer, LayerPart::Qkv), z, h, h);
        wqkv.rows(0, h)?.matmul(z, h, q, h, s)?;
        wqkv.rows(h, h)?.matmul(z, h, k, h, s)?;
        // V lands in the output buffer first, then is stored transposed: P·V is then a product
        // with the rows of Vᵀ, like every other.
        wqkv.rows(2 * h, h)?.matmul(z, h, heads_out, h, s)?;
        kernels::transpose(heads_out, s, h, vt);
        if c.pos_encoding == PosEncoding::Rope {
            let half = hd / 2;
            let (cos, sin) =
                match (self.model.tensor(TensorId::RopeCos)?.weights, self.model.tensor(TensorId::RopeSin)?.weights) {
                    (Weights::F32(cos), Weights::F32(sin)) => (cos, sin),
                    _ => return Err(Error::InvalidHeader("rotary table must be f32")),
                };
            for (((q_row, k_row), cos), sin) in
                q.chunks_exact_mut(h).zip(k.chunks_exact_mut(h)).zip(cos.chunks_exact(half)).zip(sin.chunks_exact(half))
            {
                for head in q_row.chunks_exact_mut(hd).chain(k_row.chunks_exact_mut(hd)) {
                    kernels::rope(head, cos, sin);
                }
            }
        }
        let site_in = self.site(level, layer, LayerSite::MixerIn);
        obs.observe(site_in, q);
        obs.observe(site_in, k);
        obs.observe(site_in, vt);

        // With int8 or int4 weights every result is meant to be the same bits on every kernel
        // level and core (their arithmetic is exact integers and fixed roundings): the two activation products then take the one
        // portable loop, whose order of additions is fixed, instead of the ISA's FMA tiles
        // (a few percent of a segment's multiply-adds).
        let heads = kernels::Heads {
            positions: s,
            width: h,
            head_dim: hd,
            heads: c.num_heads as usize,
            query_block: r,
            scale: 1.0 / libm::sqrtf(hd as f32),
            same_bits: matches!(wqkv.weights, Weights::I8 { .. } | Weights::Q4 { .. }),
        };
        kernels::attention_heads(q, k, vt, heads_out, scores, heads)?;
        obs.observe(self.site(level, layer, LayerSite::MixerAct), heads_out);
        obs.input(self.id(level, layer, LayerPart::AttnOut), heads_out, h, h);
        // The projection goes into Q's buffer, free by now.
        wo.matmul(heads_out, h, q, h, s)?;
        obs.observe(self.site(level, layer, LayerSite::MixerOut), q);
        for (x, p) in z.chunks_exact_mut(h).zip(q.chunks_exact(h)) {
            kernels::add_assign(x, p);
            kernels::rms_norm(x, c.rms_norm_eps);
        }
        Ok(())
    }

    /// TRM `mlp_t`: for every channel, `column ← rms_norm(column + swiglu_S(column))` where the
    /// column is that channel over all S positions: a SwiGLU over the transposed state.
    fn token_mix(
        &self,
        level: Level,
        layer: u32,
        z: &mut [f32],
        scratch: &mut [f32],
        obs: &mut dyn Observer,
    ) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = c.positions();
        let wgu = self.layer(level, layer, LayerPart::TokenGateUp)?;
        let wd = self.layer(level, layer, LayerPart::TokenDown)?;
        let (columns, rest) = split(scratch, h * s)?;
        let (proj, rest) = split(rest, h * s)?;
        kernels::transpose(z, s, h, columns);
        let watch = Watch {
            obs,
            site: self.site(level, layer, LayerSite::MixerIn),
            gate_up: self.id(level, layer, LayerPart::TokenGateUp),
            down: self.id(level, layer, LayerPart::TokenDown),
        };
        swiglu_rows(*c, &wgu, &wd, c.mlp_t_inter, columns, h, proj, rest, watch)?;
        for (column, p) in columns.chunks_exact_mut(s).zip(proj.chunks_exact(s)) {
            kernels::add_assign(column, p);
            kernels::rms_norm(column, c.rms_norm_eps);
        }
        kernels::transpose(columns, h, s, z);
        Ok(())
    }

    /// `z ← rms_norm(z + swiglu(z))` over all rows.
    fn channel_mlp(
        &self,
        level: Level,
        layer: u32,
        z: &mut [f32],
        scratch: &mut [f32],
        obs: &mut dyn Observer,
    ) -> Result<(), Error> {
        let c = self.config;
        let h = c.hidden_size as usize;
        let s = z.len() / h;
        let wgu = self.layer(level, layer, LayerPart::GateUp)?;
        let wd = self.layer(level, layer, LayerPart::Down)?;
        let (proj, rest) = split(scratch, s * h)?;
        let watch = Watch {
            obs,
            site: self.site(level, layer, LayerSite::MlpIn),
            gate_up: self.id(level, layer, LayerPart::GateUp),
            down: self.id(level, layer, LayerPart::Down),
        };
        swiglu_rows(*c, &wgu, &wd, c.mlp_inter, z, s, proj, rest, watch)?;
        for (x, p) in z.chunks_exact_mut(h).zip(proj.chunks_exact(h)) {
            kernels::add_assign(x, p);
            kernels::rms_norm(x, c.rms_norm_eps);
        }
        Ok(())
    }
}

/// What a SwiGLU shows the observer: its first site and its two matrices.
struct Watch<'o> {
    obs: &'o mut dyn Observer,
    site: usize,
    gate_up: TensorId,
    down: TensorId,
}

/// `out = swiglu(x)` for `rows` rows of `x` (width `gate_up.cols`), `out` rows of
/// `down.rows` values; the two strategies of [`Config::swiglu_scratch`].
#[allow(clippy::too_many_arguments)]
fn swiglu_rows(
    c: Config,
    gate_up: &Matrix<'_>,
    down: &Matrix<'_>,
    inter: u32,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    scratch: &mut [f32],
    watch: Watch<'_>,
) -> Result<(), Error> {
    let Watch { obs, site, gate_up: gate_up_id, down: down_id } = watch;
    // The three sites of a SwiGLU follow each other: gate and up, activation, output.
    let (site_gu, site_act, site_out) = (site, site + 1, site + 2);
    let width = gate_up.cols;
    let out_width = down.rows;
    let inter = inter as usize;
    let block = c.block as usize;
    if block >= rows {
        // Every row at once: the activation `[rows, inter]`, a block of units at a time.
        let b = c.inter_block(inter as u32);
        let (act, rest) = split(scratch, rows * inter)?;
        let (gu, _) = split(rest, rows * 2 * b)?;
        obs.input(gate_up_id, x.get(..rows * width).unwrap_or(&[]), width, width);
        for start in (0..inter).step_by(b) {
            let n = b.min(inter - start);
            gate_up.rows(start, n)?.matmul(x, width, gu, 2 * b, rows)?;
            gate_up.rows(inter + start, n)?.matmul(x, width, gu.get_mut(b..).unwrap_or(&mut []), 2 * b, rows)?;
            for row in gu.chunks_exact(2 * b).take(rows) {
                let (g, u) = row.split_at(b);
                obs.observe(site_gu, g.get(..n).unwrap_or(&[]));
                obs.observe(site_gu, u.get(..n).unwrap_or(&[]));
            }
            for (row, a) in gu.chunks_exact(2 * b).zip(act.chunks_exact_mut(inter)).take(rows) {
                let (g, u) = row.split_at(b);
                kernels::silu_mul(a.get_mut(start..start + n).unwrap_or(&mut []), g, u);
            }
        }
        obs.observe(site_act, act);
        obs.input(down_id, act, inter, inter);
        down.matmul(act, inter, out, out_width, rows)?;
        obs.observe(site_out, out.get(..rows * out_width).unwrap_or(&[]));
        Ok(())
    } else {
        // A block of rows at a time through the whole SwiGLU.
        let (gu, _) = split(scratch, block * 2 * inter)?;
        for start in (0..rows).step_by(block) {
            let n = block.min(rows - start);
            let x = x.get(start * width..(start + n) * width).unwrap_or(&[]);
            obs.input(gate_up_id, x, width, width);
            gate_up.matmul(x, width, gu, 2 * inter, n)?;
            for row in gu.chunks_exact_mut(2 * inter).take(n) {
                obs.observe(site_gu, row);
                obs.observe(site_act, kernels::swiglu(row));
            }
            let out = out.get_mut(start * out_width..).unwrap_or(&mut []);
            obs.input(down_id, gu.get(..n * 2 * inter).unwrap_or(&[]), inter, 2 * inter);
            down.matmul(gu, 2 * inter, out, out_width, n)?;
            obs.observe(site_out, out.get(..n * out_width).unwrap_or(&[]));
        }
        Ok(())
    }
}

/// `v · 2^-frac` as a number.
fn fixed_to_f32(v: i32, frac: i32) -> f32 {
    v as f32 * f32::from_bits(((127 - frac).clamp(1, 254) as u32) << 23)
}
