//! `hrm infer`: run a blob over a batch stored in safetensors, write every segment's outputs with
//! the names the reference's golden files use.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hrm_runtime::Halting;
use indicatif::{ProgressBar, ProgressStyle};
use safetensors::{Dtype, SafeTensors};

use crate::HaltingArgs;

#[derive(Args)]
pub struct InferArgs {
    blob: PathBuf,
    /// safetensors with `inputs` [B, seq_len] and `puzzle_identifiers` [B] (int32 or int64).
    #[arg(long)]
    inputs: PathBuf,
    /// Where to write `segment{s}.logits` [B, seq_len, V], `segment{s}.q_halt`/`q_continue` [B],
    /// `segments` [B] (segments each example ran) and `predictions` [B, seq_len].
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    halting: HaltingArgs,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Integers of a safetensors tensor.
fn ints(st: &SafeTensors, name: &str, file: &std::path::Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let t = st.tensor(name).with_context(|| format!("{}: no tensor `{name}`", file.display()))?;
    let data = t.data();
    let values: Vec<i64> = match t.dtype() {
        Dtype::I32 => data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        Dtype::I64 => {
            data.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()
        }
        other => bail!("{}: `{name}` is {other:?}, expected int32 or int64", file.display()),
    };
    Ok((t.shape().to_vec(), values))
}

/// The examples of a safetensors batch: `inputs` `[B, seq_len]` and `puzzle_identifiers` `[B]`,
/// checked against the model's `seq_len` (tokens and identifiers are checked by the session).
pub fn read_batch(path: &std::path::Path, c: &hrm_runtime::Config) -> Result<Vec<(Vec<u32>, u32)>> {
    let seq_len = c.seq_len as usize;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let (shape, tokens) = ints(&st, "inputs", path)?;
    let (id_shape, ids) = ints(&st, "puzzle_identifiers", path)?;
    let [batch, len] = shape[..] else {
        bail!("{}: `inputs` has shape {shape:?}, expected [batch, seq_len]", path.display())
    };
    if len != seq_len {
        bail!("{}: `inputs` rows have {len} tokens, the model takes seq_len = {seq_len}", path.display());
    }
    if id_shape != [batch] {
        bail!("{}: `puzzle_identifiers` has shape {id_shape:?}, expected [{batch}]", path.display());
    }
    let mut rows = Vec::with_capacity(batch);
    for (b, (row, &id)) in tokens.chunks_exact(seq_len.max(1)).zip(&ids).enumerate() {
        let row: Vec<u32> = row
            .iter()
            .enumerate()
            .map(|(p, &t)| {
                u32::try_from(t).with_context(|| format!("example {b}: token {t} at position {p} is negative"))
            })
            .collect::<Result<_>>()?;
        let id = u32::try_from(id).with_context(|| format!("example {b}: puzzle identifier {id} is negative"))?;
        rows.push((row, id));
    }
    Ok(rows)
}

struct Example {
    /// Per segment: logits, q_halt, q_continue.
    segments: Vec<(Vec<f32>, f32, f32)>,
    predictions: Vec<u32>,
}

pub fn run(args: &InferArgs) -> Result<()> {
    let blob = crate::read_blob(&args.blob)?;
    let model = crate::load_model(&args.blob, &blob)?;
    let c = *model.config();
    let seq_len = c.seq_len as usize;

    let rows = read_batch(&args.inputs, &c)?;
    let batch = rows.len();
    let rows: Vec<(usize, Vec<u32>, u32)> = rows.into_iter().enumerate().map(|(b, (row, id))| (b, row, id)).collect();

    let halting = args.halting.halting();
    let progress = ProgressBar::new(batch as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} examples {elapsed}<{eta}")
            .unwrap_or(ProgressStyle::default_bar()),
    );
    let limit = match halting {
        Halting::Fixed | Halting::Adaptive => c.halt_max_steps,
        Halting::Segments(n) => n,
    };
    // One session per thread over the shared model, examples in order.
    let examples =
        hrm_trainer::eval::in_sessions(model, &rows, crate::threads(args.threads), |session, (b, row, id)| {
            session.reset(row, *id).with_context(|| format!("example {b}"))?;
            let mut segments = Vec::new();
            for _ in 0..limit {
                let outcome = session.step()?;
                let mut logits = vec![0.0f32; seq_len * c.vocab_size as usize];
                session.logits_into(&mut logits)?;
                segments.push((logits, outcome.q_halt, outcome.q_continue));
                if halting == Halting::Adaptive && outcome.halt_requested {
                    break;
                }
            }
            let mut predictions = vec![0u32; seq_len];
            session.predictions(&mut predictions)?;
            progress.inc(1);
            Ok(Example { segments, predictions })
        })?;
    progress.finish_and_clear();

    // Examples that halted early keep their last outputs in the later segments.
    let most = examples.iter().map(|e| e.segments.len()).max().unwrap_or(0);
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32_bytes = |v: &mut Vec<u8>, x: f32| v.extend_from_slice(&x.to_le_bytes());
    for s in 0..most {
        let (mut logits, mut q_halt, mut q_continue) = (Vec::new(), Vec::new(), Vec::new());
        for e in &examples {
            let Some((l, qh, qc)) = e.segments.get(s).or(e.segments.last()) else { continue };
            l.iter().for_each(|&x| f32_bytes(&mut logits, x));
            f32_bytes(&mut q_halt, *qh);
            f32_bytes(&mut q_continue, *qc);
        }
        tensors.push((format!("segment{s}.logits"), Dtype::F32, vec![batch, seq_len, c.vocab_size as usize], logits));
        tensors.push((format!("segment{s}.q_halt"), Dtype::F32, vec![batch], q_halt));
        tensors.push((format!("segment{s}.q_continue"), Dtype::F32, vec![batch], q_continue));
    }
    let used: Vec<u8> = examples.iter().flat_map(|e| (e.segments.len() as i32).to_le_bytes()).collect();
    tensors.push(("segments".into(), Dtype::I32, vec![batch], used));
    let preds: Vec<u8> =
        examples.iter().flat_map(|e| e.predictions.iter().flat_map(|&p| (p as i32).to_le_bytes())).collect();
    tensors.push(("predictions".into(), Dtype::I32, vec![batch, seq_len], preds));

    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            Ok((name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, None)?;
    crate::write_atomically(&args.out, &serialized)?;
    eprintln!("{} examples, {} segments at most; wrote {}", batch, most, args.out.display());
    Ok(())
}
