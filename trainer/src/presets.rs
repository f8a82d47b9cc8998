//! Model and optimiser sizes per task, architecture and preset.

use hrm_runtime::{Config, HaltRule, ModelKind, PosEncoding};

use crate::loss::LmLoss;
use crate::tasks::TaskKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Hrm,
    Trm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Minutes on a laptop CPU: h 64.
    Tiny,
    /// An hour or so on a CPU: h 128.
    Small,
    /// The published sizes (h 512), for a GPU.
    Paper,
}

/// Optimiser settings (the reference's names).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    pub batch_size: usize,
    pub lr: f64,
    pub lr_warmup_steps: u64,
    pub lr_min_ratio: f64,
    pub weight_decay: f64,
    pub puzzle_emb_lr: f64,
    pub puzzle_emb_weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub loss: LmLoss,
    /// TRM keeps an exponential moving average of the weights and saves it.
    pub ema: Option<f64>,
    /// Ramp the average's rate up as `min(ema, (1 + t) / (10 + t))` (this project's runs, which
    /// are short enough that a plain 0.999 average would still be mostly the initial weights);
    /// off, the average is the reference's from the first step.
    #[serde(default = "yes")]
    pub ema_warmup: bool,
}

fn yes() -> bool {
    true
}

/// Sequence length, vocabulary and puzzle identifiers of a task's data.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct DataShape {
    pub seq_len: u32,
    pub vocab_size: u32,
    pub num_puzzle_identifiers: u32,
}

pub fn model_config(arch: Arch, preset: Preset, data: DataShape) -> Config {
    let (h, heads, layers, h_cycles, l_cycles, steps) = match (preset, arch) {
        (Preset::Tiny, Arch::Hrm) => (64, 2, 2, 2, 2, 4),
        (Preset::Tiny, Arch::Trm) => (64, 2, 2, 2, 3, 4),
        (Preset::Small, Arch::Hrm) => (128, 4, 2, 2, 2, 8),
        (Preset::Small, Arch::Trm) => (128, 4, 2, 3, 4, 8),
        (Preset::Paper, Arch::Hrm) => (512, 8, 4, 2, 2, 16),
        (Preset::Paper, Arch::Trm) => (512, 8, 2, 3, 6, 16),
    };
    let kind = match arch {
        Arch::Hrm => ModelKind::Hrm,
        Arch::Trm => ModelKind::Trm,
    };
    // TRM's Sudoku model mixes tokens with an MLP over the sequence (no attention, no positions).
    let sudoku_like = data.seq_len == 81;
    let mlp_t = arch == Arch::Trm && sudoku_like;
    let puzzle_emb_len = match (arch, preset) {
        (Arch::Hrm, _) => 1,
        (Arch::Trm, Preset::Paper) => 16,
        (Arch::Trm, _) => 4,
    };
    let expansion = 4.0;
    let positions = data.seq_len + puzzle_emb_len;
    Config {
        kind,
        pos_encoding: if mlp_t { PosEncoding::None } else { PosEncoding::Rope },
        halt_rule: if arch == Arch::Trm { HaltRule::HaltPositive } else { HaltRule::HaltOverContinue },
        mlp_t,
        hidden_size: h,
        num_heads: heads,
        h_layers: if arch == Arch::Hrm { layers } else { 0 },
        l_layers: layers,
        h_cycles,
        l_cycles,
        halt_max_steps: steps,
        seq_len: data.seq_len,
        vocab_size: data.vocab_size,
        num_puzzle_identifiers: data.num_puzzle_identifiers,
        puzzle_emb_ndim: h,
        puzzle_emb_len,
        mlp_inter: Config::swiglu_inter(expansion, h),
        mlp_t_inter: if mlp_t { Config::swiglu_inter(expansion, positions) } else { 0 },
        expansion: expansion as f32,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        halt_exploration_prob: 0.1,
        block: hrm_runtime::config::DEFAULT_BLOCK,
    }
}

pub fn hyper(task: TaskKind, arch: Arch, preset: Preset) -> Hyper {
    let ema = (arch == Arch::Trm).then_some(0.999);
    match preset {
        Preset::Tiny | Preset::Small => Hyper {
            batch_size: if preset == Preset::Tiny { 32 } else { 64 },
            lr: 1e-3,
            lr_warmup_steps: 100,
            lr_min_ratio: 0.1,
            weight_decay: 0.1,
            puzzle_emb_lr: 1e-2,
            puzzle_emb_weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            loss: LmLoss::Stablemax,
            ema,
            ema_warmup: true,
        },
        Preset::Paper => Hyper {
            batch_size: 768,
            lr: 1e-4,
            lr_warmup_steps: 2000,
            lr_min_ratio: 1.0,
            weight_decay: if task == TaskKind::Arc { 0.1 } else { 1.0 },
            puzzle_emb_lr: if task == TaskKind::Arc { 1e-2 } else { 1e-4 },
            puzzle_emb_weight_decay: if task == TaskKind::Arc { 0.1 } else { 1.0 },
            beta1: 0.9,
            beta2: 0.95,
            loss: LmLoss::Stablemax,
            ema,
            ema_warmup: true,
        },
    }
}
