//! The bodies of the fuzz targets (`fuzz/`), shared with the regression tests (`hostile.rs`):
//! whatever input they get, they must return without panicking.

use std::path::Path;

use hrm_convert::{AlignedBlob, Checkpoint};
use hrm_runtime::blob::{self, HEADER_LEN};
use hrm_runtime::{Model, Session};

/// Module-layer applications a fuzzed segment may cost; larger (valid) models are parsed but not
/// run, so that one input cannot take minutes.
const MAX_LAYER_CALLS: u64 = 512;
const MAX_ARENA: usize = 16 << 20;

/// Runs one segment of a valid model on tokens taken from `data`.
fn run_one_segment(model: Model<'_>, data: &[u8]) {
    let c = *model.config();
    let calls = u64::from(c.h_cycles) * u64::from(c.l_cycles + 1) * u64::from(c.l_layers.max(c.h_layers));
    if calls > MAX_LAYER_CALLS || model.arena_bytes() > MAX_ARENA {
        return;
    }
    let mut arena = vec![0u8; model.arena_bytes()];
    let Ok(mut session) = Session::new(model, &mut arena) else { return };
    let tokens: Vec<u32> = (0..c.seq_len as usize)
        .map(|i| u32::from(data.get(i % data.len().max(1)).copied().unwrap_or(0)) % (c.vocab_size + 1))
        .collect();
    let id = u32::from(data.first().copied().unwrap_or(0)) % (c.num_puzzle_identifiers + 1);
    if session.reset(&tokens, id).is_ok() {
        let _ = session.step();
        let mut out = vec![0u32; c.seq_len as usize];
        let _ = session.predictions(&mut out);
    }
}

/// Arbitrary bytes as a blob: parsed with and without the payload CRC; a valid model runs a
/// segment.
pub fn blob(data: &[u8]) {
    let aligned = AlignedBlob::from_bytes(data);
    let _ = Model::from_bytes(&aligned);
    if let Ok(model) = Model::from_bytes_skip_payload_crc(&aligned) {
        run_one_segment(model, data);
    }
}

/// Arbitrary bytes with both CRCs rewritten to match, so that the fuzzer reaches the structural
/// checks and the kernels instead of stopping at the checksums.
pub fn blob_resealed(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= HEADER_LEN {
        let seal_header = |b: &mut Vec<u8>| {
            let crc = blob::CRC32.checksum(&b[..HEADER_LEN - 4]);
            b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        };
        seal_header(&mut bytes);
        if let Ok(header) = blob::Header::parse(&bytes) {
            let end = usize::try_from(header.blob_len).unwrap_or(usize::MAX).min(bytes.len()).max(HEADER_LEN);
            let crc = blob::CRC32.checksum(&bytes[HEADER_LEN..end]);
            bytes[104..108].copy_from_slice(&crc.to_le_bytes());
            seal_header(&mut bytes);
        }
    }
    let aligned = AlignedBlob::from_bytes(&bytes);
    if let Ok(model) = Model::from_bytes(&aligned) {
        run_one_segment(model, data);
    }
}

/// A safetensors file's bytes, matched against a small configuration.
pub fn safetensors(data: &[u8]) {
    if let Ok(tensors) = hrm_convert::source::parse_safetensors(data, Path::new("fuzz.safetensors")) {
        let _ = Checkpoint::from_tensors(crate::tiny_sudoku_config(), tensors);
    }
}

/// A PyTorch zip checkpoint's bytes (the reader takes a file: written to a per-process path).
pub fn pytorch(data: &[u8]) {
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir()
            .join(format!("hrm-fuzz-{}-{:?}.pt", std::process::id(), std::thread::current().id()));
    }
    PATH.with(|path| {
        if std::fs::write(path, data).is_ok() {
            let _ = hrm_convert::source::read_tensors(path, hrm_convert::WeightsFormat::PyTorch);
        }
    });
}

/// `all_config.yaml` and `dataset.json` texts, separated by a NUL byte.
pub fn configs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (yaml, json) = text.split_once('\0').unwrap_or((&text, "{}"));
    let origin = Path::new("fuzz");
    let arch = hrm_convert::reference_config::parse_arch(yaml, origin);
    let dataset = hrm_convert::reference_config::parse_dataset(json, origin);
    if let (Ok(arch), Ok(dataset)) = (arch, dataset) {
        if let Ok(config) = hrm_convert::reference_config::to_config(&arch, &dataset, origin) {
            config.validate().expect("to_config returns validated configurations");
        }
    }
}

/// Puzzle texts: every line as a Sudoku, the whole text as mazes and as an ARC task, and as bytes
/// on the firmware's serial line.
pub fn puzzles(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(grid) = hrm_runtime::sudoku::parse(line) {
            let tokens = hrm_runtime::sudoku::to_tokens(&grid);
            assert_eq!(hrm_runtime::sudoku::from_tokens(&tokens), grid);
        }
    }
    if let Ok(mazes) = hrm_trainer::tasks::maze::parse_mazes(&text, "fuzz") {
        for m in &mazes {
            let _ = hrm_trainer::tasks::maze::solve(m);
            assert_eq!(hrm_trainer::tasks::maze::Maze::from_tokens(m.size, &m.label_tokens()), *m);
        }
    }
    if let Ok(task) = hrm_trainer::tasks::arc::parse_task(&text, "fuzz") {
        for p in &task.train {
            let encoded = hrm_trainer::tasks::arc::encode(&p.input);
            assert_eq!(hrm_trainer::tasks::arc::decode(&encoded), p.input);
        }
    }
    serial(data);
}

/// The firmware's line protocol over an in-memory port, with a solver that echoes the puzzle.
fn serial(data: &[u8]) {
    struct Port<'a> {
        input: &'a [u8],
        output: Vec<u8>,
    }
    impl embedded_io::ErrorType for Port<'_> {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::Read for Port<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.input.len()).min(7);
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }
    impl embedded_io::Write for Port<'_> {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    struct Pin;
    impl embedded_hal::digital::ErrorType for Pin {
        type Error = core::convert::Infallible;
    }
    impl embedded_hal::digital::OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    struct Echo;
    impl hrm_solver_protocol::Solve for Echo {
        type Error = &'static str;
        fn solve(&mut self, puzzle: &hrm_runtime::sudoku::Grid) -> Result<hrm_runtime::sudoku::Grid, Self::Error> {
            Ok(*puzzle)
        }
    }
    let mut port = Port { input: data, output: Vec::new() };
    let summary = hrm_solver_protocol::serve(&mut port, &mut Pin, &mut Echo).expect("an in-memory port cannot fail");
    // One answer line per puzzle or refusal.
    let lines = port.output.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines as u32, summary.answered + summary.refused);
}
