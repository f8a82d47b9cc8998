//! RISC-V cores without a multiply-accumulate (RV32IM, ESP32-C3 class): the integer path's
//! products of four activation rows as a 4 × 4 register tile. RV32 has 31 general registers,
//! enough for sixteen `i32` sums, four weights and an activation, so each loaded value serves
//! four multiplies: per value of `k`, four `i16` and four `i8` loads for sixteen `mul` + `add`
//! pairs (2.5 instructions a multiply-accumulate before the pointer steps), against one `i16`
//! and four `i8` loads, four pointer steps and four pairs for one row against four weight rows
//! (4.75). The activations are packed with the four rows interleaved value by value, and the
//! loop takes four values of `k` a pass so that the loads use immediate offsets (the compiler,
//! given the same loop in Rust, scheduled the sixteen products of a pass together and spilled
//! them: more instructions than before, hence the assembly). A fixed-point segment of the
//! built-in Sudoku model on QEMU's `virt`: 797.9 M instructions before, 497.4 M with the tile.
//! The sums are exact `i32` (`|x| ≤ 32767`, `|w| ≤ 128`, at most 256 values a row), the same
//! integers as every other core's.

/// One value of `k` in the loop below: the four weights at byte `w` of their rows, then each
/// row's activation (`i16` at byte `q0`..`q3` of the packed group) against the four.
#[cfg(target_arch = "riscv32")]
macro_rules! value {
    ($w:literal, $q0:literal, $q1:literal, $q2:literal, $q3:literal) => {
        concat!(
            "lb s10, ",
            $w,
            "(t1)\n",
            "lb s11, ",
            $w,
            "(t2)\n",
            "lb t3, ",
            $w,
            "(ra)\n",
            "lb t4, ",
            $w,
            "(s0)\n",
            "lh t5, ",
            $q0,
            "(t0)\n",
            "mul t6, t5, s10\n",
            "add a0, a0, t6\n",
            "mul t6, t5, s11\n",
            "add a1, a1, t6\n",
            "mul t6, t5, t3\n",
            "add a2, a2, t6\n",
            "mul t6, t5, t4\n",
            "add a3, a3, t6\n",
            "lh t5, ",
            $q1,
            "(t0)\n",
            "mul t6, t5, s10\n",
            "add a4, a4, t6\n",
            "mul t6, t5, s11\n",
            "add a5, a5, t6\n",
            "mul t6, t5, t3\n",
            "add a6, a6, t6\n",
            "mul t6, t5, t4\n",
            "add a7, a7, t6\n",
            "lh t5, ",
            $q2,
            "(t0)\n",
            "mul t6, t5, s10\n",
            "add s2, s2, t6\n",
            "mul t6, t5, s11\n",
            "add s3, s3, t6\n",
            "mul t6, t5, t3\n",
            "add s4, s4, t6\n",
            "mul t6, t5, t4\n",
            "add s5, s5, t6\n",
            "lh t5, ",
            $q3,
            "(t0)\n",
            "mul t6, t5, s10\n",
            "add s6, s6, t6\n",
            "mul t6, t5, s11\n",
            "add s7, s7, t6\n",
            "mul t6, t5, t3\n",
            "add s8, s8, t6\n",
            "mul t6, t5, t4\n",
            "add s9, s9, t6\n",
        )
    };
}

/// `out[i][j] = Σ_t q[4t + i] · w_j[t]` over `t < k` for the four interleaved packed rows `q`
/// (at least `4 · k` values) and four weight rows of at least `k` values; shorter slices give
/// sums of the values they have.
#[inline(never)]
pub fn tile4x4(q: &[i16], w: &[&[i8]; 4], k: usize) -> [[i32; 4]; 4] {
    let mut acc = [[0i32; 4]; 4];
    let q = q.get(..4 * k).unwrap_or(q);
    let [w0, w1, w2, w3] = w.map(|row| row.get(..k).unwrap_or(row));
    // Whole groups of four values in the loop when every slice has them, then the rest.
    let groups = (k / 4).min(q.len() / 16).min(w0.len() / 4).min(w1.len() / 4).min(w2.len() / 4).min(w3.len() / 4);
    #[cfg(target_arch = "riscv32")]
    if groups > 0 {
        let [[a0, a1, a2, a3], [a4, a5, a6, a7], [s2, s3, s4, s5], [s6, s7, s8, s9]] = &mut acc;
        // SAFETY: the loop reads 16·groups values of `q` and 4·groups of each weight row, all
        // within the slices (`groups` is bounded by each length). s0 and s1 (LLVM's frame and
        // base pointers, which cannot be operands) are saved on the stack and restored: they
        // hold the fourth row's pointer and the end of the first's; nothing in the loop
        // addresses the stack.
        unsafe {
            core::arch::asm!(
                "addi sp, sp, -16",
                "sw s0, 0(sp)",
                "sw s1, 4(sp)",
                "mv s0, t5",
                "mv s1, t6",
                "2:",
                value!(0, 0, 2, 4, 6),
                value!(1, 8, 10, 12, 14),
                value!(2, 16, 18, 20, 22),
                value!(3, 24, 26, 28, 30),
                "addi t0, t0, 32",
                "addi t1, t1, 4",
                "addi t2, t2, 4",
                "addi ra, ra, 4",
                "addi s0, s0, 4",
                "bltu t1, s1, 2b",
                "lw s0, 0(sp)",
                "lw s1, 4(sp)",
                "addi sp, sp, 16",
                inout("t0") q.as_ptr() => _,
                inout("t1") w0.as_ptr() => _,
                inout("t2") w1.as_ptr() => _,
                inout("ra") w2.as_ptr() => _,
                inout("t5") w3.as_ptr() => _,
                inout("t6") w0.as_ptr().add(4 * groups) => _,
                inout("a0") *a0, inout("a1") *a1, inout("a2") *a2, inout("a3") *a3,
                inout("a4") *a4, inout("a5") *a5, inout("a6") *a6, inout("a7") *a7,
                inout("s2") *s2, inout("s3") *s3, inout("s4") *s4, inout("s5") *s5,
                inout("s6") *s6, inout("s7") *s7, inout("s8") *s8, inout("s9") *s9,
                out("s10") _, out("s11") _, out("t3") _, out("t4") _,
                options(preserves_flags),
            );
        }
    }
    // Elsewhere (the host's unit test) the loop below takes every value.
    #[cfg(not(target_arch = "riscv32"))]
    let groups = {
        let _ = groups;
        0
    };
    let done = 4 * groups;
    fn rest(row: &[i8], done: usize) -> &[i8] {
        row.get(done..).unwrap_or(&[])
    }
    let tail = q.get(4 * done..).unwrap_or(&[]).chunks_exact(4).zip(rest(w0, done)).zip(rest(w1, done));
    for (((a, &b0), &b1), (&b2, &b3)) in tail.zip(rest(w2, done).iter().zip(rest(w3, done))) {
        accumulate(&mut acc, a, [b0, b1, b2, b3]);
    }
    acc
}

/// `acc[i][j] += a[i] · b[j]`: one value of `k` for the four rows and four weight rows.
#[inline(always)]
fn accumulate(acc: &mut [[i32; 4]; 4], a: &[i16], b: [i8; 4]) {
    let b = b.map(i32::from);
    for (row, &a) in acc.iter_mut().zip(a) {
        let a = i32::from(a);
        for (sum, &b) in row.iter_mut().zip(&b) {
            *sum += a * b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tile4x4;
    use std::vec::Vec;

    /// The tile's sums against the plain definition, for every `k` up to 70 (whole passes and
    /// every tail) and extreme values. On the host this checks the Rust loop only (the slices'
    /// bounds and the tail); the assembly runs on RISC-V alone, where the gate's cross-core
    /// digests check it (`scripts/firmware.sh gate`).
    #[test]
    fn tile_sums_are_the_definition() {
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for k in 0..=70usize {
            let q: Vec<i16> = (0..4 * k)
                .map(|i| match i % 7 {
                    0 => 32767,
                    1 => -32767,
                    _ => next() as i16,
                })
                .collect();
            let w: Vec<Vec<i8>> =
                (0..4).map(|j| (0..k).map(|t| if (t + j) % 5 == 0 { -128 } else { next() as i8 }).collect()).collect();
            let got = tile4x4(&q, &[&w[0], &w[1], &w[2], &w[3]], k);
            for (i, row) in got.iter().enumerate() {
                for (j, &sum) in row.iter().enumerate() {
                    let want: i64 = (0..k).map(|t| i64::from(q[4 * t + i]) * i64::from(w[j][t])).sum();
                    assert_eq!(i64::from(sum), want, "k {k} row {i} output {j}");
                }
            }
        }
    }
}

/// One output of [`requantise_4x4`]: the sum at byte `$sum` of the tile's row block, `|sum|`,
/// the high word of its product with the multiplier (`MULHU`), shifted by the high shift, the
/// rounding's `(h >> 1) + (h & 1)`, clamped to 32767, the sign of `sum` XOR the scale's put
/// back, stored at the row pointer `$at`.
#[cfg(target_arch = "riscv32")]
macro_rules! requantised {
    ($sum:literal, $at:literal) => {
        concat!(
            "lw {s}, ",
            $sum,
            "({p})\n",
            "srai {m}, {s}, 31\n",
            "xor {a}, {s}, {m}\n",
            "sub {a}, {a}, {m}\n",
            "mulhu {a}, {a}, {mult}\n",
            "srl {a}, {a}, {hs}\n",
            "andi {m}, {a}, 1\n",
            "srli {a}, {a}, 1\n",
            "add {a}, {a}, {m}\n",
            "bltu {a}, {lim}, 7f\n",
            "mv {a}, {lim}\n",
            "7:\n",
            "xor {m}, {s}, {bits}\n",
            "srai {m}, {m}, 31\n",
            "xor {a}, {a}, {m}\n",
            "sub {a}, {a}, {m}\n",
            "sh {a}, 0(",
            $at,
            ")\n",
        )
    };
}

/// `y[i·ys + j] = Requant::new(scales[j], d).apply_high(sums[i][j], 32767)` for the 4 × 4
/// tile, as `arm_thumb2::requantise_4x4` (the same steps: per column the scale's check `t =
/// biased exponent − (87 − d)` in 0..=38 and its multiplier and high shift, per output
/// `MULHU`, the rounding, the clamp (RV32IMAC has no minimum: a branch), the sign). Returns
/// `false`, having stored some columns or none, at the first scale outside the fast path; the
/// caller then does the whole tile in Rust. About 17 instructions an output and 15 a column,
/// where the compiled `store_requantised` took about 35 an output.
///
/// # Safety
/// `y` is valid for writes at `i·ys + j` for `i, j < 4`; `scales` holds four values; `d` in
/// `−129..=86`.
#[cfg(target_arch = "riscv32")]
#[inline(never)]
pub unsafe fn requantise_4x4(y: *mut i16, ys: usize, sums: &[[i32; 4]; 4], scales: *const f32, d: i32) -> bool {
    let done: u32;
    core::arch::asm!(
        "2:",
        // The scale's bits; t = biased exponent − (87 − d) = 63 − shift, in 0..=38?
        "lw {bits}, 0({sc})",
        "srli {t}, {bits}, 23",
        "andi {t}, {t}, 255",
        "sub {t}, {t}, {d87}",
        "sltiu {m}, {t}, 39",
        "beqz {m}, 3f",
        // The mantissa with its leading 1; shift ≤ 33 (t ≥ 30): multiplier m·2^(t − 30),
        // high shift 0; else m, 30 − t.
        "slli {mult}, {bits}, 9",
        "srli {mult}, {mult}, 9",
        "or {mult}, {mult}, {lead}",
        "addi {t}, {t}, -30",
        "li {hs}, 0",
        "bltz {t}, 4f",
        "sll {mult}, {mult}, {t}",
        "j 5f",
        "4:",
        "neg {hs}, {t}",
        "5:",
        requantised!("0", "{yp}"),
        "add {t}, {yp}, {ys1}",
        requantised!("16", "{t}"),
        "add {t}, {yp}, {ys2}",
        requantised!("32", "{t}"),
        "add {t}, {yp}, {ys3}",
        requantised!("48", "{t}"),
        "addi {p}, {p}, 4",
        "addi {yp}, {yp}, 2",
        "addi {sc}, {sc}, 4",
        "bne {sc}, {end}, 2b",
        "li {done}, 1",
        "j 6f",
        "3:",
        "li {done}, 0",
        "6:",
        done = out(reg) done,
        p = inout(reg) sums.as_ptr() => _,
        sc = inout(reg) scales => _,
        end = in(reg) scales.add(4),
        yp = inout(reg) y => _,
        ys1 = in(reg) 2 * ys,
        ys2 = in(reg) 4 * ys,
        ys3 = in(reg) 6 * ys,
        d87 = in(reg) 87 - d,
        lead = in(reg) 0x80_0000u32,
        lim = in(reg) 32767u32,
        bits = out(reg) _,
        t = out(reg) _,
        m = out(reg) _,
        mult = out(reg) _,
        hs = out(reg) _,
        s = out(reg) _,
        a = out(reg) _,
        options(nostack),
    );
    done != 0
}

/// `g[i] ← silu_mul(g[i], u[i], fgu, fact)` for `i < n` `i16` values (`LH`, `SH`):
/// `arm_thumb2::silu_rows`'s steps in RV32IM (its M3 form: the table entry's `−k4` by `SRAI`
/// and `MUL`, the high words by `MULH` and `MULHU`; the clamp by a branch, RV32IMAC having no
/// minimum). About 36 instructions a value, where the compiled loop took about 53. Checked as
/// the Arm loop is: the unit test `silu_rows_arithmetic_equals_silu_mul` replays the steps,
/// the gate's digests compare RISC-V's segments with x86-64's.
///
/// # Safety
/// `g` and `u` hold `n` values each; `4 ≤ frac ≤ 15`; `rounding_pre = 33 − shift` with `shift`
/// in `17..=33`.
#[cfg(target_arch = "riscv32")]
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
    core::arch::asm!(
        "2:",
        "lh {g}, 0({gp})",
        "lh {gu}, 0({up})",
        "addi {up}, {up}, 2",
        "mul {gu}, {g}, {gu}",
        // pos = g + 2^(b+4); saturated below 1 and from 2^(b+5) on.
        "add {g}, {g}, {c5}",
        "blez {g}, 4f",
        "bge {g}, {c6}, 3f",
        "and {r}, {g}, {mask}",
        "srl {g}, {g}, {w}",
        "slli {g}, {g}, 3",
        "add {g}, {g}, {seg}",
        "lw {e}, 4({g})",
        "lw {g}, 0({g})",
        "sll {e}, {e}, {w}",
        // t' = c·2^w + (−k4)·r₀ (−k4 the entry's top half), then the high word of
        // (r₀·2^(39−2b)) · t', rounded, plus p1 (the entry's low half).
        "srai {k}, {g}, 16",
        "mul {k}, {k}, {r}",
        "add {e}, {e}, {k}",
        "sll {r}, {r}, {c10}",
        "mulh {e}, {r}, {e}",
        "addi {e}, {e}, 1",
        "srai {e}, {e}, 1",
        "slli {g}, {g}, 16",
        "srli {g}, {g}, 16",
        "add {g}, {g}, {e}",
        "6:",
        // |g·u| · (σ · 2^pre): its high word, rounded, clamped, signed.
        "srai {k}, {gu}, 31",
        "xor {r}, {gu}, {k}",
        "sub {r}, {r}, {k}",
        "sll {g}, {g}, {pre}",
        "mulhu {r}, {r}, {g}",
        "addi {r}, {r}, 1",
        "srli {r}, {r}, 1",
        "bltu {r}, {lim}, 8f",
        "mv {r}, {lim}",
        "8:",
        "xor {r}, {r}, {k}",
        "sub {r}, {r}, {k}",
        "sh {r}, 0({gp})",
        "addi {gp}, {gp}, 2",
        "bne {up}, {end}, 2b",
        "j 9f",
        "3:",
        "lui {g}, 8",
        "j 6b",
        "4:",
        "li {g}, 0",
        "j 6b",
        "9:",
        gp = inout(reg) g => _,
        up = inout(reg) u => _,
        end = in(reg) u.add(n),
        seg = in(reg) segments.as_ptr(),
        pre = in(reg) rounding_pre,
        c5 = in(reg) 1i32 << (frac + 4),
        c6 = in(reg) 1i32 << (frac + 5),
        mask = in(reg) (1u32 << w) - 1,
        w = in(reg) w,
        c10 = in(reg) 39 - 2 * frac,
        lim = in(reg) 32767u32,
        g = out(reg) _,
        gu = out(reg) _,
        r = out(reg) _,
        k = out(reg) _,
        e = out(reg) _,
        options(nostack),
    );
}
