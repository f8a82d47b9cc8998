//! `hrm solve sudoku`: puzzles in, one answer line per puzzle out.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hrm_runtime::ensemble::{self, Select};
use hrm_runtime::sudoku::{self, Grid};
use hrm_runtime::Halting;

use crate::trace::{self, Recorder};
use crate::{HaltingArgs, Outcome};

#[derive(Args)]
pub struct SudokuArgs {
    /// Puzzles: 81 characters each, `1`-`9` a given, `.` or `0` a blank.
    puzzles: Vec<String>,
    /// Read puzzles from a file (`-` for stdin): one per line, or `puzzle,solution` CSV rows
    /// (a `puzzle,...` header line, blank lines and `#` comments are skipped).
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// A model blob (default: the Sudoku model built into `hrm`, see models/sudoku).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Exit with status 2 unless every answer is a valid completion of its puzzle.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    halting: HaltingArgs,
    /// Solver threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// After each answer, a space and the digest (FNV-1a, 8 hex digits) of every segment's
    /// logits and Q values, as the firmware's `digest` build writes it: the same blob and
    /// puzzle give the same digest on every core where the arithmetic is the same bits.
    #[arg(long)]
    digest: bool,
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Write every segment of the solve (one puzzle): the board as the model predicts it, the
    /// cells that changed, per-cell confidence, the Q values and the halting decision, every
    /// trajectory of an ensemble, and the latents on their two principal components. By the
    /// name: `.html` a self-contained page, `.png` / `.svg` a picture, `.json` the data, `-`
    /// the terminal (before the answer line).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

pub use hrm_host::ensemble_args::EnsembleArgs;

/// A puzzle and where it came from, for error messages.
pub struct Source {
    /// Where it came from: `argument N` or `file:line`.
    pub label: String,
    pub text: String,
}

/// The puzzles of a file (`-`: stdin), one per line, each labelled `file:line`: the first
/// comma-separated field (so `puzzle,solution` CSV rows work), skipping blank lines, `#`
/// comments and a `puzzle` header.
pub fn puzzle_lines(path: &std::path::Path) -> Result<Vec<Source>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let line = line.trim_end_matches(['\r', '\n']).trim();
        let first = line.split(',').next().unwrap_or("").trim();
        if first.is_empty() || first.starts_with('#') || (n == 0 && first.eq_ignore_ascii_case("puzzle")) {
            continue;
        }
        out.push(Source { label: format!("{}:{}", path.display(), n + 1), text: first.to_string() });
    }
    Ok(out)
}

fn collect(args: &SudokuArgs) -> Result<Vec<Source>> {
    let mut out: Vec<Source> = args
        .puzzles
        .iter()
        .enumerate()
        .map(|(i, p)| Source { label: format!("argument {}", i + 1), text: p.trim().to_string() })
        .collect();
    if let Some(path) = &args.file {
        out.extend(puzzle_lines(path)?);
    }
    if out.is_empty() {
        bail!("no puzzles given (pass them as arguments or with --file)");
    }
    Ok(out)
}

pub fn sudoku(args: &SudokuArgs) -> Result<Outcome> {
    let sources = collect(args)?;
    // Refuse the whole batch before any work if one puzzle is malformed.
    let mut grids: Vec<Grid> = Vec::with_capacity(sources.len());
    let mut problems = Vec::new();
    for s in &sources {
        match sudoku::parse(&s.text) {
            Ok(g) => grids.push(g),
            Err(e) => problems.push(format!("{}: puzzle {:?} {e}", s.label, shorten(&s.text))),
        }
    }
    if !problems.is_empty() {
        bail!("malformed puzzle{}:\n  {}", if problems.len() > 1 { "s" } else { "" }, problems.join("\n  "));
    }

    let blob;
    let (model, name) = match &args.model {
        Some(path) => {
            blob = crate::read_blob(path)?;
            (crate::load_model(path, &blob)?, path.display().to_string())
        }
        None => (crate::default_sudoku_model()?, "the built-in model".to_string()),
    };
    let c = model.config();
    if c.seq_len as usize != sudoku::CELLS || c.vocab_size != sudoku::VOCAB {
        bail!(
            "{} is not a Sudoku model (seq_len {}, vocab {}; a Sudoku model has {} and {})",
            name,
            c.seq_len,
            c.vocab_size,
            sudoku::CELLS,
            sudoku::VOCAB
        );
    }
    if let Some(path) = &args.trace {
        trace::Format::of(path)?;
        if grids.len() != 1 {
            bail!("--trace follows one puzzle, got {}", grids.len());
        }
    }
    let halting = args.halting.halting();
    let plan = args.ensemble.plan(halting)?;
    if args.digest && plan.is_some() {
        bail!("--digest names the segments of one plain trajectory: it cannot be combined with --ensemble above 1, --adaptive, --max-segments or --time-limit");
    }
    // One session (and arena) per thread over the shared model; answers keep the input order.
    let threads = crate::threads(args.threads);
    let bar = crate::progress_bar(grids.len() as u64, "puzzles", plan.is_some() && grids.len() > 1);
    let time_limit = args.ensemble.time_limit.map(std::time::Duration::from_secs_f64);
    let log = args.ensemble.trajectories_out.is_some();
    let started = Instant::now();
    // The trace's recorder (one puzzle, so one thread uses it).
    let recorder = std::sync::Mutex::new(grids.first().filter(|_| args.trace.is_some()).map(|g| Recorder::new(*g)));
    let record = |session: &hrm_runtime::Session<'_, '_>, progress: &ensemble::Progress| -> Result<()> {
        let mut guard = recorder.lock().map_err(|_| anyhow::anyhow!("the trace's recorder failed"))?;
        match guard.as_mut() {
            Some(r) => r.segment(session, progress),
            None => Ok(()),
        }
    };
    let solved = hrm_host::in_sessions(model, &grids, threads, |session, grid| {
        let begun = Instant::now();
        let solution = match &plan {
            None => {
                session.reset(&sudoku::to_tokens(grid), 0)?;
                let mut digest = hrm_runtime::DIGEST_START;
                let mut failed = None;
                let mut segments_run = 0u64;
                let segments = session.run_with(halting, |s, outcome| {
                    digest = s.outputs_digest(digest);
                    segments_run += 1;
                    let mut predictions = [0u32; sudoku::CELLS];
                    let traced = s.predictions(&mut predictions).map_err(anyhow::Error::from).and_then(|()| {
                        let answer = sudoku::from_tokens(&predictions);
                        let last = outcome.at_max || (halting == Halting::Adaptive && outcome.halt_requested);
                        record(
                            s,
                            &ensemble::Progress {
                                trajectory: 0,
                                segment: outcome.index,
                                q_halt: outcome.q_halt,
                                q_continue: outcome.q_continue,
                                answer: &answer,
                                valid: sudoku::is_solution(grid, &answer),
                                halt_requested: outcome.halt_requested,
                                last,
                                segments: segments_run,
                                symmetry: &ensemble::SudokuSymmetry::IDENTITY,
                            },
                        )
                    });
                    if let Err(e) = traced {
                        failed.get_or_insert(e);
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                let mut predictions = [0u32; sudoku::CELLS];
                session.predictions(&mut predictions)?;
                Solution {
                    answer: sudoku::from_tokens(&predictions),
                    segments: u64::from(segments),
                    trajectories: 1,
                    digest,
                    seconds: 0.0,
                    rows: Vec::new(),
                    chosen: Some(0),
                    reason: "the last segment of the one trajectory",
                }
            }
            Some(plan) => {
                let mut rows = Vec::new();
                let mut first_valid: Option<u32> = None;
                let mut failed = None;
                let outcome = ensemble::solve_sudoku(session, grid, plan, |p, s| {
                    if let Err(e) = record(s, p) {
                        failed.get_or_insert(e);
                        return false;
                    }
                    if log {
                        if p.valid && first_valid.is_none() {
                            first_valid = Some(p.segment);
                        }
                        if p.last {
                            let answer: String = p.answer.iter().map(|&d| char::from(b'0' + d)).collect();
                            rows.push(format!(
                                "{},{},{},{},{},{answer}",
                                p.trajectory,
                                p.segment + 1,
                                first_valid.map_or(-1, i64::from),
                                p.q_halt,
                                u8::from(p.valid)
                            ));
                            first_valid = None;
                        }
                    }
                    time_limit.is_none_or(|limit| begun.elapsed() < limit)
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                Solution {
                    answer: outcome.answer,
                    segments: outcome.segments,
                    trajectories: outcome.trajectories,
                    digest: 0,
                    seconds: 0.0,
                    rows,
                    chosen: outcome.chosen,
                    reason: trace::reason(outcome.reason),
                }
            }
        };
        bar.inc(1);
        Ok(Solution { seconds: begun.elapsed().as_secs_f64(), ..solution })
    })?;
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    if let (Some(path), Some(recorder), Some(grid), Some(s)) =
        (&args.trace, recorder.into_inner().ok().flatten(), grids.first(), solved.first())
    {
        let trace = recorder.finish(name.clone(), s.answer, sudoku::is_solution(grid, &s.answer), s.chosen, s.reason);
        trace::write(&trace, path)?;
        if path.as_os_str() != "-" {
            eprintln!("wrote the trace of {} segments to {}", s.segments, path.display());
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut valid, mut segments, mut trajectories) = (0usize, 0u64, 0u64);
    for (grid, s) in grids.iter().zip(&solved) {
        valid += usize::from(sudoku::is_solution(grid, &s.answer));
        segments += s.segments;
        trajectories += u64::from(s.trajectories);
        let line: String = s.answer.iter().map(|&d| char::from(b'0' + d)).collect();
        if args.digest {
            writeln!(out, "{line} {:08x}", s.digest)?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    if let Some(path) = &args.ensemble.trajectories_out {
        let mut text =
            String::from("puzzle,trajectory,segments,first_valid_segment,q_halt,final_valid,answer,puzzle_seconds\n");
        for (i, s) in solved.iter().enumerate() {
            for row in &s.rows {
                // The puzzle's wall time on its one thread, on each of its rows: what the
                // percentiles of a set split over several runs are computed from.
                text.push_str(&format!("{},{row},{:.6}\n", i + 1, s.seconds));
            }
        }
        crate::write_atomically(path, text.as_bytes())?;
    }
    let n = grids.len();
    eprintln!(
        "{valid}/{n} answers are valid completions ({:.1}%), {:.2} segments per puzzle",
        100.0 * valid as f64 / n as f64,
        segments as f64 / n as f64
    );
    if let Some(plan) = &plan {
        let mut times: Vec<f64> = solved.iter().map(|s| s.seconds).collect();
        times.sort_by(f64::total_cmp);
        let at =
            |q: f64| times.get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        eprintln!(
            "ensemble of up to {} trajectories ({}{}, select {}): {:.2} trajectories per puzzle, {segments} segments, \
             time per puzzle median {:.3} s, 90th percentile {:.3} s, max {:.3} s ({threads} thread{}, {wall:.1} s in all)",
            plan.trajectories,
            if plan.augment { "symmetries" } else { "no symmetries" },
            plan.noise.map_or(String::new(), |n| format!(", noise {}{}", n.sigma, if n.z_h { " on z_L and z_H" } else { "" })),
            match plan.select {
                Select::Valid => "valid",
                Select::Q => "q",
                Select::Vote => "vote",
            },
            trajectories as f64 / n as f64,
            at(0.5),
            at(0.9),
            times.last().copied().unwrap_or(0.0),
            if threads == 1 { "" } else { "s" },
        );
    }
    Ok(if args.check && valid < n { Outcome::CheckFailed } else { Outcome::Ok })
}

/// One puzzle's answer and what it cost.
struct Solution {
    answer: Grid,
    segments: u64,
    trajectories: u32,
    digest: u32,
    seconds: f64,
    /// `--trajectories-out` rows, without the puzzle column.
    rows: Vec<String>,
    /// The trajectory the answer came from, and why (for a trace).
    chosen: Option<u32>,
    reason: &'static str,
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s.to_string()
    }
}
