//! `hrm`: convert checkpoints into blobs, inspect blobs, run them, solve puzzles.

#[cfg(feature = "train")]
mod convert;
mod infer;
mod inspect;
mod maze;
mod serve;
mod solve;
mod trace;
mod trace_image;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use hrm_host::AlignedBlob;
use hrm_runtime::{Halting, Model};

#[derive(Parser)]
#[command(name = "hrm", version, about = "HRM/TRM reasoning models: convert, inspect, run, solve")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "train")]
    /// Convert an official checkpoint (directory, PyTorch `checkpoint`/`step_N`, or .safetensors
    /// with `all_config.yaml` and `dataset.json` beside it) into a blob.
    Convert(convert::ConvertArgs),
    /// Show a blob's configuration, tensor table, sizes, arena and CRC status.
    Inspect { blob: PathBuf },
    /// Run a blob on the examples of a safetensors file and write every segment's outputs.
    Infer(infer::InferArgs),
    /// Serve a model over HTTP: bounded workers and queue, JSON endpoints, Prometheus metrics.
    Serve(serve::ServeArgs),
    /// Solve puzzles with a model.
    #[command(subcommand)]
    Solve(SolveTask),
    #[cfg(feature = "train")]
    /// Train a model with the reference algorithm (HRM or TRM, Sudoku, mazes or ARC).
    Train(Box<hrm_trainer::train::TrainArgs>),
    #[cfg(feature = "train")]
    /// Accuracy of a run directory (trainer) or a blob (runtime) on a task's data.
    Eval(hrm_trainer::evaluate::EvalArgs),
    #[cfg(feature = "train")]
    /// Generate Sudoku puzzles or mazes (reproducible from a seed).
    #[command(subcommand)]
    Generate(hrm_trainer::generate::GenerateArgs),
}

#[derive(Subcommand)]
enum SolveTask {
    /// Sudoku: 81 characters per puzzle, `.` or `0` for a blank.
    Sudoku(solve::SudokuArgs),
    /// Mazes: square grids of `# SGo`, blank lines between; prints each with its path marked `o`.
    Maze(maze::MazeArgs),
}

/// `--segments N | --adaptive`, shared by the commands that run a model.
#[derive(Args, Clone, Copy)]
pub struct HaltingArgs {
    /// Run exactly N segments (default: the model's halt_max_steps, as the reference evaluates).
    #[arg(long, value_name = "N", conflicts_with = "adaptive", value_parser = clap::value_parser!(u32).range(1..))]
    segments: Option<u32>,
    /// Stop each example when its Q head says halt (at most halt_max_steps segments).
    #[arg(long)]
    adaptive: bool,
}

impl HaltingArgs {
    pub fn halting(&self) -> Halting {
        match (self.adaptive, self.segments) {
            (true, _) => Halting::Adaptive,
            (false, Some(n)) => Halting::Segments(n),
            (false, None) => Halting::Fixed,
        }
    }
}

/// Outcome of a command that ran: success, or answers that failed a requested check.
pub enum Outcome {
    Ok,
    CheckFailed,
}

/// candle allocates and frees a large buffer for nearly every tensor operation. glibc serves
/// buffers above its mmap threshold with mmap/munmap and fresh page faults each time, which made
/// training 2.5× slower (more system than user time); keep such buffers in the heap instead.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum on 64-bit
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "train")]
        Command::Convert(args) => convert::run(args).map(|()| Outcome::Ok),
        Command::Inspect { blob } => inspect::run(&blob).map(|()| Outcome::Ok),
        Command::Infer(args) => infer::run(&args).map(|()| Outcome::Ok),
        Command::Solve(SolveTask::Sudoku(args)) => solve::sudoku(&args),
        Command::Solve(SolveTask::Maze(args)) => maze::solve(&args),
        Command::Serve(args) => serve::run(&args).map(|()| Outcome::Ok),
        #[cfg(feature = "train")]
        Command::Train(args) => hrm_trainer::train::run(&args).map(|()| Outcome::Ok),
        #[cfg(feature = "train")]
        Command::Eval(args) => hrm_trainer::evaluate::run(&args).map(|()| Outcome::Ok),
        #[cfg(feature = "train")]
        Command::Generate(args) => hrm_trainer::generate::run(&args).map(|()| Outcome::Ok),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(2),
        // A reader that went away (`hrm inspect BLOB | head`) is not an error of ours.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Writes `text` to stdout, reporting a closed pipe as an error instead of panicking as
/// `println!` does.
pub fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: a reader never sees a
/// half-written file and an interrupted run leaves the old one in place.
pub use hrm_host::write_atomically;

/// A progress bar on stderr for `len` items, hidden unless `show` and stderr is a terminal.
pub fn progress_bar(len: u64, what: &str, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}}<{{eta}}");
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// `--threads N`, or every core.
pub fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// Keeps what it holds at a 64-byte boundary: the runtime reads weights in place.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The default Sudoku model (`models/sudoku`: trained by this project; see its README), in the
/// binary.
static DEFAULT_SUDOKU: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/sudoku/sudoku.blob"));

/// Size in bytes of the built-in Sudoku model's blob.
pub fn default_sudoku_blob_len() -> usize {
    DEFAULT_SUDOKU.0.len()
}

/// The built-in Sudoku model, validated.
pub fn default_sudoku_model() -> Result<Model<'static>> {
    Model::from_bytes(&DEFAULT_SUDOKU.0).context("the built-in Sudoku model is damaged (rebuild hrm)")
}

/// Reads a blob file into aligned memory.
pub fn read_blob(path: &Path) -> Result<AlignedBlob> {
    AlignedBlob::read(path).with_context(|| format!("cannot read blob {}", path.display()))
}

/// Validates a blob read by [`read_blob`].
pub fn load_model<'a>(path: &Path, blob: &'a AlignedBlob) -> Result<Model<'a>> {
    Model::from_bytes(blob).with_context(|| format!("{} is not a usable model blob", path.display()))
}
