//! Cortex-M FPU operations (FPv4-SP of the M4F and later): the lanes of the portable dot
//! product (`super::dot`) as written-out loops for f32 and f16 weights, one weight row at a
//! time or two ([`matmul`]), the half-precision conversion, and step 3 of the int8 tile
//! ([`dequantise_4x4`]).
//!
//! Rust's `sreg` register class needs the `vfp2` feature, which a single-precision FPU lacks,
//! so the loops name their registers and declare them clobbered, and values cross into Rust
//! through memory or core registers.

use super::{Dims, Element, ElementKind};

/// `acc[i] += w[8c + i] · x[8c + i]` for every chunk `c` of eight (each product rounded, then
/// added: `VMLA.F32` is not fused), the lanes of `super::dot` in its order, so its bits. Returns
/// false, having done nothing, for bf16 weights.
///
/// Per eight multiply-accumulates: f32 two `VLDM` and eight `VMLA`, f16 one `VLDM` of the
/// packed halves and eight `VCVTB`/`VCVTT` more; with the loop's two, 12 and 20 instructions,
/// where the compiled lanes took about 38 and 72 (the software half conversion).
#[inline(always)]
pub fn dot_lanes<E: Element>(w: &[E], x: &[f32], acc: &mut [f32; 8]) -> bool {
    let chunks = w.len().min(x.len()) / 8;
    if chunks == 0 {
        return true;
    }
    let (wp, xp, ap) = (w.as_ptr().cast::<u8>(), x.as_ptr(), acc.as_mut_ptr());
    match E::KIND {
        // SAFETY: `chunks · 8` values of `w` and `x` are read (both slices hold them), `acc`'s
        // eight written; f32 slices are 4-byte aligned; the named registers are clobbered.
        ElementKind::F32 => unsafe {
            core::arch::asm!(
                "vldmia {a}, {{s16-s23}}",
                "2:",
                "vldmia {w}!, {{s8-s15}}",
                "vldmia {x}!, {{s0-s7}}",
                "vmla.f32 s16, s0, s8",
                "vmla.f32 s17, s1, s9",
                "vmla.f32 s18, s2, s10",
                "vmla.f32 s19, s3, s11",
                "vmla.f32 s20, s4, s12",
                "vmla.f32 s21, s5, s13",
                "vmla.f32 s22, s6, s14",
                "vmla.f32 s23, s7, s15",
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstmia {a}, {{s16-s23}}",
                w = inout(reg) wp => _,
                x = inout(reg) xp => _,
                n = inout(reg) chunks => _,
                a = in(reg) ap,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
                out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
                out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                options(nostack),
            );
            true
        },
        ElementKind::F16 if (wp as usize).is_multiple_of(4) => unsafe {
            // SAFETY: as above; the halves are read as 4-byte words from a 4-byte boundary.
            // Half 2i is the low half of word i (little-endian): VCVTB, 2i + 1 VCVTT.
            core::arch::asm!(
                "vldmia {a}, {{s16-s23}}",
                "2:",
                "vldmia {w}!, {{s24-s27}}",
                "vldmia {x}!, {{s0-s7}}",
                "vcvtb.f32.f16 s8, s24",
                "vcvtt.f32.f16 s9, s24",
                "vcvtb.f32.f16 s10, s25",
                "vcvtt.f32.f16 s11, s25",
                "vcvtb.f32.f16 s12, s26",
                "vcvtt.f32.f16 s13, s26",
                "vcvtb.f32.f16 s14, s27",
                "vcvtt.f32.f16 s15, s27",
                "vmla.f32 s16, s0, s8",
                "vmla.f32 s17, s1, s9",
                "vmla.f32 s18, s2, s10",
                "vmla.f32 s19, s3, s11",
                "vmla.f32 s20, s4, s12",
                "vmla.f32 s21, s5, s13",
                "vmla.f32 s22, s6, s14",
                "vmla.f32 s23, s7, s15",
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstmia {a}, {{s16-s23}}",
                w = inout(reg) wp => _,
                x = inout(reg) xp => _,
                n = inout(reg) chunks => _,
                a = in(reg) ap,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
                out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
                out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _,
                options(nostack),
            );
            true
        },
        ElementKind::F16 => unsafe {
            // SAFETY: as above. A row of an odd length leaves the next one 2 bytes off a word
            // boundary (the token mix's rows of 81): `LDR` takes any address on ARMv7-M and
            // ARMv8-M (unless the firmware sets `CCR.UNALIGN_TRP`), `VLDM` does not.
            core::arch::asm!(
                "vldmia {a}, {{s16-s23}}",
                "2:",
                "ldr {t0}, [{w}]",
                "ldr {t1}, [{w}, #4]",
                "vmov s24, s25, {t0}, {t1}",
                "ldr {t0}, [{w}, #8]",
                "ldr {t1}, [{w}, #12]",
                "vmov s26, s27, {t0}, {t1}",
                "adds {w}, #16",
                "vldmia {x}!, {{s0-s7}}",
                "vcvtb.f32.f16 s8, s24",
                "vcvtt.f32.f16 s9, s24",
                "vcvtb.f32.f16 s10, s25",
                "vcvtt.f32.f16 s11, s25",
                "vcvtb.f32.f16 s12, s26",
                "vcvtt.f32.f16 s13, s26",
                "vcvtb.f32.f16 s14, s27",
                "vcvtt.f32.f16 s15, s27",
                "vmla.f32 s16, s0, s8",
                "vmla.f32 s17, s1, s9",
                "vmla.f32 s18, s2, s10",
                "vmla.f32 s19, s3, s11",
                "vmla.f32 s20, s4, s12",
                "vmla.f32 s21, s5, s13",
                "vmla.f32 s22, s6, s14",
                "vmla.f32 s23, s7, s15",
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstmia {a}, {{s16-s23}}",
                w = inout(reg) wp => _,
                x = inout(reg) xp => _,
                n = inout(reg) chunks => _,
                a = in(reg) ap,
                t0 = out(reg) _,
                t1 = out(reg) _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
                out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
                out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _,
                options(nostack),
            );
            true
        },
        _ => false,
    }
}

/// `Y = X · Wᵀ` for f32 and f16 weights, two weight rows at a time: each activation row's
/// eight values are loaded once for both, and the driver's work per output (slices, the lanes'
/// sums in and out, the tail and the tree of `super::dot`) is shared by two. Every output gets
/// `super::dot`'s lanes, tail and tree in its order: the same bits. Returns false, having done
/// nothing, for bf16; a last odd output goes through `super::dot`.
///
/// The caller has checked the shape (`super::check_matmul`).
pub fn matmul<E: Element>(x: &[f32], w: &[E], y: &mut [f32], d: Dims) -> bool {
    if E::KIND == ElementKind::Bf16 {
        return false;
    }
    let chunks = d.k / 8;
    // f16 rows widened once per pair of outputs for all the activation rows, then the f32
    // loop: each weight converted once instead of once per row (exact, so the same bits).
    let widen = E::KIND == ElementKind::F16 && d.rows >= 2 && chunks > 0 && d.k <= WIDE;
    // f32 rows, or f16 rows widened: the loop with the tail inside, every row in one call
    // ([`pair_rows_f32`]).
    let totals = chunks > 0 && (E::KIND == ElementKind::F32 || widen);
    let tail = d.k - chunks * 8;
    let mut wide = core::mem::MaybeUninit::<[f32; 2 * WIDE]>::uninit();
    let wide: *mut f32 = wide.as_mut_ptr().cast();
    let mut o = 0;
    while o + 2 <= d.out {
        let (wa, wb) = (w.get(o * d.ws..o * d.ws + d.k), w.get((o + 1) * d.ws..(o + 1) * d.ws + d.k));
        let (Some(wa), Some(wb)) = (wa, wb) else { return false };
        if widen {
            // SAFETY: `chunks · 8 ≤ k` halves of each row are read, as many f32 written into
            // `wide` (room for `2 · WIDE`), then the tails' `k − 8 · chunks` (`k ≤ WIDE`).
            unsafe {
                widen_halves(wa.as_ptr().cast(), chunks, wide);
                widen_halves(wb.as_ptr().cast(), chunks, wide.add(WIDE));
                for t in chunks * 8..d.k {
                    if let (Some(a), Some(b)) = (wa.get(t), wb.get(t)) {
                        *wide.add(t) = a.to_f32();
                        *wide.add(WIDE + t) = b.to_f32();
                    }
                }
            }
        }
        if totals {
            let (pa, pb): (*const f32, *const f32) = if widen {
                // SAFETY: `wide` holds `2 · WIDE` values.
                (wide.cast_const(), unsafe { wide.add(WIDE) }.cast_const())
            } else {
                (wa.as_ptr().cast(), wb.as_ptr().cast())
            };
            if d.rows > 0 {
                // Every row's k values and two outputs exist (checked once for the last row).
                let last = d.rows - 1;
                if x.len() < last * d.xs + d.k || y.len() < last * d.ys + o + 2 {
                    return false;
                }
                // SAFETY: `k = 8 · chunks + tail` values of each row of `x` and of `pa` and `pb`
                // are read (the rows hold `k`, the widened ones too), two outputs of each row of
                // `y` written (both checked above); `chunks > 0`, `rows ≥ 1`.
                unsafe {
                    pair_rows_f32(
                        x.as_ptr(),
                        d.xs,
                        d.rows,
                        pa,
                        pb,
                        chunks,
                        tail,
                        y.as_mut_ptr().add(o),
                        d.ys,
                        d.accumulate,
                    )
                };
            }
            o += 2;
            continue;
        }
        for r in 0..d.rows {
            let Some(xr) = x.get(r * d.xs..r * d.xs + d.k) else { return false };
            let mut acc = core::mem::MaybeUninit::<[f32; 2]>::uninit();
            // Here the rows are f16 (f32 ones with a chunk took `pair_rows_f32` above), or
            // there is no chunk.
            let [ta, tb] = if chunks > 0 && E::KIND == ElementKind::F16 {
                // SAFETY: `chunks · 8 ≤ k` values of `xr`, `wa` and `wb` are read, all three
                // slices hold `k`; `acc`'s two values are written; the named registers are
                // clobbered. f16 rows off a 4-byte boundary take the `LDR` loop.
                unsafe {
                    pair_lanes_f16(
                        xr.as_ptr(),
                        wa.as_ptr().cast(),
                        wb.as_ptr().cast(),
                        chunks,
                        acc.as_mut_ptr().cast(),
                    );
                    acc.assume_init()
                }
            } else {
                // No chunk: zero lanes, whose tree is +0.
                [0.0; 2]
            };
            let done = chunks * 8;
            let x_tail = xr.get(done..).unwrap_or(&[]);
            let tail = |wr: &[E]| super::tail_sum(wr.get(done..).unwrap_or(&[]), x_tail);
            // `super::lanes_total`'s last step: the tree, then the tail.
            let va = ta + tail(wa);
            let vb = tb + tail(wb);
            store_pair(y, r * d.ys + o, [va, vb], d.accumulate);
        }
        o += 2;
    }
    if o < d.out {
        let Some(wr) = w.get(o * d.ws..o * d.ws + d.k) else { return false };
        for r in 0..d.rows {
            let Some(xr) = x.get(r * d.xs..r * d.xs + d.k) else { return false };
            let v = super::dot(wr, xr);
            if let Some(out) = y.get_mut(r * d.ys + o) {
                *out = if d.accumulate { *out + v } else { v };
            }
        }
    }
    true
}

/// Outputs `at` and `at + 1` of [`matmul`]: stored, or added with `accumulate`.
#[inline(always)]
fn store_pair(y: &mut [f32], at: usize, v: [f32; 2], accumulate: bool) {
    if let Some(out) = y.get_mut(at..at + 2) {
        if accumulate {
            out[0] += v[0];
            out[1] += v[1];
        } else {
            out[0] = v[0];
            out[1] = v[1];
        }
    }
}

/// The longest f16 row [`matmul`] widens (two rows on the stack: 2 KiB): the built-in
/// model's rows have 64, 85 and 256 values.
const WIDE: usize = 256;

/// `8 · chunks` halves at `w` (any address) widened to f32 at `out`: per eight, the four words
/// (`VLDM` where word-aligned, else `LDR`), eight `VCVTB`/`VCVTT` and one `VSTM`.
///
/// # Safety
/// `w` has `8 · chunks` readable halves, `out` room for as many f32 (4-byte aligned);
/// `chunks > 0`.
#[inline(never)]
unsafe fn widen_halves(w: *const u8, chunks: usize, out: *mut f32) {
    if (w as usize).is_multiple_of(4) {
        core::arch::asm!(
            "2:",
            "vldmia {w}!, {{s12-s15}}",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vstmia {o}!, {{s8-s15}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            w = inout(reg) w => _,
            o = inout(reg) out => _,
            n = inout(reg) chunks => _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack),
        );
    } else {
        core::arch::asm!(
            "2:",
            "ldr {t0}, [{w}]",
            "ldr {t1}, [{w}, #4]",
            "vmov s12, s13, {t0}, {t1}",
            "ldr {t0}, [{w}, #8]",
            "ldr {t1}, [{w}, #12]",
            "vmov s14, s15, {t0}, {t1}",
            "adds {w}, #16",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vstmia {o}!, {{s8-s15}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            w = inout(reg) w => _,
            o = inout(reg) out => _,
            n = inout(reg) chunks => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack),
        );
    }
}

/// The end of the pair loops: each row's eight lanes (s16–s23, s24–s31) added up in
/// [`super::lanes_total`]'s tree, `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`, into
/// s16 and s24. (Storing the 16 lanes for Rust to load and add up took 8 % more instructions in
/// an f32 puzzle on the M4F.)
macro_rules! pair_tree_sums {
    () => {
        concat!(
            "vadd.f32 s16, s16, s20\n",
            "vadd.f32 s17, s17, s21\n",
            "vadd.f32 s16, s16, s17\n",
            "vadd.f32 s18, s18, s22\n",
            "vadd.f32 s19, s19, s23\n",
            "vadd.f32 s18, s18, s19\n",
            "vadd.f32 s16, s16, s18\n",
            "vadd.f32 s24, s24, s28\n",
            "vadd.f32 s25, s25, s29\n",
            "vadd.f32 s24, s24, s25\n",
            "vadd.f32 s26, s26, s30\n",
            "vadd.f32 s27, s27, s31\n",
            "vadd.f32 s26, s26, s27\n",
            "vadd.f32 s24, s24, s26\n",
        )
    };
}

/// [`pair_tree_sums`], then the two totals stored at `acc`.
macro_rules! pair_trees {
    () => {
        concat!(pair_tree_sums!(), "vstr s16, [{a}]\n", "vstr s24, [{a}, #4]\n")
    };
}

/// One step of eight values of the f32 pair loop: the activations into s0–s7 once, each
/// weight row's eight into s8–s15 in turn, `VMLA` into its lanes (s16–s23 for `wa`, s24–s31
/// for `wb`).
macro_rules! f32_pair_chunk {
    () => {
        concat!(
            "vldmia {x}!, {{s0-s7}}\n",
            "vldmia {wa}!, {{s8-s15}}\n",
            "vmla.f32 s16, s0, s8\n",
            "vmla.f32 s17, s1, s9\n",
            "vmla.f32 s18, s2, s10\n",
            "vmla.f32 s19, s3, s11\n",
            "vmla.f32 s20, s4, s12\n",
            "vmla.f32 s21, s5, s13\n",
            "vmla.f32 s22, s6, s14\n",
            "vmla.f32 s23, s7, s15\n",
            "vldmia {wb}!, {{s8-s15}}\n",
            "vmla.f32 s24, s0, s8\n",
            "vmla.f32 s25, s1, s9\n",
            "vmla.f32 s26, s2, s10\n",
            "vmla.f32 s27, s3, s11\n",
            "vmla.f32 s28, s4, s12\n",
            "vmla.f32 s29, s5, s13\n",
            "vmla.f32 s30, s6, s14\n",
            "vmla.f32 s31, s7, s15\n",
        )
    };
}

/// The sums of the loops below start from this static zero block: a zeroed local array cost a
/// `memset` call per output pair, 11 % of a segment.
static ZEROS: [f32; 16] = [0.0; 16];

/// The lanes of two f16 weight rows against one activation row, from zero, `chunks` steps of
/// eight values, added up: `acc[0]` for `wa`, `acc[1]` for `wb` (the lanes' tree, without the
/// tail). For f16 rows not widened beforehand (one activation row, or rows longer than
/// [`WIDE`]); f32 rows and widened ones take [`pair_rows_f32`].
///
/// # Safety
/// `x` has `8 · chunks` readable f32, `wa` and `wb` as many halves; `acc` has room for 2 f32;
/// `chunks > 0`.
#[inline(always)]
unsafe fn pair_lanes_f16(x: *const f32, wa: *const u8, wb: *const u8, chunks: usize, acc: *mut f32) {
    if (wa as usize | wb as usize).is_multiple_of(4) {
        // Eight halves are four words in s12–s15, widened in place into s8–s15: each
        // conversion overwrites a word the earlier ones have already read.
        core::arch::asm!(
            "vldmia {z}, {{s16-s31}}",
            "2:",
            "vldmia {x}!, {{s0-s7}}",
            "vldmia {wa}!, {{s12-s15}}",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vmla.f32 s16, s0, s8",
            "vmla.f32 s17, s1, s9",
            "vmla.f32 s18, s2, s10",
            "vmla.f32 s19, s3, s11",
            "vmla.f32 s20, s4, s12",
            "vmla.f32 s21, s5, s13",
            "vmla.f32 s22, s6, s14",
            "vmla.f32 s23, s7, s15",
            "vldmia {wb}!, {{s12-s15}}",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vmla.f32 s24, s0, s8",
            "vmla.f32 s25, s1, s9",
            "vmla.f32 s26, s2, s10",
            "vmla.f32 s27, s3, s11",
            "vmla.f32 s28, s4, s12",
            "vmla.f32 s29, s5, s13",
            "vmla.f32 s30, s6, s14",
            "vmla.f32 s31, s7, s15",
            "subs {n}, {n}, #1",
            "bne 2b",
            pair_trees!(),
            x = inout(reg) x => _,
            wa = inout(reg) wa => _,
            wb = inout(reg) wb => _,
            n = inout(reg) chunks => _,
            a = in(reg) acc,
            z = in(reg) ZEROS.as_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
            out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
            out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _,
            out("s30") _, out("s31") _,
            options(nostack),
        );
    } else {
        // As below, the words read with `LDR`, which takes any address (a row of an odd
        // length, the token mix's 81 halves, leaves the next one 2 bytes off a word; `VLDM`
        // needs word alignment).
        core::arch::asm!(
            "vldmia {z}, {{s16-s31}}",
            "2:",
            "vldmia {x}!, {{s0-s7}}",
            "ldr {t0}, [{wa}]",
            "ldr {t1}, [{wa}, #4]",
            "vmov s12, s13, {t0}, {t1}",
            "ldr {t0}, [{wa}, #8]",
            "ldr {t1}, [{wa}, #12]",
            "vmov s14, s15, {t0}, {t1}",
            "adds {wa}, #16",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vmla.f32 s16, s0, s8",
            "vmla.f32 s17, s1, s9",
            "vmla.f32 s18, s2, s10",
            "vmla.f32 s19, s3, s11",
            "vmla.f32 s20, s4, s12",
            "vmla.f32 s21, s5, s13",
            "vmla.f32 s22, s6, s14",
            "vmla.f32 s23, s7, s15",
            "ldr {t0}, [{wb}]",
            "ldr {t1}, [{wb}, #4]",
            "vmov s12, s13, {t0}, {t1}",
            "ldr {t0}, [{wb}, #8]",
            "ldr {t1}, [{wb}, #12]",
            "vmov s14, s15, {t0}, {t1}",
            "adds {wb}, #16",
            "vcvtb.f32.f16 s8, s12",
            "vcvtt.f32.f16 s9, s12",
            "vcvtb.f32.f16 s10, s13",
            "vcvtt.f32.f16 s11, s13",
            "vcvtb.f32.f16 s12, s14",
            "vcvtt.f32.f16 s13, s14",
            "vcvtb.f32.f16 s14, s15",
            "vcvtt.f32.f16 s15, s15",
            "vmla.f32 s24, s0, s8",
            "vmla.f32 s25, s1, s9",
            "vmla.f32 s26, s2, s10",
            "vmla.f32 s27, s3, s11",
            "vmla.f32 s28, s4, s12",
            "vmla.f32 s29, s5, s13",
            "vmla.f32 s30, s6, s14",
            "vmla.f32 s31, s7, s15",
            "subs {n}, {n}, #1",
            "bne 2b",
            pair_trees!(),
            x = inout(reg) x => _,
            wa = inout(reg) wa => _,
            wb = inout(reg) wb => _,
            n = inout(reg) chunks => _,
            a = in(reg) acc,
            z = in(reg) ZEROS.as_ptr(),
            t0 = out(reg) _,
            t1 = out(reg) _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
            out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
            out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _,
            out("s30") _, out("s31") _,
            options(nostack),
        );
    }
}

/// The multiply-adds of a pair loop's first `n` tail values, in their order: x's in s2–s8, `wa`'s
/// in s9–s15 into s0, `wb`'s in s17–s23 into s1.
macro_rules! tail_mlas {
    (1) => {
        "vmla.f32 s0, s9, s2\nvmla.f32 s1, s17, s2\n"
    };
    (2) => {
        concat!(tail_mlas!(1), "vmla.f32 s0, s10, s3\nvmla.f32 s1, s18, s3\n")
    };
    (3) => {
        concat!(tail_mlas!(2), "vmla.f32 s0, s11, s4\nvmla.f32 s1, s19, s4\n")
    };
    (4) => {
        concat!(tail_mlas!(3), "vmla.f32 s0, s12, s5\nvmla.f32 s1, s20, s5\n")
    };
    (5) => {
        concat!(tail_mlas!(4), "vmla.f32 s0, s13, s6\nvmla.f32 s1, s21, s6\n")
    };
    (6) => {
        concat!(tail_mlas!(5), "vmla.f32 s0, s14, s7\nvmla.f32 s1, s22, s7\n")
    };
    (7) => {
        concat!(tail_mlas!(6), "vmla.f32 s0, s15, s8\nvmla.f32 s1, s23, s8\n")
    };
}

/// [`pair_rows_f32`]'s tail of `n` values: label `4n`, each row's values in one `VLDM`
/// (registers `$x`, `$a`, `$b`), the multiply-adds, then on to the end (label 40).
macro_rules! pair_tail {
    ($n:tt, $x:literal, $a:literal, $b:literal) => {
        concat!(
            "4",
            stringify!($n),
            ":\n",
            "vldmia {x}, {{",
            $x,
            "}}\n",
            "vldmia {wa}, {{",
            $a,
            "}}\n",
            "vldmia {wb}, {{",
            $b,
            "}}\n",
            tail_mlas!($n),
            "b 40f\n",
        )
    };
}

/// The pair loop for f32 rows (and f16 rows widened beforehand), tail inside, for every
/// activation row: per row the steps of eight, the two trees, then the last `tail` values
/// (`k mod 8`, at most 7) of each row added in order from zero with `VMLA` (a product rounded,
/// then added: `super::tail_sum`'s `0.0 + w·x + …`), and each total is its tree plus its tail
/// (`super::lanes_total`): the bits of `super::dot` for `wa` and `wb`. The two outputs of row
/// `r` are stored at `y + r·ys` (or, with `accumulate`, added to what is there, `y + v` as
/// `store_pair` does). The Rust tail and its slices cost about 90 instructions a pair of
/// outputs on the token mix's rows of 85 values; the loop over the rows in Rust, with its
/// slices, the sums' trip through memory and `store_pair`, about 33 a row where this one takes
/// 13.
///
/// # Safety
/// `rows ≥ 1`; for each `r < rows`, `x + r·xs` has `8 · chunks + tail` readable f32 (4-byte
/// aligned), `y + r·ys` two writable f32; `wa` and `wb` have `8 · chunks + tail` readable f32;
/// `chunks > 0`, `tail < 8`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pair_rows_f32(
    x: *const f32,
    xs: usize,
    rows: usize,
    wa: *const f32,
    wb: *const f32,
    chunks: usize,
    tail: usize,
    y: *mut f32,
    ys: usize,
    accumulate: bool,
) {
    // What each row starts from: the weight rows, the chunks; the strides in bytes.
    let settings: [u32; 6] =
        [wa as u32, wb as u32, chunks as u32, (4 * xs) as u32, (4 * ys) as u32, u32::from(accumulate)];
    core::arch::asm!(
        "30:",
        "ldr {wa}, [{s}]",
        "ldr {wb}, [{s}, #4]",
        "ldr {n}, [{s}, #8]",
        "mov {x}, {row}",
        "vldmia {z}, {{s16-s31}}",
        // An odd chunk first, then two a loop (the loop's count and branch once per 32
        // multiply-adds); the chunks still in order.
        "lsrs {n}, {n}, #1",
        "bcc 5f",
        f32_pair_chunk!(),
        "5:",
        "cmp {n}, #0",
        "beq 6f",
        "2:",
        f32_pair_chunk!(),
        f32_pair_chunk!(),
        "subs {n}, {n}, #1",
        "bne 2b",
        "6:",
        // The trees into s16 and s24.
        pair_tree_sums!(),
        // The tails, from +0: entered by `TBB` on their length, each length written out (the
        // values of x in s2–s8, wa's in s9–s15, wb's in s17–s23, one `VLDM` each), the
        // multiply-adds in the values' order. A loop of one value a pass took 7 instructions
        // for two multiply-adds (9.2 M of an f32 segment on the M4F).
        "vldmia {z}, {{s0-s1}}",
        "tbb [pc, {t}]",
        "1:",
        ".byte (40f - 1b) / 2, (41f - 1b) / 2, (42f - 1b) / 2, (43f - 1b) / 2, (44f - 1b) / 2, (45f - 1b) / 2, (46f - 1b) / 2, (47f - 1b) / 2",
        pair_tail!(1, "s2", "s9", "s17"),
        pair_tail!(2, "s2-s3", "s9-s10", "s17-s18"),
        pair_tail!(3, "s2-s4", "s9-s11", "s17-s19"),
        pair_tail!(4, "s2-s5", "s9-s12", "s17-s20"),
        pair_tail!(5, "s2-s6", "s9-s13", "s17-s21"),
        pair_tail!(6, "s2-s7", "s9-s14", "s17-s22"),
        pair_tail!(7, "s2-s8", "s9-s15", "s17-s23"),
        "40:",
        "vadd.f32 s16, s16, s0",
        "vadd.f32 s24, s24, s1",
        // Stored, or added to the outputs (`out + v`).
        "ldr {n}, [{s}, #20]",
        "cmp {n}, #0",
        "beq 8f",
        "vldmia {y}, {{s2-s3}}",
        "vadd.f32 s16, s2, s16",
        "vadd.f32 s24, s3, s24",
        "8:",
        "vstr s16, [{y}]",
        "vstr s24, [{y}, #4]",
        // The next row.
        "ldr {n}, [{s}, #16]",
        "add {y}, {y}, {n}",
        "ldr {n}, [{s}, #12]",
        "add {row}, {row}, {n}",
        "subs {rows}, {rows}, #1",
        "bne 30b",
        x = out(reg) _,
        wa = out(reg) _,
        wb = out(reg) _,
        n = out(reg) _,
        row = inout(reg) x => _,
        rows = inout(reg) rows => _,
        y = inout(reg) y => _,
        t = in(reg) tail,
        s = in(reg) settings.as_ptr(),
        z = in(reg) ZEROS.as_ptr(),
        out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
        out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
        out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _,
        out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
        out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _,
        out("s30") _, out("s31") _,
        options(nostack),
    );
}

/// The `f32` of an IEEE half-precision value's bits: one `VCVTB.F32.F16` (and the moves in
/// and out of the FPU) where the `half` crate converts in software on this core. Exact for
/// every value, as the conversion in software is.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    let out: u32;
    // SAFETY: register moves and a conversion; no memory, no flags, no stack.
    unsafe {
        core::arch::asm!(
            "vmov s15, {r}",
            "vcvtb.f32.f16 s15, s15",
            "vmov {o}, s15",
            r = in(reg) u32::from(bits),
            o = lateout(reg) out,
            out("s15") _,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    f32::from_bits(out)
}

/// One row of [`dequantise_4x4`]: the row's four sums (s0–s3) converted, its scale (s12)
/// times the four weight scales (s8–s11) into s4–s7, the products, stored at `y`, then `y`
/// moved to the next row.
macro_rules! dequantise_row {
    () => {
        concat!(
            "vldmia {s}!, {{s0-s3}}\n",
            "vldmia {sx}!, {{s12}}\n",
            "vcvt.f32.s32 s0, s0\n",
            "vcvt.f32.s32 s1, s1\n",
            "vcvt.f32.s32 s2, s2\n",
            "vcvt.f32.s32 s3, s3\n",
            "vmul.f32 s4, s12, s8\n",
            "vmul.f32 s5, s12, s9\n",
            "vmul.f32 s6, s12, s10\n",
            "vmul.f32 s7, s12, s11\n",
            "vmul.f32 s0, s4, s0\n",
            "vmul.f32 s1, s5, s1\n",
            "vmul.f32 s2, s6, s2\n",
            "vmul.f32 s3, s7, s3\n",
            "vstmia {y}, {{s0-s3}}\n",
            "add {y}, {y}, {stride}\n",
        )
    };
}

/// `y[i · ys + j] = (sx[i] · sw[j]) · f32(sums[i][j])` for a 4 × 4 tile of int8 sums (step 3,
/// [`super::int8::dequantise`]: the same operations in the same order, each rounded, so the
/// same bits; `VCVT.F32.S32` rounds to nearest as `as f32` does). Per row one `VLDM` of the
/// sums, one of the row's scale, four conversions, eight multiplies, one `VSTM`: 65
/// instructions a tile, where the compiled loop (each sum moved to the FPU, each output's
/// pointer worked out) took about 145.
///
/// # Safety
/// `sums` has 16 readable values (row by row), `sx` four, `sw` four; `y` four rows of four
/// writable values, `ys` values apart.
#[inline(always)]
pub(crate) unsafe fn dequantise_4x4(sums: *const i32, sx: *const f32, sw: *const f32, y: *mut f32, ys: usize) {
    core::arch::asm!(
        "vldmia {sw}, {{s8-s11}}",
        dequantise_row!(),
        dequantise_row!(),
        dequantise_row!(),
        dequantise_row!(),
        sw = in(reg) sw,
        s = inout(reg) sums => _,
        sx = inout(reg) sx => _,
        y = inout(reg) y => _,
        stride = in(reg) ys * 4,
        out("s0") _, out("s1") _, out("s2") _, out("s3") _,
        out("s4") _, out("s5") _, out("s6") _, out("s7") _,
        out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _,
        options(nostack),
    );
}
