//! Evaluation: the same examples through the trainer's candle model or through a blob on the
//! `no_std` runtime, with the same metrics, so that the two can be compared cell for cell.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use hrm_convert::AlignedBlob;
use hrm_runtime::{Config, HaltRule, Halting, Model};

use crate::model::{GradMode, Net};
use crate::tasks::{EvalSet, Example};

/// One prediction: tokens of the last segment run and how many segments ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub tokens: Vec<u32>,
    pub segments: u32,
}

/// Something that turns examples into predictions.
pub trait Predictor {
    fn config(&self) -> &Config;
    fn predict(&mut self, examples: &[Example], halting: Halting) -> Result<Vec<Prediction>>;
}

fn segment_limit(config: &Config, halting: Halting) -> u32 {
    match halting {
        Halting::Fixed | Halting::Adaptive => config.halt_max_steps,
        Halting::Segments(n) => n,
    }
}

fn wants_halt(rule: HaltRule, q_halt: f32, q_continue: f32) -> bool {
    match rule {
        HaltRule::HaltOverContinue => q_halt > q_continue,
        HaltRule::HaltPositive => q_halt > 0.0,
    }
}

/// The trainer's model, a batch at a time.
pub struct CandlePredictor<'a> {
    pub net: &'a Net,
}

impl Predictor for CandlePredictor<'_> {
    fn config(&self) -> &Config {
        &self.net.config
    }

    fn predict(&mut self, examples: &[Example], halting: Halting) -> Result<Vec<Prediction>> {
        let net = self.net;
        let b = examples.len();
        let seq = net.config.seq_len as usize;
        let inputs: Vec<u32> = examples.iter().flat_map(|e| e.inputs.iter().copied()).collect();
        let ids: Vec<u32> = examples.iter().map(|e| e.puzzle_id).collect();
        let inputs = Tensor::from_vec(inputs, (b, seq), &net.device)?;
        let ids = Tensor::from_vec(ids, b, &net.device)?;
        let x = net.embed(&inputs, &ids, false)?;
        let mut carry = net.initial_carry(b)?;
        let mut out = vec![Prediction { tokens: vec![], segments: 0 }; b];
        let mut halted = vec![false; b];
        for s in 0..segment_limit(&net.config, halting) {
            let seg = net.segment(&carry, &x, GradMode::None)?;
            carry = seg.carry;
            let tokens = seg.logits.argmax(candle_core::D::Minus1)?.to_dtype(DType::U32)?.to_vec2::<u32>()?;
            let qh = seg.q_halt.to_vec1::<f32>()?;
            let qc = seg.q_continue.to_vec1::<f32>()?;
            for i in 0..b {
                if halted[i] {
                    continue; // stopped earlier: keeps the answer of its last segment
                }
                out[i] = Prediction { tokens: tokens[i].clone(), segments: s + 1 };
                halted[i] = halting == Halting::Adaptive && wants_halt(net.config.halt_rule, qh[i], qc[i]);
            }
            if halted.iter().all(|&h| h) {
                break;
            }
        }
        Ok(out)
    }
}

/// A blob on the `no_std` runtime, one session per thread over the shared model.
pub struct BlobPredictor {
    pub blob: AlignedBlob,
    config: Config,
    pub threads: usize,
}

impl BlobPredictor {
    pub fn new(blob: AlignedBlob, threads: usize) -> Result<Self> {
        let config = *Model::from_bytes(&blob)?.config();
        Ok(BlobPredictor { blob, config, threads: threads.max(1) })
    }
}

impl Predictor for BlobPredictor {
    fn config(&self) -> &Config {
        &self.config
    }

    fn predict(&mut self, examples: &[Example], halting: Halting) -> Result<Vec<Prediction>> {
        let model = Model::from_bytes_skip_payload_crc(&self.blob)?;
        in_sessions(model, examples, self.threads, |session, e| {
            session.reset(&e.inputs, e.puzzle_id)?;
            let segments = session.run(halting)?;
            let mut tokens = vec![0u32; e.inputs.len()];
            session.predictions(&mut tokens)?;
            Ok(Prediction { tokens, segments })
        })
    }
}

pub use hrm_host::in_sessions;

/// Metrics of one evaluation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub examples: usize,
    /// Fraction of examples whose every labelled position is right.
    pub exact_accuracy: f64,
    /// Fraction of labelled positions that are right.
    pub cell_accuracy: f64,
    /// Fraction right among the positions the model must fill (label differs from input:
    /// Sudoku blanks, maze path cells).
    pub blank_accuracy: f64,
    pub mean_segments: f64,
    pub seconds: f64,
}

/// Runs every example of `set` (in batches of `batch`) and scores the predictions.
pub fn evaluate(
    predictor: &mut dyn Predictor,
    set: &EvalSet,
    halting: Halting,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Report, Vec<Prediction>)> {
    let seq = predictor.config().seq_len as usize;
    if let Some(e) = set.examples.iter().find(|e| e.inputs.len() != seq) {
        bail!("an example has {} tokens, the model takes {seq}", e.inputs.len());
    }
    let start = Instant::now();
    let mut predictions = Vec::with_capacity(set.examples.len());
    for part in set.examples.chunks(batch.max(1)) {
        predictions.extend(predictor.predict(part, halting)?);
        progress(part.len());
    }
    let mut r = Report { examples: set.examples.len(), ..Default::default() };
    let (mut cells, mut right, mut blanks, mut blank_right, mut exact, mut segs) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0u64);
    for (e, p) in set.examples.iter().zip(&predictions) {
        let mut all = true;
        for ((&label, &input), &pred) in e.labels.iter().zip(&e.inputs).zip(&p.tokens) {
            if label < 0 {
                continue;
            }
            let ok = i64::from(pred) == label;
            cells += 1;
            right += usize::from(ok);
            all &= ok;
            if i64::from(input) != label {
                blanks += 1;
                blank_right += usize::from(ok);
            }
        }
        exact += usize::from(all);
        segs += u64::from(p.segments);
    }
    let n = set.examples.len().max(1) as f64;
    r.exact_accuracy = exact as f64 / n;
    r.cell_accuracy = right as f64 / cells.max(1) as f64;
    r.blank_accuracy = blank_right as f64 / blanks.max(1) as f64;
    r.mean_segments = segs as f64 / n;
    r.seconds = start.elapsed().as_secs_f64();
    Ok((r, predictions))
}
