//! One error type for everything the runtime can refuse.

use core::fmt;

/// What went wrong while reading a blob or running a model.
///
/// Every variant is a plain value (no allocation) so that firmware can match on it and print it
/// with `defmt` or `core::fmt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the structure they should hold (`needed` bytes, `got` available).
    Truncated { needed: u64, got: u64 },
    /// The first four bytes are not `HRMB`.
    BadMagic,
    /// The blob was written for another version of the format.
    UnsupportedVersion { found: u32 },
    /// The header's CRC-32 does not match its bytes.
    HeaderCrcMismatch { stored: u32, computed: u32 },
    /// The CRC-32 of everything after the header (tensor table and data) does not match.
    PayloadCrcMismatch { stored: u32, computed: u32 },
    /// A header field is out of range or inconsistent with the others.
    InvalidHeader(&'static str),
    /// An entry of the tensor table is not what the model's configuration requires.
    InvalidTensor { index: u32, problem: TensorProblem },
    /// The blob (or a tensor in it) does not start at an address aligned for its element type.
    Misaligned,
    /// The caller's working memory is smaller than the model needs.
    ArenaTooSmall { needed: usize, got: usize },
    /// The caller's working memory does not start at a 4-byte aligned address.
    ArenaMisaligned,
    /// The input does not have `seq_len` tokens.
    InputLength { expected: usize, got: usize },
    /// A token is not below the vocabulary size.
    InvalidToken { position: usize, token: u32 },
    /// The puzzle identifier is not below `num_puzzle_identifiers`.
    InvalidPuzzleId { id: u32, count: u32 },
    /// `step` was called before `reset`.
    NotReset,
    /// An output buffer has the wrong length.
    OutputLength { expected: usize, got: usize },
    /// A noise level that is negative, not a number or absurdly large (over 1000).
    InvalidNoise,
}

/// Why a tensor-table entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorProblem {
    /// The table holds another tensor at this place (tensors are stored in a fixed order).
    UnexpectedId { expected: u32, found: u32 },
    /// The shape differs from the one the configuration implies.
    Shape,
    /// The element type is unknown or not allowed for this tensor.
    DType,
    /// The byte length does not match shape × element size.
    Length,
    /// The data lies (partly) outside the blob or overlaps the header and table.
    OutOfBounds,
    /// The data offset is not a multiple of the format's alignment.
    Alignment,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, got } => {
                write!(f, "blob is truncated: {needed} bytes needed, {got} present")
            }
            Error::BadMagic => f.write_str("not an HRM blob (bad magic; expected \"HRMB\")"),
            Error::UnsupportedVersion { found } => write!(
                f,
                "unsupported blob format version {found} (this runtime reads version {})",
                crate::blob::FORMAT_VERSION
            ),
            Error::HeaderCrcMismatch { stored, computed } => {
                write!(f, "header is corrupt: CRC-32 {computed:#010x} does not match stored {stored:#010x}")
            }
            Error::PayloadCrcMismatch { stored, computed } => {
                write!(f, "tensor data is corrupt: CRC-32 {computed:#010x} does not match stored {stored:#010x}")
            }
            Error::InvalidHeader(why) => write!(f, "invalid header: {why}"),
            Error::InvalidTensor { index, problem } => {
                write!(f, "tensor table entry {index}: {problem}")
            }
            Error::Misaligned => f.write_str("blob is not aligned in memory (place it at a 64-byte aligned address)"),
            Error::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: the model needs {needed} bytes, got {got}")
            }
            Error::ArenaMisaligned => f.write_str("arena is not 4-byte aligned"),
            Error::InputLength { expected, got } => {
                write!(f, "input has {got} tokens, the model takes {expected}")
            }
            Error::InvalidToken { position, token } => {
                write!(f, "token {token} at position {position} is outside the vocabulary")
            }
            Error::InvalidPuzzleId { id, count } => {
                write!(f, "puzzle identifier {id} is out of range (the model knows {count})")
            }
            Error::NotReset => f.write_str("no example loaded: call reset before step"),
            Error::OutputLength { expected, got } => {
                write!(f, "output buffer holds {got} values, {expected} needed")
            }
            Error::InvalidNoise => f.write_str("noise sigma must be a number from 0 to 1000"),
        }
    }
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TensorProblem::UnexpectedId { expected, found } => write!(
                f,
                "found tensor {} where {} belongs",
                crate::blob::TensorId::from_code(found).map_or(IdName::Raw(found), IdName::Known),
                crate::blob::TensorId::from_code(expected).map_or(IdName::Raw(expected), IdName::Known),
            ),
            TensorProblem::Shape => f.write_str("shape does not match the model configuration"),
            TensorProblem::DType => f.write_str("unsupported element type"),
            TensorProblem::Length => f.write_str("byte length does not match its shape"),
            TensorProblem::OutOfBounds => f.write_str("data lies outside the blob"),
            TensorProblem::Alignment => f.write_str("data offset is not 64-byte aligned"),
        }
    }
}

enum IdName {
    Known(crate::blob::TensorId),
    Raw(u32),
}

impl fmt::Display for IdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdName::Known(id) => write!(f, "`{id}`"),
            IdName::Raw(code) => write!(f, "with unknown id {code:#010x}"),
        }
    }
}

impl core::error::Error for Error {}
