//! Times the int8 product against the f32 one on the 27M model's biggest shape.
use std::time::Instant;
fn main() {
    let (rows, k, out) = (82usize, 512usize, 1536usize);
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..out * k).map(|i| (i % 5) as f32 * 0.01).collect();
    let w8: Vec<i8> = (0..out * k).map(|i| (i % 5) as i8).collect();
    let s = vec![0.01f32; out];
    let mut y = vec![0.0f32; rows * out];
    let d = hrm_runtime::kernels::Dims::dense(rows, out, k);
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..100 {
            hrm_runtime::kernels::matmul(&x, &w, &mut y, d).unwrap();
        }
        let f = t.elapsed().as_secs_f64() / 100.0;
        let t = Instant::now();
        for _ in 0..100 {
            hrm_runtime::kernels::matmul_i8(&x, &w8, &s, &mut y, d).unwrap();
        }
        let q = t.elapsed().as_secs_f64() / 100.0;
        let gf = 2.0 * (rows * k * out) as f64 / 1e9;
        println!(
            "f32 {:.3} ms ({:.0} GFLOP/s)  int8 {:.3} ms ({:.0} GOP/s) (HRM_KERNELS={})",
            f * 1e3,
            gf / f,
            q * 1e3,
            gf / q,
            std::env::var("HRM_KERNELS").unwrap_or_else(|_| "native".into())
        );
    }
}
