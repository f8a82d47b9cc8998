//! Cortex-M micro-kernels of the int8 arithmetic (`super::int8`) on the DSP extension (M4, M7,
//! M33 with DSP: `thumbv7em`, `thumbv8m.main` + `dsp`), CMSIS-NN's inner loop: `SMLAD` does
//! two 16 × 16-bit multiply-adds into a 32-bit sum, `SXTB16` sign-extends bytes 0 and 2 of a
//! word (with `ROR #8`, bytes 1 and 3) into two 16-bit halves.
//!
//! The activations are packed once as `i16`, each group of four reordered `x0 x2 x1 x3`, so
//! that a word of weights `w0 w1 w2 w3` needs two `SXTB16` and two `SMLAD` against two plain
//! word loads of activations: per four weights and an activation row, one load, two extends
//! (shared by the tile's rows) and two `SMLAD`. The `MR` rows of a tile are interleaved group
//! by group ([`pack_interleaved`]: group `g` of row `i` at `g·4·MR + 4·i`), so that one pointer walks
//! them and the loads of a step are adjacent words (`LDRD`/`LDM`). The sums are exact
//! (`|q·w| ≤ 127 · 128`, at most `int8::MAX_EXACT_K` terms), so the results are the portable
//! kernel's bits.
//!
//! SAFETY (whole module): callers (`int8::matmul`) pass packed blocks of `MR` rows of `kp`
//! values (a multiple of 64) and weight rows with at least `k` readable values; weights are
//! read one unaligned word at a time below `k`, the last partial word as the word ending at `k`
//! ([`tail_word`]).

use core::arch::asm;

use half::f16;

use super::int8::{quantise, Int8Tile};

/// The word at `p`, at any address: ARMv7-M's and ARMv8-M's `LDR` takes unaligned addresses
/// (unless the firmware sets `CCR.UNALIGN_TRP`, which traps them; reset leaves it clear). For
/// these targets the compiler assumes strict alignment and makes `read_unaligned` four byte
/// loads and their shifts, 33 instructions where one does.
///
/// # Safety
/// `p` has four readable bytes.
#[inline(always)]
unsafe fn load_word(p: *const i8) -> u32 {
    let r;
    asm!("ldr {r}, [{p}]", r = lateout(reg) r, p = in(reg) p, options(pure, readonly, nostack, preserves_flags));
    r
}

/// Bytes 0 and 2 of `x`, sign-extended, as two halves.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r;
    // SAFETY: a register-only instruction of the DSP extension, which the target has.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// Bytes 1 and 3 of `x`, sign-extended, as two halves.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r;
    // SAFETY: as `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `acc + lo(a)·lo(b) + hi(a)·hi(b)` (signed halves).
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: as `sxtb16`; `smlad` sets only the Q flag, which nothing reads.
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc,
            options(pure, nomem, nostack))
    };
    r
}

/// Reorders a row of `kp` packed values (a multiple of 4) in place into the tiles' order for one
/// row, `x0 x2 x1 x3` per group of four: the layout of `Dsp1x4` (the fixed-point path packs
/// its `i16` rows itself).
///
/// # Safety
/// `row` points to `kp` writable values.
#[cfg(feature = "fixed-point")]
#[inline(always)]
pub unsafe fn reorder(row: *mut i16, kp: usize) {
    let v = core::slice::from_raw_parts_mut(row, kp);
    for g in v.chunks_exact_mut(4) {
        g.swap(1, 2);
    }
}

/// `groups` groups of four `i16` activations from `src` into the 4 × 4 tile's layout (the
/// fixed-point path's rows): group `g` stored as `x0 x2 x1 x3` at `dst + 16·g` (the four
/// rows' groups interleaved). Per group two `LDR`s (a row of the token mix starts at any
/// even address: single-word loads may be unaligned on ARMv7-M and v8-M Mainline, `LDRD`
/// may not), a `PKHBT` and a `PKHTB` and one `STRD`: 1.75 instructions a value with the
/// loop's two. No clamp: every activation is within ±32767 (each store into an activation
/// buffer saturates), so the tile's `i32` sums are exact.
///
/// # Safety
/// `src` has `4 · groups` readable values; `dst` room for `16 · groups` values from it,
/// 4-aligned.
#[cfg(feature = "fixed-point")]
#[inline(never)]
pub unsafe fn pack_groups(src: *const i16, groups: usize, dst: *mut i16) {
    if groups == 0 {
        return;
    }
    asm!(
        "2:",
        // x1:x0 and x3:x2, then x2:x0 and x3:x1.
        "ldr {a}, [{src}], #4",
        "ldr {b}, [{src}], #4",
        "pkhbt {c}, {a}, {b}, lsl #16",
        "pkhtb {d}, {b}, {a}, asr #16",
        "strd {c}, {d}, [{dst}], #32",
        "subs {n}, {n}, #1",
        "bne 2b",
        src = inout(reg) src => _,
        dst = inout(reg) dst => _,
        n = inout(reg) groups => _,
        a = out(reg) _,
        b = out(reg) _,
        c = out(reg) _,
        d = out(reg) _,
        options(nostack),
    );
}

/// One group of four `f32` activations (`{src}`, post-increment) quantised as
/// [`pack_quantised`] and [`pack_q4_half`] do: `inv` in s4 and the rounding constant in s5,
/// the multiply, add, subtract and conversion of `quantise_saturating`, `SSAT` to −128..=127,
/// packed as `x0 x2 | x1 x3` into `{a}`, `{b}` with −128 raised to −127 (`{low}`: −127 in both
/// halves); `{c}`, `{d}` scratch.
macro_rules! quantised_group {
    () => {
        concat!(
            "vldmia {src}!, {{s0-s3}}\n",
            "vmul.f32 s0, s0, s4\n",
            "vmul.f32 s1, s1, s4\n",
            "vmul.f32 s2, s2, s4\n",
            "vmul.f32 s3, s3, s4\n",
            "vadd.f32 s0, s0, s5\n",
            "vadd.f32 s1, s1, s5\n",
            "vadd.f32 s2, s2, s5\n",
            "vadd.f32 s3, s3, s5\n",
            "vsub.f32 s0, s0, s5\n",
            "vsub.f32 s1, s1, s5\n",
            "vsub.f32 s2, s2, s5\n",
            "vsub.f32 s3, s3, s5\n",
            "vcvt.s32.f32 s0, s0\n",
            "vcvt.s32.f32 s1, s1\n",
            "vcvt.s32.f32 s2, s2\n",
            "vcvt.s32.f32 s3, s3\n",
            "vmov {a}, {b}, s0, s1\n",
            "vmov {c}, {d}, s2, s3\n",
            "ssat {a}, #8, {a}\n",
            "ssat {b}, #8, {b}\n",
            "ssat {c}, #8, {c}\n",
            "ssat {d}, #8, {d}\n",
            "pkhbt {a}, {a}, {c}, lsl #16\n",
            "pkhbt {b}, {b}, {d}, lsl #16\n",
            "ssub16 {c}, {a}, {low}\n",
            "sel {a}, {a}, {low}\n",
            "ssub16 {d}, {b}, {low}\n",
            "sel {b}, {b}, {low}\n",
        )
    };
}

/// `groups` groups of four `f32` activations from `src`, each [`quantise`]d with `inv`, into
/// [`Dsp4x4`]'s layout: group `g` as `x0 x2 x1 x3` at `dst + 16·g`. Per group one `VLDM`, the
/// rounding's multiply, add and subtract and the conversion for each value (the same IEEE
/// operations as `quantise_saturating`, so the same integers: `VCVT` saturates and takes NaN
/// to 0 as Rust's `as` does), two `VMOV`s of two values, four `SSAT` to −128..=127, two
/// `PKHBT`, and per pair `SSUB16` + `SEL` to raise −128 to −127: 8 instructions a value, where
/// the compiler's loop took about 13.
///
/// # Safety
/// `src` has `4 · groups` readable values; `dst` room for `16 · groups` values from it,
/// 4-aligned.
#[cfg(target_feature = "fpregs")]
#[inline(never)]
unsafe fn pack_quantised(src: *const f32, groups: usize, inv: f32, dst: *mut i16) {
    if groups == 0 {
        return;
    }
    // The `sreg` class needs `vfp2`, which a single-precision FPU lacks: inv and the rounding
    // constant come in core registers, the S registers are named and clobbered.
    asm!(
        "vmov s4, s5, {inv}, {rounding}",
        "2:",
        quantised_group!(),
        "strd {a}, {b}, [{dst}], #32",
        "subs {n}, {n}, #1",
        "bne 2b",
        src = inout(reg) src => _,
        dst = inout(reg) dst => _,
        n = inout(reg) groups => _,
        // −127 in both halves.
        low = in(reg) 0xff81_ff81u32,
        a = out(reg) _,
        b = out(reg) _,
        c = out(reg) _,
        d = out(reg) _,
        inv = in(reg) inv.to_bits(),
        rounding = in(reg) super::int8::ROUNDING.to_bits(),
        out("s0") _,
        out("s1") _,
        out("s2") _,
        out("s3") _,
        out("s4") _,
        out("s5") _,
        options(nostack),
    );
}

/// Half of an int4 block's row for [`Dsp4Q4`]: 16 `f32` activations from `src`, each
/// [`quantise`]d with `inv` as [`pack_quantised`] does (the same instructions, so the same
/// integers), group `g` of four as `x0 x2 x1 x3` at `dst + 32·g` (the block's layout), and
/// the sum of the 16 integers (one `SMLAD` with `0x0001_0001` per packed word). About 8.5
/// instructions a value, where the compiler's loop with its stores took about 16.
///
/// # Safety
/// `src` has 16 readable values; `dst` room for values at `32·g + 0..4`, `g < 4`, 4-aligned.
#[cfg(target_feature = "fpregs")]
#[inline(never)]
unsafe fn pack_q4_half(src: *const f32, inv: f32, dst: *mut i16) -> i32 {
    let total: i32;
    asm!(
        "vmov s4, s5, {inv}, {rounding}",
        "mov {n}, #4",
        "mov {total}, #0",
        "2:",
        quantised_group!(),
        "smlad {total}, {a}, {ones}, {total}",
        "smlad {total}, {b}, {ones}, {total}",
        "strd {a}, {b}, [{dst}], #64",
        "subs {n}, {n}, #1",
        "bne 2b",
        src = inout(reg) src => _,
        dst = inout(reg) dst => _,
        n = out(reg) _,
        total = out(reg) total,
        // −127 in both halves; 1 in both halves.
        low = in(reg) 0xff81_ff81u32,
        ones = in(reg) 0x0001_0001u32,
        a = out(reg) _,
        b = out(reg) _,
        c = out(reg) _,
        d = out(reg) _,
        inv = in(reg) inv.to_bits(),
        rounding = in(reg) super::int8::ROUNDING.to_bits(),
        out("s0") _,
        out("s1") _,
        out("s2") _,
        out("s3") _,
        out("s4") _,
        out("s5") _,
        options(nostack),
    );
    total
}

/// Row `i` of a block of `MR` interleaved rows, the tiles' layout.
///
/// # Safety
/// `tile` has room for `MR · kp` values, 4-aligned; `i < MR`; `row.len() ≤ kp`, `kp` a
/// multiple of 4.
#[inline(always)]
unsafe fn pack_interleaved<const MR: usize>(row: &[f32], inv: f32, tile: *mut u8, i: usize, kp: usize) {
    let mut group = tile.cast::<i16>().add(4 * i);
    let chunks = row.chunks_exact(4);
    // The last partial group, then zero groups up to kp.
    let mut tail = chunks.remainder();
    let mut done = 0;
    // Four rows (Dsp4x4) on a core with an FPU: the whole groups in assembly.
    let in_assembly = cfg!(target_feature = "fpregs") && MR == 4;
    #[cfg(target_feature = "fpregs")]
    if in_assembly {
        let whole = row.len() / 4;
        pack_quantised(row.as_ptr(), whole, inv, group);
        group = group.add(4 * MR * whole);
        done = 4 * whole;
    }
    // Values x0 x1 x2 x3 stored as x0 x2 x1 x3.
    let put = |group: *mut i16, [a, b, c, d]: [i16; 4]| {
        *group = a;
        *group.add(1) = c;
        *group.add(2) = b;
        *group.add(3) = d;
    };
    if !in_assembly {
        for c in chunks {
            put(group, [c[0], c[1], c[2], c[3]].map(|v| quantise(v, inv) as i16));
            group = group.add(4 * MR);
            done += 4;
        }
    }
    while done < kp {
        put(group, core::array::from_fn(|j| tail.get(j).map_or(0, |&v| quantise(v, inv) as i16)));
        tail = &[];
        group = group.add(4 * MR);
        done += 4;
    }
}

/// Four values of `k`: `acc[i][j] += Σ q_i · w_j` over them, `q` at the step's `2·MR` words.
#[inline(always)]
unsafe fn step<const MR: usize, const NR: usize>(acc: &mut [[i32; NR]; MR], q: *const u32, ws: &[u32; NR]) {
    let even: [u32; NR] = core::array::from_fn(|j| sxtb16(ws[j]));
    let odd: [u32; NR] = core::array::from_fn(|j| sxtb16_ror8(ws[j]));
    for (i, row) in acc.iter_mut().enumerate() {
        // Row i's values as `x0 x2 | x1 x3`: two words.
        let x02 = *q.add(2 * i);
        let x13 = *q.add(2 * i + 1);
        for ((a, &e), &o) in row.iter_mut().zip(&even).zip(&odd) {
            *a = smlad(x13, o, smlad(x02, e, *a));
        }
    }
}

/// The four rows' words (r0, two `LDM`s of four) into r8–r12 and eight `SMLAD` with the
/// even (r7) and odd (lr) halves of a weight word into r3, r4, r5, r11: the tail of
/// [`column4!`] and each half word of [`q4_word!`].
macro_rules! rows4_smlad {
    () => {
        concat!(
            "ldm r0!, {{r8, r9, r10, r12}}\n",
            rows4_smlad!(r3, r4),
            "ldm r0!, {{r8, r9, r10, r12}}\n",
            rows4_smlad!(r5, r11),
        )
    };
    // Two rows' four `SMLAD`: their words in r8, r9 and r10, r12, the weight's halves in r7
    // and lr.
    ($a:tt, $b:tt) => {
        concat!(
            "smlad ",
            stringify!($a),
            ", r8, r7, ",
            stringify!($a),
            "\n",
            "smlad ",
            stringify!($a),
            ", r9, lr, ",
            stringify!($a),
            "\n",
            "smlad ",
            stringify!($b),
            ", r10, r7, ",
            stringify!($b),
            "\n",
            "smlad ",
            stringify!($b),
            ", r12, lr, ",
            stringify!($b),
            "\n",
        )
    };
}

/// One step of [`column4!`]'s loop, four values of `k`: the weight word (r1, post-increment)
/// extended into r7 (even) and lr (odd), the four rows' words (r0, two `LDM`s of four) into
/// r8–r12, eight `SMLAD` into r3, r4, r5, r11. Written once, used four times a loop. Not
/// `SXTB16`s then [`rows4_smlad!`]: the first `LDM` sits between the weight's load and its
/// extension, so that the extension does not wait for the load on the core.
macro_rules! rows4_step {
    () => {
        concat!(
            "ldr lr, [r1], #4\n",
            "ldm r0!, {{r8, r9, r10, r12}}\n",
            "sxtb16 r7, lr\n",
            "sxtb16 lr, lr, ror #8\n",
            rows4_smlad!(r3, r4),
            "ldm r0!, {{r8, r9, r10, r12}}\n",
            rows4_smlad!(r5, r11),
        )
    };
}

/// Column `j` of [`tile4x4`]: `$w` the weight row's offset in the settings, `$out` the
/// column's byte offset in `out`, then the labels of the loop, its three later entries and
/// the end. The sums in r3, r4, r5, r11 (rows 0–3), stored at `out + $out + 16·i`.
macro_rules! column4 {
    ($w:literal, $out:literal, $l:literal, $l2:literal, $l3:literal, $l4:literal, $end:literal) => {
        concat!(
            "ldr r2, [sp]\n",
            "ldr r0, [r2]\n",
            "ldr r1, [r2, #",
            $w,
            "]\n",
            "ldr r8, [r2, #20]\n",
            "ldr r10, [r2, #24]\n",
            "ldr r9, [r2, #28]\n",
            "ldr r12, [r2, #32]\n",
            "ldr r6, [r1, r12]\n",
            "lsr.w r6, r6, r10\n",
            "add r2, r1, r8\n",
            "movs r3, #0\n",
            "movs r4, #0\n",
            "movs r5, #0\n",
            "mov.w r11, #0\n",
            "tbb [pc, r9]\n",
            "1:\n",
            ".byte (",
            $l,
            "f - 1b) / 2, (",
            $l4,
            "f - 1b) / 2, (",
            $l3,
            "f - 1b) / 2, (",
            $l2,
            "f - 1b) / 2\n",
            $l,
            ":\n",
            rows4_step!(),
            $l2,
            ":\n",
            rows4_step!(),
            $l3,
            ":\n",
            rows4_step!(),
            $l4,
            ":\n",
            rows4_step!(),
            "cmp r1, r2\n",
            "blo ",
            $l,
            "b\n",
            "cbz r6, ",
            $end,
            "f\n",
            "sxtb16 r7, r6\n",
            "sxtb16 lr, r6, ror #8\n",
            rows4_smlad!(),
            $end,
            ":\n",
            "ldr r8, [sp, #4]\n",
            "str r3, [r8, #",
            $out,
            "]\n",
            "str r4, [r8, #",
            $out,
            " + 16]\n",
            "str r5, [r8, #",
            $out,
            " + 32]\n",
            "str r11, [r8, #",
            $out,
            " + 48]\n",
        )
    };
}

/// One column of [`rows4_requantised`] and [`rows4_dequantised`], from label 20 (the column's
/// start) to label 25 (its sums ready): the settings at r2 (the packed rows, the whole words'
/// bytes, the tail's shift, the loop's entry, the tail word's offset, as [`tile4x4`] works
/// them out), the weight row at r1, the four rows' sums into r3, r4, r5, r11; the loop entered
/// by `TBB` on `whole mod 4`, then the tail word's step unless it is zero ([`column4!`]'s steps).
macro_rules! rows4_column {
    () => {
        concat!(
            "20:\n",
            "ldr r0, [r2]\n",
            "ldr r8, [r2, #4]\n",
            "ldr r10, [r2, #8]\n",
            "ldr r9, [r2, #12]\n",
            "ldr r12, [r2, #16]\n",
            "ldr r6, [r1, r12]\n",
            "lsr.w r6, r6, r10\n",
            "add r2, r1, r8\n",
            "movs r3, #0\n",
            "movs r4, #0\n",
            "movs r5, #0\n",
            "mov.w r11, #0\n",
            "tbb [pc, r9]\n",
            "1:\n",
            ".byte (21f - 1b) / 2, (24f - 1b) / 2, (23f - 1b) / 2, (22f - 1b) / 2\n",
            "21:\n",
            rows4_step!(),
            "22:\n",
            rows4_step!(),
            "23:\n",
            rows4_step!(),
            "24:\n",
            rows4_step!(),
            "cmp r1, r2\n",
            "blo 21b\n",
            "cbz r6, 25f\n",
            "sxtb16 r7, r6\n",
            "sxtb16 lr, r6, ror #8\n",
            rows4_smlad!(),
            "25:\n",
        )
    };
}

/// One output of [`rows4_requantised`]: the sum in `$sum` by the multiplier (r9), the high
/// word shifted by the high shift + 1 (r12) with `LSRS`, whose carry is the bit the rounding
/// adds, `USAT` to 32767, the sum's sign put back (the scale is positive), stored at `$at`.
/// `arm_thumb2::requantise_4x4`'s steps, the sum already in a register: 9 instructions.
#[cfg(feature = "fixed-point")]
macro_rules! requantised_output {
    ($sum:tt, $at:literal) => {
        concat!(
            "eor r6, ",
            stringify!($sum),
            ", ",
            stringify!($sum),
            ", asr #31\n",
            "sub r6, r6, ",
            stringify!($sum),
            ", asr #31\n",
            "umull r6, r7, r6, r9\n",
            "lsrs r7, r7, r12\n",
            "adc r7, r7, #0\n",
            "usat r7, #15, r7\n",
            "eor r7, r7, ",
            stringify!($sum),
            ", asr #31\n",
            "sub r7, r7, ",
            stringify!($sum),
            ", asr #31\n",
            "strh r7, ",
            $at,
            "\n",
        )
    };
}

/// The integer path's products of four packed activation rows (as [`tile4x4`] reads them)
/// against `columns` weight rows of `k ≥ 4` values (row `o` at `w + o·k`), each column's four
/// sums requantised in registers into `i16` activations: `y[i·ys + o] =
/// Requant::new(scales[o], d).apply_high(sum, 32767)`, the same integers as [`tile4x4`]
/// followed by `arm_thumb2::requantise_4x4`. One call for all the columns of a row block:
/// per column [`tile4x4`]'s loop and tail, then the scale taken apart (12 instructions) and
/// four outputs of 9, straight from the sums' registers. Before, a tile call, a
/// requantisation call and the driver's loop per four columns, and the sums stored and loaded
/// again: about 23 instructions a column more (M4F fixed point: 183.8 → 175.9 M a segment).
///
/// Returns the number of columns done: all, or those before the first whose scale is off the
/// fast path of `Requant::new` (a normal `f32` whose shift `150 − biased exponent − d` is in
/// `25..=63`) or negative, which the caller then does in Rust (that column's outputs were not
/// stored).
///
/// # Safety
/// As [`tile4x4`] for each of the `columns` weight rows (`k ≥ 4`); `y` is valid for writes at
/// `i·ys + o` for `i < 4`, `o < columns`; `scales` holds `columns` values; `d` in `−129..=86`.
#[cfg(feature = "fixed-point")]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) unsafe fn rows4_requantised(
    q: *const u32,
    w: *const i8,
    k: usize,
    columns: usize,
    scales: *const f32,
    d: i32,
    y: *mut i16,
    ys: usize,
) -> usize {
    if columns == 0 || k < 4 {
        return 0;
    }
    // As in `tile4x4`: the loop's entry, the tail word's offset and shift; then the step from
    // one weight row's last whole word to the next row, the next scale and output column
    // (advanced by the assembly as each column is stored), the rows' stride in bytes, `87 −
    // d` for the scale's check and the weight rows' end.
    let whole = k / 4;
    let mut settings: [u32; 11] = [
        q as u32,
        (whole * 4) as u32,
        (8 * (4 - k % 4)) as u32,
        (whole % 4) as u32,
        (k - 4) as u32,
        (k % 4) as u32,
        scales as u32,
        y as u32,
        (2 * ys) as u32,
        (87 - d) as u32,
        w.add(columns * k) as u32,
    ];
    // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved on the
    // stack. Under them the settings' address, read back after each column's loop (every
    // register is in use in it).
    asm!(
        "push {{r6, r7}}",
        "push {{r2, r3}}",
        rows4_column!(),
        // The column's scale: t = biased exponent − (87 − d) = 63 − shift, in 0..=38? The
        // sign bit is taken in too: a negative scale makes t at least 256 − 216 = 40 and
        // stops the call (the Rust path takes it; every converter's scale is positive).
        "ldr r2, [sp]",
        "ldr r8, [r2, #24]",
        "ldr r0, [r2, #36]",
        "ldr r10, [r8], #4",
        "lsr r12, r10, #23",
        "sub r12, r12, r0",
        "cmp r12, #38",
        "bhi 29f",
        "str r8, [r2, #24]",
        // The next weight row.
        "ldr r0, [r2, #20]",
        "add r1, r1, r0",
        // The multiplier in r9 (shift ≤ 33, t ≥ 30: m·2^(33 − shift), else m) and the high
        // shift + 1 in r12 (1, else shift − 32 = 31 − t).
        "ubfx r9, r10, #0, #23",
        "orr r9, r9, #0x800000",
        "subs lr, r12, #30",
        "itte ge",
        "lslge r9, r9, lr",
        "movge r12, #1",
        "rsblt r12, r12, #31",
        // The output column (then advanced) and the rows' stride.
        "ldr r0, [r2, #28]",
        "ldr r8, [r2, #32]",
        "add r6, r0, #2",
        "str r6, [r2, #28]",
        requantised_output!(r3, "[r0]"),
        requantised_output!(r4, "[r0, r8]"),
        "add r0, r0, r8, lsl #1",
        requantised_output!(r5, "[r0]"),
        requantised_output!(r11, "[r0, r8]"),
        "ldr r0, [r2, #40]",
        "cmp r1, r0",
        "blo 20b",
        "29:",
        "add sp, #8",
        "pop {{r6, r7}}",
        inout("r1") w => _,
        inout("r2") settings.as_mut_ptr() => _,
        out("r0") _,
        out("r3") _,
        out("r4") _,
        out("r5") _,
        out("r8") _,
        out("r9") _,
        out("r10") _,
        out("r11") _,
        out("r12") _,
        out("lr") _,
    );
    // The scale pointer moved past every column stored.
    (settings[6] as usize - scales as usize) / 4
}

/// The int8 products of four packed activation rows (as [`tile4x4`] reads them) against
/// `columns` weight rows of `k ≥ 4` values (`ws` apart), each column's four sums dequantised
/// in registers (step 3, `int8::dequantise`: `(sx[i] · sw[j]) · f32(sum)`, the same operations
/// in the same order as `arm_fpu::dequantise_4x4`, so the same bits). One call for every whole
/// block of four weight rows of a row tile: per column [`tile4x4`]'s loop and tail, then two
/// `VMOV`s of the four sums, four conversions, eight multiplies and four stores. Before, a
/// tile call, the sums stored, the driver's loop and a dequantisation per four columns: about
/// 31 instructions a column more (M4F int8: 180.9 → 170.1 M a segment).
/// Returns the number of columns done: `columns`, or 0 for `k < 4` (the driver does them).
///
/// # Safety
/// As [`tile4x4`] for each of the `columns` weight rows; `sx` holds four values and `sw`
/// `columns`; `y` is valid for writes at `i·ys + j` for `i < 4`, `j < columns`.
#[cfg(target_feature = "fpregs")]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) unsafe fn rows4_dequantised(
    q: *const u32,
    w: *const i8,
    ws: usize,
    k: usize,
    columns: usize,
    sx: *const f32,
    sw: *const f32,
    y: *mut f32,
    ys: usize,
) -> usize {
    if columns == 0 || k < 4 {
        return 0;
    }
    // As in `tile4x4`: the loop's entry, the tail word's offset and shift; then the step from
    // one weight row's last whole word to the next row, the next weight scale and output
    // column (advanced as each column is stored), the rows' stride in bytes and the weight
    // rows' end.
    let whole = k / 4;
    let settings: [u32; 10] = [
        q as u32,
        (whole * 4) as u32,
        (8 * (4 - k % 4)) as u32,
        (whole % 4) as u32,
        (k - 4) as u32,
        (ws - whole * 4) as u32,
        sw as u32,
        y as u32,
        (4 * ys) as u32,
        w.add(columns * ws) as u32,
    ];
    // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved on the
    // stack. Under them the settings' address, read back after each column's loop (every core
    // register is in use in it). The rows' scales stay in s8–s11.
    asm!(
        "push {{r6, r7}}",
        "push {{r2, r3}}",
        "vldmia r0, {{s8-s11}}",
        rows4_column!(),
        "ldr r2, [sp]",
        // The next weight row; this column's weight scale into s0.
        "ldr r0, [r2, #20]",
        "add r1, r1, r0",
        "ldr r8, [r2, #24]",
        "vldmia r8!, {{s0}}",
        "str r8, [r2, #24]",
        // The output column (then advanced) and the rows' stride.
        "ldr r0, [r2, #28]",
        "ldr r8, [r2, #32]",
        "add r6, r0, #4",
        "str r6, [r2, #28]",
        "vmov s4, s5, r3, r4",
        "vmov s6, s7, r5, r11",
        "vcvt.f32.s32 s4, s4",
        "vcvt.f32.s32 s5, s5",
        "vcvt.f32.s32 s6, s6",
        "vcvt.f32.s32 s7, s7",
        "vmul.f32 s12, s8, s0",
        "vmul.f32 s13, s9, s0",
        "vmul.f32 s14, s10, s0",
        "vmul.f32 s15, s11, s0",
        "vmul.f32 s4, s12, s4",
        "vmul.f32 s5, s13, s5",
        "vmul.f32 s6, s14, s6",
        "vmul.f32 s7, s15, s7",
        "vstr s4, [r0]",
        "add r0, r0, r8",
        "vstr s5, [r0]",
        "add r0, r0, r8",
        "vstr s6, [r0]",
        "add r0, r0, r8",
        "vstr s7, [r0]",
        "ldr r0, [r2, #36]",
        "cmp r1, r0",
        "blo 20b",
        "add sp, #8",
        "pop {{r6, r7}}",
        inout("r0") sx => _,
        inout("r1") w => _,
        inout("r2") settings.as_ptr() => _,
        out("r3") _,
        out("r4") _,
        out("r5") _,
        out("r8") _,
        out("r9") _,
        out("r10") _,
        out("r11") _,
        out("r12") _,
        out("lr") _,
        out("s0") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
        out("s8") _, out("s9") _, out("s10") _, out("s11") _,
        out("s12") _, out("s13") _, out("s14") _, out("s15") _,
    );
    columns
}

/// One step of [`row1x4`]'s loop, four values of `k`: the row's two words (r0, `LDRD`) into
/// r12 and lr, then for each weight row (r1–r4, post-increment) its word in r6, extended into
/// r7 (even) and r6 (odd), two `SMLAD` into r8–r11. Written once, used twice a loop.
macro_rules! row1x4_step {
    () => {
        concat!(
            "ldrd r12, lr, [r0], #8\n",
            row1x4_step!(r1, r8),
            row1x4_step!(r2, r9),
            row1x4_step!(r3, r10),
            row1x4_step!(r4, r11),
        )
    };
    ($w:tt, $acc:tt) => {
        concat!(
            "ldr r6, [",
            stringify!($w),
            "], #4\n",
            "sxtb16 r7, r6\n",
            "sxtb16 r6, r6, ror #8\n",
            "smlad ",
            stringify!($acc),
            ", r12, r7, ",
            stringify!($acc),
            "\n",
            "smlad ",
            stringify!($acc),
            ", lr, r6, ",
            stringify!($acc),
            "\n",
        )
    };
}

/// Four activation rows × four weight rows, the inner loop written out (CMSIS-NN's shape, turned
/// around): per weight row and four values of `k`, one weight word extended twice, the four
/// activation rows' words in two `LDM`s, eight `SMLAD`; four such steps a loop, 0.84
/// instructions per multiply-accumulate (the compiler, short of registers, spilled to 1.8).
/// The four weight rows run one after the other over the same packed rows ([`tile4x4`]), so that
/// the tile's fixed costs (the pointers, the scales) are paid once per 16 outputs.
pub struct Dsp4x4;

impl Int8Tile for Dsp4x4 {
    const MR: usize = 4;
    const NR: usize = 4;
    const BYTES: usize = 2;

    #[inline(always)]
    unsafe fn pack(row: &[f32], inv: f32, tile: *mut u8, i: usize, kp: usize) {
        pack_interleaved::<4>(row, inv, tile, i, kp);
    }

    #[inline(always)]
    unsafe fn tile(_: &[i32; 4], q: *const u8, _kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        let mut out = core::mem::MaybeUninit::<[[i32; 4]; 4]>::uninit();
        tile4x4(q.cast::<u32>(), w, k, out.as_mut_ptr().cast::<i32>());
        out.assume_init()
    }

    #[cfg(target_feature = "fpregs")]
    #[inline(always)]
    unsafe fn dequantise_tile(sums: &[[i32; 4]; 4], sx: *const f32, sw: &[f32; 4], y: *mut f32, ys: usize) -> bool {
        super::arm_fpu::dequantise_4x4(sums.as_ptr().cast(), sx, sw.as_ptr(), y, ys);
        true
    }

    #[cfg(target_feature = "fpregs")]
    #[inline(always)]
    unsafe fn row_tile_columns(
        q: *const u8,
        w: *const i8,
        ws: usize,
        k: usize,
        columns: usize,
        sx: *const f32,
        sw: *const f32,
        y: *mut f32,
        ys: usize,
    ) -> usize {
        rows4_dequantised(q.cast(), w, ws, k, columns, sx, sw, y, ys)
    }
}

/// [`Dsp4x4`]'s tile into `out` (16 values, row by row): the four weight rows' columns one
/// after the other in one block of assembly ([`column4!`]), their common settings (the
/// packed rows, the whole words, the tail's shift, the loop's entry) worked out once. Not
/// inlined: one copy for the int8 products and the fixed-point path (flash). The loop's entry
/// is a `TBB` on `whole mod 4`. Before, a call per column (each with its own settings, entry
/// by compare-and-branch, and return): 5.2 M instructions a segment more with int8 weights on
/// the M4F (192.4 M against 187.2 M), 5.3 M more in fixed point (259.0 M against 253.7 M).
///
/// # Safety
/// As [`Int8Tile::tile`]; `out` has 16 writable values.
#[inline(never)]
pub(crate) unsafe fn tile4x4(q: *const u32, w: &[*const i8; 4], k: usize, out: *mut i32) {
    // Rows shorter than a word (a degenerate matrix): each weight row copied into a word
    // padded with zeros, which meet the activations' zero padding.
    let mut words = [[0i8; 4]; 4];
    let (w, k) = if k < 4 {
        for (word, &wj) in words.iter_mut().zip(w) {
            core::ptr::copy_nonoverlapping(wj, word.as_mut_ptr(), k);
        }
        (core::array::from_fn(|j| words[j].as_ptr()), 4)
    } else {
        (*w, k)
    };
    // What every column reads (offsets in `column4!`): the packed rows, the weight rows, the
    // bytes of whole words, the tail's shift, the loop's entry, the tail word's offset.
    // - The loop takes four words a pass; the whole words (k ≥ 4: one or more) enter it so
    //   that the first pass takes `words mod 4` of them (all four when 0).
    // - The tail is the word ending at `k` shifted right by 8 · (4 − k mod 4): its last 1 to
    //   3 values, read in place, or 0 for a shift of 32 (no tail; `LSR` by 32 gives 0), and
    //   then its step is skipped (a zero word adds nothing).
    let whole = k / 4;
    let settings: [u32; 9] = [
        q as u32,
        w[0] as u32,
        w[1] as u32,
        w[2] as u32,
        w[3] as u32,
        (whole * 4) as u32,
        (8 * (4 - k % 4)) as u32,
        (whole % 4) as u32,
        (k - 4) as u32,
    ];
    // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved on the
    // stack, r6 holds the tail and r7 a weight word's even half. Under them the settings' and
    // `out`'s addresses, read back before each column (every register is in use in the loop).
    // Weight words are read unaligned (`LDR` allows it); `q` is word-aligned (the pack buffer).
    asm!(
        "push {{r6, r7}}",
        "push {{r2, r3}}",
        column4!(4, 0, 12, 132, 133, 134, 15),
        column4!(8, 4, 22, 232, 233, 234, 25),
        column4!(12, 8, 32, 332, 333, 334, 35),
        column4!(16, 12, 42, 432, 433, 434, 45),
        "add sp, #8",
        "pop {{r6, r7}}",
        inout("r2") settings.as_ptr() => _,
        inout("r3") out => _,
        out("r0") _,
        out("r1") _,
        out("r4") _,
        out("r5") _,
        out("r8") _,
        out("r9") _,
        out("r10") _,
        out("r11") _,
        out("r12") _,
        out("lr") _,
    );
}

/// One activation row × four weight rows (a work block of 1, the smallest arena), the inner
/// loop written out: per four values of `k`, the row's two words in one `LDRD`, a word of each
/// weight row extended twice, eight `SMLAD`; two such steps a loop, 1.375 instructions per
/// multiply-accumulate (each weight is extended for one row only).
pub struct Dsp1x4;

impl Int8Tile for Dsp1x4 {
    const MR: usize = 1;
    const NR: usize = 4;
    const BYTES: usize = 2;

    #[inline(always)]
    unsafe fn pack(row: &[f32], inv: f32, tile: *mut u8, i: usize, kp: usize) {
        pack_interleaved::<1>(row, inv, tile, i, kp);
    }

    #[inline(always)]
    unsafe fn tile(_: &[i32; 4], q: *const u8, _kp: usize, w: &[*const i8; 4], k: usize) -> [[i32; 4]; 4] {
        [row1x4(q.cast::<u32>(), w, k), [0; 4], [0; 4], [0; 4]]
    }
}

/// `Σ q · w_j` over `k` for the packed row at `q` and four weight rows.
///
/// # Safety
/// As [`Int8Tile::tile`]: `q` word-aligned with at least `k` values (rounded up to 8), each
/// `w[j]` with `k` readable values.
#[inline(always)]
unsafe fn row1x4(mut q: *const u32, w: &[*const i8; 4], k: usize) -> [i32; 4] {
    let pairs = k / 8;
    let mut acc = [0i32; 4];
    if pairs > 0 {
        let end = w[0].add(pairs * 8);
        // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved on the
        // stack and restored around the loop, and hold a weight word and its even half.
        asm!(
            "push {{r6, r7}}",
            "2:",
            row1x4_step!(),
            row1x4_step!(),
            "cmp r1, r5",
            "blo 2b",
            "pop {{r6, r7}}",
            inout("r0") q,
            inout("r1") w[0] => _,
            inout("r2") w[1] => _,
            inout("r3") w[2] => _,
            inout("r4") w[3] => _,
            in("r5") end,
            inout("r8") acc[0],
            inout("r9") acc[1],
            inout("r10") acc[2],
            inout("r11") acc[3],
            out("r12") _,
            out("lr") _,
        );
    }
    let mut t = pairs * 8;
    let mut a = [acc];
    while t < k {
        let ws: [u32; 4] = core::array::from_fn(|j| tail_word(w[j], t, k));
        step::<1, 4>(&mut a, q, &ws);
        q = q.add(2);
        t += 4;
    }
    a[0]
}

/// The weight word at `t` of a row of `k` values (`t < k`), zero past `k`: read in place, or,
/// for the last partial word, the word ending at `k` shifted down (no read past `k`).
///
/// # Safety
/// `w` has `k` readable values.
#[inline(always)]
unsafe fn tail_word(w: *const i8, t: usize, k: usize) -> u32 {
    if t + 4 <= k {
        load_word(w.add(t))
    } else if k >= 4 {
        load_word(w.add(k - 4)) >> (8 * (t + 4 - k))
    } else {
        let mut b = [0u8; 4];
        core::ptr::copy_nonoverlapping(w.add(t).cast::<u8>(), b.as_mut_ptr(), k - t);
        u32::from_le_bytes(b)
    }
}

/// One weight word of [`Dsp4Q4`]'s block, eight values of `k`: the word (r1, post-increment)
/// in r2; its low nibbles masked (r6 = `0x000F000F`) into r7 (values 0 and 2 of the word's
/// four) and lr (1 and 3), the four rows' words (r0, two `LDM`s) into r8–r12, eight `SMLAD`
/// into r3, r4, r5, r11; then the high nibbles (values 16 on) the same way.
macro_rules! q4_word {
    () => {
        concat!(
            "ldr r2, [r1], #4\n",
            "and r7, r6, r2\n",
            "and lr, r6, r2, lsr #8\n",
            q4_word!(half),
            "and r7, r6, r2, lsr #4\n",
            "and lr, r6, r2, lsr #12\n",
            q4_word!(half),
        )
    };
    (half) => {
        rows4_smlad!()
    };
}

/// [`Dsp4Q4`]'s loop over the blocks of a weight row (r1 to the row's end in s14), the running
/// sums in s0–s3: per block the sums' starting values (r0, `LDM`: `−8 · Σ q` of each row), its
/// four weight words ([`q4_word`]), then the four sums converted and added to s0–s3 times the
/// block's step (the step pointer in s13, post-incremented: `VCVTB`, then `VMLA`, a product
/// rounded, then a sum rounded, as `int4::add_block`).
macro_rules! q4_blocks {
    () => {
        concat!(
            "2:\n",
            "ldm r0!, {{r3, r4, r5, r11}}\n",
            q4_word!(),
            q4_word!(),
            q4_word!(),
            q4_word!(),
            "vmov s4, r3\n",
            "vmov s5, r4\n",
            "vmov s6, r5\n",
            "vmov s7, r11\n",
            "vmov r2, s13\n",
            "ldrh r7, [r2], #2\n",
            "vmov s13, r2\n",
            "vmov s8, r7\n",
            "vcvtb.f32.f16 s8, s8\n",
            "vcvt.f32.s32 s4, s4\n",
            "vcvt.f32.s32 s5, s5\n",
            "vcvt.f32.s32 s6, s6\n",
            "vcvt.f32.s32 s7, s7\n",
            "vmla.f32 s0, s4, s8\n",
            "vmla.f32 s1, s5, s8\n",
            "vmla.f32 s2, s6, s8\n",
            "vmla.f32 s3, s7, s8\n",
            "vmov r2, s14\n",
            "cmp r1, r2\n",
            "bne 2b\n",
        )
    };
}

/// The int4 product's tile (`super::int4`): four activation rows against one block of 32
/// weights, read in place. The nibbles are not sign-extended but masked: `n` (0 to 15) in two
/// 16-bit halves is one `AND` per pair, and `Σ q · (n − 8) = Σ q · n − 8 · Σ q`, the second
/// term computed when the rows are packed and loaded as the sums' starting values. Per weight
/// word (eight values), one load, four masks, four `LDM`s of the rows and sixteen `SMLAD`: 0.78
/// instructions per multiply-accumulate.
///
/// A packed block (272 bytes): the four rows' `−8 · Σ q` (`i32`), then for each weight word
/// `w` (values `4w .. 4w + 3` in its low nibbles, `16 + 4w ..` in its high ones) the four
/// rows' `i16` values `4w, 4w + 2, 4w + 1, 4w + 3`, then the four rows' values `16 + 4w, …`
/// in the same order.
pub struct Dsp4Q4;

impl super::int4::Q4Tile for Dsp4Q4 {
    const MR: usize = 4;
    const BLOCK_BYTES: usize = 16 + 4 * 64;

    #[inline(always)]
    unsafe fn pack(values: &[f32], inv: f32, block: *mut u8, i: usize) {
        // A whole block on a core with an FPU: each half of the row in assembly.
        #[cfg(target_feature = "fpregs")]
        if values.len() == 32 {
            let words = block.add(16).cast::<i16>().add(i * 4);
            let total =
                pack_q4_half(values.as_ptr(), inv, words) + pack_q4_half(values.as_ptr().add(16), inv, words.add(16));
            *block.cast::<i32>().add(i) = -8 * total;
            return;
        }
        let mut q = [0i16; 32];
        let mut total = 0i32;
        for (q, &v) in q.iter_mut().zip(values) {
            let v = quantise(v, inv);
            total += v;
            *q = v as i16;
        }
        *block.cast::<i32>().add(i) = -8 * total;
        let words = block.add(16).cast::<i16>();
        for w in 0..4 {
            for (half, base) in [(0, 4 * w), (1, 16 + 4 * w)] {
                let at = words.add(w * 32 + half * 16 + i * 4);
                *at = q[base];
                *at.add(1) = q[base + 2];
                *at.add(2) = q[base + 1];
                *at.add(3) = q[base + 3];
            }
        }
    }

    /// The blocks of a weight row in one loop, step 3 in the FPU's registers: the running sums
    /// in s0–s3 (loaded from and stored to `a`), each block's four sums converted and multiplied
    /// by its step (`VCVTB`, then `VMLA`: a product rounded, then a sum rounded, as
    /// `int4::add_block`), the step pointer, the end and `a`'s address waiting in s12–s14 while
    /// the products take every core register. 121 instructions a block, against 131 with a
    /// call of [`Self::block`] per block and the sums scaled by the compiler. For edge tiles
    /// and rows in several chunks; [`Self::outputs`] otherwise.
    #[inline(always)]
    unsafe fn row(q: *const u8, w: *const u8, scales: *const f16, blocks: usize, a: &mut [f32; 4]) {
        // The FPU registers are saved and restored around the loop (Rust names no `s` register
        // on these targets: its `sreg` class needs `vfp2`, which implies double precision, and
        // `clobber_abi("C")` names d16–d31, which these cores lack); the running sums travel
        // through `a` in memory.
        asm!(
            "push {{r6, r7}}",
            "vpush {{s0-s14}}",
            "vldm r4, {{s0-s3}}",
            "vmov s12, r4",
            "vmov s13, r2",
            "vmov s14, r3",
            "mov.w r6, #0x000F000F",
            q4_blocks!(),
            "vmov r4, s12",
            "vstm r4, {{s0-s3}}",
            "vpop {{s0-s14}}",
            "pop {{r6, r7}}",
            inout("r0") q => _,
            inout("r1") w => _,
            inout("r2") scales => _,
            inout("r3") w.add(blocks * 16) => _,
            inout("r4") a.as_mut_ptr() => _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }

    /// Every output of the tile in one loop around [`Self::row`]'s: per weight row the sums
    /// start at zero, the packed rows again at `q`, and the four results are scaled by the rows'
    /// `sx` (in s16–s19) and stored; the weights and steps of consecutive rows are consecutive.
    /// About 25 instructions an output around its blocks, where the compiler's loop around
    /// [`Self::row`] took about 90 (a row of the built-in model has 2 to 8 blocks).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn outputs(
        q: *const u8,
        w: *const u8,
        scales: *const f16,
        blocks: usize,
        out: usize,
        sx: &[f32; 4],
        y: *mut f32,
        ys: usize,
    ) {
        // s9: y at output j (row 0), s10: its end, s11: the rows' stride in bytes, s12: a weight
        // row's bytes, s13: the step pointer, s14: the current row's end, s15: q.
        asm!(
            "push {{r6, r7}}",
            "vpush {{s0-s19}}",
            "vldm r5, {{s16-s19}}",
            "vmov s15, r0",
            "vmov s13, r2",
            "vmov s9, r4",
            "vmov s10, r3",
            "vmov s11, r8",
            "vmov s12, r9",
            "mov.w r6, #0x000F000F",
            "3:",
            "vmov r0, s15",
            "vmov r2, s12",
            "add r2, r1, r2",
            "vmov s14, r2",
            "movs r2, #0",
            "vmov s0, s1, r2, r2",
            "vmov s2, s3, r2, r2",
            q4_blocks!(),
            "vmul.f32 s0, s0, s16",
            "vmul.f32 s1, s1, s17",
            "vmul.f32 s2, s2, s18",
            "vmul.f32 s3, s3, s19",
            "vmov r2, s9",
            "vmov r3, s11",
            "vstr s0, [r2]",
            "add r4, r2, r3",
            "vstr s1, [r4]",
            "add r4, r4, r3",
            "vstr s2, [r4]",
            "add r4, r4, r3",
            "vstr s3, [r4]",
            "adds r2, #4",
            "vmov s9, r2",
            "vmov r3, s10",
            "cmp r2, r3",
            "bne 3b",
            "vpop {{s0-s19}}",
            "pop {{r6, r7}}",
            inout("r0") q => _,
            inout("r1") w => _,
            inout("r2") scales => _,
            inout("r3") y.add(out) => _,
            inout("r4") y => _,
            inout("r5") sx.as_ptr() => _,
            inout("r8") ys * 4 => _,
            inout("r9") blocks * 16 => _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }

    #[inline(always)]
    unsafe fn block(q: *const u8, w: *const u8) -> [i32; 4] {
        let mut s = [0i32; 4];
        // r6 and r7 cannot be operands (LLVM's base and frame pointers): both are saved on the
        // stack, r6 holds the mask and r7 a word's even values.
        asm!(
            "push {{r6, r7}}",
            "mov.w r6, #0x000F000F",
            "ldm r0!, {{r3, r4, r5, r11}}",
            q4_word!(),
            q4_word!(),
            q4_word!(),
            q4_word!(),
            "pop {{r6, r7}}",
            inout("r0") q => _,
            inout("r1") w => _,
            out("r2") _,
            out("r3") s[0],
            out("r4") s[1],
            out("r5") s[2],
            out("r11") s[3],
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r12") _,
            out("lr") _,
        );
        s
    }
}
