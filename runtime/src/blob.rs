//! Blob format v1: the bytes a model is flashed as. See `FORMAT.md` beside this crate.
//!
//! Everything here is plain little-endian byte layout: a 128-byte [`Header`], a table of
//! 48-byte [`TensorEntry`]s, then the tensor data, each tensor 64-byte aligned so that it can be
//! read in place from memory-mapped flash. The converter writes blobs with these same types.

use core::fmt;

use crate::config::{Config, HaltRule, ModelKind, PosEncoding};
use crate::Error;

/// `HRMB`.
pub const MAGIC: [u8; 4] = *b"HRMB";
/// The version this runtime reads and the converter writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Size of one tensor-table entry.
pub const ENTRY_LEN: usize = 48;
/// Alignment of every tensor's data, relative to the start of the blob.
pub const TENSOR_ALIGN: usize = 64;
/// Bytes of the header covered by the header CRC (the CRC field itself is last).
const HEADER_CRC_AT: usize = HEADER_LEN - 4;

/// CRC-32 (IEEE 802.3 / zlib polynomial), as `crc32` on the command line computes it.
pub const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Rounds `n` up to the next multiple of [`TENSOR_ALIGN`] (saturating).
pub const fn align_up(n: usize) -> usize {
    match n.checked_next_multiple_of(TENSOR_ALIGN) {
        Some(v) => v,
        None => usize::MAX,
    }
}

/// Element type of a stored tensor.
///
/// The quantised types keep their scales beside the values, in the tensor's own data (see
/// `FORMAT.md`): a row of `I8` is `scale · q` with one `f32` scale per row; a row of `Q4` is cut
/// into blocks of 32 values, each `scale · (nibble − 8)` with one `f16` scale per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    Bf16,
    /// Symmetric int8, one `f32` scale per row (per output channel).
    I8,
    /// 4-bit values in blocks of 32 along a row, one `f16` scale per block (ggml's Q4_0 scheme).
    Q4,
    /// Plain `i32` (the fixed-point path's table of activation formats).
    I32,
    /// `f32` in the layout the SIMD product's tiles read ([`F32_PANEL_ROWS`]-row panels, each
    /// stored column by column): row `r`, column `c` at `(r / 16)·16·cols + 16·c + r % 16`,
    /// the rows padded with zeros to a multiple of 16. Matrices of the attention and the
    /// channel SwiGLU only (`hrm convert --layout panels`).
    F32Panels,
}

/// Rows per panel of [`DType::F32Panels`].
pub const F32_PANEL_ROWS: usize = 16;

/// Where element (`row`, `col`) of a [`DType::F32Panels`] matrix of `cols` columns is stored:
/// its panel, then its column, then its row within the panel.
pub const fn f32_panel_index(row: usize, col: usize, cols: usize) -> usize {
    row / F32_PANEL_ROWS * F32_PANEL_ROWS * cols + col * F32_PANEL_ROWS + row % F32_PANEL_ROWS
}

/// Values per block of [`DType::Q4`].
pub const Q4_BLOCK: usize = 32;
/// Bytes of one [`DType::Q4`] block's values (two per byte).
pub const Q4_BLOCK_BYTES: usize = Q4_BLOCK / 2;

impl DType {
    pub const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Bf16 => 2,
            DType::I8 => 3,
            DType::Q4 => 4,
            DType::I32 => 5,
            DType::F32Panels => 6,
        }
    }

    pub const fn from_code(code: u8) -> Option<DType> {
        match code {
            0 => Some(DType::F32),
            1 => Some(DType::F16),
            2 => Some(DType::Bf16),
            3 => Some(DType::I8),
            4 => Some(DType::Q4),
            5 => Some(DType::I32),
            6 => Some(DType::F32Panels),
            _ => None,
        }
    }

    /// Bytes a `rows × cols` tensor of this type takes, scales included (`None` on overflow).
    pub const fn bytes(self, rows: usize, cols: usize) -> Option<usize> {
        let elements = match rows.checked_mul(cols) {
            Some(n) => n,
            None => return None,
        };
        match self {
            DType::F32 | DType::I32 => elements.checked_mul(4),
            DType::F16 | DType::Bf16 => elements.checked_mul(2),
            DType::F32Panels => match rows.div_ceil(F32_PANEL_ROWS).checked_mul(F32_PANEL_ROWS * 4) {
                Some(row_bytes) => row_bytes.checked_mul(cols),
                None => None,
            },
            // Scales first (4-byte aligned at the tensor's 64-byte aligned start), then values.
            DType::I8 => match rows.checked_mul(4) {
                Some(scales) => scales.checked_add(elements),
                None => None,
            },
            DType::Q4 => match rows.checked_mul(cols.div_ceil(Q4_BLOCK)) {
                Some(blocks) => match blocks.checked_mul(2 + Q4_BLOCK_BYTES) {
                    Some(n) => Some(n),
                    None => None,
                },
                None => None,
            },
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::I8 => "int8",
            DType::Q4 => "int4",
            DType::I32 => "i32",
            DType::F32Panels => "f32 panels",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the two reasoning modules a layer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    H,
    L,
}

/// The weight matrices of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPart {
    /// `self_attn.qkv_proj.weight` `[3h, h]`.
    Qkv,
    /// `self_attn.o_proj.weight` `[h, h]`.
    AttnOut,
    /// `mlp_t.gate_up_proj.weight` `[2·inter_t, S]` (TRM `mlp_t`).
    TokenGateUp,
    /// `mlp_t.down_proj.weight` `[S, inter_t]`.
    TokenDown,
    /// `mlp.gate_up_proj.weight` `[2·inter, h]`.
    GateUp,
    /// `mlp.down_proj.weight` `[h, inter]`.
    Down,
}

/// Identifies a tensor; its code is stored in the tensor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorId {
    TokenEmbedding,
    LmHead,
    QHeadWeight,
    QHeadBias,
    HInit,
    LInit,
    PuzzleEmbedding,
    PositionEmbedding,
    /// `cos` of the rotary table, `[S, head_dim / 2]` (the reference repeats it twice).
    RopeCos,
    RopeSin,
    /// The fixed-point path's activation formats (`i32`, see [`crate::fixed::Sites`]); only in
    /// blobs with fixed-point activations.
    ActivationFormats,
    Layer {
        level: Level,
        layer: u16,
        part: LayerPart,
    },
}

impl TensorId {
    /// Code: bits 24..32 the kind, 16..24 the level (layers), 0..16 the layer index.
    pub const fn code(self) -> u32 {
        match self {
            TensorId::TokenEmbedding => 1 << 24,
            TensorId::LmHead => 2 << 24,
            TensorId::QHeadWeight => 3 << 24,
            TensorId::QHeadBias => 4 << 24,
            TensorId::HInit => 5 << 24,
            TensorId::LInit => 6 << 24,
            TensorId::PuzzleEmbedding => 7 << 24,
            TensorId::PositionEmbedding => 8 << 24,
            TensorId::RopeCos => 9 << 24,
            TensorId::RopeSin => 10 << 24,
            TensorId::ActivationFormats => 11 << 24,
            TensorId::Layer { level, layer, part } => {
                let kind: u32 = match part {
                    LayerPart::Qkv => 16,
                    LayerPart::AttnOut => 17,
                    LayerPart::TokenGateUp => 18,
                    LayerPart::TokenDown => 19,
                    LayerPart::GateUp => 20,
                    LayerPart::Down => 21,
                };
                let lvl: u32 = match level {
                    Level::H => 1,
                    Level::L => 2,
                };
                (kind << 24) | (lvl << 16) | layer as u32
            }
        }
    }

    pub const fn from_code(code: u32) -> Option<TensorId> {
        let kind = code >> 24;
        let lvl = (code >> 16) & 0xff;
        let layer = (code & 0xffff) as u16;
        if kind < 16 {
            if code & 0x00ff_ffff != 0 {
                return None;
            }
            return match kind {
                1 => Some(TensorId::TokenEmbedding),
                2 => Some(TensorId::LmHead),
                3 => Some(TensorId::QHeadWeight),
                4 => Some(TensorId::QHeadBias),
                5 => Some(TensorId::HInit),
                6 => Some(TensorId::LInit),
                7 => Some(TensorId::PuzzleEmbedding),
                8 => Some(TensorId::PositionEmbedding),
                9 => Some(TensorId::RopeCos),
                10 => Some(TensorId::RopeSin),
                11 => Some(TensorId::ActivationFormats),
                _ => None,
            };
        }
        let part = match kind {
            16 => LayerPart::Qkv,
            17 => LayerPart::AttnOut,
            18 => LayerPart::TokenGateUp,
            19 => LayerPart::TokenDown,
            20 => LayerPart::GateUp,
            21 => LayerPart::Down,
            _ => return None,
        };
        let level = match lvl {
            1 => Level::H,
            2 => Level::L,
            _ => return None,
        };
        Some(TensorId::Layer { level, layer, part })
    }

    /// Parses the name the reference gives the tensor in its state dict, without the
    /// `_orig_mod.model.inner.` prefix. Derived tensors (the rotary table) have no such name.
    pub fn from_reference_name(name: &str) -> Option<TensorId> {
        let fixed = match name {
            "embed_tokens.embedding_weight" => Some(TensorId::TokenEmbedding),
            "lm_head.weight" => Some(TensorId::LmHead),
            "q_head.weight" => Some(TensorId::QHeadWeight),
            "q_head.bias" => Some(TensorId::QHeadBias),
            "H_init" => Some(TensorId::HInit),
            "L_init" => Some(TensorId::LInit),
            "puzzle_emb.weights" => Some(TensorId::PuzzleEmbedding),
            "embed_pos.embedding_weight" => Some(TensorId::PositionEmbedding),
            _ => None,
        };
        if fixed.is_some() {
            return fixed;
        }
        let (level, rest) = if let Some(rest) = name.strip_prefix("H_level.layers.") {
            (Level::H, rest)
        } else if let Some(rest) = name.strip_prefix("L_level.layers.") {
            (Level::L, rest)
        } else {
            return None;
        };
        let (index, rest) = rest.split_once('.')?;
        if index.is_empty() || (index.len() > 1 && index.starts_with('0')) {
            return None;
        }
        let layer: u16 = index.parse().ok()?;
        let part = match rest {
            "self_attn.qkv_proj.weight" => LayerPart::Qkv,
            "self_attn.o_proj.weight" => LayerPart::AttnOut,
            "mlp_t.gate_up_proj.weight" => LayerPart::TokenGateUp,
            "mlp_t.down_proj.weight" => LayerPart::TokenDown,
            "mlp.gate_up_proj.weight" => LayerPart::GateUp,
            "mlp.down_proj.weight" => LayerPart::Down,
            _ => return None,
        };
        Some(TensorId::Layer { level, layer, part })
    }
}

/// Displays the reference's state-dict name (`L_level.layers.0.mlp.down_proj.weight`), or a
/// descriptive name for the derived rotary tables.
impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorId::TokenEmbedding => f.write_str("embed_tokens.embedding_weight"),
            TensorId::LmHead => f.write_str("lm_head.weight"),
            TensorId::QHeadWeight => f.write_str("q_head.weight"),
            TensorId::QHeadBias => f.write_str("q_head.bias"),
            TensorId::HInit => f.write_str("H_init"),
            TensorId::LInit => f.write_str("L_init"),
            TensorId::PuzzleEmbedding => f.write_str("puzzle_emb.weights"),
            TensorId::PositionEmbedding => f.write_str("embed_pos.embedding_weight"),
            TensorId::RopeCos => f.write_str("rotary_emb.cos"),
            TensorId::RopeSin => f.write_str("rotary_emb.sin"),
            TensorId::ActivationFormats => f.write_str("fixed_point.activation_formats"),
            TensorId::Layer { level, layer, part } => {
                let level = match level {
                    Level::H => "H",
                    Level::L => "L",
                };
                let part = match part {
                    LayerPart::Qkv => "self_attn.qkv_proj.weight",
                    LayerPart::AttnOut => "self_attn.o_proj.weight",
                    LayerPart::TokenGateUp => "mlp_t.gate_up_proj.weight",
                    LayerPart::TokenDown => "mlp_t.down_proj.weight",
                    LayerPart::GateUp => "mlp.gate_up_proj.weight",
                    LayerPart::Down => "mlp.down_proj.weight",
                };
                write!(f, "{level}_level.layers.{layer}.{part}")
            }
        }
    }
}

/// A tensor the configuration requires: its id and shape (rank 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    pub id: TensorId,
    pub shape: [u32; 2],
    pub rank: u8,
}

impl TensorSpec {
    pub const fn elements(&self) -> usize {
        match self.rank {
            1 => self.shape[0] as usize,
            _ => (self.shape[0] as usize).saturating_mul(self.shape[1] as usize),
        }
    }

    /// Derived tables are always `f32`, whatever the weight type.
    pub const fn always_f32(&self) -> bool {
        matches!(self.id, TensorId::RopeCos | TensorId::RopeSin)
    }

    /// Tensors the converter derives instead of reading them from a checkpoint.
    pub const fn derived(&self) -> bool {
        matches!(self.id, TensorId::RopeCos | TensorId::RopeSin | TensorId::ActivationFormats)
    }

    /// The element types this tensor may be stored as.
    pub const fn allows(&self, dtype: DType) -> bool {
        match self.id {
            TensorId::RopeCos | TensorId::RopeSin => matches!(dtype, DType::F32),
            TensorId::ActivationFormats => matches!(dtype, DType::I32),
            TensorId::Layer {
                part: LayerPart::Qkv | LayerPart::AttnOut | LayerPart::GateUp | LayerPart::Down, ..
            } => !matches!(dtype, DType::I32),
            _ => !matches!(dtype, DType::I32 | DType::F32Panels),
        }
    }

    /// `(rows, cols)`: a vector is one row.
    pub const fn rows_cols(&self) -> (usize, usize) {
        match self.rank {
            1 => (1, self.shape[0] as usize),
            _ => (self.shape[0] as usize, self.shape[1] as usize),
        }
    }
}

/// The tensors a configuration requires, in the order the table stores them:
/// the fixed tensors, then the H module's layers (HRM), then the L module's layers; each layer
/// holds its token mixer (attention or `mlp_t`) and then its channel SwiGLU.
#[derive(Debug, Clone, Copy)]
pub struct TensorLayout {
    config: Config,
    activations: Activations,
}

const PARTS_PER_LAYER: usize = 4;

impl TensorLayout {
    /// The tensors of an `f32`-activation blob of `config`.
    pub const fn new(config: Config) -> Self {
        TensorLayout { config, activations: Activations::F32 }
    }

    /// The tensors of a blob with this header's configuration and activation arithmetic.
    pub const fn of(config: Config, activations: Activations) -> Self {
        TensorLayout { config, activations }
    }

    fn fixed(&self) -> (usize, [Option<TensorId>; 11]) {
        let c = &self.config;
        let mut ids = [None; 11];
        let mut n = 0;
        let mut push = |id| {
            if let Some(slot) = ids.get_mut(n) {
                *slot = Some(id);
                n += 1;
            }
        };
        push(TensorId::TokenEmbedding);
        push(TensorId::LmHead);
        push(TensorId::QHeadWeight);
        push(TensorId::QHeadBias);
        push(TensorId::HInit);
        push(TensorId::LInit);
        if c.puzzle_emb_ndim > 0 {
            push(TensorId::PuzzleEmbedding);
        }
        match c.pos_encoding {
            PosEncoding::Learned => push(TensorId::PositionEmbedding),
            PosEncoding::Rope => {
                push(TensorId::RopeCos);
                push(TensorId::RopeSin);
            }
            PosEncoding::None => {}
        }
        if let Activations::Fixed = self.activations {
            push(TensorId::ActivationFormats);
        }
        (n, ids)
    }

    /// How many tensors the table must hold.
    pub fn count(&self) -> usize {
        let layers = self.config.h_module_layers() as usize + self.config.l_layers as usize;
        self.fixed().0 + layers * PARTS_PER_LAYER
    }

    /// Index of a tensor in the table.
    pub fn index_of(&self, id: TensorId) -> Option<usize> {
        let (n, fixed) = self.fixed();
        if let TensorId::Layer { level, layer, part } = id {
            let part_index = match (part, self.config.has_attention()) {
                (LayerPart::Qkv, true) | (LayerPart::TokenGateUp, false) => 0,
                (LayerPart::AttnOut, true) | (LayerPart::TokenDown, false) => 1,
                (LayerPart::GateUp, _) => 2,
                (LayerPart::Down, _) => 3,
                _ => return None,
            };
            let h_layers = self.config.h_module_layers() as usize;
            let (base, count) = match level {
                Level::H => (n, h_layers),
                Level::L => (n + h_layers * PARTS_PER_LAYER, self.config.l_layers as usize),
            };
            let layer = layer as usize;
            if layer >= count {
                return None;
            }
            return Some(base + layer * PARTS_PER_LAYER + part_index);
        }
        fixed.iter().take(n).position(|slot| *slot == Some(id))
    }

    /// The tensor at `index` of the table, with the shape the configuration implies.
    pub fn spec(&self, index: usize) -> Option<TensorSpec> {
        let c = &self.config;
        let h = c.hidden_size;
        let s = c.positions() as u32;
        let (n, fixed) = self.fixed();
        let id = if index < n {
            (*fixed.get(index)?)?
        } else {
            let layer_index = (index - n) / PARTS_PER_LAYER;
            let part_index = (index - n) % PARTS_PER_LAYER;
            let h_layers = c.h_module_layers() as usize;
            let (level, layer) =
                if layer_index < h_layers { (Level::H, layer_index) } else { (Level::L, layer_index - h_layers) };
            if layer >= c.l_layers as usize && level == Level::L {
                return None;
            }
            let part = match (part_index, c.has_attention()) {
                (0, true) => LayerPart::Qkv,
                (1, true) => LayerPart::AttnOut,
                (0, false) => LayerPart::TokenGateUp,
                (1, false) => LayerPart::TokenDown,
                (2, _) => LayerPart::GateUp,
                _ => LayerPart::Down,
            };
            TensorId::Layer { level, layer: u16::try_from(layer).ok()?, part }
        };
        let two = |a: u32, b: u32| TensorSpec { id, shape: [a, b], rank: 2 };
        let one = |a: u32| TensorSpec { id, shape: [a, 0], rank: 1 };
        Some(match id {
            TensorId::TokenEmbedding | TensorId::LmHead => two(c.vocab_size, h),
            TensorId::QHeadWeight => two(2, h),
            TensorId::QHeadBias => one(2),
            TensorId::HInit | TensorId::LInit => one(h),
            TensorId::PuzzleEmbedding => two(c.num_puzzle_identifiers, c.puzzle_emb_ndim),
            TensorId::PositionEmbedding => two(s, h),
            TensorId::RopeCos | TensorId::RopeSin => two(s, (c.head_dim() / 2) as u32),
            TensorId::ActivationFormats => one(crate::fixed::Sites::new(c).count() as u32),
            TensorId::Layer { part, .. } => match part {
                LayerPart::Qkv => two(3 * h, h),
                LayerPart::AttnOut => two(h, h),
                LayerPart::TokenGateUp => two(2 * c.mlp_t_inter, s),
                LayerPart::TokenDown => two(s, c.mlp_t_inter),
                LayerPart::GateUp => two(2 * c.mlp_inter, h),
                LayerPart::Down => two(h, c.mlp_inter),
            },
        })
    }
}

/// The fixed 128-byte header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub config: Config,
    /// How the forward pass computes: in `f32`, or in fixed point (integer only).
    pub activations: Activations,
    pub tensor_count: u32,
    /// Exact working memory a session needs, in bytes (must equal `config.arena_bytes()`).
    pub arena_bytes: u64,
    /// Total length of the blob: header, table, padding and tensor data.
    pub blob_len: u64,
    /// CRC-32 of bytes `HEADER_LEN..blob_len`.
    pub payload_crc: u32,
}

/// The arithmetic of the forward pass, header byte 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// `f32` activations (weights of any type are widened in registers).
    F32,
    /// Integer-only: activations in fixed point with the formats calibrated at conversion,
    /// `int8` weights, `i32`/`i64` accumulation (see [`crate::fixed`]).
    Fixed,
}

impl Activations {
    pub const fn code(self) -> u8 {
        match self {
            Activations::F32 => 0,
            Activations::Fixed => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Activations::F32 => "f32",
            Activations::Fixed => "fixed",
        }
    }
}

fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

const fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.split_at_checked(off) {
        Some((_, rest)) => match rest.first_chunk::<4>() {
            Some(c) => u32::from_le_bytes(*c),
            None => 0,
        },
        None => 0,
    }
}

const fn u64_at(b: &[u8], off: usize) -> u64 {
    (u32_at(b, off) as u64) | ((u32_at(b, off + 4) as u64) << 32)
}

const fn u8_at(b: &[u8], off: usize) -> u8 {
    match b.split_at_checked(off) {
        Some((_, rest)) => match rest.first() {
            Some(v) => *v,
            None => 0,
        },
        None => 0,
    }
}

const fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_bits(u32_at(b, off))
}

impl Header {
    /// Reads and checks the header: length, magic, version, header CRC, reserved bytes and enum
    /// fields. A `const fn`, so firmware can read the configuration of an `include_bytes!` blob
    /// at compile time. It does not check the payload nor validate the configuration; use
    /// [`crate::Model::from_bytes`] for that.
    pub const fn parse(bytes: &[u8]) -> Result<Header, Error> {
        let b = match bytes.first_chunk::<HEADER_LEN>() {
            Some(b) => b,
            None => return Err(Error::Truncated { needed: HEADER_LEN as u64, got: bytes.len() as u64 }),
        };
        if b[0] != MAGIC[0] || b[1] != MAGIC[1] || b[2] != MAGIC[2] || b[3] != MAGIC[3] {
            return Err(Error::BadMagic);
        }
        let version = u32_at(b, 4);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: version });
        }
        let stored = u32_at(b, HEADER_CRC_AT);
        let covered = match b.split_at_checked(HEADER_CRC_AT) {
            Some((covered, _)) => covered,
            None => return Err(Error::Truncated { needed: HEADER_LEN as u64, got: 0 }),
        };
        let computed = CRC32.checksum(covered);
        if stored != computed {
            return Err(Error::HeaderCrcMismatch { stored, computed });
        }
        let mut i = 112;
        while i < HEADER_CRC_AT {
            if u8_at(b, i) != 0 {
                return Err(Error::InvalidHeader("reserved bytes are not zero"));
            }
            i += 1;
        }
        let kind = match b[8] {
            1 => ModelKind::Hrm,
            2 => ModelKind::Trm,
            _ => return Err(Error::InvalidHeader("unknown model kind")),
        };
        let pos_encoding = match b[9] {
            0 => PosEncoding::None,
            1 => PosEncoding::Rope,
            2 => PosEncoding::Learned,
            _ => return Err(Error::InvalidHeader("unknown position encoding")),
        };
        let flags = b[10];
        if flags & !0b11 != 0 {
            return Err(Error::InvalidHeader("unknown flags"));
        }
        let activations = match b[11] {
            0 => Activations::F32,
            1 => Activations::Fixed,
            _ => return Err(Error::InvalidHeader("unknown activation arithmetic")),
        };
        let config = Config {
            kind,
            pos_encoding,
            mlp_t: flags & 1 != 0,
            halt_rule: if flags & 2 != 0 { HaltRule::HaltPositive } else { HaltRule::HaltOverContinue },
            hidden_size: u32_at(b, 12),
            num_heads: u32_at(b, 16),
            h_layers: u32_at(b, 20),
            l_layers: u32_at(b, 24),
            h_cycles: u32_at(b, 28),
            l_cycles: u32_at(b, 32),
            halt_max_steps: u32_at(b, 36),
            seq_len: u32_at(b, 40),
            vocab_size: u32_at(b, 44),
            num_puzzle_identifiers: u32_at(b, 48),
            puzzle_emb_ndim: u32_at(b, 52),
            puzzle_emb_len: u32_at(b, 56),
            mlp_inter: u32_at(b, 60),
            mlp_t_inter: u32_at(b, 64),
            expansion: f32_at(b, 68),
            rope_theta: f32_at(b, 72),
            rms_norm_eps: f32_at(b, 76),
            halt_exploration_prob: f32_at(b, 80),
            block: u32_at(b, 108),
        };
        Ok(Header {
            config,
            activations,
            tensor_count: u32_at(b, 84),
            arena_bytes: u64_at(b, 88),
            blob_len: u64_at(b, 96),
            payload_crc: u32_at(b, 104),
        })
    }

    /// The header's bytes, header CRC included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let c = &self.config;
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, 0, &MAGIC);
        put(&mut b, 4, &FORMAT_VERSION.to_le_bytes());
        let kind: u8 = match c.kind {
            ModelKind::Hrm => 1,
            ModelKind::Trm => 2,
        };
        let pos: u8 = match c.pos_encoding {
            PosEncoding::None => 0,
            PosEncoding::Rope => 1,
            PosEncoding::Learned => 2,
        };
        let flags = u8::from(c.mlp_t) | (u8::from(c.halt_rule == HaltRule::HaltPositive) << 1);
        put(&mut b, 8, &[kind, pos, flags, self.activations.code()]);
        let fields = [
            c.hidden_size,
            c.num_heads,
            c.h_layers,
            c.l_layers,
            c.h_cycles,
            c.l_cycles,
            c.halt_max_steps,
            c.seq_len,
            c.vocab_size,
            c.num_puzzle_identifiers,
            c.puzzle_emb_ndim,
            c.puzzle_emb_len,
            c.mlp_inter,
            c.mlp_t_inter,
        ];
        for (i, v) in fields.iter().enumerate() {
            put(&mut b, 12 + 4 * i, &v.to_le_bytes());
        }
        put(&mut b, 68, &c.expansion.to_le_bytes());
        put(&mut b, 72, &c.rope_theta.to_le_bytes());
        put(&mut b, 76, &c.rms_norm_eps.to_le_bytes());
        put(&mut b, 80, &c.halt_exploration_prob.to_le_bytes());
        put(&mut b, 84, &self.tensor_count.to_le_bytes());
        put(&mut b, 88, &self.arena_bytes.to_le_bytes());
        put(&mut b, 96, &self.blob_len.to_le_bytes());
        put(&mut b, 104, &self.payload_crc.to_le_bytes());
        put(&mut b, 108, &c.block.to_le_bytes());
        let crc = CRC32.checksum(b.get(..HEADER_CRC_AT).unwrap_or(&[]));
        put(&mut b, HEADER_CRC_AT, &crc.to_le_bytes());
        b
    }

    /// Where the tensor table ends (and the first tensor may start, after alignment).
    pub fn table_end(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.tensor_count) * ENTRY_LEN as u64
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorEntry {
    /// [`TensorId::code`].
    pub id: u32,
    /// [`DType::code`].
    pub dtype: u8,
    pub rank: u8,
    pub shape: [u32; 4],
    /// Offset of the data from the start of the blob.
    pub offset: u64,
    /// Length of the data in bytes.
    pub len: u64,
}

impl TensorEntry {
    /// Reads entry `index` of the table that starts at [`HEADER_LEN`].
    pub fn read(blob: &[u8], index: usize) -> Result<TensorEntry, Error> {
        let start = index
            .checked_mul(ENTRY_LEN)
            .and_then(|o| o.checked_add(HEADER_LEN))
            .ok_or(Error::InvalidHeader("tensor table too large"))?;
        let e = blob
            .get(start..)
            .and_then(|rest| rest.first_chunk::<ENTRY_LEN>())
            .ok_or(Error::Truncated { needed: (start + ENTRY_LEN) as u64, got: blob.len() as u64 })?;
        Ok(TensorEntry {
            id: u32_at(e, 0),
            dtype: u8_at(e, 4),
            rank: u8_at(e, 5),
            shape: [u32_at(e, 8), u32_at(e, 12), u32_at(e, 16), u32_at(e, 20)],
            offset: u64_at(e, 24),
            len: u64_at(e, 32),
        })
    }

    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        put(&mut b, 0, &self.id.to_le_bytes());
        put(&mut b, 4, &[self.dtype, self.rank]);
        for (i, d) in self.shape.iter().enumerate() {
            put(&mut b, 8 + 4 * i, &d.to_le_bytes());
        }
        put(&mut b, 24, &self.offset.to_le_bytes());
        put(&mut b, 32, &self.len.to_le_bytes());
        b
    }

    /// Whether the entry's shape is exactly `spec`'s (unused dimensions zero).
    pub fn matches_shape(&self, spec: &TensorSpec) -> bool {
        let want = match spec.rank {
            1 => [spec.shape[0], 0, 0, 0],
            _ => [spec.shape[0], spec.shape[1], 0, 0],
        };
        self.rank == spec.rank && self.shape == want
    }
}

/// The rotary table value at `position` and frequency index `i` (`i < head_dim / 2`), as the
/// reference computes it in float32: `inv_freq = 1 / theta^(2i / head_dim)`, angle = position ·
/// inv_freq, then the cosine and sine of that float32 angle, correctly rounded.
pub fn rope_value(theta: f32, head_dim: usize, position: usize, i: usize) -> (f32, f32) {
    let exponent = (2 * i) as f32 / head_dim as f32;
    let inv_freq = 1.0 / libm::powf(theta, exponent);
    let angle = position as f32 * inv_freq;
    (libm::cos(f64::from(angle)) as f32, libm::sin(f64::from(angle)) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_ids_round_trip_through_codes_and_names() {
        let mut names = [0u8; 64];
        for code in [1u32 << 24, 10 << 24, (21 << 24) | (2 << 16) | 7, (16 << 24) | (1 << 16)] {
            let id = TensorId::from_code(code).unwrap();
            assert_eq!(id.code(), code);
            let mut w = Cursor { buf: &mut names, len: 0 };
            core::fmt::write(&mut w, format_args!("{id}")).unwrap();
            let len = w.len;
            let name = core::str::from_utf8(&names[..len]).unwrap();
            if !matches!(id, TensorId::RopeCos | TensorId::RopeSin) {
                assert_eq!(TensorId::from_reference_name(name), Some(id), "{name}");
            }
        }
        assert_eq!(TensorId::from_code(0), None);
        assert_eq!(TensorId::from_code((1 << 24) | 1), None);
        assert_eq!(TensorId::from_reference_name("L_level.layers.01.mlp.down_proj.weight"), None);
        assert_eq!(TensorId::from_reference_name("L_level.layers.0.mlp.bogus"), None);
    }

    struct Cursor<'a> {
        buf: &'a mut [u8],
        len: usize,
    }
    impl core::fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let dst = self.buf.get_mut(self.len..self.len + s.len()).ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len += s.len();
            Ok(())
        }
    }

    #[test]
    fn entries_round_trip() {
        let e = TensorEntry { id: 7 << 24, dtype: 1, rank: 2, shape: [3, 5, 0, 0], offset: 192, len: 30 };
        let mut blob = [0u8; HEADER_LEN + ENTRY_LEN];
        blob[HEADER_LEN..].copy_from_slice(&e.encode());
        assert_eq!(TensorEntry::read(&blob, 0).unwrap(), e);
        assert!(matches!(TensorEntry::read(&blob, 1), Err(Error::Truncated { .. })));
    }
}
