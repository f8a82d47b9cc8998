//! The board's addresses, and the busy indicator: an LED of the MPS2 FPGA IO block, as an
//! `embedded-hal` output pin.
//!
//! Three memory maps: the MPS2 AN385/AN386/AN500 images (M3, M4F, M7; the default), with the
//! `mps2-an505` feature the AN505 image (Cortex-M33 with TrustZone) and with `mps3-an547` the
//! MPS3 AN547 image (Cortex-M55, its SSE-300 subsystem). The M33 and M55 start in the secure
//! state with the SAU off, so every access is secure: the firmware uses the secure aliases of
//! their devices (address + 0x1000_0000), which the peripheral protection controllers let
//! through at reset.

use core::convert::Infallible;
use core::ptr;

/// UART0's registers.
#[cfg(not(any(feature = "mps2-an505", feature = "mps3-an547")))]
pub const UART0: usize = 0x4000_4000;
/// UART0's receive interrupt (its NVIC line).
#[cfg(not(any(feature = "mps2-an505", feature = "mps3-an547")))]
pub const UART0_RX_IRQ: u16 = 0;
/// FPGA IO `LED0` register: bits 0 and 1 drive the two user LEDs.
#[cfg(not(any(feature = "mps2-an505", feature = "mps3-an547")))]
const FPGAIO_LED0: usize = 0x4002_8000;

/// UART0's registers (secure alias of 0x4020_0000).
#[cfg(feature = "mps2-an505")]
pub const UART0: usize = 0x5020_0000;
/// UART0's receive interrupt: the AN505's expansion interrupt 0, NVIC line 32 (the IoTKit
/// takes the first 32).
#[cfg(feature = "mps2-an505")]
pub const UART0_RX_IRQ: u16 = 32;
/// FPGA IO `LED0` register (secure alias of 0x4030_2000).
#[cfg(feature = "mps2-an505")]
const FPGAIO_LED0: usize = 0x5030_2000;

/// UART0's registers (secure alias of 0x4930_3000).
#[cfg(feature = "mps3-an547")]
pub const UART0: usize = 0x5930_3000;
/// UART0's receive interrupt: expansion interrupt 1 of the SSE-300, NVIC line 33 (its
/// transmit interrupt is 34).
#[cfg(feature = "mps3-an547")]
pub const UART0_RX_IRQ: u16 = 33;
/// FPGA IO `LED0` register (secure alias of 0x4930_2000): bits 0 to 7 drive the user LEDs.
#[cfg(feature = "mps3-an547")]
const FPGAIO_LED0: usize = 0x5930_2000;

pub struct FpgaLed {
    mask: u32,
}

impl FpgaLed {
    /// User LED `index` (0 or 1).
    ///
    /// # Safety
    /// Must run on the MPS2 image the build is for, and nothing else may drive that LED.
    pub unsafe fn new(index: u8) -> Self {
        FpgaLed { mask: 1 << (index & 1) }
    }

    fn update(&mut self, on: bool) {
        let reg = FPGAIO_LED0 as *mut u32;
        // SAFETY: `new`'s contract: the register exists and this pin owns its bit. The
        // read-modify-write is not atomic, which is fine for one thread without interrupts
        // touching the LEDs.
        unsafe {
            let value = ptr::read_volatile(reg);
            ptr::write_volatile(reg, if on { value | self.mask } else { value & !self.mask });
        }
    }
}

impl embedded_hal::digital::ErrorType for FpgaLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FpgaLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.update(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.update(true);
        Ok(())
    }
}
