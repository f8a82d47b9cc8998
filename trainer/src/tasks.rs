//! The tasks a model is trained and evaluated on, behind one interface: training examples are
//! drawn from a [`TrainSource`]; evaluation sets are read from the public files.

pub mod arc;
pub mod maze;
pub mod sudoku;

use anyhow::Result;
use rand::Rng;

use crate::loss::IGNORE_LABEL;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Sudoku,
    Maze,
    Arc,
}

/// One training or evaluation example in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub inputs: Vec<u32>,
    /// Target token per position, [`IGNORE_LABEL`] where there is none.
    pub labels: Vec<i64>,
    pub puzzle_id: u32,
}

impl Example {
    pub fn new(inputs: Vec<u32>, labels: &[u32], ignore: Option<u32>, puzzle_id: u32) -> Self {
        let labels = labels.iter().map(|&t| if Some(t) == ignore { IGNORE_LABEL } else { i64::from(t) }).collect();
        Example { inputs, labels, puzzle_id }
    }
}

/// Where training examples come from.
pub trait TrainSource: Send {
    fn sample(&mut self, rng: &mut dyn rand::RngCore) -> Example;
}

/// Sudoku: base puzzles (generated or read), augmented at every draw.
pub struct SudokuSource {
    pub base: Vec<(hrm_runtime::sudoku::Grid, hrm_runtime::sudoku::Grid)>,
    pub augment: bool,
}

impl TrainSource for SudokuSource {
    fn sample(&mut self, rng: &mut dyn rand::RngCore) -> Example {
        let pair = &self.base[rng.random_range(0..self.base.len())];
        let (p, s) = if self.augment { sudoku::augment(rng, pair) } else { *pair };
        let inputs = hrm_runtime::sudoku::to_tokens(&p).to_vec();
        Example::new(inputs, &hrm_runtime::sudoku::to_tokens(&s), None, 0)
    }
}

/// Mazes: a pool (generated or read), each drawn maze randomly flipped or rotated.
pub struct MazeSource {
    pub pool: Vec<maze::Maze>,
}

impl TrainSource for MazeSource {
    fn sample(&mut self, rng: &mut dyn rand::RngCore) -> Example {
        let m = &self.pool[rng.random_range(0..self.pool.len())];
        let g: arc::Grid = m.cells.chunks(m.size).map(<[u8]>::to_vec).collect();
        // Any symmetry of the square keeps a maze a maze, and its shortest path the same path.
        let moved = transform_bytes(&g, rng.random_range(0..8u8));
        let maze = maze::Maze { size: m.size, cells: moved.into_iter().flatten().collect() };
        Example::new(maze.input_tokens(), &maze.label_tokens(), None, 0)
    }
}

/// A dihedral transform of a grid of arbitrary bytes (the ARC one works on colours 0–9, so the
/// bytes go through a small palette).
fn transform_bytes(g: &arc::Grid, dihedral: u8) -> arc::Grid {
    let mut palette: Vec<u8> = Vec::new();
    let idx: arc::Grid = g
        .iter()
        .map(|r| {
            r.iter()
                .map(|&b| match palette.iter().position(|&p| p == b) {
                    Some(i) => i as u8,
                    None => {
                        palette.push(b);
                        (palette.len() - 1) as u8
                    }
                })
                .collect()
        })
        .collect();
    let identity = arc::Augmentation { dihedral, colours: std::array::from_fn(|i| i as u8) };
    identity.apply(&idx).into_iter().map(|r| r.into_iter().map(|i| palette[i as usize]).collect()).collect()
}

/// ARC: every augmented demonstration pair, drawn uniformly.
pub struct ArcSource {
    pub examples: Vec<(Vec<u32>, Vec<u32>, u32)>,
}

impl TrainSource for ArcSource {
    fn sample(&mut self, rng: &mut dyn rand::RngCore) -> Example {
        let (i, o, id) = &self.examples[rng.random_range(0..self.examples.len())];
        Example::new(i.clone(), o, Some(0), *id)
    }
}

/// Examples with their ground truth for evaluation.
pub struct EvalSet {
    pub examples: Vec<Example>,
}

pub fn sudoku_eval_set(pairs: &[(hrm_runtime::sudoku::Grid, hrm_runtime::sudoku::Grid)]) -> EvalSet {
    EvalSet {
        examples: pairs
            .iter()
            .map(|(p, s)| {
                Example::new(hrm_runtime::sudoku::to_tokens(p).to_vec(), &hrm_runtime::sudoku::to_tokens(s), None, 0)
            })
            .collect(),
    }
}

pub fn maze_eval_set(mazes: &[maze::Maze]) -> Result<EvalSet> {
    Ok(EvalSet { examples: mazes.iter().map(|m| Example::new(m.input_tokens(), &m.label_tokens(), None, 0)).collect() })
}
