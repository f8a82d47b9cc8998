//! The ensemble ablation (ENSEMBLES.md, "How to reproduce"): accuracy and compute per puzzle
//! against the number of trajectories K, for each kind of trajectory and each selection rule.
//!
//! ```text
//! cargo run --release -p hrm-tests --example ensemble_ablation -- \
//!     --set hard=../shared/data/sudoku/hard-1000.csv --limit 100 --k 64 \
//!     --mode sym --mode noise:0.1 --mode both:0.1 [--early] [--model BLOB] [--threads 2] --out DIR
//! ```
//!
//! Every trajectory runs to its end (no early exit), and what happened in each is kept: its
//! first valid segment, its final Q-halt and its final answer. Trajectory k depends on (seed, k)
//! only, so the first K trajectories of a run are exactly an ensemble of K, and one run gives
//! every K ≤ --k for all three rules: `valid` (the first valid answer; its cost the segments up
//! to it), `q` (the highest final Q-halt) and `vote` (per-cell majority), both costing all K
//! trajectories. `--early` stops each puzzle at its first valid answer instead (the `valid`
//! rule only, far cheaper on the puzzles it solves). Writes DIR/ablation.csv, DIR/ablation.md
//! and DIR/ablation.png; `--replot ablation.csv --out DIR` draws DIR/ablation.png again from a
//! run's CSV.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hrm_runtime::ensemble::{self, Noise, Plan, Select};
use hrm_runtime::sudoku::{self, Grid};
use hrm_runtime::{Halting, Model, Session};

/// The selection rules, in the order of the table and of the plot's markers.
const RULES: [&str; 3] = ["valid", "q", "vote"];
/// ablation.csv's header: what `--replot` reads back.
const CSV_HEADER: &str = "set,mode,rule,k,solved,puzzles,accuracy,mean_segments,median_s,p90_s";

#[derive(Clone, Copy)]
struct Mode {
    augment: bool,
    sigma: f32,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        let (kind, sigma) = s.split_once(':').map_or((s, None), |(k, v)| (k, Some(v)));
        let sigma = sigma.map(|v| v.parse::<f32>().map_err(|e| format!("--mode {s}: {e}"))).transpose()?;
        match (kind, sigma) {
            ("sym", None) => Ok(Mode { augment: true, sigma: 0.0 }),
            ("noise", Some(sigma)) => Ok(Mode { augment: false, sigma }),
            ("both", Some(sigma)) => Ok(Mode { augment: true, sigma }),
            _ => Err(format!("--mode {s}: expected sym, noise:SIGMA or both:SIGMA")),
        }
    }

    fn name(&self) -> String {
        match (self.augment, self.sigma > 0.0) {
            (true, false) => "symmetries".into(),
            (false, _) => format!("noise σ={}", self.sigma),
            (true, true) => format!("symmetries + noise σ={}", self.sigma),
        }
    }
}

/// What one trajectory did.
#[derive(Clone, Copy)]
struct Trajectory {
    valid_at: Option<u32>,
    segments: u32,
    q_halt: f32,
    answer: Grid,
}

struct PuzzleRun {
    trajectories: Vec<Trajectory>,
    seconds: f64,
    segments: u64,
}

struct Args {
    sets: Vec<(String, PathBuf)>,
    limit: usize,
    k: u32,
    modes: Vec<Mode>,
    early: bool,
    model: Option<PathBuf>,
    threads: usize,
    seed: u64,
    out: PathBuf,
    replot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sets: Vec::new(),
        limit: usize::MAX,
        k: 64,
        modes: Vec::new(),
        early: false,
        model: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 0,
        out: PathBuf::from("target/ensemble"),
        replot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--set" => {
                let v = value()?;
                let (name, path) = v.split_once('=').ok_or(format!("--set {v}: expected NAME=FILE"))?;
                a.sets.push((name.to_string(), PathBuf::from(path)));
            }
            "--limit" => a.limit = value()?.parse().map_err(|e| format!("--limit: {e}"))?,
            "--k" => a.k = value()?.parse().map_err(|e| format!("--k: {e}"))?,
            "--mode" => {
                let v = value()?;
                a.modes.push(Mode::parse(&v)?);
            }
            "--early" => a.early = true,
            "--model" => a.model = Some(PathBuf::from(value()?)),
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out" => a.out = PathBuf::from(value()?),
            "--replot" => a.replot = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.replot.is_none() && (a.sets.is_empty() || a.modes.is_empty() || a.k == 0) {
        return Err("give at least one --set NAME=FILE and one --mode, and --k ≥ 1".into());
    }
    Ok(a)
}

fn run_set(model: Model<'_>, puzzles: &[Grid], plan: &Plan, threads: usize) -> Vec<PuzzleRun> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let mut runs: Vec<Option<PuzzleRun>> = (0..puzzles.len()).map(|_| None).collect();
    let results: Vec<Vec<(usize, PuzzleRun)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut arena = vec![0u8; model.arena_bytes()];
                    let mut session = Session::new(model, &mut arena).expect("arena");
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(grid) = puzzles.get(i) else { break };
                        let started = Instant::now();
                        let mut trajectories = Vec::new();
                        let mut valid_at = None;
                        let outcome = ensemble::solve_sudoku(&mut session, grid, plan, |p, _| {
                            if p.valid && valid_at.is_none() {
                                valid_at = Some(p.segment);
                            }
                            if p.last {
                                trajectories.push(Trajectory {
                                    valid_at,
                                    segments: p.segment + 1,
                                    q_halt: p.q_halt,
                                    answer: *p.answer,
                                });
                                valid_at = None;
                            }
                            true
                        })
                        .expect("ensemble");
                        mine.push((
                            i,
                            PuzzleRun {
                                trajectories,
                                seconds: started.elapsed().as_secs_f64(),
                                segments: outcome.segments,
                            },
                        ));
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_multiple_of(10) || n == puzzles.len() {
                            eprint!("\r  {n}/{} puzzles", puzzles.len());
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    eprintln!();
    for (i, run) in results.into_iter().flatten() {
        runs[i] = Some(run);
    }
    runs.into_iter().map(|r| r.expect("every puzzle ran")).collect()
}

/// Per-cell plurality over the answers (ties: the smaller digit), as ensemble::Select::Vote.
fn vote(answers: &[Trajectory]) -> Grid {
    std::array::from_fn(|cell| {
        let mut counts = [0u32; 10];
        for t in answers {
            counts[t.answer[cell] as usize] += 1;
        }
        (0..10).fold(0, |w, d| if counts[d] > counts[w] { d } else { w }) as u8
    })
}

struct Row {
    set: String,
    mode: String,
    rule: &'static str,
    k: u32,
    solved: usize,
    puzzles: usize,
    mean_segments: f64,
    median_s: f64,
    p90_s: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
}

/// The rows of one (set, mode) run for every K of 1, 4, 16, 64, 256, … up to the run's K.
fn rows(set: &str, mode: &str, puzzles: &[Grid], runs: &[PuzzleRun], kmax: u32, early: bool) -> Vec<Row> {
    let total_segments: u64 = runs.iter().map(|r| r.segments).sum();
    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    let per_segment = seconds / total_segments.max(1) as f64;
    let mut ks: Vec<u32> = std::iter::successors(Some(1u32), |k| k.checked_mul(4)).take_while(|&k| k < kmax).collect();
    ks.push(kmax);
    let mut out = Vec::new();
    let rules: &[&'static str] = if early { &RULES[..1] } else { &RULES };
    for &k in &ks {
        for &rule in rules {
            let mut solved = 0;
            let mut costs = Vec::with_capacity(runs.len());
            for (grid, run) in puzzles.iter().zip(runs) {
                let first: Vec<Trajectory> = run.trajectories.iter().take(k as usize).copied().collect();
                let (ok, segments) = match rule {
                    "valid" => {
                        let mut spent = 0u64;
                        let mut ok = false;
                        for t in &first {
                            if let Some(at) = t.valid_at {
                                spent += u64::from(at) + 1;
                                ok = true;
                                break;
                            }
                            spent += u64::from(t.segments);
                        }
                        (ok, spent)
                    }
                    "q" => {
                        let best = first.iter().max_by(|a, b| a.q_halt.total_cmp(&b.q_halt));
                        let spent = first.iter().map(|t| u64::from(t.segments)).sum();
                        (best.is_some_and(|t| sudoku::is_solution(grid, &t.answer)), spent)
                    }
                    _ => {
                        let spent = first.iter().map(|t| u64::from(t.segments)).sum();
                        (sudoku::is_solution(grid, &vote(&first)), spent)
                    }
                };
                solved += usize::from(ok);
                costs.push(segments as f64);
            }
            let mean_segments = costs.iter().sum::<f64>() / costs.len().max(1) as f64;
            let mut times: Vec<f64> = costs.iter().map(|s| s * per_segment).collect();
            times.sort_by(f64::total_cmp);
            out.push(Row {
                set: set.to_string(),
                mode: mode.to_string(),
                rule,
                k,
                solved,
                puzzles: puzzles.len(),
                mean_segments,
                median_s: quantile(&times, 0.5),
                p90_s: quantile(&times, 0.9),
            });
        }
    }
    out
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ensemble_ablation: {e}");
            std::process::exit(2);
        }
    };
    if let Some(csv) = &args.replot {
        std::fs::create_dir_all(&args.out).expect("create --out");
        if let Err(e) = replot(csv, &args.out.join("ablation.png")) {
            eprintln!("ensemble_ablation: --replot {}: {e}", csv.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}/ablation.png", args.out.display());
        return;
    }
    let blob_path = args.model.clone().unwrap_or_else(|| hrm_tests::repo_root().join("models/sudoku/sudoku.blob"));
    let blob = hrm_convert::AlignedBlob::read(&blob_path).expect("read the blob");
    let model = Model::from_bytes(&blob).expect("a valid blob");
    std::fs::create_dir_all(&args.out).expect("create --out");
    let mut all = Vec::new();
    let mut panels = Vec::new();
    for (set, path) in &args.sets {
        let mut pairs = hrm_trainer::tasks::sudoku::read_csv(path).expect("read the puzzles");
        pairs.truncate(args.limit);
        let puzzles: Vec<Grid> = pairs.iter().map(|p| p.0).collect();
        let mut curves = Vec::new();
        for (family, mode) in args.modes.iter().enumerate() {
            let plan = Plan {
                trajectories: args.k,
                augment: mode.augment,
                noise: (mode.sigma > 0.0).then_some(Noise { sigma: mode.sigma, seed: 0, z_h: false }),
                seed: args.seed,
                select: if args.early { Select::Valid } else { Select::Q },
                halting: Halting::Fixed,
                max_segments: u64::MAX,
            };
            eprintln!(
                "{set} ({} puzzles), {}, K = {}{}",
                puzzles.len(),
                mode.name(),
                args.k,
                if args.early { ", early exit" } else { "" }
            );
            let started = Instant::now();
            let runs = run_set(model, &puzzles, &plan, args.threads);
            eprintln!("  {:.0} s on {} threads", started.elapsed().as_secs_f64(), args.threads);
            let rows = rows(set, &mode.name(), &puzzles, &runs, args.k, args.early);
            for (variant, rule) in RULES.into_iter().enumerate() {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.rule == rule)
                    .map(|r| (r.mean_segments, 100.0 * r.solved as f64 / r.puzzles as f64))
                    .collect();
                if !points.is_empty() {
                    let name = format!("{}, {rule}", mode.name());
                    curves.push(hrm_trainer::plot::Curve { name, points, family, variant });
                }
            }
            all.extend(rows);
        }
        panels.push((format!("{set} ({} puzzles)", puzzles.len()), curves));
    }
    write_results(&args.out, &all, &panels);
}

/// Draws the plot again from an `ablation.csv` (sets, kinds and rules in the file's order),
/// without running anything.
fn replot(csv: &Path, png: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(csv).map_err(|e| e.to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err("not an ablation.csv (its header differs)".into());
    }
    let mut panels: Vec<(String, Vec<hrm_trainer::plot::Curve>)> = Vec::new();
    let mut last_set = None;
    let mut modes: Vec<String> = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let bad = || format!("line {}: {line}", n + 2);
        let [set, mode, rule, _k, _solved, puzzles, accuracy, segments, ..] = f[..] else { return Err(bad()) };
        let point = (segments.parse::<f64>().map_err(|_| bad())?, accuracy.parse::<f64>().map_err(|_| bad())?);
        let variant = RULES.iter().position(|r| *r == rule).ok_or_else(bad)?;
        if last_set != Some(set) {
            last_set = Some(set);
            panels.push((format!("{set} ({puzzles} puzzles)"), Vec::new()));
        }
        let family = modes.iter().position(|m| m == mode).unwrap_or_else(|| {
            modes.push(mode.to_string());
            modes.len() - 1
        });
        let curves = &mut panels.last_mut().ok_or_else(bad)?.1;
        let name = format!("{mode}, {rule}");
        match curves.iter_mut().find(|c| c.name == name) {
            Some(c) => c.points.push(point),
            None => curves.push(hrm_trainer::plot::Curve { name, points: vec![point], family, variant }),
        }
    }
    hrm_trainer::plot::plot_ensemble(&panels, png).map_err(|e| e.to_string())
}

fn write_results(out: &Path, rows: &[Row], panels: &[(String, Vec<hrm_trainer::plot::Curve>)]) {
    let mut csv = format!("{CSV_HEADER}\n");
    let mut md = String::from(
        "| set | trajectories | rule | K | solved | mean segments | median s | p90 s |\n|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let acc = 100.0 * r.solved as f64 / r.puzzles as f64;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{acc:.1},{:.1},{:.3},{:.3}\n",
            r.set, r.mode, r.rule, r.k, r.solved, r.puzzles, r.mean_segments, r.median_s, r.p90_s
        ));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} = {acc:.1} % | {:.1} | {:.2} | {:.2} |\n",
            r.set, r.mode, r.rule, r.k, r.solved, r.puzzles, r.mean_segments, r.median_s, r.p90_s
        ));
    }
    std::fs::write(out.join("ablation.csv"), csv).expect("write ablation.csv");
    std::fs::write(out.join("ablation.md"), &md).expect("write ablation.md");
    hrm_trainer::plot::plot_ensemble(panels, &out.join("ablation.png")).expect("write ablation.png");
    print!("{md}");
    eprintln!("wrote {}/ablation.{{csv,md,png}}", out.display());
}
