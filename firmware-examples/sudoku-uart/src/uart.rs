//! A driver for the ARM CMSDK APB UART (the MPS2 boards' UARTs): blocking, transmit polled,
//! receive sleeping in `WFI` until the RX interrupt is pending (no interrupt handler runs).
//!
//! Registers (offsets from the base): DATA 0x00; STATE 0x04 (bit 0 TX buffer full, bit 1 RX
//! buffer full); CTRL 0x08 (bit 0 TX enable, bit 1 RX enable, bit 3 RX interrupt enable);
//! INTCLEAR 0x0C (write 1 to bit 1 to clear the RX interrupt); BAUDDIV 0x10 (≥ 16).
//!
//! Sleeping instead of spinning saves power on a board, and under QEMU it makes the count of
//! executed instructions independent of how fast the host delivers the input.

use core::convert::Infallible;
use core::ptr;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTCLEAR: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;
const CTRL_RX_INTERRUPT: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// UART0 of the board the build is for, and its receive interrupt.
pub const MPS2_UART0: (usize, RxIrq) = (crate::board::UART0, RxIrq(crate::board::UART0_RX_IRQ));

/// The NVIC line of a UART's receive interrupt.
#[derive(Clone, Copy)]
pub struct RxIrq(pub u16);

// SAFETY: the number is an interrupt line of the board (`MPS2_UART0`'s, from `board`).
unsafe impl InterruptNumber for RxIrq {
    fn number(self) -> u16 {
        self.0
    }
}

pub struct CmsdkUart {
    base: usize,
    irq: RxIrq,
}

impl CmsdkUart {
    /// Enables the transmitter and receiver at `clock / bauddiv` baud.
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB UART's registers and `irq` its receive
    /// interrupt, nothing else may use that UART while the returned value exists, and the
    /// program must handle `irq` if it ever runs (see `main.rs`'s `DefaultHandler`).
    pub unsafe fn new((base, irq): (usize, RxIrq), bauddiv: u32) -> Self {
        let mut uart = CmsdkUart { base, irq };
        uart.write_reg(BAUDDIV, bauddiv.max(16));
        uart.write_reg(INTCLEAR, INT_RX);
        uart.write_reg(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE | CTRL_RX_INTERRUPT);
        NVIC::unpend(irq);
        // SAFETY: the caller handles the interrupt; it only ever becomes pending while
        // `read` masks interrupts, which clears it again before unmasking.
        unsafe { NVIC::unmask(irq) };
        uart
    }

    /// Clears the RX interrupt of `base` (for an interrupt handler).
    ///
    /// # Safety
    /// `base` must be a CMSDK APB UART's registers.
    pub unsafe fn clear_rx_interrupt(base: usize) {
        // SAFETY: the caller's contract.
        unsafe { ptr::write_volatile((base + INTCLEAR) as *mut u32, INT_RX) }
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is one of this UART's registers, which
        // are 32-bit, aligned and readable at any time.
        unsafe { ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`; `&mut self` makes this value the only writer.
        unsafe { ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn rx_full(&self) -> bool {
        self.read_reg(STATE) & STATE_RX_FULL != 0
    }

    fn tx_full(&self) -> bool {
        self.read_reg(STATE) & STATE_TX_FULL != 0
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl embedded_io::Read for CmsdkUart {
    /// Sleeps until a byte arrives, then takes every byte already waiting (the CMSDK UART
    /// holds one).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        // With interrupts masked, a byte arriving between the check and `WFI` still wakes
        // `WFI` (its interrupt is pending and enabled) instead of being slept through.
        cortex_m::interrupt::free(|_| {
            while !self.rx_full() {
                cortex_m::asm::wfi();
            }
            let mut n = 0;
            for slot in buf.iter_mut() {
                if !self.rx_full() {
                    break;
                }
                *slot = self.read_reg(DATA) as u8;
                n += 1;
            }
            // Consumed: clear the interrupt before unmasking, so that no handler runs.
            self.write_reg(INTCLEAR, INT_RX);
            NVIC::unpend(self.irq);
            Ok(n)
        })
    }
}

impl embedded_io::Write for CmsdkUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            while self.tx_full() {}
            self.write_reg(DATA, u32::from(byte));
        }
        Ok(buf.len())
    }

    /// Waits until the transmit buffer has taken the last byte.
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.tx_full() {}
        Ok(())
    }
}
