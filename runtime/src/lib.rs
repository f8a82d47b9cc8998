//! `no_std`, allocation-free inference for the Hierarchical Reasoning Model (HRM) and the Tiny
//! Recursive Model (TRM).
//!
//! The data flows parse → plan → run:
//! - [`blob`]: the flash-ready format (header, tensor table, aligned tensors) and its checks;
//! - [`Model::from_bytes`] validates a blob and reads the weights in place;
//! - [`Config::arena_bytes_for`] (a `const fn`) says how much working memory a session needs
//!   ([`Model::arena_bytes`] for a loaded blob);
//! - [`Session`] embeds an example and runs one ACT segment per [`Session::step`], so that a
//!   device can yield between segments; [`Session::run`] applies a [`Halting`] policy.
//!
//! ```no_run
//! # fn demo(blob: &[u8], tokens: &[u32]) -> Result<(), hrm_runtime::Error> {
//! use hrm_runtime::{Halting, Model, Session};
//! let model = Model::from_bytes(blob)?;
//! let mut arena = vec![0u8; model.arena_bytes()];
//! let mut session = Session::new(model, &mut arena)?;
//! session.reset(tokens, 0)?;
//! session.run(Halting::Adaptive)?;
//! let mut answer = vec![0u32; tokens.len()];
//! session.predictions(&mut answer)?;
//! # Ok(()) }
//! ```
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod blob;
pub mod config;
pub mod ensemble;
mod error;
pub mod fixed;
pub mod kernels;
pub mod maze;
mod model;
mod session;
pub mod sudoku;

pub use blob::{Activations, DType, Header, TensorId};
pub use config::{Config, HaltRule, ModelKind, PosEncoding};
pub use error::{Error, TensorProblem};
pub use model::{Matrix, Model, Weights};
pub use session::{Arena, Halting, SegmentOutcome, Session, DIGEST_START};
