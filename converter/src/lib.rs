//! Converts an official HRM/TRM checkpoint (PyTorch zip-pickle as the reference training writes
//! it, or the same tensors as safetensors) into a blob for `hrm-runtime`.
//!
//! The flow is read → check → write: [`Checkpoint::load`] reads the weights and the two
//! configuration files and checks every tensor against the configuration; [`write_blob`] lays
//! them out with the runtime's own [`hrm_runtime::blob`] types and validates the result by
//! loading it with [`hrm_runtime::Model::from_bytes`].

mod error;
pub mod reference_config;
pub mod source;

use std::collections::BTreeMap;
use std::path::Path;

use hrm_runtime::blob::{self, Header, TensorEntry, TensorId, TensorLayout, TensorSpec, HEADER_LEN};
use hrm_runtime::{Config, DType, Model};

pub use error::{ConvertError, Result};
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
            if !spec.always_f32() && !tensors.contains_key(&spec.id.code()) {
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

/// Bytes with the alignment the runtime needs to read weights in place (the start of a `Vec<u8>`
/// carries no alignment guarantee).
#[derive(Clone)]
pub struct AlignedBlob {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBlob {
    pub fn from_bytes(bytes: &[u8]) -> AlignedBlob {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBlob { words, len: bytes.len() }
    }

    /// Reads a whole file.
    pub fn read(path: &Path) -> Result<AlignedBlob> {
        let bytes = std::fs::read(path).map_err(|source| ConvertError::Io { path: path.to_owned(), source })?;
        Ok(AlignedBlob::from_bytes(&bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }
}

impl std::ops::Deref for AlignedBlob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

fn encode(values: &[f32], dtype: DType, out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values.iter().for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        DType::Bf16 => values.iter().for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
    }
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

/// Writes the blob of `checkpoint` with weights stored as `weights` (the rotary tables stay f32),
/// then loads it back with the runtime to prove it valid.
pub fn write_blob(checkpoint: &Checkpoint, weights: DType) -> Result<AlignedBlob> {
    let config = checkpoint.config;
    let layout = TensorLayout::new(config);
    let count = layout.count();
    let table_end = HEADER_LEN + count * blob::ENTRY_LEN;
    let mut out = vec![0u8; blob::align_up(table_end)];
    for index in 0..count {
        let spec = layout.spec(index).ok_or(hrm_runtime::Error::InvalidHeader("layout"))?;
        let (values, dtype) = match spec.id {
            TensorId::RopeCos => (rope_table(&config, false), DType::F32),
            TensorId::RopeSin => (rope_table(&config, true), DType::F32),
            id => {
                let t = checkpoint.tensor(id).ok_or_else(|| ConvertError::MissingTensor(id.to_string()))?;
                if weights == DType::F16 && t.data.iter().any(|v| v.abs() > f32::from(half::f16::MAX)) {
                    return Err(ConvertError::Range { name: id.to_string(), dtype: "f16" });
                }
                (t.data.clone(), weights)
            }
        };
        let offset = out.len();
        encode(&values, dtype, &mut out);
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
        tensor_count: count as u32,
        arena_bytes: config.arena_bytes() as u64,
        blob_len: out.len() as u64,
        payload_crc: blob::CRC32.checksum(&out[HEADER_LEN..]),
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    let blob = AlignedBlob::from_bytes(&out);
    Model::from_bytes(&blob)?;
    Ok(blob)
}
