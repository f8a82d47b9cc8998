use std::path::PathBuf;

/// Everything that can stop a conversion. Messages name the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Source(String),
    #[error("{path}: cannot read PyTorch checkpoint: {message}")]
    Pickle { path: PathBuf, message: String },
    #[error("{path}: cannot read safetensors: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    #[error("unexpected tensor `{name}`: {why}")]
    UnexpectedTensor { name: String, why: String },
    #[error("tensor `{name}` has shape {found:?}, the configuration needs {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` has unsupported element type {dtype}")]
    DType { name: String, dtype: String },
    #[error("tensor `{name}` holds non-finite values")]
    NonFinite { name: String },
    #[error("tensor `{name}` holds values beyond the range of {dtype}; store the weights as f32 or bf16")]
    Range { name: String, dtype: &'static str },
    #[error("{0}")]
    Options(String),
    #[error("invalid model: {0}")]
    Model(#[from] hrm_runtime::Error),
}

pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
