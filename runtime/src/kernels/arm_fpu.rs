//! Cortex-M FPU operations (FPv4-SP of the M4F and later): the lanes of the portable dot
//! product (`super::dot`) as a written-out loop, for f32 and f16 weights, and the
//! half-precision conversion.
//!
//! Rust's `sreg` register class needs the `vfp2` feature, which a single-precision FPU lacks,
//! so the loops name their registers and declare them clobbered, and values cross into Rust
//! through memory or core registers.

use super::{Element, ElementKind};

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
