//! `hrm infer`: run a blob over a batch stored in safetensors, write every segment's outputs with
//! the names the reference's golden files use.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hrm_host::infer::Values;
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
    #[arg(long, required_unless_present = "trace_out")]
    out: Option<PathBuf>,
    /// Also (or instead) write the raw states of every segment with the golden files' names:
    /// `inputs`, `puzzle_identifiers`, and per segment `segment{s}.z_H` and `segment{s}.z_L`
    /// [B, S, h] (the carry after it, prefix rows first), `segment{s}.logits`, `q_halt`,
    /// `q_continue`. A fixed-point blob has no float latents: its file holds the rest.
    #[arg(long, value_name = "FILE.safetensors")]
    trace_out: Option<PathBuf>,
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

pub fn run(args: &InferArgs) -> Result<()> {
    let blob = crate::read_blob(&args.blob)?;
    let model = crate::load_model(&args.blob, &blob)?;
    let c = *model.config();
    let seq_len = c.seq_len as usize;

    let rows = read_batch(&args.inputs, &c)?;
    let batch = rows.len();
    let progress = ProgressBar::new(batch as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} examples {elapsed}<{eta}")
            .unwrap_or(ProgressStyle::default_bar()),
    );
    let halting = args.halting.halting();
    let latents = args.trace_out.is_some();
    let examples =
        hrm_host::infer::run(model, &rows, crate::threads(args.threads), halting, latents, &|| progress.inc(1))?;
    progress.finish_and_clear();
    let most = examples.iter().map(|e| e.segments.len()).max().unwrap_or(0);

    let tensor = |o: &hrm_host::infer::Output| -> (String, Dtype, Vec<usize>, Vec<u8>) {
        let (dtype, bytes) = match &o.values {
            Values::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Values::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        (o.name.clone(), dtype, o.shape.clone(), bytes)
    };
    let write = |tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], path: &std::path::Path| -> Result<()> {
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                Ok((name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)?))
            })
            .collect::<Result<Vec<_>>>()?;
        crate::write_atomically(path, &safetensors::serialize(views, None)?)
    };
    let mut written = Vec::new();
    if let Some(out) = &args.out {
        // Everything but the latents.
        let tensors: Vec<_> = hrm_host::infer::named(&examples, &model, false).iter().map(tensor).collect();
        write(&tensors, out)?;
        written.push(out.display().to_string());
    }
    if let Some(path) = &args.trace_out {
        // The golden files' layout: the batch, then every segment with its carry.
        let mut tensors: Vec<_> = hrm_host::infer::named(&examples, &model, true)
            .iter()
            .filter(|o| o.name.starts_with("segment") && o.name != "segments")
            .map(tensor)
            .collect();
        let tokens: Vec<u8> =
            rows.iter().flat_map(|(row, _)| row.iter().flat_map(|&t| (t as i32).to_le_bytes())).collect();
        tensors.push(("inputs".into(), Dtype::I32, vec![batch, seq_len], tokens));
        let ids: Vec<u8> = rows.iter().flat_map(|(_, id)| (*id as i32).to_le_bytes()).collect();
        tensors.push(("puzzle_identifiers".into(), Dtype::I32, vec![batch], ids));
        if !tensors.iter().any(|t| t.0.ends_with(".z_H")) && most > 0 {
            eprintln!("note: this blob computes in fixed point; {} holds no latents", path.display());
        }
        write(&tensors, path)?;
        written.push(path.display().to_string());
    }
    let out = written.join(" and ");
    eprintln!("{batch} examples, {most} segments at most; wrote {out}");
    Ok(())
}
