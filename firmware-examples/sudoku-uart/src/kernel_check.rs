//! `--features kernel-check`: before the solver starts, the runtime's products over shapes the
//! built-in model never has (one to nine rows and outputs, rows of 1 to 300 values: partial
//! words, odd word counts, edge tiles and odd outputs, `k` in several chunks), each output's
//! bits compared with a reference:
//! - int8 weights (on the M4F, M7 and M33 the DSP extension's tiles) with the reference loop
//!   `int8::matmul_long_rows` (each activation quantised where it is used, `i64` sums): the
//!   same integers are the runtime's promise on every core (`hrm_runtime::kernels::int8`);
//! - int4 weights (on the M4F, M7 and M33 the DSP extension's int4 tile for several rows) with
//!   `int4::matmul_reference` (every value decoded where it is used): the int4 arithmetic is
//!   the same integers and the same roundings on every core (`hrm_runtime::kernels::int4`);
//! - f32 and f16 weights (the FPU's loops of two weight rows) with `kernels::dot` per output,
//!   the portable lanes' order they promise to keep.
//!
//! The model's own shapes are checked by the digests of `scripts/firmware.sh cores`. One line
//! on the UART: how many products agreed, or the first one that did not.

use embedded_io::Write;
use half::f16;
use hrm_runtime::kernels::{dot, int4, int8, matmul, matmul_i8, matmul_q4, Dims, Element};

const ROWS: [usize; 8] = [1, 2, 3, 4, 5, 7, 8, 9];
const OUTS: [usize; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
const KS: [usize; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 16, 17, 31, 63, 64, 65, 84, 85, 86, 127, 128, 129, 130, 200, 255, 256, 257,
    300,
];
const MAX_ROWS: usize = 9;
const MAX_OUT: usize = 9;
const MAX_K: usize = 300;

/// xorshift32: the same values on every core.
struct Random(u32);

impl Random {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// A value in [-1, 1) times `scale`.
    fn f32(&mut self, scale: f32) -> f32 {
        ((self.next() >> 8) as f32 / (1u32 << 23) as f32 - 1.0) * scale
    }
}

/// Runs the check in `scratch` (the arena, before the model uses it) and writes its line.
/// Returns whether every product agreed.
pub fn run<W: Write>(out: &mut W, scratch: &mut [u8]) -> bool {
    // SAFETY: every bit pattern is an `f32`; `align_to_mut` gives the aligned middle.
    let (_, floats, _) = unsafe { scratch.align_to_mut::<f32>() };
    let (x, rest) = floats.split_at_mut(MAX_ROWS * MAX_K);
    let (scales, rest) = rest.split_at_mut(MAX_OUT);
    let (y, rest) = rest.split_at_mut(MAX_ROWS * MAX_OUT);
    let (y_ref, rest) = rest.split_at_mut(MAX_ROWS * MAX_OUT);
    let (w32, rest) = rest.split_at_mut(MAX_OUT * MAX_K);
    let (w16, rest) = rest.split_at_mut(MAX_OUT * MAX_K);
    // SAFETY: as above, `f16` and `i8` have no invalid bit patterns either.
    let (_, w16, _) = unsafe { w16.align_to_mut::<f16>() };
    let (_, w, _) = unsafe { rest.align_to_mut::<i8>() };
    let w = &mut w[..MAX_OUT * MAX_K];
    let mut random = Random(0x2545_f491);
    let mut products = 0;
    for &k in &KS {
        for &rows in &ROWS {
            for &n in &OUTS {
                let d = Dims::dense(rows, n, k);
                for (r, row) in x.chunks_exact_mut(k).take(rows).enumerate() {
                    // Rows of different magnitudes, and now and then a zero row.
                    let scale = if (r + k) % 7 == 3 { 0.0 } else { (1 + random.next() % 1000) as f32 / 100.0 };
                    for v in row.iter_mut() {
                        *v = random.f32(scale);
                    }
                }
                for v in w[..n * k].iter_mut() {
                    *v = random.next() as i8;
                }
                for s in scales[..n].iter_mut() {
                    *s = (1 + random.next() % 1000) as f32 / 65536.0;
                }
                let (x, w, scales) = (&x[..rows * k], &w[..n * k], &scales[..n]);
                if let Err(e) = matmul_i8(x, w, scales, &mut y[..rows * n], d) {
                    let _ = writeln!(out, "kernel-check: FAIL rows {rows} outputs {n} k {k}: {e}");
                    return false;
                }
                int8::matmul_long_rows(x, w, scales, &mut y_ref[..rows * n], d);
                for (i, (a, b)) in y[..rows * n].iter().zip(&y_ref[..rows * n]).enumerate() {
                    if a.to_bits() != b.to_bits() {
                        let _ = writeln!(
                            out,
                            "kernel-check: FAIL rows {rows} outputs {n} k {k}: output {i} is {a:e}, the reference's {b:e}"
                        );
                        return false;
                    }
                }
                products += 1;
            }
        }
    }
    if !int4_products(out, x, w16, w, y, y_ref, &mut random) {
        return false;
    }
    for (a, b) in w32.iter_mut().zip(w16.iter_mut()) {
        *a = random.f32(0.5);
        *b = f16::from_f32(random.f32(0.5));
    }
    let floats = float_products(out, "f32", x, w32, y, y_ref, &mut random)
        && float_products(out, "f16", x, w16, y, y_ref, &mut random);
    if floats {
        let _ = writeln!(
            out,
            "kernel-check: {products} int8, {products} int4, {products} f32 and {products} f16 products (the float ones also added to outputs), every output's bits equal to the reference's"
        );
    }
    floats
}

/// The f32 product (`kernels::matmul`) with `w`'s element type over every shape, each output's
/// bits against `kernels::dot` of its row and weight row; then the same product added to
/// outputs that hold random values (`Dims::accumulate`), each against `value + dot`. Writes the
/// first difference.
fn float_products<W: Write, E: Element>(
    out: &mut W,
    name: &str,
    x: &mut [f32],
    w: &[E],
    y: &mut [f32],
    y_before: &mut [f32],
    random: &mut Random,
) -> bool {
    for &k in &KS {
        for &rows in &ROWS {
            for &n in &OUTS {
                let d = Dims::dense(rows, n, k);
                for v in x[..rows * k].iter_mut() {
                    *v = random.f32(2.0);
                }
                let (x, w) = (&x[..rows * k], &w[..n * k]);
                if let Err(e) = matmul(x, w, &mut y[..rows * n], d) {
                    let _ = writeln!(out, "kernel-check: FAIL {name} rows {rows} outputs {n} k {k}: {e}");
                    return false;
                }
                for (i, &got) in y[..rows * n].iter().enumerate() {
                    let (r, o) = (i / n, i % n);
                    let want = dot(&w[o * k..o * k + k], &x[r * k..r * k + k]);
                    if got.to_bits() != want.to_bits() {
                        let _ = writeln!(
                            out,
                            "kernel-check: FAIL {name} rows {rows} outputs {n} k {k}: output {i} is {got:e}, the reference's {want:e}"
                        );
                        return false;
                    }
                }
                for (a, b) in y[..rows * n].iter_mut().zip(y_before[..rows * n].iter_mut()) {
                    *b = random.f32(2.0);
                    *a = *b;
                }
                if let Err(e) = matmul(x, w, &mut y[..rows * n], Dims { accumulate: true, ..d }) {
                    let _ = writeln!(out, "kernel-check: FAIL {name} accumulated rows {rows} outputs {n} k {k}: {e}");
                    return false;
                }
                for (i, (&got, &before)) in y[..rows * n].iter().zip(&y_before[..rows * n]).enumerate() {
                    let (r, o) = (i / n, i % n);
                    let want = before + dot(&w[o * k..o * k + k], &x[r * k..r * k + k]);
                    if got.to_bits() != want.to_bits() {
                        let _ = writeln!(
                            out,
                            "kernel-check: FAIL {name} accumulated rows {rows} outputs {n} k {k}: output {i} is {got:e}, the reference's {want:e}"
                        );
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// The int4 product (`kernels::matmul_q4`) over every shape, `nibbles` random and `scales` of
/// several magnitudes, each output's bits against `int4::matmul_reference`. Writes the first
/// difference.
fn int4_products<W: Write>(
    out: &mut W,
    x: &mut [f32],
    scales: &mut [f16],
    nibbles: &mut [i8],
    y: &mut [f32],
    y_ref: &mut [f32],
    random: &mut Random,
) -> bool {
    for &k in &KS {
        for &rows in &ROWS {
            for &n in &OUTS {
                let d = Dims::dense(rows, n, k);
                let blocks = k.div_ceil(32);
                for v in x[..rows * k].iter_mut() {
                    *v = random.f32(2.0);
                }
                for v in nibbles[..n * blocks * 16].iter_mut() {
                    *v = random.next() as i8;
                }
                for s in scales[..n * blocks].iter_mut() {
                    *s = f16::from_f32((1 + random.next() % 1000) as f32 / 4096.0);
                }
                // SAFETY: `i8` and `u8` have the same layout.
                let bytes = unsafe { &*(&nibbles[..n * blocks * 16] as *const [i8] as *const [u8]) };
                let w = int4::Q4Rows { scales: &scales[..n * blocks], nibbles: bytes, blocks };
                let x = &x[..rows * k];
                if let Err(e) = matmul_q4(x, w, &mut y[..rows * n], d) {
                    let _ = writeln!(out, "kernel-check: FAIL int4 rows {rows} outputs {n} k {k}: {e}");
                    return false;
                }
                int4::matmul_reference(x, w, &mut y_ref[..rows * n], d);
                for (i, (a, b)) in y[..rows * n].iter().zip(&y_ref[..rows * n]).enumerate() {
                    if a.to_bits() != b.to_bits() {
                        let _ = writeln!(
                            out,
                            "kernel-check: FAIL int4 rows {rows} outputs {n} k {k}: output {i} is {a:e}, the reference's {b:e}"
                        );
                        return false;
                    }
                }
            }
        }
    }
    true
}
