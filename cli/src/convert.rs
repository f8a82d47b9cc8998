//! `hrm convert`: official checkpoints (and the trainer's runs) into blobs. Part of the `train`
//! feature: the checkpoint readers link candle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hrm_runtime::DType;

use crate::{infer, solve, write_atomically};

#[derive(Args)]
pub struct ConvertArgs {
    /// Checkpoint directory or weights file.
    src: PathBuf,
    /// Where to write the blob.
    #[arg(long)]
    out: PathBuf,
    /// Element type of the stored weight matrices: int8 has one scale per row, int4 one per
    /// block of 32 values (vectors stay f32 then).
    #[arg(long, value_enum, default_value_t = WeightType::F32)]
    weights: WeightType,
    /// How f32 matrices are laid out: `rows` as in the checkpoint, `panels` in 16-row panels
    /// stored column by column, what the x86-64 and aarch64 kernels read without packing
    /// (faster there, slower on microcontrollers; runtime/FORMAT.md).
    #[arg(long, value_enum, default_value_t = Layout::Rows)]
    layout: Layout,
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

#[derive(Clone, Copy, ValueEnum)]
enum WeightType {
    F32,
    F16,
    Bf16,
    Int8,
    Int4,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Layout {
    Rows,
    Panels,
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

pub fn run(args: ConvertArgs) -> Result<()> {
    let overrides = hrm_convert::Overrides { arch: args.config, dataset: args.dataset };
    let mut checkpoint = hrm_convert::Checkpoint::load(&args.src, &overrides)
        .with_context(|| format!("cannot convert {}", args.src.display()))?;
    checkpoint.config.block = args.block;
    let mut options = hrm_convert::BlobOptions::weights(args.weights.into());
    if args.layout == Layout::Panels {
        if options.weights != DType::F32 {
            anyhow::bail!("--layout panels is for f32 weights (--weights f32)");
        }
        options.weights = DType::F32Panels;
    }
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
        options.weights,
        options.activations.name(),
        blob.len(),
        c.arena_bytes_for(options.activations),
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
