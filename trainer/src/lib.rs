//! Training HRM and TRM with the reference algorithm on candle, and evaluating trained models
//! (the trainer's own or a blob on the runtime) on Sudoku, mazes and ARC.
//!
//! Flow: [`data`] builds a run's examples from [`tasks`]; [`learner`] is one step of the
//! reference's algorithm on [`model::Net`] with [`loss`] and [`optim`]; [`train`] drives it over
//! a run, writing a [`run_dir`]; [`replay`] drives it over a golden training trace; [`eval`]
//! scores the candle model or a blob on the same examples.

pub mod data;
pub mod eval;
pub mod evaluate;
pub mod generate;
pub mod learner;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod presets;
pub mod replay;
pub mod run_dir;
pub mod tasks;
pub mod train;
