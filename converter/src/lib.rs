//! Converts an official HRM/TRM checkpoint (PyTorch zip-pickle as the reference training writes
//! it, or the same tensors as safetensors) into a blob for `hrm-runtime`.
//!
//! The flow is read → check → write: [`Checkpoint::load`] reads the weights and the two
//! configuration files and checks every tensor against the configuration; [`write_blob`] lays
//! them out with the runtime's own [`hrm_runtime::blob`] types and validates the result by
//! loading it with [`hrm_runtime::Model::from_bytes`].

mod error;
mod gptq;
pub mod reference_config;
pub mod source;

use std::collections::BTreeMap;
use std::path::Path;

use hrm_runtime::blob::{self, Header, TensorEntry, TensorId, TensorLayout, TensorSpec, HEADER_LEN};
use hrm_runtime::{Activations, Config, DType, Model};

pub use error::{ConvertError, Result};
pub use gptq::{quantise_q4_compensated, InputMoments, Moments};
pub use source::{HostTensor, Overrides, SourceFiles, WeightsFormat};

/// Prefixes the reference puts before the model's own names (`torch.compile` and the ACT
/// wrapper's `model.inner`).
const PREFIXES: [&str; 2] = ["_orig_mod.", "model.inner."];

/// The state-dict name without the reference's wrapper prefixes.
pub fn strip_prefixes(name: &str) -> &str {
    let mut rest = name;
    for prefix in PREFIXES {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    rest
}

/// A checkpoint whose tensors have been matched one-to-one with what its configuration needs.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: Config,
    pub files: Option<SourceFiles>,
    /// By [`TensorId::code`]; every tensor of the layout except the derived rotary tables.
    tensors: BTreeMap<u32, HostTensor>,
}

impl Checkpoint {
    /// Reads a checkpoint directory or weights file (see [`source::locate`]).
    pub fn load(src: &Path, overrides: &Overrides) -> Result<Checkpoint> {
        let files = source::locate(src, overrides)?;
        let arch = reference_config::read_arch(&files.arch)?;
        let data = reference_config::read_dataset(&files.dataset)?;
        let config = reference_config::to_config(&arch, &data, &files.arch)?;
        let tensors = source::read_tensors(&files.weights, files.format)?;
        let mut checkpoint = Checkpoint::from_tensors(config, tensors)?;
        checkpoint.files = Some(files);
        Ok(checkpoint)
    }

    /// Matches named tensors against `config`: every tensor must be known, used by this
    /// configuration, of the right shape, finite, and present exactly once.
    pub fn from_tensors(config: Config, named: Vec<(String, HostTensor)>) -> Result<Checkpoint> {
        config.validate()?;
        let layout = TensorLayout::new(config);
        let mut tensors = BTreeMap::new();
        for (name, tensor) in named {
            let short = strip_prefixes(&name);
            let id = TensorId::from_reference_name(short).ok_or_else(|| ConvertError::UnexpectedTensor {
                name: name.clone(),
                why: "not a tensor of an HRM or TRM model".into(),
            })?;
            let spec =
                layout.index_of(id).and_then(|i| layout.spec(i)).ok_or_else(|| ConvertError::UnexpectedTensor {
                    name: name.clone(),
                    why: "the configuration has no such tensor (check the layer counts, pos_encodings, \
                      mlp_t and puzzle_emb_ndim)"
                        .into(),
                })?;
            let expected = spec_shape(&spec);
            if tensor.shape != expected {
                return Err(ConvertError::Shape { name, expected, found: tensor.shape });
            }
            if tensor.data.iter().any(|v| !v.is_finite()) {
                return Err(ConvertError::NonFinite { name });
            }
            if tensors.insert(id.code(), tensor).is_some() {
                return Err(ConvertError::UnexpectedTensor { name, why: "appears twice".into() });
            }
        }
        for index in 0..layout.count() {
            let spec = layout.spec(index).ok_or(hrm_runtime::Error::InvalidHeader("layout"))?;
            if !spec.derived() && !tensors.contains_key(&spec.id.code()) {
                return Err(ConvertError::MissingTensor(spec.id.to_string()));
            }
        }
        Ok(Checkpoint { config, files: None, tensors })
    }

    /// The tensor `id` as read from the checkpoint.
    pub fn tensor(&self, id: TensorId) -> Option<&HostTensor> {
        self.tensors.get(&id.code())
    }

    /// Parameter count (the stored tensors, without the derived rotary tables).
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}

fn spec_shape(spec: &TensorSpec) -> Vec<usize> {
    spec.shape.iter().take(spec.rank as usize).map(|&d| d as usize).collect()
}

/// Blobs in memory with the runtime's alignment (defined beside the rest of the std-side
/// inference code, which needs them without this crate's checkpoint readers).
pub use hrm_host::AlignedBlob;

/// Appends `values` (`rows × cols`, row-major) stored as `dtype`; see `runtime/FORMAT.md`.
/// Int4 matrices whose input `moments` are known are rounded with error compensation.
fn encode(values: &[f32], rows: usize, cols: usize, dtype: DType, moments: Option<&Moments>, out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F32Panels => {
            // Panels of 16 rows, each column by column, the rows padded with zeros.
            let mut panels = vec![0.0f32; rows.div_ceil(blob::F32_PANEL_ROWS) * blob::F32_PANEL_ROWS * cols];
            for (i, &v) in values.iter().enumerate() {
                panels[blob::f32_panel_index(i / cols, i % cols, cols)] = v;
            }
            panels.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        DType::F16 => values.iter().for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        DType::Bf16 => values.iter().for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
        DType::I32 => values.iter().for_each(|v| out.extend_from_slice(&(*v as i32).to_le_bytes())),
        DType::I8 => {
            let (scales, q) = quantise_i8(values, rows, cols);
            scales.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            out.extend(q.iter().map(|&v| v as u8));
        }
        DType::Q4 => {
            let (scales, nibbles) = moments
                .and_then(|m| quantise_q4_compensated(values, rows, cols, m))
                .unwrap_or_else(|| quantise_q4(values, rows, cols));
            scales.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            out.extend_from_slice(&nibbles);
        }
    }
}

/// Symmetric int8 per row: `scale = max|v| / 127`, `q = round(v / scale)`.
pub fn quantise_i8(values: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<i8>) {
    let mut scales = Vec::with_capacity(rows);
    let mut q = Vec::with_capacity(values.len());
    for row in values.chunks(cols.max(1)).take(rows) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        scales.push(scale);
        for &v in row {
            let x = if scale > 0.0 { (v / scale).round().clamp(-127.0, 127.0) } else { 0.0 };
            q.push(x as i8);
        }
    }
    (scales, q)
}

/// The 4-bit code of `x` with step `d`: `clamp(round(x / d) + 8, 0, 15)`.
fn q4_code(x: f32, d: f32) -> u8 {
    if d != 0.0 {
        ((x / d).round() + 8.0).clamp(0.0, 15.0) as u8
    } else {
        8
    }
}

/// The step of a block: ggml's Q4_0 maps the value of largest magnitude `m` to −8
/// (`d = m / −8`); this also tries steps a little smaller and larger, with either sign (the
/// code range −8..7 is asymmetric), and keeps the one with the least squared error over the
/// block, as rounded to f16 (what is stored).
fn q4_scale(v: &[f32; 32]) -> half::f16 {
    let m = v.iter().fold(0.0f32, |m, &x| if x.abs() > m.abs() { x } else { m });
    let error = |d: f32| -> f32 { v.iter().map(|&x| (x - d * (f32::from(q4_code(x, d)) - 8.0)).powi(2)).sum() };
    let mut best = half::f16::from_f32(m / -8.0);
    let mut best_error = error(best.to_f32());
    for step in 0..=24 {
        let t = 0.7 + 0.025 * step as f32;
        for d in [m / -8.0 * t, m / 7.0 * t] {
            let candidate = half::f16::from_f32(d);
            let e = error(candidate.to_f32());
            if e < best_error {
                best = candidate;
                best_error = e;
            }
        }
    }
    best
}

/// ggml's Q4_0 per block of 32 values along a row (the last block of a row zero-padded):
/// `v = scale · (q − 8)` with `q` in 0..=15 and one f16 `scale` per block (chosen by
/// [`q4_scale`]); byte `j` of a block holds `q[j] | q[j + 16] << 4`.
pub fn quantise_q4(values: &[f32], rows: usize, cols: usize) -> (Vec<half::f16>, Vec<u8>) {
    use hrm_runtime::blob::{Q4_BLOCK, Q4_BLOCK_BYTES};
    let nb = cols.div_ceil(Q4_BLOCK);
    let mut scales = Vec::with_capacity(rows * nb);
    let mut nibbles = Vec::with_capacity(rows * nb * Q4_BLOCK_BYTES);
    for row in values.chunks(cols.max(1)).take(rows) {
        for block in 0..nb {
            let mut v = [0.0f32; Q4_BLOCK];
            let part = &row[block * Q4_BLOCK..((block + 1) * Q4_BLOCK).min(cols)];
            v[..part.len()].copy_from_slice(part);
            let scale = q4_scale(&v);
            let d = scale.to_f32();
            scales.push(scale);
            let q = |x: f32| q4_code(x, d);
            for j in 0..Q4_BLOCK_BYTES {
                nibbles.push(q(v[j]) | (q(v[j + Q4_BLOCK_BYTES]) << 4));
            }
        }
    }
    (scales, nibbles)
}

/// The rotary table, `[S, head_dim / 2]`, as the reference computes it.
fn rope_table(config: &Config, sin: bool) -> Vec<f32> {
    let half = config.head_dim() / 2;
    let mut out = Vec::with_capacity(config.positions() * half);
    for p in 0..config.positions() {
        for i in 0..half {
            let (c, s) = blob::rope_value(config.rope_theta, config.head_dim(), p, i);
            out.push(if sin { s } else { c });
        }
    }
    out
}

/// How to store a model: weight type, arithmetic, and the fixed-point formats when needed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobOptions {
    /// Element type of the weight matrices (vectors such as `H_init` and biases stay `f32`
    /// when this is a quantised type; the rotary tables are always `f32`).
    pub weights: DType,
    pub activations: Activations,
    /// Fraction bits of every fixed-point site ([`hrm_runtime::fixed::Sites`]); required with
    /// [`Activations::Fixed`] (see [`calibrate`]).
    pub formats: Option<Vec<i32>>,
    /// The layer matrices' input moments ([`InputMoments::collect`]): int4 layer matrices are
    /// then rounded with error compensation ([`quantise_q4_compensated`]).
    pub moments: Option<InputMoments>,
}

impl BlobOptions {
    pub fn weights(weights: DType) -> BlobOptions {
        BlobOptions { weights, activations: Activations::F32, formats: None, moments: None }
    }

    /// The integer-only path: int8 weights, fixed-point activations with these formats.
    pub fn fixed_point(formats: Vec<i32>) -> BlobOptions {
        BlobOptions { weights: DType::I8, activations: Activations::Fixed, formats: Some(formats), moments: None }
    }
}

/// Writes the blob of `checkpoint` with weights stored as `weights` (the rotary tables stay f32),
/// then loads it back with the runtime to prove it valid.
pub fn write_blob(checkpoint: &Checkpoint, weights: DType) -> Result<AlignedBlob> {
    write_blob_with(checkpoint, &BlobOptions::weights(weights))
}

/// Writes the blob of `checkpoint` as `options` say, then loads it back with the runtime.
pub fn write_blob_with(checkpoint: &Checkpoint, options: &BlobOptions) -> Result<AlignedBlob> {
    let config = checkpoint.config;
    let weights = options.weights;
    if matches!(weights, DType::I32) {
        return Err(ConvertError::Options("i32 is not a weight type".into()));
    }
    if options.activations == Activations::Fixed && weights != DType::I8 {
        return Err(ConvertError::Options("fixed-point activations need int8 weights (--weights int8)".into()));
    }
    if weights == DType::F32Panels && !config.f32_panels_fit() {
        return Err(ConvertError::Options(format!(
            "the panel layout needs the hidden size ({}), the SwiGLU width ({}) and the block ({}, or the \
             SwiGLU width if smaller) to be multiples of {}",
            config.hidden_size,
            config.mlp_inter,
            config.block,
            blob::F32_PANEL_ROWS
        )));
    }
    let layout = TensorLayout::of(config, options.activations);
    let count = layout.count();
    let table_end = HEADER_LEN + count * blob::ENTRY_LEN;
    let mut out = vec![0u8; blob::align_up(table_end)];
    for index in 0..count {
        let spec = layout.spec(index).ok_or(hrm_runtime::Error::InvalidHeader("layout"))?;
        let quantised = matches!(weights, DType::I8 | DType::Q4);
        let (values, dtype) = match spec.id {
            TensorId::RopeCos => (rope_table(&config, false), DType::F32),
            TensorId::RopeSin => (rope_table(&config, true), DType::F32),
            TensorId::ActivationFormats => {
                let formats = options
                    .formats
                    .as_ref()
                    .ok_or_else(|| ConvertError::Options("fixed-point activations need calibrated formats".into()))?;
                if formats.len() != spec.elements() {
                    return Err(ConvertError::Options(format!(
                        "{} activation formats given, the model has {} sites",
                        formats.len(),
                        spec.elements()
                    )));
                }
                (formats.iter().map(|&f| f as f32).collect(), DType::I32)
            }
            id => {
                let t = checkpoint.tensor(id).ok_or_else(|| ConvertError::MissingTensor(id.to_string()))?;
                if weights == DType::F16 && t.data.iter().any(|v| v.abs() > f32::from(half::f16::MAX)) {
                    return Err(ConvertError::Range { name: id.to_string(), dtype: "f16" });
                }
                let dtype = match id {
                    _ if quantised && spec.rank == 1 => DType::F32,
                    // Panels for the products' matrices; embeddings, heads and vectors stay f32.
                    _ if weights == DType::F32Panels && !spec.allows(DType::F32Panels) => DType::F32,
                    // The edges of the network (token and puzzle embeddings, positions, the output
                    // heads) are small and the most sensitive: int4 blobs keep them in int8, as
                    // llama.cpp keeps its output layer at higher precision.
                    TensorId::TokenEmbedding
                    | TensorId::LmHead
                    | TensorId::QHeadWeight
                    | TensorId::PuzzleEmbedding
                    | TensorId::PositionEmbedding
                        if weights == DType::Q4 =>
                    {
                        DType::I8
                    }
                    _ => weights,
                };
                (t.data.clone(), dtype)
            }
        };
        let offset = out.len();
        let (rows, cols) = spec.rows_cols();
        let moments = options.moments.as_ref().and_then(|m| m.get(spec.id));
        encode(&values, rows, cols, dtype, moments, &mut out);
        let len = out.len() - offset;
        let mut shape = [0u32; 4];
        shape[..2].copy_from_slice(&spec.shape);
        let entry = TensorEntry {
            id: spec.id.code(),
            dtype: dtype.code(),
            rank: spec.rank,
            shape,
            offset: offset as u64,
            len: len as u64,
        };
        let at = HEADER_LEN + index * blob::ENTRY_LEN;
        out[at..at + blob::ENTRY_LEN].copy_from_slice(&entry.encode());
        out.resize(blob::align_up(out.len()), 0);
    }
    let header = Header {
        config,
        activations: options.activations,
        tensor_count: count as u32,
        arena_bytes: config.arena_bytes_for(options.activations) as u64,
        blob_len: out.len() as u64,
        payload_crc: blob::CRC32.checksum(&out[HEADER_LEN..]),
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    let blob = AlignedBlob::from_bytes(&out);
    Model::from_bytes(&blob)?;
    Ok(blob)
}

/// The largest magnitude seen at every fixed-point site.
struct MaxAbs(Vec<f32>);

impl hrm_runtime::fixed::Observer for MaxAbs {
    fn observe(&mut self, site: usize, values: &[f32]) {
        if let Some(m) = self.0.get_mut(site) {
            *m = values.iter().fold(*m, |m, v| m.max(v.abs()));
        }
    }
}

/// The format of a site whose values reached `max_abs` during calibration: as many fraction
/// bits as keep `2 · max_abs` (one bit of headroom for inputs beyond the calibration set)
/// within the `i16` range, between [`hrm_runtime::fixed::MIN_FRAC`] and `MAX_FRAC`.
pub fn format_for(max_abs: f32) -> i32 {
    use hrm_runtime::fixed::{MAX_FRAC, MIN_FRAC};
    let mut frac = MAX_FRAC;
    while frac > MIN_FRAC && 2.0 * f64::from(max_abs) * 2f64.powi(frac) > 32767.0 {
        frac -= 1;
    }
    frac
}

/// Calibrates the fixed-point formats: runs the model with `int8` weights and `f32` activations
/// on `inputs` (tokens and puzzle identifier), every segment, records the largest magnitude at
/// each site and picks its format ([`format_for`]). `progress` is called after each example.
pub fn calibrate(checkpoint: &Checkpoint, inputs: &[(Vec<u32>, u32)], progress: &dyn Fn()) -> Result<Vec<i32>> {
    let blob = write_blob(checkpoint, DType::I8)?;
    let sites = hrm_runtime::fixed::Sites::new(&checkpoint.config);
    let mut seen = MaxAbs(vec![0.0; sites.count()]);
    observe_runs(&blob, inputs, &mut seen, progress)?;
    Ok(seen.0.iter().map(|&m| format_for(m)).collect())
}

/// Runs the model of `blob` (`f32` activations) on `inputs` (tokens and puzzle identifier),
/// every segment, showing `observer` its activations; `progress` is called after each example.
fn observe_runs(
    blob: &[u8],
    inputs: &[(Vec<u32>, u32)],
    observer: &mut dyn hrm_runtime::fixed::Observer,
    progress: &dyn Fn(),
) -> Result<()> {
    if inputs.is_empty() {
        return Err(ConvertError::Options("the calibration set is empty".into()));
    }
    let model = Model::from_bytes(blob)?;
    let mut arena = AlignedBlob::from_bytes(&vec![0u8; model.arena_bytes()]);
    let mut session = hrm_runtime::Session::new(model, arena.as_mut_bytes())?;
    for (tokens, puzzle_id) in inputs {
        session.reset(tokens, *puzzle_id)?;
        for _ in 0..model.config().halt_max_steps {
            session.step_observed(observer)?;
        }
        progress();
    }
    Ok(())
}
