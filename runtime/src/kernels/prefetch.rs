//! The weight panel a product packs next, fetched into cache while the current panel's tiles
//! run (the f32 tiles of `gemm` and the int8 tiles of `int8::matmul_panels`). The hint
//! instruction itself is the ISA's (`Lanes::prefetch`, `Int8Lanes::prefetch`).

use super::Dims;

/// The weights of the panel packed next, fetched into cache one line a tile step while the
/// current panel's tiles run. Without it the packing waits on memory: a 27M product's
/// weights come from DRAM once per product (they are read once), and packing was measured at
/// a quarter of the product's time on a Zen 4 (`perf annotate`), the tiles idle meanwhile.
/// The cursor walks `rows` rows of `row_bytes` bytes, `stride` bytes apart.
pub(crate) struct Prefetch {
    row: *const u8,
    offset: usize,
    row_bytes: usize,
    stride: usize,
    rows: usize,
}

impl Prefetch {
    pub(crate) const NONE: Prefetch = Prefetch { row: core::ptr::null(), offset: 0, row_bytes: 0, stride: 0, rows: 0 };

    /// The panel of weight rows `o..` (at most `nr`), values `k0..` (at most `KC`) of a
    /// product, or nothing when it has no such panel.
    pub(crate) fn panel<E>(w: *const E, d: &Dims, o: usize, k0: usize, nr: usize, kc: usize) -> Prefetch {
        if o >= d.out || k0 >= d.k {
            return Prefetch::NONE;
        }
        let size = core::mem::size_of::<E>();
        Prefetch {
            // The address is only computed and handed to the prefetch hint, never read.
            row: w.wrapping_add(o * d.ws + k0).cast(),
            offset: 0,
            row_bytes: kc.min(d.k - k0) * size,
            stride: d.ws * size,
            rows: nr.min(d.out - o),
        }
    }

    /// The panel after the one of rows `o..o + nr`, values `k0..k0 + kc`: the next rows of
    /// this block of `k`, or the first ones of the next block.
    pub(crate) fn next_panel<E>(w: *const E, d: &Dims, o: usize, k0: usize, nr: usize, kc: usize) -> Prefetch {
        if o + nr < d.out {
            Prefetch::panel(w, d, o + nr, k0, nr, kc)
        } else {
            Prefetch::panel(w, d, 0, k0 + kc, nr, kc)
        }
    }

    /// The panels of [`crate::blob::DType::F32Panels`] weights that the tile after outputs
    /// `o..o + nr`, values `k0..k0 + kc` reads: `kc · 16` contiguous values in each 16-row
    /// panel it spans, one panel `16 · d.k` values after the other.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(crate) fn next_panels(w: *const f32, d: &Dims, o: usize, k0: usize, nr: usize, kc: usize) -> Prefetch {
        const P: usize = crate::blob::F32_PANEL_ROWS;
        let (o, k0) = if o + nr < d.out { (o + nr, k0) } else { (0, k0 + kc) };
        if o >= d.out || k0 >= d.k {
            return Prefetch::NONE;
        }
        Prefetch {
            // The address is only computed and handed to the prefetch hint, never read.
            row: w.wrapping_add(o / P * P * d.k + k0 * P).cast(),
            offset: 0,
            row_bytes: kc.min(d.k - k0) * P * 4,
            stride: P * d.k * 4,
            rows: nr.min(d.out - o).div_ceil(P),
        }
    }

    /// Prefetches the next line with `hint`, if any is left.
    #[inline(always)]
    pub(crate) unsafe fn step(&mut self, hint: unsafe fn(*const u8)) {
        if self.rows > 0 {
            hint(self.row.wrapping_add(self.offset));
            self.offset += 64;
            if self.offset >= self.row_bytes {
                self.offset = 0;
                self.row = self.row.wrapping_add(self.stride);
                self.rows -= 1;
            }
        }
    }
}
