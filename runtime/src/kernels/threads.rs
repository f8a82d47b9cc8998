//! One product over several cores (the `threads` feature): the rows of `Y = X · Wᵀ` split over
//! the threads of the rayon pool the caller runs in.
//!
//! Opt-in by where the call runs: a product splits only when it is called from inside a rayon
//! pool (`ThreadPool::install`), so sessions on plain threads (one per core, the throughput
//! mode) never compete for cores with their own products. Rows, not outputs, are split: each
//! part is an ordinary product over its own slices of `X` and `Y`, and every output's sum is
//! formed the same way whichever rows share its tile (the f32 tiles accumulate along `k` only;
//! int8 quantises each activation row alone), so the results are the bits of one thread.

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

/// A product over given rows of `X` and `Y`.
pub type Product<'a> = dyn Fn(&[f32], &mut [f32], Dims) -> Result<(), Error> + Sync + 'a;

/// The product `run` over parts of the rows on the current rayon pool's threads, or `None`
/// when it should stay on this thread (not inside a pool, one thread, or too small). The first
/// error of a part is returned.
pub fn split_rows(x: &[f32], y: &mut [f32], d: Dims, run: &Product<'_>) -> Option<Result<(), Error>> {
    let threads = rayon::current_num_threads();
    let macs = d.rows.saturating_mul(d.out).saturating_mul(d.k);
    if rayon::current_thread_index().is_none() || threads < 2 || macs < MIN_MACS || d.rows < 2 * ROW_GRAIN {
        return None;
    }
    let parts = threads.min(d.rows / ROW_GRAIN);
    let per = d.rows.div_ceil(parts).div_ceil(ROW_GRAIN) * ROW_GRAIN;
    let first_error = std::sync::Mutex::new(None);
    rayon::scope(|scope| {
        let (mut x_rest, mut y_rest) = (x, y);
        let mut r0 = 0;
        while r0 < d.rows {
            let n = per.min(d.rows - r0);
            let (x_part, x_next) = x_rest.split_at(x_rest.len().min(n * d.xs));
            let y_len = y_rest.len().min(n * d.ys);
            let (y_part, y_next) = core::mem::take(&mut y_rest).split_at_mut(y_len);
            (x_rest, y_rest) = (x_next, y_next);
            let first_error = &first_error;
            scope.spawn(move |_| {
                if let Err(e) = run(x_part, y_part, Dims { rows: n, ..d }) {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            });
            r0 += n;
        }
    });
    Some(match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{matmul, matmul_i8};

    /// Inside pools of 2 and 3 threads, f32 and int8 products (strided output rows, a row count
    /// that splits unevenly) give the bits of the same product outside any pool.
    #[test]
    fn split_products_give_the_bits_of_one_thread() {
        let (rows, out, k) = (82, 100, 200);
        assert!(rows * out * k >= MIN_MACS);
        let x: std::vec::Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let w: std::vec::Vec<f32> = (0..out * k).map(|i| ((i * 11 % 29) as f32 - 14.0) / 9.0).collect();
        let wq: std::vec::Vec<i8> = (0..out * k).map(|i| (i * 7 % 255) as i8).collect();
        let scales: std::vec::Vec<f32> = (0..out).map(|o| 0.01 + o as f32 * 1e-4).collect();
        let d = Dims { rows, out, k, xs: k, ws: k, ys: out + 3, accumulate: false };
        let run = |y: &mut [f32], yq: &mut [f32]| {
            matmul(&x, &w, y, d).unwrap();
            matmul_i8(&x, &wq, &scales, yq, d).unwrap();
        };
        let len = (rows - 1) * d.ys + out;
        let (mut one, mut one_q) = (std::vec![0.0f32; len], std::vec![0.0f32; len]);
        run(&mut one, &mut one_q);
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (mut many, mut many_q) = (std::vec![0.0f32; len], std::vec![0.0f32; len]);
            pool.install(|| run(&mut many, &mut many_q));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(bits(&many), bits(&one), "f32 on {threads} threads");
            assert_eq!(bits(&many_q), bits(&one_q), "int8 on {threads} threads");
            assert!(one.iter().any(|&v| v != 0.0), "the product is not trivially zero");
        }
        // Inside a pool the product is really split: two parts of whole tiles' rows (which
        // thread runs each is the scheduler's business, not asserted), and none outside a pool.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let parts = std::sync::Mutex::new(std::vec::Vec::new());
        let probe = |x: &[f32], y: &mut [f32], d: Dims| {
            parts.lock().unwrap().push(d.rows);
            matmul(x, &w, y, d)
        };
        let mut y = std::vec![0.0f32; len];
        pool.install(|| split_rows(&x, &mut y, d, &probe).unwrap().unwrap());
        assert!(split_rows(&x, &mut y, d, &probe).is_none(), "no split outside a pool");
        let mut rows_of_parts = parts.lock().unwrap().clone();
        rows_of_parts.sort();
        assert_eq!(rows_of_parts, [40, 42]);
    }
}
