//! The integer forward pass left out (the `fixed-point` feature off): its types, with no value
//! of [`Forward`] ever made, so that a session's integer branches compile to nothing and a
//! float firmware links none of the path (about 45 KB of a Cortex-M's flash). A fixed-point
//! blob is refused when its session starts.

use core::convert::Infallible;
use core::marker::PhantomData;

use super::{FixedOutcome, State};
use crate::ensemble::LatentNoise;
use crate::model::Model;
use crate::Error;

/// No integer forward pass in this build: the type has no values.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'m>(Infallible, PhantomData<Model<'m>>);

impl<'m> Forward<'m> {
    /// Refuses every blob: this build cannot run fixed-point activations.
    pub fn new(model: Model<'m>) -> Result<Forward<'m>, Error> {
        let _ = model;
        Err(Error::InvalidHeader(
            "fixed-point activations, and this build of the runtime leaves the integer path out (cargo feature `fixed-point`)",
        ))
    }

    pub fn format(&self, _site: usize) -> i32 {
        match self.0 {}
    }

    pub fn embed(&self, _tokens: &[u32], _puzzle_id: u32, _st: &mut State<'_>) -> Result<(), Error> {
        match self.0 {}
    }

    pub fn step(&self, _st: &mut State<'_>, _noise: Option<&mut LatentNoise>) -> Result<FixedOutcome, Error> {
        match self.0 {}
    }

    pub fn predictions(&self, _logits: &[i32], _out: &mut [u32]) -> Result<(), Error> {
        match self.0 {}
    }
}
