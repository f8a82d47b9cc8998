//! `hrm`: convert checkpoints into blobs, inspect blobs, run them, solve puzzles.

mod infer;
mod inspect;
mod solve;
mod trace;
mod trace_image;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hrm_convert::AlignedBlob;
use hrm_runtime::{DType, Halting, Model};

#[derive(Parser)]
#[command(name = "hrm", version, about = "HRM/TRM reasoning models: convert, inspect, run, solve")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert an official checkpoint (directory, PyTorch `checkpoint`/`step_N`, or .safetensors
    /// with `all_config.yaml` and `dataset.json` beside it) into a blob.
    Convert(ConvertArgs),
    /// Show a blob's configuration, tensor table, sizes, arena and CRC status.
    Inspect { blob: PathBuf },
    /// Run a blob on the examples of a safetensors file and write every segment's outputs.
    Infer(infer::InferArgs),
    /// Solve puzzles with a model.
    #[command(subcommand)]
    Solve(SolveTask),
    /// Train a model with the reference algorithm (HRM or TRM, Sudoku, mazes or ARC).
    Train(Box<hrm_trainer::train::TrainArgs>),
    /// Accuracy of a run directory (trainer) or a blob (runtime) on a task's data.
    Eval(hrm_trainer::evaluate::EvalArgs),
    /// Generate Sudoku puzzles or mazes (reproducible from a seed).
    #[command(subcommand)]
    Generate(hrm_trainer::generate::GenerateArgs),
}

#[derive(Args)]
struct ConvertArgs {
    /// Checkpoint directory or weights file.
    src: PathBuf,
    /// Where to write the blob.
    #[arg(long)]
    out: PathBuf,
    /// Element type of the stored weight matrices: int8 has one scale per row, int4 one per
    /// block of 32 values (vectors stay f32 then).
    #[arg(long, value_enum, default_value_t = WeightType::F32)]
    weights: WeightType,
    /// Arithmetic of the forward pass: f32, or fixed point (integer only, for cores without an
    /// FPU; needs --weights int8 and --calibrate).
    #[arg(long, value_enum, default_value_t = ActivationType::F32)]
    activations: ActivationType,
    /// Inputs to calibrate on: the task's data (Sudoku: a `puzzle,solution` CSV or one puzzle
    /// per line; mazes: a maze file) or a safetensors file with `inputs` and
    /// `puzzle_identifiers`; the first 256 examples are used. With --activations fixed it sets
    /// the fixed-point formats; with --weights int4 the int4 rounding compensates its errors on
    /// these inputs (GPTQ).
    #[arg(long, value_name = "FILE")]
    calibrate: Option<PathBuf>,
    /// The training config, if not `all_config.yaml` beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The dataset metadata, if not `dataset.json` beside the weights.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Rows pushed through each weight matrix at once: more is faster, fewer needs less RAM
    /// (1 for the smallest arena on a microcontroller).
    #[arg(long, default_value_t = hrm_runtime::config::DEFAULT_BLOCK, value_parser = clap::value_parser!(u32).range(1..=256))]
    block: u32,
}

#[derive(Subcommand)]
enum SolveTask {
    /// Sudoku: 81 characters per puzzle, `.` or `0` for a blank.
    Sudoku(solve::SudokuArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum WeightType {
    F32,
    F16,
    Bf16,
    Int8,
    Int4,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ActivationType {
    F32,
    Fixed,
}

/// Examples a calibration runs on, at most.
const CALIBRATION_EXAMPLES: usize = 256;

impl From<WeightType> for DType {
    fn from(w: WeightType) -> DType {
        match w {
            WeightType::F32 => DType::F32,
            WeightType::F16 => DType::F16,
            WeightType::Bf16 => DType::Bf16,
            WeightType::Int8 => DType::I8,
            WeightType::Int4 => DType::Q4,
        }
    }
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
        Command::Convert(args) => convert(args).map(|()| Outcome::Ok),
        Command::Inspect { blob } => inspect::run(&blob).map(|()| Outcome::Ok),
        Command::Infer(args) => infer::run(&args).map(|()| Outcome::Ok),
        Command::Solve(SolveTask::Sudoku(args)) => solve::sudoku(&args),
        Command::Train(args) => hrm_trainer::train::run(&args).map(|()| Outcome::Ok),
        Command::Eval(args) => hrm_trainer::evaluate::run(&args).map(|()| Outcome::Ok),
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

fn convert(args: ConvertArgs) -> Result<()> {
    let overrides = hrm_convert::Overrides { arch: args.config, dataset: args.dataset };
    let mut checkpoint = hrm_convert::Checkpoint::load(&args.src, &overrides)
        .with_context(|| format!("cannot convert {}", args.src.display()))?;
    checkpoint.config.block = args.block;
    let mut options = hrm_convert::BlobOptions::weights(args.weights.into());
    let bar = |what: &str, len: usize| {
        indicatif::ProgressBar::new(len as u64).with_style(
            indicatif::ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} examples {{elapsed}}"))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    };
    match (args.activations, &args.calibrate) {
        (ActivationType::F32, Some(file)) => {
            if options.weights != DType::Q4 {
                anyhow::bail!("--calibrate is for --activations fixed or --weights int4");
            }
            let inputs = calibration_inputs(file, &checkpoint.config)?;
            let progress = bar("collecting input statistics", inputs.len());
            let moments = hrm_convert::InputMoments::collect(&checkpoint, &inputs, &|| progress.inc(1))?;
            progress.finish_and_clear();
            options.moments = Some(moments);
        }
        (ActivationType::F32, None) => {}
        (ActivationType::Fixed, None) => {
            anyhow::bail!("--activations fixed needs --calibrate FILE (inputs from the task's data)")
        }
        (ActivationType::Fixed, Some(file)) => {
            if options.weights != DType::I8 {
                anyhow::bail!("--activations fixed needs --weights int8");
            }
            let inputs = calibration_inputs(file, &checkpoint.config)?;
            let progress = bar("calibrating", inputs.len());
            let formats = hrm_convert::calibrate(&checkpoint, &inputs, &|| progress.inc(1))?;
            progress.finish_and_clear();
            options = hrm_convert::BlobOptions::fixed_point(formats);
        }
    }
    let blob = hrm_convert::write_blob_with(&checkpoint, &options)?;
    write_atomically(&args.out, &blob)?;
    let c = &checkpoint.config;
    let files = checkpoint.files.as_ref();
    eprintln!(
        "wrote {}: {:?} h={} layers H{}/L{} cycles {}/{} seq_len={} vocab={}, {} parameters, {} weights, {} activations, {} bytes, arena {} bytes{}",
        args.out.display(),
        c.kind,
        c.hidden_size,
        c.h_module_layers(),
        c.l_layers,
        c.h_cycles,
        c.l_cycles,
        c.seq_len,
        c.vocab_size,
        checkpoint.parameters(),
        DType::from(args.weights),
        options.activations.name(),
        blob.len(),
        c.arena_bytes(),
        files.map(|f| format!(" (from {})", f.weights.display())).unwrap_or_default(),
    );
    Ok(())
}

/// Calibration examples (tokens, puzzle identifier) from `path`: a safetensors batch, or the
/// task's own data for a Sudoku (81 tokens, vocabulary 11) or 30×30 maze (900 tokens) model.
fn calibration_inputs(path: &Path, config: &hrm_runtime::Config) -> Result<Vec<(Vec<u32>, u32)>> {
    let mut inputs = if path.extension().is_some_and(|e| e == "safetensors") {
        infer::read_batch(path, config)?
    } else if config.seq_len == 81 && config.vocab_size == 11 {
        let mut out = Vec::new();
        for line in solve::puzzle_lines(path)?.into_iter().take(CALIBRATION_EXAMPLES) {
            let grid =
                hrm_runtime::sudoku::parse(&line.text).map_err(|e| anyhow::anyhow!("{}: puzzle {e}", line.label))?;
            out.push((hrm_runtime::sudoku::to_tokens(&grid).to_vec(), 0));
        }
        out
    } else if config.seq_len == 900 {
        let mazes = hrm_trainer::tasks::maze::read_mazes(path)?;
        mazes.iter().map(|m| (m.input_tokens(), 0)).collect()
    } else {
        anyhow::bail!(
            "{}: give the calibration inputs as a safetensors file with `inputs` and `puzzle_identifiers`",
            path.display()
        );
    };
    inputs.truncate(CALIBRATION_EXAMPLES);
    if inputs.is_empty() {
        anyhow::bail!("{}: no calibration examples", path.display());
    }
    for (tokens, id) in &inputs {
        if tokens.len() != config.seq_len as usize || tokens.iter().any(|&t| t >= config.vocab_size) {
            anyhow::bail!(
                "{}: an example does not fit the model (seq_len {}, vocabulary {})",
                path.display(),
                config.seq_len,
                config.vocab_size
            );
        }
        if *id >= config.num_puzzle_identifiers {
            anyhow::bail!("{}: puzzle identifier {id} is not below {}", path.display(), config.num_puzzle_identifiers);
        }
    }
    Ok(inputs)
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
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}

/// `--threads N`, or every core.
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

pub fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// Keeps what it holds at a 64-byte boundary: the runtime reads weights in place.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The default Sudoku model (`models/sudoku`: trained by this project; see its README), in the
/// binary.
static DEFAULT_SUDOKU: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/sudoku/sudoku.blob"));

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
