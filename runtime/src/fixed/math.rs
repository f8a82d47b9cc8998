//! Integer-only math primitives for the fixed-point forward pass.
//!
//! Everything here is pure integer arithmetic on fixed-width types: no floating point, no
//! allocation and no panics (no unchecked indexing, no division by a possible zero, no
//! overflow), so a Cortex-M0 without an FPU and a desktop CPU give bit-identical results.
//!
//! Conventions shared by every function:
//! - a fixed-point number with `f` fraction bits holds the integer `round(v · 2^f)`;
//! - rounding is to nearest, ties away from zero (`2.5 → 3`, `-2.5 → -3`), see [`shift_round`];
//! - results that do not fit saturate to the bounds of the result type.
//!
//! The sigmoid and the exponential read const tables (sampled every 1/16) and interpolate
//! between entries with a curvature-corrected, monotone scheme, see `interp_segment`.
#![cfg_attr(not(test), deny(clippy::float_arithmetic))]

/// Fraction bits beyond which the table functions first drop input bits (see [`sigmoid_q15`]):
/// 40 bits resolve `t` to 2^-40, far finer than any output step, and keep every intermediate
/// product below 2^113.
const MAX_TABLE_FRAC: u32 = 40;

/// Exact decomposition of an f32 given by its bits: value = mantissa × 2^exponent with
/// |mantissa| < 2^24 and the sign carried by the mantissa.
///
/// Normal numbers give the 24-bit significand (implicit bit included) and an exponent in
/// [-149, 104]; subnormals give their 23-bit fraction and exponent -149, so they are exact too.
/// The mantissa is not normalised (trailing zero bits are kept). Zero of either sign gives
/// `Some((0, 0))`; infinities and NaNs give `None`.
#[inline]
pub fn decompose_f32(bits: u32) -> Option<(i32, i32)> {
    let biased = ((bits >> 23) & 0xff) as i32;
    let fraction = (bits & 0x7f_ffff) as i32;
    let (magnitude, exponent) = match biased {
        0xff => return None,
        // Subnormals have no implicit leading bit and the exponent of the smallest normal.
        0 => (fraction, -149),
        _ => (fraction | 0x80_0000, biased - 150),
    };
    if magnitude == 0 {
        return Some((0, 0));
    }
    let mantissa = if bits >> 31 == 1 { -magnitude } else { magnitude };
    Some((mantissa, exponent))
}

/// A sign and a magnitude as an i64, saturating: magnitudes above the range give `i64::MAX`
/// or `i64::MIN` (-2^63 itself is exact).
fn saturate(negative: bool, magnitude: u128) -> i64 {
    match (negative, i64::try_from(magnitude)) {
        (false, Ok(m)) => m,
        (false, Err(_)) => i64::MAX,
        (true, Ok(m)) => -m,
        (true, Err(_)) => i64::MIN,
    }
}

/// `round(v / 2^shift)` for `shift > 0`, rounding half away from zero; `v · 2^(-shift)` for
/// `shift <= 0`. The result saturates to the i64 range.
///
/// Exact for every `v` and every `shift` (no intermediate overflow): for `shift >= 129` the
/// quotient is below 1/4 and the result is 0; for `shift` in 127..=128 it is -1, 0 or 1 (for
/// example `shift_round(i128::MIN, 128) == -1`, since -1/2 rounds away from zero). A nonzero `v`
/// with `shift <= -64` always saturates.
pub fn shift_round(v: i128, shift: i32) -> i64 {
    // Most values fit 64 bits: the same rounding there (on a 32-bit core i128 shifts are
    // chains of word operations; a unit test compares with the exact reference).
    if (1..=63).contains(&shift) {
        if let Ok(small) = i64::try_from(v) {
            if small.unsigned_abs() < 1 << 62 {
                return shift_round_small(small, shift as u32);
            }
        }
    }
    // Work on the magnitude so that v and -v round symmetrically (half away from zero);
    // |i128::MIN| = 2^127 fits u128.
    let magnitude = v.unsigned_abs();
    let s = shift.unsigned_abs();
    let rounded = if shift > 0 {
        if s > 128 {
            0
        } else {
            // floor((floor(|v| / 2^(s-1)) + 1) / 2) = floor(|v| / 2^s + 1/2); s - 1 <= 127.
            // halves <= 2^127, so + 1 cannot overflow.
            let halves = magnitude >> (s - 1);
            (halves + 1) >> 1
        }
    } else if magnitude == 0 {
        0
    } else if s >= 64 || magnitude >> 64 != 0 {
        // At least 2^64: beyond i64 whatever the sign; u128::MAX just marks "saturate".
        u128::MAX
    } else {
        // |v| < 2^64 and s < 64: the product stays below 2^128.
        magnitude << s
    };
    saturate(v < 0, rounded)
}

/// `round(v × m × 2^e)`, rounding half away from zero, saturating to the i64 range.
///
/// The product `v × m` is exact in i128 (|v × m| <= 2^94), then scaled by [`shift_round`], so the
/// result is exact for every `e` (`e = i32::MIN` and very negative `e` give 0; very positive `e`
/// with a nonzero product saturate).
#[inline]
pub fn mul_pow2_round(v: i64, m: i32, e: i32) -> i64 {
    // A 32-bit `v` (the products' sums, the activations) times the mantissa fits i64: one
    // 32 × 32 multiply instead of an i128 one on a 32-bit core; `shift_round` then takes its
    // 64-bit path. The same value.
    if let Ok(small) = i32::try_from(v) {
        return shift_round_i64(i64::from(small) * i64::from(m), e.saturating_neg());
    }
    // saturating_neg maps i32::MIN to i32::MAX: both shifts are far past the 2^94 product.
    shift_round(i128::from(v) * i128::from(m), e.saturating_neg())
}

/// `round(value × 2^frac)` of the f32 with these bits, rounding half away from zero and
/// saturating to the i32 range; `None` for infinities and NaNs. Any `frac` is allowed,
/// negative ones included (`-0.0` gives 0).
pub fn fixed_from_f32_bits(bits: u32, frac: i32) -> Option<i32> {
    let (mantissa, exponent) = decompose_f32(bits)?;
    // exponent is in [-149, 104]; the saturating add only acts when |frac| is near 2^31,
    // where the result is 0 or saturated either way.
    let v = mul_pow2_round(i64::from(mantissa), 1, exponent.saturating_add(frac));
    Some(i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX }))
}

/// `floor(sqrt(n))`, exact for every u64 (`isqrt_u64(u64::MAX) == 2^32 - 1`).
///
/// Digit-by-digit (base 4) method: one result bit per step, at most 32 steps, only shifts,
/// adds and compares, so it is cheap on cores without a divider.
pub fn isqrt_u64(n: u64) -> u64 {
    let mut rem = n;
    let mut root = 0u64;
    // The largest power of four not above n (or 1 for n = 0).
    let mut bit = 1u64 << 62;
    while bit > n && bit > 1 {
        bit >>= 2;
    }
    // When bit = 4^k, root = 2^(k+1) · P where P < 2^32 holds the result bits above k, and
    // P = 0 for k = 31; so root + bit < 2^63 + 2^60 and nothing overflows.
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `⌊2^e / n⌋` for `n ≥ 1` where it is below 2^64 (`2^e < n · 2^64`), [`rsqrt`]'s quotient.
/// For `n < 2^32` (the integer path's `i16` rows: a sum of two `i16` values squares to below
/// 2^32, so their mean does, but for the epsilon) two divisions of 64-bit words: with
/// `2^(e−32) = h·n + r`, the quotient is `2^32·h + ⌊2^32·r / n⌋` (`h < 2^32` since the
/// quotient is below 2^64, `2^32·r < 2^64`). Otherwise restoring long division, one quotient
/// bit a step in 64-bit words (a 33rd bit of the remainder carried out of the shift). The
/// `u128` division these replace is a library routine of about 3,600 instructions on a 32-bit
/// core; the long division is about 1,200 (64 steps) on the M4F.
fn pow2_div(e: u32, n: u64) -> u64 {
    if e < 64 {
        return (1u64 << e) / n;
    }
    // n < 2^32 and the quotient below 2^64: 2^e < 2^96, so e − 32 < 64.
    if n >> 32 == 0 && e < 96 {
        let top = 1u64 << (e - 32);
        let (high, rest) = (top / n, top % n);
        return (high << 32) | ((rest << 32) / n);
    }
    pow2_div_long(e, n)
}

/// [`pow2_div`] for `e ≥ 64` by restoring long division.
fn pow2_div_long(e: u32, n: u64) -> u64 {
    // 2^(e − 64) < n: the remainder before the first quotient bit.
    let mut rem = 1u64 << (e - 64).min(63);
    let mut q = 0u64;
    for _ in 0..64 {
        let carry = rem >> 63;
        rem <<= 1;
        q <<= 1;
        // The remainder is 2^64·carry + rem; with a carry it exceeds n (< 2^64), and the
        // difference is below n, so the wrapping subtraction gives it.
        if carry != 0 || rem >= n {
            rem = rem.wrapping_sub(n);
            q |= 1;
        }
    }
    q
}

/// `1 / sqrt(n)` for `n >= 1` as `(inv, shift)` with `1/sqrt(n) ≈ inv × 2^(-shift)`,
/// `inv` in [2^31, 2^32] and `shift` in 31..=63; `n == 0` gives `(0, 0)` (callers add an epsilon
/// first).
///
/// `inv` is `sqrt(floor(2^(2·shift) / n))` rounded to nearest, so its relative error against the
/// exact value is below 2^-32 + 2^-63 (measured: 2.32e-10 ≈ 2^-32.0); the bound promised to
/// callers is 2^-31. Costs one u128 / u64 division (a software routine on 32-bit cores) and one
/// [`isqrt_u64`]: meant for per-row normalisation, not per element.
pub fn rsqrt(n: u64) -> (u64, i32) {
    if n == 0 {
        return (0, 0);
    }
    // l = ceil(log2 n) in 0..=64; shift = ceil((l + 62) / 2) puts q = 2^(2·shift) / n in
    // [2^62, 2^64), so its square root lies in [2^31, 2^32) before rounding.
    let l = 64 - (n - 1).leading_zeros();
    let shift = (l + 63) / 2;
    let q = pow2_div(2 * shift, n);
    let root = isqrt_u64(q);
    // Round to nearest: sqrt(q) >= root + 1/2 exactly when q >= root² + root + 1/4, i.e. (all
    // integers) q - root² > root. root < 2^32, so root² cannot overflow, and q >= root².
    let inv = if q - root * root > root { root + 1 } else { root };
    (inv, shift as i32)
}

/// One step of the table interpolation: the value at `r / 2^bits` of the way from entry `p1`
/// to entry `p2` (0 <= r < 2^bits, bits <= 40, entries below 2^31), given the neighbours `p0`
/// before `p1` and `p3` after `p2` (`None` past a table end: extrapolated quadratically from the
/// other three). Rounded half away from zero.
///
/// Why not plain linear interpolation: the chord misses the curve by `h²·f''·r(1-r)/2`, 1.54 Q15
/// units for the sigmoid at h = 1/16 and 4.9e-4 relative for e^-t, which with the two
/// roundings breaks the error budgets. So a correction `k·r(1-r)` is added, with `h²·f''`
/// estimated by the mean second difference at both ends: `k = (p1 + p2 - p0 - p3) / 4`.
/// `k` is clamped to `|k| <= |p2 - p1|`, which keeps the slope `(p2 - p1) + k·(1 - 2r)` of one
/// sign on [0, 1]: each piece runs monotonically from `p1` to `p2`. So the interpolant is
/// continuous, monotone wherever the table is, and never leaves [min(p1, p2), max(p1, p2)].
fn interp_segment(p0: Option<i64>, p1: i64, p2: i64, p3: Option<i64>, r: u64, bits: u32) -> i64 {
    let (p0, p3) = match (p0, p3) {
        (Some(p0), Some(p3)) => (p0, p3),
        (None, Some(p3)) => (3 * (p1 - p2) + p3, p3),
        (Some(p0), None) => (p0, 3 * (p2 - p1) + p0),
        (None, None) => (2 * p1 - p2, 2 * p2 - p1),
    };
    let d = p2 - p1;
    // 4k, limited to 4|d|.
    let k4 = (p1 + p2 - p0 - p3).max(-4 * d.abs()).min(4 * d.abs());
    // On a 32-bit core every i128 operation below is a library call or a chain of them. With
    // entries within ±2^17 (the tables' Q15 values and their extrapolations) and at most 20
    // fraction bits, each term fits i64: |4·(p1·one + d·r)·one| < 2^61, |4k·r·(one − r)| < 2^57,
    // so the same sum in i64, rounded the same way (a unit test compares both).
    if bits <= 20 && [p0, p1, p2, p3].iter().all(|p| p.unsigned_abs() <= 1 << 17) {
        let one = 1i64 << bits;
        let r = r as i64;
        let scaled = 4 * (p1 * one + d * r) * one + k4 * r * (one - r);
        return shift_round_small(scaled, 2 * bits + 2);
    }
    let one = 1i128 << bits;
    let r = i128::from(r);
    // y · 2^(2·bits + 2) = 4·(p1·one + d·r)·one + 4k·r·(one - r); with entries <= 2^30 each term
    // is at most 2^112 (p1 + d·r/one stays in [0, 2^30]; 4k·r·(one - r) <= 2^32 · 2^78).
    let scaled = 4 * (i128::from(p1) * one + i128::from(d) * r) * one + i128::from(k4) * r * (one - r);
    shift_round(scaled, 2 * bits as i32 + 2)
}

/// [`shift_round`] of an `i64`: the same value, without building an `i128` where the 64-bit
/// path applies (on a 32-bit core the conversions and checks of the wide path cost more than
/// the rounding; every requantised output and SiLU takes this).
#[inline]
pub fn shift_round_i64(v: i64, shift: i32) -> i64 {
    if (1..=63).contains(&shift) && v.unsigned_abs() < 1 << 62 {
        return shift_round_small(v, shift as u32);
    }
    shift_round(i128::from(v), shift)
}

/// One output column's requantisation in an integer product: `round(sum · scale · 2^d)`,
/// half away from zero, clamped to `±limit`, for an `i32` sum, a weight row's `f32` scale and
/// `d` = the output's fraction bits minus the input's. The same integers as
/// `shift_round_i64(sum · m, s)` on the scale's `(m, e)` ([`decompose_f32`]), `s = −(e + d)`,
/// then the clamp (a unit test compares both on every exponent and the edges).
///
/// The scale is taken apart once per column ([`Requant::new`]). For the shifts of real models
/// (`s` in 25..=63) [`Requant::apply`] is then a 32 × 32 → 64 multiply of the magnitudes and a
/// shift of its high word, as on a 32-bit core it should be: with `|m| < 2^24` the multiplier
/// `|m| · 2^a`, `a = max(0, 33 − s) ≤ 8`, still fits 32 bits, the product `|sum| · |m| · 2^a <
/// 2^63`, and `⌊|sum · m| / 2^(s−1)⌋` is its high word shifted by `s + a − 33` (0 to 30);
/// rounding half away from zero adds the last bit shifted out. Other shifts take
/// [`shift_round_i64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    /// `|m| · 2^a` where the high word suffices, else `|m|` (at most 2^24 − 1).
    multiplier: u32,
    /// The high word's shift, `s + a − 33`, where it suffices.
    high_shift: u32,
    /// Whether the high word suffices (`s` in 25..=63).
    high: bool,
    /// Whether the scale is negative.
    negative: bool,
    /// `s = −(e + d)`, for the other shifts.
    shift: i32,
}

impl Requant {
    /// `None` for a scale that is an infinity or a NaN.
    ///
    /// Every real model's case, a normal scale whose shift `s` is in 25..=63, is worked out
    /// here from the bits in a dozen instructions; the rest (zero, subnormal and non-finite
    /// scales, other shifts, a `d` so large that `e + d` could saturate) takes
    /// [`Requant::new_general`], the same fields (a unit test compares them). The integer
    /// path builds one per output and row block: through the general code alone that was
    /// about 35 instructions each, 18 M of a fixed-point segment on the M4F.
    #[inline(always)]
    pub fn new(scale: f32, d: i32) -> Option<Self> {
        let bits = scale.to_bits();
        let biased = (bits >> 23) & 0xff;
        // s = −(e + d) with e = biased − 150; exact (no wrap) for |d| < 2^24.
        let shift = 150i32.wrapping_sub(biased as i32).wrapping_sub(d);
        let normal = biased.wrapping_sub(1) < 254;
        if normal && d.unsigned_abs() < 1 << 24 && shift.wrapping_sub(25) as u32 <= 63 - 25 {
            let magnitude = (bits & 0x7f_ffff) | 0x80_0000;
            let (multiplier, high_shift) =
                if shift <= 33 { (magnitude << (33 - shift), 0) } else { (magnitude, (shift - 33) as u32) };
            return Some(Self { multiplier, high_shift, high: true, negative: bits >> 31 == 1, shift });
        }
        Self::new_general(scale, d)
    }

    /// [`Requant::new`] for every scale and `d`, from [`decompose_f32`]. Out of line: real
    /// models never take it.
    #[cold]
    #[inline(never)]
    fn new_general(scale: f32, d: i32) -> Option<Self> {
        let (m, e) = decompose_f32(scale.to_bits())?;
        let shift = e.saturating_add(d).saturating_neg();
        let magnitude = m.unsigned_abs();
        let high = (25..=63).contains(&shift);
        let (multiplier, high_shift) = if !high {
            (magnitude, 0)
        } else if shift <= 33 {
            (magnitude << (33 - shift), 0)
        } else {
            (magnitude, (shift - 33) as u32)
        };
        Some(Self { multiplier, high_shift, high, negative: m < 0, shift })
    }

    /// [`Requant::apply`] for the shifts outside 25..=63: [`shift_round_i64`] (with its `i128`
    /// fallback). Out of line: no real model's scales take it, and inlined into every output
    /// it cost the firmware kilobytes of flash.
    #[cold]
    #[inline(never)]
    fn apply_wide(self, sum: i32, limit: i64) -> i64 {
        let m = i64::from(self.multiplier);
        let m = if self.negative { -m } else { m };
        shift_round_i64(i64::from(sum) * m, self.shift).clamp(-limit, limit)
    }

    /// Whether [`Requant::apply_high`] applies (the scale's shift is in 25..=63, as every real
    /// model's are).
    #[inline(always)]
    pub fn is_high(self) -> bool {
        self.high
    }

    /// [`Requant::apply`] where [`Requant::is_high`] and `limit ≤ i32::MAX`, in 32-bit
    /// arithmetic but the one 32 × 32 → 64 multiply: the sign applied with a mask rather than
    /// branches, the limit compared as `u32` (on a Cortex-M, 64-bit compares and a branch per
    /// sign were about 10 of an output's 25 instructions). The same value: a unit test compares
    /// them.
    #[inline(always)]
    pub fn apply_high(self, sum: i32, limit: u32) -> i32 {
        let product = u64::from(sum.unsigned_abs()) * u64::from(self.multiplier);
        let halves = ((product >> 32) as u32) >> self.high_shift;
        // At most limit ≤ i32::MAX: the cast keeps the value.
        let rounded = ((halves >> 1) + (halves & 1)).min(limit) as i32;
        // -1 where the result is negative (the sum's sign and the scale's differ), else 0.
        let flip = (sum ^ -i32::from(self.negative)) >> 31;
        (rounded ^ flip) - flip
    }

    /// `round(sum · scale · 2^d)` clamped to `±limit` (`limit ≥ 0`).
    #[inline(always)]
    pub fn apply(self, sum: i32, limit: i64) -> i64 {
        if !self.high {
            return self.apply_wide(sum, limit);
        }
        let product = u64::from(sum.unsigned_abs()) * u64::from(self.multiplier);
        let halves = ((product >> 32) as u32) >> self.high_shift;
        let rounded = (halves >> 1) + (halves & 1);
        let clamped = i64::from(rounded).min(limit);
        if (sum < 0) != self.negative {
            -clamped
        } else {
            clamped
        }
    }
}

/// [`shift_round`] of a `v` with `|v| < 2^62` by `shift` in `1..=63`: the same rounding (half
/// away from zero) in 64-bit arithmetic.
#[inline]
fn shift_round_small(v: i64, shift: u32) -> i64 {
    let halves = v.unsigned_abs() >> (shift - 1);
    let rounded = ((halves + 1) >> 1) as i64;
    if v < 0 {
        -rounded
    } else {
        rounded
    }
}

/// `σ(x / 2^frac) × 32768` rounded to an integer in [0, 32768], for every `x` and `frac`.
///
/// From `SIGMOID_Q15` (σ at t = -16, -16 + 1/16, ..., 16 in Q15) with the curvature-corrected
/// interpolation of `interp_segment`; 0 for t <= -16 and 32768 for t >= 16. Monotone
/// non-decreasing in `x`. Max abs error against f64: 1.053 Q15 units, measured over dense sweeps
/// for 13 widths in frac 0..=40 (the contract is <= 2; plain linear interpolation gives 2.2). `sigmoid_q15(0, f) == 16384`.
///
/// `frac` above 40 is allowed: `x` is first floor-shifted to 40 fraction bits (this keeps the
/// function monotone and moves t by less than 2^-40).
#[inline]
pub fn sigmoid_q15(x: i64, frac: u32) -> i32 {
    if frac <= NARROW_SIGMOID_FRAC {
        if let Ok(x) = i32::try_from(x) {
            return sigmoid_q15_narrow(x, frac);
        }
    }
    sigmoid_q15_wide(x, frac)
}

/// [`sigmoid_q15`] for every input, in 64- and 128-bit arithmetic.
fn sigmoid_q15_wide(x: i64, frac: u32) -> i32 {
    let (x, frac) =
        if frac > MAX_TABLE_FRAC { (x >> (frac - MAX_TABLE_FRAC).min(63), MAX_TABLE_FRAC) } else { (x, frac) };
    // t = ±16 in the input's units; frac + 4 <= 44, so neither this nor x + lim overflows.
    let lim = 1i64 << (frac + 4);
    if x >= lim {
        return 32768;
    }
    if x <= -lim {
        return 0;
    }
    // Table position (t + 16)·16 = (x + lim)·16 / 2^frac in [0, 512): entry i plus the fraction
    // r / 2^frac. (x + lim)·16 < 2^(frac + 9) <= 2^49.
    let pos = ((x + lim) as u64) << 4;
    let i = (pos >> frac) as usize;
    let r = pos & ((1u64 << frac) - 1);
    let at = |j: usize| SIGMOID_Q15.get(j).map(|&v| i64::from(v));
    // i <= 511, so both entries exist; the fallback only satisfies the no-panic rule.
    let (Some(p1), Some(p2)) = (at(i), at(i + 1)) else {
        return 0;
    };
    let y = interp_segment(i.checked_sub(1).and_then(at), p1, p2, at(i + 2), r, frac);
    y.clamp(0, 32768) as i32
}

/// The largest `frac` of [`sigmoid_q15_narrow`]: its sums fit 32 bits up to here.
pub(crate) const NARROW_SIGMOID_FRAC: u32 = 18;

/// `SIGMOID_Q15` with one entry more at each end, extrapolated as `interp_segment` does when
/// a segment's outer neighbour is missing (`p0 = 3·(p1 − p2) + p3` before the first segment,
/// `p3 = 3·(p2 − p1) + p0` after the last; only one end is ever missing): entry `i + 1` is
/// `SIGMOID_Q15[i]`, so segment `i` reads entries `i ..= i + 3`.
// Evaluated by the compiler: an index out of range is a build error, never a run-time panic.
#[allow(clippy::indexing_slicing)]
const SIGMOID_Q15_PADDED: [u16; 515] = {
    let t = &SIGMOID_Q15;
    let n = t.len();
    let mut out = [0u16; 515];
    let mut i = 0;
    while i < n {
        out[i + 1] = t[i];
        i += 1;
    }
    let first = 3 * (t[0] as i32 - t[1] as i32) + t[2] as i32;
    let last = 3 * (t[n - 1] as i32 - t[n - 2] as i32) + t[n - 3] as i32;
    assert!(first >= 0 && first <= u16::MAX as i32 && last >= 0 && last <= u16::MAX as i32);
    out[0] = first as u16;
    out[n + 1] = last as u16;
    out
};

/// The largest step between neighbours of `SIGMOID_Q15` (σ' ≤ 1/4, so at most 32768/64 = 512
/// per 1/16), checked by the compiler: [`sigmoid_q15_narrow`]'s bounds rest on it.
const SIGMOID_MAX_STEP: i32 = 512;
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut i = 1;
    while i < SIGMOID_Q15.len() {
        assert!(SIGMOID_Q15[i] >= SIGMOID_Q15[i - 1]);
        assert!((SIGMOID_Q15[i] - SIGMOID_Q15[i - 1]) as i32 <= SIGMOID_MAX_STEP);
        i += 1;
    }
};

/// [`sigmoid_q15`] for a 32-bit `x` and `frac <= 18` (every SiLU of the integer path: `i16`
/// activations, their calibrated formats), the same value in 32-bit arithmetic but one 32 × 32
/// multiply and one 64-bit shift. On a Cortex-M this was 190 instructions a sigmoid in the
/// general path (64-bit shifts and multiplies, the `Option`s of the table's ends).
///
/// The general path rounds `scaled / 2^(2b+2)` half away from zero, where `scaled = p1·2^(2b+2)
/// + T` and `T = r·(4d·2^b + k4·(2^b − r))` (`b = frac`, `one = 2^b`). With `scaled ≥ 0` that
/// is `floor((scaled + 2^(2b+1)) / 2^(2b+2)) = p1 + floor((T + 2^(2b+1)) / 2^(2b+2))`; with
/// `scaled < 0` both roundings give at most 0, which the final clamp makes 0. Bounds:
/// `|d| ≤ 512`, `|k4| ≤ 4|d|`, so `|4d·2^b + k4·(2^b − r)| < 2^(12+b) ≤ 2^30` and
/// `|T| < 2^(12+2b)`, in `i64`.
#[inline(always)]
fn sigmoid_q15_narrow(x: i32, frac: u32) -> i32 {
    NarrowSigmoid::new(frac).eval(x)
}

/// [`sigmoid_q15_narrow`] at one `frac`, what depends only on it worked out once: the SwiGLU
/// takes the sigmoid of whole rows in one format ([`NarrowSigmoid::eval`] is the function, the
/// same integers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NarrowSigmoid {
    frac: u32,
    /// ±16 in the input's units: at most 2^22, so x + lim cannot overflow inside the range.
    lim: i32,
    one: i32,
    /// `max(0, 31 − 2b)`: `r` is shifted left by it before the multiply, so that the high word
    /// of the 64-bit product is `⌊t / 2^(2b+1)⌋` (`b = frac`) with no 64-bit shift
    /// (`r < 2^b`, so `r · 2^(31−2b) < 2^(31−b)` fits).
    pre: u32,
    /// `max(0, 2b − 31)`: the high word's further (arithmetic) shift for `b ≥ 16`.
    post: u32,
}

impl NarrowSigmoid {
    pub(crate) const fn new(frac: u32) -> Self {
        let frac = if frac < NARROW_SIGMOID_FRAC { frac } else { NARROW_SIGMOID_FRAC };
        let (pre, post) = if 2 * frac <= 31 { (31 - 2 * frac, 0) } else { (0, 2 * frac - 31) };
        Self { frac, lim: 1 << (frac + 4), one: 1 << frac, pre, post }
    }

    /// Its fraction bits (`b`, at most [`NARROW_SIGMOID_FRAC`]).
    #[cfg(all(
        any(all(target_arch = "arm", target_feature = "thumb2"), target_arch = "riscv32"),
        feature = "fixed-point"
    ))]
    pub(crate) fn frac(&self) -> u32 {
        self.frac
    }

    #[inline(always)]
    pub(crate) fn eval(&self, x: i32) -> i32 {
        self.eval_unclamped(x).clamp(0, 32768)
    }

    /// [`NarrowSigmoid::eval`] without its final clamp, which never binds (a unit test checks
    /// every `x` within ±2^17 at every `frac`).
    #[inline(always)]
    fn eval_unclamped(&self, x: i32) -> i32 {
        if x >= self.lim {
            return 32768;
        }
        if x <= -self.lim {
            return 0;
        }
        // (x + lim)·16 < 2^(frac + 9) ≤ 2^27.
        let pos = ((x + self.lim) as u32) << 4;
        let i = (pos >> self.frac) as usize;
        let r = (pos & (self.one as u32 - 1)) as i32;
        // i ≤ 511: segment i's start, −k4 and 4d + k4; the check never fails.
        let Some(&[start, slope]) = SIGMOID_SEGMENTS.get(i) else {
            return 0;
        };
        let (p1, minus_k4, c) = (start as u16 as i32, (start >> 16) as i16 as i32, slope as i32);
        // u = 4d·2^b + k4·(2^b − r) = (4d + k4)·2^b − k4·r.
        let u = (c << self.frac) + minus_k4 * r;
        // t = r·u; t / 2^(2b+2) = ρ·(d + k4·(1 − ρ)/4) with ρ = r / 2^b in [0, 1) and
        // |k4| ≤ 4|d|: at most 2|d| ≤ 1024 in magnitude, so the quotients below fit i32 (no
        // 64-bit clamp). ⌊(t + 2^(s−1)) / 2^s⌋ = ⌊(⌊t / 2^(s−1)⌋ + 1) / 2⌋ with s = 2b + 2: no
        // 64-bit addition; ⌊t / 2^(2b+1)⌋ is the high word of (r · 2^pre) · u shifted by post
        // (one 32 × 32 → 64 multiply; the 64-bit shift it replaces was about 6 instructions a
        // value on a 32-bit core).
        let high = ((i64::from(r << self.pre) * i64::from(u)) >> 32) as i32;
        let q = ((high >> self.post) + 1) >> 1;
        // `eval`'s clamp is a no-op: d ≥ 0 (the table rises) makes q a rounding of a value in
        // [0, d], so p1 + q lies in [p1, p2].
        p1 + q
    }
}

/// Segment `i` of [`sigmoid_q15_narrow`] in two words: its start `p1 = SIGMOID_Q15[i]` in the
/// low half of the first and `−k4` in its high half (`k4 = p1 + p2 − p0 − p3` over entries
/// `i ..= i + 3` of `SIGMOID_Q15_PADDED`, limited to `±4|p2 − p1|`), and `4·(p2 − p1) + k4` in
/// the second: what the interpolation needs, in the forms it uses them (one `LDRD` and no
/// subtraction on a Cortex-M: `kernels::arm_thumb2::silu_rows`). Worked out by the compiler:
/// it depends on the segment only (4 KiB of flash).
#[allow(clippy::indexing_slicing)]
pub(crate) static SIGMOID_SEGMENTS: [[u32; 2]; 512] = {
    let t = &SIGMOID_Q15_PADDED;
    let mut out = [[0u32; 2]; 512];
    let mut i = 0;
    while i < 512 {
        let (p0, p1, p2, p3) = (t[i] as i32, t[i + 1] as i32, t[i + 2] as i32, t[i + 3] as i32);
        // The table rises: d ≥ 0 (what makes the final clamp a no-op).
        let d = p2 - p1;
        assert!(d >= 0);
        let mut k4 = p1 + p2 - p0 - p3;
        if k4 < -4 * d {
            k4 = -4 * d;
        }
        if k4 > 4 * d {
            k4 = 4 * d;
        }
        assert!(p1 >= 0 && p1 <= u16::MAX as i32 && k4 >= -(i16::MAX as i32) && k4 <= i16::MAX as i32);
        out[i] = [p1 as u32 | (((-k4) as i16 as u16 as u32) << 16), (4 * d + k4) as u32];
        i += 1;
    }
    out
};

/// `e^(-x / 2^frac) × 2^30` rounded to an integer in [0, 2^30], for every `x` and `frac`.
///
/// From `EXP_NEG_Q30` (e^-t at t = 0, 1/16, ..., 24 in Q30) with the curvature-corrected
/// interpolation of `interp_segment`; 0 for t >= 24. `exp_neg_q30(0, f) == 2^30` exactly, and
/// the function is monotone non-increasing in `x`.
///
/// Error, measured over dense sweeps for 13 widths in frac 0..=40: |result - e^-t·2^30| <=
/// 1.53e-5 · e^-t·2^30 + 1. So the relative error is at most 1.53e-5 wherever the result is
/// above 2^17 (t <= 9), and beyond that it grows as the integer output quantises the tail
/// (up to 0.7% near t = 16, where e^-t·2^30 is only 120: no Q30 result can do better there).
/// The largest absolute error is 15,945 Q30 units (1.5e-5 of 2^30), near t = 0.
///
/// `frac` above 40 is allowed: `x` is first floor-shifted to 40 fraction bits.
pub fn exp_neg_q30(x: u64, frac: u32) -> u32 {
    let (x, frac) =
        if frac > MAX_TABLE_FRAC { (x >> (frac - MAX_TABLE_FRAC).min(63), MAX_TABLE_FRAC) } else { (x, frac) };
    // t >= 24; 24 · 2^40 < 2^45.
    if x >= 24u64 << frac {
        return 0;
    }
    // Table position t·16 = x·16 / 2^frac in [0, 384): entry i plus r / 2^frac; x·16 < 2^49.
    let pos = x << 4;
    let i = (pos >> frac) as usize;
    let r = pos & ((1u64 << frac) - 1);
    let at = |j: usize| EXP_NEG_Q30.get(j).map(|&v| i64::from(v));
    // i <= 383, so both entries exist; the fallback only satisfies the no-panic rule.
    let (Some(p1), Some(p2)) = (at(i), at(i + 1)) else {
        return 0;
    };
    let y = interp_segment(i.checked_sub(1).and_then(at), p1, p2, at(i + 2), r, frac);
    y.clamp(0, 1 << 30) as u32
}

/// σ(t) × 32768 rounded, for t = -16 + i/16, i = 0..=512 (Q15; 1026 bytes). Non-decreasing,
/// 0 at t = -16 and 32768 at t = 16.
#[rustfmt::skip]
const SIGMOID_Q15: [u16; 513] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2,
    2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4,
    4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 8, 8, 9, 9,
    10, 10, 11, 12, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22,
    23, 25, 26, 28, 30, 32, 34, 36, 38, 41, 43, 46, 49, 52,
    56, 59, 63, 67, 72, 76, 81, 86, 92, 98, 104, 111, 118, 125,
    133, 142, 151, 161, 171, 182, 194, 206, 219, 233, 248, 264, 281, 299,
    318, 338, 360, 383, 407, 433, 461, 490, 521, 554, 589, 627, 666, 708,
    753, 800, 851, 904, 961, 1021, 1084, 1152, 1223, 1299, 1379, 1464, 1554, 1649,
    1750, 1856, 1969, 2088, 2213, 2346, 2486, 2633, 2789, 2952, 3124, 3306, 3496, 3696,
    3906, 4126, 4357, 4599, 4851, 5115, 5391, 5678, 5978, 6289, 6613, 6949, 7297, 7658,
    8031, 8416, 8813, 9221, 9641, 10072, 10513, 10964, 11424, 11894, 12371, 12856, 13348, 13845,
    14347, 14852, 15361, 15872, 16384, 16896, 17407, 17916, 18421, 18923, 19420, 19912, 20397, 20874,
    21344, 21804, 22255, 22696, 23127, 23547, 23955, 24352, 24737, 25110, 25471, 25819, 26155, 26479,
    26790, 27090, 27377, 27653, 27917, 28169, 28411, 28642, 28862, 29072, 29272, 29462, 29644, 29816,
    29979, 30135, 30282, 30422, 30555, 30680, 30799, 30912, 31018, 31119, 31214, 31304, 31389, 31469,
    31545, 31616, 31684, 31747, 31807, 31864, 31917, 31968, 32015, 32060, 32102, 32141, 32179, 32214,
    32247, 32278, 32307, 32335, 32361, 32385, 32408, 32430, 32450, 32469, 32487, 32504, 32520, 32535,
    32549, 32562, 32574, 32586, 32597, 32607, 32617, 32626, 32635, 32643, 32650, 32657, 32664, 32670,
    32676, 32682, 32687, 32692, 32696, 32701, 32705, 32709, 32712, 32716, 32719, 32722, 32725, 32727,
    32730, 32732, 32734, 32736, 32738, 32740, 32742, 32743, 32745, 32746, 32747, 32749, 32750, 32751,
    32752, 32753, 32754, 32755, 32756, 32756, 32757, 32758, 32758, 32759, 32759, 32760, 32760, 32761,
    32761, 32762, 32762, 32762, 32763, 32763, 32763, 32764, 32764, 32764, 32764, 32765, 32765, 32765,
    32765, 32765, 32766, 32766, 32766, 32766, 32766, 32766, 32766, 32766, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
    32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768, 32768,
];

/// e^(-t) × 2^30 rounded, for t = i/16, i = 0..=384 (Q30; 1540 bytes). Non-increasing,
/// exactly 2^30 at t = 0 and 0 at t = 24.
#[rustfmt::skip]
const EXP_NEG_Q30: [u32; 385] = [
    1073741824, 1008687096, 947573834, 890163238, 836230973, 785566300, 737971244, 693259826,
    651257337, 611799650, 574732583, 539911296, 507199724, 476470046, 447602185, 420483340,
    395007542, 371075245, 348592932, 327472754, 307632183, 288993691, 271484449, 255036038,
    239584185, 225068513, 211432301, 198622266, 186588351, 175283534, 164663642, 154687176,
    145315154, 136510954, 128240173, 120470494, 113171556, 106314838, 99873547, 93822515,
    88138096, 82798079, 77781597, 73069048, 68642018, 64483209, 60576369, 56906232,
    53458458, 50219573, 47176923, 44318618, 41633489, 39111043, 36741425, 34515374,
    32424194, 30459711, 28614250, 26880601, 25251987, 23722047, 22284801, 20934633,
    19666268, 18474749, 17355420, 16303908, 15316105, 14388149, 13516415, 12697497,
    11928194, 11205501, 10526594, 9888820, 9289687, 8726853, 8198120, 7701421,
    7234816, 6796480, 6384702, 5997873, 5634480, 5293104, 4972411, 4671148,
    4388137, 4122274, 3872518, 3637894, 3417485, 3210430, 3015920, 2833194,
    2661540, 2500285, 2348801, 2206494, 2072809, 1947224, 1829248, 1718419,
    1614306, 1516500, 1424620, 1338306, 1257222, 1181051, 1109495, 1042274,
    979126, 919804, 864075, 811724, 762544, 716344, 672943, 632171,
    593870, 557889, 524088, 492335, 462506, 434484, 408160, 383431,
    360200, 338377, 317876, 298616, 280524, 263528, 247562, 232563,
    218472, 205236, 192801, 181120, 170147, 159838, 150154, 141056,
    132510, 124482, 116940, 109855, 103199, 96947, 91073, 85555,
    80372, 75502, 70928, 66630, 62593, 58801, 55238, 51892,
    48748, 45794, 43020, 40413, 37965, 35665, 33504, 31474,
    29567, 27776, 26093, 24512, 23027, 21632, 20321, 19090,
    17933, 16847, 15826, 14867, 13966, 13120, 12325, 11579,
    10877, 10218, 9599, 9017, 8471, 7958, 7476, 7023,
    6597, 6198, 5822, 5469, 5138, 4827, 4534, 4260,
    4001, 3759, 3531, 3317, 3116, 2928, 2750, 2584,
    2427, 2280, 2142, 2012, 1890, 1776, 1668, 1567,
    1472, 1383, 1299, 1220, 1146, 1077, 1012, 950,
    893, 839, 788, 740, 695, 653, 614, 576,
    542, 509, 478, 449, 422, 396, 372, 350,
    328, 309, 290, 272, 256, 240, 226, 212,
    199, 187, 176, 165, 155, 146, 137, 129,
    121, 114, 107, 100, 94, 88, 83, 78,
    73, 69, 65, 61, 57, 54, 50, 47,
    44, 42, 39, 37, 35, 33, 31, 29,
    27, 25, 24, 22, 21, 20, 19, 17,
    16, 15, 14, 14, 13, 12, 11, 11,
    10, 9, 9, 8, 8, 7, 7, 6,
    6, 6, 5, 5, 5, 4, 4, 4,
    4, 3, 3, 3, 3, 3, 3, 2,
    2, 2, 2, 2, 2, 2, 2, 1,
    1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::println;

    /// Deterministic pseudo-random numbers (Knuth's MMIX LCG); the high bits are the good ones.
    struct Lcg(u64);

    impl Lcg {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Mix the weak low bits with the strong high ones.
            self.0 ^ (self.0 >> 29)
        }
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    fn sigmoid_ref(t: f64) -> f64 {
        32768.0 / (1.0 + (-t).exp())
    }

    fn exp_ref(t: f64) -> f64 {
        (-t).exp() * 1073741824.0
    }

    fn pow2(e: i32) -> f64 {
        2f64.powi(e)
    }

    #[test]
    fn tables_are_rounded_f64_values() {
        for (i, &v) in SIGMOID_Q15.iter().enumerate() {
            let t = -16.0 + i as f64 / 16.0;
            assert_eq!(f64::from(v), sigmoid_ref(t).round(), "sigmoid entry {i}");
        }
        for (i, &v) in EXP_NEG_Q30.iter().enumerate() {
            assert_eq!(f64::from(v), exp_ref(i as f64 / 16.0).round(), "exp entry {i}");
        }
        // Monotone tables are what make the interpolants monotone (see interp_segment).
        assert!(SIGMOID_Q15.windows(2).all(|w| w[0] <= w[1]));
        assert!(EXP_NEG_Q30.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!((SIGMOID_Q15[0], SIGMOID_Q15[512]), (0, 32768));
        assert_eq!((EXP_NEG_Q30[0], EXP_NEG_Q30[384]), (1 << 30, 0));
    }

    fn check_decompose(bits: u32) {
        let f = f32::from_bits(bits);
        match decompose_f32(bits) {
            None => assert!(!f.is_finite(), "{bits:#x}"),
            Some((m, e)) => {
                assert!(f.is_finite(), "{bits:#x}");
                assert!(m.unsigned_abs() < 1 << 24, "{bits:#x}");
                // m × 2^e is exact in f64: 24-bit mantissa, exponent in [-149, 104].
                assert_eq!(f64::from(m) * pow2(e), f64::from(f), "{bits:#x}");
                assert!(m != 0 || e == 0, "{bits:#x}");
            }
        }
    }

    #[test]
    fn decompose_reconstructs_exactly() {
        let specials = [
            0,
            0x8000_0000,
            1,
            0x8000_0001,
            0x007f_ffff,
            0x807f_ffff,
            0x0080_0000,
            0x3f80_0000,
            0xbf80_0000,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7f80_0001,
            0xffff_ffff,
        ];
        for bits in specials {
            check_decompose(bits);
        }
        assert_eq!(decompose_f32(0x8000_0000), Some((0, 0)));
        assert_eq!(decompose_f32(1), Some((1, -149)));
        assert_eq!(decompose_f32(0x807f_ffff), Some((-0x7f_ffff, -149)));
        assert_eq!(decompose_f32(0x3f80_0000), Some((1 << 23, -23)));
        assert_eq!(decompose_f32(0xff7f_ffff), Some((-0xff_ffff, 104)));
        assert_eq!(decompose_f32(0x7fc0_0000), None);
        let mut rng = Lcg(1);
        // Every exponent (and sign), random fractions.
        for biased in 0..=255u32 {
            for _ in 0..64 {
                let sign = rng.next_u32() & 0x8000_0000;
                check_decompose(sign | biased << 23 | (rng.next_u32() & 0x7f_ffff));
            }
        }
        for _ in 0..200_000 {
            check_decompose(rng.next_u32());
        }
    }

    /// Exact reference: floor division, then the tie goes away from zero.
    fn shift_round_ref(v: i128, shift: u32) -> i64 {
        let d = 1i128 << shift;
        let (q, r) = (v.div_euclid(d), v.rem_euclid(d));
        let up = 2 * r > d || (2 * r == d && v >= 0);
        let q = q + i128::from(up);
        q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The 64-bit paths of `interp_segment`, of `shift_round` (`shift_round_small`) and of
    /// `mul_pow2_round` give the exact reference's values wherever they are taken.
    #[test]
    fn small_interpolation_matches_the_wide_one() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let bits = (next() % 21) as u32;
            let p = |v: u64| (v % (1 << 18)) as i64 - (1 << 17);
            let (p0, p1, p2, p3) = (p(next()), p(next()), p(next()), p(next()));
            let r = next() % (1u64 << bits);
            let v = (next() >> 2) as i64 * if next() % 2 == 0 { 1 } else { -1 };
            let shift = 1 + (next() % 63) as u32;
            assert_eq!(shift_round_small(v, shift), shift_round_ref(i128::from(v), shift), "{v} >> {shift}");
            // mul_pow2_round's 32-bit path (and its wide one, for 64-bit values).
            let x = if next() % 2 == 0 { (next() as i32) as i64 } else { next() as i64 };
            let m = (next() % (1 << 25)) as i32 - (1 << 24);
            let e = -1 - (next() % 70) as i32;
            let want = shift_round_ref(i128::from(x) * i128::from(m), e.unsigned_abs());
            assert_eq!(mul_pow2_round(x, m, e), want, "{x} · {m} · 2^{e}");
            for (a, b) in [(Some(p0), Some(p3)), (None, Some(p3)), (Some(p0), None), (None, None)] {
                let fast = interp_segment(a, p1, p2, b, r, bits);
                // The wide path, forced: the same entries as i128 arithmetic.
                let (w0, w3) = match (a, b) {
                    (Some(p0), Some(p3)) => (p0, p3),
                    (None, Some(p3)) => (3 * (p1 - p2) + p3, p3),
                    (Some(p0), None) => (p0, 3 * (p2 - p1) + p0),
                    (None, None) => (2 * p1 - p2, 2 * p2 - p1),
                };
                let d = p2 - p1;
                let k4 = (p1 + p2 - w0 - w3).max(-4 * d.abs()).min(4 * d.abs());
                let one = 1i128 << bits;
                let ri = i128::from(r);
                let wide = shift_round_ref(
                    4 * (i128::from(p1) * one + i128::from(d) * ri) * one + i128::from(k4) * ri * (one - ri),
                    2 * bits + 2,
                );
                assert_eq!(fast, wide, "p {p0} {p1} {p2} {p3} r {r} bits {bits}");
            }
        }
    }

    #[test]
    fn shift_round_matches_references() {
        // Ties and signs.
        let cases: [(i128, i32, i64); 12] = [
            (1, 1, 1),
            (-1, 1, -1),
            (3, 1, 2),
            (-3, 1, -2),
            (5, 2, 1),
            (6, 2, 2),
            (-6, 2, -2),
            (-5, 2, -1),
            (7, 3, 1),
            (-4, 3, -1),
            (-3, 3, 0),
            (0, 5, 0),
        ];
        for (v, s, want) in cases {
            assert_eq!(shift_round(v, s), want, "{v} >> {s}");
        }
        // Huge shifts.
        assert_eq!(shift_round(i128::MAX, 127), 1);
        assert_eq!(shift_round(i128::MIN, 127), -1);
        assert_eq!(shift_round(i128::MIN, 128), -1);
        assert_eq!(shift_round(i128::MAX, 128), 0);
        assert_eq!(shift_round(1 << 126, 127), 1);
        assert_eq!(shift_round((1 << 126) - 1, 127), 0);
        for s in [129, 200, i32::MAX] {
            assert_eq!(shift_round(i128::MIN, s), 0);
            assert_eq!(shift_round(i128::MAX, s), 0);
        }
        // Left shifts and saturation.
        assert_eq!(shift_round(i128::MAX, 1), i64::MAX);
        assert_eq!(shift_round(i128::MIN, 1), i64::MIN);
        assert_eq!(shift_round(i128::MAX, 0), i64::MAX);
        assert_eq!(shift_round(-5, 0), -5);
        assert_eq!(shift_round(1, -62), 1 << 62);
        assert_eq!(shift_round(1, -63), i64::MAX);
        assert_eq!(shift_round(-1, -63), i64::MIN);
        assert_eq!(shift_round(-3, -62), i64::MIN);
        assert_eq!(shift_round(-1, -64), i64::MIN);
        assert_eq!(shift_round(1, i32::MIN), i64::MAX);
        assert_eq!(shift_round(-1, i32::MIN), i64::MIN);
        assert_eq!(shift_round(0, i32::MIN), 0);
        assert_eq!(shift_round(1 << 64, -1), i64::MAX);
        assert_eq!(shift_round(i128::from(i64::MIN), 0), i64::MIN);
        assert_eq!(shift_round(i128::from(i64::MIN) - 1, 0), i64::MIN);
        assert_eq!(shift_round(i128::from(i64::MAX) >> 5, -5), (i64::MAX >> 5) << 5);
        assert_eq!(shift_round((i128::from(i64::MAX) >> 5) + 1, -5), i64::MAX);
        let mut rng = Lcg(2);
        // Small values against f64 (exact below 2^53), shifts both ways.
        for _ in 0..100_000 {
            let v = (rng.next_u64() >> (14 + rng.below(50))) as i64 * if rng.below(2) == 0 { 1 } else { -1 };
            let s = rng.below(71) as i32 - 10;
            let want = (v as f64 * pow2(-s)).round() as i64;
            assert_eq!(shift_round(i128::from(v), s), want, "{v} >> {s}");
        }
        // Full-width values against the exact i128 reference.
        for _ in 0..100_000 {
            let v = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) as i128;
            let v = v >> rng.below(127);
            let s = 1 + rng.below(126) as u32;
            assert_eq!(shift_round(v, s as i32), shift_round_ref(v, s), "{v} >> {s}");
            // The exact tie just below: v·2^s + 2^(s-1) must round away from zero.
            if let Some(t) = v.checked_shr(s).map(|q| q >> 1) {
                let tie = (t << s) + (1 << (s - 1));
                assert_eq!(shift_round(tie, s as i32), shift_round_ref(tie, s));
                assert_eq!(shift_round(-tie, s as i32), shift_round_ref(-tie, s));
            }
        }
    }

    #[test]
    fn mul_pow2_round_rounds_and_saturates() {
        assert_eq!(mul_pow2_round(3, 5, -1), 8);
        assert_eq!(mul_pow2_round(-3, 5, -1), -8);
        assert_eq!(mul_pow2_round(7, 3, -2), 5);
        assert_eq!(mul_pow2_round(-7, 3, -3), -3);
        assert_eq!(mul_pow2_round(3, -3, 4), -144);
        assert_eq!(mul_pow2_round(i64::MAX, i32::MAX, 0), i64::MAX);
        assert_eq!(mul_pow2_round(i64::MIN, i32::MAX, 0), i64::MIN);
        assert_eq!(mul_pow2_round(i64::MIN, -1, 0), i64::MAX);
        assert_eq!(mul_pow2_round(i64::MIN, i32::MIN, -94), 1);
        assert_eq!(mul_pow2_round(i64::MIN, i32::MIN, -96), 0);
        assert_eq!(mul_pow2_round(i64::MIN, i32::MIN, -95), 1);
        assert_eq!(mul_pow2_round(1, 1, 62), 1 << 62);
        assert_eq!(mul_pow2_round(1, 1, 63), i64::MAX);
        assert_eq!(mul_pow2_round(-1, 1, 63), i64::MIN);
        assert_eq!(mul_pow2_round(1, 1, i32::MAX), i64::MAX);
        assert_eq!(mul_pow2_round(i64::MAX, i32::MAX, i32::MIN), 0);
        assert_eq!(mul_pow2_round(0, 0, i32::MAX), 0);
        let mut rng = Lcg(3);
        for _ in 0..100_000 {
            let v = (rng.next_u64() >> 40) as i64 - (1 << 23);
            let m = (rng.next_u32() >> 8) as i32 - (1 << 23);
            let e = rng.below(40) as i32 - 30;
            let want = (v as f64 * f64::from(m) * pow2(e)).round();
            assert_eq!(mul_pow2_round(v, m, e) as f64, want, "{v} {m} {e}");
        }
    }

    #[test]
    fn fixed_from_f32_bits_rounds_and_saturates() {
        let f = |v: f32, frac: i32| fixed_from_f32_bits(v.to_bits(), frac);
        assert_eq!(f(0.5, 15), Some(16384));
        assert_eq!(f(-1.25, 15), Some(-40960));
        assert_eq!(f(1e-5, 22), Some(42)); // 41.94...
        assert_eq!(f(3.0, 15), Some(98304));
        assert_eq!(f(-0.0, 15), Some(0));
        assert_eq!(f(0.75, 1), Some(2)); // 1.5 rounds away from zero
        assert_eq!(f(-0.75, 1), Some(-2));
        assert_eq!(f(1.0, -1), Some(1)); // 0.5
        assert_eq!(f(1.0, -2), Some(0)); // 0.25
        assert_eq!(f(1.0, 30), Some(1 << 30));
        assert_eq!(f(1.0, 31), Some(i32::MAX));
        assert_eq!(f(-1.0, 31), Some(i32::MIN));
        assert_eq!(f(-1.0, 32), Some(i32::MIN));
        assert_eq!(f(1e10, 0), Some(i32::MAX));
        assert_eq!(f(-1e10, 0), Some(i32::MIN));
        assert_eq!(f(f32::MAX, i32::MAX), Some(i32::MAX));
        assert_eq!(f(f32::MIN, i32::MIN), Some(0));
        assert_eq!(f(f32::from_bits(1), i32::MAX), Some(i32::MAX));
        assert_eq!(f(f32::from_bits(1), 149), Some(1));
        assert_eq!(f(f32::INFINITY, 0), None);
        assert_eq!(f(f32::NEG_INFINITY, 0), None);
        assert_eq!(f(f32::NAN, 0), None);
        let mut rng = Lcg(4);
        for _ in 0..200_000 {
            let bits = rng.next_u32();
            let frac = rng.below(300) as i32 - 150;
            let v = f32::from_bits(bits);
            let got = fixed_from_f32_bits(bits, frac);
            if !v.is_finite() {
                assert_eq!(got, None);
                continue;
            }
            // Exact in f64: at most 24 significant bits, exponent within [-299, 277].
            let want = (f64::from(v) * pow2(frac)).round().clamp(f64::from(i32::MIN), f64::from(i32::MAX));
            assert_eq!(got, Some(want as i32), "{v:e} at {frac}");
        }
    }

    fn check_isqrt(n: u64) {
        let r = isqrt_u64(n);
        let (r2, n2) = (u128::from(r), u128::from(n));
        assert!(r2 * r2 <= n2 && n2 < (r2 + 1) * (r2 + 1), "isqrt({n}) = {r}");
    }

    #[test]
    fn isqrt_is_exact() {
        assert_eq!(isqrt_u64(u64::MAX), (1 << 32) - 1);
        assert_eq!(isqrt_u64(0), 0);
        for n in 0..=300_000 {
            check_isqrt(n);
        }
        // Both sides of perfect squares, small and near the top.
        let top = (1u64 << 32) - 1;
        for k in (1..100_000u64).chain(top - 100_000..=top) {
            let sq = k * k;
            assert_eq!(isqrt_u64(sq), k);
            assert_eq!(isqrt_u64(sq - 1), k - 1);
            if let Some(next) = (k + 1).checked_mul(k + 1) {
                assert_eq!(isqrt_u64(next - 1), k);
            }
            assert_eq!(isqrt_u64(sq.saturating_add(1)), k);
        }
        for e in 0..64 {
            check_isqrt(1 << e);
            check_isqrt((1u64 << e) - 1);
            check_isqrt((1u64 << e) + 1);
        }
        let mut rng = Lcg(5);
        for _ in 0..200_000 {
            let n = rng.next_u64() >> rng.below(64);
            check_isqrt(n);
        }
    }

    /// Relative error of rsqrt(n) against f64, after checking the output ranges.
    fn rsqrt_error(n: u64) -> f64 {
        let (inv, shift) = rsqrt(n);
        assert!((1u64 << 31..=1 << 32).contains(&inv), "rsqrt({n}) = {inv}");
        assert!((31..=63).contains(&shift));
        (inv as f64 * pow2(-shift) * (n as f64).sqrt() - 1.0).abs()
    }

    #[test]
    fn power_of_two_division_equals_u128_division() {
        let mut rng = Lcg(77);
        let check = |n: u64| {
            if n == 0 {
                return;
            }
            // rsqrt's exponent for this n, and every seventh e whose quotient fits 64 bits.
            let l = 64 - (n - 1).leading_zeros();
            let mut es = std::vec![((l + 63) / 2) * 2];
            es.extend((0..128).filter(|&e| (1u128 << e) / u128::from(n) <= u128::from(u64::MAX)).step_by(7));
            for e in es {
                let want = (1u128 << e) / u128::from(n);
                if want <= u128::from(u64::MAX) {
                    assert_eq!(u128::from(pow2_div(e, n)), want, "2^{e} / {n}");
                    // The long division alone, also where n < 2^32 takes the two divisions.
                    if e >= 64 {
                        assert_eq!(u128::from(pow2_div_long(e, n)), want, "long: 2^{e} / {n}");
                    }
                }
            }
        };
        for n in (1..=4096).chain([
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) + 1,
            (1 << 63) - 1,
            1 << 32,
            (1 << 32) - 1,
            (1 << 32) + 1,
        ]) {
            check(n);
        }
        for _ in 0..20_000 {
            check(rng.next_u64() >> (rng.next_u32() % 64));
        }
    }

    #[test]
    fn rsqrt_is_accurate() {
        assert_eq!(rsqrt(0), (0, 0));
        assert_eq!(rsqrt(1), (1 << 31, 31));
        assert_eq!(rsqrt(4), (1 << 31, 32));
        assert_eq!(rsqrt(2), (3037000500, 32)); // 2^32 / sqrt(2) = 3037000499.98
        let mut worst = 0f64;
        let mut rng = Lcg(6);
        let mut ns: std::vec::Vec<u64> = (1..=100_000).collect();
        for e in 0..64 {
            ns.extend([1u64 << e, (1u64 << e) - 1, (1u64 << e) + 1, (1u64 << e) | ((1u64 << e) - 1)]);
        }
        ns.push(u64::MAX);
        ns.extend((0..200_000).map(|_| rng.next_u64() >> rng.below(64)));
        for n in ns.into_iter().filter(|&n| n > 0) {
            worst = worst.max(rsqrt_error(n));
        }
        println!("rsqrt max relative error {worst:e} (2^{:.2})", worst.log2());
        assert!(worst <= pow2(-31));
    }

    /// x values over [lo, hi) in increasing order: every one when the range is small, else
    /// about `count` with a random offset inside each step.
    fn sweep(lo: i64, hi: i64, count: i64, rng: &mut Lcg) -> impl Iterator<Item = i64> + '_ {
        let step = ((hi - lo) / count).max(1);
        (0..(hi - lo) / step).map(move |k| lo + k * step + rng.below(step as u64) as i64)
    }

    const FRACS: [u32; 13] = [0, 1, 3, 4, 5, 8, 12, 15, 16, 20, 24, 32, 40];

    #[test]
    fn narrow_sigmoid_and_shift_equal_the_general_paths() {
        // Every x within ±2^17 (all i16 activations at any format, and the saturated ends) at
        // every width of the narrow path, then random 32-bit x.
        for frac in 0..=NARROW_SIGMOID_FRAC {
            let narrow = NarrowSigmoid::new(frac);
            for x in -(1i32 << 17)..=(1 << 17) {
                assert_eq!(sigmoid_q15_narrow(x, frac), sigmoid_q15_wide(i64::from(x), frac), "x {x} frac {frac}");
                // The clamp is a no-op (the Cortex-M SiLU loop has none).
                assert_eq!(narrow.eval_unclamped(x), narrow.eval(x), "x {x} frac {frac}");
            }
            let mut rng = Lcg(u64::from(frac) + 99);
            for _ in 0..100_000 {
                let x = rng.next_u32() as i32 >> (rng.next_u32() % 32);
                assert_eq!(sigmoid_q15_narrow(x, frac), sigmoid_q15_wide(i64::from(x), frac), "x {x} frac {frac}");
            }
            for x in [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX] {
                assert_eq!(sigmoid_q15_narrow(x, frac), sigmoid_q15_wide(i64::from(x), frac), "x {x} frac {frac}");
            }
        }
        let mut rng = Lcg(5);
        for _ in 0..200_000 {
            let v = (rng.next_u64() as i64) >> (rng.next_u32() % 64);
            let shift = (rng.next_u32() % 140) as i32 - 70;
            assert_eq!(shift_round_i64(v, shift), shift_round(i128::from(v), shift), "{v} >> {shift}");
        }
        for v in [i64::MIN, i64::MIN + 1, -(1 << 62), (1 << 62) - 1, 1 << 62, i64::MAX, -1, 0, 1] {
            for shift in [-64, -1, 0, 1, 2, 31, 32, 62, 63, 64, 200, i32::MIN, i32::MAX] {
                assert_eq!(shift_round_i64(v, shift), shift_round(i128::from(v), shift), "{v} >> {shift}");
            }
        }
    }

    #[test]
    fn sigmoid_error_and_monotonicity() {
        let mut rng = Lcg(7);
        let mut worst = (0f64, 0i64, 0u32);
        for frac in FRACS {
            let one = 1i64 << frac;
            let mut prev = i32::MIN;
            for x in sweep(-17 * one, 17 * one, 400_000, &mut Lcg(u64::from(frac))) {
                let y = sigmoid_q15(x, frac);
                assert!(y >= prev, "sigmoid not monotone at {x}, frac {frac}");
                prev = y;
                let err = (f64::from(y) - sigmoid_ref(x as f64 / one as f64)).abs();
                if err > worst.0 {
                    worst = (err, x, frac);
                }
            }
            // Every x around each table node and segment middle (where the pieces meet).
            for node in 0..=1024i64 {
                let centre = -16 * one + node * one / 32;
                let mut prev = i32::MIN;
                for x in centre - 64..centre + 64 {
                    let y = sigmoid_q15(x, frac);
                    assert!(y >= prev, "sigmoid not monotone at {x}, frac {frac}");
                    prev = y;
                    let err = (f64::from(y) - sigmoid_ref(x as f64 / one as f64)).abs();
                    if err > worst.0 {
                        worst = (err, x, frac);
                    }
                }
            }
            assert_eq!(sigmoid_q15(0, frac), 16384);
            assert_eq!(sigmoid_q15(16 * one, frac), 32768);
            assert_eq!(sigmoid_q15(-16 * one, frac), 0);
        }
        println!("sigmoid max abs error {:.4} at x = {}, frac {}", worst.0, worst.1, worst.2);
        assert!(worst.0 <= 1.1);
        // Extremes and fraction widths past 40 (floor-shifted to 40 bits first).
        for frac in [0, 40, 41, 62, 63, 64, 100, 1000, u32::MAX] {
            for x in [i64::MAX, i64::MIN, 0, 1, -1, 12345 << 30] {
                let t = x as f64 * pow2(-(frac.min(2000) as i32));
                let y = sigmoid_q15(x, frac);
                assert!((f64::from(y) - sigmoid_ref(t)).abs() <= 1.1, "{x} at {frac}: {y}");
            }
            assert_eq!(sigmoid_q15(0, frac), 16384);
        }
        assert_eq!(sigmoid_q15(i64::MAX, 63), 23955); // t just below 1
        assert_eq!(sigmoid_q15(i64::MIN, 62), 3906); // σ(-2)·32768 = 3906.04
        assert_eq!(sigmoid_q15(1 << 62, 62), 23955); // σ(1)·32768 = 23955.33
        assert_eq!(sigmoid_q15(-(1 << 62), 62), 8813); // 8812.67
        let mut prev = i32::MIN;
        for x in sweep(-(17 << 50), 17 << 50, 100_000, &mut rng) {
            let y = sigmoid_q15(x, 50);
            assert!(y >= prev);
            prev = y;
            assert!((f64::from(y) - sigmoid_ref(x as f64 / pow2(50))).abs() <= 1.1);
        }
    }

    #[test]
    fn exp_error_and_monotonicity() {
        // Worst excess over 1 LSB relative to the exact value, and worst relative error where the
        // output is large enough (>= 2^17) for quantisation not to dominate.
        let mut worst_excess = 0f64;
        let mut worst_rel = 0f64;
        let mut worst_abs = 0f64;
        let mut check = |x: u64, frac: u32, y: u32| {
            let want = exp_ref(x as f64 * pow2(-(frac.min(2000) as i32)));
            let err = (f64::from(y) - want).abs();
            worst_abs = worst_abs.max(err);
            worst_excess = worst_excess.max((err - 1.0) / want);
            if want >= 131072.0 {
                worst_rel = worst_rel.max(err / want);
            }
        };
        for frac in FRACS {
            let one = 1i64 << frac;
            assert_eq!(exp_neg_q30(0, frac), 1 << 30);
            let mut prev = u32::MAX;
            for x in sweep(0, 25 * one, 400_000, &mut Lcg(u64::from(frac) + 100)) {
                let y = exp_neg_q30(x as u64, frac);
                assert!(y <= prev, "exp not monotone at {x}, frac {frac}");
                prev = y;
                if x >= 24 * one {
                    assert_eq!(y, 0);
                }
                check(x as u64, frac, y);
            }
            for node in 0..=768i64 {
                let centre = node * one / 32;
                let mut prev = u32::MAX;
                for x in (centre - 64).max(0)..centre + 64 {
                    let y = exp_neg_q30(x as u64, frac);
                    assert!(y <= prev, "exp not monotone at {x}, frac {frac}");
                    prev = y;
                    check(x as u64, frac, y);
                }
            }
            assert_eq!(exp_neg_q30(24 << frac, frac), 0);
            assert_eq!(exp_neg_q30((24 << frac) - 1, frac), 0);
            assert_eq!(exp_neg_q30(u64::MAX, frac), 0);
            assert_eq!(exp_neg_q30(1 << frac, frac), 395007542); // e^-1 · 2^30 = 395007542.4
        }
        for frac in [41, 63, 64, 100, 1000, u32::MAX] {
            assert_eq!(exp_neg_q30(0, frac), 1 << 30);
            for x in [u64::MAX, 1, 12345 << 30, 1 << 62] {
                check(x, frac, exp_neg_q30(x, frac));
            }
        }
        assert_eq!(exp_neg_q30(u64::MAX, 63), 145315154); // t just below 2: e^-2 · 2^30 = 145315153.6
        assert_eq!(exp_neg_q30(1 << 60, 60), 395007542);
        println!("exp: max |err| - 1 LSB relative {worst_excess:e}; max relative error where >= 2^17: {worst_rel:e}; max abs error {worst_abs:.1}");
        assert!(worst_excess <= 2e-5 && worst_rel <= 2e-5);
    }

    /// The per-column steps of `kernels::arm_thumb2::requantise_4x4` (`t = biased − (87 − d)`
    /// accepted in 0..=38, the multiplier and high shift + 1 from `t`) against
    /// [`Requant::new`]'s high-word form, for every biased exponent, sign and `d` it accepts.
    #[test]
    fn thumb2_requant_column_steps_equal_requant_new() {
        let mut rng = Lcg(11);
        for d in -129..=86i32 {
            for biased in 0..=255u32 {
                let bits = (rng.next_u32() & 0x8000_0000) | biased << 23 | (rng.next_u32() & 0x7f_ffff);
                let t = biased.wrapping_sub((87 - d) as u32);
                let q = Requant::new(f32::from_bits(bits), d).filter(|q| q.is_high() && (1..=254).contains(&biased));
                assert_eq!(t <= 38, q.is_some(), "biased {biased} d {d}");
                let Some(q) = q else { continue };
                let m = (bits & 0x7f_ffff) | 0x80_0000;
                let (multiplier, shift_plus_1) = if t >= 30 { (m << (t - 30), 1) } else { (m, 31 - t) };
                assert_eq!((multiplier, shift_plus_1), (q.multiplier, q.high_shift + 1), "biased {biased} d {d}");
            }
        }
    }

    #[test]
    fn requant_gives_the_rounding_shift_of_the_product_clamped() {
        let reference = |sum: i32, scale: f32, d: i32, limit: i64| -> Option<i64> {
            let (m, e) = decompose_f32(scale.to_bits())?;
            Some(
                shift_round_i64(i64::from(sum) * i64::from(m), e.saturating_add(d).saturating_neg())
                    .clamp(-limit, limit),
            )
        };
        let mut rng = Lcg(7);
        let sums = [0, 1, -1, 2, -2, 3, -3, i32::MAX, i32::MIN, i32::MIN + 1, 1 << 30, -(1 << 30), 32767, -32768];
        let limits = [0, 1, 127, 32767, i64::from(i32::MAX)];
        let mut checked = 0u64;
        let mut check = |sum: i32, bits: u32, d: i32, limit: i64| {
            let scale = f32::from_bits(bits);
            assert_eq!(Requant::new(scale, d), Requant::new_general(scale, d), "scale bits {bits:#x} d {d}");
            let fast = Requant::new(scale, d).map(|q| q.apply(sum, limit));
            assert_eq!(fast, reference(sum, scale, d, limit), "sum {sum} scale bits {bits:#x} d {d} limit {limit}");
            // The 32-bit form, where it applies.
            if let Some(q) = Requant::new(scale, d).filter(|q| q.is_high()) {
                let narrow = u32::try_from(limit).ok().filter(|&l| l <= i32::MAX as u32);
                if let Some(l) = narrow {
                    assert_eq!(
                        Some(i64::from(q.apply_high(sum, l))),
                        fast,
                        "apply_high: sum {sum} scale bits {bits:#x} d {d} limit {limit}"
                    );
                }
            }
            checked += 1;
        };
        // Every exponent and sign, the edge sums and random ones, shifts on both sides of 1..=63.
        for biased in 0..=255u32 {
            for _ in 0..24 {
                let bits = (rng.next_u32() & 0x8000_0000) | biased << 23 | (rng.next_u32() & 0x7f_ffff);
                let d = (rng.next_u32() % 120) as i32 - 60;
                let limit = limits[(rng.next_u32() % 5) as usize];
                for &sum in &sums {
                    check(sum, bits, d, limit);
                }
                check(rng.next_u32() as i32, bits, d, limit);
                check((rng.next_u32() as i32) >> 16, bits, d, limit);
            }
        }
        // Zero and subnormal scales, the shift's edges for a typical scale.
        for bits in [0, 0x8000_0000, 1, 0x8000_0001, 0x007f_ffff, 0x3f80_0000, 0xbf80_0000, 0x3a83_126f] {
            for d in [-200, -150, -64, -1, 0, 1, 22, 23, 24, 62, 63, 64, 85, 86, 87, 200, i32::MAX, i32::MIN] {
                for &sum in &sums {
                    for &limit in &limits {
                        check(sum, bits, d, limit);
                    }
                }
            }
        }
        // The sums, scales and shifts of the integer path: scales near 2^-8, d within ±20.
        for _ in 0..200_000 {
            let bits = (0x3800_0000 + (rng.next_u32() % 0x0800_0000)) | (rng.next_u32() & 0x8000_0000);
            let d = (rng.next_u32() % 41) as i32 - 20;
            check(rng.next_u32() as i32 >> (rng.next_u32() % 31), bits, d, 32767);
        }
        println!("requant: {checked} cases");
    }
}
