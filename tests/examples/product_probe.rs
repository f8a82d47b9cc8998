//! Side-by-side timing of the segment's products in every weight format, interleaved: each
//! round times every format once, so a noisy (virtual) machine's slow minutes hit them all
//! alike. Prints the minimum and the median per format and shape, in µs and GFLOP/s.
//!
//! `cargo run --release -p hrm-tests --example product_probe [ROUNDS]` (force a kernel level
//! with `HRM_KERNELS`, one shape with `PROBE_SHAPE=82x512->128`). The criterion benches (`cargo bench -p hrm-tests --bench speed`) measure
//! one format at a time; this is for comparing them in one run.

use std::time::Instant;

use half::{bf16, f16};
use hrm_runtime::kernels::{self, Dims};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|v| v.parse().ok()).unwrap_or(30);
    let shapes = [
        ("82x512->1536", Dims::dense(82, 1536, 512)),
        ("82x512->128 (a SwiGLU block)", Dims::dense(82, 128, 512)),
        ("82x512->512", Dims::dense(82, 512, 512)),
    ];
    println!("HRM_KERNELS={}", std::env::var("HRM_KERNELS").unwrap_or_else(|_| "(native)".into()));
    let only = std::env::var("PROBE_SHAPE").ok();
    for (name, d) in shapes.into_iter().filter(|(name, _)| only.as_deref().is_none_or(|o| name.starts_with(o))) {
        let x: Vec<f32> = (0..d.rows * d.k).map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6).collect();
        let w: Vec<f32> = (0..d.out * d.k).map(|i| ((i * 104_729) % 11) as f32 * 0.01 - 0.05).collect();
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        let w8: Vec<i8> = (0..d.out * d.k).map(|i| ((i * 104_729) % 255) as i8).map(|v| v.max(-127)).collect();
        let scales = vec![0.01f32; d.out];
        let blocks = d.k.div_ceil(32);
        let q4_scales = vec![f16::from_f32(0.01); d.out * blocks];
        let nibbles: Vec<u8> = (0..d.out * blocks * 16).map(|i| ((i * 104_729) % 251) as u8).collect();
        let q4 = kernels::int4::Q4Rows { scales: &q4_scales, nibbles: &nibbles, blocks };
        let p = hrm_runtime::blob::F32_PANEL_ROWS;
        let mut panels = vec![0.0f32; d.out.div_ceil(p) * p * d.k];
        for (r, row) in w.chunks_exact(d.k).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                panels[hrm_runtime::blob::f32_panel_index(r, c, d.k)] = v;
            }
        }
        let mut y = vec![0.0f32; d.rows * d.out];
        let reps = (400_000_000 / (d.rows * d.out * d.k)).max(1);
        type Run<'a> = Box<dyn FnMut(&mut [f32]) + 'a>;
        let mut runs: Vec<(&str, Run)> = vec![
            ("f32", Box::new(|y| kernels::matmul(&x, &w, y, d).unwrap())),
            ("f32 panels", Box::new(|y| kernels::matmul_panels(&x, &panels, y, d).unwrap())),
            ("f16", Box::new(|y| kernels::matmul(&x, &w16, y, d).unwrap())),
            ("bf16", Box::new(|y| kernels::matmul(&x, &wb, y, d).unwrap())),
            ("int8", Box::new(|y| kernels::matmul_i8(&x, &w8, &scales, y, d).unwrap())),
            ("int4", Box::new(|y| kernels::matmul_q4(&x, q4, y, d).unwrap())),
        ];
        let mut times = vec![Vec::with_capacity(rounds); runs.len()];
        let mut peak = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            peak.push(peak_gflops());
            for ((_, run), t) in runs.iter_mut().zip(times.iter_mut()) {
                let start = Instant::now();
                for _ in 0..reps {
                    run(std::hint::black_box(&mut y));
                }
                t.push(start.elapsed().as_secs_f64() / reps as f64);
            }
        }
        let flop = 2.0 * (d.rows * d.out * d.k) as f64;
        let peak = median(&mut peak);
        let probe = if peak > 0.0 {
            format!("FMA peak probe {peak:.1} GFLOP/s (median)")
        } else {
            "no FMA probe at this level".into()
        };
        println!("{name}: {reps} products a round, {rounds} rounds; {probe}");
        let f32_median = median(&mut times[0].clone());
        for ((label, _), t) in runs.iter().zip(times.iter_mut()) {
            let (min, med) = (t.iter().copied().fold(f64::INFINITY, f64::min), median(t));
            let share = if peak > 0.0 {
                format!("{:3.0} % of the probe", 100.0 * flop / med / 1e9 / peak)
            } else {
                "no probe".into()
            };
            println!(
                "  {label:<11} min {:8.1} µs  median {:8.1} µs  {:6.1} GFLOP/s = {share}  {:.2}× f32",
                min * 1e6,
                med * 1e6,
                flop / med / 1e9,
                f32_median / med
            );
        }
    }
}

/// The FMA peak probe of the widest level `HRM_KERNELS` allows on this CPU, in GFLOP/s (one
/// timing of about 2 ms); 0 where there is none (`baseline`: SSE2 has no FMA).
fn peak_gflops() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        const ITERS: u64 = 1 << 20;
        let forced = std::env::var("HRM_KERNELS").ok();
        if forced.as_deref() == Some("baseline") {
            // SSE2 has no FMA: no probe of this kind for it.
            return 0.0;
        }
        let start = Instant::now();
        let flop = if std::is_x86_feature_detected!("avx512f") && forced.as_deref().is_none_or(|v| v == "avx512") {
            // SAFETY: the CPU has AVX-512F.
            std::hint::black_box(unsafe { hrm_tests::peak::fma512(ITERS) });
            hrm_tests::peak::fma512_flop(ITERS)
        } else if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 and FMA.
            std::hint::black_box(unsafe { hrm_tests::peak::fma256(ITERS) });
            hrm_tests::peak::fma256_flop(ITERS)
        } else {
            return 0.0;
        };
        flop as f64 / start.elapsed().as_secs_f64() / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    0.0
}

fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
