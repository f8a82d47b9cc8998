//! `hrm solve sudoku`: puzzles in, one answer line per puzzle out.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hrm_runtime::sudoku::{self, Grid};

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
}

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
    let halting = args.halting.halting();
    // One session (and arena) per thread over the shared model; answers keep the input order.
    let threads = crate::threads(args.threads);
    let solved = hrm_trainer::eval::in_sessions(model, &grids, threads, |session, grid| {
        session.reset(&sudoku::to_tokens(grid), 0)?;
        let mut digest = hrm_runtime::DIGEST_START;
        let segments = session.run_with(halting, |s, _| digest = s.outputs_digest(digest))?;
        let mut predictions = [0u32; sudoku::CELLS];
        session.predictions(&mut predictions)?;
        Ok((sudoku::from_tokens(&predictions), segments, digest))
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut valid, mut segments) = (0usize, 0u64);
    for (grid, (answer, used, digest)) in grids.iter().zip(&solved) {
        valid += usize::from(sudoku::is_solution(grid, answer));
        segments += u64::from(*used);
        let line: String = answer.iter().map(|&d| char::from(b'0' + d)).collect();
        if args.digest {
            writeln!(out, "{line} {digest:08x}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    let n = grids.len();
    eprintln!(
        "{valid}/{n} answers are valid completions ({:.1}%), {:.2} segments per puzzle",
        100.0 * valid as f64 / n as f64,
        segments as f64 / n as f64
    );
    Ok(if args.check && valid < n { Outcome::CheckFailed } else { Outcome::Ok })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s.to_string()
    }
}
