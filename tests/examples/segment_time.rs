//! Times single ACT segments of a blob file, batch 1, for scripts/reference-bench (which runs
//! PyTorch and ONNX Runtime on the same model). Every segment starts from the carry the previous
//! one left, as in `hrm infer`; the input is embedded once, at reset.
//!
//! ```sh
//! cargo run --release -p hrm-tests --example segment_time -- model.blob [--threads 1,2] [--reps 20] [--warmup 3]
//! ```
//! prints one line per thread count:
//! `segment_time blob=model.blob threads=1 reps=20 median_ms=… min_ms=…`.
//!
//! With `--serve` (one thread count) it reads a count `n` per line on stdin and answers with the
//! `n` segment times in ms on one line, so that a driver can interleave it with other engines.

use std::io::{BufRead, Write};
use std::time::Instant;

use hrm_runtime::{Model, Session};

struct Args {
    blob: String,
    threads: Vec<usize>,
    reps: usize,
    warmup: usize,
    serve: bool,
}

fn parse_args() -> Args {
    let mut args = Args { blob: String::new(), threads: vec![1, 2], reps: 20, warmup: 3, serve: false };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, what: &str| -> usize {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{what} needs a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => {
                let list = it.next().expect("--threads needs a list such as 1,2");
                args.threads = list.split(',').map(|t| t.trim().parse().expect("--threads: not a number")).collect();
            }
            "--reps" => args.reps = number(it.next(), "--reps").max(1),
            "--warmup" => args.warmup = number(it.next(), "--warmup"),
            "--serve" => args.serve = true,
            other if !other.starts_with('-') && args.blob.is_empty() => args.blob = other.to_string(),
            other => panic!("unexpected argument {other}"),
        }
    }
    assert!(!args.blob.is_empty(), "usage: segment_time BLOB [--threads 1,2] [--reps N] [--warmup N] [--serve]");
    args
}

/// `bytes` copied to a 64-byte aligned start: the runtime reads weights in place.
fn aligned(bytes: &[u8], storage: &mut Vec<u8>) -> std::ops::Range<usize> {
    *storage = vec![0u8; bytes.len() + 64];
    let start = storage.as_ptr().align_offset(64);
    storage[start..start + bytes.len()].copy_from_slice(bytes);
    start..start + bytes.len()
}

/// Runs `f` directly for one thread, else inside a rayon pool of `threads` (the runtime's
/// `threads` feature splits each product's rows over the pool it is called from).
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    if threads < 2 {
        return f();
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("cannot start the pool").install(f)
}

fn time_segments(session: &mut Session<'_, '_>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            session.step().expect("segment failed");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let args = parse_args();
    let file = std::fs::read(&args.blob).unwrap_or_else(|e| panic!("cannot read {}: {e}", args.blob));
    let mut storage = Vec::new();
    let range = aligned(&file, &mut storage);
    let model = Model::from_bytes(&storage[range]).expect("not a valid blob");
    let c = *model.config();
    // The token pattern of the criterion bench and of bench.py; any valid board costs the same.
    let tokens: Vec<u32> = (0..c.seq_len).map(|i| 1 + i % (c.vocab_size - 1)).collect();
    if args.serve {
        assert_eq!(args.threads.len(), 1, "--serve takes one thread count");
    }
    for &threads in &args.threads {
        with_threads(threads, || {
            let mut arena = vec![0u8; model.arena_bytes()];
            let mut session = Session::new(model, &mut arena).expect("arena");
            session.reset(&tokens, 0).expect("reset");
            time_segments(&mut session, args.warmup);
            if args.serve {
                serve(&mut session);
                return;
            }
            let mut times = time_segments(&mut session, args.reps);
            times.sort_by(f64::total_cmp);
            println!(
                "segment_time blob={} threads={threads} reps={} median_ms={:.2} min_ms={:.2}",
                args.blob,
                times.len(),
                times[times.len() / 2],
                times[0]
            );
        });
    }
}

fn serve(session: &mut Session<'_, '_>) {
    println!("ready");
    let mut out = std::io::stdout().lock();
    out.flush().ok();
    for line in std::io::stdin().lock().lines() {
        let Ok(n) = line.expect("stdin").trim().parse::<usize>() else { break };
        let times: Vec<String> = time_segments(session, n).iter().map(|t| format!("{t:.4}")).collect();
        writeln!(out, "{}", times.join(" ")).ok();
        out.flush().ok();
    }
}
