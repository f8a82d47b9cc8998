//! Building a run's data from its settings, deterministically from the seed (a resumed run
//! rebuilds exactly the same pools).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::presets::DataShape;
use crate::tasks::{self, arc, maze, sudoku, EvalSet, TaskKind, TrainSource};

/// Where a run's examples come from (saved in `config.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DataSettings {
    pub task: TaskKind,
    /// Training file or directory; generated data when absent (Sudoku, maze).
    pub data: Option<PathBuf>,
    /// Held-out evaluation file or directory; generated when absent (Sudoku, maze).
    pub eval_data: Option<PathBuf>,
    /// Sudoku: givens of generated puzzles, inclusive range.
    pub givens: (usize, usize),
    /// Base puzzles or mazes generated for training.
    pub pool: usize,
    pub maze_size: usize,
    /// ARC: augmented versions (puzzle ids) per task.
    pub augmentations: usize,
    pub eval_count: usize,
}

pub struct RunData {
    pub shape: DataShape,
    pub source: Box<dyn TrainSource>,
    pub eval: EvalSet,
    pub arc_ids: Option<arc::Identifiers>,
}

/// Generates `count` items with `make(rng, i)` on all cores, item `i` from its own seeded RNG
/// (so the result does not depend on the number of threads).
fn generate<T: Send>(count: usize, seed: u64, make: impl Fn(&mut ChaCha8Rng, usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let make = &make;
                s.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|i| make(&mut ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)), i))
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("generator thread")).collect()
    })
}

pub fn build(settings: &DataSettings, seed: u64) -> Result<RunData> {
    match settings.task {
        TaskKind::Sudoku => {
            let (lo, hi) = settings.givens;
            if lo < 17 || hi > 81 || lo > hi {
                bail!("--givens {lo}..={hi}: a Sudoku has 17 to 81 givens");
            }
            let make = |rng: &mut ChaCha8Rng, _| {
                let givens = rng.random_range(lo..=hi);
                sudoku::generate(rng, givens)
            };
            let base = match &settings.data {
                Some(path) => sudoku::read_csv(path)?,
                None => generate(settings.pool, seed ^ 0x5d0c_0001, make),
            };
            let eval_pairs = match &settings.eval_data {
                Some(path) => sudoku::read_csv(path)?.into_iter().take(settings.eval_count).collect(),
                None => generate(settings.eval_count, seed ^ 0xe7a1_0002, make),
            };
            Ok(RunData {
                shape: DataShape { seq_len: 81, vocab_size: hrm_runtime::sudoku::VOCAB, num_puzzle_identifiers: 1 },
                source: Box::new(tasks::SudokuSource { base, augment: true }),
                eval: tasks::sudoku_eval_set(&eval_pairs),
                arc_ids: None,
            })
        }
        TaskKind::Maze => {
            let n = settings.maze_size;
            if !(5..=64).contains(&n) {
                bail!("--maze-size {n}: use 5 to 64");
            }
            let make = |rng: &mut ChaCha8Rng, _| maze::generate(rng, n, n * n / 8);
            let pool = match &settings.data {
                Some(path) => maze::read_mazes(path)?,
                None => generate(settings.pool, seed ^ 0x3a2e_0003, make),
            };
            let eval: Vec<maze::Maze> = match &settings.eval_data {
                Some(path) => maze::read_mazes(path)?.into_iter().take(settings.eval_count).collect(),
                None => generate(settings.eval_count, seed ^ 0xe7a1_0004, make),
            };
            for m in pool.iter().chain(&eval) {
                if m.size != pool[0].size {
                    bail!("mazes of different sizes ({} and {})", m.size, pool[0].size);
                }
            }
            let seq_len = (pool[0].size * pool[0].size) as u32;
            Ok(RunData {
                shape: DataShape { seq_len, vocab_size: maze::VOCAB, num_puzzle_identifiers: 1 },
                source: Box::new(tasks::MazeSource { pool }),
                eval: tasks::maze_eval_set(&eval)?,
                arc_ids: None,
            })
        }
        TaskKind::Arc => {
            let train_dir =
                settings.data.as_ref().context("--task arc needs --data (a directory of ARC task files)")?;
            let eval_dir =
                settings.eval_data.as_ref().context("--task arc needs --eval-data (the evaluation task files)")?;
            let train = arc::read_tasks(train_dir)?;
            let eval = arc::read_tasks(eval_dir)?;
            let all: Vec<arc::Task> = train.iter().chain(&eval).cloned().collect();
            let refs: Vec<&arc::Task> = all.iter().collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa4c0_0005);
            let ids = arc::Identifiers::build(&refs, settings.augmentations, &mut rng);
            // Training-split tasks train on their test pairs too; evaluation tasks only on
            // their demonstrations.
            let with_tests: Vec<bool> = (0..all.len()).map(|i| i < train.len()).collect();
            let examples = arc::training_examples(&all, &ids, &with_tests);
            let eval_examples = arc_eval_examples(&eval, &ids, settings.eval_count);
            Ok(RunData {
                shape: DataShape {
                    seq_len: arc::SEQ_LEN as u32,
                    vocab_size: arc::VOCAB,
                    num_puzzle_identifiers: ids.count(),
                },
                source: Box::new(tasks::ArcSource { examples }),
                eval: EvalSet { examples: eval_examples },
                arc_ids: Some(ids),
            })
        }
    }
}

/// Token-level evaluation examples for ARC (the identity augmentation of each test pair); the
/// pass@2 vote is in `eval`.
fn arc_eval_examples(tasks: &[arc::Task], ids: &arc::Identifiers, limit: usize) -> Vec<tasks::Example> {
    let mut out = Vec::new();
    for t in tasks {
        let Some((id, _)) = ids.of_task(&t.id).next() else { continue };
        for p in &t.test {
            if let Some(o) = &p.output {
                out.push(tasks::Example::new(arc::encode(&p.input), &arc::encode(o), Some(0), id));
            }
        }
    }
    out.truncate(limit);
    out
}
