//! Quick timing of one ACT segment of the official 27M-parameter HRM Sudoku architecture with
//! random weights (the criterion benches in tests/benches measure properly).

use std::time::Instant;

use hrm_runtime::{Config, HaltRule, ModelKind, PosEncoding, Session};

fn main() {
    if std::env::var_os("SHAPES").is_some() {
        shapes();
        return;
    }
    let config = Config {
        kind: ModelKind::Hrm,
        pos_encoding: PosEncoding::Rope,
        halt_rule: HaltRule::HaltOverContinue,
        mlp_t: false,
        hidden_size: 512,
        num_heads: 8,
        h_layers: 4,
        l_layers: 4,
        h_cycles: 2,
        l_cycles: 2,
        halt_max_steps: 16,
        seq_len: 81,
        vocab_size: 11,
        num_puzzle_identifiers: 1,
        puzzle_emb_ndim: 512,
        puzzle_emb_len: 1,
        mlp_inter: Config::swiglu_inter(4.0, 512),
        mlp_t_inter: 0,
        expansion: 4.0,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        halt_exploration_prob: 0.1,
        block: std::env::var("BLOCK").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
    };
    let t = Instant::now();
    let dtype = match std::env::var("WEIGHTS").as_deref() {
        Ok("int8") => hrm_runtime::DType::I8,
        Ok("int4") => hrm_runtime::DType::Q4,
        Ok("f16") => hrm_runtime::DType::F16,
        _ => hrm_runtime::DType::F32,
    };
    let ck = hrm_convert::Checkpoint::from_tensors(config, hrm_tests::synthetic_tensors(&config, 1)).unwrap();
    let blob = hrm_convert::write_blob(&ck, dtype).unwrap();
    eprintln!("blob {} bytes in {:.1?}", blob.len(), t.elapsed());
    let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    eprintln!("arena {} bytes", model.arena_bytes());
    if std::env::var_os("FTZ").is_some() {
        // Flush denormals to zero: if this changes the time, denormals are the problem.
        #[allow(deprecated)]
        unsafe {
            use std::arch::x86_64::*;
            _mm_setcsr(_mm_getcsr() | 0x8040);
        }
    }
    let mut session = Session::new(model, &mut arena).unwrap();
    let tokens: Vec<u32> = (0..81).map(|i| 1 + i % 10).collect();
    session.reset(&tokens, 0).unwrap();
    for _ in 0..std::env::var("SEGMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3) {
        let t = Instant::now();
        session.step().unwrap();
        eprintln!("segment {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}

#[allow(dead_code)]
fn streaming() {
    use hrm_runtime::kernels::{matmul, Dims};
    // 128 MB of weights walked through like a model's layers: each matrix used once, in turn.
    let x = vec![0.5f32; 82 * 512];
    let w = vec![0.25f32; 32 << 20];
    let mut y = vec![0.0f32; 82 * 1536];
    let d = Dims::dense(82, 1536, 512);
    let per = 1536 * 512;
    let t = Instant::now();
    let mut n = 0;
    for round in 0..3 {
        for start in (0..w.len() - per).step_by(per) {
            matmul(&x, &w[start..start + per], &mut y, d).unwrap();
            n += 1;
        }
        let _ = round;
    }
    let secs = t.elapsed().as_secs_f64() / n as f64;
    eprintln!(
        "streamed 82x512->1536: {:.1} us, {:.1} GFLOP/s, {:.1} GB/s of weights",
        secs * 1e6,
        2.0 * (82 * 512 * 1536) as f64 / secs / 1e9,
        (per * 4) as f64 / secs / 1e9
    );
}

#[allow(dead_code)]
fn shapes() {
    streaming();
    use hrm_runtime::kernels::{matmul, Dims};
    let x = vec![0.5f32; 82 * 1536];
    let w = vec![0.25f32; 1536 * 1536];
    let mut y = vec![0.0f32; 82 * 1536];
    for (name, d) in [
        ("qkv part 82x512x512", Dims::dense(82, 512, 512)),
        ("gate chunk 82x512->128", Dims::dense(82, 128, 512)),
        (
            "down chunk 82x128->512 ws1536 acc",
            Dims { rows: 82, out: 512, k: 128, xs: 256, ws: 1536, ys: 512, accumulate: true },
        ),
        ("big 82x512->1536", Dims::dense(82, 1536, 512)),
        ("scores 82x64->82", Dims { rows: 82, out: 82, k: 64, xs: 512, ws: 512, ys: 82, accumulate: false }),
        ("pv 82x82->64", Dims { rows: 82, out: 64, k: 82, xs: 82, ws: 82, ys: 512, accumulate: false }),
    ] {
        let n = 200;
        let t = Instant::now();
        for _ in 0..n {
            matmul(&x, &w, &mut y, d).unwrap();
        }
        let secs = t.elapsed().as_secs_f64() / n as f64;
        let flops = 2.0 * (d.rows * d.out * d.k) as f64;
        eprintln!("{name}: {:.1} us, {:.1} GFLOP/s", secs * 1e6, flops / secs / 1e9);
    }
}
