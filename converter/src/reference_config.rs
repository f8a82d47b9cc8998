//! The reference training's configuration files: `all_config.yaml` (its `arch:` section) and
//! the dataset's `dataset.json`, turned into the runtime's [`Config`].

use std::path::Path;

use hrm_runtime::{Config, HaltRule, ModelKind, PosEncoding};
use serde::Deserialize;

use crate::error::{ConvertError, Result};

/// The `arch:` section of `all_config.yaml`. Unknown keys (loss settings, dtypes) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchConfig {
    /// `module@Class`, e.g. `hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1`.
    pub name: String,
    #[serde(rename = "H_cycles")]
    pub h_cycles: u32,
    #[serde(rename = "L_cycles")]
    pub l_cycles: u32,
    #[serde(rename = "H_layers", default)]
    pub h_layers: u32,
    #[serde(rename = "L_layers")]
    pub l_layers: u32,
    pub hidden_size: u32,
    pub num_heads: u32,
    pub expansion: f64,
    pub halt_max_steps: u32,
    #[serde(default = "default_exploration")]
    pub halt_exploration_prob: f64,
    pub pos_encodings: String,
    #[serde(default)]
    pub puzzle_emb_ndim: u32,
    /// TRM only; the reference's default is 16.
    pub puzzle_emb_len: Option<u32>,
    #[serde(default)]
    pub mlp_t: bool,
    #[serde(rename = "no_ACT_continue")]
    pub no_act_continue: Option<bool>,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
}

fn default_exploration() -> f64 {
    0.1
}
fn default_theta() -> f64 {
    10000.0
}
fn default_eps() -> f64 {
    1e-5
}

#[derive(Debug, Deserialize)]
struct AllConfig {
    arch: ArchConfig,
}

/// `dataset.json` fields the architecture depends on.
#[derive(Debug, Clone, Deserialize)]
pub struct DatasetMeta {
    pub seq_len: u32,
    pub vocab_size: u32,
    pub num_puzzle_identifiers: u32,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ConvertError::Io { path: path.to_owned(), source })
}

pub fn read_arch(path: &Path) -> Result<ArchConfig> {
    parse_arch(&read_text(path)?, path)
}

/// The `arch:` section of an `all_config.yaml` text (`origin` names it in errors).
pub fn parse_arch(text: &str, origin: &Path) -> Result<ArchConfig> {
    let all: AllConfig = serde_norway::from_str(text)
        .map_err(|e| ConvertError::Config { path: origin.to_owned(), message: e.to_string() })?;
    Ok(all.arch)
}

pub fn read_dataset(path: &Path) -> Result<DatasetMeta> {
    parse_dataset(&read_text(path)?, path)
}

/// A `dataset.json` text.
pub fn parse_dataset(text: &str, origin: &Path) -> Result<DatasetMeta> {
    serde_json::from_str(text).map_err(|e| ConvertError::Config { path: origin.to_owned(), message: e.to_string() })
}

/// Builds the runtime configuration the way the reference code derives its sizes.
pub fn to_config(arch: &ArchConfig, data: &DatasetMeta, arch_path: &Path) -> Result<Config> {
    let err = |message: String| ConvertError::Config { path: arch_path.to_owned(), message };
    let class = arch.name.rsplit('@').next().unwrap_or_default();
    let kind = match class {
        "HierarchicalReasoningModel_ACTV1" => ModelKind::Hrm,
        "TinyRecursiveReasoningModel_ACTV1" => ModelKind::Trm,
        _ => {
            return Err(err(format!(
                "architecture `{}` is not supported (supported: HierarchicalReasoningModel_ACTV1, \
                 TinyRecursiveReasoningModel_ACTV1)",
                arch.name
            )))
        }
    };
    let pos_encoding = match arch.pos_encodings.as_str() {
        "rope" => PosEncoding::Rope,
        "learned" => PosEncoding::Learned,
        "none" if kind == ModelKind::Trm => PosEncoding::None,
        other => return Err(err(format!("pos_encodings `{other}` is not supported for {class}"))),
    };
    if arch.hidden_size == 0 {
        return Err(err("hidden_size is 0".into()));
    }
    let auto_len = arch.puzzle_emb_ndim.div_ceil(arch.hidden_size);
    let puzzle_emb_len = match kind {
        ModelKind::Hrm => auto_len,
        ModelKind::Trm => match arch.puzzle_emb_len.unwrap_or(16) {
            0 => auto_len,
            p => p,
        },
    };
    let halt_rule = match (kind, arch.no_act_continue.unwrap_or(true)) {
        (ModelKind::Trm, true) => HaltRule::HaltPositive,
        _ => HaltRule::HaltOverContinue,
    };
    if arch.mlp_t && kind != ModelKind::Trm {
        return Err(err("mlp_t is only defined for TRM".into()));
    }
    let positions = data.seq_len.checked_add(puzzle_emb_len).ok_or_else(|| err("seq_len too large".into()))?;
    let config = Config {
        kind,
        pos_encoding,
        halt_rule,
        mlp_t: arch.mlp_t,
        hidden_size: arch.hidden_size,
        num_heads: arch.num_heads,
        h_layers: arch.h_layers,
        l_layers: arch.l_layers,
        h_cycles: arch.h_cycles,
        l_cycles: arch.l_cycles,
        halt_max_steps: arch.halt_max_steps,
        seq_len: data.seq_len,
        vocab_size: data.vocab_size,
        num_puzzle_identifiers: data.num_puzzle_identifiers,
        puzzle_emb_ndim: arch.puzzle_emb_ndim,
        puzzle_emb_len,
        mlp_inter: Config::swiglu_inter(arch.expansion, arch.hidden_size),
        mlp_t_inter: if arch.mlp_t { Config::swiglu_inter(arch.expansion, positions) } else { 0 },
        expansion: arch.expansion as f32,
        rope_theta: arch.rope_theta as f32,
        rms_norm_eps: arch.rms_norm_eps as f32,
        halt_exploration_prob: arch.halt_exploration_prob as f32,
        block: hrm_runtime::config::DEFAULT_BLOCK,
    };
    config.validate().map_err(|e| err(e.to_string()))?;
    Ok(config)
}
