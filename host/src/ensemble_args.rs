//! The command-line options of test-time compute (`--ensemble K` and its rules), shared by
//! `hrm solve`, `hrm solve maze` and `hrm eval` (feature `cli`: clap).

use anyhow::{bail, Result};
use clap::Args;
use hrm_runtime::ensemble::{Noise, Plan, Select};
use hrm_runtime::Halting;
use std::path::PathBuf;

/// Test-time compute: several trajectories per puzzle and a rule to pick one answer.
#[derive(Debug, Clone, Args)]
pub struct EnsembleArgs {
    /// Trajectories per puzzle (K). 1 is the model's own answer (today's behaviour); more run
    /// the puzzle under symmetries (Sudoku: random digit, band, stack, row, column maps and
    /// transpose; mazes: the 8 rotations and reflections) and latent noise until an answer
    /// is valid (a Sudoku that keeps the rules; a maze path that joins S to G unbroken).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub ensemble: Option<u32>,
    /// Latent noise: sigma of the Gaussian-like noise added to z_L at every recursion step of
    /// trajectories 2..K (0: none).
    #[arg(long, value_name = "SIGMA", default_value_t = DEFAULT_NOISE)]
    pub noise: f32,
    /// Add the noise to z_H too.
    #[arg(long)]
    pub noise_z_h: bool,
    /// Run trajectories 2..K under the task's symmetries, mapping their answers back (the
    /// default).
    #[arg(long, overrides_with = "no_augment")]
    pub augment: bool,
    /// No symmetries: the trajectories differ by their noise only.
    #[arg(long, overrides_with = "augment")]
    pub no_augment: bool,
    /// How the answer is picked: `valid` stops at the first valid completion (mazes: the
    /// shortest valid path, stopping at one of the fewest steps; else the highest Q-halt), `q`
    /// takes the highest final Q-halt, `vote` the per-cell majority.
    #[arg(long, value_enum, default_value_t = SelectRule::Valid)]
    pub select: SelectRule,
    /// Seed of the symmetries and the noise: the same seed gives the same answers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many segments per puzzle, all trajectories together.
    #[arg(long, value_name = "N")]
    pub max_segments: Option<u64>,
    /// Stop a puzzle's ensemble after this many seconds (checked between segments) and answer
    /// from what it has.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
    /// Write one CSV row per trajectory (puzzle, trajectory, segments run, first segment whose
    /// answer was valid or -1, final q_halt, then for Sudoku whether the final answer is valid
    /// and the answer and the puzzle's seconds, for mazes the final path's steps or -1): what
    /// an ablation over K needs (scripts/ensemble-k256.sh).
    #[arg(long, value_name = "FILE")]
    pub trajectories_out: Option<PathBuf>,
    /// With --adaptive: halt on the Q head alone, without the rule check (a Q-halt on an
    /// invalid answer then ends the trajectory).
    #[arg(long)]
    pub no_rules: bool,
}

/// The noise level that measured best with symmetries (ENSEMBLES.md).
pub const DEFAULT_NOISE: f32 = 0.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelectRule {
    Valid,
    Q,
    Vote,
}

impl EnsembleArgs {
    /// The plan for one puzzle, or `None` for the plain single run (K = 1 without
    /// `--adaptive`'s rule check).
    pub fn plan(&self, halting: Halting) -> Result<Option<Plan>> {
        let k = self.ensemble.unwrap_or(1);
        if !(self.noise.is_finite() && (0.0..=1000.0).contains(&self.noise)) {
            bail!("--noise must be a number from 0 to 1000, got {}", self.noise);
        }
        if let Some(t) = self.time_limit {
            if !(t.is_finite() && t > 0.0) {
                bail!("--time-limit must be a positive number of seconds, got {t}");
            }
        }
        let rules = halting == Halting::Adaptive && !self.no_rules;
        if k == 1
            && !rules
            && self.max_segments.is_none()
            && self.time_limit.is_none()
            && self.trajectories_out.is_none()
        {
            return Ok(None);
        }
        let select = match self.select {
            SelectRule::Valid if k == 1 && halting != Halting::Adaptive => SelectRule::Q,
            SelectRule::Valid if halting == Halting::Adaptive && self.no_rules => SelectRule::Q,
            other => other,
        };
        Ok(Some(Plan {
            trajectories: k,
            augment: !self.no_augment,
            noise: (self.noise > 0.0).then_some(Noise { sigma: self.noise, seed: 0, z_h: self.noise_z_h }),
            seed: self.seed,
            select: match select {
                SelectRule::Valid => Select::Valid,
                SelectRule::Q => Select::Q,
                SelectRule::Vote => Select::Vote,
            },
            halting,
            max_segments: self.max_segments.unwrap_or(u64::MAX),
        }))
    }
}
