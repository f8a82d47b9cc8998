//! Times the int8 product against the f32 one on the 27M model's biggest shape,
//! 82 × 512 · (1536 × 512)ᵀ: `q8_probe [both|f32|int8|none] [ITERATIONS] [ROUNDS]` (default
//! `both 100 3`). One kind and one iteration is what `scripts/arm64-count.sh` counts under
//! QEMU (`none` counts the set-up alone, to subtract).
// A measuring tool, not the runtime: a failed product ends it with its error.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("both", String::as_str);
    if !matches!(mode, "both" | "f32" | "int8" | "none") {
        eprintln!("usage: q8_probe [both|f32|int8|none] [ITERATIONS] [ROUNDS]");
        std::process::exit(2);
    }
    let number = |i: usize, default: usize| match args.get(i).map(|a| a.parse::<usize>()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("q8_probe: {} is not a positive count", args[i]);
            std::process::exit(2);
        }
    };
    let (iterations, rounds) = (number(1, 100), number(2, 3));
    let (rows, k, out) = (82usize, 512usize, 1536usize);
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..out * k).map(|i| (i % 5) as f32 * 0.01).collect();
    let w8: Vec<i8> = (0..out * k).map(|i| (i % 5) as i8).collect();
    let s = vec![0.01f32; out];
    let mut y = vec![0.0f32; rows * out];
    let d = hrm_runtime::kernels::Dims::dense(rows, out, k);
    let level = std::env::var("HRM_KERNELS").unwrap_or_else(|_| "native".into());
    let gf = 2.0 * (rows * k * out) as f64 / 1e9;
    for _ in 0..rounds {
        let mut line = Vec::new();
        if mode == "both" || mode == "f32" {
            let t = Instant::now();
            for _ in 0..iterations {
                hrm_runtime::kernels::matmul(&x, &w, &mut y, d).unwrap();
            }
            let f = t.elapsed().as_secs_f64() / iterations as f64;
            line.push(format!("f32 {:.3} ms ({:.0} GFLOP/s)", f * 1e3, gf / f));
        }
        if mode == "both" || mode == "int8" {
            let t = Instant::now();
            for _ in 0..iterations {
                hrm_runtime::kernels::matmul_i8(&x, &w8, &s, &mut y, d).unwrap();
            }
            let q = t.elapsed().as_secs_f64() / iterations as f64;
            line.push(format!("int8 {:.3} ms ({:.0} GOP/s)", q * 1e3, gf / q));
        }
        println!("{} (HRM_KERNELS={level})", line.join("  "));
    }
}
