//! Cortex-M55 (Armv8.1-M with Helium, MVE): the integer path's products.
//!
//! Each of four `i16` activation rows (read where they lie: no packing) against one weight row
//! per pass, eight values a step: four `VLDRH` of the rows, one `VLDRB.S16` of the weights
//! (sign-extended to 16-bit lanes), four `VMLADAVA.S16` (eight multiply-adds each, summed into
//! a scalar accumulator), under a tail-predicated low-overhead loop (`DLSTP.16`/`LETP`) that
//! takes any `k` without a scalar tail. 10 instructions a step for 32 multiply-accumulates,
//! where the DSP tile takes 13 for 16. The sums are exact `i32` (as every other kernel's:
//! `|x| ≤ 32767`, `|w| ≤ 128`, at most 256 values a row), so the integers are the same.

use core::arch::asm;

/// `out[i][j] = Σ_t x[i][t] · w[j][t]` over `t < k` for four activation rows and four weight
/// rows.
///
/// # Safety
/// Each `x[i]` has `k` readable `i16` values (2-aligned), each `w[j]` `k` readable values;
/// `k ≥ 1`.
#[inline(never)]
pub unsafe fn tile4x4(x: &[*const i16; 4], w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
    let mut out = [[0i32; 4]; 4];
    for (j, &wj) in w.iter().enumerate() {
        let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
        // The accumulators in even registers (`VMLADAVA` encodes only those), the weights'
        // pointer in a low one (a widening load's base must be r0 to r7).
        asm!(
            "dlstp.16 lr, {k}",
            "2:",
            "vldrh.u16 q0, [{x0}], #16",
            "vldrh.u16 q1, [{x1}], #16",
            "vldrh.u16 q2, [{x2}], #16",
            "vldrh.u16 q3, [{x3}], #16",
            "vldrb.s16 q4, [r1], #8",
            "vmladava.s16 r0, q0, q4",
            "vmladava.s16 r2, q1, q4",
            "vmladava.s16 r4, q2, q4",
            "vmladava.s16 r8, q3, q4",
            "letp lr, 2b",
            k = in(reg) k,
            x0 = inout(reg) x[0] => _,
            x1 = inout(reg) x[1] => _,
            x2 = inout(reg) x[2] => _,
            x3 = inout(reg) x[3] => _,
            inout("r1") wj => _,
            inout("r0") a0,
            inout("r2") a1,
            inout("r4") a2,
            inout("r8") a3,
            out("lr") _,
            // q0 to q4 (Rust names the M-profile vector registers by their D halves).
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            out("d4") _,
            out("d5") _,
            out("d6") _,
            out("d7") _,
            out("d8") _,
            out("d9") _,
            options(nostack, readonly),
        );
        for (row, a) in out.iter_mut().zip([a0, a1, a2, a3]) {
            row[j] = a;
        }
    }
    out
}
