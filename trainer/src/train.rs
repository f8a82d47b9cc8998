//! `hrm train`: the reference's training algorithm (deep supervision over ACT segments with the
//! carry detached between them, the one-step gradient, Q-learning of halting with exploration,
//! slot refill, Adam-atan2 + sign-SGD, warm-up + cosine, EMA for TRM), with a run directory that
//! survives being killed at any moment.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use hrm_runtime::blob::TensorId;
use hrm_runtime::{Config, HaltRule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{self, DataSettings, RunData};
use crate::eval::{self, CandlePredictor};
use crate::loss;
use crate::model::{Carry, GradMode, Net};
use crate::optim::{self, AdamAtan2, SignSgdRows};
use crate::presets::{self, Arch, Hyper, Preset};
use crate::run_dir;
use crate::tasks::TaskKind;

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// The task (a resumed run keeps its own).
    #[arg(long, value_enum, required_unless_present = "resume")]
    pub task: Option<TaskKind>,
    #[arg(long, value_enum, default_value = "hrm")]
    pub arch: Arch,
    #[arg(long, value_enum, default_value = "tiny")]
    pub preset: Preset,
    /// Training data: a `puzzle,solution` CSV (Sudoku), a maze file, an ARC task directory.
    /// Sudoku and mazes are generated when it is absent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out data for the periodic evaluation (ARC: the evaluation task directory).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Stop after this many minutes of training (in this invocation).
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Stop at this step (in total, counting a resumed run's earlier steps); also the length of
    /// the cosine schedule.
    #[arg(long)]
    pub steps: Option<u64>,
    /// The run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// `cpu`, `cuda` or `cuda:N` (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Segments per example at most (the preset's `halt_max_steps` otherwise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub halt_max_steps: Option<u32>,
    /// Evaluate every N steps (0: only at the end).
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    /// Examples in each evaluation.
    #[arg(long, default_value_t = 200)]
    pub eval_count: usize,
    /// Write a metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Write a checkpoint every so many minutes (and at the end).
    #[arg(long, default_value_t = 2.0)]
    pub checkpoint_minutes: f64,
    /// Sudoku: givens of generated puzzles, `MIN..=MAX`.
    #[arg(long, default_value = "30..=50", value_parser = parse_range)]
    pub givens: (usize, usize),
    /// Base puzzles (or mazes) generated for training; each is augmented at every draw.
    #[arg(long, default_value_t = 4000)]
    pub pool: usize,
    #[arg(long, default_value_t = 30)]
    pub maze_size: usize,
    /// ARC: augmented versions (puzzle ids) per task.
    #[arg(long, default_value_t = 8)]
    pub augmentations: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once("..=").or_else(|| s.split_once('-')).ok_or("expected MIN..=MAX")?;
    let a = a.trim().parse().map_err(|e| format!("{a}: {e}"))?;
    let b = b.trim().parse().map_err(|e| format!("{b}: {e}"))?;
    Ok((a, b))
}

/// Everything a run needs to continue exactly: saved as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub arch: Arch,
    pub preset: Preset,
    pub seed: u64,
    pub hyper: Hyper,
    pub data: DataSettings,
    /// Overrides the preset's `halt_max_steps`.
    #[serde(default)]
    pub halt_max_steps: Option<u32>,
    /// Length of the cosine schedule (`--steps`, or none: constant after warm-up).
    pub schedule_steps: Option<u64>,
    pub eval_every: u64,
    pub log_every: u64,
    pub checkpoint_minutes: f64,
}

impl Settings {
    /// The model of this run: the preset's, with the run's overrides.
    pub fn model_config(&self, shape: presets::DataShape) -> Config {
        let mut config = presets::model_config(self.arch, self.preset, shape);
        if let Some(n) = self.halt_max_steps {
            config.halt_max_steps = n;
        }
        config
    }
}

pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index: usize = s.strip_prefix("cuda:").map_or(Ok(0), str::parse).context("--device cuda:N")?;
            if !candle_core::utils::cuda_is_available() {
                bail!("this binary was built without CUDA: rebuild with `--features cuda` (see trainer/README.md)");
            }
            Ok(Device::new_cuda(index)?)
        }
        other => bail!("unknown device {other:?} (cpu, cuda or cuda:N)"),
    }
}

/// The batch slots: the example each holds, its segment count and whether it halted.
#[derive(Debug, Clone)]
struct Slots {
    inputs: Vec<u32>,
    labels: Vec<i64>,
    ids: Vec<u32>,
    steps: Vec<u32>,
    halted: Vec<bool>,
}

/// Sums since the last metrics line.
#[derive(Debug, Default, Clone)]
struct Accum {
    steps: u64,
    loss: f64,
    lm_loss: f64,
    q_loss: f64,
    halted: u64,
    accuracy: f64,
    exact: u64,
    segments: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MetricsLine {
    pub step: u64,
    pub loss: f64,
    pub lm_loss: f64,
    pub q_loss: f64,
    pub lr: f64,
    /// Cell accuracy of the sequences that halted in these steps.
    pub accuracy: f64,
    pub exact_accuracy: f64,
    pub mean_segments: f64,
    pub steps_per_s: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_exact_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_cell_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_blank_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_mean_segments: Option<f64>,
}

/// A training run in memory.
pub struct Trainer {
    pub settings: Settings,
    pub net: Net,
    pub data: RunData,
    adam: AdamAtan2,
    /// Names of the variables `adam` updates, in its order.
    adam_ids: Vec<TensorId>,
    sign: Option<SignSgdRows>,
    ema: Option<Vec<(TensorId, Tensor)>>,
    rng: ChaCha8Rng,
    slots: Slots,
    carry: Carry,
    pub step: u64,
    /// Training seconds of earlier invocations.
    pub elapsed_before: f64,
}

impl Trainer {
    pub fn new(settings: Settings, device: &Device) -> Result<Trainer> {
        let data = data::build(&settings.data, settings.seed)?;
        let config = settings.model_config(data.shape);
        config.validate().map_err(|e| anyhow::anyhow!("model configuration: {e}"))?;
        let mut init_rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x1417);
        let net = Net::init(config, &mut init_rng, device)?;
        Self::assemble(settings, net, data)
    }

    fn assemble(settings: Settings, net: Net, data: RunData) -> Result<Trainer> {
        let h = &settings.hyper;
        let (mut adam_vars, mut adam_ids) = (Vec::new(), Vec::new());
        let mut sign = None;
        for (id, var) in net.vars() {
            if id == TensorId::PuzzleEmbedding {
                sign = Some(SignSgdRows { var: var.clone(), weight_decay: h.puzzle_emb_weight_decay });
            } else {
                adam_vars.push(var.clone());
                adam_ids.push(id);
            }
        }
        let adam = AdamAtan2::new(adam_vars, h.beta1, h.beta2, h.weight_decay)?;
        let ema = match h.ema {
            Some(_) => Some(net.vars().map(|(id, v)| Ok((id, v.as_tensor().copy()?))).collect::<Result<Vec<_>>>()?),
            None => None,
        };
        let b = h.batch_size;
        let seq = net.config.seq_len as usize;
        let slots = Slots {
            inputs: vec![0; b * seq],
            labels: vec![0; b * seq],
            ids: vec![0; b],
            steps: vec![0; b],
            halted: vec![true; b],
        };
        let carry = net.initial_carry(b)?;
        let rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x7a11_u64);
        Ok(Trainer { settings, net, data, adam, adam_ids, sign, ema, rng, slots, carry, step: 0, elapsed_before: 0.0 })
    }

    pub fn config(&self) -> &Config {
        &self.net.config
    }

    fn learning_rates(&self) -> (f64, f64) {
        let h = &self.settings.hyper;
        let total = self.settings.schedule_steps.unwrap_or(u64::MAX);
        let min_ratio = if self.settings.schedule_steps.is_some() { h.lr_min_ratio } else { 1.0 };
        let scale = optim::learning_rate(self.step, 1.0, h.lr_warmup_steps, total, min_ratio);
        (h.lr * scale, h.puzzle_emb_lr * scale)
    }

    /// One optimiser step over one segment of every slot.
    fn train_step(&mut self, acc: &mut Accum) -> Result<f64> {
        let c = self.net.config;
        let b = self.settings.hyper.batch_size;
        let seq = c.seq_len as usize;
        let dev = self.net.device.clone();

        // Halted slots take fresh examples and restart from the initial carry.
        let reset: Vec<u8> = self.slots.halted.iter().map(|&h| u8::from(h)).collect();
        for i in 0..b {
            if self.slots.halted[i] {
                let e = self.data.source.sample(&mut self.rng);
                self.slots.inputs[i * seq..(i + 1) * seq].copy_from_slice(&e.inputs);
                self.slots.labels[i * seq..(i + 1) * seq].copy_from_slice(&e.labels);
                self.slots.ids[i] = e.puzzle_id;
                self.slots.steps[i] = 0;
            }
        }
        let carry = self.net.reset_carry(&self.carry, &Tensor::from_vec(reset, b, &dev)?)?;
        let inputs = Tensor::from_slice(&self.slots.inputs, (b, seq), &dev)?;
        let labels = Tensor::from_slice(&self.slots.labels, (b, seq), &dev)?;
        let ids = Tensor::from_slice(&self.slots.ids, b, &dev)?;

        let x = self.net.embed(&inputs, &ids, true)?;
        let out = self.net.segment(&carry, &x, GradMode::OneStep)?;
        let q_halt = out.q_halt.to_vec1::<f32>()?;
        let q_continue = out.q_continue.to_vec1::<f32>()?;

        // Halting, with exploration: a minimum number of segments drawn now and then.
        let max = c.halt_max_steps;
        let mut is_last = vec![false; b];
        let mut halted = vec![false; b];
        for i in 0..b {
            self.slots.steps[i] += 1;
            is_last[i] = self.slots.steps[i] >= max;
            let mut h = is_last[i];
            if max > 1 {
                h |= match c.halt_rule {
                    HaltRule::HaltOverContinue => q_halt[i] > q_continue[i],
                    HaltRule::HaltPositive => q_halt[i] > 0.0,
                };
                let min_steps = if self.rng.random::<f64>() < f64::from(c.halt_exploration_prob) {
                    self.rng.random_range(2..=max)
                } else {
                    0
                };
                h &= self.slots.steps[i] >= min_steps;
            }
            halted[i] = h;
        }

        let scored = loss::score(&out.logits, &labels)?;
        let lm = loss::lm_loss(&out.logits, &labels, self.settings.hyper.loss, &scored.counts)?;
        let seq_correct = scored.seq_correct.to_dtype(DType::F32)?;
        let q_halt_loss = loss::bce_with_logits_sum(&out.q_halt, &seq_correct)?;
        let mut q_loss = q_halt_loss;
        if c.halt_rule == HaltRule::HaltOverContinue {
            // Target of q_continue: the next segment's value, from one more segment without
            // gradient.
            let next = self.net.segment(
                &Carry { z_h: out.carry.z_h.detach(), z_l: out.carry.z_l.detach() },
                &x.detach(),
                GradMode::None,
            )?;
            let nh = next.q_halt.to_vec1::<f32>()?;
            let nc = next.q_continue.to_vec1::<f32>()?;
            let target: Vec<f32> = (0..b)
                .map(|i| {
                    let v = if is_last[i] { nh[i] } else { nh[i].max(nc[i]) };
                    1.0 / (1.0 + (-v).exp())
                })
                .collect();
            let target = Tensor::from_vec(target, b, &dev)?;
            q_loss = (q_loss + loss::bce_with_logits_sum(&out.q_continue, &target)?)?;
        }
        let total = ((&lm + (&q_loss * 0.5)?)? / b as f64)?;
        let grads = total.backward()?;
        let (lr, puzzle_lr) = self.learning_rates();
        self.adam.step(&grads, lr)?;
        if let Some(sign) = &self.sign {
            let mut used = vec![0f32; c.num_puzzle_identifiers as usize];
            for &id in &self.slots.ids {
                used[id as usize] = 1.0;
            }
            let used = Tensor::from_vec(used, (c.num_puzzle_identifiers as usize, 1), &dev)?;
            sign.step(&grads, &used, puzzle_lr)?;
        }
        if let (Some(ema), Some(rate)) = (&mut self.ema, self.settings.hyper.ema) {
            // Warm-up of the average (as TensorFlow's `num_updates`): a 0.999 average of a short
            // run would still be mostly the initial weights.
            let rate = rate.min((1.0 + self.step as f64) / (10.0 + self.step as f64));
            for (id, avg) in ema.iter_mut() {
                let p = self.net.var(*id)?.as_tensor();
                *avg = ((&*avg * rate)? + (p * (1.0 - rate))?)?;
            }
        }
        self.carry = Carry { z_h: out.carry.z_h.detach(), z_l: out.carry.z_l.detach() };

        // Metrics over the sequences that halted.
        let counts = scored.counts.to_vec1::<f32>()?;
        let correct = scored.correct.to_vec1::<f32>()?;
        for i in 0..b {
            if halted[i] && counts[i] > 0.0 {
                acc.halted += 1;
                acc.accuracy += f64::from(correct[i] / counts[i]);
                acc.exact += u64::from(correct[i] == counts[i]);
                acc.segments += u64::from(self.slots.steps[i]);
            }
        }
        acc.steps += 1;
        acc.loss += f64::from(total.to_scalar::<f32>()?);
        acc.lm_loss += f64::from(lm.to_scalar::<f32>()?) / b as f64;
        acc.q_loss += f64::from(q_loss.to_scalar::<f32>()?) / b as f64;
        self.slots.halted = halted;
        self.step += 1;
        Ok(lr)
    }

    /// A model with the weights to evaluate and save: the EMA for TRM, else the current ones.
    pub fn eval_net(&self) -> Result<Net> {
        let ck = self.net.to_checkpoint()?;
        let net = Net::from_checkpoint(&ck, &self.net.device)?;
        if let Some(ema) = &self.ema {
            for (id, avg) in ema {
                net.var(*id)?.set(avg)?;
            }
        }
        Ok(net)
    }

    pub fn evaluate(&self) -> Result<eval::Report> {
        let net = self.eval_net()?;
        let mut predictor = CandlePredictor { net: &net };
        let batch = self.settings.hyper.batch_size.max(16);
        Ok(eval::evaluate(&mut predictor, &self.data.eval, hrm_runtime::Halting::Fixed, batch, |_| {})?.0)
    }

    /// Writes the model files and then the training state, each atomically; `elapsed_now` is
    /// the training time of this invocation so far.
    pub fn checkpoint(&self, dir: &Path, elapsed_now: f64) -> Result<()> {
        let net = self.eval_net()?;
        run_dir::save_model(dir, &net)?;
        if let Some(ids) = &self.data.arc_ids {
            ids.save(&dir.join("identifiers.json"))?;
        }
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (id, var) in self.net.vars() {
            tensors.push((format!("param.{id}"), var.as_tensor().clone()));
        }
        for ((id, m), v) in self.adam_ids.iter().zip(&self.adam.m).zip(&self.adam.v) {
            tensors.push((format!("adam_m.{id}"), m.clone()));
            tensors.push((format!("adam_v.{id}"), v.clone()));
        }
        if let Some(ema) = &self.ema {
            for (id, t) in ema {
                tensors.push((format!("ema.{id}"), t.clone()));
            }
        }
        tensors.push(("carry.z_h".into(), self.carry.z_h.clone()));
        tensors.push(("carry.z_l".into(), self.carry.z_l.clone()));
        let dev = Device::Cpu;
        tensors.push(("slots.inputs".into(), Tensor::from_slice(&self.slots.inputs, self.slots.inputs.len(), &dev)?));
        tensors.push(("slots.labels".into(), Tensor::from_slice(&self.slots.labels, self.slots.labels.len(), &dev)?));
        tensors.push(("slots.ids".into(), Tensor::from_slice(&self.slots.ids, self.slots.ids.len(), &dev)?));
        tensors.push(("slots.steps".into(), Tensor::from_slice(&self.slots.steps, self.slots.steps.len(), &dev)?));
        let halted: Vec<u8> = self.slots.halted.iter().map(|&h| u8::from(h)).collect();
        tensors.push(("slots.halted".into(), Tensor::from_vec(halted, self.slots.halted.len(), &dev)?));
        let meta = StateMeta {
            step: self.step,
            adam_step: self.adam.step,
            elapsed_s: self.elapsed_before + elapsed_now,
            rng_seed: self.rng.get_seed(),
            rng_stream: self.rng.get_stream(),
            rng_word_pos: self.rng.get_word_pos(),
        };
        let mut metadata = HashMap::new();
        metadata.insert("state".to_string(), serde_json::to_string(&meta)?);
        run_dir::write_tensors(&dir.join("train_state.safetensors"), &tensors, Some(metadata))
    }

    /// Restores a run from its directory.
    pub fn resume(dir: &Path, device: &Device) -> Result<Trainer> {
        let settings: Settings = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json"))
                .with_context(|| format!("{}: no config.json", dir.display()))?,
        )
        .with_context(|| format!("{}/config.json", dir.display()))?;
        let data = data::build(&settings.data, settings.seed)?;
        let config = settings.model_config(data.shape);
        let (tensors, metadata) = run_dir::read_tensors(&dir.join("train_state.safetensors"), device)?;
        let meta: StateMeta = serde_json::from_str(metadata.get("state").context("train_state has no state record")?)?;
        let get = |name: &str| tensors.get(name).with_context(|| format!("train_state lacks {name}"));
        let mut params = Vec::new();
        for (id, _) in Net::parameter_ids(&config) {
            let t = get(&format!("param.{id}"))?.to_dtype(DType::F32)?;
            let data = t.flatten_all()?.to_vec1::<f32>()?;
            params.push((id.to_string(), hrm_convert::HostTensor { shape: t.dims().to_vec(), data }));
        }
        let ck = hrm_convert::Checkpoint::from_tensors(config, params)?;
        let net = Net::from_checkpoint(&ck, device)?;
        let mut t = Self::assemble(settings, net, data)?;
        for (i, id) in t.adam_ids.clone().iter().enumerate() {
            t.adam.m[i] = get(&format!("adam_m.{id}"))?.clone();
            t.adam.v[i] = get(&format!("adam_v.{id}"))?.clone();
        }
        t.adam.step = meta.adam_step;
        if let Some(ema) = &mut t.ema {
            for (id, avg) in ema.iter_mut() {
                *avg = get(&format!("ema.{id}"))?.clone();
            }
        }
        t.carry = Carry { z_h: get("carry.z_h")?.clone(), z_l: get("carry.z_l")?.clone() };
        t.slots.inputs = get("slots.inputs")?.to_vec1::<u32>()?;
        t.slots.labels = get("slots.labels")?.to_vec1::<i64>()?;
        t.slots.ids = get("slots.ids")?.to_vec1::<u32>()?;
        t.slots.steps = get("slots.steps")?.to_vec1::<u32>()?;
        t.slots.halted = get("slots.halted")?.to_vec1::<u8>()?.into_iter().map(|h| h != 0).collect();
        t.step = meta.step;
        t.elapsed_before = meta.elapsed_s;
        let mut rng = ChaCha8Rng::from_seed(meta.rng_seed);
        rng.set_stream(meta.rng_stream);
        rng.set_word_pos(meta.rng_word_pos);
        t.rng = rng;
        Ok(t)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateMeta {
    step: u64,
    adam_step: u64,
    elapsed_s: f64,
    rng_seed: [u8; 32],
    rng_stream: u64,
    rng_word_pos: u128,
}

/// The `hrm train` command.
pub fn run(args: &TrainArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let dir = &args.out;
    let state = dir.join("train_state.safetensors");
    let mut trainer = if args.resume {
        if !state.is_file() {
            bail!("{}: nothing to resume (no train_state.safetensors)", dir.display());
        }
        let t = Trainer::resume(dir, &device)?;
        run_dir::truncate_metrics(&dir.join("metrics.jsonl"), t.step)?;
        eprintln!("resuming {} at step {}", dir.display(), t.step);
        t
    } else {
        if state.exists() {
            bail!("{} already holds a run: pass --resume to continue it, or choose another --out", dir.display());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let task = args.task.context("--task is required for a new run")?;
        let mut hyper = presets::hyper(task, args.arch, args.preset);
        if let Some(b) = args.batch_size {
            hyper.batch_size = b;
        }
        if let Some(lr) = args.lr {
            hyper.lr = lr;
        }
        let settings = Settings {
            arch: args.arch,
            preset: args.preset,
            seed: args.seed,
            hyper,
            data: DataSettings {
                task,
                data: args.data.clone(),
                eval_data: args.eval_data.clone(),
                givens: args.givens,
                pool: args.pool,
                maze_size: args.maze_size,
                augmentations: args.augmentations,
                eval_count: args.eval_count,
            },
            halt_max_steps: args.halt_max_steps,
            schedule_steps: args.steps,
            eval_every: args.eval_every,
            log_every: args.log_every.max(1),
            checkpoint_minutes: args.checkpoint_minutes,
        };
        eprintln!("preparing data ({task:?}) ...");
        let t = Trainer::new(settings, &device)?;
        run_dir::write_atomically(&dir.join("config.json"), serde_json::to_string_pretty(&t.settings)?.as_bytes())?;
        let _ = std::fs::remove_file(dir.join("metrics.jsonl"));
        t
    };
    if args.steps.is_none() && args.max_minutes.is_none() {
        bail!("give --steps N or --max-minutes M (or both)");
    }
    let c = *trainer.config();
    eprintln!(
        "{:?} {:?}: h {} heads {} layers H{}/L{} cycles {}/{} segments {} — {} parameters, batch {}",
        trainer.settings.arch,
        trainer.settings.preset,
        c.hidden_size,
        c.num_heads,
        c.h_module_layers(),
        c.l_layers,
        c.h_cycles,
        c.l_cycles,
        c.halt_max_steps,
        trainer.net.vars().map(|(_, v)| v.as_tensor().elem_count()).sum::<usize>(),
        trainer.settings.hyper.batch_size
    );

    let started = Instant::now();
    let budget = args.max_minutes.map(|m| m * 60.0);
    let progress = if args.quiet { indicatif::ProgressBar::hidden() } else { progress_bar(args, trainer.step) };
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("metrics.jsonl"))
        .with_context(|| format!("cannot write {}/metrics.jsonl", dir.display()))?;
    let mut acc = Accum::default();
    let mut window = Instant::now();
    let mut last_checkpoint = Instant::now();
    // A resumed run that had already written its last lines must not write them twice.
    let mut last_line = if args.resume { run_dir::read_metrics(&dir.join("metrics.jsonl"))?.pop() } else { None };
    loop {
        let elapsed = started.elapsed().as_secs_f64();
        if args.steps.is_some_and(|n| trainer.step >= n) || budget.is_some_and(|b| elapsed >= b) {
            break;
        }
        let lr = trainer.train_step(&mut acc)?;
        let s = &trainer.settings;
        let log_now = trainer.step % s.log_every == 0;
        let eval_now = s.eval_every > 0 && trainer.step % s.eval_every == 0;
        if log_now || eval_now {
            let secs = window.elapsed().as_secs_f64();
            let n = acc.steps.max(1) as f64;
            let halted = acc.halted.max(1) as f64;
            let mut line = MetricsLine {
                step: trainer.step,
                loss: acc.loss / n,
                lm_loss: acc.lm_loss / n,
                q_loss: acc.q_loss / n,
                lr,
                accuracy: acc.accuracy / halted,
                exact_accuracy: acc.exact as f64 / halted,
                mean_segments: acc.segments as f64 / halted,
                steps_per_s: acc.steps as f64 / secs.max(1e-9),
                elapsed_s: trainer.elapsed_before + started.elapsed().as_secs_f64(),
                ..Default::default()
            };
            if eval_now {
                let r = trainer.evaluate()?;
                line.eval_exact_accuracy = Some(r.exact_accuracy);
                line.eval_cell_accuracy = Some(r.cell_accuracy);
                line.eval_blank_accuracy = Some(r.blank_accuracy);
                line.eval_mean_segments = Some(r.mean_segments);
            }
            writeln!(metrics, "{}", serde_json::to_string(&line)?)?;
            metrics.flush()?;
            progress.set_message(format!(
                "loss {:.3} acc {:.3} exact {:.3}{}",
                line.loss,
                line.accuracy,
                line.exact_accuracy,
                line.eval_exact_accuracy.map(|e| format!(" eval exact {e:.3}")).unwrap_or_default()
            ));
            last_line = Some(line);
            acc = Accum::default();
            window = Instant::now();
        }
        match (args.steps, budget) {
            (Some(_), _) => progress.set_position(trainer.step),
            (None, Some(_)) => progress.set_position(started.elapsed().as_secs()),
            _ => {}
        }
        if last_checkpoint.elapsed().as_secs_f64() >= trainer.settings.checkpoint_minutes * 60.0 {
            trainer.checkpoint(dir, started.elapsed().as_secs_f64())?;
            last_checkpoint = Instant::now();
        }
    }
    progress.finish_and_clear();
    // Final evaluation, checkpoint and plot.
    let report = trainer.evaluate()?;
    let final_line = MetricsLine {
        step: trainer.step,
        eval_exact_accuracy: Some(report.exact_accuracy),
        eval_cell_accuracy: Some(report.cell_accuracy),
        eval_blank_accuracy: Some(report.blank_accuracy),
        eval_mean_segments: Some(report.mean_segments),
        elapsed_s: trainer.elapsed_before + started.elapsed().as_secs_f64(),
        ..last_line.clone().unwrap_or_default()
    };
    if last_line.as_ref().is_none_or(|l| l.step != trainer.step || l.eval_exact_accuracy.is_none()) {
        writeln!(metrics, "{}", serde_json::to_string(&final_line)?)?;
    }
    trainer.checkpoint(dir, started.elapsed().as_secs_f64())?;
    let lines = run_dir::read_metrics(&dir.join("metrics.jsonl"))?;
    if let Err(e) = crate::plot::plot(&lines, &dir.join("metrics.png")) {
        eprintln!("warning: no plot: {e:#}");
    }
    eprintln!(
        "step {}: eval exact {:.3}, cell {:.3}, blank cells {:.3}, {:.2} segments; saved {}",
        trainer.step,
        report.exact_accuracy,
        report.cell_accuracy,
        report.blank_accuracy,
        report.mean_segments,
        dir.display()
    );
    Ok(())
}

fn progress_bar(args: &TrainArgs, start: u64) -> indicatif::ProgressBar {
    let style = |template: &str| {
        indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    };
    match (args.steps, args.max_minutes) {
        (Some(n), _) => {
            let p = indicatif::ProgressBar::new(n).with_style(style("{bar:30} step {pos}/{len} {elapsed}<{eta} {msg}"));
            p.set_position(start);
            p
        }
        (None, Some(m)) => {
            indicatif::ProgressBar::new((m * 60.0) as u64).with_style(style("{bar:30} {pos}/{len} s {msg}"))
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}
