//! Test-time compute: K trajectories of one puzzle, and a rule to pick one answer.
//!
//! Each trajectory runs the same model on a transformed copy of the puzzle, perturbed or not:
//! - a task symmetry with its inverse ([`SudokuSymmetry`]: digits, bands, stacks, rows in a
//!   band, columns in a stack, transpose; [`Dihedral`] for square grids such as mazes), the
//!   answer mapped back before it is judged;
//! - seeded noise on the latent at every recursion step ([`Noise`], see
//!   [`crate::Session::set_noise`]), from [`Rng`], which gives the same numbers on every
//!   platform (integer arithmetic only).
//!
//! Trajectory 0 is always the plain one (no symmetry, no noise), so one trajectory is exactly
//! the model's own answer and an ensemble under [`Select::Valid`] never answers worse.
//! Everything is deterministic for a given seed: trajectory `k`'s symmetry and noise depend on
//! `(seed, k)` only, not on which trajectories ran before it. Nothing allocates; one session
//! runs the trajectories one after the other.

use crate::maze::{self, MAX_CELLS};
use crate::sudoku::{self, Grid, CELLS};
use crate::{Error, Halting, Session};

/// SplitMix64: a small, fast generator whose output depends on its 64-bit state alone, with
/// integer operations only, so every platform draws the same numbers (and the integer-only
/// forward pass can use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator of trajectory `trajectory`'s `stream` (0: its symmetry, 1: its noise).
    pub fn for_trajectory(seed: u64, trajectory: u32, stream: u32) -> Self {
        let mut r = Rng(seed ^ ((u64::from(trajectory) << 32) | u64::from(stream)).wrapping_mul(GOLDEN));
        // One draw mixes the state, so that neighbouring seeds do not start alike.
        Rng(r.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; 0 for `n == 0`), by the multiply-shift method.
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// An approximately standard-normal draw as an integer: the sum of four uniform 16-bit
    /// numbers, centred (Irwin–Hall, n = 4: mean 0, standard deviation [`GAUSS_STD`], bounded
    /// by ±131,070). Integers, so that f32 and fixed-point sessions add the same noise.
    pub fn gauss_units(&mut self) -> i32 {
        let x = self.next_u64();
        let sum = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48);
        sum as i32 - 2 * 0xFFFF
    }

    /// Fisher–Yates: a uniformly drawn permutation of `0..N`.
    fn permutation<const N: usize>(&mut self) -> [u8; N] {
        let mut p: [u8; N] = core::array::from_fn(|i| i as u8);
        for i in (1..N).rev() {
            let j = self.below(i as u32 + 1) as usize;
            p.swap(i, j.min(i));
        }
        p
    }
}

/// The standard deviation of [`Rng::gauss_units`]: √(4 · (65536² − 1) / 12).
pub const GAUSS_STD: f64 = 37_837.227_237_299_3;

/// Noise on the latent at every recursion step: `z_L` after each L-module update (and `z_H`
/// after each H update when `z_h`), each value plus `sigma` times an approximately normal draw
/// (the latents are RMS-normalised, so `sigma` is relative to their scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    pub sigma: f32,
    pub seed: u64,
    pub z_h: bool,
}

/// A Sudoku symmetry: `apply` moves cell `cells[i]` of the puzzle to cell `i` and relabels its
/// digit `d` as `digits[d]`; `invert` undoes both. Every such map sends valid grids to valid
/// grids, and a valid completion of the moved puzzle back to one of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SudokuSymmetry {
    cells: [u8; CELLS],
    digits: [u8; 10],
}

impl SudokuSymmetry {
    // Evaluated at compile time: an index out of range would fail the build, not a device.
    #[allow(clippy::indexing_slicing)]
    pub const IDENTITY: SudokuSymmetry = {
        let mut cells = [0u8; CELLS];
        let mut i = 0;
        while i < CELLS {
            cells[i] = i as u8;
            i += 1;
        }
        SudokuSymmetry { cells, digits: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }
    };

    /// A symmetry drawn uniformly from the group: digit relabelling, band and stack
    /// permutations, rows within each band, columns within each stack, and transposition.
    pub fn random(rng: &mut Rng) -> Self {
        let d: [u8; 9] = rng.permutation();
        let mut digits = [0u8; 10];
        for (slot, &to) in digits.iter_mut().skip(1).zip(&d) {
            *slot = to + 1;
        }
        let lines = |rng: &mut Rng| -> [u8; 9] {
            let groups: [u8; 3] = rng.permutation();
            let mut out = [0u8; 9];
            for (g, &group) in groups.iter().enumerate() {
                let within: [u8; 3] = rng.permutation();
                for (k, &w) in within.iter().enumerate() {
                    if let Some(slot) = out.get_mut(g * 3 + k) {
                        *slot = group * 3 + w;
                    }
                }
            }
            out
        };
        let rows = lines(rng);
        let cols = lines(rng);
        let transpose = rng.below(2) == 1;
        let cells = core::array::from_fn(|i| {
            let (r, c) = (rows.get(i / 9).copied().unwrap_or(0), cols.get(i % 9).copied().unwrap_or(0));
            if transpose {
                c * 9 + r
            } else {
                r * 9 + c
            }
        });
        SudokuSymmetry { cells, digits }
    }

    /// The cell of the original puzzle that sits at `position` of the moved one (what maps a
    /// per-position output, such as a confidence, back to the puzzle).
    pub fn source_cell(&self, position: usize) -> usize {
        self.cells.get(position).map_or(position, |&c| usize::from(c))
    }

    /// The puzzle as the model sees it in this trajectory.
    pub fn apply(&self, grid: &Grid) -> Grid {
        core::array::from_fn(|i| {
            let from = self.cells.get(i).map_or(0, |&c| grid.get(usize::from(c)).copied().unwrap_or(0));
            self.digits.get(usize::from(from)).copied().unwrap_or(0)
        })
    }

    /// An answer to the moved puzzle, mapped back to the original's cells and digits.
    pub fn invert(&self, answer: &Grid) -> Grid {
        let mut inverse_digits = [0u8; 10];
        for (d, &to) in self.digits.iter().enumerate() {
            if let Some(slot) = inverse_digits.get_mut(usize::from(to)) {
                *slot = d as u8;
            }
        }
        let mut out = [0u8; CELLS];
        for (&from, &a) in self.cells.iter().zip(answer) {
            if let Some(slot) = out.get_mut(usize::from(from)) {
                *slot = inverse_digits.get(usize::from(a)).copied().unwrap_or(0);
            }
        }
        out
    }
}

/// One of the 8 symmetries of a square grid (rotations and reflections), for tasks whose
/// answer moves with the grid (mazes): `map` sends a cell of the original to its place in the
/// transformed grid, `unmap` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dihedral(pub u8);

impl Dihedral {
    /// Where cell `(r, c)` of an `n × n` grid goes.
    pub fn map(self, n: usize, r: usize, c: usize) -> (usize, usize) {
        let m = n.saturating_sub(1);
        let (r, c) = if self.0 & 4 != 0 { (c, r) } else { (r, c) };
        let r = if self.0 & 1 != 0 { m.saturating_sub(r) } else { r };
        let c = if self.0 & 2 != 0 { m.saturating_sub(c) } else { c };
        (r, c)
    }

    /// Where cell `(r, c)` of the transformed grid came from.
    pub fn unmap(self, n: usize, r: usize, c: usize) -> (usize, usize) {
        let m = n.saturating_sub(1);
        let r = if self.0 & 1 != 0 { m.saturating_sub(r) } else { r };
        let c = if self.0 & 2 != 0 { m.saturating_sub(c) } else { c };
        if self.0 & 4 != 0 {
            (c, r)
        } else {
            (r, c)
        }
    }

    /// `out[map(i)] = grid[i]` over an `n × n` grid of tokens (`out` and `grid` of `n²` values).
    pub fn apply<T: Copy>(self, n: usize, grid: &[T], out: &mut [T]) {
        for (i, &v) in grid.iter().enumerate().take(n * n) {
            let (r, c) = self.map(n, i / n, i % n);
            if let Some(slot) = out.get_mut(r * n + c) {
                *slot = v;
            }
        }
    }

    /// The inverse of [`Dihedral::apply`].
    pub fn invert<T: Copy>(self, n: usize, grid: &[T], out: &mut [T]) {
        for (i, &v) in grid.iter().enumerate().take(n * n) {
            let (r, c) = self.unmap(n, i / n, i % n);
            if let Some(slot) = out.get_mut(r * n + c) {
                *slot = v;
            }
        }
    }
}

/// [`Noise`] as a session applies it: the generator and the draw's scale in the session's
/// arithmetic (f32 per unit of [`Rng::gauss_units`], or a fixed-point multiplier).
#[derive(Debug, Clone, Copy)]
pub struct LatentNoise {
    rng: Rng,
    /// f32 path: `value += units · scale`.
    scale: f32,
    /// Integer path: `value += (units · multiplier + 2¹⁵) >> 16` in the state's format.
    #[cfg_attr(not(feature = "fixed-point"), allow(dead_code))]
    multiplier: i64,
    z_h: bool,
}

impl LatentNoise {
    pub(crate) fn new(rng: Rng, scale: f32, multiplier: i64, z_h: bool) -> Self {
        LatentNoise { rng, scale, multiplier, z_h }
    }

    /// Whether `z_H` gets noise too.
    pub fn on_z_h(&self) -> bool {
        self.z_h
    }

    pub(crate) fn add_f32(&mut self, z: &mut [f32]) {
        for v in z.iter_mut() {
            *v += self.rng.gauss_units() as f32 * self.scale;
        }
    }

    /// The integer path's noise: integers only (the forward pass it runs in has no floats).
    #[cfg(feature = "fixed-point")]
    pub(crate) fn add_fixed(&mut self, z: &mut [i16], max: i64) {
        for v in z.iter_mut() {
            let n = (i64::from(self.rng.gauss_units()) * self.multiplier + (1 << 15)) >> 16;
            *v = (i64::from(*v) + n).clamp(-max, max) as i16;
        }
    }
}

/// How the ensemble picks its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The first answer that satisfies the task's rules, checked after every segment of every
    /// trajectory (the ensemble stops there; for mazes, the shortest valid path, stopping at
    /// one of the maze's fewest steps: [`solve_maze`]); when none does, the highest Q-halt,
    /// and when no Q value is a number, the vote.
    Valid,
    /// The final answer of the trajectory whose last Q-halt is highest (no rule checks).
    Q,
    /// Per cell, the digit most trajectories' final answers hold (ties: the smaller digit).
    Vote,
}

/// An ensemble: how many trajectories, of what kind, and the budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// K ≥ 1 (0 counts as 1).
    pub trajectories: u32,
    /// Trajectories 1.. run under a random task symmetry.
    pub augment: bool,
    /// Trajectories 1.. run with this noise (`sigma` 0: none); its seed is replaced per
    /// trajectory.
    pub noise: Option<Noise>,
    pub seed: u64,
    pub select: Select,
    /// Each trajectory's segments under [`Select::Q`] and [`Select::Vote`] (under
    /// [`Select::Valid`] a trajectory runs until its answer is valid or `halt_max_steps`: a
    /// Q-halt on an invalid answer is overruled).
    pub halting: Halting,
    /// At most this many segments in all trajectories together.
    pub max_segments: u64,
}

impl Plan {
    /// The default ensemble of `hrm solve sudoku --ensemble K` (and of the firmware's `k=K`):
    /// symmetries, no noise, seed 0, the first valid answer.
    pub const fn symmetries(k: u32) -> Self {
        Plan {
            trajectories: k,
            augment: true,
            noise: None,
            seed: 0,
            select: Select::Valid,
            halting: Halting::Fixed,
            max_segments: u64::MAX,
        }
    }

    /// One plain trajectory: the model's own answer.
    pub const fn single(halting: Halting) -> Self {
        Plan {
            trajectories: 1,
            augment: false,
            noise: None,
            seed: 0,
            select: Select::Q,
            halting,
            max_segments: u64::MAX,
        }
    }
}

/// Why the ensemble answered what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A trajectory's answer satisfied the rules.
    Valid,
    /// The highest Q-halt.
    Q,
    /// The vote.
    Vote,
}

/// What an ensemble did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub answer: Grid,
    /// Whether `answer` is a valid completion of the puzzle.
    pub valid: bool,
    pub reason: Reason,
    /// The trajectory the answer came from (`None` for a vote).
    pub chosen: Option<u32>,
    /// Its final (or, under [`Select::Valid`], its stopping) segment's Q-halt.
    pub q_halt: f32,
    /// Trajectories started and segments run in all.
    pub trajectories: u32,
    pub segments: u64,
    /// Whether a budget or the caller's check stopped it before its plan was done.
    pub cut_short: bool,
}

/// Where the ensemble is, shown to the caller's check between segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress<'a> {
    pub trajectory: u32,
    /// The segment just run (0-based) of that trajectory, its Q values, its answer mapped back
    /// to the puzzle, and whether that answer is a valid completion.
    pub segment: u32,
    pub q_halt: f32,
    pub q_continue: f32,
    pub answer: &'a Grid,
    pub valid: bool,
    /// Whether the Q head asked to halt after this segment.
    pub halt_requested: bool,
    /// Whether this is the trajectory's last segment (unless the caller stops it earlier).
    pub last: bool,
    /// Segments run in all so far.
    pub segments: u64,
    /// The symmetry this trajectory runs under (the session's outputs are in its frame).
    pub symmetry: &'a SudokuSymmetry,
}

/// Runs `plan` on a Sudoku `puzzle` (givens already free of conflicts, e.g. from
/// [`sudoku::parse`]) in `session`. `check` is called after every segment with the session
/// that ran it (its logits and latents, for a trace); returning `false` stops the ensemble
/// there (a deadline), and it answers from what it has.
pub fn solve_sudoku(
    session: &mut Session<'_, '_>,
    puzzle: &Grid,
    plan: &Plan,
    mut check: impl FnMut(&Progress, &Session<'_, '_>) -> bool,
) -> Result<Outcome, Error> {
    let k = plan.trajectories.max(1);
    let max_steps = session.model().config().halt_max_steps;
    let mut votes = [[0u16; 10]; CELLS];
    let mut best: Option<(f32, u32, Grid)> = None;
    let mut last = (0u32, [0u8; CELLS], f32::NAN);
    let (mut segments, mut started, mut cut_short) = (0u64, 0u32, false);
    let mut tokens = [0u32; CELLS];
    'trajectories: for t in 0..k {
        let symmetry = if plan.augment && t > 0 {
            SudokuSymmetry::random(&mut Rng::for_trajectory(plan.seed, t, 0))
        } else {
            SudokuSymmetry::IDENTITY
        };
        let noise = match plan.noise {
            Some(n) if t > 0 && n.sigma > 0.0 => {
                Some(Noise { seed: Rng::for_trajectory(plan.seed, t, 1).next_u64(), ..n })
            }
            _ => None,
        };
        if segments >= plan.max_segments {
            cut_short = true;
            break;
        }
        session.set_noise(noise)?;
        session.reset(&sudoku::to_tokens(&symmetry.apply(puzzle)), 0)?;
        started += 1;
        let limit = match (plan.select, plan.halting) {
            (Select::Valid, _) | (_, Halting::Fixed | Halting::Adaptive) => max_steps,
            (_, Halting::Segments(n)) => n,
        };
        let mut answer = [0u8; CELLS];
        let mut q_halt = f32::NAN;
        for segment in 0..limit {
            if segments >= plan.max_segments {
                cut_short = true;
                break;
            }
            let outcome = session.step()?;
            segments += 1;
            session.predictions(&mut tokens)?;
            answer = symmetry.invert(&sudoku::from_tokens(&tokens));
            q_halt = outcome.q_halt;
            let valid = sudoku::is_solution(puzzle, &answer);
            let stop_here = plan.select != Select::Valid && plan.halting == Halting::Adaptive && outcome.halt_requested;
            let progress = Progress {
                trajectory: t,
                segment,
                q_halt,
                q_continue: outcome.q_continue,
                answer: &answer,
                valid,
                halt_requested: outcome.halt_requested,
                last: stop_here || segment + 1 == limit || (valid && plan.select == Select::Valid),
                segments,
                symmetry: &symmetry,
            };
            let go_on = check(&progress, &*session);
            if valid && plan.select == Select::Valid {
                session.set_noise(None)?;
                return Ok(Outcome {
                    answer,
                    valid: true,
                    reason: Reason::Valid,
                    chosen: Some(t),
                    q_halt,
                    trajectories: started,
                    segments,
                    cut_short: false,
                });
            }
            if !go_on {
                cut_short = true;
                record(&mut votes, &mut best, t, &answer, q_halt);
                last = (t, answer, q_halt);
                break 'trajectories;
            }
            if stop_here {
                break;
            }
        }
        record(&mut votes, &mut best, t, &answer, q_halt);
        last = (t, answer, q_halt);
    }
    session.set_noise(None)?;
    let voted = || -> Grid {
        core::array::from_fn(|cell| {
            let counts = votes.get(cell).copied().unwrap_or([0; 10]);
            let mut digit = 0;
            for (d, &n) in counts.iter().enumerate() {
                if n > counts.get(digit).copied().unwrap_or(0) {
                    digit = d;
                }
            }
            digit as u8
        })
    };
    let (answer, reason, chosen, q_halt) = match (plan.select, best) {
        (Select::Vote, _) | (Select::Valid, None) => (voted(), Reason::Vote, None, f32::NAN),
        (_, Some((q, t, answer))) => (answer, Reason::Q, Some(t), q),
        // Select::Q with no Q value a number: the last trajectory's answer.
        (Select::Q, None) => (last.1, Reason::Q, Some(last.0), last.2),
    };
    Ok(Outcome {
        answer,
        valid: sudoku::is_solution(puzzle, &answer),
        reason,
        chosen,
        q_halt,
        trajectories: started,
        segments,
        cut_short,
    })
}

/// Counts a trajectory's final answer in the vote and keeps it if its Q-halt is the highest.
fn record(votes: &mut [[u16; 10]; CELLS], best: &mut Option<(f32, u32, Grid)>, t: u32, answer: &Grid, q: f32) {
    for (counts, &d) in votes.iter_mut().zip(answer) {
        if let Some(n) = counts.get_mut(usize::from(d)) {
            *n = n.saturating_add(1);
        }
    }
    if !q.is_nan() && best.is_none_or(|(b, _, _)| q > b) {
        *best = Some((q, t, *answer));
    }
}

/// Where a maze ensemble is, shown to the caller's check between segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MazeProgress {
    pub trajectory: u32,
    /// The segment just run (0-based) of that trajectory and its Q values.
    pub segment: u32,
    pub q_halt: f32,
    pub q_continue: f32,
    /// The steps of the S→G path its answer (mapped back) marks, `None` when the marks are
    /// not one unbroken path ([`maze::path_steps`]).
    pub path_steps: Option<u32>,
    pub halt_requested: bool,
    /// Whether this is the trajectory's last segment (unless the caller stops it earlier).
    pub last: bool,
    /// Segments run in all so far.
    pub segments: u64,
    /// The symmetry this trajectory runs under.
    pub symmetry: Dihedral,
}

/// What a maze ensemble did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MazeOutcome {
    /// The maze with the chosen path marked `o` (the first `side²` cells).
    pub answer: [u8; MAX_CELLS],
    /// Steps of the answer's path if it is one unbroken S→G path.
    pub path_steps: Option<u32>,
    pub reason: Reason,
    pub chosen: Option<u32>,
    pub q_halt: f32,
    pub trajectories: u32,
    pub segments: u64,
    pub cut_short: bool,
}

/// A valid maze answer kept by [`ShortestValid`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct FoundPath {
    steps: u32,
    trajectory: u32,
    answer: [u8; MAX_CELLS],
    q_halt: f32,
}

/// The maze rule of [`Select::Valid`] over the trajectories: the shortest valid path offered,
/// the earliest among equals, and whether it is as short as any path can be.
struct ShortestValid {
    fewest: Option<u32>,
    best: Option<FoundPath>,
}

impl ShortestValid {
    fn new(fewest: Option<u32>) -> Self {
        ShortestValid { fewest, best: None }
    }

    /// Keeps a valid path of `steps` if it is shorter than the one kept; `true` when it is as
    /// short as the maze allows (nothing later can beat it).
    fn offer(&mut self, steps: u32, trajectory: u32, answer: &[u8; MAX_CELLS], q_halt: f32) -> bool {
        if self.best.is_none_or(|b| steps < b.steps) {
            self.best = Some(FoundPath { steps, trajectory, answer: *answer, q_halt });
        }
        self.fewest.is_none_or(|f| steps <= f)
    }
}

/// Runs `plan` on a maze (`side × side` characters of `# SGo`, one `S` and one `G`, checked
/// with [`maze::validate`]; a marked path is ignored) in `session`, whose model reads
/// `side²` cells. Trajectory `t > 0` runs under [`Dihedral`]`(t mod 8)` when `plan.augment`
/// (the eight symmetries of the square; beyond 8 trajectories only noise tells them apart).
/// The rule of [`Select::Valid`] is the path check: the marked cells form one unbroken S→G
/// path, and among such answers the shortest wins. A valid path as short as the maze's
/// shortest (a breadth-first search: it tells when to stop looking, it never answers) ends the
/// ensemble at once; a longer one ends its trajectory and is kept while the others look for a
/// shorter one. [`Select::Vote`] marks the cells most trajectories marked. `check` is called
/// after every segment; `false` stops the ensemble there.
pub fn solve_maze(
    session: &mut Session<'_, '_>,
    maze: &[u8],
    side: usize,
    plan: &Plan,
    mut check: impl FnMut(&MazeProgress) -> bool,
) -> Result<MazeOutcome, Error> {
    let cells = side * side;
    let seq_len = session.model().config().seq_len as usize;
    if side == 0 || side > maze::MAX_SIDE || maze.len() != cells || cells != seq_len {
        return Err(Error::InputLength { expected: seq_len, got: maze.len() });
    }
    let k = plan.trajectories.max(1);
    let max_steps = session.model().config().halt_max_steps;
    let mut votes = [0u16; MAX_CELLS];
    let mut best: Option<(f32, u32, [u8; MAX_CELLS])> = None;
    let mut last = (0u32, [0u8; MAX_CELLS], f32::NAN);
    let (mut segments, mut started, mut cut_short) = (0u64, 0u32, false);
    // Working copies of `cells` values each (`cells` ≤ MAX_CELLS was checked above).
    let short = Error::InputLength { expected: seq_len, got: maze.len() };
    let (mut moved, mut tokens) = ([0u8; MAX_CELLS], [0u32; MAX_CELLS]);
    let (mut predictions, mut back) = ([0u32; MAX_CELLS], [0u32; MAX_CELLS]);
    let moved = moved.get_mut(..cells).ok_or(short)?;
    let tokens = tokens.get_mut(..cells).ok_or(short)?;
    let predictions = predictions.get_mut(..cells).ok_or(short)?;
    let back = back.get_mut(..cells).ok_or(short)?;
    let mut answer = [0u8; MAX_CELLS];
    let clean = |c: u8| if c == maze::PATH { maze::OPEN } else { c };
    // Under `Valid`, the fewest steps any S→G path can take, and the shortest valid answer so far.
    let fewest = match plan.select {
        Select::Valid => maze::shortest_steps(maze, side, &mut maze::SearchSpace::new()),
        _ => None,
    };
    let mut shortest = ShortestValid::new(fewest);
    let record = |votes: &mut [u16; MAX_CELLS],
                  best: &mut Option<(f32, u32, [u8; MAX_CELLS])>,
                  t,
                  a: &[u8; MAX_CELLS],
                  q: f32| {
        for (v, &c) in votes.iter_mut().zip(a.iter().take(cells)) {
            *v = v.saturating_add(u16::from(c == maze::PATH));
        }
        if !q.is_nan() && best.is_none_or(|(b, _, _)| q > b) {
            *best = Some((q, t, *a));
        }
    };
    'trajectories: for t in 0..k {
        let symmetry = if plan.augment && t > 0 { Dihedral((t % 8) as u8) } else { Dihedral(0) };
        let noise = match plan.noise {
            Some(n) if t > 0 && n.sigma > 0.0 => {
                Some(Noise { seed: Rng::for_trajectory(plan.seed, t, 1).next_u64(), ..n })
            }
            _ => None,
        };
        if segments >= plan.max_segments {
            cut_short = true;
            break;
        }
        symmetry.apply(side, maze, moved);
        maze::to_tokens(moved, tokens);
        session.set_noise(noise)?;
        session.reset(tokens, 0)?;
        started += 1;
        let limit = match (plan.select, plan.halting) {
            (Select::Valid, _) | (_, Halting::Fixed | Halting::Adaptive) => max_steps,
            (_, Halting::Segments(n)) => n,
        };
        let mut q_halt = f32::NAN;
        for segment in 0..limit {
            if segments >= plan.max_segments {
                cut_short = true;
                break;
            }
            let outcome = session.step()?;
            segments += 1;
            session.predictions(predictions)?;
            symmetry.invert(side, predictions, back);
            maze::answer(maze, back, &mut answer);
            q_halt = outcome.q_halt;
            let path_steps = maze::path_steps(answer.get(..cells).unwrap_or(&[]), side);
            let valid = path_steps.is_some() && plan.select == Select::Valid;
            let stop_here = plan.select != Select::Valid && plan.halting == Halting::Adaptive && outcome.halt_requested;
            let progress = MazeProgress {
                trajectory: t,
                segment,
                q_halt,
                q_continue: outcome.q_continue,
                path_steps,
                halt_requested: outcome.halt_requested,
                last: stop_here || segment + 1 == limit || valid,
                segments,
                symmetry,
            };
            let go_on = check(&progress);
            if let (true, Some(steps)) = (valid, path_steps) {
                // As short as the maze allows: the answer (kept by `shortest`, chosen below).
                if shortest.offer(steps, t, &answer, q_halt) {
                    break 'trajectories;
                }
                // A valid path, but longer than the maze's shortest: this trajectory is done.
                if !go_on {
                    cut_short = true;
                    break 'trajectories;
                }
                continue 'trajectories;
            }
            if !go_on {
                cut_short = true;
                record(&mut votes, &mut best, t, &answer, q_halt);
                last = (t, answer, q_halt);
                break 'trajectories;
            }
            if stop_here {
                break;
            }
        }
        record(&mut votes, &mut best, t, &answer, q_halt);
        last = (t, answer, q_halt);
    }
    session.set_noise(None)?;
    let voted = || -> [u8; MAX_CELLS] {
        let mut out = [0u8; MAX_CELLS];
        for ((o, &c), &v) in out.iter_mut().zip(maze).zip(&votes) {
            let c = clean(c);
            *o = if c == maze::OPEN && 2 * u32::from(v) > started { maze::PATH } else { c };
        }
        out
    };
    let (answer, reason, chosen, q_halt) = match (plan.select, best, shortest.best) {
        (Select::Valid, _, Some(found)) => (found.answer, Reason::Valid, Some(found.trajectory), found.q_halt),
        (Select::Vote, _, _) | (Select::Valid, None, None) => (voted(), Reason::Vote, None, f32::NAN),
        (_, Some((q, t, answer)), _) => (answer, Reason::Q, Some(t), q),
        (Select::Q, None, _) => (last.1, Reason::Q, Some(last.0), last.2),
    };
    Ok(MazeOutcome {
        path_steps: maze::path_steps(answer.get(..cells).unwrap_or(&[]), side),
        answer,
        reason,
        chosen,
        q_halt,
        trajectories: started,
        segments,
        cut_short,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUZZLE: &str = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79";
    const SOLUTION: &str = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";

    #[test]
    fn the_generator_is_splitmix64() {
        // The reference sequence of SplitMix64 from seed 1234567 (Vigna's splitmix64.c).
        let mut r = Rng::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn gauss_units_have_the_stated_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut sum, mut sq) = (0f64, 0f64);
        for _ in 0..n {
            let x = f64::from(r.gauss_units());
            sum += x;
            sq += x * x;
        }
        let mean = sum / n as f64;
        let std = (sq / n as f64 - mean * mean).sqrt();
        assert!(mean.abs() < 0.01 * GAUSS_STD, "mean {mean}");
        assert!((std / GAUSS_STD - 1.0).abs() < 0.01, "std {std}");
        assert!((GAUSS_STD - ((65536f64 * 65536.0 - 1.0) / 3.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn sudoku_symmetries_keep_solutions_and_invert() {
        let p = sudoku::parse(PUZZLE).unwrap();
        let s = sudoku::parse(SOLUTION).unwrap();
        let mut seen_transpose = false;
        for t in 0..200 {
            let sym = SudokuSymmetry::random(&mut Rng::for_trajectory(42, t, 0));
            let (mp, ms) = (sym.apply(&p), sym.apply(&s));
            assert!(sudoku::is_solution(&mp, &ms), "trajectory {t}: the moved solution must solve the moved puzzle");
            assert_eq!(sym.invert(&ms), s);
            assert_eq!(sym.invert(&mp), p);
            assert_eq!(mp.iter().filter(|&&d| d != 0).count(), p.iter().filter(|&&d| d != 0).count());
            // Transposed maps send row 0 of the original into one column.
            let first_row: [u8; 9] = core::array::from_fn(|c| sym.cells[c]);
            seen_transpose |= first_row.iter().all(|&x| x % 9 == first_row[0] % 9);
        }
        assert!(seen_transpose);
        assert_eq!(SudokuSymmetry::IDENTITY.apply(&p), p);
        // Different trajectories draw different symmetries; the same one draws the same.
        let a = SudokuSymmetry::random(&mut Rng::for_trajectory(1, 1, 0));
        let b = SudokuSymmetry::random(&mut Rng::for_trajectory(1, 2, 0));
        assert_ne!(a, b);
        assert_eq!(a, SudokuSymmetry::random(&mut Rng::for_trajectory(1, 1, 0)));
    }

    #[test]
    fn dihedral_maps_are_the_eight_symmetries_and_invert() {
        let n = 5;
        let grid: [u32; 25] = core::array::from_fn(|i| i as u32);
        let mut images = std::vec::Vec::new();
        for t in 0..8 {
            let d = Dihedral(t);
            let mut moved = [0u32; 25];
            let mut back = [0u32; 25];
            d.apply(n, &grid, &mut moved);
            d.invert(n, &moved, &mut back);
            assert_eq!(back, grid, "map {t}");
            // Neighbours stay neighbours.
            let (r0, c0) = d.map(n, 2, 2);
            let (r1, c1) = d.map(n, 2, 3);
            assert_eq!(r0.abs_diff(r1) + c0.abs_diff(c1), 1);
            images.push(moved);
        }
        images.sort();
        images.dedup();
        assert_eq!(images.len(), 8);
    }

    #[test]
    fn the_maze_rule_keeps_the_shortest_valid_path_and_stops_at_the_fewest_steps() {
        let answer = |mark: u8| {
            let mut a = [0u8; MAX_CELLS];
            a[0] = mark;
            a
        };
        let mut rule = ShortestValid::new(Some(10));
        assert!(!rule.offer(14, 1, &answer(1), 0.5), "a path longer than the shortest goes on");
        assert!(!rule.offer(12, 3, &answer(3), 0.1));
        assert!(!rule.offer(12, 4, &answer(4), 0.9), "a tie keeps the earlier trajectory");
        assert!(!rule.offer(16, 5, &answer(5), 0.9), "a longer one is not kept");
        let kept = rule.best.expect("a path was offered");
        assert_eq!((kept.steps, kept.trajectory, kept.answer[0], kept.q_halt), (12, 3, 3, 0.1));
        assert!(rule.offer(10, 6, &answer(6), 0.2), "as short as the maze allows: stop");
        assert_eq!(rule.best.map(|b| (b.steps, b.trajectory)), Some((10, 6)));
    }
}
