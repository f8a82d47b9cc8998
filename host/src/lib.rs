//! The std side of inference, shared by the `hrm` command (solve, infer, serve), the Python
//! package and the trainer's evaluation: blobs read from files with the alignment the runtime needs, and
//! sessions spread over threads. It links no training stack (no candle), so an inference-only
//! build stays small.

#[cfg(feature = "cli")]
pub mod ensemble_args;
pub mod infer;

use std::path::Path;

use anyhow::{Context, Result};
use hrm_runtime::{Model, Session};

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
        if let Some(head) = bytemuck::cast_slice_mut::<u64, u8>(&mut words).get_mut(..bytes.len()) {
            head.copy_from_slice(bytes);
        }
        AlignedBlob { words, len: bytes.len() }
    }

    /// Reads a whole file.
    pub fn read(path: &Path) -> std::io::Result<AlignedBlob> {
        Ok(AlignedBlob::from_bytes(&std::fs::read(path)?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        let bytes = bytemuck::cast_slice::<u64, u8>(&self.words);
        bytes.get(..self.len).unwrap_or(bytes)
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        let len = self.len;
        let bytes = bytemuck::cast_slice_mut::<u64, u8>(&mut self.words);
        &mut bytes[..len]
    }
}

impl std::ops::Deref for AlignedBlob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A blob file mapped into memory read-only: the pages are shared by every session (and every
/// process) that maps it, and only the ones a forward pass touches are read. Page alignment is
/// more than the runtime needs.
pub struct MappedBlob {
    map: memmap2::Mmap,
}

impl MappedBlob {
    pub fn open(path: &Path) -> Result<MappedBlob> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open blob {}", path.display()))?;
        // SAFETY: the map is read-only; a file truncated or rewritten by another process while
        // mapped could change or fault under us, which is why `hrm convert` replaces blobs by
        // rename (the old inode stays intact) rather than rewriting them in place.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map blob {}", path.display()))?;
        Ok(MappedBlob { map })
    }
}

impl std::ops::Deref for MappedBlob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Runs `work` on every item, on `threads` threads at most, each with its own runtime session
/// (and arena) over the one shared model; the results keep the items' order. What the
/// `hrm infer`, `solve` and `eval` commands use to spread puzzles over cores.
///
/// With fewer items than threads (one puzzle on several cores), the spare threads join the
/// sessions: each session runs inside a rayon pool of `threads / sessions` threads, and its
/// products split their rows over it (the runtime's `threads` feature; the same bits as on one
/// thread).
pub fn in_sessions<T: Sync, R: Send>(
    model: Model<'_>,
    items: &[T],
    threads: usize,
    work: impl Fn(&mut Session<'_, '_>, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = threads.max(1);
    let sessions = items.len().clamp(1, threads);
    let per_session = threads / sessions;
    let chunk = items.len().div_ceil(sessions).max(1);
    let work = &work;
    let results: Vec<Result<Vec<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<Vec<R>> {
                    let run = || -> Result<Vec<R>> {
                        let mut arena = vec![0u8; model.arena_bytes()];
                        let mut session = Session::new(model, &mut arena)?;
                        part.iter().map(|item| work(&mut session, item)).collect()
                    };
                    if per_session < 2 {
                        return run();
                    }
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(per_session)
                        .build()
                        .map_err(|e| anyhow::anyhow!("cannot start {per_session} threads for one session: {e}"))?
                        .install(run)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked"))))
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// Registers a system sans-serif font for plotters' labels (plotters draws no text without
/// one); whether one was found.
#[cfg(feature = "plot")]
pub fn register_font() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/System/Library/Fonts/Supplemental/Arial.ttf",
            "/Library/Fonts/Arial.ttf",
            "C:\\Windows\\Fonts\\arial.ttf",
        ];
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename: a reader never
/// sees half a file, and a failed write leaves the old one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}
