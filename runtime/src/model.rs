//! A validated blob: configuration plus typed views of the weights, read in place.

use half::{bf16, f16};

use crate::blob::{self, DType, Header, TensorEntry, TensorId, TensorLayout, HEADER_LEN, TENSOR_ALIGN};
use crate::config::Config;
use crate::error::TensorProblem;
use crate::kernels;
use crate::Error;

/// The elements of a stored tensor, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
}

/// A row-major matrix (a vector is a single row) of stored weights.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub rows: usize,
    pub cols: usize,
    pub weights: Weights<'a>,
}

impl<'a> Matrix<'a> {
    /// `y = W·x` with `W[rows, cols]`.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
        if x.len() != self.cols || y.len() != self.rows {
            return Err(Error::OutputLength { expected: self.rows, got: y.len() });
        }
        match self.weights {
            Weights::F32(w) => kernels::matvec(w, x, y),
            Weights::F16(w) => kernels::matvec(w, x, y),
            Weights::Bf16(w) => kernels::matvec(w, x, y),
        }
    }

    /// Rows `start..start + n` as a matrix of their own (the Q, K and V parts of `qkv_proj`).
    pub fn rows(&self, start: usize, n: usize) -> Result<Matrix<'a>, Error> {
        let range = start.saturating_mul(self.cols)..start.saturating_add(n).saturating_mul(self.cols);
        let missing = Error::OutputLength { expected: range.end, got: self.rows.saturating_mul(self.cols) };
        let weights = match self.weights {
            Weights::F32(w) => Weights::F32(w.get(range).ok_or(missing)?),
            Weights::F16(w) => Weights::F16(w.get(range).ok_or(missing)?),
            Weights::Bf16(w) => Weights::Bf16(w.get(range).ok_or(missing)?),
        };
        Ok(Matrix { rows: n, cols: self.cols, weights })
    }

    /// `Y = X · Wᵀ` for `rows` rows of `X` (`xs` apart; each row's first `cols` values are
    /// used) into `rows` rows of `Y` (`ys` apart).
    pub fn matmul(&self, x: &[f32], xs: usize, y: &mut [f32], ys: usize, rows: usize) -> Result<(), Error> {
        let d = kernels::Dims { rows, out: self.rows, k: self.cols, xs, ws: self.cols, ys, accumulate: false };
        match self.weights {
            Weights::F32(w) => kernels::matmul(x, w, y, d),
            Weights::F16(w) => kernels::matmul(x, w, y, d),
            Weights::Bf16(w) => kernels::matmul(x, w, y, d),
        }
    }

    /// Columns `start..start + n` of every row: a matrix whose rows lie `cols` apart.
    pub fn columns(&self, start: usize, n: usize) -> Result<Columns<'a>, Error> {
        if start.saturating_add(n) > self.cols {
            return Err(Error::OutputLength { expected: start.saturating_add(n), got: self.cols });
        }
        let weights = match self.weights {
            Weights::F32(w) => Weights::F32(w.get(start..).unwrap_or(&[])),
            Weights::F16(w) => Weights::F16(w.get(start..).unwrap_or(&[])),
            Weights::Bf16(w) => Weights::Bf16(w.get(start..).unwrap_or(&[])),
        };
        Ok(Columns { rows: self.rows, cols: n, stride: self.cols, weights })
    }

    /// Writes `row` widened to `f32` into `out` (up to `out.len()` values).
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), Error> {
        let start = row.checked_mul(self.cols).ok_or(Error::OutputLength { expected: 0, got: 0 })?;
        let range = start..start.saturating_add(self.cols);
        let missing = Error::OutputLength { expected: self.cols, got: 0 };
        match self.weights {
            Weights::F32(w) => widen(w.get(range).ok_or(missing)?, out),
            Weights::F16(w) => widen(w.get(range).ok_or(missing)?, out),
            Weights::Bf16(w) => widen(w.get(range).ok_or(missing)?, out),
        }
        Ok(())
    }

    /// Element `i` (row-major) widened to `f32`.
    pub fn get(&self, i: usize) -> Option<f32> {
        match self.weights {
            Weights::F32(w) => w.get(i).copied(),
            Weights::F16(w) => w.get(i).map(|v| v.to_f32()),
            Weights::Bf16(w) => w.get(i).map(|v| v.to_f32()),
        }
    }
}

/// Some columns of a [`Matrix`]: `rows` rows of `cols` elements, `stride` apart.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub weights: Weights<'a>,
}

impl Columns<'_> {
    /// `Y (+)= X · Wᵀ` with these columns as `W`; `d` must name their shape.
    pub fn matmul(&self, x: &[f32], y: &mut [f32], d: kernels::Dims) -> Result<(), Error> {
        if d.out != self.rows || d.k != self.cols || d.ws != self.stride {
            return Err(Error::OutputLength { expected: self.rows, got: d.out });
        }
        match self.weights {
            Weights::F32(w) => kernels::matmul(x, w, y, d),
            Weights::F16(w) => kernels::matmul(x, w, y, d),
            Weights::Bf16(w) => kernels::matmul(x, w, y, d),
        }
    }
}

fn widen<E: kernels::Element>(src: &[E], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = v.to_f32();
    }
}

/// A model read in place from a blob. Cheap to copy; holds no weights of its own.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    blob: &'a [u8],
    header: Header,
    layout: TensorLayout,
}

impl<'a> Model<'a> {
    /// Validates a blob completely (magic, version, both CRCs, configuration, arena size, every
    /// tensor's id, shape, type, bounds and alignment) without copying any weight.
    ///
    /// The slice may be longer than the blob (a flash region, say); bytes after `blob_len` are
    /// ignored. Its start must be aligned to 4 bytes (64 for best speed) since weights are read
    /// in place.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let header = Header::parse(bytes)?;
        let available = bytes.len() as u64;
        if header.blob_len > available {
            return Err(Error::Truncated { needed: header.blob_len, got: available });
        }
        if header.blob_len < HEADER_LEN as u64 {
            return Err(Error::InvalidHeader("blob length is shorter than the header"));
        }
        let blob_len =
            usize::try_from(header.blob_len).map_err(|_| Error::InvalidHeader("blob length does not fit in memory"))?;
        let blob = bytes.get(..blob_len).ok_or(Error::Truncated { needed: header.blob_len, got: available })?;
        let payload = blob.get(HEADER_LEN..).unwrap_or(&[]);
        let computed = blob::CRC32.checksum(payload);
        if computed != header.payload_crc {
            return Err(Error::PayloadCrcMismatch { stored: header.payload_crc, computed });
        }
        Self::validate(blob, header)
    }

    /// Like [`Model::from_bytes`] but without computing the payload CRC, for devices that
    /// checked the image once at flashing time and want to boot fast. Everything else is still
    /// validated, so a corrupt payload can give wrong answers but never out-of-bounds reads.
    pub fn from_bytes_skip_payload_crc(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let header = Header::parse(bytes)?;
        let available = bytes.len() as u64;
        if header.blob_len > available {
            return Err(Error::Truncated { needed: header.blob_len, got: available });
        }
        let blob_len =
            usize::try_from(header.blob_len).map_err(|_| Error::InvalidHeader("blob length does not fit in memory"))?;
        let blob = bytes.get(..blob_len).ok_or(Error::Truncated { needed: header.blob_len, got: available })?;
        Self::validate(blob, header)
    }

    fn validate(blob: &'a [u8], header: Header) -> Result<Model<'a>, Error> {
        let config = header.config;
        config.validate()?;
        if header.arena_bytes != config.arena_bytes() as u64 {
            return Err(Error::InvalidHeader("arena_bytes does not match the configuration"));
        }
        let layout = TensorLayout::new(config);
        if header.tensor_count as usize != layout.count() {
            return Err(Error::InvalidHeader("tensor_count does not match the configuration"));
        }
        let table_end = header.table_end();
        if table_end > header.blob_len {
            return Err(Error::InvalidHeader("tensor table extends past the blob"));
        }
        // Weights are read in place: the blob itself must be aligned for the widest element.
        if blob.as_ptr().align_offset(4) != 0 {
            return Err(Error::Misaligned);
        }
        let model = Model { blob, header, layout };
        for index in 0..layout.count() {
            model.check_entry(index, table_end)?;
        }
        Ok(model)
    }

    fn check_entry(&self, index: usize, table_end: u64) -> Result<(), Error> {
        let fail = |problem| Error::InvalidTensor { index: index as u32, problem };
        let spec = self.layout.spec(index).ok_or(Error::InvalidHeader("tensor table layout"))?;
        let entry = TensorEntry::read(self.blob, index)?;
        if entry.id != spec.id.code() {
            return Err(fail(TensorProblem::UnexpectedId { expected: spec.id.code(), found: entry.id }));
        }
        let dtype = DType::from_code(entry.dtype).ok_or(fail(TensorProblem::DType))?;
        if spec.always_f32() && dtype != DType::F32 {
            return Err(fail(TensorProblem::DType));
        }
        if !entry.matches_shape(&spec) {
            return Err(fail(TensorProblem::Shape));
        }
        let bytes = (spec.elements() as u64).checked_mul(dtype.size() as u64);
        if bytes != Some(entry.len) {
            return Err(fail(TensorProblem::Length));
        }
        if entry.offset % TENSOR_ALIGN as u64 != 0 {
            return Err(fail(TensorProblem::Alignment));
        }
        let end = entry.offset.checked_add(entry.len).ok_or(fail(TensorProblem::OutOfBounds))?;
        if entry.offset < table_end || end > self.header.blob_len {
            return Err(fail(TensorProblem::OutOfBounds));
        }
        // Reading it once proves the in-place cast works (alignment of the final address).
        self.matrix_at(index).map(|_| ())
    }

    fn matrix_at(&self, index: usize) -> Result<Matrix<'a>, Error> {
        let fail = |problem| Error::InvalidTensor { index: index as u32, problem };
        let entry = TensorEntry::read(self.blob, index)?;
        let spec = self.layout.spec(index).ok_or(Error::InvalidHeader("tensor table layout"))?;
        let start = usize::try_from(entry.offset).map_err(|_| fail(TensorProblem::OutOfBounds))?;
        let len = usize::try_from(entry.len).map_err(|_| fail(TensorProblem::OutOfBounds))?;
        let end = start.checked_add(len).ok_or(fail(TensorProblem::OutOfBounds))?;
        let bytes = self.blob.get(start..end).ok_or(fail(TensorProblem::OutOfBounds))?;
        let weights = match DType::from_code(entry.dtype) {
            Some(DType::F32) => Weights::F32(bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)?),
            Some(DType::F16) => Weights::F16(bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)?),
            Some(DType::Bf16) => Weights::Bf16(bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)?),
            None => return Err(fail(TensorProblem::DType)),
        };
        let (rows, cols) = match spec.rank {
            1 => (1, spec.shape[0] as usize),
            _ => (spec.shape[0] as usize, spec.shape[1] as usize),
        };
        Ok(Matrix { rows, cols, weights })
    }

    /// The weights of tensor `id`.
    pub fn tensor(&self, id: TensorId) -> Result<Matrix<'a>, Error> {
        let index = self.layout.index_of(id).ok_or(Error::InvalidHeader("tensor not in this model"))?;
        self.matrix_at(index)
    }

    /// The table entry at `index` with its id (for inspection).
    pub fn entry(&self, index: usize) -> Result<TensorEntry, Error> {
        TensorEntry::read(self.blob, index)
    }

    pub fn config(&self) -> &Config {
        &self.header.config
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of working memory a session of this model needs.
    pub fn arena_bytes(&self) -> usize {
        self.header.config.arena_bytes()
    }

    pub fn tensor_count(&self) -> usize {
        self.layout.count()
    }

    /// The blob bytes (exactly `blob_len` of them).
    pub fn bytes(&self) -> &'a [u8] {
        self.blob
    }
}
