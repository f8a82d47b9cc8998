//! A batch through a model, every segment's outputs kept and named as the reference's golden
//! files name them: what `hrm infer` writes to safetensors and the Python package returns as
//! numpy arrays.

use anyhow::{Context, Result};
use hrm_runtime::{Halting, Model};

/// One segment's outputs; the latents only when asked for.
pub struct Segment {
    pub logits: Vec<f32>,
    pub q_halt: f32,
    pub q_continue: f32,
    pub z_h: Vec<f32>,
    pub z_l: Vec<f32>,
}

/// What one example did: its segments in order, and the predictions after the last.
pub struct Example {
    pub segments: Vec<Segment>,
    pub predictions: Vec<u32>,
}

/// Runs every `(tokens, puzzle_identifier)` example: `Halting::Fixed` and `Adaptive` run at most
/// `halt_max_steps` segments (`Adaptive` stops at the first halt), `Segments(n)` exactly `n`.
/// With `latents`, each segment keeps its carry `z_H`/`z_L` (a fixed-point blob has none).
/// `progress` is called once per finished example, from the worker threads.
pub fn run(
    model: Model<'_>,
    rows: &[(Vec<u32>, u32)],
    threads: usize,
    halting: Halting,
    latents: bool,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<Example>> {
    let c = *model.config();
    let limit = match halting {
        Halting::Fixed | Halting::Adaptive => c.halt_max_steps,
        Halting::Segments(n) => n,
    };
    let items: Vec<(usize, &(Vec<u32>, u32))> = rows.iter().enumerate().collect();
    crate::in_sessions(model, &items, threads, |session, (b, (row, id))| {
        session.reset(row, *id).with_context(|| format!("example {b}"))?;
        let mut segments = Vec::new();
        for _ in 0..limit {
            let outcome = session.step()?;
            let mut logits = vec![0.0f32; c.seq_len as usize * c.vocab_size as usize];
            session.logits_into(&mut logits)?;
            let (z_h, z_l) =
                if latents { (session.z_h().to_vec(), session.z_l().to_vec()) } else { Default::default() };
            segments.push(Segment { logits, q_halt: outcome.q_halt, q_continue: outcome.q_continue, z_h, z_l });
            if halting == Halting::Adaptive && outcome.halt_requested {
                break;
            }
        }
        let mut predictions = vec![0u32; c.seq_len as usize];
        session.predictions(&mut predictions)?;
        progress();
        Ok(Example { segments, predictions })
    })
}

/// Segment `s` of an example, or its last when it halted before.
fn at(e: &Example, s: usize) -> Option<&Segment> {
    e.segments.get(s).or(e.segments.last())
}

/// The values of a named output.
pub enum Values {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// A named output: name, shape, values (row-major).
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// The outputs of `examples` under the golden files' names: for every segment `s` up to the
/// most any example ran, `segment{s}.logits` `[B, seq_len, V]`, `segment{s}.q_halt` and
/// `segment{s}.q_continue` `[B]` and, with `latents` and when the examples kept them,
/// `segment{s}.z_H` / `segment{s}.z_L` `[B, S, h]`; then `segments` `[B]` (how many each ran)
/// and `predictions` `[B, seq_len]`. An example that halted early repeats its last segment's
/// outputs in the later ones.
pub fn named(examples: &[Example], model: &Model<'_>, latents: bool) -> Vec<Output> {
    let c = model.config();
    let (batch, seq_len, vocab, h) =
        (examples.len(), c.seq_len as usize, c.vocab_size as usize, c.hidden_size as usize);
    let most = examples.iter().map(|e| e.segments.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for s in 0..most {
        let gather = |f: &dyn Fn(&Segment) -> &[f32]| -> Vec<f32> {
            examples.iter().filter_map(|e| at(e, s)).flat_map(|seg| f(seg).iter().copied()).collect()
        };
        let f32s =
            |name: String, shape: Vec<usize>, values: Vec<f32>| Output { name, shape, values: Values::F32(values) };
        out.push(f32s(format!("segment{s}.logits"), vec![batch, seq_len, vocab], gather(&|seg| &seg.logits)));
        out.push(f32s(format!("segment{s}.q_halt"), vec![batch], gather(&|seg| std::slice::from_ref(&seg.q_halt))));
        out.push(f32s(
            format!("segment{s}.q_continue"),
            vec![batch],
            gather(&|seg| std::slice::from_ref(&seg.q_continue)),
        ));
        let rows = examples.iter().filter_map(|e| at(e, s)).map(|seg| seg.z_h.len()).next().unwrap_or(0) / h.max(1);
        if latents && rows > 0 {
            out.push(f32s(format!("segment{s}.z_H"), vec![batch, rows, h], gather(&|seg| &seg.z_h)));
            out.push(f32s(format!("segment{s}.z_L"), vec![batch, rows, h], gather(&|seg| &seg.z_l)));
        }
    }
    out.push(Output {
        name: "segments".into(),
        shape: vec![batch],
        values: Values::I32(examples.iter().map(|e| e.segments.len() as i32).collect()),
    });
    out.push(Output {
        name: "predictions".into(),
        shape: vec![batch, seq_len],
        values: Values::I32(examples.iter().flat_map(|e| e.predictions.iter().map(|&p| p as i32)).collect()),
    });
    out
}
