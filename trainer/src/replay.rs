//! `hrm train --replay CASE --out RUN [--teacher-forced]`: the trainer run on a golden training
//! case of the reference (`../shared/golden-train/README.md`) — its checkpoint, its
//! hyper-parameters, exactly its batches and its exploration draws — writing what every step
//! computed under the trace's own names, and comparing it with the reference's trace.
//!
//! Free-running replays all steps from the checkpoint; teacher-forced starts every step `i ≥ 2`
//! from the reference's own state after step `i − 1` (`states.safetensors`), so each step is
//! checked on its own, without the drift of the ones before.
//!
//! Parse (the case) → run ([`Learner`] fed by [`Replayed`]) → compare ([`compare`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use hrm_convert::{Checkpoint, Overrides};
use hrm_runtime::blob::TensorId;
use hrm_runtime::{HaltRule, ModelKind};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::learner::{Learner, StepFeed, StepOutcome};
use crate::loss::{LmLoss, IGNORE_LABEL};
use crate::model::{Carry, Net};
use crate::presets::Hyper;
use crate::run_dir;
use crate::tasks::Example;

/// The prefix of every tensor name in the reference's state dict.
pub const REFERENCE_PREFIX: &str = "_orig_mod.model.inner.";

/// A tensor of a trace, widened to f64 (every dtype of the traces fits exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Array {
    fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<f64>) -> Array {
        Array { dtype, shape, data }
    }

    fn f32s(shape: Vec<usize>, values: &[f32]) -> Array {
        Array::new(Dtype::F32, shape, values.iter().map(|&v| f64::from(v)).collect())
    }

    fn i32s(values: impl IntoIterator<Item = i64>) -> Array {
        let data: Vec<f64> = values.into_iter().map(|v| v as f64).collect();
        Array::new(Dtype::I32, vec![data.len()], data)
    }

    fn u8s(values: &[bool]) -> Array {
        Array::new(Dtype::U8, vec![values.len()], values.iter().map(|&v| f64::from(u8::from(v))).collect())
    }

    fn of_tensor(t: &Tensor) -> Result<Array> {
        let values = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Array::f32s(t.dims().to_vec(), &values))
    }

    fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let values: Vec<f32> = self.data.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(values, self.shape.as_slice(), device)?)
    }
}

/// Named arrays, sorted by name.
pub type Arrays = BTreeMap<String, Array>;

/// Reads a safetensors file of f32, f64, i32, i64 or u8 tensors.
pub fn read_arrays(path: &Path) -> Result<Arrays> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut out = Arrays::new();
    for (name, t) in st.tensors() {
        let d = t.data();
        let data: Vec<f64> = match t.dtype() {
            Dtype::F32 => d.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
            Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
            Dtype::I32 => d.chunks_exact(4).map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
            Dtype::I64 => {
                d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64).collect()
            }
            Dtype::U8 => d.iter().map(|&v| f64::from(v)).collect(),
            other => bail!("{}: {name} has dtype {other:?}, which traces do not use", path.display()),
        };
        out.insert(name, Array::new(t.dtype(), t.shape().to_vec(), data));
    }
    Ok(out)
}

/// Writes arrays in their own dtypes, atomically.
pub fn write_arrays(path: &Path, arrays: &Arrays) -> Result<()> {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = arrays
        .iter()
        .map(|(name, a)| {
            let bytes: Vec<u8> = match a.dtype {
                Dtype::F32 => a.data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
                Dtype::F64 => a.data.iter().flat_map(|&v| v.to_le_bytes()).collect(),
                Dtype::I32 => a.data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
                Dtype::I64 => a.data.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
                _ => a.data.iter().map(|&v| v as u8).collect(),
            };
            (name.clone(), a.dtype, a.shape.clone(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    run_dir::write_atomically(path, &safetensors::serialize(views, None)?)
}

/// The training settings of a reference `all_config.yaml` (HRM's and TRM's schemas).
#[derive(Debug, Deserialize)]
struct ReferenceTraining {
    global_batch_size: usize,
    lr: f64,
    lr_warmup_steps: u64,
    lr_min_ratio: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    puzzle_emb_lr: f64,
    puzzle_emb_weight_decay: f64,
    total_steps: Option<u64>,
    #[serde(default)]
    ema: bool,
    ema_rate: Option<f64>,
    arch: ReferenceArchLoss,
}

#[derive(Debug, Deserialize)]
struct ReferenceArchLoss {
    loss: ReferenceLoss,
}

#[derive(Debug, Deserialize)]
struct ReferenceLoss {
    loss_type: String,
}

/// One step's batch: `[B, seq]` inputs and labels (`-100` where ignored), `[B]` identifiers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub labels: Vec<i64>,
    pub ids: Vec<u32>,
}

/// A golden training case, read.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub checkpoint: Checkpoint,
    pub hyper: Hyper,
    /// The cosine schedule's length.
    pub total_steps: u64,
    pub batches: Vec<Batch>,
    /// `min_halt_steps` of every step, `[step][slot]`.
    pub min_halt_steps: Vec<Vec<u32>>,
}

fn int(a: &Array, name: &str, low: f64, high: f64) -> Result<Vec<i64>> {
    a.data
        .iter()
        .map(|&v| {
            if v.fract() != 0.0 || v < low || v > high {
                bail!("{name}: {v} is outside {low}..={high}");
            }
            Ok(v as i64)
        })
        .collect()
}

impl Case {
    /// Reads `CASE/{checkpoint|weights.safetensors, all_config.yaml, dataset.json,
    /// batches.safetensors}` and the exploration draws of `trace.safetensors`.
    pub fn load(dir: &Path) -> Result<Case> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let weights = ["checkpoint", "weights.safetensors"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .with_context(|| format!("{}: no checkpoint or weights.safetensors", dir.display()))?;
        let checkpoint = Checkpoint::load(&weights, &Overrides::default())
            .with_context(|| format!("{}: cannot read the case's checkpoint", dir.display()))?;
        let config_path = dir.join("all_config.yaml");
        let text =
            std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
        let reference: ReferenceTraining =
            serde_norway::from_str(&text).with_context(|| format!("{}", config_path.display()))?;
        let loss = match reference.arch.loss.loss_type.as_str() {
            "stablemax_cross_entropy" => LmLoss::Stablemax,
            "softmax_cross_entropy" => LmLoss::Softmax,
            other => bail!("{}: loss_type {other:?} is neither stablemax nor softmax", config_path.display()),
        };
        let total_steps = reference.total_steps.with_context(|| {
            format!("{}: no total_steps (the golden cases record the schedule's length)", config_path.display())
        })?;
        let hyper = Hyper {
            batch_size: reference.global_batch_size,
            lr: reference.lr,
            lr_warmup_steps: reference.lr_warmup_steps,
            lr_min_ratio: reference.lr_min_ratio,
            weight_decay: reference.weight_decay,
            puzzle_emb_lr: reference.puzzle_emb_lr,
            puzzle_emb_weight_decay: reference.puzzle_emb_weight_decay,
            beta1: reference.beta1,
            beta2: reference.beta2,
            loss,
            ema: if reference.ema { Some(reference.ema_rate.unwrap_or(0.999)) } else { None },
            ema_warmup: false,
        };
        let config = checkpoint.config;
        let (b, seq) = (hyper.batch_size, config.seq_len as usize);
        let batches_path = dir.join("batches.safetensors");
        let arrays = read_arrays(&batches_path)?;
        let mut batches = Vec::new();
        for i in 1.. {
            let key = |what: &str| format!("step{i}.{what}");
            let Some(inputs) = arrays.get(&key("inputs")) else { break };
            let get = |what: &str| {
                arrays.get(&key(what)).with_context(|| format!("{}: no {}", batches_path.display(), key(what)))
            };
            let (labels, ids) = (get("labels")?, get("puzzle_identifiers")?);
            if inputs.shape != [b, seq] || labels.shape != [b, seq] || ids.shape != [b] {
                bail!(
                    "{}: step {i} has inputs {:?}, labels {:?}, identifiers {:?}; the model and batch size want [{b}, {seq}]",
                    batches_path.display(),
                    inputs.shape,
                    labels.shape,
                    ids.shape
                );
            }
            let vocab = f64::from(config.vocab_size - 1);
            batches.push(Batch {
                inputs: int(inputs, &key("inputs"), 0.0, vocab)?.into_iter().map(|v| v as u32).collect(),
                labels: int(labels, &key("labels"), IGNORE_LABEL as f64, vocab)?
                    .into_iter()
                    .map(|v| if v < 0 { IGNORE_LABEL } else { v })
                    .collect(),
                ids: int(ids, &key("puzzle_identifiers"), 0.0, f64::from(config.num_puzzle_identifiers.max(1) - 1))?
                    .into_iter()
                    .map(|v| v as u32)
                    .collect(),
            });
        }
        if batches.is_empty() {
            bail!("{}: no step1.inputs", batches_path.display());
        }
        let min_halt_steps = Self::draws(dir, &config, batches.len(), b)?;
        Ok(Case { name, dir: dir.to_owned(), checkpoint, hyper, total_steps, batches, min_halt_steps })
    }

    /// The reference's `min_halt_steps` per step: recorded in the trace (torch's generator
    /// cannot be reproduced), or all zero where exploration is off and there is no trace.
    fn draws(dir: &Path, config: &hrm_runtime::Config, steps: usize, b: usize) -> Result<Vec<Vec<u32>>> {
        let trace = dir.join("trace.safetensors");
        if !trace.is_file() {
            if config.halt_exploration_prob > 0.0 {
                bail!(
                    "{}: halt_exploration_prob is {} but there is no trace.safetensors with the draws to replay",
                    dir.display(),
                    config.halt_exploration_prob
                );
            }
            return Ok(vec![vec![0; b]; steps]);
        }
        let arrays = read_arrays(&trace)?;
        let max = f64::from(config.halt_max_steps);
        (1..=steps)
            .map(|i| {
                let key = format!("step{i}.min_halt_steps");
                match arrays.get(&key) {
                    Some(a) if a.shape == [b] => Ok(int(a, &key, 0.0, max)?.into_iter().map(|v| v as u32).collect()),
                    Some(a) => bail!("{}: {key} has shape {:?}, want [{b}]", trace.display(), a.shape),
                    None if config.halt_exploration_prob == 0.0 => Ok(vec![0; b]),
                    None => bail!("{}: no {key} to replay", trace.display()),
                }
            })
            .collect()
    }

    fn seq(&self) -> usize {
        self.checkpoint.config.seq_len as usize
    }
}

/// The feed of one replayed step: the slot's row of the step's batch (the reference's
/// `torch.where(halted, new_batch, current_data)`) and the recorded draw.
struct Replayed<'a> {
    batch: &'a Batch,
    min_halt_steps: &'a [u32],
    seq: usize,
}

impl StepFeed for Replayed<'_> {
    fn example(&mut self, slot: usize) -> candle_core::Result<Example> {
        let rows = slot * self.seq..(slot + 1) * self.seq;
        Ok(Example {
            inputs: self.batch.inputs[rows.clone()].to_vec(),
            labels: self.batch.labels[rows].to_vec(),
            puzzle_id: self.batch.ids[slot],
        })
    }

    fn min_halt_steps(&mut self, slot: usize, _max: u32, _prob: f32) -> u32 {
        self.min_halt_steps.get(slot).copied().unwrap_or(0)
    }
}

/// What a step produced besides its tensors (`trace.json`'s `per_step` entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub step: usize,
    pub lr: f64,
    pub puzzle_emb_lr: f64,
    pub loss: f64,
    pub backward_loss: f64,
    pub metrics: StepMetrics,
    pub halted: Vec<bool>,
    pub steps: Vec<u32>,
    pub slot_source: Vec<u32>,
    pub min_halt_steps: Vec<u32>,
    /// One cell of every counted slot (Σ 1 / labelled cells): how far `accuracy` may move when
    /// a near-tie between two logits breaks the other way.
    pub accuracy_one_cell: f64,
}

/// `ACTLossHead`'s raw metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMetrics {
    pub count: u32,
    pub accuracy: f64,
    pub exact_accuracy: u32,
    pub q_halt_accuracy: u32,
    pub steps: u64,
    pub lm_loss: f64,
    pub q_halt_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub q_continue_loss: Option<f64>,
}

/// A replayed run: the trace, its per-step summaries, and the state after every step
/// (`param.<key>`, `adam.exp_avg.<key>`, `adam.exp_avg_sq.<key>`, `ema.<key>`).
pub struct Replay {
    pub teacher_forced: bool,
    pub trace: Arrays,
    pub per_step: Vec<StepSummary>,
    pub after: Vec<Arrays>,
}

fn reference_key(id: TensorId) -> String {
    format!("{REFERENCE_PREFIX}{id}")
}

/// Parameters in the reference's sense: `H_init` and `L_init` are buffers there.
fn is_parameter(id: TensorId) -> bool {
    !matches!(id, TensorId::HInit | TensorId::LInit)
}

/// Runs the case: free-running from the checkpoint, or teacher-forced from the reference's
/// states (which the case must then have).
pub fn replay(case: &Case, teacher_forced: bool, device: &Device) -> Result<Replay> {
    let states = if teacher_forced {
        let path = case.dir.join("states.safetensors");
        if !path.is_file() {
            bail!("{}: no states.safetensors, so no teacher forcing: replay it free-running", case.dir.display());
        }
        Some(read_arrays(&path)?)
    } else {
        None
    };
    let fresh = || -> Result<Learner> {
        let net = Net::from_checkpoint(&case.checkpoint, device)?;
        Ok(Learner::new(net, case.hyper.clone(), Some(case.total_steps))?)
    };
    let b = case.hyper.batch_size;
    let last = case.batches.len();
    let mut learner = fresh()?;
    let mut slot_source = vec![0u32; b];
    let mut out = Replay { teacher_forced, trace: Arrays::new(), per_step: Vec::new(), after: Vec::new() };
    for (index, batch) in case.batches.iter().enumerate() {
        let step = index + 1;
        if let (Some(states), true) = (&states, step > 1) {
            learner = fresh()?;
            load_state(&mut learner, states, step - 1, &mut slot_source)?;
        }
        for (source, &halted) in slot_source.iter_mut().zip(&learner.slots.halted) {
            if halted {
                *source = step as u32;
            }
        }
        let mut feed = Replayed { batch, min_halt_steps: &case.min_halt_steps[index], seq: case.seq() };
        let outcome = learner.train_batch(&mut feed)?;
        record(&mut out, &learner, &outcome, step, step == 1 || step == last, step == last, &slot_source)?;
    }
    Ok(out)
}

/// Puts the reference's state after step `k` into `learner`: parameters, Adam moments and
/// step count, average, and the carry with the slots' examples.
fn load_state(learner: &mut Learner, states: &Arrays, k: usize, slot_source: &mut [u32]) -> Result<()> {
    let device = learner.net.device.clone();
    let get = |what: &str| states.get(&format!("state{k}.{what}")).with_context(|| format!("no state{k}.{what}"));
    let shaped = |a: &Array, like: &Tensor, what: &str| -> Result<Tensor> {
        if a.shape != like.dims() {
            bail!("state{k}.{what} has shape {:?}, the model {:?}", a.shape, like.dims());
        }
        Ok(a.to_tensor(&device)?.to_dtype(like.dtype())?)
    };
    for (id, var) in learner.net.vars() {
        if is_parameter(id) {
            let what = format!("param.{}", reference_key(id));
            var.set(&shaped(get(&what)?, var.as_tensor(), &what)?)?;
        }
    }
    for (i, id) in learner.adam_ids.clone().into_iter().enumerate() {
        if !is_parameter(id) {
            continue;
        }
        for (moment, name) in [(&mut learner.adam.m[i], "exp_avg"), (&mut learner.adam.v[i], "exp_avg_sq")] {
            let what = format!("adam.{name}.{}", reference_key(id));
            *moment = shaped(get(&what)?, moment, &what)?;
        }
    }
    learner.adam.step = get("adam_step")?.data.first().copied().unwrap_or(0.0) as u64;
    if let Some(ema) = &mut learner.ema {
        for (id, avg) in ema.iter_mut() {
            if is_parameter(*id) {
                let what = format!("ema.{}", reference_key(*id));
                *avg = shaped(get(&what)?, avg, &what)?;
            }
        }
    }
    let carry = &learner.carry;
    learner.carry = Carry {
        z_h: shaped(get("carry.z_H")?, &carry.z_h, "carry.z_H")?,
        z_l: shaped(get("carry.z_L")?, &carry.z_l, "carry.z_L")?,
    };
    let slots = &mut learner.slots;
    let ints = |what: &str, len: usize| -> Result<Vec<i64>> {
        let a = get(what)?;
        if a.data.len() != len {
            bail!("state{k}.{what} has {} values, want {len}", a.data.len());
        }
        int(a, what, f64::from(i32::MIN), f64::from(i32::MAX))
    };
    slots.inputs = ints("carry.inputs", slots.inputs.len())?.into_iter().map(|v| v.max(0) as u32).collect();
    slots.labels = ints("carry.labels", slots.labels.len())?;
    slots.ids = ints("carry.puzzle_identifiers", slots.ids.len())?.into_iter().map(|v| v.max(0) as u32).collect();
    slots.steps = ints("carry.steps", slots.steps.len())?.into_iter().map(|v| v.max(0) as u32).collect();
    slots.halted = ints("carry.halted", slots.halted.len())?.into_iter().map(|v| v != 0).collect();
    let sources = ints("carry.slot_source", slot_source.len())?;
    for (s, v) in slot_source.iter_mut().zip(sources) {
        *s = v.max(0) as u32;
    }
    learner.step = k as u64;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record(
    out: &mut Replay,
    learner: &Learner,
    o: &StepOutcome,
    step: usize,
    full: bool,
    moments: bool,
    slot_source: &[u32],
) -> Result<()> {
    let t = &mut out.trace;
    let key = |what: &str| format!("step{step}.{what}");
    let b = o.halted.len();
    t.insert(key("loss"), Array::new(Dtype::F64, vec![1], vec![o.loss]));
    t.insert(key("logits"), Array::of_tensor(&o.logits)?);
    t.insert(key("q_halt_logits"), Array::f32s(vec![b], &o.q_halt));
    t.insert(key("q_continue_logits"), Array::f32s(vec![b], &o.q_continue));
    if let Some(target) = &o.target_q_continue {
        t.insert(key("target_q_continue"), Array::f32s(vec![b], target));
    }
    t.insert(key("halted"), Array::u8s(&o.halted));
    t.insert(key("steps"), Array::i32s(o.steps.iter().map(|&v| i64::from(v))));
    t.insert(key("slot_source"), Array::i32s(slot_source.iter().map(|&v| i64::from(v))));
    t.insert(key("min_halt_steps"), Array::i32s(o.min_halt_steps.iter().map(|&v| i64::from(v))));

    let mut after = Arrays::new();
    for (id, var) in learner.net.vars().filter(|(id, _)| is_parameter(*id)) {
        let param = Array::of_tensor(var.as_tensor())?;
        if full {
            t.insert(key(&format!("param.{}", reference_key(id))), param.clone());
            if let Some(g) = o.grads.get(var.as_tensor()).filter(|_| id != TensorId::PuzzleEmbedding) {
                t.insert(key(&format!("grad.{}", reference_key(id))), Array::of_tensor(g)?);
            }
        }
        after.insert(format!("param.{}", reference_key(id)), param);
    }
    for ((id, m), v) in learner.adam_ids.iter().zip(&learner.adam.m).zip(&learner.adam.v) {
        if !is_parameter(*id) {
            continue;
        }
        for (name, moment) in [("exp_avg", m), ("exp_avg_sq", v)] {
            let a = Array::of_tensor(moment)?;
            if moments {
                t.insert(key(&format!("adam.{name}.{}", reference_key(*id))), a.clone());
            }
            after.insert(format!("adam.{name}.{}", reference_key(*id)), a);
        }
    }
    for (id, avg) in learner.ema.iter().flatten().filter(|(id, _)| is_parameter(*id)) {
        let a = Array::of_tensor(avg)?;
        if moments {
            t.insert(key(&format!("ema.{}", reference_key(*id))), a.clone());
        }
        after.insert(format!("ema.{}", reference_key(*id)), a);
    }
    out.after.push(after);

    let labelled: Vec<f64> = learner
        .slots
        .labels
        .chunks(learner.net.config.seq_len as usize)
        .map(|row| row.iter().filter(|&&l| l != IGNORE_LABEL).count() as f64)
        .collect();
    let accuracy_one_cell = (0..b).filter(|&i| o.halted[i] && labelled[i] > 0.0).map(|i| 1.0 / labelled[i]).sum();
    out.per_step.push(StepSummary {
        step,
        lr: o.lr,
        puzzle_emb_lr: o.puzzle_emb_lr,
        loss: o.loss,
        backward_loss: o.loss / b as f64,
        metrics: StepMetrics {
            count: o.count,
            accuracy: o.accuracy,
            exact_accuracy: o.exact,
            q_halt_accuracy: o.q_halt_correct,
            steps: o.segments,
            lm_loss: o.lm_loss,
            q_halt_loss: o.q_halt_loss,
            q_continue_loss: o.q_continue_loss,
        },
        halted: o.halted.clone(),
        steps: o.steps.clone(),
        slot_source: slot_source.to_vec(),
        min_halt_steps: o.min_halt_steps.clone(),
        accuracy_one_cell,
    });
    Ok(())
}

/// One measured gap: passes when `value ≤ bound`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub step: usize,
    pub what: String,
    pub value: f64,
    pub bound: f64,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.value <= self.bound
    }
}

/// Every check of a replay against its case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub case: String,
    pub teacher_forced: bool,
    /// Where the free-running bounds came from.
    pub bounds: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The worst check of each kind, in first-seen order.
    pub fn worst(&self) -> Vec<&Check> {
        let mut order: Vec<&str> = Vec::new();
        let mut worst: HashMap<&str, &Check> = HashMap::new();
        for c in &self.checks {
            let ratio = |c: &Check| if c.bound > 0.0 { c.value / c.bound } else { c.value };
            match worst.get(c.what.as_str()) {
                Some(w) if ratio(w) >= ratio(c) => {}
                Some(_) => {
                    worst.insert(&c.what, c);
                }
                None => {
                    order.push(&c.what);
                    worst.insert(&c.what, c);
                }
            }
        }
        order.into_iter().filter_map(|w| worst.get(w).copied()).collect()
    }
}

/// The bounds a replay is held to (`golden-train/README.md`, "Tolerances").
#[derive(Debug, Clone)]
pub struct Bounds {
    pub loss_rel: f64,
    pub lm_loss_rel: f64,
    pub q_halt_loss_rel: f64,
    pub q_continue_loss_rel: f64,
    pub q_logit_abs: f64,
    pub target_q_abs: f64,
    pub logits_rel_to_max: f64,
    pub grad_rel_to_tensor_max: f64,
    pub exp_avg_rel_to_tensor_max: f64,
    pub exp_avg_sq_rel_to_tensor_max: f64,
    /// Elements further than 1 % of their learning rate from the reference's: the sign flips
    /// of near-zero gradients that AdamATan2 and sign-SGD turn into full steps.
    pub param_elements_off: f64,
    pub param_max_abs_rest: f64,
    pub ema_max_abs_rest: f64,
    /// `accuracy` may further differ by this many cells per counted slot.
    pub accuracy_cells: f64,
}

impl Bounds {
    /// The README's tolerances for a teacher-forced (or first) step. Parameters: a handful of
    /// flipped elements per step (the README measured at most 2).
    pub fn teacher_forced() -> Bounds {
        Bounds {
            loss_rel: 1e-5,
            lm_loss_rel: 5e-6,
            q_halt_loss_rel: 1e-4,
            q_continue_loss_rel: 5e-6,
            q_logit_abs: 5e-4,
            target_q_abs: 5e-6,
            logits_rel_to_max: 2e-4,
            grad_rel_to_tensor_max: 5e-4,
            exp_avg_rel_to_tensor_max: 5e-4,
            exp_avg_sq_rel_to_tensor_max: 1e-3,
            param_elements_off: 4.0,
            param_max_abs_rest: 1e-5,
            ema_max_abs_rest: 2e-6,
            accuracy_cells: 1.0,
        }
    }

    /// Free running: ten times the gaps the README measured for this case between the
    /// reference in f32 and in f64 (`tolerances.json`), never tighter than teacher forcing.
    pub fn free_running(measured: &serde_json::Value) -> Bounds {
        let tf = Bounds::teacher_forced();
        let m =
            |key: &str, floor: f64| measured.get(key).and_then(|v| v.as_f64()).map_or(floor, |v| (10.0 * v).max(floor));
        Bounds {
            loss_rel: m("loss_rel", tf.loss_rel),
            lm_loss_rel: m("lm_loss_rel", tf.lm_loss_rel),
            q_halt_loss_rel: m("q_halt_loss_rel", tf.q_halt_loss_rel),
            q_continue_loss_rel: m("q_continue_loss_rel", tf.q_continue_loss_rel),
            q_logit_abs: m("q_logit_abs", tf.q_logit_abs),
            target_q_abs: m("target_q_abs", tf.target_q_abs),
            logits_rel_to_max: m("logits_rel_to_max", tf.logits_rel_to_max),
            grad_rel_to_tensor_max: m("grad_rel_to_tensor_max", tf.grad_rel_to_tensor_max),
            exp_avg_rel_to_tensor_max: m("adam.exp_avg_rel_to_tensor_max", tf.exp_avg_rel_to_tensor_max),
            exp_avg_sq_rel_to_tensor_max: m("adam.exp_avg_sq_rel_to_tensor_max", tf.exp_avg_sq_rel_to_tensor_max),
            param_elements_off: m("param_elements_off", tf.param_elements_off),
            param_max_abs_rest: m("param_max_abs_rest", tf.param_max_abs_rest),
            ema_max_abs_rest: m("ema_max_abs_rest", tf.ema_max_abs_rest),
            // Where the reference's own f64 run moved `accuracy`, allow ten cells per slot.
            accuracy_cells: if m("accuracy_abs", 0.0) > 0.0 { 10.0 } else { tf.accuracy_cells },
        }
    }
}

impl Bounds {
    /// Every tolerance of a value times `factor` (not the counts).
    pub fn scaled(&self, factor: f64) -> Bounds {
        Bounds {
            loss_rel: self.loss_rel * factor,
            lm_loss_rel: self.lm_loss_rel * factor,
            q_halt_loss_rel: self.q_halt_loss_rel * factor,
            q_continue_loss_rel: self.q_continue_loss_rel * factor,
            q_logit_abs: self.q_logit_abs * factor,
            target_q_abs: self.target_q_abs * factor,
            logits_rel_to_max: self.logits_rel_to_max * factor,
            grad_rel_to_tensor_max: self.grad_rel_to_tensor_max * factor,
            exp_avg_rel_to_tensor_max: self.exp_avg_rel_to_tensor_max * factor,
            exp_avg_sq_rel_to_tensor_max: self.exp_avg_sq_rel_to_tensor_max * factor,
            param_max_abs_rest: self.param_max_abs_rest * factor,
            ema_max_abs_rest: self.ema_max_abs_rest * factor,
            ..self.clone()
        }
    }
}

fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        (a - b).abs() / b.abs()
    }
}

/// Infinite (so failing every bound) when the two differ in length.
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn rel_to_max(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let d = max_abs_diff(a, b);
    if scale == 0.0 {
        d
    } else {
        d / scale
    }
}

/// Compares a replay with its case's `trace.safetensors`, `trace.json` and (teacher-forced)
/// `states.safetensors`, within [`Bounds`].
pub fn compare(case: &Case, replay: &Replay) -> Result<Report> {
    let golden = read_arrays(&case.dir.join("trace.safetensors"))?;
    let json_path = case.dir.join("trace.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path).with_context(|| format!("cannot read {}", json_path.display()))?,
    )
    .with_context(|| format!("{}", json_path.display()))?;
    let per_step = json.get("per_step").and_then(|v| v.as_array()).context("trace.json has no per_step")?;
    let states = if replay.teacher_forced { Some(read_arrays(&case.dir.join("states.safetensors"))?) } else { None };
    let (base, origin) = if replay.teacher_forced {
        (Bounds::teacher_forced(), "teacher-forced tolerances of golden-train/README.md".to_string())
    } else {
        let tolerances = case.dir.parent().map(|p| p.join("tolerances.json")).filter(|p| p.is_file());
        let measured = tolerances
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get(&case.name).and_then(|c| c.get("float64_free_running")).cloned());
        match measured {
            Some(m) => {
                (Bounds::free_running(&m), format!("10x the case's float32-vs-float64 gaps ({})", "tolerances.json"))
            }
            None => (Bounds::teacher_forced(), "teacher-forced tolerances (no tolerances.json entry)".to_string()),
        }
    };
    let mut report =
        Report { case: case.name.clone(), teacher_forced: replay.teacher_forced, bounds: origin, checks: Vec::new() };
    let mut check = |step: usize, what: &str, value: f64, bound: f64| {
        report.checks.push(Check { step, what: what.to_string(), value, bound });
    };
    let last = replay.per_step.len();
    // Free running, a rounding-level sign flip (an element off by ~2·lr) perturbs every later
    // step; from then on the case's own float32-vs-float64 gaps no longer apply, and the bounds
    // grow tenfold.
    let mut perturbed_from = None;
    for (index, ours) in replay.per_step.iter().enumerate() {
        let step = index + 1;
        let bounds = if perturbed_from.is_some() { base.scaled(10.0) } else { base.clone() };
        let key = |what: &str| format!("step{step}.{what}");
        let get = |what: &str| golden.get(&key(what)).with_context(|| format!("the golden trace has no {}", key(what)));
        let ref_step = per_step.get(index).with_context(|| format!("trace.json has no step {step}"))?;
        let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
        let metrics = ref_step.get("metrics").context("trace.json step without metrics")?;

        // Decisions and counts: identical.
        let mismatches = |ours: &[f64], theirs: &[f64]| ours.iter().zip(theirs).filter(|(a, b)| a != b).count() as f64;
        let halted: Vec<f64> = ours.halted.iter().map(|&h| f64::from(u8::from(h))).collect();
        check(step, "halted differs (slots)", mismatches(&halted, &get("halted")?.data), 0.0);
        let steps: Vec<f64> = ours.steps.iter().map(|&s| f64::from(s)).collect();
        check(step, "steps differ (slots)", mismatches(&steps, &get("steps")?.data), 0.0);
        let source: Vec<f64> = ours.slot_source.iter().map(|&s| f64::from(s)).collect();
        check(step, "slot_source differs (slots)", mismatches(&source, &get("slot_source")?.data), 0.0);
        for (name, value) in [
            ("count", f64::from(ours.metrics.count)),
            ("exact_accuracy", f64::from(ours.metrics.exact_accuracy)),
            ("q_halt_accuracy", f64::from(ours.metrics.q_halt_accuracy)),
            ("steps", ours.metrics.steps as f64),
        ] {
            let theirs = num(metrics, name).with_context(|| format!("trace.json step {step}: no metrics.{name}"))?;
            check(step, &format!("metrics.{name} differs"), (value - theirs).abs(), 0.0);
        }
        let theirs = num(metrics, "accuracy").context("trace.json: no metrics.accuracy")?;
        check(
            step,
            "metrics.accuracy abs",
            (ours.metrics.accuracy - theirs).abs(),
            bounds.accuracy_cells * ours.accuracy_one_cell + 1e-6,
        );
        // (`puzzle_emb_lr` only where there is a sign-SGD.)
        for (name, lr) in [("lr", ours.lr), ("puzzle_emb_lr", ours.puzzle_emb_lr)] {
            if let Some(theirs) = num(ref_step, name) {
                check(step, &format!("{name} rel"), rel(lr, theirs), 1e-12);
            }
        }

        // Values: within the tolerances.
        check(
            step,
            "loss rel",
            rel(ours.loss, get("loss")?.data.first().copied().unwrap_or(f64::NAN)),
            bounds.loss_rel,
        );
        check(
            step,
            "lm_loss rel",
            rel(ours.metrics.lm_loss, num(metrics, "lm_loss").unwrap_or(f64::NAN)),
            bounds.lm_loss_rel,
        );
        check(
            step,
            "q_halt_loss rel",
            rel(ours.metrics.q_halt_loss, num(metrics, "q_halt_loss").unwrap_or(f64::NAN)),
            bounds.q_halt_loss_rel,
        );
        if let (Some(a), Some(b)) = (ours.metrics.q_continue_loss, num(metrics, "q_continue_loss")) {
            check(step, "q_continue_loss rel", rel(a, b), bounds.q_continue_loss_rel);
        }
        let t = &replay.trace;
        let q = max_abs_diff(&t[&key("q_halt_logits")].data, &get("q_halt_logits")?.data)
            .max(max_abs_diff(&t[&key("q_continue_logits")].data, &get("q_continue_logits")?.data));
        check(step, "q logits abs", q, bounds.q_logit_abs);
        if let (Some(a), Some(b)) = (t.get(&key("target_q_continue")), golden.get(&key("target_q_continue"))) {
            check(step, "target_q_continue abs", max_abs_diff(&a.data, &b.data), bounds.target_q_abs);
        }
        check(
            step,
            "logits abs / max",
            rel_to_max(&t[&key("logits")].data, &get("logits")?.data),
            bounds.logits_rel_to_max,
        );

        // Gradients (steps with a full record).
        for (name, theirs) in golden.range(key("grad.")..key("grad/")) {
            if let Some(a) = t.get(name) {
                check(step, "grads abs / tensor max", rel_to_max(&a.data, &theirs.data), bounds.grad_rel_to_tensor_max);
            }
        }

        // The state after the step: the trace's at steps 1 and 6, else the next teacher-forced
        // state.
        let reference_after: Option<(&Arrays, String)> =
            if golden.contains_key(&key(&format!("param.{REFERENCE_PREFIX}{}", TensorId::LmHead))) {
                Some((&golden, format!("step{step}.")))
            } else if let (Some(states), true) = (&states, step < last) {
                Some((states, format!("state{step}.")))
            } else {
                None
            };
        if let Some((source, prefix)) = reference_after {
            let theirs = |what: &str| source.get(&format!("{prefix}{what}"));
            let after = &replay.after[index];
            let (mut off, mut rest, mut ema_rest, mut unmatched) = (0usize, 0f64, 0f64, 0usize);
            for (name, ours) in after {
                let Some(reference) = theirs(name) else {
                    // The trimmed fixtures keep only the parameters and EMA after step 6.
                    unmatched += usize::from(name.starts_with("param."));
                    continue;
                };
                if let Some(param) = name.strip_prefix("param.") {
                    let lr =
                        if param.ends_with("puzzle_emb.weights") { case.hyper.puzzle_emb_lr } else { case.hyper.lr };
                    if ours.data.len() != reference.data.len() {
                        unmatched += 1;
                        continue;
                    }
                    for (a, b) in ours.data.iter().zip(&reference.data) {
                        let d = (a - b).abs();
                        if d > 0.01 * lr {
                            off += 1;
                        } else {
                            rest = rest.max(d);
                        }
                    }
                } else if name.starts_with("adam.exp_avg_sq.") {
                    check(
                        step,
                        "adam exp_avg_sq abs / tensor max",
                        rel_to_max(&ours.data, &reference.data),
                        bounds.exp_avg_sq_rel_to_tensor_max,
                    );
                } else if name.starts_with("adam.exp_avg.") {
                    check(
                        step,
                        "adam exp_avg abs / tensor max",
                        rel_to_max(&ours.data, &reference.data),
                        bounds.exp_avg_rel_to_tensor_max,
                    );
                } else if name.starts_with("ema.") {
                    // A flipped parameter reaches the average scaled by 1 − rate (2·lr·0.001),
                    // below the tolerance: every element is held to it.
                    ema_rest = ema_rest.max(max_abs_diff(&ours.data, &reference.data));
                }
            }
            check(step, "params without a reference of their shape", unmatched as f64, 0.0);
            check(step, "params: elements off by > 1% of lr", off as f64, bounds.param_elements_off);
            if off > 0 && !replay.teacher_forced && perturbed_from.is_none() {
                perturbed_from = Some(step + 1);
            }
            check(step, "params: other elements abs", rest, bounds.param_max_abs_rest);
            if case.hyper.ema.is_some() {
                check(step, "ema abs", ema_rest, bounds.ema_max_abs_rest);
            }
        }
    }
    if let Some(step) = perturbed_from.filter(|&s| s <= last) {
        report.bounds.push_str(&format!("; tenfold from step {step} on (a sign flip at step {})", step - 1));
    }
    Ok(report)
}

/// `hrm train --replay`: replays, writes `trace.safetensors`, `trace.json` and `report.json`
/// into `out`, prints the worst gap of every kind and fails when one is out of bounds.
pub fn run(case_dir: &Path, out: &Path, teacher_forced: bool, device: &Device) -> Result<Report> {
    let case = Case::load(case_dir)?;
    let c = case.checkpoint.config;
    eprintln!(
        "replaying {} ({}, {:?}, batch {}, {} steps{}): {}",
        case.name,
        match c.kind {
            ModelKind::Hrm => "HRM",
            ModelKind::Trm => "TRM",
        },
        case.hyper.loss,
        case.hyper.batch_size,
        case.batches.len(),
        if c.halt_rule == HaltRule::HaltOverContinue { ", Q-continue target" } else { "" },
        if teacher_forced { "teacher-forced" } else { "free-running" }
    );
    let replayed = replay(&case, teacher_forced, device)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_arrays(&out.join("trace.safetensors"), &replayed.trace)?;
    let json = serde_json::json!({
        "case": case.name,
        "teacher_forced": teacher_forced,
        "per_step": replayed.per_step,
    });
    run_dir::write_atomically(&out.join("trace.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    if !case.dir.join("trace.json").is_file() || !case.dir.join("trace.safetensors").is_file() {
        eprintln!("{}: no reference trace to compare with; wrote {}", case.dir.display(), out.display());
        return Ok(Report { case: case.name, teacher_forced, ..Default::default() });
    }
    let report = compare(&case, &replayed)?;
    run_dir::write_atomically(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    eprintln!("bounds: {}", report.bounds);
    for c in report.worst() {
        eprintln!(
            "  {:<40} worst {:>10.3e} (step {}) bound {:>9.2e} {}",
            c.what,
            c.value,
            c.step,
            c.bound,
            if c.passed() { "ok" } else { "FAILED" }
        );
    }
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("{}: {} checks out of bounds (report.json in {})", case.name, failures.len(), out.display());
    }
    eprintln!("{}: every step within bounds; wrote {}", case.name, out.display());
    Ok(report)
}
