//! The line protocol of the Sudoku firmware, independent of any board.
//!
//! A client sends one puzzle per line: 81 characters, `1`–`9` a given, `.` or `0` a blank (a
//! `puzzle,solution` CSV row works too: the first field is the puzzle). For every puzzle the
//! solver answers one line: the 81 digits the model predicts (`0` where it predicts no digit),
//! exactly what `hrm solve sudoku` prints on the host for the same blob, or `error: …` when the
//! puzzle is malformed, and then waits for the next line. Lines end with `\n`, `\r\n` or `\r`
//! (what a terminal's Enter key sends). Blank lines, `#` comments and a `puzzle,…` CSV header
//! get no answer, as in `hrm solve sudoku --file`. A line `k=N` (1 ≤ N ≤ 65,536) sets the
//! ensemble size for the puzzles after it and is answered `k=N`: each puzzle then runs up to N
//! trajectories under Sudoku symmetries until an answer is a valid completion, the answers of
//! `hrm solve sudoku --ensemble N` for the same blob (seed 0, no noise); `k=1` is the plain
//! run. The byte [`END_OF_INPUT`] (EOT, Ctrl-D), or a read of zero bytes, ends the session; a
//! last line without its line ending is answered first.
//!
//! [`serve`] runs the protocol over any [`embedded_io`] port (a UART, a USB CDC class, a TCP
//! socket, an in-memory buffer in the tests) and raises an [`embedded_hal`] [`OutputPin`] while
//! a puzzle is being solved (an LED, a logic-analyser probe). [`ModelSolver`] answers with an
//! `hrm-runtime` [`Session`]; anything implementing [`Solve`] can stand in for it.
//!
//! No allocation and no panics: a line is kept in a buffer of [`LINE_CAPACITY`] bytes; a longer
//! line is answered with an error and skipped up to its end, so garbage on the wire can neither
//! overflow memory nor desynchronise the answers from the lines.
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

#[cfg(test)]
extern crate std;

use core::fmt;

use embedded_hal::digital::OutputPin;
use embedded_io::{Read, Write};
use hrm_runtime::sudoku::{self, Grid, CELLS};
use hrm_runtime::{ensemble, Halting, Model, SegmentOutcome, Session};

/// The byte that ends a session: ASCII EOT, what Ctrl-D sends. A serial line has no end of file
/// of its own, so the sender (e.g. `scripts/firmware.sh run`) appends it after its input.
pub const END_OF_INPUT: u8 = 0x04;

/// The longest line kept, in bytes: room for a `puzzle,solution` CSV row (163 bytes) and
/// surrounding blanks.
pub const LINE_CAPACITY: usize = 256;

/// Anything that answers a parsed puzzle.
pub trait Solve {
    type Error: fmt::Display;

    /// The answer grid for `puzzle` (0 where no digit is predicted).
    fn solve(&mut self, puzzle: &Grid) -> Result<Grid, Self::Error>;

    /// A digest of the last solve's every segment, written after the answer (` 1a2b3c4d`)
    /// when `Some`: the cross-core check compares it with `hrm solve sudoku --digest`.
    fn digest(&self) -> Option<u32> {
        None
    }

    /// Sets the number of trajectories per puzzle (the `k=N` line); `Err` with the reason
    /// when the solver has no ensembles or refuses `k`.
    fn set_ensemble(&mut self, k: u32) -> Result<(), &'static str> {
        let _ = k;
        Err("this solver runs no ensembles")
    }
}

/// The largest ensemble a `k=N` line may ask for.
pub const MAX_ENSEMBLE: u32 = 65_536;

/// Hooks called while [`ModelSolver`] works, e.g. to log with `defmt` on a device.
pub trait Observer {
    /// When a puzzle is loaded, before its first segment.
    fn start(&mut self) {}

    /// After every ACT segment, with the Q head's values and its halting verdict.
    fn segment(&mut self, _outcome: &SegmentOutcome) {}

    /// After a puzzle's last segment, with the number of segments that ran.
    fn solved(&mut self, _segments: u32) {}
}

/// The observer that observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Why a [`ModelSolver`] could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// The runtime refused the arena.
    Runtime(hrm_runtime::Error),
    /// The model does not take 81 Sudoku cells over the Sudoku vocabulary.
    NotSudoku { seq_len: u32, vocab_size: u32 },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Runtime(e) => write!(f, "{e}"),
            SetupError::NotSudoku { seq_len, vocab_size } => write!(
                f,
                "not a Sudoku model (seq_len {seq_len}, vocab {vocab_size}; a Sudoku model has {} and {})",
                CELLS,
                sudoku::VOCAB
            ),
        }
    }
}

impl From<hrm_runtime::Error> for SetupError {
    fn from(e: hrm_runtime::Error) -> Self {
        SetupError::Runtime(e)
    }
}

/// Solves puzzles with a model: reset, segments as `halting` says, argmax.
pub struct ModelSolver<'m, 'a, O = Silent> {
    session: Session<'m, 'a>,
    halting: Halting,
    observer: O,
    /// `Session::outputs_digest` folded over the last puzzle's segments.
    digest: u32,
    report_digest: bool,
    /// Trajectories per puzzle: 1 is the plain run; more run `hrm solve sudoku --ensemble K`'s
    /// default ensemble (symmetries, no noise, seed 0, the first valid answer).
    ensemble: u32,
}

impl<'m, 'a> ModelSolver<'m, 'a, Silent> {
    /// A solver using `arena` (at least [`Model::arena_bytes`], 4-byte aligned) as its working
    /// memory. `Halting::Fixed` gives the answers of `hrm solve sudoku` without options.
    pub fn new(model: Model<'m>, arena: &'a mut [u8], halting: Halting) -> Result<Self, SetupError> {
        Self::with_observer(model, arena, halting, Silent)
    }
}

impl<'m, 'a, O: Observer> ModelSolver<'m, 'a, O> {
    /// Like [`ModelSolver::new`], reporting every segment to `observer`.
    pub fn with_observer(
        model: Model<'m>,
        arena: &'a mut [u8],
        halting: Halting,
        observer: O,
    ) -> Result<Self, SetupError> {
        let c = model.config();
        if c.seq_len as usize != CELLS || c.vocab_size != sudoku::VOCAB {
            return Err(SetupError::NotSudoku { seq_len: c.seq_len, vocab_size: c.vocab_size });
        }
        Ok(ModelSolver {
            session: Session::new(model, arena)?,
            halting,
            observer,
            digest: hrm_runtime::DIGEST_START,
            report_digest: false,
            ensemble: 1,
        })
    }

    /// Makes [`serve`] write each answer's digest after it (see [`Solve::digest`]).
    pub fn report_digests(mut self) -> Self {
        self.report_digest = true;
        self
    }

    pub fn observer(&self) -> &O {
        &self.observer
    }

    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }
}

impl<O: Observer> Solve for ModelSolver<'_, '_, O> {
    type Error = hrm_runtime::Error;

    fn solve(&mut self, puzzle: &Grid) -> Result<Grid, hrm_runtime::Error> {
        if self.ensemble > 1 {
            return self.solve_ensemble(puzzle);
        }
        self.session.reset(&sudoku::to_tokens(puzzle), 0)?;
        self.digest = hrm_runtime::DIGEST_START;
        self.observer.start();
        // The observer and the digest after each segment.
        let (halting, observer, digest) = (self.halting, &mut self.observer, &mut self.digest);
        let report = self.report_digest;
        self.session.run_with(halting, |session, outcome| {
            if report {
                *digest = session.outputs_digest(*digest);
            }
            observer.segment(outcome);
        })?;
        self.observer.solved(self.session.segments());
        let mut predictions = [0u32; CELLS];
        self.session.predictions(&mut predictions)?;
        Ok(sudoku::from_tokens(&predictions))
    }

    fn digest(&self) -> Option<u32> {
        // The digest names one plain trajectory's segments (what `hrm solve sudoku --digest`
        // prints); an ensemble's answers carry none.
        (self.report_digest && self.ensemble == 1).then_some(self.digest)
    }

    fn set_ensemble(&mut self, k: u32) -> Result<(), &'static str> {
        if !(1..=MAX_ENSEMBLE).contains(&k) {
            return Err("k must be from 1 to 65536");
        }
        self.ensemble = k;
        Ok(())
    }
}

impl<O: Observer> ModelSolver<'_, '_, O> {
    /// The ensemble of `hrm solve sudoku --ensemble K` with its defaults (no digest: see
    /// [`Solve::digest`]).
    fn solve_ensemble(&mut self, puzzle: &Grid) -> Result<Grid, hrm_runtime::Error> {
        let plan = ensemble::Plan::symmetries(self.ensemble);
        self.observer.start();
        let observer = &mut self.observer;
        let outcome = ensemble::solve_sudoku(&mut self.session, puzzle, &plan, |p, _| {
            observer.segment(&SegmentOutcome {
                index: p.segment,
                q_halt: p.q_halt,
                q_continue: p.q_continue,
                halt_requested: p.halt_requested,
                at_max: p.last,
            });
            true
        })?;
        self.observer.solved(outcome.segments.min(u64::from(u32::MAX)) as u32);
        self.digest = hrm_runtime::DIGEST_START;
        Ok(outcome.answer)
    }
}

/// What a session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Puzzles answered with a grid.
    pub answered: u32,
    /// Lines answered with `error: …`.
    pub refused: u32,
}

/// Why [`serve`] stopped before the end of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeError<E> {
    /// The port failed to read.
    Read(E),
    /// The port failed to write.
    Write(E),
    /// The port accepted no byte of a non-empty write.
    WriteZero,
}

impl<E: fmt::Debug> fmt::Display for ServeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Read(e) => write!(f, "serial read failed: {e:?}"),
            ServeError::Write(e) => write!(f, "serial write failed: {e:?}"),
            ServeError::WriteZero => f.write_str("serial port accepted no data"),
        }
    }
}

/// Answers lines from `port` until [`END_OF_INPUT`] or a zero-byte read, raising `busy` while
/// solving. Returns what it did, or the port's error.
pub fn serve<P, B, S>(port: &mut P, busy: &mut B, solver: &mut S) -> Result<Summary, ServeError<P::Error>>
where
    P: Read + Write,
    B: OutputPin,
    S: Solve,
{
    let mut line = LineBuffer::new();
    let mut summary = Summary::default();
    // Set after `\r`, so that the `\n` of a `\r\n` pair does not end a second, empty line.
    let mut after_cr = false;
    let mut chunk = [0u8; 64];
    loop {
        let n = port.read(&mut chunk).map_err(ServeError::Read)?;
        // A zero-byte read is the end of the stream in embedded-io's contract.
        let bytes = chunk.get(..n).unwrap_or(&[]);
        if bytes.is_empty() {
            answer(port, busy, solver, &line, &mut summary)?;
            return Ok(summary);
        }
        for &byte in bytes {
            match byte {
                END_OF_INPUT => {
                    answer(port, busy, solver, &line, &mut summary)?;
                    return Ok(summary);
                }
                b'\n' if after_cr => after_cr = false,
                b'\n' | b'\r' => {
                    after_cr = byte == b'\r';
                    answer(port, busy, solver, &line, &mut summary)?;
                    line.clear();
                }
                _ => {
                    after_cr = false;
                    line.push(byte);
                }
            }
        }
    }
}

/// One line's bytes, up to [`LINE_CAPACITY`] (a `heapless::Vec`: fixed capacity, a refused
/// push instead of a panic), and its true length.
struct LineBuffer {
    bytes: heapless::Vec<u8, LINE_CAPACITY>,
    len: usize,
}

impl LineBuffer {
    const fn new() -> Self {
        LineBuffer { bytes: heapless::Vec::new(), len: 0 }
    }

    fn push(&mut self, byte: u8) {
        // Past the capacity the byte is refused (dropped); the length counts on, to report it.
        let _ = self.bytes.push(byte);
        self.len = self.len.saturating_add(1);
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.len = 0;
    }

    /// The kept bytes, or `None` if the line overflowed the buffer.
    fn text(&self) -> Option<&[u8]> {
        (self.len == self.bytes.len()).then_some(self.bytes.as_slice())
    }
}

/// Answers one complete line (nothing for blank lines, comments and a CSV header).
fn answer<P, B, S>(
    port: &mut P,
    busy: &mut B,
    solver: &mut S,
    line: &LineBuffer,
    summary: &mut Summary,
) -> Result<(), ServeError<P::Error>>
where
    P: Write,
    B: OutputPin,
    S: Solve,
{
    let Some(bytes) = line.text() else {
        summary.refused = summary.refused.saturating_add(1);
        return write_error(port, format_args!("line of {} bytes is longer than {LINE_CAPACITY}", line.len));
    };
    let text = match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            summary.refused = summary.refused.saturating_add(1);
            return write_error(port, format_args!("byte {} of the line is not UTF-8 text", e.valid_up_to() + 1));
        }
    };
    // The same reading as `hrm solve sudoku --file`: trim, first CSV field, skip blanks,
    // comments and a header.
    let first = text.split(',').next().unwrap_or("").trim();
    if first.is_empty() || first.starts_with('#') || first.eq_ignore_ascii_case("puzzle") {
        return Ok(());
    }
    // `k=N`: N trajectories per puzzle from now on, answered `k=N` (or an error).
    if let Some(value) = first.strip_prefix("k=").or_else(|| first.strip_prefix("K=")) {
        let set = match value.trim().parse::<u32>() {
            Ok(k) => solver.set_ensemble(k).map(|()| k),
            Err(_) => Err("k must be from 1 to 65536"),
        };
        return match set {
            Ok(k) => {
                let mut w = FmtPort { port, error: None };
                let _ = fmt::Write::write_fmt(&mut w, format_args!("k={k}\n"));
                match w.error {
                    Some(e) => Err(e),
                    None => port.flush().map_err(ServeError::Write),
                }
            }
            Err(why) => {
                summary.refused = summary.refused.saturating_add(1);
                write_error(port, format_args!("{why}"))
            }
        };
    }
    let grid = match sudoku::parse(first) {
        Ok(grid) => grid,
        Err(e) => {
            summary.refused = summary.refused.saturating_add(1);
            return write_error(port, format_args!("{e}"));
        }
    };
    // The indicator is advisory: a pin that fails to switch must not stop the answers.
    let _ = busy.set_high();
    let solved = solver.solve(&grid);
    let _ = busy.set_low();
    match solved {
        Ok(answer) => {
            summary.answered = summary.answered.saturating_add(1);
            let mut out = [b'\n'; CELLS + 1];
            for (o, &d) in out.iter_mut().zip(answer.iter()) {
                // Digits are 0..=9 by `from_tokens`; `min` keeps any other value printable.
                *o = b'0' + d.min(9);
            }
            match solver.digest() {
                None => write_all(port, &out)?,
                Some(digest) => {
                    // ` ` and eight lower-case hex digits, as `hrm solve sudoku --digest` prints.
                    write_all(port, out.get(..CELLS).unwrap_or(&out))?;
                    let mut w = FmtPort { port, error: None };
                    let _ = fmt::Write::write_fmt(&mut w, format_args!(" {digest:08x}\n"));
                    if let Some(e) = w.error {
                        return Err(e);
                    }
                }
            }
            port.flush().map_err(ServeError::Write)
        }
        Err(e) => {
            summary.refused = summary.refused.saturating_add(1);
            write_error(port, format_args!("{e}"))
        }
    }
}

fn write_error<P: Write>(port: &mut P, message: fmt::Arguments<'_>) -> Result<(), ServeError<P::Error>> {
    let mut w = FmtPort { port, error: None };
    // `fmt::Error` without a port error can only come from a Display impl; the line is then
    // cut short but still ended, so the answers stay in step with the lines.
    let _ = fmt::Write::write_fmt(&mut w, format_args!("error: {message}"));
    if let Some(e) = w.error {
        return Err(e);
    }
    write_all(port, b"\n")?;
    port.flush().map_err(ServeError::Write)
}

/// `write_all` that reports a zero-length write as an error (embedded-io's own panics).
fn write_all<P: Write>(port: &mut P, mut bytes: &[u8]) -> Result<(), ServeError<P::Error>> {
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(0) => return Err(ServeError::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(e) => return Err(ServeError::Write(e)),
        }
    }
    Ok(())
}

/// `core::fmt::Write` over a port, keeping the port's error.
struct FmtPort<'p, P: Write> {
    port: &'p mut P,
    error: Option<ServeError<P::Error>>,
}

impl<P: Write> fmt::Write for FmtPort<'_, P> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(self.port, s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use core::convert::Infallible;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    const PUZZLE: &str = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79";
    const SOLUTION: &str = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";

    /// A serial port in memory: hands out the input `step` bytes at a time, as a UART does.
    struct MemoryPort {
        input: Vec<u8>,
        at: usize,
        step: usize,
        output: Vec<u8>,
        flushes: usize,
    }

    impl MemoryPort {
        fn new(input: &[u8], step: usize) -> Self {
            MemoryPort { input: input.to_vec(), at: 0, step, output: Vec::new(), flushes: 0 }
        }

        fn output(&self) -> String {
            String::from_utf8(self.output.clone()).unwrap()
        }
    }

    impl embedded_io::ErrorType for MemoryPort {
        type Error = Infallible;
    }

    impl Read for MemoryPort {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let n = buf.len().min(self.step).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for MemoryPort {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            // Short writes, as a FIFO gives them.
            let n = buf.len().min(7);
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> Result<(), Infallible> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// An indicator pin whose level the solver can see.
    struct Pin<'c>(&'c Cell<bool>);

    impl embedded_hal::digital::ErrorType for Pin<'_> {
        type Error = Infallible;
    }

    impl OutputPin for Pin<'_> {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.set(false);
            Ok(())
        }

        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.set(true);
            Ok(())
        }
    }

    /// Answers every puzzle with a known grid: the solution of [`PUZZLE`] for it, else the
    /// puzzle itself; refuses puzzles whose first cell is 9.
    struct Oracle<'c> {
        busy: &'c Cell<bool>,
        calls: usize,
    }

    impl Solve for Oracle<'_> {
        type Error = &'static str;

        fn solve(&mut self, puzzle: &Grid) -> Result<Grid, &'static str> {
            assert!(self.busy.get(), "the busy pin is high while solving");
            self.calls += 1;
            if puzzle[0] == 9 {
                return Err("the oracle refuses");
            }
            if *puzzle == sudoku::parse(PUZZLE).unwrap() {
                Ok(sudoku::parse(SOLUTION).unwrap())
            } else {
                Ok(*puzzle)
            }
        }
    }

    fn grid_line(text: &str) -> String {
        text.chars().map(|c| if c == '.' { '0' } else { c }).collect()
    }

    /// Runs a session over `input` for every read size from 1 to 70 bytes; all must agree.
    fn session(input: &[u8]) -> (String, Summary, usize) {
        let mut results = Vec::new();
        for step in [1, 2, 5, 64, 70] {
            let busy = Cell::new(false);
            let mut port = MemoryPort::new(input, step);
            let mut pin = Pin(&busy);
            let mut oracle = Oracle { busy: &busy, calls: 0 };
            let summary = serve(&mut port, &mut pin, &mut oracle).unwrap();
            assert!(!busy.get(), "the busy pin is low when idle");
            results.push((port.output(), summary, oracle.calls));
        }
        for r in &results[1..] {
            assert_eq!(r, &results[0], "the answers do not depend on how the port chunks its input");
        }
        results.remove(0)
    }

    #[test]
    fn answers_one_line_per_puzzle_and_stops_at_end_of_input() {
        let other = "1".to_string() + &".".repeat(80);
        let input = format!("{PUZZLE}\n{other}\n\x04{PUZZLE}\n");
        let (out, summary, calls) = session(input.as_bytes());
        assert_eq!(out, format!("{SOLUTION}\n{}\n", grid_line(&other)));
        assert_eq!(summary, Summary { answered: 2, refused: 0 });
        assert_eq!(calls, 2, "nothing after the end marker is read");
    }

    #[test]
    fn a_zero_byte_read_ends_the_session_and_the_last_line_needs_no_newline() {
        let (out, summary, _) = session(PUZZLE.as_bytes());
        assert_eq!(out, format!("{SOLUTION}\n"));
        assert_eq!(summary.answered, 1);
        let (out, _, _) = session(format!("{PUZZLE}\x04").as_bytes());
        assert_eq!(out, format!("{SOLUTION}\n"));
        let (out, summary, _) = session(b"");
        assert_eq!((out.as_str(), summary), ("", Summary::default()));
    }

    #[test]
    fn line_endings_blanks_comments_and_csv_read_as_hrm_solve_reads_them() {
        let input = format!(
            "puzzle,solution\r\n{PUZZLE},{SOLUTION}\r\n\r\n# a comment\r  {PUZZLE}  \r\r\n\n{}\n\x04",
            PUZZLE.replace('.', "0")
        );
        let (out, summary, _) = session(input.as_bytes());
        assert_eq!(out, format!("{SOLUTION}\n{SOLUTION}\n{SOLUTION}\n"));
        assert_eq!(summary, Summary { answered: 3, refused: 0 });
    }

    #[test]
    fn malformed_puzzles_get_the_runtimes_message_and_the_session_goes_on() {
        let short = &PUZZLE[..80];
        let letter = PUZZLE.replacen('.', "x", 1);
        let clash = format!("55{}", &PUZZLE[2..]);
        let refused = format!("9{}", &".".repeat(80));
        let input = format!("{short}\n{letter}\n{clash}\n{refused}\n{PUZZLE}\n");
        let (out, summary, calls) = session(input.as_bytes());
        let expected: Vec<String> = [short, letter.as_str(), clash.as_str()]
            .iter()
            .map(|p| format!("error: {}", sudoku::parse(p).unwrap_err()))
            .chain(["error: the oracle refuses".to_string(), SOLUTION.to_string()])
            .collect();
        assert_eq!(out.lines().collect::<Vec<_>>(), expected);
        assert_eq!(out.lines().next().unwrap(), "error: has 80 cells, a Sudoku has 81");
        assert_eq!(summary, Summary { answered: 1, refused: 4 });
        assert_eq!(calls, 2, "only well-formed puzzles reach the solver");
    }

    #[test]
    fn an_overlong_line_is_refused_once_and_skipped_to_its_end() {
        let long = "7".repeat(3 * LINE_CAPACITY + 5);
        let input = format!("{long}\n{PUZZLE}\n\x04");
        let (out, summary, _) = session(input.as_bytes());
        assert_eq!(out, format!("error: line of {} bytes is longer than {LINE_CAPACITY}\n{SOLUTION}\n", long.len()));
        assert_eq!(summary, Summary { answered: 1, refused: 1 });
        // Exactly the capacity is still read as a line (and refused for its length).
        let full = "1".repeat(LINE_CAPACITY);
        let (out, _, _) = session(format!("{full}\n").as_bytes());
        assert_eq!(out, format!("error: has {LINE_CAPACITY} cells, a Sudoku has 81\n"));
    }

    #[test]
    fn bytes_that_are_not_text_are_refused() {
        let mut input = PUZZLE.as_bytes().to_vec();
        input[3] = 0xff;
        input.extend_from_slice(format!("\n{PUZZLE}\n").as_bytes());
        let (out, summary, _) = session(&input);
        assert_eq!(out, format!("error: byte 4 of the line is not UTF-8 text\n{SOLUTION}\n"));
        assert_eq!(summary.refused, 1);
        let (out, _, _) = session(format!("{}\n", PUZZLE.replacen('.', "é", 1)).as_bytes());
        assert_eq!(out, "error: character 'é' at position 3 is not a digit, '.' or '0'\n");
    }

    #[test]
    fn port_errors_end_the_session() {
        /// Reads one puzzle line (or fails), then fails every write or accepts nothing.
        struct Broken {
            fail_reads: bool,
            zero_writes: bool,
            at: usize,
        }
        impl embedded_io::ErrorType for Broken {
            type Error = embedded_io::ErrorKind;
        }
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
                if self.fail_reads {
                    return Err(embedded_io::ErrorKind::Other);
                }
                let line = format!("{PUZZLE}\n");
                let rest = &line.as_bytes()[self.at.min(line.len())..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                self.at += n;
                Ok(n)
            }
        }
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> Result<usize, embedded_io::ErrorKind> {
                if self.zero_writes {
                    Ok(0)
                } else {
                    Err(embedded_io::ErrorKind::BrokenPipe)
                }
            }
            fn flush(&mut self) -> Result<(), embedded_io::ErrorKind> {
                Ok(())
            }
        }
        let busy = Cell::new(false);
        let run = |port: &mut Broken| serve(port, &mut Pin(&busy), &mut Oracle { busy: &busy, calls: 0 });
        assert_eq!(
            run(&mut Broken { fail_reads: true, zero_writes: false, at: 0 }),
            Err(ServeError::Read(embedded_io::ErrorKind::Other))
        );
        assert_eq!(
            run(&mut Broken { fail_reads: false, zero_writes: false, at: 0 }),
            Err(ServeError::Write(embedded_io::ErrorKind::BrokenPipe))
        );
        assert_eq!(run(&mut Broken { fail_reads: false, zero_writes: true, at: 0 }), Err(ServeError::WriteZero));
    }

    #[test]
    fn every_answer_is_flushed() {
        let mut port = MemoryPort::new(format!("{PUZZLE}\nx\n").as_bytes(), 64);
        let busy = Cell::new(false);
        serve(&mut port, &mut Pin(&busy), &mut Oracle { busy: &busy, calls: 0 }).unwrap();
        assert_eq!(port.flushes, 2);
    }

    #[derive(Default)]
    struct Count {
        started: usize,
        segments: Vec<u32>,
        solved: Vec<u32>,
    }

    impl Observer for Count {
        fn start(&mut self) {
            self.started += 1;
        }
        fn segment(&mut self, outcome: &SegmentOutcome) {
            self.segments.push(outcome.index);
        }
        fn solved(&mut self, segments: u32) {
            self.solved.push(segments);
        }
    }

    #[test]
    fn the_model_solver_answers_as_a_session_does() {
        let config = hrm_tests::tiny_sudoku_config();
        let blob = hrm_tests::synthetic_blob(&config, 7);
        let model = Model::from_bytes(blob.as_bytes()).unwrap();
        let puzzles = [sudoku::parse(PUZZLE).unwrap(), [0; CELLS], sudoku::parse(SOLUTION).unwrap()];

        let mut reference = Vec::new();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = Session::new(model, &mut arena).unwrap();
        for p in &puzzles {
            session.reset(&sudoku::to_tokens(p), 0).unwrap();
            session.run(Halting::Fixed).unwrap();
            let mut predictions = [0u32; CELLS];
            session.predictions(&mut predictions).unwrap();
            reference.push(sudoku::from_tokens(&predictions));
        }

        let mut arena = vec![0u8; model.arena_bytes()];
        let mut solver = ModelSolver::with_observer(model, &mut arena, Halting::Fixed, Count::default()).unwrap();
        for (p, expected) in puzzles.iter().zip(&reference) {
            assert_eq!(&solver.solve(p).unwrap(), expected);
        }
        let max = config.halt_max_steps;
        assert_eq!(solver.observer().started, 3);
        assert_eq!(solver.observer().solved, vec![max; 3]);
        assert_eq!(solver.observer().segments, (0..3).flat_map(|_| 0..max).collect::<Vec<_>>());

        let mut arena = vec![0u8; model.arena_bytes()];
        let mut one = ModelSolver::with_observer(model, &mut arena, Halting::Segments(1), Count::default()).unwrap();
        one.solve(&puzzles[0]).unwrap();
        assert_eq!(one.observer().solved, vec![1]);
    }

    #[test]
    fn k_lines_set_the_ensemble_or_are_refused() {
        // The oracle runs no ensembles: a well-formed `k=` is refused with its reason.
        let (out, summary, calls) = session(format!("k=4\n{PUZZLE}\nk=x\nk=0\n").as_bytes());
        assert_eq!(
            out,
            format!(
                "error: this solver runs no ensembles\n{}\nerror: k must be from 1 to 65536\nerror: this solver runs no ensembles\n",
                SOLUTION
            )
        );
        assert_eq!((summary.answered, summary.refused, calls), (1, 3, 1));

        let config = hrm_tests::tiny_sudoku_config();
        let blob = hrm_tests::synthetic_blob(&config, 7);
        let model = Model::from_bytes(blob.as_bytes()).unwrap();
        let puzzle = sudoku::parse(PUZZLE).unwrap();
        let plan = ensemble::Plan::symmetries(3);
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = Session::new(model, &mut arena).unwrap();
        let expected = ensemble::solve_sudoku(&mut session, &puzzle, &plan, |_, _| true).unwrap();
        // Random weights solve nothing: all three trajectories run to the end.
        assert_eq!(expected.trajectories, 3);

        let mut arena = vec![0u8; model.arena_bytes()];
        let mut solver = ModelSolver::with_observer(model, &mut arena, Halting::Fixed, Count::default()).unwrap();
        let busy = Cell::new(false);
        let mut port = MemoryPort::new(format!("k=3\n{PUZZLE}\nK=65537\nk=1\n").as_bytes(), 7);
        let summary = serve(&mut port, &mut Pin(&busy), &mut solver).unwrap();
        let answer: String = expected.answer.iter().map(|&d| char::from(b'0' + d)).collect();
        assert_eq!(port.output(), format!("k=3\n{answer}\nerror: k must be from 1 to 65536\nk=1\n"));
        assert_eq!((summary.answered, summary.refused), (1, 1));
        assert_eq!(solver.observer().segments.len(), 3 * config.halt_max_steps as usize);
    }

    #[test]
    fn the_model_solver_refuses_what_it_cannot_run() {
        let mut config = hrm_tests::tiny_sudoku_config();
        config.seq_len = 30;
        let blob = hrm_tests::synthetic_blob(&config, 1);
        let model = Model::from_bytes(blob.as_bytes()).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let err = ModelSolver::new(model, &mut arena, Halting::Fixed).err().unwrap();
        assert_eq!(err, SetupError::NotSudoku { seq_len: 30, vocab_size: 11 });
        assert_eq!(err.to_string(), "not a Sudoku model (seq_len 30, vocab 11; a Sudoku model has 81 and 11)");

        let blob = hrm_tests::synthetic_blob(&hrm_tests::tiny_sudoku_config(), 1);
        let model = Model::from_bytes(blob.as_bytes()).unwrap();
        let mut small = vec![0u8; model.arena_bytes() - 4];
        let err = ModelSolver::new(model, &mut small, Halting::Fixed).err().unwrap();
        assert!(matches!(err, SetupError::Runtime(hrm_runtime::Error::ArenaTooSmall { .. })), "{err:?}");
    }
}
