//! The numeric kernels: every loop over weights or activations lives here so that faster
//! versions (SIMD, quantised) can replace them one by one.
//!
//! The products that dominate, `Y = X · Wᵀ` over a block of rows ([`matmul`]), have SIMD
//! micro-kernels: one outer-product tile over packed weight panels (`gemm`), instantiated for
//! AVX-512F, AVX2 + FMA and SSE2 on x86-64 (chosen at compile time from the target features, or
//! at run time with the `std` feature) and NEON on aarch64; portable Rust elsewhere (Cortex-M
//! among them: one dot product per output, each weight row read once per block of rows). The rest is plain scalar Rust written so that the compiler
//! can vectorise it. Safe kernels never index out of bounds: lengths are checked once at entry
//! and the loops run over iterators; the SIMD ones run only after [`check_matmul`].

use half::{bf16, f16};

use crate::Error;

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
pub(crate) mod arm_dsp;
#[cfg(all(target_arch = "arm", target_feature = "fpregs"))]
mod arm_fpu;
#[cfg(all(target_arch = "arm", feature = "helium"))]
pub(crate) mod arm_mve;
#[cfg(all(target_arch = "arm", target_feature = "thumb2", feature = "fixed-point"))]
pub(crate) mod arm_thumb2;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod gemm;
pub mod int4;
pub mod int8;
#[cfg(target_arch = "aarch64")]
mod neon;
mod prefetch;
// Plain Rust: its unit test runs on the host too.
#[cfg(target_arch = "x86_64")]
pub(crate) mod q8;
#[cfg(any(target_arch = "riscv32", test))]
pub(crate) mod riscv;
#[cfg(feature = "threads")]
pub mod threads;
#[cfg(target_arch = "x86_64")]
mod x86;

/// A stored weight element that widens to `f32`.
pub trait Element: Copy + Default + bytemuck::Pod + Sync + SimdElement {
    /// Which element this is (for kernels written for one).
    const KIND: ElementKind;
    fn to_f32(self) -> f32;
}

/// The weight elements of f32 products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    F32,
    F16,
    Bf16,
}

#[cfg(target_arch = "aarch64")]
use neon::NeonElement as SimdElement;
#[cfg(target_arch = "x86_64")]
use x86::X86Element as SimdElement;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
/// No SIMD loads on this architecture.
pub trait SimdElement {}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
impl<T> SimdElement for T {}

impl Element for f32 {
    const KIND: ElementKind = ElementKind::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for f16 {
    const KIND: ElementKind = ElementKind::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        #[cfg(all(target_arch = "arm", target_feature = "fpregs"))]
        {
            arm_fpu::f16_to_f32(self.to_bits())
        }
        #[cfg(not(all(target_arch = "arm", target_feature = "fpregs")))]
        {
            f16::to_f32(self)
        }
    }
}

impl Element for bf16 {
    const KIND: ElementKind = ElementKind::Bf16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

const LANES: usize = 8;

/// `Σ w[i]·x[i]` over the shorter of the two, with [`LANES`] independent partial sums.
#[inline(always)]
pub fn dot<E: Element>(w: &[E], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let wc = w.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (wr, xr) = (wc.remainder(), xc.remainder());
    // The Cortex-M FPU's loop: the same lanes, products and additions, in the same order.
    #[cfg(all(target_arch = "arm", target_feature = "fpregs"))]
    let (wc, xc) = {
        let n = w.len().min(x.len()) / LANES * LANES;
        if arm_fpu::dot_lanes(w.get(..n).unwrap_or(&[]), x.get(..n).unwrap_or(&[]), &mut acc) {
            (w.get(..0).unwrap_or(&[]).chunks_exact(LANES), x.get(..0).unwrap_or(&[]).chunks_exact(LANES))
        } else {
            (wc, xc)
        }
    };
    for (wv, xv) in wc.zip(xc) {
        for ((a, &wi), &xi) in acc.iter_mut().zip(wv).zip(xv) {
            *a += wi.to_f32() * xi;
        }
    }
    lanes_total(&acc, tail_sum(wr, xr))
}

/// The values past the last whole chunk of [`dot`], added in order.
#[inline(always)]
pub(crate) fn tail_sum<E: Element>(w: &[E], x: &[f32]) -> f32 {
    let mut tail = 0.0f32;
    for (&wi, &xi) in w.iter().zip(x) {
        tail += wi.to_f32() * xi;
    }
    tail
}

/// [`dot`]'s lanes added up, the fixed tree, then the tail: every loop that forms `dot`'s sums
/// ends here, so that they give its bits.
#[inline(always)]
pub(crate) fn lanes_total(acc: &[f32; LANES], tail: f32) -> f32 {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = *acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// `y = W·x` for a row-major `W[y.len(), x.len()]` (the reference stores linear layers as
/// `[out, in]`).
pub fn matvec<E: Element>(w: &[E], x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    let (k, out) = (x.len(), y.len());
    if w.len() != k.saturating_mul(out) {
        return Err(Error::OutputLength { expected: k.saturating_mul(out), got: w.len() });
    }
    matmul(x, w, y, Dims::dense(1, out, k))
}

/// The shape of a product `Y = X · Wᵀ`: `rows` rows of `k` activations `xs` apart, `out` weight
/// rows of `k` elements `ws` apart, `rows` rows of `out` results `ys` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub rows: usize,
    pub out: usize,
    pub k: usize,
    pub xs: usize,
    pub ws: usize,
    pub ys: usize,
    /// `Y += X · Wᵀ` instead of `Y = X · Wᵀ` (a product split along `k`).
    pub accumulate: bool,
}

impl Dims {
    /// Dense operands: rows of `k` inputs and of `out` results, back to back.
    pub const fn dense(rows: usize, out: usize, k: usize) -> Dims {
        Dims { rows, out, k, xs: k, ws: k, ys: out, accumulate: false }
    }
}

/// Whether `len` holds `rows` rows of `width` values `stride` apart.
fn holds(len: usize, rows: usize, width: usize, stride: usize) -> bool {
    rows == 0
        || (width <= stride
            && (rows - 1).checked_mul(stride).and_then(|v| v.checked_add(width)).is_some_and(|need| need <= len))
}

/// Checks that the operands hold the rows `d` describes.
pub fn check_matmul(x_len: usize, w_len: usize, y_len: usize, d: Dims) -> Result<(), Error> {
    let short = |need: usize, got: usize| Err(Error::OutputLength { expected: need, got });
    if !holds(x_len, d.rows, d.k, d.xs) {
        return short(d.rows.saturating_mul(d.xs), x_len);
    }
    if !holds(w_len, d.out, d.k, d.ws) {
        return short(d.out.saturating_mul(d.ws), w_len);
    }
    if !holds(y_len, d.rows, d.out, d.ys) {
        return short(d.rows.saturating_mul(d.ys), y_len);
    }
    Ok(())
}

/// `Y[r][o] = Σ_i X[r][i] · W[o][i]` (see [`Dims`]); `W` in its stored `[out, in]` layout, read
/// in place. Each weight row is read once for all the rows of the block. With the `threads`
/// feature, inside a rayon pool, the outputs or the rows are split over its threads
/// ([`threads`]).
pub fn matmul<E: Element>(x: &[f32], w: &[E], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), w.len(), y.len(), d)?;
    #[cfg(feature = "threads")]
    if let Some(done) = threads::split(x, y, d, &|x, y, d, o| matmul_here(x, w.get(o * d.ws..).unwrap_or(&[]), y, d)) {
        return done;
    }
    matmul_here(x, w, y, d)
}

/// [`matmul`] on this thread.
fn matmul_here<E: Element>(x: &[f32], w: &[E], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), w.len(), y.len(), d)?;
    if d.rows == 0 || d.out == 0 {
        return Ok(());
    }
    if d.k == 0 {
        for r in 0..d.rows {
            if let (Some(row), false) = (y.get_mut(r * d.ys..r * d.ys + d.out), d.accumulate) {
                row.fill(0.0);
            }
        }
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    {
        match cpu::x86_level() {
            // SAFETY: the CPU has the features (checked at compile or run time) and
            // `check_matmul` verified every row the kernels touch.
            cpu::X86Level::Avx512 => unsafe {
                x86::matmul_avx512(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d);
                return Ok(());
            },
            cpu::X86Level::Avx2 => unsafe {
                x86::matmul_avx2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d);
                return Ok(());
            },
            // SSE2 is part of every x86-64: the same tiles, four lanes, multiply then add.
            cpu::X86Level::Baseline => unsafe {
                x86::matmul_sse2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d);
                return Ok(());
            },
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is part of the target; `check_matmul` verified every row touched.
        unsafe { neon::matmul(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d) };
        return Ok(());
    }
    // The Cortex-M FPU's loops: the portable product's arithmetic, two weight rows at a time.
    #[cfg(all(target_arch = "arm", target_feature = "fpregs"))]
    if arm_fpu::matmul(x, w, y, d) {
        return Ok(());
    }
    #[allow(unreachable_code)]
    {
        matmul_portable(x, w, y, d);
        Ok(())
    }
}

/// Checks that `w` holds the 16-row panels of a [`crate::blob::DType::F32Panels`] matrix of
/// `d.out × d.k` and that `x` and `y` hold the rows `d` describes.
pub fn check_panels(x_len: usize, w_len: usize, y_len: usize, d: Dims) -> Result<(), Error> {
    let p = crate::blob::F32_PANEL_ROWS;
    let need = (d.out.div_ceil(p) * p).saturating_mul(d.k);
    if w_len < need {
        return Err(Error::OutputLength { expected: need, got: w_len });
    }
    check_matmul(x_len, need, y_len, Dims { ws: d.k, ..d })
}

/// `Y = X · Wᵀ` (see [`Dims`]; `d.ws` is not read) for `W` stored as
/// [`crate::blob::DType::F32Panels`], read in place: on x86-64 and aarch64 the tiles of
/// [`matmul`] without its packing, so the same bits as [`matmul`] on the row-major matrix;
/// elsewhere a portable loop over the panels. With the `threads` feature the outputs are split
/// at whole panels ([`threads::OUT_GRAIN`]).
pub fn matmul_panels(x: &[f32], w: &[f32], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_panels(x.len(), w.len(), y.len(), d)?;
    let d = Dims { ws: d.k, ..d };
    #[cfg(feature = "threads")]
    if let Some(done) =
        threads::split(x, y, d, &|x, y, d, o| matmul_panels_here(x, w.get(o * d.k..).unwrap_or(&[]), y, d))
    {
        return done;
    }
    matmul_panels_here(x, w, y, d)
}

/// [`matmul_panels`] on this thread.
fn matmul_panels_here(x: &[f32], w: &[f32], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_panels(x.len(), w.len(), y.len(), d)?;
    if d.rows == 0 || d.out == 0 {
        return Ok(());
    }
    if d.k == 0 {
        // No terms: the products are zeros, as in `matmul`.
        return matmul_here(x, &[] as &[f32], y, d);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has the features (checked at compile or run time) and `check_panels`
        // verified every value the kernels touch.
        unsafe {
            match cpu::x86_level() {
                cpu::X86Level::Avx512 => x86::matmul_avx512_panels(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d),
                cpu::X86Level::Avx2 => x86::matmul_avx2_panels(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d),
                cpu::X86Level::Baseline => x86::matmul_sse2_panels(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d),
            }
        }
        return Ok(());
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is part of the target; `check_panels` verified every value touched.
        unsafe { neon::matmul_panels(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d) };
        return Ok(());
    }
    #[allow(unreachable_code)]
    {
        matmul_panels_portable(x, w, y, d);
        Ok(())
    }
}

/// The portable product over 16-row panels: per panel and activation row, 16 sums along `k`
/// (sums in order, so not the bits of [`matmul_portable`]).
#[cfg_attr(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")), allow(dead_code))]
pub(crate) fn matmul_panels_portable(x: &[f32], w: &[f32], y: &mut [f32], d: Dims) {
    const P: usize = crate::blob::F32_PANEL_ROWS;
    for (b, panel) in w.chunks_exact(P * d.k).take(d.out.div_ceil(P)).enumerate() {
        let cols = P.min(d.out - b * P);
        for r in 0..d.rows {
            let x_row = x.get(r * d.xs..r * d.xs + d.k).unwrap_or(&[]);
            let mut acc = [0.0f32; P];
            for (&xv, step) in x_row.iter().zip(panel.chunks_exact(P)) {
                for (a, &wv) in acc.iter_mut().zip(step) {
                    *a += xv * wv;
                }
            }
            let out = y.get_mut(r * d.ys + b * P..r * d.ys + b * P + cols).unwrap_or(&mut []);
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = if d.accumulate { *o + a } else { a };
            }
        }
    }
}

/// `Y = X · Wᵀ` for int8 weights `w` with one scale per row, in the runtime's one int8
/// arithmetic ([`int8`]: activations quantised per row, exact integer sums, then the two
/// scales): the same bits from every kernel level, AVX-512 VNNI, AVX2, the Cortex-M DSP
/// extension or portable Rust. `d.accumulate` is refused (a sum of rounded products is not
/// the product of the sums).
///
/// Activations are quantised per row, so splitting the outputs or the rows over threads (the
/// `threads` feature) gives the same bits too.
pub fn matmul_i8(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), w.len(), y.len(), d)?;
    #[cfg(feature = "threads")]
    if let Some(done) = threads::split(x, y, d, &|x, y, d, o| {
        matmul_i8_here(x, w.get(o * d.ws..).unwrap_or(&[]), scales.get(o..).unwrap_or(&[]), y, d)
    }) {
        return done;
    }
    matmul_i8_here(x, w, scales, y, d)
}

/// [`matmul_i8`] on this thread.
fn matmul_i8_here(x: &[f32], w: &[i8], scales: &[f32], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), w.len(), y.len(), d)?;
    if scales.len() < d.out {
        return Err(Error::OutputLength { expected: d.out, got: scales.len() });
    }
    if d.accumulate {
        return Err(Error::InvalidHeader("int8 products do not accumulate"));
    }
    if d.rows == 0 || d.out == 0 {
        return Ok(());
    }
    if d.k == 0 {
        for r in 0..d.rows {
            if let Some(row) = y.get_mut(r * d.ys..r * d.ys + d.out) {
                row.fill(0.0);
            }
        }
        return Ok(());
    }
    if d.k > int8::MAX_EXACT_K {
        int8::matmul_long_rows(x, w, scales, y, d);
        return Ok(());
    }
    // SAFETY (each arm): the CPU has the kernel's features (checked at compile or run time),
    // `check_matmul` verified every row touched, there is a scale per output, and
    // 0 < k ≤ MAX_EXACT_K without accumulation.
    #[cfg(target_arch = "x86_64")]
    {
        if cpu::has_vnni() {
            // Outer-product tiles over packed panels once there are rows to share a panel (a
            // segment's products have dozens); with fewer, the dot-product tile reads each
            // weight row once in place, with nothing to pack (1 × 512 · (1536 × 512)ᵀ on a
            // Zen 4: 0.035 ms against 0.085 ms).
            if d.rows >= q8::VNNI_PANEL_ROWS {
                unsafe { q8::matmul_vnni_panels(x, w, scales, y, d) };
            } else {
                unsafe { q8::matmul_vnni(x, w, scales, y, d) };
            }
            return Ok(());
        }
        if cpu::has_avx_vnni() {
            unsafe { q8::matmul_avx_vnni(x, w, scales, y, d) };
            return Ok(());
        }
        if cpu::x86_level() != cpu::X86Level::Baseline {
            unsafe { q8::matmul_avx2(x, w, scales, y, d) };
        } else {
            unsafe { q8::matmul_sse2(x, w, scales, y, d) };
        }
        return Ok(());
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if arm64::has_dotprod() {
        unsafe { neon::matmul_i8_dot(x, w, scales, y, d) };
        return Ok(());
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        // One activation row (a work block of 1, the smallest arena) against four weight rows;
        // with more rows, each weight word extended once for four of them (two or three rows
        // are padded to four with zero rows, still fewer instructions than a 2 × 2 tile).
        if d.rows == 1 {
            unsafe { int8::matmul::<arm_dsp::Dsp1x4>(x, w, scales, y, d) };
        } else {
            unsafe { int8::matmul::<arm_dsp::Dsp4x4>(x, w, scales, y, d) };
        }
        return Ok(());
    }
    #[allow(unreachable_code)]
    {
        unsafe { int8::matmul_portable(x, w, scales, y, d) };
        Ok(())
    }
}

/// `Y = X · Wᵀ` for int4 weights (`DType::Q4`) in the int4 arithmetic ([`int4`]): the same
/// bits on every kernel level and core. With the `threads` feature, split as [`matmul`] is.
pub fn matmul_q4(x: &[f32], w: int4::Q4Rows<'_>, y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul_q4(x, w, y, d)?;
    #[cfg(feature = "threads")]
    if let Some(done) = threads::split(x, y, d, &|x, y, d, o| matmul_q4_here(x, w.from_row(o), y, d)) {
        return done;
    }
    matmul_q4_here(x, w, y, d)
}

/// The operands of an int4 product: `check_matmul` for `x` and `y`, and `d.out` rows of
/// `d.k.div_ceil(32)` blocks in `w`.
fn check_matmul_q4(x: &[f32], w: int4::Q4Rows<'_>, y: &[f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), d.out.saturating_mul(d.ws), y.len(), Dims { ws: d.k, ..d })?;
    if w.blocks != d.k.div_ceil(crate::blob::Q4_BLOCK) || !w.holds(d.out) {
        return Err(Error::OutputLength { expected: d.out.saturating_mul(w.blocks), got: w.scales.len() });
    }
    if d.accumulate {
        return Err(Error::InvalidHeader("int4 products do not accumulate"));
    }
    Ok(())
}

/// [`matmul_q4`] on this thread.
fn matmul_q4_here(x: &[f32], w: int4::Q4Rows<'_>, y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul_q4(x, w, y, d)?;
    if d.rows == 0 || d.out == 0 {
        return Ok(());
    }
    if d.k == 0 {
        for r in 0..d.rows {
            if let Some(row) = y.get_mut(r * d.ys..r * d.ys + d.out) {
                row.fill(0.0);
            }
        }
        return Ok(());
    }
    // SAFETY (each arm): the CPU has the kernel's features (checked at compile or run time),
    // `check_matmul_q4` verified every row and block touched, and k > 0.
    #[cfg(target_arch = "x86_64")]
    {
        if cpu::x86_level() != cpu::X86Level::Baseline {
            unsafe { q8::matmul_q4_avx2(x, w, y, d) };
        } else {
            unsafe { q8::matmul_q4_sse2(x, w, y, d) };
        }
        return Ok(());
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if arm64::has_dotprod() {
        unsafe { neon::matmul_q4_dot(x, w, y, d) };
        return Ok(());
    }
    // Every product, a single row padded to four (the 4-row tile is the only copy of the
    // driver in flash: a work block of 1 is chosen for RAM, not speed).
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        unsafe { int4::matmul_blocks::<arm_dsp::Dsp4Q4>(x, w, y, d) };
        return Ok(());
    }
    #[allow(unreachable_code)]
    {
        unsafe { int4::matmul_portable(x, w, y, d) };
        Ok(())
    }
}

/// `Y = X · Wᵀ` for `f32` operands by the portable loop alone, on every ISA: one fixed order
/// of multiplications and additions (no FMA), so the same bits on every kernel level and
/// core. For products that must not depend on the CPU (the activation products of int8 blobs).
pub fn matmul_same_everywhere(x: &[f32], w: &[f32], y: &mut [f32], d: Dims) -> Result<(), Error> {
    check_matmul(x.len(), w.len(), y.len(), d)?;
    // The same arithmetic in AVX2 registers where the CPU has it: the same operations in the
    // same order, the same bits (the unit test compares them).
    #[cfg(target_arch = "x86_64")]
    if cpu::x86_level() != cpu::X86Level::Baseline {
        // SAFETY: the CPU has AVX2 (the level says so); `check_matmul` verified every row.
        unsafe { x86::same_order_avx2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), d) };
        return Ok(());
    }
    matmul_portable(x, w, y, d);
    Ok(())
}

/// The shape of multi-head attention over one sequence ([`attention_heads`]): `positions`
/// rows of `width` values in Q, K and the output, `heads` heads of `head_dim` columns, query
/// rows in blocks of `query_block`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heads {
    pub positions: usize,
    pub width: usize,
    pub head_dim: usize,
    pub heads: usize,
    pub query_block: usize,
    /// Applied to the scores before the softmax (1/√head_dim).
    pub scale: f32,
    /// The two products in [`matmul_same_everywhere`]'s fixed order (int8 models: the same
    /// bits on every kernel level and core), else in [`matmul`]'s tiles.
    pub same_bits: bool,
}

/// For every head `h`: `out_h = softmax(scale · Q_h · K_hᵀ) · V_h`, `V` given transposed (`vt`:
/// `width` rows of `positions`, head `h`'s rows from `h · head_dim`), each head's result in its
/// columns of `out`. `scores` holds `query_block × positions` values. With the `threads`
/// feature, inside a rayon pool, the heads are split over its threads ([`threads`]): one
/// split a layer instead of two per head, and the softmax in parallel; the same bits.
pub fn attention_heads(
    q: &[f32],
    k: &[f32],
    vt: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
    a: Heads,
) -> Result<(), Error> {
    #[cfg(feature = "threads")]
    if let Some(done) = threads::split_heads(q, k, vt, out, scores, a) {
        return done;
    }
    heads_here(q, k, vt, out, scores, a, 0..a.heads)
}

/// [`attention_heads`] for the heads `heads`, on this thread (its products are not split).
pub(crate) fn heads_here(
    q: &[f32],
    k: &[f32],
    vt: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
    a: Heads,
    heads: core::ops::Range<usize>,
) -> Result<(), Error> {
    let (s, h, hd, r) = (a.positions, a.width, a.head_dim, a.query_block.max(1));
    let product = |x: &[f32], w: &[f32], y: &mut [f32], d: Dims| {
        if a.same_bits {
            matmul_same_everywhere(x, w, y, d)
        } else {
            matmul_here(x, w, y, d)
        }
    };
    for head in heads {
        let off = head * hd;
        let k_rows = k.get(off..).unwrap_or(&[]);
        let vt_rows = vt.get(off * s..).unwrap_or(&[]);
        for start in (0..s).step_by(r) {
            let n = r.min(s - start);
            let q_rows = q.get(start * h + off..).unwrap_or(&[]);
            let d = Dims { rows: n, out: s, k: hd, xs: h, ws: h, ys: s, accumulate: false };
            product(q_rows, k_rows, scores, d)?;
            for row in scores.chunks_exact_mut(s).take(n) {
                for v in row.iter_mut() {
                    *v *= a.scale;
                }
                softmax(row);
            }
            let o = out.get_mut(start * h + off..).unwrap_or(&mut []);
            let d = Dims { rows: n, out: hd, k: s, xs: s, ws: s, ys: h, accumulate: false };
            product(scores, vt_rows, o, d)?;
        }
    }
    Ok(())
}

/// The portable product: weight row by weight row, so that each is read once per block of
/// rows (from flash, on a microcontroller).
#[inline(always)]
pub(crate) fn matmul_portable<E: Element>(x: &[f32], w: &[E], y: &mut [f32], d: Dims) {
    for o in 0..d.out {
        let w_row = w.get(o * d.ws..o * d.ws + d.k).unwrap_or(&[]);
        for r in 0..d.rows {
            let x_row = x.get(r * d.xs..r * d.xs + d.k).unwrap_or(&[]);
            if let Some(out) = y.get_mut(r * d.ys + o) {
                let v = dot(w_row, x_row);
                *out = if d.accumulate { *out + v } else { v };
            }
        }
    }
}

/// Which x86-64 kernels this CPU runs.
#[cfg(target_arch = "x86_64")]
pub mod cpu {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum X86Level {
        Baseline,
        Avx2,
        Avx512,
    }

    /// From the compile-time target features (`-C target-cpu=native`), else detected once at run
    /// time with the `std` feature, else the SSE2 baseline.
    #[inline]
    pub fn x86_level() -> X86Level {
        if cfg!(all(target_feature = "avx512f", target_feature = "fma", target_feature = "f16c")) {
            return X86Level::Avx512;
        }
        #[cfg(feature = "std")]
        {
            use core::sync::atomic::{AtomicU8, Ordering};
            static LEVEL: AtomicU8 = AtomicU8::new(0);
            let cached = LEVEL.load(Ordering::Relaxed);
            let level = if cached != 0 {
                cached
            } else {
                let detected = if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
                {
                    3
                } else if std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
                {
                    2
                } else {
                    1
                };
                LEVEL.store(detected, Ordering::Relaxed);
                detected
            };
            // A cap set by HRM_KERNELS, never above what the CPU has.
            let level = forced_level().map_or(level, |f| f.min(level));
            return match level {
                3 => X86Level::Avx512,
                2 => X86Level::Avx2,
                _ => X86Level::Baseline,
            };
        }
        #[allow(unreachable_code)]
        if cfg!(all(target_feature = "avx2", target_feature = "fma", target_feature = "f16c")) {
            X86Level::Avx2
        } else {
            X86Level::Baseline
        }
    }

    /// Whether the int8 kernels may use AVX-512 VNNI (and AVX-512BW): at the AVX-512 level,
    /// from the compile-time target features or detected at run time with `std`, unless
    /// `HRM_KERNELS=avx512` (or a lower cap) says otherwise.
    #[inline]
    pub fn has_vnni() -> bool {
        if x86_level() != X86Level::Avx512 {
            return false;
        }
        if cfg!(all(target_feature = "avx512vnni", target_feature = "avx512bw")) {
            return true;
        }
        #[cfg(feature = "std")]
        {
            use core::sync::atomic::{AtomicU8, Ordering};
            static VNNI: AtomicU8 = AtomicU8::new(0);
            let v = match VNNI.load(Ordering::Relaxed) {
                0 => {
                    let capped = std::env::var("HRM_KERNELS").is_ok_and(|v| v == "avx512");
                    let has = std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw");
                    let v = if has && !capped { 2 } else { 1 };
                    VNNI.store(v, Ordering::Relaxed);
                    v
                }
                v => v,
            };
            return v == 2;
        }
        #[allow(unreachable_code)]
        false
    }

    /// Whether the int8 kernels may use AVX-VNNI (`vpdpbusd` in its 256-bit VEX form) where
    /// AVX-512 VNNI is not taken: at the AVX2 level or above, from the compile-time target
    /// features or detected at run time with `std`, unless `HRM_KERNELS` is `avx2`, `avx512` or
    /// `baseline` (`HRM_KERNELS=avxvnni` is the AVX2 level with it).
    #[inline]
    pub fn has_avx_vnni() -> bool {
        if x86_level() == X86Level::Baseline || has_vnni() {
            return false;
        }
        if cfg!(target_feature = "avxvnni") {
            return true;
        }
        #[cfg(feature = "std")]
        {
            use core::sync::atomic::{AtomicU8, Ordering};
            static AVX_VNNI: AtomicU8 = AtomicU8::new(0);
            let v = match AVX_VNNI.load(Ordering::Relaxed) {
                0 => {
                    let capped = std::env::var("HRM_KERNELS").is_ok_and(|v| matches!(v.as_str(), "avx2" | "avx512"));
                    let v = if std::is_x86_feature_detected!("avxvnni") && !capped { 2 } else { 1 };
                    AVX_VNNI.store(v, Ordering::Relaxed);
                    v
                }
                v => v,
            };
            return v == 2;
        }
        #[allow(unreachable_code)]
        false
    }

    /// `HRM_KERNELS=avx2|avxvnni|baseline` caps the level (for benchmarks and tests of each
    /// kernel; `avx512` keeps the f32 kernels but not the int8 VNNI ones, `avxvnni` is the
    /// AVX2 level with the AVX-VNNI int8 kernel).
    #[cfg(feature = "std")]
    fn forced_level() -> Option<u8> {
        use core::sync::atomic::{AtomicU8, Ordering};
        static FORCED: AtomicU8 = AtomicU8::new(0);
        let v = match FORCED.load(Ordering::Relaxed) {
            0 => {
                let v = match std::env::var("HRM_KERNELS").as_deref() {
                    Ok("baseline") => 1,
                    Ok("avx2" | "avxvnni") => 2,
                    _ => 3,
                };
                FORCED.store(v, Ordering::Relaxed);
                v
            }
            v => v,
        };
        (v < 3).then_some(v)
    }
}

/// Which aarch64 kernels this core runs.
#[cfg(target_arch = "aarch64")]
pub mod arm64 {
    /// Whether the int8 kernels may use the dot product (`SDOT`): from the compile-time target
    /// features, or detected at run time with `std`, unless `HRM_KERNELS=neon` (or `baseline`)
    /// keeps them on the portable tile.
    #[inline]
    pub fn has_dotprod() -> bool {
        if cfg!(target_feature = "dotprod") {
            return true;
        }
        #[cfg(feature = "std")]
        {
            use core::sync::atomic::{AtomicU8, Ordering};
            static DOTPROD: AtomicU8 = AtomicU8::new(0);
            let v = match DOTPROD.load(Ordering::Relaxed) {
                0 => {
                    let capped = std::env::var("HRM_KERNELS").is_ok_and(|v| matches!(v.as_str(), "neon" | "baseline"));
                    let v = if std::arch::is_aarch64_feature_detected!("dotprod") && !capped { 2 } else { 1 };
                    DOTPROD.store(v, Ordering::Relaxed);
                    v
                }
                v => v,
            };
            return v == 2;
        }
        #[allow(unreachable_code)]
        false
    }
}

/// `y = W·x` where `x` is a column of a row-major matrix: `x[i] = src[i·stride + col]`.
/// Used by `mlp_t`, which mixes the sequence axis of each channel.
pub fn gather_column(src: &[f32], stride: usize, col: usize, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(src.chunks_exact(stride)) {
        *o = row.get(col).copied().unwrap_or(0.0);
    }
}

/// Inverse of [`gather_column`].
pub fn scatter_column(dst: &mut [f32], stride: usize, col: usize, values: &[f32]) {
    for (v, row) in values.iter().zip(dst.chunks_exact_mut(stride)) {
        if let Some(d) = row.get_mut(col) {
            *d = *v;
        }
    }
}

/// `v ← v / sqrt(mean(v²) + eps)` (the reference's post-norm, no learned scale).
pub fn rms_norm(v: &mut [f32], eps: f32) {
    if v.is_empty() {
        return;
    }
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let mut tail = 0.0f32;
    for &x in chunks.remainder() {
        tail += x * x;
    }
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    let sum = acc.iter().sum::<f32>() + tail;
    let mean = sum / v.len() as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for x in v.iter_mut() {
        *x *= scale;
    }
}

/// `a ← a + b` elementwise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `a ← a + (b + c)` elementwise, the reference's order for `z_L + (z_H + x)`.
pub fn add_sum_assign(a: &mut [f32], b: &[f32], c: &[f32]) {
    for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
        *x += y + z;
    }
}

/// `e^x` to a relative error below 1.2e-7 (about an ulp) on the range that matters (below −87.3
/// it returns 0, above 88.3 it saturates), branch-free so that loops over slices vectorise: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `e^r` by a degree-6 minimax polynomial, `2^n` by building the exponent
/// bits.
///
/// `n`, the integer nearest `x · log2 e`, comes from adding `1.5 · 2^23`, which rounds a value
/// this small to an integer (nearest, ties even) and leaves that integer in the low mantissa
/// bits: no float-to-integer conversion, whose saturating Rust semantics (NaN to 0, out of
/// range clamped) kept the loops scalar (SiLU was 42 % of the built-in Sudoku model's time).
///
/// Until 2026-12-07 it took `n = floor(x · log2 e + 0.5)` (a correction step after the
/// rounding) and a degree-7 Taylor polynomial: 9 more of a SiLU's 48 instructions on the
/// Cortex-M4F, for an error no smaller (measured over the test's sweep, −87 to 88 in steps of
/// 0.0017, against `f64`: 1.1e-7 relative at most now). The coefficients minimise the relative
/// error of `e^r` on `|r| ≤ ln 2 / 2` (Remez by iterated weighted least squares), rounded to
/// `f32`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_in_range(x.clamp(-87.33, 88.3))
}

/// [`exp`] without its clamp: the same value for `x` in `−87.33..=88.3` (and NaN).
#[inline(always)]
fn exp_in_range(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0;
    const C2: f32 = 0.499_999_9;
    const C3: f32 = 0.166_664_2;
    const C4: f32 = 0.041_668_225;
    const C5: f32 = 0.008_374_824;
    const C6: f32 = 0.001_383_683_2;
    let rounded = x * core::f32::consts::LOG2_E + MAGIC;
    let n = rounded - MAGIC;
    let ni = (rounded.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * C6)))));
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// The elementwise loops below, compiled once more for each x86-64 vector level and chosen at
/// run time (the runtime is built for the baseline, so SSE2 otherwise): the same IEEE
/// operations in the same order at every width (Rust never fuses a multiply and an add), so
/// the same bits on every level, only 2–4× more lanes.
macro_rules! elementwise_levels {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident;) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match cpu::x86_level() {
                    // SAFETY: the CPU has the level's features (checked at compile or run time).
                    cpu::X86Level::Avx512 => return unsafe { avx512($($arg),*) },
                    cpu::X86Level::Avx2 => return unsafe { avx2($($arg),*) },
                    cpu::X86Level::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

elementwise_levels! {
    /// In-place softmax.
    pub fn softmax(v: &mut [f32]) => softmax_body;
}

elementwise_levels! {
    /// `out[i] = silu(g[i]) · u[i]` over the shortest of the three.
    pub fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) => silu_mul_body;
}

#[inline(always)]
fn silu_mul_body(out: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = silu(g) * u;
    }
}

#[inline(always)]
fn softmax_body(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Exponentials first, then their sum in independent lanes: both loops vectorise (one loop
    // doing both is held up by the single running sum).
    for x in v.iter_mut() {
        *x = exp(*x - max);
    }
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let mut sum = chunks.remainder().iter().sum::<f32>();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    sum += acc.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for x in v.iter_mut() {
        *x *= inv;
    }
}

/// `dst[c][r] = src[r][c]` for a row-major `src[rows, cols]`.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    if cols == 0 || rows == 0 {
        return;
    }
    for (r, row) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if let Some(d) = dst.get_mut(c * rows + r) {
                *d = v;
            }
        }
    }
}

/// `g · sigmoid(g)`.
#[inline]
pub fn silu(g: f32) -> f32 {
    // On 32-bit Arm (no vector unit to keep busy; the M4F's FPv4 has no minimum or maximum
    // instruction) the exponential's clamp is two compares, two flag transfers and two
    // selects a value; where |g| ≤ 87.33 it changes nothing, so one compare of |g| decides
    // (the same bits: NaN and larger |g| take the clamp).
    #[cfg(target_arch = "arm")]
    if g.abs() <= 87.33 {
        return g / (1.0 + exp_in_range(-g));
    }
    g / (1.0 + exp(-g))
}

/// SwiGLU activation in place: `gate_up = [gate | up]` → `gate[i] ← silu(gate[i]) · up[i]`;
/// returns the activated half.
pub fn swiglu(gate_up: &mut [f32]) -> &mut [f32] {
    let (gate, up) = gate_up.split_at_mut(gate_up.len() / 2);
    swiglu_in_place(gate, up);
    gate
}

elementwise_levels! {
    /// `gate[i] ← silu(gate[i]) · up[i]`.
    pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) => swiglu_body;
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Rotary embedding of one head vector at one position: halves `[v1, v2]` become
/// `[v1·cos − v2·sin, v2·cos + v1·sin]` (the reference's `rotate_half`, not interleaved pairs).
pub fn rope(v: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = v.len() / 2;
    let (v1, v2) = v.split_at_mut(half);
    for (((a, b), &c), &s) in v1.iter_mut().zip(v2.iter_mut()).zip(cos).zip(sin) {
        let (x1, x2) = (*a, *b);
        *a = x1 * c - x2 * s;
        *b = x2 * c + x1 * s;
    }
}

/// Index of the largest value (the first one on ties), as `torch.argmax`.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_value {
            best = i;
            best_value = x;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_matches_naive_sum_for_all_dtypes() {
        let rows = 5;
        let cols = 19; // not a multiple of the lanes
        let w: [f32; 95] = core::array::from_fn(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0);
        let x: [f32; 19] = core::array::from_fn(|i| (i as f32 - 9.0) / 8.0);
        let mut want = [0.0f32; 5];
        for r in 0..rows {
            want[r] = (0..cols).map(|c| w[r * cols + c] * x[c]).sum();
        }
        let mut y = [0.0f32; 5];
        matvec(&w, &x, &mut y).unwrap();
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // The values are exact in f16 and bf16 (quarters of small integers).
        let w16: [f16; 95] = core::array::from_fn(|i| f16::from_f32(w[i]));
        let wb16: [bf16; 95] = core::array::from_fn(|i| bf16::from_f32(w[i]));
        matvec(&w16, &x, &mut y).unwrap();
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
        matvec(&wb16, &x, &mut y).unwrap();
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(matvec(&w[..94], &x, &mut y).is_err());
    }

    fn naive(x: &[f32], xs: usize, w: &[f32], k: usize, rows: usize) -> std::vec::Vec<f32> {
        let out = w.len() / k;
        let mut y = std::vec![0.0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] = (0..k).map(|i| x[r * xs + i] * w[o * k + i]).sum();
            }
        }
        y
    }

    /// Every kernel this machine runs, on awkward shapes (tails in every dimension, strided
    /// rows; `k` past one packed panel, several row tiles and weight panels), for every element
    /// type, against a naive sum.
    #[test]
    fn every_matmul_kernel_matches_a_naive_sum() {
        for &k in &[1usize, 3, 7, 8, 16, 17, 31, 33, 64, 100, 300, 520] {
            for rows in (1..=9).chain([13, 25]) {
                for out in [1usize, 2, 3, 5, 8, 9, 17, 33, 47] {
                    let xs = k + 3;
                    let x: std::vec::Vec<f32> = (0..rows * xs).map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0).collect();
                    let w: std::vec::Vec<f32> = (0..out * k).map(|i| ((i * 11 % 17) as f32 - 8.0) / 4.0).collect();
                    let want = naive(&x, xs, &w, k, rows);
                    let w16: std::vec::Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                    let wb: std::vec::Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                    let close = |y: &[f32], what: &str| {
                        for r in 0..rows {
                            for o in 0..out {
                                let (a, b) = (y[r * (out + 1) + o], want[r * out + o]);
                                assert!(
                                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                                    "{what} k {k} rows {rows} out {out}: {a} vs {b}"
                                );
                            }
                        }
                    };
                    let mut y = std::vec![0.0f32; rows * (out + 1)];
                    let s = Dims { rows, out, k, xs, ws: k, ys: out + 1, accumulate: false };
                    matmul(&x, &w, &mut y, s).unwrap();
                    close(&y, "dispatch f32");
                    matmul(&x, &w16, &mut y, s).unwrap();
                    close(&y, "dispatch f16");
                    matmul(&x, &wb, &mut y, s).unwrap();
                    close(&y, "dispatch bf16");
                    matmul_portable(&x, &w, &mut y, s);
                    close(&y, "portable");
                    // The fixed-order loop gives the portable loop's bits whatever the level.
                    let mut same = std::vec![0.0f32; y.len()];
                    matmul_same_everywhere(&x, &w, &mut same, s).unwrap();
                    assert!(
                        same.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "same-everywhere differs: k {k} rows {rows} out {out}"
                    );
                    // The portable product gives the bits of one `dot` per output.
                    for r in 0..rows {
                        for o in 0..out {
                            let one = dot(&w[o * k..(o + 1) * k], &x[r * xs..r * xs + k]);
                            assert_eq!(y[r * (out + 1) + o].to_bits(), one.to_bits(), "portable: k {k} at {r},{o}");
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    {
                        unsafe { x86::matmul_sse2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), s) };
                        close(&y, "sse2 f32");
                        unsafe { x86::matmul_sse2(x.as_ptr(), w16.as_ptr(), y.as_mut_ptr(), s) };
                        close(&y, "sse2 f16");
                        unsafe { x86::matmul_sse2(x.as_ptr(), wb.as_ptr(), y.as_mut_ptr(), s) };
                        close(&y, "sse2 bf16");
                        if std::is_x86_feature_detected!("avx2")
                            && std::is_x86_feature_detected!("fma")
                            && std::is_x86_feature_detected!("f16c")
                        {
                            unsafe { x86::matmul_avx2(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx2 f32");
                            unsafe { x86::matmul_avx2(x.as_ptr(), w16.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx2 f16");
                            unsafe { x86::matmul_avx2(x.as_ptr(), wb.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx2 bf16");
                        }
                        if std::is_x86_feature_detected!("avx512f")
                            && std::is_x86_feature_detected!("fma")
                            && std::is_x86_feature_detected!("f16c")
                        {
                            unsafe { x86::matmul_avx512(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx512 f32");
                            unsafe { x86::matmul_avx512(x.as_ptr(), w16.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx512 f16");
                            unsafe { x86::matmul_avx512(x.as_ptr(), wb.as_ptr(), y.as_mut_ptr(), s) };
                            close(&y, "avx512 bf16");
                        }
                    }
                }
            }
        }
        // Operands too short for the shape are refused, not read past.
        let mut y = [0.0f32; 4];
        let d = Dims::dense(2, 2, 4);
        assert!(matmul(&[1.0; 8], &[1.0f32; 8], &mut y, d).is_ok());
        assert!(matmul(&[1.0; 7], &[1.0f32; 8], &mut y, d).is_err());
        assert!(matmul(&[1.0; 8], &[1.0f32; 7], &mut y, d).is_err());
        assert!(matmul(&[1.0; 8], &[1.0f32; 8], &mut y[..3], d).is_err());
        assert!(matmul(&[1.0; 8], &[1.0f32; 8], &mut y, Dims { xs: 3, ..d }).is_err());
        // Strided weight rows (a head of K inside a wider matrix).
        let w = [1.0f32, 2.0, 9.0, 3.0, 4.0, 9.0];
        let strided = Dims { rows: 1, out: 2, k: 2, xs: 2, ws: 3, ys: 2, accumulate: false };
        matmul(&[1.0, 1.0], &w, &mut y[..2], strided).unwrap();
        assert_eq!(&y[..2], &[3.0, 7.0]);
        matmul(&[1.0, 1.0], &w, &mut y[..2], Dims { accumulate: true, ..strided }).unwrap();
        assert_eq!(&y[..2], &[6.0, 14.0]);
    }

    /// `w` (`out × k`, row-major) in the layout of `DType::F32Panels`, as the converter writes it.
    fn to_panels(w: &[f32], out: usize, k: usize) -> std::vec::Vec<f32> {
        let p = crate::blob::F32_PANEL_ROWS;
        let mut panels = std::vec![0.0f32; out.div_ceil(p) * p * k];
        for r in 0..out {
            for c in 0..k {
                panels[crate::blob::f32_panel_index(r, c, k)] = w[r * k + c];
            }
        }
        panels
    }

    /// Panels stored by the converter give the bits of the row-major product at every x86-64
    /// level and on NEON (the same tiles and sums, without the packing), stored or added, on
    /// awkward shapes (outputs past a panel and past a tile, `k` past a block of 512, strided
    /// rows); the portable panel loop is close to the naive sum; short operands are refused.
    #[test]
    fn panels_give_the_bits_of_the_row_major_product() {
        for &k in &[1usize, 7, 16, 33, 300, 513, 1100] {
            for rows in [1usize, 5, 6, 7, 13] {
                for out in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 47, 64, 100] {
                    let (xs, ys) = (k + 3, out + 2);
                    let x: std::vec::Vec<f32> = (0..rows * xs).map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0).collect();
                    let w: std::vec::Vec<f32> = (0..out * k).map(|i| ((i * 11 % 17) as f32 - 8.0) / 4.0).collect();
                    let panels = to_panels(&w, out, k);
                    for accumulate in [false, true] {
                        let s = Dims { rows, out, k, xs, ws: k, ys, accumulate };
                        let start: std::vec::Vec<f32> = (0..rows * ys).map(|i| (i % 5) as f32 - 2.0).collect();
                        let (mut want, mut got) = (start.clone(), start.clone());
                        matmul(&x, &w, &mut want, s).unwrap();
                        matmul_panels(&x, &panels, &mut got, Dims { ws: 0, ..s }).unwrap();
                        let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                        let what = std::format!("k {k} rows {rows} out {out} accumulate {accumulate}");
                        if cfg!(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon"))) {
                            assert!(same, "panels differ from the row-major product: {what}");
                        }
                        let mut portable = start.clone();
                        matmul_panels_portable(&x, &panels, &mut portable, s);
                        for (i, (a, b)) in portable.iter().zip(&want).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                                "portable panels {what} at {i}: {a} vs {b}"
                            );
                        }
                        #[cfg(target_arch = "x86_64")]
                        {
                            let level = |f: unsafe fn(*const f32, *const f32, *mut f32, Dims), name: &str| {
                                let (mut a, mut b) = (start.clone(), start.clone());
                                unsafe { f(x.as_ptr(), panels.as_ptr(), a.as_mut_ptr(), s) };
                                let rows_kernel = match name {
                                    "sse2" => x86::matmul_sse2::<f32>,
                                    "avx2" => x86::matmul_avx2::<f32>,
                                    _ => x86::matmul_avx512::<f32>,
                                };
                                unsafe { rows_kernel(x.as_ptr(), w.as_ptr(), b.as_mut_ptr(), s) };
                                assert!(
                                    a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                                    "{name} panels differ: {what}"
                                );
                            };
                            level(x86::matmul_sse2_panels, "sse2");
                            if std::is_x86_feature_detected!("avx2")
                                && std::is_x86_feature_detected!("fma")
                                && std::is_x86_feature_detected!("f16c")
                            {
                                level(x86::matmul_avx2_panels, "avx2");
                            }
                            if std::is_x86_feature_detected!("avx512f")
                                && std::is_x86_feature_detected!("fma")
                                && std::is_x86_feature_detected!("f16c")
                            {
                                level(x86::matmul_avx512_panels, "avx512");
                            }
                        }
                    }
                }
            }
        }
        // Panels too short for the outputs (rounded up to 16 rows) are refused, not read past.
        let mut y = [0.0f32; 6];
        let d = Dims::dense(2, 3, 4);
        assert!(matmul_panels(&[1.0; 8], &[1.0f32; 64], &mut y, d).is_ok());
        assert!(matmul_panels(&[1.0; 8], &[1.0f32; 63], &mut y, d).is_err());
        assert!(matmul_panels(&[1.0; 7], &[1.0f32; 64], &mut y, d).is_err());
        assert!(matmul_panels(&[1.0; 8], &[1.0f32; 64], &mut y[..5], d).is_err());
    }

    /// The int8 arithmetic written out plainly: per-row quantisation, `i64` sums, the scales.
    /// The quantisation's integer clamp after rounding and its maximum on the bits give what
    /// rounding a float clamped first and a float maximum that skips NaN give, at the edges.
    #[test]
    fn quantise_and_row_scale_match_their_float_definitions_at_the_edges() {
        let edges = [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            126.5,
            127.0,
            127.49,
            127.5,
            128.0,
            -127.5,
            -128.5,
            4_194_303.5,
            4_194_304.0,
            8_388_609.0,
            12_582_911.0,
            12_582_912.0,
            16_777_216.0,
            1e30,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            f32::NAN,
        ];
        for &e in &edges {
            for v in [e, -e] {
                let t = v * 1.0;
                let want = if t.is_nan() { 0 } else { t.clamp(-127.0, 127.0).round_ties_even() as i32 };
                assert_eq!(int8::quantise(v, 1.0), want, "quantise({v})");
                assert_eq!(int8::quantise_saturating(v, 1.0), want, "quantise_saturating({v})");
                assert_eq!(int8::quantise_selected(v, 1.0), want, "quantise_selected({v})");
            }
        }
        // Both ways of finishing the rounding agree on every kind of value and scale.
        let mut bits = 0x9e37_79b9u32;
        for _ in 0..200_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(bits);
            for inv in [1.0, 0.37, 127.0 / 3.5, 1e-30, 1e30, 0.0] {
                assert_eq!(int8::quantise_saturating(v, inv), int8::quantise_selected(v, inv), "{v} · {inv}");
            }
        }
        let rows: [&[f32]; 6] = [
            &[1.0, -3.0, f32::NAN, 2.0],
            &[f32::NAN; 9],
            &[-0.0, 0.0],
            &[f32::INFINITY, 1.0, f32::NAN, -5.0, 0.25, 0.5, 0.75, 1.0, 1e-45],
            &[-1e30, 3.0, 2.0, 1.0, 0.5, 0.25, 0.125, 1e-40, -7.5, 6.0],
            &[],
        ];
        for row in rows {
            let m = row.iter().filter(|v| !v.is_nan()).fold(0.0f32, |m, v| m.max(v.abs()));
            let want = if m > 0.0 { (m / 127.0, 127.0 / m) } else { (0.0, 0.0) };
            let got = int8::row_scale(row);
            assert_eq!((got.0.to_bits(), got.1.to_bits()), (want.0.to_bits(), want.1.to_bits()), "{row:?}");
        }
    }

    fn int8_reference(x: &[f32], w: &[i8], scales: &[f32], d: Dims) -> std::vec::Vec<f32> {
        let mut y = std::vec![f32::NAN; d.rows * d.ys];
        for r in 0..d.rows {
            let row = &x[r * d.xs..r * d.xs + d.k];
            let m = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let (sx, inv) = if m > 0.0 { (m / 127.0, 127.0 / m) } else { (0.0, 0.0) };
            let q: std::vec::Vec<i64> = row
                .iter()
                .map(|v| {
                    let t = v * inv;
                    if t.is_nan() {
                        0
                    } else {
                        i64::from((t.round_ties_even() as i32).clamp(-127, 127))
                    }
                })
                .collect();
            for o in 0..d.out {
                let exact: i64 = q.iter().zip(&w[o * d.ws..o * d.ws + d.k]).map(|(a, &b)| a * i64::from(b)).sum();
                y[r * d.ys + o] = (sx * scales[o]) * exact as f32;
            }
        }
        y
    }

    /// Every int8 kernel this machine has computes exactly the arithmetic of [`int8`]: the
    /// same bits as the plain reference, for shapes around every tile size and step, strided
    /// rows, rows chunked along `k`, rows beyond the exact `i32` range, zero and NaN rows.
    #[test]
    fn every_int8_kernel_gives_the_bits_of_the_reference() {
        let mut seed = 0x1234_5678u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        type Kernel = (&'static str, fn(&[f32], &[i8], &[f32], &mut [f32], Dims));
        let mut kernels: std::vec::Vec<Kernel> = std::vec![
            ("portable", |x, w, s, y, d| unsafe { int8::matmul::<int8::Portable>(x, w, s, y, d) }),
            ("dispatch", |x, w, s, y, d| matmul_i8(x, w, s, y, d).unwrap()),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.push(("sse2", |x, w, s, y, d| unsafe { q8::matmul_sse2(x, w, s, y, d) }));
            if std::is_x86_feature_detected!("avx2") {
                kernels.push(("avx2", |x, w, s, y, d| unsafe { q8::matmul_avx2(x, w, s, y, d) }));
            }
            if std::is_x86_feature_detected!("avxvnni") {
                kernels.push(("avx-vnni", |x, w, s, y, d| unsafe { q8::matmul_avx_vnni(x, w, s, y, d) }));
            } else {
                std::eprintln!("SKIPPED: this CPU has no AVX-VNNI; its int8 kernel is not checked here");
            }
            if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw") {
                kernels.push(("vnni", |x, w, s, y, d| unsafe { q8::matmul_vnni(x, w, s, y, d) }));
                kernels.push(("vnni panels", |x, w, s, y, d| unsafe { q8::matmul_vnni_panels(x, w, s, y, d) }));
            } else {
                std::eprintln!("SKIPPED: this CPU has no AVX-512 VNNI; its int8 kernel is not checked here");
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                kernels.push(("neon sdot", |x, w, s, y, d| unsafe { neon::matmul_i8_dot(x, w, s, y, d) }));
            } else {
                std::eprintln!("SKIPPED: this core has no dot product; its int8 kernel is not checked here");
            }
        }
        let mut shapes = std::vec::Vec::new();
        for &k in &[1usize, 3, 15, 16, 17, 63, 64, 65, 130, 300] {
            for &(rows, out) in &[(1usize, 1usize), (1, 5), (3, 5), (4, 4), (5, 9), (8, 3), (17, 4), (20, 7)] {
                shapes.push((k, rows, out));
            }
        }
        // Rows chunked along k (longer than a pack holds), and beyond i32's exact range; more
        // rows than one group of the AVX2 panels' pack holds (groups of rows, chunks of 256).
        shapes.push((9_000, 5, 5));
        shapes.push((300, 200, 21));
        shapes.push((int8::MAX_EXACT_K + 77, 2, 2));
        for (n, &(k, rows, out)) in shapes.iter().enumerate() {
            let (xs, ws, ys) = (k + 3, k + 1, out + 2);
            let mut x: std::vec::Vec<f32> = (0..rows * xs).map(|_| (next() % 2001) as f32 / 100.0 - 10.0).collect();
            if n % 7 == 3 {
                x[..k].fill(0.0); // a zero row
            }
            if n % 11 == 5 && rows > 1 {
                x[xs + k / 2] = f32::NAN; // a NaN activation quantises to 0
            }
            let w: std::vec::Vec<i8> = (0..out * ws).map(|_| next() as u8 as i8).collect();
            let scales: std::vec::Vec<f32> = (0..out).map(|i| 0.01 + i as f32 * 0.003).collect();
            let d = Dims { rows, out, k, xs, ws, ys, accumulate: false };
            let want = int8_reference(&x, &w, &scales, d);
            for (name, kernel) in &kernels {
                let mut y = std::vec![f32::NAN; rows * ys];
                kernel(&x, &w, &scales, &mut y, d);
                for r in 0..rows {
                    for o in 0..out {
                        let (a, b) = (y[r * ys + o], want[r * ys + o]);
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{name}: k {k} rows {rows} out {out} at {r},{o}: {a} vs {b}"
                        );
                    }
                    assert!(y[r * ys + out..(r + 1) * ys].iter().all(|v| v.is_nan()), "{name} wrote past the row");
                }
            }
        }
        // Refused: accumulation, too few scales, short operands.
        let mut y = [0.0f32; 4];
        let d = Dims::dense(2, 2, 4);
        assert!(matmul_i8(&[1.0; 8], &[1; 8], &[1.0; 2], &mut y, d).is_ok());
        assert!(matmul_i8(&[1.0; 8], &[1; 8], &[1.0; 2], &mut y, Dims { accumulate: true, ..d }).is_err());
        assert!(matmul_i8(&[1.0; 8], &[1; 8], &[1.0; 1], &mut y, d).is_err());
        assert!(matmul_i8(&[1.0; 8], &[1; 7], &[1.0; 2], &mut y, d).is_err());
    }

    /// The elementwise loops that call `exp` give the same bits on every vector level this CPU
    /// has.
    #[test]
    fn exp_loops_agree_on_every_level() {
        let mut xs: std::vec::Vec<f32> = (0..400_000).map(|i| -100.0 + i as f32 * 0.000_5).collect();
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 1e-30, -1e-30, 1e30, -1e30]);
        assert!(exp(f32::NAN).is_nan());
        let u: std::vec::Vec<f32> = xs.iter().map(|x| 0.5 - x * 0.01).collect();
        let mut want = std::vec![0.0f32; xs.len()];
        silu_mul_body(&mut want, &xs, &u);
        let mut got = std::vec![0.0f32; xs.len()];
        silu_mul(&mut got, &xs, &u);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "silu_mul at this CPU's level");
        let mut gate = xs.clone();
        swiglu_in_place(&mut gate, &u);
        assert_eq!(bits(&gate), bits(&want), "swiglu at this CPU's level");
        let mut p: std::vec::Vec<f32> = xs[..1000].to_vec();
        let mut q = p.clone();
        softmax(&mut p);
        softmax_body(&mut q);
        assert_eq!(bits(&p), bits(&q), "softmax at this CPU's level");
    }

    #[test]
    fn exp_relative_error_is_below_1_2e_7() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max((got - want).abs() / want);
            x += 0.001_7;
        }
        assert!(worst < 1.2e-7, "relative error {worst:e}");
        assert!(exp(-200.0) < 1.2e-38);
        assert!(exp(200.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn norms_and_activations() {
        let mut v = [3.0f32, 4.0];
        rms_norm(&mut v, 0.0);
        // mean of squares 12.5 → scale 1/sqrt(12.5)
        assert!((v[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
        let mut p = [1.0f32, 2.0, 3.0];
        softmax(&mut p);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let mut gu = [0.0f32, 1.0, 5.0, 2.0];
        let out = swiglu(&mut gu);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 2.0 / (1.0 + (-1.0f32).exp()) * 1.0).abs() < 1e-6);
        let mut h = [1.0f32, 2.0, 3.0, 4.0];
        rope(&mut h, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(h, [-3.0, 2.0, 1.0, 4.0]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }
}
