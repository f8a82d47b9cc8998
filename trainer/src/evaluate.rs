//! `hrm eval`: accuracy of a run directory (the trainer's candle model) or of a blob (the
//! `no_std` runtime) on a task's data, with the same examples and metrics for both.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hrm_convert::{AlignedBlob, Checkpoint, Overrides};
use hrm_host::ensemble_args::EnsembleArgs;
use hrm_runtime::ensemble::{self, Plan};
use hrm_runtime::{maze as runtime_maze, sudoku as runtime_sudoku, Halting};

use crate::eval::{self, BlobPredictor, CandlePredictor, Prediction, Predictor, Report};
use crate::model::Net;
use crate::tasks::{self, arc, maze, sudoku, EvalSet, Example, TaskKind};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A run directory (evaluated with the trainer's model) or a blob (on the runtime).
    pub model: PathBuf,
    #[arg(long, value_enum)]
    pub task: TaskKind,
    /// Sudoku `puzzle,solution` CSV, maze file, or ARC task directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Write one predicted answer per example (Sudoku: 81 digits per line; mazes: the grid with
    /// its path; ARC: a JSON line with the two voted answers per test input).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Run exactly N segments (default: the model's halt_max_steps).
    #[arg(long, conflicts_with = "adaptive", value_parser = clap::value_parser!(u32).range(1..))]
    pub segments: Option<u32>,
    /// Stop each example when its Q head says halt.
    #[arg(long)]
    pub adaptive: bool,
    /// Evaluate only the first N examples (tasks for ARC).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Threads for a blob (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// ARC: the puzzle identifiers the model was trained with (a run's `identifiers.json`).
    #[arg(long)]
    pub identifiers: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Test-time compute on a blob, Sudoku and mazes (`hrm solve`'s options): each example's
    /// answer is the ensemble's; "mean segments" counts every trajectory's.
    #[command(flatten)]
    pub ensemble: EnsembleArgs,
}

/// Either kind of model behind one interface.
pub enum Loaded {
    Run(Box<Net>),
    Blob(BlobPredictor),
}

impl Loaded {
    pub fn open(path: &Path, threads: Option<usize>) -> Result<Loaded> {
        if path.is_dir() {
            let ck = Checkpoint::load(path, &Overrides::default())
                .with_context(|| format!("cannot load the run in {}", path.display()))?;
            Ok(Loaded::Run(Box::new(Net::from_checkpoint(&ck, &candle_core::Device::Cpu)?)))
        } else {
            let blob = AlignedBlob::read(path)?;
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            Ok(Loaded::Blob(
                BlobPredictor::new(blob, threads)
                    .with_context(|| format!("{} is not a usable blob", path.display()))?,
            ))
        }
    }

    pub fn with_predictor<T>(&mut self, f: impl FnOnce(&mut dyn Predictor) -> Result<T>) -> Result<T> {
        match self {
            Loaded::Run(net) => f(&mut CandlePredictor { net }),
            Loaded::Blob(b) => f(b),
        }
    }
}

/// Text of one prediction in the task's own format.
type Render = Box<dyn Fn(&Prediction) -> String>;

pub fn run(args: &EvalArgs) -> Result<()> {
    let halting = match (args.adaptive, args.segments) {
        (true, _) => Halting::Adaptive,
        (false, Some(n)) => Halting::Segments(n),
        (false, None) => Halting::Fixed,
    };
    let mut model = Loaded::open(&args.model, args.threads)?;
    let plan = args.ensemble.plan(halting)?;
    if args.ensemble.trajectories_out.is_some() {
        bail!("--trajectories-out is for hrm solve; hrm eval reports the accuracy of the chosen answers");
    }
    if args.task == TaskKind::Arc {
        if plan.is_some() {
            bail!(
                "ARC evaluation already votes over the reference's augmentations; --ensemble is for Sudoku and mazes"
            );
        }
        return run_arc(args, &mut model, halting);
    }
    if let (Some(_), Loaded::Run(_)) = (plan, &model) {
        bail!("--ensemble runs on a blob (convert the run with hrm convert first)");
    }
    let (set, render): (EvalSet, Render) = match args.task {
        TaskKind::Sudoku => {
            let mut pairs = sudoku::read_csv(&args.data)?;
            pairs.truncate(args.limit.unwrap_or(usize::MAX));
            (
                tasks::sudoku_eval_set(&pairs),
                Box::new(|p: &Prediction| sudoku::grid_string(&hrm_runtime::sudoku::from_tokens(&p.tokens)) + "\n"),
            )
        }
        TaskKind::Maze => {
            let mut mazes = maze::read_mazes(&args.data)?;
            mazes.truncate(args.limit.unwrap_or(usize::MAX));
            let size = mazes[0].size;
            (
                tasks::maze_eval_set(&mazes)?,
                Box::new(move |p: &Prediction| maze::Maze::from_tokens(size, &p.tokens).to_text() + "\n"),
            )
        }
        TaskKind::Arc => unreachable!(),
    };
    let progress = indicatif::ProgressBar::new(set.examples.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} examples {elapsed}<{eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (report, predictions) = match (plan, &mut model) {
        (Some(plan), Loaded::Blob(blob)) => {
            let mut ensemble = EnsemblePredictor { blob, plan, task: args.task };
            eval::evaluate(&mut ensemble, &set, halting, args.batch, |n| progress.inc(n as u64))?
        }
        _ => model.with_predictor(|p| eval::evaluate(p, &set, halting, args.batch, |n| progress.inc(n as u64)))?,
    };
    progress.finish_and_clear();
    if let Some(path) = &args.predictions {
        let text: String = predictions.iter().map(render).collect();
        crate::run_dir::write_atomically(path, text.as_bytes())?;
    }
    print_report(args, &report)
}

/// A blob's ensemble (`hrm_runtime::ensemble`) as a predictor: each example's tokens are turned
/// back into the puzzle or maze, solved by `plan`, and the chosen answer turned into tokens.
struct EnsemblePredictor<'a> {
    blob: &'a BlobPredictor,
    plan: Plan,
    task: TaskKind,
}

impl Predictor for EnsemblePredictor<'_> {
    fn config(&self) -> &hrm_runtime::Config {
        self.blob.config()
    }

    fn predict(&mut self, examples: &[Example], _halting: Halting) -> Result<Vec<Prediction>> {
        let model = hrm_runtime::Model::from_bytes_skip_payload_crc(&self.blob.blob)?;
        let (plan, task) = (self.plan, self.task);
        hrm_host::in_sessions(model, examples, self.blob.threads, |session, e| {
            let (tokens, segments) = match task {
                TaskKind::Sudoku => {
                    let puzzle = runtime_sudoku::from_tokens(&e.inputs);
                    let outcome = ensemble::solve_sudoku(session, &puzzle, &plan, |_, _| true)?;
                    (runtime_sudoku::to_tokens(&outcome.answer).to_vec(), outcome.segments)
                }
                TaskKind::Maze => {
                    let side = (1..=runtime_maze::MAX_SIDE).find(|s| s * s == e.inputs.len()).unwrap_or(0);
                    let cells: Vec<u8> = e.inputs.iter().map(|&t| runtime_maze::character(t)).collect();
                    let outcome = ensemble::solve_maze(session, &cells, side, &plan, |_| true)?;
                    let answer = outcome.answer.get(..cells.len()).unwrap_or(&[]);
                    (answer.iter().map(|&c| runtime_maze::token(c).unwrap_or(0)).collect(), outcome.segments)
                }
                TaskKind::Arc => bail!("no ensemble for ARC"),
            };
            Ok(Prediction { tokens, segments: u32::try_from(segments).unwrap_or(u32::MAX) })
        })
    }
}

fn print_report(args: &EvalArgs, r: &Report) -> Result<()> {
    let text = if args.json {
        serde_json::to_string(r)? + "\n"
    } else {
        format!(
            "examples         {}\nexact accuracy   {:.4}\ncell accuracy    {:.4}\nblank-cell acc.  {:.4}\n\
             mean segments    {:.3}\nseconds          {:.2} ({:.2} ms per example)\n",
            r.examples,
            r.exact_accuracy,
            r.cell_accuracy,
            r.blank_accuracy,
            r.mean_segments,
            r.seconds,
            1000.0 * r.seconds / r.examples.max(1) as f64
        )
    };
    print(&text)
}

/// To stdout; a closed pipe is an error to report, not a panic (`println!` panics).
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// ARC: every augmentation of each test input, answers mapped back and voted; pass@2.
fn run_arc(args: &EvalArgs, model: &mut Loaded, halting: Halting) -> Result<()> {
    let ids_path = match (&args.identifiers, args.model.is_dir()) {
        (Some(p), _) => p.clone(),
        (None, true) => args.model.join("identifiers.json"),
        (None, false) => bail!("an ARC blob needs --identifiers (the identifiers.json of its run)"),
    };
    let ids = arc::Identifiers::load(&ids_path)?;
    let mut tasks = arc::read_tasks(&args.data)?;
    tasks.truncate(args.limit.unwrap_or(usize::MAX));
    let (mut total, mut solved) = (0usize, 0usize);
    let mut lines = String::new();
    let start = std::time::Instant::now();
    for task in &tasks {
        let augs: Vec<(u32, &arc::Augmentation)> = ids.of_task(&task.id).collect();
        if augs.is_empty() {
            bail!(
                "task {} has no puzzle identifiers in {}: the model was not trained on it",
                task.id,
                ids_path.display()
            );
        }
        for (t, pair) in task.test.iter().enumerate() {
            let examples: Vec<Example> = augs
                .iter()
                .map(|(id, aug)| Example::new(arc::encode(&aug.apply(&pair.input)), &[0; arc::SEQ_LEN], Some(0), *id))
                .collect();
            let preds = model.with_predictor(|p| p.predict(&examples, halting))?;
            let voted: Vec<(&arc::Augmentation, Vec<u32>)> =
                augs.iter().map(|(_, a)| *a).zip(preds.into_iter().map(|p| p.tokens)).collect();
            let ranked = arc::vote(&voted);
            let top2: Vec<&arc::Grid> = ranked.iter().take(2).map(|(g, _)| g).collect();
            total += 1;
            if let Some(truth) = &pair.output {
                solved += usize::from(top2.contains(&truth));
            }
            lines.push_str(&serde_json::to_string(&serde_json::json!({"task": task.id, "test": t, "answers": top2}))?);
            lines.push('\n');
        }
    }
    if let Some(path) = &args.predictions {
        crate::run_dir::write_atomically(path, lines.as_bytes())?;
    }
    let pass2 = solved as f64 / total.max(1) as f64;
    if args.json {
        let seconds = start.elapsed().as_secs_f64();
        print(&format!("{}\n", serde_json::json!({"test_inputs": total, "pass_at_2": pass2, "seconds": seconds})))
    } else {
        print(&format!("test inputs      {total}\npass@2           {pass2:.4}\n"))
    }
}
