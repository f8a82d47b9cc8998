//! A Sudoku solver on a Cortex-M, answering over the UART.
//!
//! The model blob sits in flash (`include_bytes!`, 64-byte aligned, read in place); the
//! session's working memory is one `static` arena whose size the compiler reads from the blob's
//! header; nothing is allocated. Each line received on UART0 is a puzzle, each line sent back its
//! answer or `error: …` (see `hrm-solver-protocol`). At the end of input (EOT, 0x04) the firmware
//! exits through semihosting with status 0, so QEMU, and CI, see how it ended.
#![no_std]
#![no_main]

mod board;
#[cfg(feature = "kernel-check")]
mod kernel_check;
#[cfg(feature = "defmt")]
mod log;
mod uart;

use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug::{self, ExitStatus, EXIT_FAILURE, EXIT_SUCCESS};
use embedded_io::Write as _;
use hrm_runtime::{Arena, Config, Halting, Header, Model};
use hrm_solver_protocol::{serve, ModelSolver};
use panic_semihosting as _;

use crate::board::FpgaLed;
use crate::uart::{CmsdkUart, MPS2_UART0};

/// Aligns what it holds to 64 bytes: the runtime reads the weights in place, and every tensor of
/// a blob starts at a multiple of 64 from the blob's start.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The model, in flash (`.rodata`): the file `HRM_BLOB` named at build time.
static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.blob")));

/// The blob's header, read by the compiler. A blob whose header is damaged fails the build
/// here; the full check (both CRCs, every tensor) runs at boot.
const HEADER: Header = match Header::parse(&BLOB.0) {
    Ok(header) => header,
    Err(_) => panic!("HRM_BLOB is not a model blob of the runtime's format (`hrm inspect` says why)"),
};

/// The model's configuration.
const CONFIG: Config = HEADER.config;

/// A fixed-point blob needs the runtime's integer path: without the `fixed-point` feature the
/// build stops here rather than the firmware refusing the model at boot.
#[cfg(not(feature = "fixed-point"))]
const _: () = assert!(
    !matches!(HEADER.activations, hrm_runtime::Activations::Fixed),
    "HRM_BLOB has fixed-point activations: build with the `fixed-point` feature (the default)"
);

/// Bytes of working memory the model needs: all of the firmware's RAM but its stack (for a
/// fixed-point blob the integer path's `i16` arena, about half an `f32` blob's).
pub const ARENA_BYTES: usize = CONFIG.arena_bytes_for(HEADER.activations);

/// The segments `hrm solve sudoku` runs by default: the model's `halt_max_steps`.
const HALTING: Halting = Halting::Fixed;

/// The UART clock divider (25 MHz / 217 ≈ 115200 baud on the MPS2 boards; QEMU ignores it).
const BAUDDIV: u32 = 217;

#[entry]
fn main() -> ! {
    // cortex-m-rt turns this into a `&'static mut` that only `main` holds; it lives in `.bss`
    // (zeroed at reset), so it costs no flash.
    static mut ARENA: Arena<ARENA_BYTES> = Arena::new();

    // SAFETY: UART0 and LED0 exist on the MPS2 images this firmware is built for, and nothing
    // else in the program touches them.
    let mut uart = unsafe { CmsdkUart::new(MPS2_UART0, BAUDDIV) };
    let mut busy = unsafe { FpgaLed::new(0) };
    #[cfg(feature = "defmt")]
    log::start();

    let status = run(&mut uart, &mut busy, ARENA.as_mut_bytes());
    debug::exit(status);
    // Without a debugger (a real board) there is nobody to exit to: sleep.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Every interrupt without a handler of its own. Only UART0's receive interrupt is enabled, and
/// `CmsdkUart::read` clears it before unmasking; should it run anyway, clearing it is all there
/// is to do (the byte stays in the UART for the next read).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == i16::try_from(MPS2_UART0.1 .0).unwrap_or(-1) {
        // SAFETY: UART0's registers; clearing its interrupt status does not disturb `main`'s use.
        unsafe { CmsdkUart::clear_rx_interrupt(MPS2_UART0.0) };
    }
}

/// Validates the model, then answers lines until the end of input.
fn run(uart: &mut CmsdkUart, busy: &mut FpgaLed, arena: &mut [u8]) -> ExitStatus {
    // `--features kernel-check`: the int8, f32 and f16 products against their references first.
    #[cfg(feature = "kernel-check")]
    if !kernel_check::run(uart, arena) {
        return EXIT_FAILURE;
    }
    let model = match Model::from_bytes(&BLOB.0) {
        Ok(model) => model,
        Err(e) => {
            let _ = writeln!(uart, "error: the model blob is damaged: {e}");
            return EXIT_FAILURE;
        }
    };
    #[cfg(feature = "defmt")]
    log::model(&model);
    #[cfg(not(feature = "defmt"))]
    let observer = hrm_solver_protocol::Silent;
    #[cfg(feature = "defmt")]
    let observer = log::Log::new();
    let solver = match ModelSolver::with_observer(model, arena, HALTING, observer) {
        Ok(solver) => solver,
        Err(e) => {
            let _ = writeln!(uart, "error: {e}");
            return EXIT_FAILURE;
        }
    };
    // `--features digest`: each answer followed by the digest of its every segment's logits
    // and Q values (the cross-core check of scripts/firmware.sh).
    #[cfg(feature = "digest")]
    let mut solver = solver.report_digests();
    #[cfg(not(feature = "digest"))]
    let mut solver = solver;
    match serve(uart, busy, &mut solver) {
        Ok(_summary) => {
            #[cfg(feature = "defmt")]
            log::finished(&_summary);
            EXIT_SUCCESS
        }
        // The UART driver cannot fail; another port's error would end the session here.
        Err(_) => EXIT_FAILURE,
    }
}
