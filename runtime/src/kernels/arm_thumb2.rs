//! Cortex-M cores with Thumb-2 but without the DSP extension (M3, `thumbv7m`; M33 built
//! without DSP): the integer path's products of four activation rows, CMSIS-NN's scalar inner
//! loop turned around. The activations are packed as `i32`, the four rows interleaved value by
//! value, so that one `LDM` brings the four rows' value `t` for the four `MLA`s with weight
//! `t`; each weight word is loaded once and its bytes sign-extended one at a time (`SXTB` with
//! a rotation) just before their four `MLA`s. Per four values of `k` and four rows, one `LDR`,
//! four extensions, four `LDM`s and sixteen `MLA`s: 1.56 instructions per multiply-accumulate,
//! against about 3 for the compiler's loop of one row against four weight rows (one `i16` load
//! and four `i8` loads a value). The sums are exact `i32` (`|x| ≤ 32767`, `|w| ≤ 128`, at most
//! 256 values a row), so the integers, and the digests of every core, are unchanged.

use core::arch::asm;

/// `out[i][j] = Σ_t q[4t + i] · w_j[t]` over `t < k` for the four interleaved packed rows at
/// `q` and four weight rows.
///
/// # Safety
/// `q` is word-aligned with `4 · k` readable values; each `w[j]` has `k` readable values.
#[inline(never)]
pub unsafe fn tile4x4(q: *const i32, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
    let mut out = [[0i32; 4]; 4];
    let words = k / 4;
    for (j, &wj) in w.iter().enumerate() {
        let mut acc = [0i32; 4];
        if words > 0 {
            // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved
            // on the stack, r6 holds the weight word and r7 the weight in use.
            asm!(
                "push {{r6, r7}}",
                "2:",
                "ldr r6, [r1], #4",
                "sxtb r7, r6",
                "ldm r0!, {{r8, r9, r10, r12}}",
                "mla r3, r8, r7, r3",
                "mla r4, r9, r7, r4",
                "mla r5, r10, r7, r5",
                "mla r11, r12, r7, r11",
                "sxtb r7, r6, ror #8",
                "ldm r0!, {{r8, r9, r10, r12}}",
                "mla r3, r8, r7, r3",
                "mla r4, r9, r7, r4",
                "mla r5, r10, r7, r5",
                "mla r11, r12, r7, r11",
                "sxtb r7, r6, ror #16",
                "ldm r0!, {{r8, r9, r10, r12}}",
                "mla r3, r8, r7, r3",
                "mla r4, r9, r7, r4",
                "mla r5, r10, r7, r5",
                "mla r11, r12, r7, r11",
                "asr r7, r6, #24",
                "ldm r0!, {{r8, r9, r10, r12}}",
                "mla r3, r8, r7, r3",
                "mla r4, r9, r7, r4",
                "mla r5, r10, r7, r5",
                "mla r11, r12, r7, r11",
                "cmp r1, r2",
                "blo 2b",
                "pop {{r6, r7}}",
                inout("r0") q => _,
                inout("r1") wj => _,
                in("r2") wj.add(words * 4),
                inout("r3") acc[0],
                inout("r4") acc[1],
                inout("r5") acc[2],
                inout("r11") acc[3],
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r12") _,
            );
        }
        // The last 1 to 3 values.
        for t in words * 4..k {
            let wv = i32::from(*wj.add(t));
            for (i, a) in acc.iter_mut().enumerate() {
                *a += *q.add(4 * t + i) * wv;
            }
        }
        for (row, &a) in out.iter_mut().zip(&acc) {
            row[j] = a;
        }
    }
    out
}
