//! `defmt` logging (feature `defmt`): the model at boot, every segment with the Q head's halting
//! verdict, each puzzle's segments and time, and the session's end.
//!
//! Frames go to the host's standard error over semihosting, never over the UART, so that the
//! answers on standard output stay clean: `defmt-semihosting` writes to semihosting's standard
//! output, which QEMU 7.2 sends to its own stdout, where `-serial stdio` puts the UART too.
//! Decode with `defmt-print -e ELF < frames` (`scripts/firmware.sh log` does).
//!
//! Time is SysTick's count of the core clock (25 MHz on the MPS2 boards), widened to 64 bits by
//! counting its wraps. Under QEMU it follows the host's clock (or instructions with `-icount`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use hrm_runtime::{Model, SegmentOutcome};
use hrm_solver_protocol::{Observer, Summary};
use semihosting::io::Write as _;

/// Core clock of the MPS2 AN385/AN386 images.
const CLOCK_HZ: u64 = 25_000_000;
const RELOAD: u32 = 0x00FF_FFFF;

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the clock.
pub fn start() {
    // `take` gives the core peripherals once; `main` calls `start` once, before anything else
    // could have taken them. If it were ever called twice, logs simply lack time.
    if let Some(mut p) = cortex_m::Peripherals::take() {
        p.SYST.set_clock_source(SystClkSource::Core);
        p.SYST.set_reload(RELOAD);
        p.SYST.clear_current();
        p.SYST.enable_interrupt();
        p.SYST.enable_counter();
    }
    defmt::info!("sudoku-uart up");
}

/// Microseconds since `start`.
fn micros() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Relaxed);
        let count = RELOAD - SYST::get_current();
        // A wrap between the two loads would pair the new count with the old wraps: re-read.
        if WRAPS.load(Ordering::Relaxed) == wraps {
            let ticks = (u64::from(wraps) << 24) | u64::from(count);
            return ticks * 1_000_000 / CLOCK_HZ;
        }
    }
}

defmt::timestamp!("{=u64:us}", micros());

pub fn model(model: &Model<'_>) {
    let c = model.config();
    defmt::info!(
        "model: {=usize} bytes in flash, arena {=usize} bytes, h {=u32}, {=u32} segments (Fixed halting)",
        model.bytes().len(),
        model.arena_bytes(),
        c.hidden_size,
        c.halt_max_steps
    );
}

pub fn finished(summary: &Summary) {
    defmt::info!("end of input: {=u32} answered, {=u32} refused", summary.answered, summary.refused);
}

/// Logs what the solver does.
pub struct Log {
    puzzle: u32,
    started: u64,
    last: u64,
}

impl Log {
    pub fn new() -> Self {
        Log { puzzle: 0, started: 0, last: 0 }
    }
}

impl Observer for Log {
    fn start(&mut self) {
        self.puzzle += 1;
        self.started = micros();
        self.last = self.started;
    }

    fn segment(&mut self, o: &SegmentOutcome) {
        let now = micros();
        defmt::debug!(
            "puzzle {=u32} segment {=u32}: {=u64} us, q_halt {=f32} q_continue {=f32}: the Q head says {=str}{=str}",
            self.puzzle,
            o.index,
            now - self.last,
            o.q_halt,
            o.q_continue,
            if o.halt_requested { "halt" } else { "continue" },
            if o.at_max { " (last segment)" } else { "" }
        );
        self.last = now;
    }

    fn solved(&mut self, segments: u32) {
        defmt::info!("puzzle {=u32}: {=u32} segments in {=u64} us", self.puzzle, segments, micros() - self.started);
    }
}

/// The global logger: defmt's frame encoder writing to semihosting's standard error.
#[defmt::global_logger]
struct Logger;

/// The encoder and the stream, used only between `acquire` and `release`, that is inside one
/// critical section on this single core.
struct Frames {
    taken: AtomicBool,
    restore: UnsafeCell<critical_section::RestoreState>,
    encoder: UnsafeCell<defmt::Encoder>,
    stderr: UnsafeCell<Option<semihosting::io::Stderr>>,
}

// SAFETY: the cells are touched only by the holder of the critical section that `acquire`
// enters (see `Frames`).
unsafe impl Sync for Frames {}

static FRAMES: Frames = Frames {
    taken: AtomicBool::new(false),
    restore: UnsafeCell::new(critical_section::RestoreState::invalid()),
    encoder: UnsafeCell::new(defmt::Encoder::new()),
    stderr: UnsafeCell::new(None),
};

impl Frames {
    /// Encodes through `f` into the stream.
    ///
    /// # Safety
    /// Only between `acquire` and `release`.
    unsafe fn with(&self, f: impl FnOnce(&mut defmt::Encoder, &mut dyn FnMut(&[u8]))) {
        // SAFETY: the caller holds the critical section, so these are the only references.
        let (encoder, stderr) = unsafe { (&mut *self.encoder.get(), &mut *self.stderr.get()) };
        if stderr.is_none() {
            *stderr = semihosting::io::stderr().ok();
        }
        // A write the host refuses loses log bytes, nothing else.
        f(encoder, &mut |bytes| {
            if let Some(s) = stderr.as_mut() {
                let _ = s.write_all(bytes);
            }
        });
    }
}

// SAFETY: frames are written only inside the critical section that `acquire` enters and
// `release` leaves, so they never interleave.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        // SAFETY: paired with the `release` call below, which defmt guarantees.
        let restore = unsafe { critical_section::acquire() };
        // Interrupts are masked and nothing logs from inside the logger, so this holds unless
        // the program is wrong (defmt's contract asks for a panic then; no input can cause it).
        if FRAMES.taken.swap(true, Ordering::Relaxed) {
            panic!("defmt logger taken reentrantly");
        }
        // SAFETY: in the critical section; `FRAMES` is ours until `release`.
        unsafe {
            *FRAMES.restore.get() = restore;
            FRAMES.with(|encoder, write| encoder.start_frame(write));
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: defmt calls `release` once after `acquire`, inside its critical section.
        unsafe {
            FRAMES.with(|encoder, write| encoder.end_frame(write));
            let restore = *FRAMES.restore.get();
            FRAMES.taken.store(false, Ordering::Relaxed);
            critical_section::release(restore);
        }
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: defmt calls `write` between `acquire` and `release`.
        unsafe { FRAMES.with(|encoder, write| encoder.write(bytes, write)) };
    }
}
