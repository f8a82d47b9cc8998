//! The integer forward pass left out (the `fixed-point` feature off): its types, with no value
//! of [`Forward`] ever made, so that a session's integer branches compile to nothing and a
//! float firmware links none of the path (about 35 KB of a Cortex-M's flash). A fixed-point
//! blob is refused when its session starts.

use core::convert::Infallible;
use core::marker::PhantomData;

use crate::ensemble::LatentNoise;
use crate::model::Model;
use crate::Error;

/// As the integer path's: the Q head's two values with `frac` fraction bits, and the halting
/// decision taken on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedOutcome {
    pub q_halt: i32,
    pub q_continue: i32,
    pub frac: i32,
    pub halt_requested: bool,
}

/// No integer forward pass in this build: the type has no values.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'m>(Infallible, PhantomData<Model<'m>>);

/// The buffers of a session, as integers (as the integer path's).
pub struct State<'b> {
    pub z_h: &'b mut [i32],
    pub z_l: &'b mut [i32],
    pub input: &'b mut [i32],
    pub logits: &'b mut [i32],
    pub scratch: &'b mut [i32],
}

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
