//! One product over several cores (the `threads` feature): `Y = X · Wᵀ` split over the
//! threads of the rayon pool the caller runs in.
//!
//! Opt-in by where the call runs: a product splits only when it is called from inside a rayon
//! pool (`ThreadPool::install`), so sessions on plain threads (one per core, the throughput
//! mode) never compete for cores with their own products.
//!
//! Wide products split their outputs: each thread packs and reads only its share of the
//! weights. (Splitting rows made every thread pack every weight panel, and read every weight
//! from memory: a 27M segment ran 1.48× faster on 2 threads than on 1.) Narrow ones (the
//! per-head attention products) split their rows. Either way each part is an ordinary product
//! and every output's sum is formed as on one thread (the f32 tiles accumulate along `k` only,
//! per output; int8 quantises each activation row alone, whichever outputs a part computes),
//! so the results are the bits of one thread.

use std::sync::Mutex;
use std::vec::Vec;

use super::Dims;
use crate::Error;

/// Below this many multiply-accumulates a product stays on the calling thread: waking a rayon
/// worker costs microseconds, the size of such a product's whole run. (Attention's per-head
/// products of the 27M model, 0.4 M, are just above it.)
pub const MIN_MACS: usize = 1 << 18;
/// Rows per part are a multiple of this, the AVX2 and NEON tiles' height: the 82 rows of a
/// 27M segment split 42 + 40, which costs those tiles no extra ragged tile, and AVX-512's
/// 12-row tiles the same 4 tiles a part that any split of 82 rows in two would.
pub const ROW_GRAIN: usize = 6;
/// Outputs per part are a multiple of this, the widest f32 panel (AVX-512's 32), and a part
/// has at least [`MIN_PART_OUTPUTS`] of them; narrower products split their rows.
pub const OUT_GRAIN: usize = 32;
pub const MIN_PART_OUTPUTS: usize = 128;

/// A product of the outputs `o..o + d.out` (the weight rows from `o`) over the rows of `X`
/// and `Y` it is given.
pub type Product<'a> = dyn Fn(&[f32], &mut [f32], Dims, usize) -> Result<(), Error> + Sync + 'a;

/// Buffers of the parts that cannot write into `Y` in place, kept between products.
static SPARE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// The product `run` split over the current rayon pool's threads, or `None` when it should
/// stay on this thread (not inside a pool, one thread, or too small). The first error of a
/// part is returned.
pub fn split(x: &[f32], y: &mut [f32], d: Dims, run: &Product<'_>) -> Option<Result<(), Error>> {
    let threads = rayon::current_num_threads();
    let macs = d.rows.saturating_mul(d.out).saturating_mul(d.k);
    if rayon::current_thread_index().is_none() || threads < 2 || macs < MIN_MACS {
        return None;
    }
    if d.out >= 2 * MIN_PART_OUTPUTS {
        let parts = threads.min(d.out / MIN_PART_OUTPUTS);
        Some(split_outputs(x, y, d, parts, run))
    } else if d.rows >= 2 * ROW_GRAIN {
        Some(split_rows(x, y, d, threads.min(d.rows / ROW_GRAIN), run))
    } else {
        None
    }
}

/// `count` buffers from the spare ones (new ones where there are too few).
fn take_spare(count: usize) -> Vec<Vec<f32>> {
    match SPARE.lock() {
        Ok(mut spare) => (0..count).map(|_| spare.pop().unwrap_or_default()).collect(),
        Err(_) => (0..count).map(|_| Vec::new()).collect(),
    }
}

/// Gives buffers back for later splits.
fn give_spare(buffers: impl IntoIterator<Item = Vec<f32>>) {
    if let Ok(mut spare) = SPARE.lock() {
        spare.extend(buffers);
    }
}

/// The first `len` values of `buffer`, grown (never shrunk) to hold them: buffers pass between
/// products of different sizes, and growing one zero-fills its new part.
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    buffer.get_mut(..len).unwrap_or(&mut [])
}

/// Keeps the first error of the parts.
fn keep_first(first: &Mutex<Option<Error>>, result: Result<(), Error>) {
    if let (Err(e), Ok(mut slot)) = (result, first.lock()) {
        slot.get_or_insert(e);
    }
}

fn first_error(first: Mutex<Option<Error>>) -> Result<(), Error> {
    match first.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// `parts` parts of whole row tiles.
fn split_rows(x: &[f32], y: &mut [f32], d: Dims, parts: usize, run: &Product<'_>) -> Result<(), Error> {
    let per = d.rows.div_ceil(parts).div_ceil(ROW_GRAIN) * ROW_GRAIN;
    let first = Mutex::new(None);
    rayon::scope(|scope| {
        let (mut x_rest, mut y_rest) = (x, y);
        let mut r0 = 0;
        while r0 < d.rows {
            let n = per.min(d.rows - r0);
            let (x_part, x_next) = x_rest.split_at(x_rest.len().min(n * d.xs));
            let y_len = y_rest.len().min(n * d.ys);
            let (y_part, y_next) = core::mem::take(&mut y_rest).split_at_mut(y_len);
            (x_rest, y_rest) = (x_next, y_next);
            let first = &first;
            scope.spawn(move |_| keep_first(first, run(x_part, y_part, Dims { rows: n, ..d }, 0)));
            r0 += n;
        }
    });
    first_error(first)
}

/// `parts` parts of whole panels of outputs. The first part writes into `Y` in place; the
/// others into dense buffers of their own (their columns of `Y` interleave with the first
/// part's rows, and two `&mut` views of one slice may not overlap), copied into `Y` after.
fn split_outputs(x: &[f32], y: &mut [f32], d: Dims, parts: usize, run: &Product<'_>) -> Result<(), Error> {
    let per = d.out.div_ceil(parts).div_ceil(OUT_GRAIN) * OUT_GRAIN;
    let ranges: Vec<(usize, usize)> = (0..d.out).step_by(per).map(|o| (o, per.min(d.out - o))).collect();
    let mut storage = take_spare(ranges.len() - 1);
    // Old values may stay: a product that does not accumulate writes every output.
    let mut buffers: Vec<&mut [f32]> =
        storage.iter_mut().zip(ranges.iter().skip(1)).map(|(b, &(_, n))| sized(b, d.rows * n)).collect();
    for (buffer, &(o, n)) in buffers.iter_mut().zip(ranges.iter().skip(1)) {
        if d.accumulate {
            // The part adds to `Y`'s values, as the product in place would.
            for (dst, src) in buffer.chunks_exact_mut(n).zip(y.chunks(d.ys)) {
                dst.copy_from_slice(src.get(o..o + n).unwrap_or(&[]));
            }
        }
    }
    let first = Mutex::new(None);
    rayon::scope(|scope| {
        let first = &first;
        for (buffer, &(o, n)) in buffers.iter_mut().zip(ranges.iter().skip(1)) {
            let dims = Dims { out: n, ys: n, ..d };
            scope.spawn(move |_| keep_first(first, run(x, buffer, dims, o)));
        }
        let (o, n) = ranges.first().copied().unwrap_or((0, 0));
        keep_first(first, run(x, &mut *y, Dims { out: n, ..d }, o));
    });
    for (buffer, &(o, n)) in buffers.iter().zip(ranges.iter().skip(1)) {
        for (src, dst) in buffer.chunks_exact(n).zip(y.chunks_mut(d.ys)) {
            if let Some(dst) = dst.get_mut(o..o + n) {
                dst.copy_from_slice(src);
            }
        }
    }
    give_spare(storage);
    first_error(first)
}

/// [`super::attention_heads`] with its heads split over the current rayon pool's threads, or
/// `None` when it should stay on this thread (not inside a pool, one thread, one head, or too
/// small). The first part uses `scores` and writes into `out` in place; the others score into
/// buffers of their own and write whole rows of their own (the heads' columns interleave in
/// `out`'s rows), whose columns are copied into `out` after.
pub fn split_heads(
    q: &[f32],
    k: &[f32],
    vt: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
    a: super::Heads,
) -> Option<Result<(), Error>> {
    let threads = rayon::current_num_threads();
    let macs = 2usize.saturating_mul(a.positions).saturating_mul(a.positions).saturating_mul(a.width);
    if rayon::current_thread_index().is_none() || threads < 2 || a.heads < 2 || macs < MIN_MACS {
        return None;
    }
    let parts = threads.min(a.heads);
    let per = a.heads.div_ceil(parts);
    let ranges: Vec<core::ops::Range<usize>> = (0..a.heads).step_by(per).map(|h| h..(h + per).min(a.heads)).collect();
    let mut storage = take_spare(2 * (ranges.len() - 1));
    let mut buffers: Vec<(&mut [f32], &mut [f32])> = {
        let mut views = storage.iter_mut();
        let mut next = |len| views.next().map_or(&mut [][..], |b| sized(b, len));
        ranges.iter().skip(1).map(|_| (next(scores.len()), next(out.len()))).collect()
    };
    let first = Mutex::new(None);
    rayon::scope(|scope| {
        let first = &first;
        for ((own_scores, own_out), heads) in buffers.iter_mut().zip(ranges.iter().skip(1).cloned()) {
            scope.spawn(move |_| keep_first(first, super::heads_here(q, k, vt, own_out, own_scores, a, heads)));
        }
        let heads = ranges.first().cloned().unwrap_or(0..0);
        keep_first(first, super::heads_here(q, k, vt, &mut *out, &mut *scores, a, heads));
    });
    for ((_, own_out), heads) in buffers.iter().zip(ranges.iter().skip(1)) {
        let (from, to) = (heads.start * a.head_dim, heads.end * a.head_dim);
        for (dst, src) in out.chunks_mut(a.width).zip(own_out.chunks(a.width)).take(a.positions) {
            if let (Some(dst), Some(src)) = (dst.get_mut(from..to), src.get(from..to)) {
                dst.copy_from_slice(src);
            }
        }
    }
    give_spare(storage);
    Some(first_error(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{matmul, matmul_i8};
    use std::vec;

    /// Inside pools of 2 and 3 threads, f32 and int8 products (strided output rows, a narrow
    /// product whose rows split unevenly, a wide one whose outputs split unevenly, f32 adding
    /// to the outputs) give the bits of the same product outside any pool.
    #[test]
    fn split_products_give_the_bits_of_one_thread() {
        for (rows, out, k, accumulate) in [(82, 100, 200, false), (30, 300, 70, false), (30, 300, 70, true)] {
            assert!(rows * out * k >= MIN_MACS);
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let w: Vec<f32> = (0..out * k).map(|i| ((i * 11 % 29) as f32 - 14.0) / 9.0).collect();
            let wq: Vec<i8> = (0..out * k).map(|i| (i * 7 % 255) as i8).collect();
            let scales: Vec<f32> = (0..out).map(|o| 0.01 + o as f32 * 1e-4).collect();
            let d = Dims { rows, out, k, xs: k, ws: k, ys: out + 3, accumulate };
            let len = (rows - 1) * d.ys + out;
            let start: Vec<f32> = (0..len).map(|i| (i % 13) as f32 * 0.25).collect();
            let run = |y: &mut Vec<f32>, yq: &mut Vec<f32>| {
                y.clone_from(&start);
                matmul(&x, &w, y, d).unwrap();
                yq.clone_from(&start);
                matmul_i8(&x, &wq, &scales, yq, Dims { accumulate: false, ..d }).unwrap();
            };
            let (mut one, mut one_q) = (Vec::new(), Vec::new());
            run(&mut one, &mut one_q);
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (mut many, mut many_q) = (Vec::new(), Vec::new());
                pool.install(|| run(&mut many, &mut many_q));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&many), bits(&one), "f32 {rows}x{out} on {threads} threads");
                assert_eq!(bits(&many_q), bits(&one_q), "int8 {rows}x{out} on {threads} threads");
                assert!(one.iter().zip(&start).any(|(a, b)| a != b), "the product changed the outputs");
            }
        }
    }

    /// Attention with its heads split over 2 and 3 threads (8 heads of 16, 40 positions, query
    /// blocks of 7 rows) gives the bits of one thread, f32 tiles and the fixed-order products
    /// alike.
    #[test]
    fn split_heads_give_the_bits_of_one_thread() {
        let (s, hd, heads) = (40, 16, 8);
        let h = hd * heads;
        let q: Vec<f32> = (0..s * h).map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0).collect();
        let k: Vec<f32> = (0..s * h).map(|i| ((i * 11 % 29) as f32 - 14.0) / 9.0).collect();
        let vt: Vec<f32> = (0..h * s).map(|i| ((i * 7 % 31) as f32 - 15.0) / 8.0).collect();
        for same_bits in [false, true] {
            let a = crate::kernels::Heads {
                positions: s,
                width: h,
                head_dim: hd,
                heads,
                query_block: 7,
                scale: 0.25,
                same_bits,
            };
            let run = || {
                let mut out = vec![0.0f32; s * h];
                let mut scores = vec![0.0f32; 7 * s];
                crate::kernels::attention_heads(&q, &k, &vt, &mut out, &mut scores, a).unwrap();
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let one = run();
            assert!(one.iter().any(|&b| b != 0));
            let (mut out, mut scores) = (vec![0.0f32; s * h], vec![0.0f32; 7 * s]);
            assert!(split_heads(&q, &k, &vt, &mut out, &mut scores, a).is_none(), "no split outside a pool");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            assert!(pool.install(|| split_heads(&q, &k, &vt, &mut out, &mut scores, a)).is_some(), "split in a pool");
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                assert_eq!(pool.install(run), one, "{threads} threads, same_bits {same_bits}");
            }
        }
    }

    /// Inside a pool a product is really split: a narrow one into two parts of whole row
    /// tiles, a wide one into parts of whole panels of outputs (which thread runs each part is
    /// the scheduler's business, not asserted); none outside a pool.
    #[test]
    fn products_split_by_rows_or_outputs() {
        let parts_of = |rows: usize, out: usize, threads: usize| {
            let k = 64;
            let x = vec![1.0f32; rows * k];
            let w = vec![0.5f32; out * k];
            let d = Dims::dense(rows, out, k);
            let parts = Mutex::new(Vec::new());
            let probe = |x: &[f32], y: &mut [f32], d: Dims, o: usize| {
                parts.lock().unwrap().push((o, d.out, d.rows));
                matmul(x, &w, y, d)
            };
            let mut y = vec![0.0f32; rows * out];
            assert!(split(&x, &mut y, d, &probe).is_none(), "no split outside a pool");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| split(&x, &mut y, d, &probe).unwrap().unwrap());
            assert!(y.iter().all(|&v| v == 32.0), "every output computed once");
            let mut parts = parts.into_inner().unwrap();
            parts.sort();
            parts
        };
        assert_eq!(parts_of(82, 100, 2), [(0, 100, 40), (0, 100, 42)]);
        assert_eq!(parts_of(82, 1536, 2), [(0, 768, 82), (768, 768, 82)]);
        assert_eq!(parts_of(82, 512, 3), [(0, 192, 82), (192, 192, 82), (384, 128, 82)]);
        assert_eq!(parts_of(82, 200, 2), [(0, 200, 40), (0, 200, 42)]);
        assert_eq!(parts_of(20, 600, 3), [(0, 224, 20), (224, 224, 20), (448, 152, 20)]);
    }
}
