//! Hostile inputs: the fuzz targets' bodies on their regression inputs, and properties of the
//! blob format and the task encodings over many random cases (proptest).

use hrm_convert::{Checkpoint, HostTensor};
use hrm_runtime::blob::TensorLayout;
use hrm_runtime::{Config, DType, HaltRule, Model, ModelKind, PosEncoding};
use proptest::prelude::*;

/// Every input a fuzzer ever crashed on (`tests/fixtures/fuzz/TARGET/`), and the seeds: each
/// must now be handled without a panic.
#[test]
fn fuzz_regression_inputs_are_handled() {
    let root = hrm_tests::repo_root().join("tests/fixtures/fuzz");
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 7] = [
        ("blob", hrm_tests::fuzzing::blob),
        ("blob_resealed", hrm_tests::fuzzing::blob_resealed),
        ("safetensors", hrm_tests::fuzzing::safetensors),
        ("pytorch", hrm_tests::fuzzing::pytorch),
        ("configs", hrm_tests::fuzzing::configs),
        ("puzzles", hrm_tests::fuzzing::puzzles),
        // Puzzle text is also a (broken) blob.
        ("puzzles", hrm_tests::fuzzing::blob),
    ];
    let mut ran = 0;
    for (target, body) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else { continue };
        for file in dir {
            let path = file.unwrap().path();
            body(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    // Inputs every target must survive, fixtures or not.
    for body in [
        hrm_tests::fuzzing::blob,
        hrm_tests::fuzzing::blob_resealed,
        hrm_tests::fuzzing::safetensors,
        hrm_tests::fuzzing::pytorch,
        hrm_tests::fuzzing::configs,
        hrm_tests::fuzzing::puzzles,
    ] {
        for input in [&b""[..], b"\0", b"HRMB", &[0xff; 300], b"PK\x03\x04", b"{\"train\": [], \"test\": []}"] {
            body(input);
        }
    }
    eprintln!("{ran} regression inputs");
}

/// A checkpoint on which candle's pickle reader panics (found by the `pytorch` fuzz target) is
/// a clear error naming the file, from the converter and from `hrm convert`.
#[test]
fn a_checkpoint_that_panics_the_pickle_reader_is_an_error() {
    let path = hrm_tests::repo_root().join("tests/fixtures/fuzz/pytorch/rebuild-args-index");
    let err = hrm_convert::source::read_tensors(&path, hrm_convert::WeightsFormat::PyTorch)
        .expect_err("a malformed checkpoint must not convert");
    let text = err.to_string();
    assert!(text.contains("rebuild-args-index") && text.contains("malformed checkpoint"), "{text}");
}

fn small_config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        prop::sample::select(vec![(4u32, 1u32), (4, 2), (8, 2), (6, 3), (12, 4)]),
        (1u32..3, 1u32..3, 1u32..3, 1u32..3),
        (1u32..12, 1u32..12, 1u32..4),
        (0u32..3, 0u32..20, 1u32..40),
    )
        .prop_map(
            |(trm, pos, mlp_t, (h, heads), (hl, ll, hc, lc), (seq, vocab, ids), (rows, ndim_extra, inter))| {
                let kind = if trm { ModelKind::Trm } else { ModelKind::Hrm };
                let mlp_t = trm && mlp_t;
                let pos_encoding = match (pos, kind) {
                    (0, ModelKind::Trm) => PosEncoding::None,
                    (1, _) | (0, ModelKind::Hrm) => PosEncoding::Rope,
                    _ => PosEncoding::Learned,
                };
                let (puzzle_emb_len, puzzle_emb_ndim) = match kind {
                    ModelKind::Hrm => {
                        let ndim = if rows == 0 { 0 } else { (rows - 1) * h + 1 + ndim_extra % h };
                        (ndim.div_ceil(h), ndim)
                    }
                    ModelKind::Trm => {
                        let p = rows;
                        (p, if p == 0 { 0 } else { 1 + ndim_extra % (p * h) })
                    }
                };
                Config {
                    kind,
                    pos_encoding,
                    halt_rule: if trm { HaltRule::HaltPositive } else { HaltRule::HaltOverContinue },
                    mlp_t,
                    hidden_size: h,
                    num_heads: heads,
                    h_layers: if trm { 0 } else { hl },
                    l_layers: ll,
                    h_cycles: hc,
                    l_cycles: lc,
                    halt_max_steps: 2,
                    seq_len: seq,
                    vocab_size: vocab,
                    num_puzzle_identifiers: ids,
                    puzzle_emb_ndim,
                    puzzle_emb_len,
                    mlp_inter: inter,
                    mlp_t_inter: if mlp_t { inter + 1 } else { 0 },
                    expansion: 2.0,
                    rope_theta: 10000.0,
                    rms_norm_eps: 1e-5,
                    halt_exploration_prob: 0.1,
                    block: 1 + (seq % 5),
                }
            },
        )
}

/// What a blob of `dtype` stores for element `i` of a `[rows, cols]` tensor (vectors stay f32
/// when the weights are quantised).
fn stored(data: &[f32], rank: usize, cols: usize, i: usize, dtype: DType) -> f32 {
    let v = data[i];
    let rows = data.len() / cols;
    match dtype {
        _ if rank == 1 && matches!(dtype, DType::I8 | DType::Q4) => v,
        DType::F32 | DType::I32 | DType::F32Panels => v,
        DType::F16 => half::f16::from_f32(v).to_f32(),
        DType::Bf16 => half::bf16::from_f32(v).to_f32(),
        DType::I8 => {
            let (scales, q) = hrm_convert::quantise_i8(data, rows, cols);
            scales[i / cols] * f32::from(q[i])
        }
        DType::Q4 => {
            let (scales, nibbles) = hrm_convert::quantise_q4(data, rows, cols);
            let (row, col) = (i / cols, i % cols);
            let block = row * cols.div_ceil(32) + col / 32;
            let j = col % 32;
            let byte = nibbles[block * 16 + j % 16];
            let nibble = if j < 16 { byte & 15 } else { byte >> 4 };
            scales[block].to_f32() * (f32::from(nibble) - 8.0)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any valid configuration and weights survive checkpoint → blob → model unchanged (up to
    /// the stored element type), and the model runs.
    #[test]
    fn blobs_round_trip(config in small_config(), seed in any::<u64>(), dtype in prop::sample::select(vec![DType::F32, DType::F16, DType::Bf16, DType::I8, DType::Q4, DType::F32Panels])) {
        prop_assume!(config.validate().is_ok());
        let tensors = hrm_tests::synthetic_tensors(&config, seed);
        let ck = Checkpoint::from_tensors(config, tensors.clone()).unwrap();
        if dtype == DType::F32Panels && !config.f32_panels_fit() {
            // Refused with a reason, never written with row ranges that split a panel.
            let refused = hrm_convert::write_blob(&ck, dtype).err().map(|e| e.to_string());
            prop_assert!(refused.is_some_and(|m| m.contains("multiples of 16")));
            return Ok(());
        }
        let blob = hrm_convert::write_blob(&ck, dtype).unwrap();
        let model = Model::from_bytes(&blob).unwrap();
        prop_assert_eq!(*model.config(), config);
        prop_assert_eq!(model.arena_bytes(), config.arena_bytes());
        let layout = TensorLayout::new(config);
        for (name, HostTensor { data, shape }) in &tensors {
            let id = hrm_runtime::TensorId::from_reference_name(hrm_convert::strip_prefixes(name)).unwrap();
            prop_assert!(layout.index_of(id).is_some());
            let m = model.tensor(id).unwrap();
            let cols = *shape.last().unwrap();
            for i in 0..data.len() {
                // int4 blobs keep the network's edges (embeddings, heads) in int8.
                let edge = !matches!(id, hrm_runtime::TensorId::Layer { .. });
                let dtype = if dtype == DType::Q4 && edge { DType::I8 } else { dtype };
                prop_assert_eq!(m.get(i).unwrap(), stored(data, shape.len(), cols, i, dtype), "{} [{}]", name, i);
            }
        }
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = hrm_runtime::Session::new(model, &mut arena).unwrap();
        let tokens: Vec<u32> = (0..config.seq_len).map(|i| i % config.vocab_size).collect();
        session.reset(&tokens, config.num_puzzle_identifiers - 1).unwrap();
        prop_assert_eq!(session.run(hrm_runtime::Halting::Fixed).unwrap(), 2);
        prop_assert!(session.logits().iter().all(|v| v.is_finite()));
    }

    /// Fixed-point blobs of any valid configuration calibrate, validate and run, and give the
    /// same answers as the same blob run again (the integer path has no state beyond its carry).
    #[test]
    fn fixed_point_blobs_run(config in small_config(), seed in any::<u64>()) {
        prop_assume!(config.validate().is_ok());
        let ck = Checkpoint::from_tensors(config, hrm_tests::synthetic_tensors(&config, seed)).unwrap();
        let tokens: Vec<u32> = (0..config.seq_len).map(|i| (i * 7 + 3) % config.vocab_size).collect();
        let formats = hrm_convert::calibrate(&ck, &[(tokens.clone(), 0)], &|| ()).unwrap();
        let options = hrm_convert::BlobOptions::fixed_point(formats);
        let blob = hrm_convert::write_blob_with(&ck, &options).unwrap();
        let model = Model::from_bytes(&blob).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = hrm_runtime::Session::new(model, &mut arena).unwrap();
        let mut answers = [vec![0u32; tokens.len()], vec![0u32; tokens.len()]];
        for answer in &mut answers {
            session.reset(&tokens, config.num_puzzle_identifiers - 1).unwrap();
            prop_assert_eq!(session.run(hrm_runtime::Halting::Fixed).unwrap(), 2);
            session.predictions(answer).unwrap();
        }
        prop_assert_eq!(&answers[0], &answers[1]);
        prop_assert!(answers[0].iter().all(|&t| t < config.vocab_size));
    }

    /// Whatever formats a fixed-point blob records (any value the validator accepts), its
    /// integer path runs without overflow or panic and predicts valid tokens.
    #[test]
    fn fixed_point_blobs_with_any_formats_run(
        config in small_config(),
        seed in any::<u64>(),
        formats in prop::collection::vec(hrm_runtime::fixed::MIN_FRAC..=hrm_runtime::fixed::MAX_FRAC, 64),
        weight_scale in prop::sample::select(vec![1e-30f32, 1e-3, 1.0, 1e3, 1e30]),
    ) {
        prop_assume!(config.validate().is_ok());
        let mut tensors = hrm_tests::synthetic_tensors(&config, seed);
        for (_, t) in &mut tensors {
            t.data.iter_mut().for_each(|v| *v *= weight_scale);
        }
        let ck = Checkpoint::from_tensors(config, tensors).unwrap();
        let sites = hrm_runtime::fixed::Sites::new(&config).count();
        let formats: Vec<i32> = (0..sites).map(|i| formats[i % formats.len()]).collect();
        let options = hrm_convert::BlobOptions::fixed_point(formats);
        let blob = hrm_convert::write_blob_with(&ck, &options).unwrap();
        let model = Model::from_bytes(&blob).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = hrm_runtime::Session::new(model, &mut arena).unwrap();
        let tokens: Vec<u32> = (0..config.seq_len).map(|i| (i * 5 + 1) % config.vocab_size).collect();
        session.reset(&tokens, 0).unwrap();
        session.run(hrm_runtime::Halting::Fixed).unwrap();
        let mut answer = vec![0u32; tokens.len()];
        session.predictions(&mut answer).unwrap();
        prop_assert!(answer.iter().all(|&t| t < config.vocab_size));
    }

    /// A grid's text parses back to the grid unless two givens clash, and tokens round trip.
    #[test]
    fn sudoku_text_and_tokens_round_trip(cells in prop::collection::vec(0u8..10, 81)) {
        let grid: hrm_runtime::sudoku::Grid = cells.try_into().unwrap();
        let text = hrm_trainer::tasks::sudoku::grid_string(&grid);
        match hrm_runtime::sudoku::parse(&text) {
            Ok(parsed) => {
                prop_assert_eq!(parsed, grid);
                prop_assert!(hrm_runtime::sudoku::first_conflict(&grid).is_none());
            }
            Err(hrm_runtime::sudoku::PuzzleError::Conflict(c)) => {
                prop_assert_eq!(grid[c.cells[0]], c.digit);
                prop_assert_eq!(grid[c.cells[1]], c.digit);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        prop_assert_eq!(hrm_runtime::sudoku::from_tokens(&hrm_runtime::sudoku::to_tokens(&grid)), grid);
    }

    /// Generated mazes print and parse back identically, and their labels decode to them.
    #[test]
    fn mazes_round_trip(seed in any::<u64>(), size in 5usize..32) {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let m = hrm_trainer::tasks::maze::generate(&mut rng, size, size);
        let parsed = hrm_trainer::tasks::maze::parse_mazes(&m.to_text(), "p").unwrap();
        prop_assert_eq!(&parsed, &vec![m.clone()]);
        prop_assert_eq!(hrm_trainer::tasks::maze::Maze::from_tokens(size, &m.label_tokens()), m.clone());
        prop_assert_eq!(hrm_trainer::tasks::maze::solve(&m).unwrap(), m);
    }
}
