//! `hrm solve maze`: mazes in the text format of `../shared/data/maze` in, each printed back
//! with the model's path marked `o`; a breadth-first search over each grid judges the paths.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hrm_runtime::ensemble;
use hrm_runtime::maze::{self, SearchSpace, MAX_SIDE};

use crate::solve::EnsembleArgs;
use crate::{HaltingArgs, Outcome};

#[derive(Args)]
pub struct MazeArgs {
    /// The mazes (`-`: stdin): `n` lines of `n` characters each (`#` wall, space open, `S`
    /// start, `G` goal; an `o` path already marked is ignored), a blank line between mazes.
    /// Trailing spaces are part of the maze.
    file: PathBuf,
    /// A model blob trained on mazes of this size (no maze model is built into `hrm` yet:
    /// models/maze/README.md says how to train one).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Exit with status 2 unless every answer is a shortest S→G path.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    halting: HaltingArgs,
    /// Solver threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    ensemble: EnsembleArgs,
}

/// One maze of the input: where it starts (for errors), its side and cells row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maze {
    pub line: usize,
    pub side: usize,
    pub cells: Vec<u8>,
}

/// Splits `text` into mazes: runs of non-empty lines, each a square of `# SGo` characters with
/// one `S` and one `G` (checked by the runtime). `origin` names the input in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Maze>> {
    let mut mazes = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let mut first = 0;
    let mut problems = Vec::new();
    let lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    for (i, line) in lines.chain(std::iter::once("")).enumerate() {
        if !line.is_empty() {
            if rows.is_empty() {
                first = i + 1;
            }
            rows.push(line);
            continue;
        }
        if rows.is_empty() {
            continue;
        }
        let side = rows.len();
        match rows.iter().position(|r| r.len() != side) {
            Some(bad) => problems.push(format!(
                "{origin}:{}: a line of {} characters in a maze of {side} lines (mazes are square; trailing spaces count)",
                first + bad,
                rows[bad].len()
            )),
            None => {
                let cells: Vec<u8> = rows.iter().flat_map(|r| r.bytes()).collect();
                match maze::validate(&cells, side) {
                    Ok(()) => mazes.push(Maze { line: first, side, cells }),
                    Err(e) => problems.push(format!("{origin}:{first}: the maze {e}")),
                }
            }
        }
        rows.clear();
    }
    if !problems.is_empty() {
        bail!("malformed maze{}:\n  {}", if problems.len() > 1 { "s" } else { "" }, problems.join("\n  "));
    }
    if mazes.is_empty() {
        bail!("{origin}: no mazes");
    }
    Ok(mazes)
}

fn read_input(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_string(&mut text).context("cannot read the mazes from stdin")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(text)
}

/// A maze's answer and how it was reached.
struct Solution {
    answer: Vec<u8>,
    path_steps: Option<u32>,
    segments: u64,
    trajectories: u32,
    seconds: f64,
    rows: Vec<String>,
}

pub fn solve(args: &MazeArgs) -> Result<Outcome> {
    let origin = if args.file.as_os_str() == "-" { "stdin".to_string() } else { args.file.display().to_string() };
    let mazes = parse(&read_input(&args.file)?, &origin)?;
    let Some(path) = &args.model else {
        bail!("no maze model is built into hrm yet: pass one with --model BLOB (models/maze/README.md says how to train and convert one)");
    };
    let blob = crate::read_blob(path)?;
    let model = crate::load_model(path, &blob)?;
    let c = model.config();
    let seq_len = c.seq_len as usize;
    if c.vocab_size != maze::VOCAB {
        bail!("{} is not a maze model (vocabulary {}, a maze model has {})", path.display(), c.vocab_size, maze::VOCAB);
    }
    if let Some(m) = mazes.iter().find(|m| m.cells.len() != seq_len) {
        bail!(
            "{origin}:{}: a {}×{} maze, but {} reads {seq_len} cells{}",
            m.line,
            m.side,
            m.side,
            path.display(),
            match (1..=MAX_SIDE).find(|s| s * s == seq_len) {
                Some(s) => format!(" ({s}×{s} mazes)"),
                None => String::new(),
            }
        );
    }
    let halting = args.halting.halting();
    let plan = args.ensemble.plan(halting)?.unwrap_or_else(|| ensemble::Plan::single(halting));
    let threads = crate::threads(args.threads);
    let bar = crate::progress_bar(mazes.len() as u64, "mazes", mazes.len() > 1);
    let time_limit = args.ensemble.time_limit.map(std::time::Duration::from_secs_f64);
    let log = args.ensemble.trajectories_out.is_some();
    let started = Instant::now();
    let solved = hrm_host::in_sessions(model, &mazes, threads, |session, m| {
        let begun = Instant::now();
        let mut rows = Vec::new();
        let mut first_valid: Option<u32> = None;
        let outcome = ensemble::solve_maze(session, &m.cells, m.side, &plan, |p| {
            if log {
                if p.path_steps.is_some() && first_valid.is_none() {
                    first_valid = Some(p.segment);
                }
                if p.last {
                    rows.push(format!(
                        "{},{},{},{},{}",
                        p.trajectory,
                        p.segment + 1,
                        first_valid.map_or(-1, i64::from),
                        p.q_halt,
                        p.path_steps.map_or(-1, i64::from)
                    ));
                    first_valid = None;
                }
            }
            time_limit.is_none_or(|limit| begun.elapsed() < limit)
        })?;
        bar.inc(1);
        Ok(Solution {
            answer: outcome.answer.get(..m.cells.len()).unwrap_or(&[]).to_vec(),
            path_steps: outcome.path_steps,
            segments: outcome.segments,
            trajectories: outcome.trajectories,
            seconds: begun.elapsed().as_secs_f64(),
            rows,
        })
    })?;
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut space = Box::new(SearchSpace::new());
    let (mut paths, mut shortest, mut segments, mut trajectories) = (0usize, 0usize, 0u64, 0u64);
    for (i, (m, s)) in mazes.iter().zip(&solved).enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        for row in s.answer.chunks(m.side) {
            out.write_all(row)?;
            writeln!(out)?;
        }
        if let Some(steps) = s.path_steps {
            paths += 1;
            shortest += usize::from(maze::shortest_steps(&m.cells, m.side, &mut space) == Some(steps));
        }
        segments += s.segments;
        trajectories += u64::from(s.trajectories);
    }
    out.flush()?;
    if let Some(path) = &args.ensemble.trajectories_out {
        let mut text = String::from("maze,trajectory,segments,first_valid_segment,q_halt,path_steps\n");
        for (i, s) in solved.iter().enumerate() {
            for row in &s.rows {
                text.push_str(&format!("{},{row}\n", i + 1));
            }
        }
        crate::write_atomically(path, text.as_bytes())?;
    }
    let n = mazes.len();
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    eprintln!(
        "{paths}/{n} answers are valid S→G paths ({:.1}%), {shortest}/{n} shortest ({:.1}%); {:.2} segments and {:.2} trajectories per maze, {:.3} s per maze ({threads} thread{}, {wall:.1} s in all)",
        pct(paths),
        pct(shortest),
        segments as f64 / n as f64,
        trajectories as f64 / n as f64,
        solved.iter().map(|s| s.seconds).sum::<f64>() / n as f64,
        if threads == 1 { "" } else { "s" },
    );
    Ok(if args.check && shortest < n { Outcome::CheckFailed } else { Outcome::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mazes_are_split_on_blank_lines_and_keep_trailing_spaces() {
        let text = "#S \n# G\n###\n\n\n#SG\n#  \n###\n";
        let m = parse(text, "t").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].line, m[0].side), (1, 3));
        assert_eq!(m[0].cells, b"#S # G###");
        assert_eq!(m[1].line, 6);
        assert_eq!(m[1].cells, b"#SG#  ###");
    }

    #[test]
    fn bad_mazes_are_refused_with_their_line() {
        let e = parse("#S\n#G \n", "f").unwrap_err().to_string();
        assert!(e.contains("f:2: a line of 3 characters"), "{e}");
        let e = parse("#S#\n###\n###\n\n#SG\n#x \n###\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:1: the maze has 0 goal cells"), "{e}");
        assert!(e.contains("f:5: the maze character 'x' at cell 5"), "{e}");
        assert!(parse("\n\n", "f").unwrap_err().to_string().contains("no mazes"));
    }
}
