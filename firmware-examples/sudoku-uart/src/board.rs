//! The busy indicator: an LED of the MPS2 FPGA IO block, as an `embedded-hal` output pin.

use core::convert::Infallible;
use core::ptr;

/// FPGA IO `LED0` register of the MPS2 AN385/AN386 images: bits 0 and 1 drive the two user LEDs.
const FPGAIO_LED0: usize = 0x4002_8000;

pub struct FpgaLed {
    mask: u32,
}

impl FpgaLed {
    /// User LED `index` (0 or 1).
    ///
    /// # Safety
    /// Must run on an MPS2 AN385/AN386 image, and nothing else may drive that LED.
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
