//! aarch64 matrix products with NEON: the vector operations of the one f32 micro-kernel
//! (`super::gemm`, outer-product tiles over packed weight panels) and its packing transpose,
//! four lanes wide; and the int8 arithmetic's lanes (`super::int8::matmul_panels`) on the
//! Armv8.2 dot product `SDOT`, where the core has it.
//!
//! SAFETY (whole module): callers pass pointers derived from slices whose lengths
//! `super::check_matmul` has verified for the given shape and strides; loads and stores stay
//! inside them.

use core::arch::aarch64::*;

use half::{bf16, f16};

use super::gemm::{self, Lanes};
use super::{Dims as Shape, Element};

/// Loads of weight elements as f32 vectors.
pub trait NeonElement: Sized {
    /// 4 elements from `p`.
    unsafe fn load4(p: *const Self) -> float32x4_t;
}

impl NeonElement for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
}

impl NeonElement for f16 {
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> float32x4_t {
        let v: [f32; 4] = core::array::from_fn(|i| (*p.add(i)).to_f32());
        vld1q_f32(v.as_ptr())
    }
}

impl NeonElement for bf16 {
    #[inline(always)]
    unsafe fn load4(p: *const bf16) -> float32x4_t {
        vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(vld1_u16(p.cast()))))
    }
}

/// Columns of a 4 × 4 block: `out[q][i] = r[i][q]`.
#[inline(always)]
unsafe fn transpose4(r: [float32x4_t; 4]) -> [float32x4_t; 4] {
    let [r0, r1, r2, r3] = r;
    // a = r0[0] r2[0] r0[1] r2[1], b = r0[2] r2[2] r0[3] r2[3]; c, d the same of r1, r3.
    let (a, b) = (vzip1q_f32(r0, r2), vzip2q_f32(r0, r2));
    let (c, d) = (vzip1q_f32(r1, r3), vzip2q_f32(r1, r3));
    [vzip1q_f32(a, c), vzip2q_f32(a, c), vzip1q_f32(b, d), vzip2q_f32(b, d)]
}

/// NEON: 4 lanes, 32 registers.
pub struct Neon;

impl Lanes for Neon {
    type V = float32x4_t;
    const L: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> float32x4_t {
        vld1q_dup_f32(p)
    }
    #[inline(always)]
    unsafe fn fma(acc: float32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
    /// Groups of 4 rows × 4 steps widened and transposed in registers, the rest by
    /// `gemm::pack_rest`.
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // `PRFM` is a hint: it never faults, whatever the address (core's `_prefetch` is
        // not stable).
        core::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[inline(always)]
    unsafe fn pack<E: Element>(w: *const E, ws: usize, n: usize, kc: usize, nr: usize, panel: *mut f32) {
        let (rows4, steps4) = (n / 4 * 4, kc / 4 * 4);
        let mut j0 = 0;
        while j0 < rows4 {
            let mut t0 = 0;
            while t0 < steps4 {
                let rows: [float32x4_t; 4] = core::array::from_fn(|i| E::load4(w.add((j0 + i) * ws + t0)));
                for (q, c) in transpose4(rows).into_iter().enumerate() {
                    vst1q_f32(panel.add((t0 + q) * nr + j0), c);
                }
                t0 += 4;
            }
            j0 += 4;
        }
        gemm::pack_rest(w, ws, n, rows4, steps4, kc, nr, panel);
    }
}

/// `Y = X · Wᵀ` with NEON: 6 × 16 tiles (24 accumulators, 4 panel vectors, one broadcast).
pub unsafe fn matmul<E: Element>(x: *const f32, w: *const E, y: *mut f32, s: Shape) {
    gemm::matmul::<Neon, E, 6, 4>(x, w, y, s)
}

/// The int8 arithmetic's outer-product tiles on the dot product (`SDOT`, Armv8.2's `dotprod`:
/// Neoverse N1 and later, Cortex-A55/A76 and later, Apple M1 and later): each `i32` lane holds 4
/// bytes of `k` of one weight row, the activations are broadcast 4 bytes at a time, and one
/// `SDOT` adds 16 exact products of signed bytes to 4 lanes. Signed on both sides, so no offset
/// (VNNI's `+128`) is needed; the integers, and so the bits, are every other int8 kernel's.
pub struct NeonDot;

impl super::int8::Int8Lanes for NeonDot {
    type V = int32x4_t;
    const L: usize = 4;
    const G: usize = 4;
    const ABYTES: usize = 1;
    const PREFETCH: bool = true;
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        core::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[inline(always)]
    unsafe fn zero() -> int32x4_t {
        vdupq_n_s32(0)
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> int32x4_t {
        vld1q_s32(p.cast())
    }
    #[inline(always)]
    unsafe fn splat(p: *const u8) -> int32x4_t {
        vld1q_dup_s32(p.cast())
    }
    /// `SDOT` by hand: core's `vdotq_s32` is not stable yet.
    #[inline(always)]
    unsafe fn madd(acc: int32x4_t, a: int32x4_t, b: int32x4_t) -> int32x4_t {
        let mut acc = acc;
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: int32x4_t) {
        vst1q_s32(p, v)
    }
    /// Step 3 of the int4 arithmetic on four lanes, as `int4::add_block`: the sums converted,
    /// multiplied by the steps and added, each rounded (`vcvtq`, `vmulq`, `vaddq`: no fused
    /// multiply-add), in registers rather than through memory.
    #[inline(always)]
    unsafe fn add_scaled(out: *mut f32, sums: int32x4_t, scales: *const f32) {
        let scaled = vmulq_f32(vcvtq_f32_s32(sums), vld1q_f32(scales));
        vst1q_f32(out, vaddq_f32(vld1q_f32(out), scaled));
    }
    /// Blocks of 4 rows × 16 bytes: 4 lanes of 4 bytes a row, transposed 4 × 4 (as 32-bit
    /// words) so that each vector holds one 4-byte group of 4 rows; the rest by the scalar loop.
    #[inline(always)]
    unsafe fn pack(w: *const i8, ws: usize, n: usize, kc: usize, kcp: usize, nr: usize, panel: *mut u8) {
        let (rows4, steps16) = (n / 4 * 4, kc / 16 * 16);
        let mut j0 = 0;
        while j0 < rows4 {
            let mut t0 = 0;
            while t0 < steps16 {
                let rows: [float32x4_t; 4] = core::array::from_fn(|i| vld1q_f32(w.add((j0 + i) * ws + t0).cast()));
                for (q, c) in transpose4(rows).into_iter().enumerate() {
                    vst1q_f32(panel.add(((t0 / 4 + q) * nr + j0) * 4).cast(), c);
                }
                t0 += 16;
            }
            j0 += 4;
        }
        super::int8::pack_panel_rest::<Self>(w, ws, n, rows4, steps16, kc, kcp, nr, panel);
    }
}

/// `Y = X · Wᵀ` in the int8 arithmetic with `SDOT` tiles: 6 rows × 16 outputs (24
/// accumulators, 4 panel vectors and a broadcast of the 32 registers).
///
/// # Safety
/// The core has NEON and the dot product; the conditions of `int8::matmul_panels`.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matmul_i8_dot(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Shape) {
    super::int8::matmul_panels::<NeonDot, 6, 4>(x, w, scales, y, d)
}

/// `Y = X · Wᵀ` in the int4 arithmetic (`super::int4`) with the `SDOT` tiles, 6 rows × 16
/// outputs.
///
/// # Safety
/// The core has NEON and the dot product; the conditions of `int4::matmul_panels`.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matmul_q4_dot(x: &[f32], w: super::int4::Q4Rows<'_>, y: &mut [f32], d: Shape) {
    super::int4::matmul_panels::<NeonDot, 6, 4>(x, w, y, d)
}

/// [`matmul`] on 16-row panels stored by the converter (`gemm::matmul_panels`).
pub unsafe fn matmul_panels(x: *const f32, w: *const f32, y: *mut f32, s: Shape) {
    gemm::matmul_panels::<Neon, 6, 4>(x, w, y, s)
}
