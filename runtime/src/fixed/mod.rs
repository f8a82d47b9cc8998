//! The integer-only forward pass (`hrm convert --activations fixed`).

use crate::blob::{Level, TensorId};
use crate::config::Config;

#[cfg(not(feature = "fixed-point"))]
mod absent;
#[cfg(feature = "fixed-point")]
mod forward;
pub mod math;

#[cfg(not(feature = "fixed-point"))]
pub use absent::Forward;
#[cfg(feature = "fixed-point")]
pub use forward::Forward;

/// What one segment of the integer path produced: the Q head's two values with `frac`
/// fraction bits, and the halting decision taken on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedOutcome {
    pub q_halt: i32,
    pub q_continue: i32,
    pub frac: i32,
    pub halt_requested: bool,
}

/// The buffers of a session, as integers: activations `i16` (every site saturates to
/// ±32767), the logits and the attention's scores (Q30 probabilities) `i32`.
pub struct State<'b> {
    pub z_h: &'b mut [i16],
    pub z_l: &'b mut [i16],
    pub input: &'b mut [i16],
    pub logits: &'b mut [i32],
    pub scores: &'b mut [i32],
    pub scratch: &'b mut [i16],
}

/// The places where the fixed-point path stores activations, each with its own format (a
/// number of fraction bits, calibrated at conversion): a value `v` at a site with `f` fraction
/// bits is held as the integer `round(v · 2^f)`, saturated to the `i16` range.
///
/// Site 0 is the state (the carries `z_H`, `z_L`, the embedded input and their sums), 1 the
/// logits, 2 the Q head; then six per layer (H module layers first, then L), see [`LayerSite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sites {
    h_layers: usize,
    layers: usize,
}

/// The sites of one layer, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSite {
    /// Attention: Q, K and V after the QKV projection (and RoPE). `mlp_t`: its gate and up.
    MixerIn = 0,
    /// Attention: the heads' outputs. `mlp_t`: `silu(gate) · up`.
    MixerAct = 1,
    /// Attention: the output projection. `mlp_t`: the down projection.
    MixerOut = 2,
    /// Channel SwiGLU: gate and up.
    MlpIn = 3,
    /// Channel SwiGLU: `silu(gate) · up`.
    MlpAct = 4,
    /// Channel SwiGLU: the down projection.
    MlpOut = 5,
}

impl Sites {
    pub const STATE: usize = 0;
    pub const LOGITS: usize = 1;
    pub const Q: usize = 2;
    const FIXED: usize = 3;
    const PER_LAYER: usize = 6;

    pub const fn new(config: &Config) -> Sites {
        let h_layers = config.h_module_layers() as usize;
        Sites { h_layers, layers: h_layers + config.l_layers as usize }
    }

    /// How many sites (the length of the format table).
    pub const fn count(&self) -> usize {
        Self::FIXED + Self::PER_LAYER * self.layers
    }

    /// The site of a layer: `index` counts the H module's layers first, then the L module's.
    pub const fn layer(&self, index: usize, site: LayerSite) -> usize {
        Self::FIXED + Self::PER_LAYER * index + site as usize
    }

    /// The site of `layer` of `level`.
    pub const fn at(&self, level: Level, layer: u32, site: LayerSite) -> usize {
        let index = match level {
            Level::H => layer as usize,
            Level::L => self.h_layers + layer as usize,
        };
        self.layer(index, site)
    }
}

/// Receives the activations of the `f32` forward pass at every [`Sites`] site, and the input
/// of every layer matrix's product (for calibration: the converter records each site's largest
/// magnitude, and each matrix's input statistics for error-compensating int4 rounding).
pub trait Observer {
    fn observe(&mut self, site: usize, values: &[f32]);

    /// The rows `x` multiplied by the layer matrix `matrix` (`TensorId::Layer`): each row is
    /// `width` values, rows start `stride` values apart (`x.len()` is a multiple of `stride`).
    fn input(&mut self, matrix: TensorId, x: &[f32], width: usize, stride: usize) {
        let _ = (matrix, x, width, stride);
    }
}

/// An observer that does nothing (the normal forward pass).
pub struct Ignore;

impl Observer for Ignore {
    #[inline(always)]
    fn observe(&mut self, _site: usize, _values: &[f32]) {}
}

/// The largest fraction-bit count a format may have, and the smallest (a negative count holds
/// values beyond ±32767 at a coarser step).
pub const MAX_FRAC: i32 = 24;
pub const MIN_FRAC: i32 = -8;
