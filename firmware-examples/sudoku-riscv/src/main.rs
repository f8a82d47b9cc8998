//! The Sudoku solver on a RISC-V core (RV32IMAC, the ESP32-C3's instruction set, no FPU):
//! QEMU's `virt` machine, its 16550 UART, the same line protocol as `sudoku-uart`
//! (`hrm_solver_protocol::serve`), the exit status through QEMU's `sifive_test` device. Meant
//! for the integer-only blob (no float instruction exists here: f32 would be soft float).

#![no_std]
#![no_main]

use core::convert::Infallible;

use embedded_io::Write as _;
use hrm_runtime::{Arena, Halting, Header, Model};
use hrm_solver_protocol::{serve, ModelSolver};

/// Aligns what it holds to 64 bytes, as the runtime's tensors need.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.blob")));

const HEADER: Header = match Header::parse(&BLOB.0) {
    Ok(header) => header,
    Err(_) => panic!("HRM_BLOB is not a model blob of the runtime's format (`hrm inspect` says why)"),
};

/// The working memory of the blob's arithmetic (a fixed-point blob's is about half an `f32`
/// one's).
const ARENA_BYTES: usize = HEADER.config.arena_bytes_for(HEADER.activations);

/// The arena, taken once by `main` (one hart, no interrupts).
static mut ARENA: Arena<ARENA_BYTES> = Arena::new();

/// QEMU virt's NS16550A UART and its registers (byte offsets).
const UART: usize = 0x1000_0000;
const RBR_THR: usize = 0;
const LSR: usize = 5;
const LSR_DATA_READY: u8 = 1;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// QEMU's `sifive_test` device: 0x5555 exits with status 0, `code << 16 | 0x3333` with `code`.
const TEST_DEVICE: usize = 0x10_0000;

struct Uart;

impl Uart {
    fn lsr(&self) -> u8 {
        // SAFETY: the UART's line status register, a byte-wide MMIO register of this machine.
        unsafe { core::ptr::read_volatile((UART + LSR) as *const u8) }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Read for Uart {
    /// At least one byte (waiting for it), then whatever else has arrived.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            if n > 0 && self.lsr() & LSR_DATA_READY == 0 {
                break;
            }
            while self.lsr() & LSR_DATA_READY == 0 {}
            // SAFETY: the receive buffer register, readable once data is ready.
            *slot = unsafe { core::ptr::read_volatile((UART + RBR_THR) as *const u8) };
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while self.lsr() & LSR_THR_EMPTY == 0 {}
            // SAFETY: the transmit holding register, writable once it is empty.
            unsafe { core::ptr::write_volatile((UART + RBR_THR) as *mut u8, b) };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The board has no LED: the busy indicator does nothing.
struct NoLed;

impl embedded_hal::digital::ErrorType for NoLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for NoLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn exit(code: u32) -> ! {
    let value = if code == 0 { 0x5555 } else { (code << 16) | 0x3333 };
    // SAFETY: the test device's one register; writing it stops the machine.
    unsafe { core::ptr::write_volatile(TEST_DEVICE as *mut u32, value) };
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let _ = Uart.write_all(b"error: panic\n");
    exit(101)
}

#[riscv_rt::entry]
fn main() -> ! {
    // SAFETY: the only reference to the arena, taken once on the only hart.
    let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    exit(run(&mut Uart, arena.as_mut_bytes()))
}

fn run(uart: &mut Uart, arena: &mut [u8]) -> u32 {
    let model = match Model::from_bytes(&BLOB.0) {
        Ok(model) => model,
        Err(e) => {
            let _ = writeln!(uart, "error: the model blob is damaged: {e}");
            return 1;
        }
    };
    let solver = match ModelSolver::new(model, arena, Halting::Fixed) {
        Ok(solver) => solver,
        Err(e) => {
            let _ = writeln!(uart, "error: {e}");
            return 1;
        }
    };
    #[cfg(feature = "digest")]
    let mut solver = solver.report_digests();
    #[cfg(not(feature = "digest"))]
    let mut solver = solver;
    match serve(uart, &mut NoLed, &mut solver) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
