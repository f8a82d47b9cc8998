//! The run directory: files written atomically (temp file + rename), so that a run killed at
//! any moment leaves its last complete checkpoint.
//!
//! - `model.safetensors`, `all_config.yaml`, `dataset.json`: the model in the reference's
//!   checkpoint layout (what `hrm convert RUN_DIR` and `hrm eval RUN_DIR` read);
//! - `config.json`: the run's settings; `train_state.safetensors`: everything `--resume` needs;
//! - `metrics.jsonl`, `metrics.png`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use hrm_runtime::{Config, HaltRule, ModelKind, PosEncoding};

use crate::model::Net;
use crate::train::MetricsLine;

/// Writes `bytes` beside `path` under a temporary name, syncs, and renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("not a file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn st_dtype(d: DType) -> Result<safetensors::Dtype> {
    Ok(match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F64 => safetensors::Dtype::F64,
        DType::U32 => safetensors::Dtype::U32,
        DType::I64 => safetensors::Dtype::I64,
        DType::U8 => safetensors::Dtype::U8,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::F16 => safetensors::Dtype::F16,
        other => anyhow::bail!("cannot save {other:?}"),
    })
}

/// Tensors (any device) to a safetensors file, atomically.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        let bytes: Vec<u8> = match t.dtype() {
            DType::F32 => t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F64 => t.flatten_all()?.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::U32 => t.flatten_all()?.to_vec1::<u32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I64 => t.flatten_all()?.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::U8 => t.flatten_all()?.to_vec1::<u8>()?,
            other => anyhow::bail!("cannot save {other:?}"),
        };
        host.push((name.clone(), st_dtype(t.dtype())?, t.dims().to_vec(), bytes));
    }
    let views = host
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata)?;
    write_atomically(path, &bytes)
}

/// Reads a safetensors file onto `device`, with its metadata.
pub fn read_tensors(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    Ok((tensors, metadata))
}

/// `model.safetensors` (reference names) plus `all_config.yaml` and `dataset.json` in the
/// reference's layout, so that the run directory is a checkpoint the converter reads.
pub fn save_model(dir: &Path, net: &Net) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = net.vars().map(|(id, v)| (id.to_string(), v.as_tensor().clone())).collect();
    write_tensors(&dir.join("model.safetensors"), &tensors, None)?;
    let c = &net.config;
    write_atomically(&dir.join("all_config.yaml"), arch_yaml(c).as_bytes())?;
    let dataset = serde_json::json!({
        "seq_len": c.seq_len,
        "vocab_size": c.vocab_size,
        "num_puzzle_identifiers": c.num_puzzle_identifiers,
        "pad_id": 0,
        "ignore_label_id": 0,
    });
    write_atomically(&dir.join("dataset.json"), dataset.to_string().as_bytes())
}

/// The `arch:` section the reference writes, for this configuration.
pub fn arch_yaml(c: &Config) -> String {
    let name = match c.kind {
        ModelKind::Hrm => "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
        ModelKind::Trm => "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
    };
    let pos = match c.pos_encoding {
        PosEncoding::Rope => "rope",
        PosEncoding::Learned => "learned",
        PosEncoding::None => "none",
    };
    let mut s = format!(
        "arch:\n  name: {name}\n  H_cycles: {}\n  L_cycles: {}\n  H_layers: {}\n  L_layers: {}\n  hidden_size: {}\n  \
         num_heads: {}\n  expansion: {}\n  halt_max_steps: {}\n  halt_exploration_prob: {}\n  pos_encodings: {pos}\n  \
         puzzle_emb_ndim: {}\n  rope_theta: {}\n  rms_norm_eps: {:e}\n",
        c.h_cycles,
        c.l_cycles,
        c.h_layers,
        c.l_layers,
        c.hidden_size,
        c.num_heads,
        c.expansion,
        c.halt_max_steps,
        c.halt_exploration_prob,
        c.puzzle_emb_ndim,
        c.rope_theta,
        c.rms_norm_eps
    );
    if c.kind == ModelKind::Trm {
        s.push_str(&format!(
            "  puzzle_emb_len: {}\n  mlp_t: {}\n  no_ACT_continue: {}\n",
            c.puzzle_emb_len,
            c.mlp_t,
            c.halt_rule == HaltRule::HaltPositive
        ));
    }
    s
}

pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Drops the lines written after `step` (by a run killed after its last checkpoint), so that a
/// resumed run's metrics continue without duplicates.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<MetricsLine>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomically(path, kept.as_bytes())
}
