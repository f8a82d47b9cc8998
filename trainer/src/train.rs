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
use hrm_runtime::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{self, DataSettings, RunData};
use crate::eval::{self, CandlePredictor};
use crate::learner::{Learner, StepFeed};
use crate::model::{Carry, Net};
use crate::presets::{self, Arch, Hyper, Preset};
use crate::run_dir;
use crate::tasks::{Example, TaskKind};

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// The task (a resumed run keeps its own).
    #[arg(long, value_enum, required_unless_present_any = ["resume", "replay"])]
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
    /// Replay a golden training case of the reference (`../shared/golden-train/CASE`): its
    /// checkpoint, hyper-parameters, batches and exploration draws; writes `trace.safetensors`
    /// (the trace's names), `trace.json` and `report.json` into --out and fails when a step
    /// leaves the README's tolerances.
    #[arg(long, value_name = "CASE_DIR", conflicts_with = "resume")]
    pub replay: Option<PathBuf>,
    /// With --replay: start every step from the reference's state after the previous one
    /// (the case's `states.safetensors`).
    #[arg(long, requires = "replay")]
    pub teacher_forced: bool,
    /// Start from the weights of this checkpoint (a run directory, `models/sudoku`, or an
    /// official checkpoint with its `all_config.yaml`) instead of random ones: fine-tuning.
    /// Its architecture must be the one --arch and --preset give for the task (its segment
    /// count may differ: --halt-max-steps sets it); the optimiser and schedule start afresh.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with_all = ["resume", "replay"])]
    pub init: Option<PathBuf>,
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
    /// The checkpoint the weights started from (`--init`), for the record; a resumed run reads
    /// its weights from `train_state.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
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

/// A training run in memory: the learner, the data it draws from and its random numbers.
pub struct Trainer {
    pub settings: Settings,
    pub learner: Learner,
    pub data: RunData,
    rng: ChaCha8Rng,
    /// Training seconds of earlier invocations.
    pub elapsed_before: f64,
}

/// `hrm train`'s feed: examples sampled from the run's data, exploration drawn from its RNG.
struct Sampler<'a> {
    data: &'a mut RunData,
    rng: &'a mut ChaCha8Rng,
}

impl StepFeed for Sampler<'_> {
    fn example(&mut self, _slot: usize) -> candle_core::Result<Example> {
        Ok(self.data.source.sample(self.rng))
    }

    fn min_halt_steps(&mut self, _slot: usize, max: u32, prob: f32) -> u32 {
        if self.rng.random::<f64>() < f64::from(prob) {
            self.rng.random_range(2..=max)
        } else {
            0
        }
    }
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

    /// A new run whose weights are those of the checkpoint at `init` (fine-tuning). The
    /// checkpoint's architecture must be this run's, except for the segment count.
    pub fn from_checkpoint(settings: Settings, init: &Path, device: &Device) -> Result<Trainer> {
        let data = data::build(&settings.data, settings.seed)?;
        let config = settings.model_config(data.shape);
        config.validate().map_err(|e| anyhow::anyhow!("model configuration: {e}"))?;
        let mut ck = hrm_convert::Checkpoint::load(init, &hrm_convert::Overrides::default())
            .with_context(|| format!("--init {}: cannot read the checkpoint", init.display()))?;
        let found = ck.config;
        ck.config.halt_max_steps = config.halt_max_steps;
        ck.config.halt_exploration_prob = config.halt_exploration_prob;
        if ck.config != config {
            bail!(
                "--init {}: its architecture is not the one of --arch {:?} --preset {:?} for this task\n  \
                 checkpoint: {found:?}\n  this run:   {config:?}",
                init.display(),
                settings.arch,
                settings.preset
            );
        }
        let net = Net::from_checkpoint(&ck, device)?;
        Self::assemble(settings, net, data)
    }

    fn assemble(settings: Settings, net: Net, data: RunData) -> Result<Trainer> {
        let learner = Learner::new(net, settings.hyper.clone(), settings.schedule_steps)?;
        let rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x7a11_u64);
        Ok(Trainer { settings, learner, data, rng, elapsed_before: 0.0 })
    }

    pub fn config(&self) -> &Config {
        &self.learner.net.config
    }

    /// Steps taken.
    pub fn step(&self) -> u64 {
        self.learner.step
    }

    /// One optimiser step; adds its figures to `acc` and returns its learning rate.
    fn train_step(&mut self, acc: &mut Accum) -> Result<f64> {
        let mut feed = Sampler { data: &mut self.data, rng: &mut self.rng };
        let out = self.learner.train_batch(&mut feed)?;
        let b = self.settings.hyper.batch_size as f64;
        acc.halted += u64::from(out.count);
        acc.accuracy += out.accuracy;
        acc.exact += u64::from(out.exact);
        acc.segments += out.segments;
        acc.steps += 1;
        acc.loss += out.loss / b;
        acc.lm_loss += out.lm_loss / b;
        acc.q_loss += (out.q_halt_loss + out.q_continue_loss.unwrap_or(0.0)) / b;
        Ok(out.lr)
    }

    /// A model with the weights to evaluate and save: the EMA for TRM, else the current ones.
    pub fn eval_net(&self) -> Result<Net> {
        Ok(self.learner.eval_net()?)
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
        for (id, var) in self.learner.net.vars() {
            tensors.push((format!("param.{id}"), var.as_tensor().clone()));
        }
        for ((id, m), v) in self.learner.adam_ids.iter().zip(&self.learner.adam.m).zip(&self.learner.adam.v) {
            tensors.push((format!("adam_m.{id}"), m.clone()));
            tensors.push((format!("adam_v.{id}"), v.clone()));
        }
        if let Some(ema) = &self.learner.ema {
            for (id, t) in ema {
                tensors.push((format!("ema.{id}"), t.clone()));
            }
        }
        tensors.push(("carry.z_h".into(), self.learner.carry.z_h.clone()));
        tensors.push(("carry.z_l".into(), self.learner.carry.z_l.clone()));
        let dev = Device::Cpu;
        tensors.push((
            "slots.inputs".into(),
            Tensor::from_slice(&self.learner.slots.inputs, self.learner.slots.inputs.len(), &dev)?,
        ));
        tensors.push((
            "slots.labels".into(),
            Tensor::from_slice(&self.learner.slots.labels, self.learner.slots.labels.len(), &dev)?,
        ));
        tensors.push((
            "slots.ids".into(),
            Tensor::from_slice(&self.learner.slots.ids, self.learner.slots.ids.len(), &dev)?,
        ));
        tensors.push((
            "slots.steps".into(),
            Tensor::from_slice(&self.learner.slots.steps, self.learner.slots.steps.len(), &dev)?,
        ));
        let halted: Vec<u8> = self.learner.slots.halted.iter().map(|&h| u8::from(h)).collect();
        tensors.push(("slots.halted".into(), Tensor::from_vec(halted, self.learner.slots.halted.len(), &dev)?));
        let meta = StateMeta {
            step: self.learner.step,
            adam_step: self.learner.adam.step,
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
        for (i, id) in t.learner.adam_ids.clone().iter().enumerate() {
            t.learner.adam.m[i] = get(&format!("adam_m.{id}"))?.clone();
            t.learner.adam.v[i] = get(&format!("adam_v.{id}"))?.clone();
        }
        t.learner.adam.step = meta.adam_step;
        if let Some(ema) = &mut t.learner.ema {
            for (id, avg) in ema.iter_mut() {
                *avg = get(&format!("ema.{id}"))?.clone();
            }
        }
        t.learner.carry = Carry { z_h: get("carry.z_h")?.clone(), z_l: get("carry.z_l")?.clone() };
        t.learner.slots.inputs = get("slots.inputs")?.to_vec1::<u32>()?;
        t.learner.slots.labels = get("slots.labels")?.to_vec1::<i64>()?;
        t.learner.slots.ids = get("slots.ids")?.to_vec1::<u32>()?;
        t.learner.slots.steps = get("slots.steps")?.to_vec1::<u32>()?;
        t.learner.slots.halted = get("slots.halted")?.to_vec1::<u8>()?.into_iter().map(|h| h != 0).collect();
        t.learner.step = meta.step;
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
    if let Some(case) = &args.replay {
        crate::replay::run(case, &args.out, args.teacher_forced, &device)?;
        return Ok(());
    }
    let dir = &args.out;
    let state = dir.join("train_state.safetensors");
    let mut trainer = if args.resume {
        if !state.is_file() {
            bail!("{}: nothing to resume (no train_state.safetensors)", dir.display());
        }
        let t = Trainer::resume(dir, &device)?;
        run_dir::truncate_metrics(&dir.join("metrics.jsonl"), t.step())?;
        eprintln!("resuming {} at step {}", dir.display(), t.step());
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
            init: args.init.clone(),
        };
        eprintln!("preparing data ({task:?}) ...");
        let t = match &args.init {
            Some(init) => Trainer::from_checkpoint(settings, init, &device)?,
            None => Trainer::new(settings, &device)?,
        };
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
        trainer.learner.net.vars().map(|(_, v)| v.as_tensor().elem_count()).sum::<usize>(),
        trainer.settings.hyper.batch_size
    );

    let started = Instant::now();
    let budget = args.max_minutes.map(|m| m * 60.0);
    let progress = if args.quiet { indicatif::ProgressBar::hidden() } else { progress_bar(args, trainer.step()) };
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
        if args.steps.is_some_and(|n| trainer.step() >= n) || budget.is_some_and(|b| elapsed >= b) {
            break;
        }
        let lr = trainer.train_step(&mut acc)?;
        let s = &trainer.settings;
        let log_now = trainer.step() % s.log_every == 0;
        let eval_now = s.eval_every > 0 && trainer.step() % s.eval_every == 0;
        if log_now || eval_now {
            let secs = window.elapsed().as_secs_f64();
            let n = acc.steps.max(1) as f64;
            let halted = acc.halted.max(1) as f64;
            let mut line = MetricsLine {
                step: trainer.step(),
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
            (Some(_), _) => progress.set_position(trainer.step()),
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
        step: trainer.step(),
        eval_exact_accuracy: Some(report.exact_accuracy),
        eval_cell_accuracy: Some(report.cell_accuracy),
        eval_blank_accuracy: Some(report.blank_accuracy),
        eval_mean_segments: Some(report.mean_segments),
        elapsed_s: trainer.elapsed_before + started.elapsed().as_secs_f64(),
        ..last_line.clone().unwrap_or_default()
    };
    if last_line.as_ref().is_none_or(|l| l.step != trainer.step() || l.eval_exact_accuracy.is_none()) {
        writeln!(metrics, "{}", serde_json::to_string(&final_line)?)?;
    }
    trainer.checkpoint(dir, started.elapsed().as_secs_f64())?;
    let lines = run_dir::read_metrics(&dir.join("metrics.jsonl"))?;
    if let Err(e) = crate::plot::plot(&lines, &dir.join("metrics.png")) {
        eprintln!("warning: no plot: {e:#}");
    }
    eprintln!(
        "step {}: eval exact {:.3}, cell {:.3}, blank cells {:.3}, {:.2} segments; saved {}",
        trainer.step(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors that outlive a step must not hold the step's graph: a graph links each new value
    /// to the previous one, so every earlier step's tensors stay alive (the EMA leaked this way,
    /// a parameter-sized allocation per step).
    #[test]
    fn state_kept_across_steps_holds_no_graph() {
        let task = TaskKind::Sudoku;
        let (arch, preset) = (Arch::Trm, Preset::Tiny);
        let mut hyper = presets::hyper(task, arch, preset);
        hyper.batch_size = 4;
        assert!(hyper.ema.is_some(), "TRM averages its weights");
        let settings = Settings {
            arch,
            preset,
            seed: 1,
            hyper,
            data: DataSettings {
                task,
                data: None,
                eval_data: None,
                givens: (40, 50),
                pool: 8,
                maze_size: 10,
                augmentations: 1,
                eval_count: 4,
            },
            halt_max_steps: Some(2),
            schedule_steps: Some(10),
            eval_every: 0,
            log_every: 1,
            checkpoint_minutes: 100.0,
            init: None,
        };
        let mut trainer = Trainer::new(settings, &Device::Cpu).unwrap();
        let mut acc = Accum::default();
        for _ in 0..3 {
            trainer.train_step(&mut acc).unwrap();
        }
        let l = &trainer.learner;
        let ema = l.ema.as_ref().unwrap();
        assert!(!ema.is_empty());
        for (id, avg) in ema {
            assert!(!avg.track_op(), "the average of {id:?} keeps its graph");
        }
        for (i, (m, v)) in l.adam.m.iter().zip(&l.adam.v).enumerate() {
            assert!(!m.track_op() && !v.track_op(), "Adam moments of variable {i} keep their graph");
        }
        assert!(!l.carry.z_h.track_op() && !l.carry.z_l.track_op(), "the carry keeps its graph");
    }
}
