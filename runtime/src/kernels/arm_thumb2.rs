//! Cortex-M cores with Thumb-2 (M3, M4, M7, M33): the integer path's loops in assembly.
//!
//! Without the DSP extension (M3, `thumbv7m`; M33 built without DSP), the products of four
//! activation rows, CMSIS-NN's scalar inner loop turned around. The activations are packed as
//! `i32`, the four rows interleaved value by value, so that one `LDM` brings the four rows'
//! value `t` for the four `MLA`s with weight `t`; each weight word is loaded once and its bytes
//! sign-extended one at a time (`SXTB` with a rotation) just before their four `MLA`s. Per four
//! values of `k` and four rows, one `LDR`, four extensions, four `LDM`s and sixteen `MLA`s: 1.56
//! instructions per multiply-accumulate, against about 3 for the compiler's loop of one row
//! against four weight rows (one `i16` load and four `i8` loads a value). The sums are exact
//! `i32` (`|x| ≤ 32767`, `|w| ≤ 128`, at most 256 values a row), so the integers, and the
//! digests of every core, are unchanged.
//!
//! On every Thumb-2 core, the SwiGLU's `silu(g)·u` ([`silu_rows`]), the requantisation of
//! a 4 × 4 tile's sums into `i16` activations ([`requantise_4x4`]) and the two passes of the
//! residual add and RMSNorm ([`residual_squares`], [`residual_normalise`]).

use core::arch::asm;

/// `out[i][j] = Σ_t q[4t + i] · w_j[t]` over `t < k` for the four interleaved packed rows at
/// `q` and four weight rows.
///
/// # Safety
/// `q` is word-aligned with `4 · k` readable values; each `w[j]` has `k` readable values.
#[cfg(not(target_feature = "dsp"))]
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

/// `g[i] ← silu_mul(g[i], u[i], fgu, fact)` (`fixed::forward`'s narrow path: the sigmoid of
/// `g` at `frac = fgu` fraction bits, [`NarrowSigmoid::eval`](crate::fixed), times `g·u`,
/// rounded half away from zero by `2^shift` with `shift = 15 + 2·fgu − fact`, clamped to
/// ±32767) for `i < n` `i16` values (`LDRSH`, `STRH`).
///
/// One pass of about 27 instructions a value with DSP, 29 without (the compiler's loop took
/// 62: it spilled its constants; a range check of each pair, dropped, took 5 more). What the Rust code computes
/// in forms the instructions take directly:
/// - the sigmoid's position `(g + 2^(b+4))·16` split at `b` bits as `g + 2^(b+4)` split at
///   `w = b − 4` (index `i`, remainder `r₀ = r / 16`), and its table entry in one `LDRD`
///   (`p1` and `−k4` in one word, `c = 4d + k4` in the other: `SIGMOID_SEGMENTS`);
/// - `u = c·2^b − k4·r = 16·(c·2^w + (−k4)·r₀)`, and the high word of `(r·2^(31−2b))·u` as that
///   of `(r₀·2^(39−2b))·(c·2^w + (−k4)·r₀)`: the same product (`SMLATB` multiplies `−k4` from
///   the word's top half; `SMMULR` of half the product gives `(h + 1) >> 1`, the interpolation's
///   rounding, and `UXTAH` adds `p1`; on the M3 `MLA`, `SMULL` and three instructions more);
/// - the sigmoid's final clamp left out (it never binds: unit test `narrow_sigmoid_and_shift_equal_the_general_paths`);
/// - `(h + 1) >> 1` for `(h >> 1) + (h & 1)` (`h < 2^29`), clamped to 32767 by `USAT`, the
///   sign put back with `EOR`/`SUB` on `g·u`'s sign.
///
/// The unit test `silu_rows_arithmetic_equals_silu_mul` in `fixed::forward` replays these steps
/// in Rust against `silu_mul`; the assembly itself is checked by the gate's digests of the
/// M3, M4F, M7 and M33 (`scripts/firmware.sh gate`).
///
/// # Safety
/// `g` and `u` hold `n` values each; `4 ≤ frac ≤ 15`; `rounding_pre = 33 − shift` with `shift`
/// in `17..=33`.
#[inline(never)]
pub unsafe fn silu_rows(
    g: *mut i16,
    u: *const i16,
    n: usize,
    segments: &[[u32; 2]; 512],
    frac: u32,
    rounding_pre: u32,
) {
    if n == 0 {
        return;
    }
    let w = frac - 4;
    // r6 and r7 cannot be operands (LLVM's base and frame pointers): saved on the stack and
    // used as temporaries.
    macro_rules! silu_loop {
        ($r0_shift:expr, $($products:literal),*) => {
            asm!(
                "push {{r6, r7}}",
                "2:",
                "ldrsh r11, [r0]",
                "ldrsh r12, [r1], #2",
                "mul r12, r11, r12",
                // pos = g + 2^(b+4); saturated below 1 and from 2^(b+5) on.
                "adds r11, r11, r5",
                "ble 4f",
                "cmp r11, r5, lsl #1",
                "bge 3f",
                "and lr, r11, r8",
                "lsr r11, r11, r9",
                "add r11, r3, r11, lsl #3",
                "ldrd r11, r6, [r11]",
                "lsl r6, r6, r9",
                $($products,)*
                "6:",
                // |g·u| · (σ · 2^pre): its high word, rounded, clamped, signed.
                "eor lr, r12, r12, asr #31",
                "sub lr, lr, r12, asr #31",
                "lsl r11, r11, r4",
                "umull r11, r6, lr, r11",
                "add r6, r6, #1",
                "usat r6, #15, r6, asr #1",
                "eor r6, r6, r12, asr #31",
                "sub r6, r6, r12, asr #31",
                "strh r6, [r0], #2",
                "cmp r1, r2",
                "bne 2b",
                "b 7f",
                "3:",
                "mov r11, #32768",
                "b 6b",
                "4:",
                "mov r11, #0",
                "b 6b",
                "7:",
                "pop {{r6, r7}}",
                inout("r0") g => _,
                inout("r1") u => _,
                in("r2") u.add(n),
                in("r3") segments.as_ptr(),
                in("r4") rounding_pre,
                in("r5") 1i32 << (frac + 4),
                in("r8") (1u32 << w) - 1,
                in("r9") w,
                in("r10") $r0_shift,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            )
        };
    }
    // t' = c·2^w + (−k4)·r₀, then h = high word of (r₀·2^(39−2b)) · t' and σ = p1 + (h + 1)
    // / 2, p1 the entry's low half. With DSP, (h + 1) / 2 in one `SMMULR` (the high word
    // rounded: ⌊(x + 2^31) / 2^32⌋) of (r₀·2^(38−2b)) · t' = x / 2, since ⌊(⌊x / 2^32⌋ + 1) / 2⌋
    // = ⌊(x + 2^32) / 2^33⌋ (x is even: 39 − 2b ≥ 9), and p1 added by `UXTAH`: 2 instructions
    // a value fewer.
    #[cfg(target_feature = "dsp")]
    silu_loop!(38 - 2 * frac, "smlatb r6, r11, lr, r6", "lsl lr, lr, r10", "smmulr r6, lr, r6", "uxtah r11, r6, r11");
    #[cfg(not(target_feature = "dsp"))]
    silu_loop!(
        39 - 2 * frac,
        "asr r7, r11, #16",
        "mla r6, r7, lr, r6",
        "lsl lr, lr, r10",
        "smull r7, r6, lr, r6",
        "add r6, r6, #1",
        "uxth r11, r11",
        "add r11, r11, r6, asr #1"
    );
}

/// `y[i·ys + j] = Requant::new(scales[j], d).apply_high(sums[i][j], 32767)` for the 4 × 4
/// tile (`fixed::forward::store_requantised`'s work where all four scales take the fast path
/// of `Requant::new`: a normal `f32` whose shift `150 − biased exponent − d` is in `25..=63`).
/// Returns `false`, having stored some columns or none, at the first scale outside it; the
/// caller then does the whole tile in Rust (the same values again).
///
/// Per column 12 instructions for the scale (its exponent's check, the multiplier
/// `m·2^(33 − shift)` or `m` with a high-word shift of `shift − 33`), per output 11: `|sum|`,
/// `UMULL`, the high word shifted by `high_shift + 1` with `LSRS`, whose carry is the bit the
/// rounding adds (`(h >> 1) + (h & 1)` in two instructions), `USAT` to 32767, and the sign of
/// `sum` XOR the scale's put back. The compiler's code took about 31 an output. The same
/// integers: the gate's digests of the M3, M4F, M7 and M33 check them.
///
/// # Safety
/// `y` is valid for writes at `i·ys + j` for `i, j < 4`; `scales` holds four values;
/// `d` in `−129..=86` (every product's `fy − fx`: formats have −8 to 24 fraction bits).
#[inline(never)]
pub unsafe fn requantise_4x4(y: *mut i16, ys: usize, sums: &[[i32; 4]; 4], scales: *const f32, d: i32) -> bool {
    let done: u32;
    // r6 and r7 cannot be operands (LLVM's base and frame pointers): saved on the stack and
    // used as temporaries.
    macro_rules! output {
        ($row:literal, $store:literal) => {
            concat!(
                "ldr lr, [r4, #",
                $row,
                "]\n",
                "eor r6, lr, lr, asr #31\n",
                "sub r6, r6, lr, asr #31\n",
                "umull r6, r7, r6, r11\n",
                "lsrs r7, r7, r12\n",
                "adc r7, r7, #0\n",
                "usat r7, #15, r7\n",
                "eor lr, lr, r10\n",
                "eor r7, r7, lr, asr #31\n",
                "sub r7, r7, lr, asr #31\n",
                "strh r7, ",
                $store,
                "\n",
            )
        };
    }
    asm!(
        "push {{r6, r7}}",
        "2:",
        // The scale's bits; t = biased exponent − (87 − d) = 63 − shift, in 0..=38 (shift =
        // 150 − d − biased in 25..=63; for d in −129..=86 that makes the exponent normal).
        "ldr r10, [r5], #4",
        "ubfx r12, r10, #23, #8",
        "sub r12, r12, r8",
        "cmp r12, #38",
        "bhi 3f",
        // The mantissa with its leading 1; shift ≤ 33 (t ≥ 30): multiplier m·2^(33 − shift),
        // high shift 0; else m, shift − 33. r12 = the high shift + 1.
        "ubfx r11, r10, #0, #23",
        "orr r11, r11, #0x800000",
        "subs lr, r12, #30",
        "itte ge",
        "lslge r11, r11, lr",
        "movge r12, #1",
        "rsblt r12, r12, #31",
        output!("0", "[r0]"),
        output!("16", "[r0, r1, lsl #1]"),
        output!("32", "[r0, r2, lsl #1]"),
        output!("48", "[r0, r3, lsl #1]"),
        "add r0, r0, #2",
        "add r4, r4, #4",
        "cmp r5, r9",
        "bne 2b",
        "mov r0, #1",
        "b 4f",
        "3:",
        "mov r0, #0",
        "4:",
        "pop {{r6, r7}}",
        inout("r0") y => done,
        in("r1") ys,
        in("r2") 2 * ys,
        in("r3") 3 * ys,
        inout("r4") sums.as_ptr() => _,
        inout("r5") scales => _,
        in("r8") 87 - d,
        in("r9") scales.add(4),
        out("r10") _,
        out("r11") _,
        out("r12") _,
        out("lr") _,
    );
    done != 0
}

/// The first pass of `fixed::forward::residual_norm_narrow` where `p` is scaled up (`fp ≤
/// fz`): `t = x + (p << up)` for the `n` `i16` values, returning `Σ t²` (64-bit, `SMLAL`). 7
/// instructions a value (11 while activations were `i32` slots and each value's range was
/// checked).
///
/// # Safety
/// `x` and `p` hold `n ≥ 1` values each.
#[inline(never)]
pub unsafe fn residual_squares(x: *const i16, p: *const i16, n: usize, up: u32) -> u64 {
    let (lo, hi): (u32, u32);
    asm!(
        "2:",
        "ldrsh r4, [r0], #2",
        "ldrsh r5, [r1], #2",
        "lsl r5, r5, r3",
        "add r4, r4, r5",
        "smlal r8, r9, r4, r4",
        "cmp r0, r2",
        "bne 2b",
        inout("r0") x => _,
        inout("r1") p => _,
        in("r2") x.add(n),
        in("r3") up,
        out("r4") _,
        out("r5") _,
        inout("r8") 0u32 => lo,
        inout("r9") 0u32 => hi,
        options(nostack, readonly),
    );
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The second pass of `fixed::forward::residual_norm_narrow` where `p` is scaled up and the
/// normalisation's shift is in `24..=55`: `t = x + (p << up)`, then `x = ±min(round(|t|·inv /
/// 2^(down + 24)), 32767)` with `t`'s sign. `|t| < 2^23`, so the high word of `(|t| << 9) ·
/// inv` (`UMULL`) is `⌊|t|·inv / 2^23⌋`; `LSRS` by `down + 1` leaves in the carry the bit
/// the rounding adds (`ADC`), `USAT` clamps. 16 instructions a value; the compiler's loop took
/// about 23.
///
/// # Safety
/// `x` and `p` hold `n ≥ 1` values each, every `x + (p << up)` below 2^23 in magnitude;
/// `down ≤ 31`.
#[inline(never)]
pub unsafe fn residual_normalise(x: *mut i16, p: *const i16, n: usize, up: u32, inv: u32, down: u32) {
    asm!(
        "2:",
        "ldrsh r4, [r0]",
        "ldrsh r5, [r1], #2",
        "lsl r5, r5, r3",
        "add r4, r4, r5",
        "eor r5, r4, r4, asr #31",
        "sub r5, r5, r4, asr #31",
        "lsl r5, r5, #9",
        "umull r12, r5, r5, r8",
        "lsrs r5, r5, r9",
        "adc r5, r5, #0",
        "usat r5, #15, r5",
        "eor r5, r5, r4, asr #31",
        "sub r5, r5, r4, asr #31",
        "strh r5, [r0], #2",
        "cmp r0, r2",
        "bne 2b",
        inout("r0") x => _,
        inout("r1") p => _,
        in("r2") x.add(n),
        in("r3") up,
        out("r4") _,
        out("r5") _,
        in("r8") inv,
        in("r9") down + 1,
        out("r12") _,
        options(nostack),
    );
}
