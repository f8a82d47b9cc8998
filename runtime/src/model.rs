//! A validated blob: configuration plus typed views of the weights, read in place.

use half::{bf16, f16};

use crate::blob::{
    self, Activations, DType, Header, LayerPart, Level, TensorEntry, TensorId, TensorLayout, F32_PANEL_ROWS,
    HEADER_LEN, Q4_BLOCK, Q4_BLOCK_BYTES, TENSOR_ALIGN,
};
use crate::config::Config;
use crate::error::TensorProblem;
use crate::kernels;
use crate::Error;

/// The elements of a stored tensor, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    /// [`DType::F32Panels`]: row `r`, column `c` at `(r / 16)·16·cols + 16·c + r % 16`.
    F32Panels(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
    /// Row `r` is `scales[r] · values[r·cols ..][..cols]`.
    I8 {
        scales: &'a [f32],
        values: &'a [i8],
    },
    /// Row `r`, block `b` (32 values) is `scales[r·nb + b] · (nibble − 8)`, its 16 bytes at
    /// `nibbles[(r·nb + b)·16 ..]`: byte `j` holds value `j` (low nibble) and `j + 16` (high).
    Q4 {
        scales: &'a [f16],
        nibbles: &'a [u8],
    },
    /// Plain integers (not a weight: the fixed-point path's format table).
    I32(&'a [i32]),
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
        self.matmul(x, self.cols, y, self.rows, 1)
    }

    /// Blocks of 32 values per row of a [`Weights::Q4`] matrix.
    fn q4_blocks(&self) -> usize {
        self.cols.div_ceil(Q4_BLOCK)
    }

    /// Rows `start..start + n` as a matrix of their own (the Q, K and V parts of `qkv_proj`).
    pub fn rows(&self, start: usize, n: usize) -> Result<Matrix<'a>, Error> {
        let end = start.checked_add(n).filter(|&e| e <= self.rows);
        let end = end.ok_or(Error::OutputLength { expected: start.saturating_add(n), got: self.rows })?;
        let per_row = |width: usize| start.saturating_mul(width)..end.saturating_mul(width);
        let missing = Error::OutputLength { expected: end, got: self.rows };
        let weights = match self.weights {
            Weights::F32(w) => Weights::F32(w.get(per_row(self.cols)).ok_or(missing)?),
            Weights::F32Panels(w) => {
                // Whole panels from `start` (which must begin one) to the one holding `end - 1`.
                if !start.is_multiple_of(F32_PANEL_ROWS) {
                    return Err(Error::InvalidHeader("a range of panel rows must start at a multiple of 16"));
                }
                let panels = start..end.div_ceil(F32_PANEL_ROWS) * F32_PANEL_ROWS;
                Weights::F32Panels(w.get(panels.start * self.cols..panels.end * self.cols).ok_or(missing)?)
            }
            Weights::F16(w) => Weights::F16(w.get(per_row(self.cols)).ok_or(missing)?),
            Weights::Bf16(w) => Weights::Bf16(w.get(per_row(self.cols)).ok_or(missing)?),
            Weights::I32(w) => Weights::I32(w.get(per_row(self.cols)).ok_or(missing)?),
            Weights::I8 { scales, values } => Weights::I8 {
                scales: scales.get(per_row(1)).ok_or(missing)?,
                values: values.get(per_row(self.cols)).ok_or(missing)?,
            },
            Weights::Q4 { scales, nibbles } => {
                let nb = self.q4_blocks();
                Weights::Q4 {
                    scales: scales.get(per_row(nb)).ok_or(missing)?,
                    nibbles: nibbles.get(per_row(nb * Q4_BLOCK_BYTES)).ok_or(missing)?,
                }
            }
        };
        Ok(Matrix { rows: n, cols: self.cols, weights })
    }

    /// `Y = X · Wᵀ` for `rows` rows of `X` (`xs` apart; each row's first `cols` values are
    /// used) into `rows` rows of `Y` (`ys` apart).
    pub fn matmul(&self, x: &[f32], xs: usize, y: &mut [f32], ys: usize, rows: usize) -> Result<(), Error> {
        let d = kernels::Dims { rows, out: self.rows, k: self.cols, xs, ws: self.cols, ys, accumulate: false };
        match self.weights {
            Weights::F32(w) => kernels::matmul(x, w, y, d),
            Weights::F32Panels(w) => kernels::matmul_panels(x, w, y, d),
            Weights::F16(w) => kernels::matmul(x, w, y, d),
            Weights::Bf16(w) => kernels::matmul(x, w, y, d),
            Weights::I8 { scales, values } => kernels::matmul_i8(x, values, scales, y, d),
            Weights::Q4 { scales, nibbles } => {
                kernels::matmul_q4(x, kernels::int4::Q4Rows { scales, nibbles, blocks: self.q4_blocks() }, y, d)
            }
            Weights::I32(_) => Err(Error::InvalidHeader("an integer table is not a weight matrix")),
        }
    }

    /// Writes `out.len()` values of row `row` from column `col` on, widened to `f32`.
    fn widen_row(&self, row: usize, col: usize, out: &mut [f32]) -> Result<(), Error> {
        let missing = Error::OutputLength { expected: col.saturating_add(out.len()), got: self.cols };
        if row >= self.rows || col.saturating_add(out.len()) > self.cols {
            return Err(missing);
        }
        let at = row * self.cols + col;
        let range = at..at + out.len();
        match self.weights {
            Weights::F32(w) => widen(w.get(range).ok_or(missing)?, out),
            Weights::F32Panels(w) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = *w.get(blob::f32_panel_index(row, col + i, self.cols)).ok_or(missing)?;
                }
            }
            Weights::F16(w) => widen(w.get(range).ok_or(missing)?, out),
            Weights::Bf16(w) => widen(w.get(range).ok_or(missing)?, out),
            Weights::I32(_) => return Err(Error::InvalidHeader("an integer table is not a weight matrix")),
            Weights::I8 { scales, values } => {
                let scale = *scales.get(row).ok_or(missing)?;
                for (o, &q) in out.iter_mut().zip(values.get(range).ok_or(missing)?) {
                    *o = scale * f32::from(q);
                }
            }
            Weights::Q4 { scales, nibbles } => {
                // A block at a time: its 32 values decoded once, then the wanted part copied.
                let nb = self.q4_blocks();
                let mut c = col;
                for chunk in out.chunks_mut(Q4_BLOCK) {
                    let mut filled = 0;
                    while filled < chunk.len() {
                        let block = row * nb + c / Q4_BLOCK;
                        // The kernels' widening (on a Cortex-M FPU one `VCVTB`, not the `half`
                        // crate's software conversion).
                        let scale = kernels::Element::to_f32(*scales.get(block).ok_or(missing)?);
                        let bytes = nibbles.get(block * Q4_BLOCK_BYTES..(block + 1) * Q4_BLOCK_BYTES).ok_or(missing)?;
                        let j = c % Q4_BLOCK;
                        let take = (Q4_BLOCK - j).min(chunk.len() - filled);
                        let dst = chunk.get_mut(filled..filled + take).ok_or(missing)?;
                        if let Ok(whole) = <&mut [f32; Q4_BLOCK]>::try_from(&mut *dst) {
                            // A whole block decoded in place (no copy through a buffer: on the
                            // M4F the copies were a quarter of an int4 segment).
                            decode_q4(scale, bytes, whole);
                        } else {
                            let mut values = [0.0f32; Q4_BLOCK];
                            decode_q4(scale, bytes, &mut values);
                            dst.copy_from_slice(values.get(j..j + take).ok_or(missing)?);
                        }
                        filled += take;
                        c += take;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `row` widened to `f32` into `out` (up to `out.len()` values).
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), Error> {
        let n = out.len().min(self.cols);
        self.widen_row(row, 0, out.get_mut(..n).unwrap_or(&mut []))
    }

    /// Element `i` (row-major) widened to `f32`.
    pub fn get(&self, i: usize) -> Option<f32> {
        let mut v = [0.0f32];
        let (row, col) = (i.checked_div(self.cols)?, i.checked_rem(self.cols)?);
        self.widen_row(row, col, &mut v).ok()?;
        Some(v[0])
    }
}

/// The 32 values of an int4 block: `scale · (nibble − 8)`, byte `j` holding value `j` (low
/// nibble) and `j + 16` (high).
#[inline(always)]
fn decode_q4(scale: f32, bytes: &[u8], out: &mut [f32; Q4_BLOCK]) {
    // The 16 possible values, each the product it always was, then looked up: a conversion and
    // a multiply per weight were most of an int4 segment on the M4F.
    const NIBBLES: [f32; 16] = [-8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    let table = NIBBLES.map(|v| scale * v);
    let (low, high) = out.split_at_mut(Q4_BLOCK_BYTES);
    for ((l, h), &b) in low.iter_mut().zip(high.iter_mut()).zip(bytes) {
        // A nibble is below 16: the lookups cannot miss.
        *l = table.get(usize::from(b & 0x0f)).copied().unwrap_or(0.0);
        *h = table.get(usize::from(b >> 4)).copied().unwrap_or(0.0);
    }
}

/// The bytes of a tensor as elements of `T`, read in place.
fn cast<T: bytemuck::AnyBitPattern>(bytes: &[u8]) -> Result<&[T], Error> {
    bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)
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
        // A fixed-point blob written before the integer path's `i16` arena states the `f32`
        // arena: it loads (and its sessions take the smaller one from its start).
        let stated = header.arena_bytes;
        let fixed_before_i16 = header.activations == Activations::Fixed && stated == config.arena_bytes() as u64;
        if stated != config.arena_bytes_for(header.activations) as u64 && !fixed_before_i16 {
            return Err(Error::InvalidHeader("arena_bytes does not match the configuration"));
        }
        let layout = TensorLayout::of(config, header.activations);
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
        if !spec.allows(dtype) {
            return Err(fail(TensorProblem::DType));
        }
        // Panels split at multiples of 16 rows only: the product's row ranges must start there.
        if dtype == DType::F32Panels
            && (self.header.activations != Activations::F32 || !self.header.config.f32_panels_fit())
        {
            return Err(fail(TensorProblem::DType));
        }
        if !entry.matches_shape(&spec) {
            return Err(fail(TensorProblem::Shape));
        }
        let (rows, cols) = spec.rows_cols();
        let bytes = dtype.bytes(rows, cols).map(|b| b as u64);
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
        let (rows, cols) = spec.rows_cols();
        let weights = match DType::from_code(entry.dtype) {
            Some(DType::F32) => Weights::F32(cast(bytes)?),
            Some(DType::F32Panels) => Weights::F32Panels(cast(bytes)?),
            Some(DType::F16) => Weights::F16(cast(bytes)?),
            Some(DType::Bf16) => Weights::Bf16(cast(bytes)?),
            Some(DType::I32) => Weights::I32(cast(bytes)?),
            Some(DType::I8) => {
                let (scales, values) = bytes.split_at_checked(rows * 4).ok_or(fail(TensorProblem::Length))?;
                Weights::I8 { scales: cast(scales)?, values: bytemuck::cast_slice(values) }
            }
            Some(DType::Q4) => {
                let blocks = rows * cols.div_ceil(Q4_BLOCK);
                let (scales, nibbles) = bytes.split_at_checked(blocks * 2).ok_or(fail(TensorProblem::Length))?;
                Weights::Q4 { scales: cast(scales)?, nibbles }
            }
            None => return Err(fail(TensorProblem::DType)),
        };
        Ok(Matrix { rows, cols, weights })
    }

    /// The weights of tensor `id`.
    pub fn tensor(&self, id: TensorId) -> Result<Matrix<'a>, Error> {
        let index = self.layout.index_of(id).ok_or(Error::InvalidHeader("tensor not in this model"))?;
        self.matrix_at(index)
    }

    /// The weights of `part` of layer `layer` of `level`.
    pub fn layer(&self, level: Level, layer: u32, part: LayerPart) -> Result<Matrix<'a>, Error> {
        let layer = u16::try_from(layer).map_err(|_| Error::InvalidHeader("layer index"))?;
        self.tensor(TensorId::Layer { level, layer, part })
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
        self.header.config.arena_bytes_for(self.header.activations)
    }

    pub fn tensor_count(&self) -> usize {
        self.layout.count()
    }

    /// The blob bytes (exactly `blob_len` of them).
    pub fn bytes(&self) -> &'a [u8] {
        self.blob
    }
}
