//! `hrm._hrm`: the runtime, the converter and the Sudoku solver for Python. Arrays come in as
//! anything numpy can turn into integers and go out as numpy arrays named as the reference's
//! golden files; the GIL is released while the runtime computes; every failure is an
//! `hrm.HrmError` (a `ValueError`) carrying the runtime's or converter's message.

use std::path::PathBuf;

use hrm_host::infer::Values;
use hrm_host::AlignedBlob;
use hrm_runtime::ensemble::{self, Plan};
use hrm_runtime::{sudoku, DType, Halting, Model as RuntimeModel, ModelKind};
use numpy::{AllowTypeChange, PyArray1, PyArrayLike1, PyArrayLike2, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(_hrm, HrmError, PyValueError, "What the hrm runtime or converter refused, with its message.");

fn error(e: impl std::fmt::Display) -> PyErr {
    HrmError::new_err(e.to_string())
}

/// anyhow's chain of causes, as `hrm` prints it.
fn chain(e: anyhow::Error) -> PyErr {
    HrmError::new_err(format!("{e:#}"))
}

fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// A model blob, validated once (both CRCs, every tensor) and kept in aligned memory.
#[pyclass(frozen, module = "hrm")]
struct Model {
    blob: AlignedBlob,
}

impl Model {
    /// The runtime's handle on the blob. The blob was validated completely when the object was
    /// made and cannot change, so the payload CRC is not computed again.
    fn runtime(&self) -> PyResult<RuntimeModel<'_>> {
        RuntimeModel::from_bytes_skip_payload_crc(self.blob.as_bytes()).map_err(error)
    }

    fn from_blob(blob: AlignedBlob) -> PyResult<Model> {
        RuntimeModel::from_bytes(blob.as_bytes()).map_err(error)?;
        Ok(Model { blob })
    }
}

#[pymethods]
impl Model {
    /// `Model(blob: bytes)`: a model from the bytes of a blob (`hrm convert`'s output).
    #[new]
    fn new(blob: &[u8]) -> PyResult<Model> {
        Model::from_blob(AlignedBlob::from_bytes(blob))
    }

    /// `Model.load(path)`: a model from a blob file.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Model> {
        let blob = AlignedBlob::read(&path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        Model::from_blob(blob).map_err(|e| error(format!("{}: {e}", path.display())))
    }

    /// The model's configuration and sizes, as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.runtime()?;
        let c = m.config();
        let d = PyDict::new(py);
        d.set_item(
            "kind",
            match c.kind {
                ModelKind::Hrm => "hrm",
                ModelKind::Trm => "trm",
            },
        )?;
        d.set_item("hidden_size", c.hidden_size)?;
        d.set_item("num_heads", c.num_heads)?;
        d.set_item("h_layers", c.h_layers)?;
        d.set_item("l_layers", c.l_layers)?;
        d.set_item("h_cycles", c.h_cycles)?;
        d.set_item("l_cycles", c.l_cycles)?;
        d.set_item("halt_max_steps", c.halt_max_steps)?;
        d.set_item("seq_len", c.seq_len)?;
        d.set_item("vocab_size", c.vocab_size)?;
        d.set_item("num_puzzle_identifiers", c.num_puzzle_identifiers)?;
        d.set_item("puzzle_emb_len", c.puzzle_emb_len)?;
        d.set_item("activations", m.header().activations.name())?;
        d.set_item("arena_bytes", m.arena_bytes())?;
        d.set_item("blob_bytes", m.bytes().len())?;
        Ok(d)
    }

    /// Runs a batch: `inputs` `[B, seq_len]` tokens and `puzzle_identifiers` `[B]` (zeros when
    /// omitted). Every segment of the model's `halt_max_steps` runs, or exactly `segments`, or
    /// with `adaptive` until the Q head halts. Returns a dict of numpy arrays with the golden
    /// files' names: `segment{s}.logits` `[B, seq_len, V]`, `segment{s}.q_halt`,
    /// `segment{s}.q_continue` `[B]`, with `latents` also `segment{s}.z_H` / `z_L` `[B, S, h]`,
    /// then `segments` `[B]` and `predictions` `[B, seq_len]` (int32).
    #[pyo3(signature = (inputs, puzzle_identifiers=None, segments=None, adaptive=false, latents=false, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn infer<'py>(
        &self,
        py: Python<'py>,
        inputs: PyArrayLike2<'py, i64, AllowTypeChange>,
        puzzle_identifiers: Option<PyArrayLike1<'py, i64, AllowTypeChange>>,
        segments: Option<u32>,
        adaptive: bool,
        latents: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = self.runtime()?;
        let c = *model.config();
        let array = inputs.as_array();
        let (batch, len) = array.dim();
        if len != c.seq_len as usize {
            return Err(error(format!("inputs have {len} tokens per row, the model takes seq_len = {}", c.seq_len)));
        }
        let ids: Vec<i64> = match &puzzle_identifiers {
            Some(ids) => ids.as_array().iter().copied().collect(),
            None => vec![0; batch],
        };
        if ids.len() != batch {
            return Err(error(format!("puzzle_identifiers has {} values for {batch} rows of inputs", ids.len())));
        }
        let mut rows = Vec::with_capacity(batch);
        for (b, (row, &id)) in array.outer_iter().zip(&ids).enumerate() {
            let tokens = row
                .iter()
                .enumerate()
                .map(|(p, &t)| {
                    u32::try_from(t).map_err(|_| error(format!("example {b}: token {t} at position {p} is negative")))
                })
                .collect::<PyResult<Vec<u32>>>()?;
            let id =
                u32::try_from(id).map_err(|_| error(format!("example {b}: puzzle identifier {id} is negative")))?;
            rows.push((tokens, id));
        }
        let halting = match (segments, adaptive) {
            (Some(_), true) => return Err(error("give segments or adaptive, not both")),
            (Some(0), false) => return Err(error("segments must be at least 1")),
            (Some(n), false) => Halting::Segments(n),
            (None, true) => Halting::Adaptive,
            (None, false) => Halting::Fixed,
        };
        let threads = self::threads(threads);
        let outputs = py
            .detach(|| {
                let examples = hrm_host::infer::run(model, &rows, threads, halting, latents, &|| {})?;
                Ok::<_, anyhow::Error>(hrm_host::infer::named(&examples, &model, latents))
            })
            .map_err(chain)?;
        let d = PyDict::new(py);
        for o in outputs {
            let array = match o.values {
                Values::F32(v) => PyArray1::from_vec(py, v).reshape(o.shape)?.into_any(),
                Values::I32(v) => PyArray1::from_vec(py, v).reshape(o.shape)?.into_any(),
            };
            d.set_item(o.name, array)?;
        }
        Ok(d)
    }

    /// Solves Sudoku puzzles (81 characters each: `1`-`9` a given, `.` or `0` a blank) as
    /// `hrm solve sudoku` does: with `ensemble=1` the model's answer after `halt_max_steps`
    /// segments, with `ensemble=K` its default ensemble of up to K trajectories (symmetries,
    /// seed 0, the first answer that satisfies the rules). Returns the answers, 81 digits each.
    #[pyo3(signature = (puzzles, ensemble=1, threads=None))]
    fn solve_sudoku(
        &self,
        py: Python<'_>,
        puzzles: Vec<String>,
        ensemble: u32,
        threads: Option<usize>,
    ) -> PyResult<Vec<String>> {
        let model = self.runtime()?;
        let c = model.config();
        if c.seq_len as usize != sudoku::CELLS || c.vocab_size != sudoku::VOCAB {
            return Err(error(format!(
                "not a Sudoku model: seq_len {} and vocabulary {} (Sudoku: {} and {})",
                c.seq_len,
                c.vocab_size,
                sudoku::CELLS,
                sudoku::VOCAB
            )));
        }
        if !(1..=65_536).contains(&ensemble) {
            return Err(error(format!("ensemble must be from 1 to 65536, got {ensemble}")));
        }
        let grids = puzzles
            .iter()
            .enumerate()
            .map(|(i, p)| sudoku::parse(p.trim()).map_err(|e| error(format!("puzzle {i}: {e}"))))
            .collect::<PyResult<Vec<_>>>()?;
        // One trajectory under `Select::Q` with every segment is the plain run's answer.
        let plan = if ensemble > 1 { Plan::symmetries(ensemble) } else { Plan::single(Halting::Fixed) };
        let threads = self::threads(threads);
        let answers = py
            .detach(|| {
                hrm_host::in_sessions(model, &grids, threads, |session, grid| {
                    Ok(ensemble::solve_sudoku(session, grid, &plan, |_, _| true)?.answer)
                })
            })
            .map_err(chain)?;
        Ok(answers.iter().map(|a| a.iter().map(|&d| char::from(b'0' + d)).collect()).collect())
    }

    fn __repr__(&self) -> PyResult<String> {
        let m = self.runtime()?;
        let c = m.config();
        Ok(format!(
            "hrm.Model({:?}, hidden_size={}, seq_len={}, vocab_size={}, activations={}, {} bytes)",
            c.kind,
            c.hidden_size,
            c.seq_len,
            c.vocab_size,
            m.header().activations.name(),
            m.bytes().len()
        ))
    }
}

/// Converts a checkpoint (an official PyTorch HRM/TRM checkpoint file or its directory, a
/// safetensors file, a trainer run) into a blob at `out`, as `hrm convert` does. `weights`:
/// f32, f16, bf16, int8 (a scale per row) or int4 (a scale per 32 values); `activations`:
/// f32 or fixed (integer only, needs int8 weights and `calibrate`). `calibrate`: example
/// inputs `[N, seq_len]` (the first 256 are used); with int4 weights they make the rounding
/// compensate its errors. `block`: rows pushed through each weight matrix at once (1 for the
/// smallest arena). `config` / `dataset`: the training config and dataset metadata if not
/// beside the weights. Returns the blob's size in bytes.
#[pyfunction]
#[pyo3(signature = (src, out, weights="f32", activations="f32", calibrate=None, block=None, config=None, dataset=None, layout="rows"))]
#[allow(clippy::too_many_arguments)]
fn convert(
    py: Python<'_>,
    src: PathBuf,
    out: PathBuf,
    weights: &str,
    activations: &str,
    calibrate: Option<PyArrayLike2<'_, i64, AllowTypeChange>>,
    block: Option<u32>,
    config: Option<PathBuf>,
    dataset: Option<PathBuf>,
    layout: &str,
) -> PyResult<usize> {
    let panels = match layout {
        "rows" => false,
        "panels" => true,
        other => return Err(error(format!("layout must be rows or panels, got {other:?}"))),
    };
    let weights = match weights {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::Bf16,
        "int8" => DType::I8,
        "int4" => DType::Q4,
        other => return Err(error(format!("weights must be f32, f16, bf16, int8 or int4, got {other:?}"))),
    };
    let weights = match (panels, weights) {
        (false, w) => w,
        (true, DType::F32) => DType::F32Panels,
        (true, _) => return Err(error("layout=\"panels\" is for weights=\"f32\"")),
    };
    let fixed = match activations {
        "f32" => false,
        "fixed" => true,
        other => return Err(error(format!("activations must be f32 or fixed, got {other:?}"))),
    };
    let block = block.unwrap_or(hrm_runtime::config::DEFAULT_BLOCK);
    if !(1..=256).contains(&block) {
        return Err(error(format!("block must be from 1 to 256, got {block}")));
    }
    let inputs: Option<Vec<(Vec<u32>, u32)>> = match &calibrate {
        None => None,
        Some(array) => Some(
            array
                .as_array()
                .outer_iter()
                .take(256)
                .enumerate()
                .map(|(b, row)| {
                    let tokens = row
                        .iter()
                        .map(|&t| u32::try_from(t).map_err(|_| error(format!("calibrate: example {b} has token {t}"))))
                        .collect::<PyResult<Vec<u32>>>()?;
                    Ok((tokens, 0))
                })
                .collect::<PyResult<_>>()?,
        ),
    };
    py.detach(|| -> PyResult<usize> {
        let overrides = hrm_convert::Overrides { arch: config, dataset };
        let mut checkpoint = hrm_convert::Checkpoint::load(&src, &overrides)
            .map_err(|e| error(format!("cannot convert {}: {e}", src.display())))?;
        checkpoint.config.block = block;
        let seq_len = checkpoint.config.seq_len as usize;
        if let Some(rows) = &inputs {
            if let Some((b, row)) = rows.iter().enumerate().find(|(_, (row, _))| row.len() != seq_len) {
                return Err(error(format!(
                    "calibrate: example {b} has {} tokens, the model takes {seq_len}",
                    row.0.len()
                )));
            }
        }
        let options = match (fixed, &inputs) {
            (true, None) => return Err(error("activations=\"fixed\" needs calibrate (example inputs)")),
            (true, Some(_)) if weights != DType::I8 => {
                return Err(error("activations=\"fixed\" needs weights=\"int8\""))
            }
            (true, Some(rows)) => {
                hrm_convert::BlobOptions::fixed_point(hrm_convert::calibrate(&checkpoint, rows, &|| {}).map_err(error)?)
            }
            (false, Some(_)) if weights != DType::Q4 => {
                return Err(error("calibrate is for activations=\"fixed\" or weights=\"int4\""))
            }
            (false, Some(rows)) => {
                let mut options = hrm_convert::BlobOptions::weights(weights);
                options.moments = Some(hrm_convert::InputMoments::collect(&checkpoint, rows, &|| {}).map_err(error)?);
                options
            }
            (false, None) => hrm_convert::BlobOptions::weights(weights),
        };
        let blob = hrm_convert::write_blob_with(&checkpoint, &options).map_err(error)?;
        hrm_host::write_atomically(&out, blob.as_bytes()).map_err(chain)?;
        Ok(blob.as_bytes().len())
    })
}

#[pymodule]
fn _hrm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add("HrmError", m.py().get_type::<HrmError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
