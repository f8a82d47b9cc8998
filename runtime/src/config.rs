//! The architecture of a model: every field the blob header stores, the sizes derived from it,
//! and the working memory (arena) a session needs.

use crate::Activations;
use crate::Error;

/// Which reference model the blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Hierarchical Reasoning Model: separate `H` and `L` modules.
    Hrm,
    /// Tiny Recursive Model: one module (`L_level`) used for both roles.
    Trm,
}

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PosEncoding {
    /// Nothing (TRM's attention-free variant).
    None,
    /// Rotary embedding on queries and keys; the cos/sin table is stored in the blob.
    Rope,
    /// A learned `[S, h]` table added to the input embedding.
    Learned,
}

/// When the adaptive policy stops an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltRule {
    /// Halt when `q_halt > q_continue` (HRM, and TRM trained with the continue head).
    HaltOverContinue,
    /// Halt when `q_halt > 0` (TRM with `no_ACT_continue`, its default).
    HaltPositive,
}

/// The architecture of a model, as stored in the blob header.
///
/// Field names follow the reference configs (`all_config.yaml` `arch:` plus `dataset.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub kind: ModelKind,
    pub pos_encoding: PosEncoding,
    pub halt_rule: HaltRule,
    /// TRM only: the attention sub-layer is replaced by a SwiGLU over the sequence axis.
    pub mlp_t: bool,
    pub hidden_size: u32,
    pub num_heads: u32,
    /// HRM's `H_layers`; TRM models carry the config value but have no H module.
    pub h_layers: u32,
    pub l_layers: u32,
    pub h_cycles: u32,
    pub l_cycles: u32,
    pub halt_max_steps: u32,
    pub seq_len: u32,
    pub vocab_size: u32,
    pub num_puzzle_identifiers: u32,
    pub puzzle_emb_ndim: u32,
    /// `P`: the number of prefix rows that hold the puzzle embedding.
    pub puzzle_emb_len: u32,
    /// Intermediate size of the channel SwiGLU (`round_up(round(expansion·h·2/3), 256)`).
    pub mlp_inter: u32,
    /// Intermediate size of the sequence SwiGLU of `mlp_t` (0 when absent).
    pub mlp_t_inter: u32,
    pub expansion: f32,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    /// Used by training only; kept so that a blob describes its model completely.
    pub halt_exploration_prob: f32,
    /// The width of the runtime's work blocks: query rows of attention scored at once, and
    /// intermediate units of a SwiGLU computed at once. Every weight matrix is read once per
    /// call whatever the block; a larger block means fewer, larger products and more working
    /// memory. Chosen at conversion (`hrm convert --block`).
    pub block: u32,
}

/// Bounds on header fields: generous for real models, small enough that every derived size fits
/// comfortably in a 32-bit `usize` product chain without overflow.
pub mod limits {
    pub const MAX_HIDDEN: u32 = 1 << 14;
    pub const MAX_HEADS: u32 = 1 << 10;
    pub const MAX_LAYERS: u32 = 1 << 10;
    pub const MAX_CYCLES: u32 = 1 << 12;
    pub const MAX_SEGMENTS: u32 = 1 << 16;
    pub const MAX_POSITIONS: u32 = 1 << 16;
    pub const MAX_VOCAB: u32 = 1 << 16;
    pub const MAX_PUZZLE_IDS: u32 = 1 << 24;
    pub const MAX_INTER: u32 = 1 << 18;
    pub const MAX_BLOCK: u32 = 256;
}

/// The block `hrm convert` uses unless told otherwise: wide enough for the SIMD kernels to run
/// near their peak, small enough for the arena of the official 27M model to stay near 1.2 MiB.
pub const DEFAULT_BLOCK: u32 = 128;

/// Where each buffer lives inside the arena, in 4-byte words (`f32` elements) from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaPlan {
    /// `z_H` carry, `[S, h]`.
    pub z_h: usize,
    /// `z_L` carry, `[S, h]`.
    pub z_l: usize,
    /// Embedded input, `[S, h]`.
    pub input: usize,
    /// Logits of the latest segment, `[seq_len, V]`.
    pub logits: usize,
    /// Scratch space shared by the sub-layers.
    pub scratch: usize,
    /// Length of the scratch space.
    pub scratch_len: usize,
    /// Total `f32` elements.
    pub total: usize,
}

/// The sizes [`Config::arena_plan`] and [`Config::fixed_arena_plan`] lay out, in values.
struct ArenaValues {
    state: usize,
    logits: usize,
    mlp: usize,
    attention: usize,
    scores: usize,
    token_mix: usize,
}

const fn max3(a: usize, b: usize, c: usize) -> usize {
    let ab = if a > b { a } else { b };
    if ab > c {
        ab
    } else {
        c
    }
}

impl ArenaPlan {
    /// `z_H`, `z_L` and the input (`state` words each), the logits, then the scratch.
    const fn of(state: usize, logits: usize, scratch_len: usize) -> ArenaPlan {
        let logits_at = state.saturating_mul(3);
        let scratch = logits_at.saturating_add(logits);
        ArenaPlan {
            z_h: 0,
            z_l: state,
            input: state.saturating_mul(2),
            logits: logits_at,
            scratch,
            scratch_len,
            total: scratch.saturating_add(scratch_len),
        }
    }
}

impl Config {
    /// `S`: prefix rows plus tokens.
    pub const fn positions(&self) -> usize {
        (self.seq_len as usize).saturating_add(self.puzzle_emb_len as usize)
    }

    pub const fn head_dim(&self) -> usize {
        match self.hidden_size.checked_div(self.num_heads) {
            Some(d) => d as usize,
            None => 0,
        }
    }

    /// Whether the blocks have an attention sub-layer (all but TRM `mlp_t`).
    pub const fn has_attention(&self) -> bool {
        !self.mlp_t
    }

    /// Layers of the H module (0 for TRM, which reuses the L module).
    pub const fn h_module_layers(&self) -> u32 {
        match self.kind {
            ModelKind::Hrm => self.h_layers,
            ModelKind::Trm => 0,
        }
    }

    /// Query rows scored at once: `min(block, S)`.
    pub const fn query_block(&self) -> usize {
        let s = self.positions();
        let r = self.block as usize;
        if r < s {
            r
        } else {
            s
        }
    }

    /// Intermediate units of a SwiGLU of width `inter` computed at once: `min(block, inter)`.
    /// Whether the attention's and the channel SwiGLU's matrices may be stored as
    /// [`crate::blob::DType::F32Panels`]: every row range the forward pass takes of them (Q, K
    /// and V of `qkv_proj`; the gate and up blocks of `gate_up_proj`) starts at a multiple of
    /// 16 rows.
    pub const fn f32_panels_fit(&self) -> bool {
        let p = crate::blob::F32_PANEL_ROWS;
        let inter = self.mlp_inter;
        (self.hidden_size as usize).is_multiple_of(p)
            && (inter as usize).is_multiple_of(p)
            && self.inter_block(inter).is_multiple_of(p)
    }

    pub const fn inter_block(&self, inter: u32) -> usize {
        let r = self.block as usize;
        let i = inter as usize;
        if r < i {
            r
        } else {
            i
        }
    }

    /// Scratch of a SwiGLU of width `inter` over `rows` rows. With a block covering all rows,
    /// the activation of every row is kept (`rows × inter`) and built a block of intermediate
    /// units at a time (`rows × 2·min(block, inter)`), so that each weight is read once; with a
    /// smaller block, `block` rows at a time go through the whole SwiGLU (`block × 2·inter`),
    /// reading the weights once per block of rows but needing little memory.
    pub const fn swiglu_scratch(&self, rows: usize, inter: u32) -> usize {
        let b = self.block as usize;
        let i = inter as usize;
        if b >= rows {
            rows.saturating_mul(i).saturating_add(rows.saturating_mul(self.inter_block(inter).saturating_mul(2)))
        } else {
            b.saturating_mul(i.saturating_mul(2))
        }
    }

    /// What the arena holds, in values: the state `[S, h]` (each of `z_H`, `z_L`, the input),
    /// the logits, the attention's scores of a block of query rows, and the largest scratch
    /// any sub-layer needs besides those scores. Sizes saturate instead of overflowing;
    /// [`Config::validate`] rejects configurations where that could happen.
    const fn arena_values(&self) -> ArenaValues {
        let s = self.positions();
        let h = self.hidden_size as usize;
        let state = s.saturating_mul(h);
        let logits = (self.seq_len as usize).saturating_mul(self.vocab_size as usize);
        // Channel SwiGLU over S rows, into an `[S, h]` projection: see `swiglu_scratch`.
        let mlp = state.saturating_add(self.swiglu_scratch(s, self.mlp_inter));
        // Attention: Q, K `[S, h]` and Vᵀ `[h, S]`, the heads' outputs `[S, h]`, and the scores of
        // a block of query rows.
        let attention = if self.has_attention() { state.saturating_mul(4) } else { 0 };
        let scores = self.attention_scores();
        // Sequence SwiGLU on the transposed state `[h, S]` (h rows), into an `[h, S]` projection.
        let token_mix = if self.mlp_t {
            state.saturating_mul(2).saturating_add(self.swiglu_scratch(h, self.mlp_t_inter))
        } else {
            0
        };
        ArenaValues { state, logits, mlp, attention, scores, token_mix }
    }

    /// The attention's scores of a block of query rows, `min(block, S) × S` (0 without
    /// attention): in the integer path's arena the first `i32`s of the scratch.
    pub const fn attention_scores(&self) -> usize {
        if self.has_attention() {
            self.query_block().saturating_mul(self.positions())
        } else {
            0
        }
    }

    /// The arena layout of an `f32` blob: every buffer `f32`, one word a value.
    pub const fn arena_plan(&self) -> ArenaPlan {
        let v = self.arena_values();
        let scratch = max3(v.mlp, v.attention.saturating_add(v.scores), v.token_mix);
        ArenaPlan::of(v.state, v.logits, scratch)
    }

    /// The arena layout of the integer path (`crate::fixed`), in the same 4-byte words as
    /// [`Config::arena_plan`]: every activation buffer holds `i16` values (two a word; the
    /// state's three buffers each rounded up to whole words), the logits `i32`, and the scratch
    /// starts with the attention's scores of a block of query rows (`i32`, Q30 probabilities)
    /// followed by the same buffers as the `f32` plan's, as `i16`: 51 to 64 % of the `f32`
    /// arena on the golden models (51 % for the built-in Sudoku model at work block 4).
    pub const fn fixed_arena_plan(&self) -> ArenaPlan {
        let v = self.arena_values();
        let values = max3(v.mlp, v.attention, v.token_mix);
        ArenaPlan::of(v.state.div_ceil(2), v.logits, v.scores.saturating_add(values.div_ceil(2)))
    }

    /// The arena layout for a blob with `activations`: [`Config::arena_plan`] or
    /// [`Config::fixed_arena_plan`].
    pub const fn arena_plan_for(&self, activations: Activations) -> ArenaPlan {
        match activations {
            Activations::F32 => self.arena_plan(),
            Activations::Fixed => self.fixed_arena_plan(),
        }
    }

    /// Bytes of working memory a [`crate::Session`] of an `f32` blob needs for this model
    /// (one of [`Config::arena_bytes_for`]).
    ///
    /// A `const fn`, so firmware can size a `static` arena at compile time:
    /// `static mut ARENA: Arena<{ CONFIG.arena_bytes() }>`.
    pub const fn arena_bytes(&self) -> usize {
        self.arena_plan().total.saturating_mul(4)
    }

    /// Bytes of working memory a [`crate::Session`] needs for a blob of this model with
    /// `activations` (the header's): firmware sizes its `static` arena with it,
    /// `Arena<{ HEADER.config.arena_bytes_for(HEADER.activations) }>`.
    pub const fn arena_bytes_for(&self, activations: Activations) -> usize {
        self.arena_plan_for(activations).total.saturating_mul(4)
    }

    /// The channel SwiGLU's intermediate size as the reference computes it:
    /// `round_up(round(expansion · width · 2 / 3), 256)` with Python's round-half-to-even.
    pub fn swiglu_inter(expansion: f64, width: u32) -> u32 {
        let raw = expansion * f64::from(width) * 2.0 / 3.0;
        let rounded = round_half_even(raw);
        if !(0.0..=f64::from(u32::MAX - 256)).contains(&rounded) {
            return 0;
        }
        let r = rounded as u32;
        r.div_ceil(256) * 256
    }

    /// Checks ranges and the relations between fields; every size the runtime derives from a
    /// validated config fits in `usize` without overflow.
    pub fn validate(&self) -> Result<(), Error> {
        use limits::*;
        let bad = |cond: bool, why: &'static str| if cond { Err(Error::InvalidHeader(why)) } else { Ok(()) };
        bad(self.hidden_size == 0 || self.hidden_size > MAX_HIDDEN, "hidden_size out of range")?;
        bad(self.num_heads == 0 || self.num_heads > MAX_HEADS, "num_heads out of range")?;
        bad(!self.hidden_size.is_multiple_of(self.num_heads), "hidden_size is not a multiple of num_heads")?;
        bad(
            self.pos_encoding == PosEncoding::Rope && !self.head_dim().is_multiple_of(2),
            "rotary embedding needs an even head dimension",
        )?;
        bad(self.l_layers == 0 || self.l_layers > MAX_LAYERS, "L_layers out of range")?;
        bad(self.h_layers > MAX_LAYERS, "H_layers out of range")?;
        bad(self.kind == ModelKind::Hrm && self.h_layers == 0, "an HRM model needs at least one H layer")?;
        bad(self.h_cycles == 0 || self.h_cycles > MAX_CYCLES, "H_cycles out of range")?;
        bad(self.l_cycles == 0 || self.l_cycles > MAX_CYCLES, "L_cycles out of range")?;
        bad(self.halt_max_steps == 0 || self.halt_max_steps > MAX_SEGMENTS, "halt_max_steps out of range")?;
        bad(self.seq_len == 0, "seq_len is zero")?;
        bad(
            u64::from(self.seq_len) + u64::from(self.puzzle_emb_len) > u64::from(MAX_POSITIONS),
            "seq_len + puzzle_emb_len out of range",
        )?;
        bad(self.vocab_size == 0 || self.vocab_size > MAX_VOCAB, "vocab_size out of range")?;
        bad(
            self.num_puzzle_identifiers == 0 || self.num_puzzle_identifiers > MAX_PUZZLE_IDS,
            "num_puzzle_identifiers out of range",
        )?;
        // The puzzle vector must fit in the prefix rows, and a prefix needs a vector.
        bad(
            u64::from(self.puzzle_emb_ndim) > u64::from(self.puzzle_emb_len) * u64::from(self.hidden_size),
            "puzzle_emb_ndim does not fit in puzzle_emb_len rows",
        )?;
        bad(self.puzzle_emb_len > 0 && self.puzzle_emb_ndim == 0, "a puzzle prefix needs a puzzle embedding")?;
        if self.kind == ModelKind::Hrm {
            let p = self.puzzle_emb_ndim.div_ceil(self.hidden_size);
            bad(self.puzzle_emb_len != p, "HRM puzzle_emb_len must be ceil(puzzle_emb_ndim / h)")?;
        }
        bad(self.mlp_t && self.kind != ModelKind::Trm, "mlp_t is a TRM variant")?;
        bad(
            self.pos_encoding == PosEncoding::None && self.kind == ModelKind::Hrm,
            "HRM needs rope or learned positions",
        )?;
        bad(self.mlp_inter == 0 || self.mlp_inter > MAX_INTER, "mlp_inter out of range")?;
        bad(self.mlp_t && (self.mlp_t_inter == 0 || self.mlp_t_inter > MAX_INTER), "mlp_t_inter out of range")?;
        bad(!self.mlp_t && self.mlp_t_inter != 0, "mlp_t_inter set without mlp_t")?;
        bad(
            !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0),
            "rms_norm_eps must be finite and non-negative",
        )?;
        bad(!(self.rope_theta.is_finite() && self.rope_theta > 0.0), "rope_theta must be finite and positive")?;
        bad(!self.expansion.is_finite(), "expansion must be finite")?;
        bad(!self.halt_exploration_prob.is_finite(), "halt_exploration_prob must be finite")?;
        bad(self.block == 0 || self.block > MAX_BLOCK, "block out of range")?;

        // Every product the runtime forms must fit a usize, also on 32-bit targets.
        let s = self.positions() as u64;
        let h = u64::from(self.hidden_size);
        let inter = u64::from(self.mlp_inter.max(self.mlp_t_inter));
        let biggest = [
            s * h * 4,
            s * s,
            inter * 2 * h.max(s),
            u64::from(self.block) * s * 2,
            u64::from(self.num_puzzle_identifiers) * u64::from(self.puzzle_emb_ndim),
            u64::from(self.vocab_size) * h,
        ];
        for v in biggest {
            bad(v.saturating_mul(4) > u64::from(u32::MAX), "model is too large for this runtime")?;
        }
        let total = self.arena_plan().total as u64;
        bad(total.saturating_mul(4) > u64::from(u32::MAX), "arena is too large")?;
        Ok(())
    }
}

/// Python's `round()` on floats: halves go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    let r = libm::round(x);
    if libm::fabs(x - libm::trunc(x)) == 0.5 {
        2.0 * libm::round(x / 2.0)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_sizes_match_the_reference() {
        // Shapes of ../shared/golden: h 64 → 256, h 48 × 2 → 256, h 128 → 512, S 97 → 512.
        assert_eq!(Config::swiglu_inter(4.0, 64), 256);
        assert_eq!(Config::swiglu_inter(2.0, 48), 256);
        assert_eq!(Config::swiglu_inter(4.0, 128), 512);
        assert_eq!(Config::swiglu_inter(4.0, 97), 512);
        // Official 512-wide models: round(1365.33) = 1365 → 1536.
        assert_eq!(Config::swiglu_inter(4.0, 512), 1536);
        // Round half to even: 1.5 · 3 · 2 / 3 = 3 exactly; 0.75 · 2 · 2/3 = 1.0.
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-2.5), -2.0);
    }
}
