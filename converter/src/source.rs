//! Finding and reading a checkpoint: the weights file (PyTorch zip-pickle or safetensors) and
//! the two configuration files beside it.

use std::path::{Path, PathBuf};

use crate::error::{ConvertError, Result};

/// A tensor read from a checkpoint, widened to `f32` (exactly: the sources are f32/f16/bf16).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// `torch.save` of a state dict (zip archive with a pickle), as the reference writes it.
    PyTorch,
    Safetensors,
}

/// The files of one checkpoint.
#[derive(Debug, Clone)]
pub struct SourceFiles {
    pub weights: PathBuf,
    pub format: WeightsFormat,
    pub arch: PathBuf,
    pub dataset: PathBuf,
}

/// Where to look when the configuration files are not beside the weights.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub arch: Option<PathBuf>,
    pub dataset: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io { path: path.to_owned(), source }
}

/// Finds the checkpoint files for `src`: either a directory as the reference training writes it
/// (`checkpoint` or the newest `step_N`, else one `*.safetensors`; plus `all_config.yaml` and
/// `dataset.json`), or a weights file with the configuration files in its directory.
pub fn locate(src: &Path, overrides: &Overrides) -> Result<SourceFiles> {
    let meta = std::fs::metadata(src).map_err(io(src))?;
    let (dir, weights) = if meta.is_dir() {
        (src.to_owned(), find_weights(src)?)
    } else {
        (src.parent().map(Path::to_owned).unwrap_or_default(), src.to_owned())
    };
    let format = sniff(&weights)?;
    let arch = overrides.arch.clone().unwrap_or_else(|| dir.join("all_config.yaml"));
    let dataset = overrides.dataset.clone().unwrap_or_else(|| dir.join("dataset.json"));
    for (path, what) in [(&arch, "all_config.yaml (the training config)"), (&dataset, "dataset.json")] {
        if !path.is_file() {
            return Err(ConvertError::Source(format!(
                "{}: not found; a checkpoint needs its {what} beside it (or pass its path)",
                path.display()
            )));
        }
    }
    Ok(SourceFiles { weights, format, arch, dataset })
}

fn find_weights(dir: &Path) -> Result<PathBuf> {
    let official = dir.join("checkpoint");
    if official.is_file() {
        return Ok(official);
    }
    let mut steps = Vec::new();
    let mut safetensors = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(step) = name.strip_prefix("step_").and_then(|n| n.parse::<u64>().ok()) {
            steps.push((step, path));
        } else if name.ends_with(".safetensors") && path.is_file() {
            safetensors.push(path);
        }
    }
    if let Some((_, path)) = steps.into_iter().max_by_key(|(step, _)| *step) {
        return Ok(path);
    }
    safetensors.sort();
    // A trainer run directory holds its training state beside the model, a golden case its
    // expected outputs beside the weights.
    for preferred in ["model.safetensors", "weights.safetensors"] {
        if let Some(found) = safetensors.iter().find(|p| p.file_name().is_some_and(|n| n == preferred)) {
            return Ok(found.clone());
        }
    }
    match safetensors.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ConvertError::Source(format!(
            "{}: no weights found (expected `checkpoint`, `step_N` or a .safetensors file)",
            dir.display()
        ))),
        many => Err(ConvertError::Source(format!(
            "{}: several .safetensors files ({}); name the one to convert",
            dir.display(),
            many.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn sniff(path: &Path) -> Result<WeightsFormat> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let n = file.read(&mut head).map_err(io(path))?;
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        return Ok(WeightsFormat::PyTorch);
    }
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Err(ConvertError::Source(format!(
            "{}: a legacy (pre-1.6, non-zip) PyTorch file; re-save it with a current torch.save",
            path.display()
        )));
    }
    if n == 8 {
        return Ok(WeightsFormat::Safetensors);
    }
    Err(ConvertError::Source(format!("{}: neither a PyTorch zip checkpoint nor safetensors", path.display())))
}

/// Reads every tensor of a weights file, with its name as stored.
pub fn read_tensors(path: &Path, format: WeightsFormat) -> Result<Vec<(String, HostTensor)>> {
    match format {
        WeightsFormat::PyTorch => read_pytorch(path),
        WeightsFormat::Safetensors => read_safetensors(path),
    }
}

fn read_pytorch(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    contain_panics(path, || read_pytorch_unguarded(path))
}

thread_local! {
    /// Set while [`contain_panics`] runs on this thread: its panics are errors, not messages.
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read` (candle's PyTorch reader), turning a panic into an error for `path`.
///
/// candle's zip-pickle reader is not hardened against hostile files: fuzzing found an index out
/// of range in its `rebuild_args` (tests/fixtures/fuzz/pytorch/rebuild-args-index). A checkpoint
/// is untrusted input, so its panics become `ConvertError::Pickle`. The process-wide panic hook
/// is wrapped once so that a contained panic prints nothing; every other panic reaches the hook
/// that was installed before.
fn contain_panics<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    static WRAP_HOOK: std::sync::Once = std::sync::Once::new();
    WRAP_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    CONTAINED.with(|c| c.set(was));
    result.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(ConvertError::Pickle {
            path: path.to_owned(),
            message: format!("malformed checkpoint (the reader failed: {why})"),
        })
    })
}

fn read_pytorch_unguarded(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    use candle_core::DType;
    let fail = |e: candle_core::Error| ConvertError::Pickle { path: path.to_owned(), message: e.to_string() };
    let pth = candle_core::pickle::PthTensors::new(path, None).map_err(fail)?;
    let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    names.sort();
    if names.is_empty() {
        return Err(ConvertError::Pickle { path: path.to_owned(), message: "no tensors in the state dict".into() });
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let tensor = pth.get(&name).map_err(fail)?.ok_or_else(|| ConvertError::MissingTensor(name.clone()))?;
        let dtype = tensor.dtype();
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(ConvertError::DType { name, dtype: format!("{dtype:?}") });
        }
        let shape = tensor.dims().to_vec();
        let data =
            tensor.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(fail)?;
        out.push((name, HostTensor { shape, data }));
    }
    Ok(out)
}

fn read_safetensors(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    parse_safetensors(&bytes, path)
}

/// Every tensor of a safetensors file's bytes (`path` names it in errors).
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, HostTensor)>> {
    use safetensors::Dtype;
    let fail =
        |e: safetensors::SafeTensorError| ConvertError::Safetensors { path: path.to_owned(), message: e.to_string() };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(fail)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => {
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
            }
            other => return Err(ConvertError::DType { name, dtype: format!("{other:?}") }),
        };
        out.push((name, HostTensor { shape: view.shape().to_vec(), data }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
