//! `cargo bench`: the machine's FMA peak, the matrix-product kernels against it, and one ACT
//! segment of the official 27M-parameter HRM Sudoku architecture (random weights) on the
//! runtime (f32, f16, bf16, int8, int4, int8 with fixed-point activations; one thread, and
//! f32 and int8 with one session per core) and on the trainer's candle
//! forward; then how a segment's cost grows with sequence length and width.
//!
//! Throughput is reported as "elements" per second where an element is one floating-point
//! operation (a multiply-add counts two): criterion's `Kelem/s`, `Melem/s`, `Gelem/s` read as
//! FLOP/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hrm_runtime::kernels::{self, Dims};
use hrm_runtime::{Config, DType, HaltRule, ModelKind, PosEncoding, Session};

/// The official HRM Sudoku-Extreme architecture (h 512, 8 heads, 4+4 layers, cycles 2/2).
fn sudoku_27m(seq_len: u32, hidden: u32) -> Config {
    Config {
        kind: ModelKind::Hrm,
        pos_encoding: PosEncoding::Rope,
        halt_rule: HaltRule::HaltOverContinue,
        mlp_t: false,
        hidden_size: hidden,
        num_heads: hidden / 64,
        h_layers: 4,
        l_layers: 4,
        h_cycles: 2,
        l_cycles: 2,
        halt_max_steps: 16,
        seq_len,
        vocab_size: 11,
        num_puzzle_identifiers: 1,
        puzzle_emb_ndim: hidden,
        puzzle_emb_len: 1,
        mlp_inter: Config::swiglu_inter(4.0, hidden),
        mlp_t_inter: 0,
        expansion: 4.0,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        halt_exploration_prob: 0.1,
        block: hrm_runtime::config::DEFAULT_BLOCK,
    }
}

/// Multiply-accumulates of one segment: every linear layer and both attention products.
fn segment_flops(c: &Config) -> u64 {
    let s = c.positions() as u64;
    let h = u64::from(c.hidden_size);
    let i = u64::from(c.mlp_inter);
    let per_layer = s * h * (3 * h + h + 3 * i) + 2 * s * s * h;
    let calls = u64::from(c.h_cycles) * u64::from(c.l_cycles) * u64::from(c.l_layers)
        + u64::from(c.h_cycles) * u64::from(c.h_layers);
    2 * (per_layer * calls + u64::from(c.seq_len) * h * u64::from(c.vocab_size))
}

/// A register-only loop of independent fused multiply-adds: the core's arithmetic peak.
fn fma_peak(c: &mut Criterion) {
    const ITERS: u64 = 1 << 20;
    let mut g = c.benchmark_group("peak");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        g.throughput(Throughput::Elements(hrm_tests::peak::fma512_flop(ITERS)));
        g.bench_function("fma_avx512", |b| b.iter(|| unsafe { hrm_tests::peak::fma512(black_box(ITERS)) }));
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") {
        g.throughput(Throughput::Elements(hrm_tests::peak::fma256_flop(ITERS)));
        g.bench_function("fma_avx2", |b| b.iter(|| unsafe { hrm_tests::peak::fma256(black_box(ITERS)) }));
    }
    g.finish();
}

/// The segment's big products: 82 positions × 512 → 1536 (the QKV and gate/up shapes).
fn matmul(c: &mut Criterion) {
    let (rows, k, out) = (82usize, 512usize, 1536usize);
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..out * k).map(|i| (i % 5) as f32 * 0.01).collect();
    let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
    let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let mut y = vec![0.0f32; rows * out];
    let d = Dims::dense(rows, out, k);
    let mut g = c.benchmark_group("matmul_82x512x1536");
    g.throughput(Throughput::Elements((2 * rows * k * out) as u64));
    g.bench_function("f32", |b| b.iter(|| kernels::matmul(black_box(&x), black_box(&w), &mut y, d).unwrap()));
    // The same weights in the converter's 16-row panels (`hrm convert --layout panels`): the
    // tiles read them in place, without the packing.
    let p = hrm_runtime::blob::F32_PANEL_ROWS;
    let mut panels = vec![0.0f32; out.div_ceil(p) * p * k];
    for (r, row) in w.chunks_exact(k).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            panels[hrm_runtime::blob::f32_panel_index(r, c, k)] = v;
        }
    }
    g.bench_function("f32_panels", |b| {
        b.iter(|| kernels::matmul_panels(black_box(&x), black_box(&panels), &mut y, d).unwrap())
    });
    g.bench_function("f16", |b| b.iter(|| kernels::matmul(black_box(&x), black_box(&w16), &mut y, d).unwrap()));
    g.bench_function("bf16", |b| b.iter(|| kernels::matmul(black_box(&x), black_box(&wb), &mut y, d).unwrap()));
    // int8 weights: the int8 arithmetic on this kernel level (VNNI, AVX2 or portable; force one
    // with HRM_KERNELS), counted as the same FLOP as the f32 product.
    let w8: Vec<i8> = (0..out * k).map(|i| (i % 5) as i8).collect();
    let scales = vec![0.01f32; out];
    g.bench_function("int8", |b| {
        b.iter(|| kernels::matmul_i8(black_box(&x), black_box(&w8), &scales, &mut y, d).unwrap())
    });
    g.finish();
}

fn blob_of(config: &Config, dtype: DType) -> hrm_convert::AlignedBlob {
    let ck = hrm_convert::Checkpoint::from_tensors(*config, hrm_tests::synthetic_tensors(config, 1)).unwrap();
    hrm_convert::write_blob(&ck, dtype).unwrap()
}

/// int8 weights with the integer-only fixed-point path, calibrated on one example.
fn fixed_blob_of(config: &Config) -> hrm_convert::AlignedBlob {
    let ck = hrm_convert::Checkpoint::from_tensors(*config, hrm_tests::synthetic_tensors(config, 1)).unwrap();
    let formats = hrm_convert::calibrate(&ck, &[(tokens(config), 0)], &|| ()).unwrap();
    let options = hrm_convert::BlobOptions::fixed_point(formats);
    hrm_convert::write_blob_with(&ck, &options).unwrap()
}

fn tokens(config: &Config) -> Vec<u32> {
    (0..config.seq_len).map(|i| 1 + i % (config.vocab_size - 1)).collect()
}

/// One segment of the 27M model on the runtime, batch 1.
fn segment(c: &mut Criterion) {
    let config = sudoku_27m(81, 512);
    let mut g = c.benchmark_group("segment_27m");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(segment_flops(&config)));
    let formats = [DType::F32, DType::F32Panels, DType::F16, DType::Bf16, DType::I8, DType::Q4]
        .map(|d| (d.name().replace(' ', "_"), blob_of(&config, d)));
    for (name, blob) in formats.into_iter().chain([("int8+fixed".to_string(), fixed_blob_of(&config))]) {
        let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = Session::new(model, &mut arena).unwrap();
        session.reset(&tokens(&config), 0).unwrap();
        g.bench_function(BenchmarkId::new("runtime_1_thread", name), |b| {
            b.iter(|| {
                session.step().unwrap();
            })
        });
    }
    // One session per core over one shared model: segments per second across the machine.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for dtype in [DType::F32, DType::I8] {
        let blob = blob_of(&config, dtype);
        let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
        g.throughput(Throughput::Elements(segment_flops(&config) * threads as u64));
        g.bench_function(BenchmarkId::new(format!("runtime_{threads}_threads"), dtype.name()), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            let mut arena = vec![0u8; model.arena_bytes()];
                            let mut session = Session::new(model, &mut arena).unwrap();
                            session.reset(&tokens(&config), 0).unwrap();
                            session.step().unwrap();
                        });
                    }
                })
            })
        });
    }
    // One session whose products split their rows over the cores (a rayon pool of `threads`,
    // the runtime's `threads` feature): the latency of one puzzle.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    g.throughput(Throughput::Elements(segment_flops(&config)));
    for dtype in [DType::F32, DType::F32Panels, DType::I8] {
        let blob = blob_of(&config, dtype);
        let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = Session::new(model, &mut arena).unwrap();
        session.reset(&tokens(&config), 0).unwrap();
        let name = dtype.name().replace(' ', "_");
        g.bench_function(BenchmarkId::new(format!("runtime_1_session_{threads}_threads"), name), |b| {
            b.iter(|| pool.install(|| session.step().unwrap()))
        });
    }
    // The trainer's candle forward (no gradient), the same weights.
    let ck = hrm_convert::Checkpoint::from_tensors(config, hrm_tests::synthetic_tensors(&config, 1)).unwrap();
    let net = hrm_trainer::model::Net::from_checkpoint(&ck, &candle_core::Device::Cpu).unwrap();
    let inputs = candle_core::Tensor::from_vec(tokens(&config), (1, 81), &candle_core::Device::Cpu).unwrap();
    let ids = candle_core::Tensor::from_vec(vec![0u32], 1, &candle_core::Device::Cpu).unwrap();
    let x = net.embed(&inputs, &ids, false).unwrap();
    let carry = net.initial_carry(1).unwrap();
    g.throughput(Throughput::Elements(segment_flops(&config)));
    g.bench_function(BenchmarkId::new("candle", "f32"), |b| {
        b.iter(|| net.segment(&carry, &x, hrm_trainer::model::GradMode::None).unwrap())
    });
    g.finish();
}

/// How a segment's time grows with the sequence (81, 400, 900 tokens) and the width (256, 512).
fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment_scaling");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    for (seq, hidden) in [(81, 256), (81, 512), (400, 512), (900, 256), (900, 512)] {
        let config = sudoku_27m(seq, hidden);
        let blob = blob_of(&config, DType::F32);
        let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = Session::new(model, &mut arena).unwrap();
        session.reset(&tokens(&config), 0).unwrap();
        g.throughput(Throughput::Elements(segment_flops(&config)));
        g.bench_function(BenchmarkId::new(format!("seq{seq}"), format!("h{hidden}")), |b| {
            b.iter(|| session.step().unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, fma_peak, matmul, segment, scaling);
criterion_main!(benches);
