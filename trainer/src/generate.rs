//! `hrm generate`: evaluation or training data from the project's generators, reproducibly
//! (a seed), in the formats `hrm eval` and `hrm train --data` read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::tasks::{maze, sudoku};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum GenerateArgs {
    /// Unique-solution Sudoku puzzles as `puzzle,solution` CSV.
    Sudoku {
        /// Givens per puzzle: `N` or `MIN..=MAX`.
        #[arg(long, default_value = "40")]
        givens: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Mazes with their shortest path marked, in the `../shared/data/maze` text format.
    Maze {
        #[arg(long, default_value_t = 30)]
        size: usize,
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Shortest paths of at least this many steps (where the maze allows it).
        #[arg(long)]
        min_path: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn givens_range(text: &str) -> Result<(usize, usize)> {
    let parsed = match text.split_once("..=") {
        Some((a, b)) => (a.trim().parse(), b.trim().parse()),
        None => (text.trim().parse(), text.trim().parse()),
    };
    match parsed {
        (Ok(a), Ok(b)) if (17..=81).contains(&a) && (a..=81).contains(&b) => Ok((a, b)),
        _ => bail!("--givens {text:?}: give N or MIN..=MAX between 17 and 81"),
    }
}

/// Attempts per Sudoku before giving up on its number of givens.
const MAX_TRIES: usize = 200;

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what} ({{eta}})"))
    {
        bar.set_style(style);
    }
    bar
}

/// `count` unique-solution puzzles with `lo..=hi` givens (uniform), as `puzzle,solution` CSV.
pub fn sudoku_csv((lo, hi): (usize, usize), count: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text = String::from("puzzle,solution\n");
    let bar = progress(count as u64, "puzzles");
    for _ in 0..count {
        let n = rng.random_range(lo..=hi);
        // Digging may stop above the target when no cell can go; retry those, a bounded number
        // of times: below about 22 givens digging almost never gets there.
        let found = (0..MAX_TRIES).find_map(|_| {
            let (p, s) = sudoku::generate(&mut rng, n);
            (sudoku::givens(&p) == n).then_some((p, s))
        });
        let Some((p, s)) = found else {
            bail!("no puzzle with {n} givens in {MAX_TRIES} tries: the generator digs down to about 22 givens; ask for more");
        };
        text.push_str(&format!("{},{}\n", sudoku::grid_string(&p).replace('0', "."), sudoku::grid_string(&s)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(text)
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let (text, out) = match args {
        GenerateArgs::Sudoku { givens, count, seed, out } => (sudoku_csv(givens_range(givens)?, *count, *seed)?, out),
        GenerateArgs::Maze { size, count, min_path, seed, out } => {
            if !(5..=64).contains(size) {
                bail!("--size {size}: use 5 to 64");
            }
            let mut rng = ChaCha8Rng::seed_from_u64(*seed);
            let bar = progress(*count as u64, "mazes");
            let mazes: Vec<String> = (0..*count)
                .map(|_| {
                    bar.inc(1);
                    maze::generate(&mut rng, *size, min_path.unwrap_or(size * size / 8)).to_text()
                })
                .collect();
            bar.finish_and_clear();
            (mazes.join("\n"), out)
        }
    };
    match out {
        Some(path) => crate::run_dir::write_atomically(path, text.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudoku_csv_has_the_asked_givens_unique_solutions_and_is_reproducible() {
        let text = sudoku_csv((30, 45), 20, 7).unwrap();
        assert_eq!(text, sudoku_csv((30, 45), 20, 7).unwrap());
        assert_ne!(text, sudoku_csv((30, 45), 20, 8).unwrap());
        let path = std::env::temp_dir().join(format!("hrm-generate-{}.csv", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let pairs = sudoku::read_csv(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(pairs.len(), 20);
        for (puzzle, solution) in &pairs {
            assert!((30..=45).contains(&sudoku::givens(puzzle)));
            assert_eq!(sudoku::solve_unique(puzzle).as_ref(), Some(solution));
        }
    }

    #[test]
    fn impossible_givens_are_an_error_not_a_hang() {
        assert!(givens_range("16").is_err() && givens_range("50..=40").is_err() && givens_range("x").is_err());
        let err = sudoku_csv((17, 17), 1, 0).unwrap_err().to_string();
        assert!(err.contains("17 givens"), "{err}");
    }
}
