//! Quantised weights and the fixed-point path on the golden cases: how often each format's
//! answer (the argmax of every position's logits) agrees with the reference's float32 answer.
//!
//! The golden models are random initialisations, whose logits are nearly flat and whose
//! recursion amplifies any rounding (see `golden/README.md`: even f16 rounding moves 0.5–1.5 %
//! of the argmaxes, far more on `trm-sudoku-mlp`), so these are floors that catch a broken
//! format, not accuracy claims; the accuracy on a trained model is in `QUANTISATION.md`.
//! `cargo test -p hrm-tests --test quantised -- --nocapture` prints the table.

use std::collections::HashMap;
use std::path::Path;

use hrm_convert::{BlobOptions, Checkpoint, Overrides};
use hrm_runtime::DType;
use hrm_tests::{golden_cases, read_safetensors, run_blob, Values};

#[derive(Clone, Copy, Debug)]
enum Format {
    F16,
    Bf16,
    Int8,
    Int4,
    /// int4 with GPTQ's error compensation, calibrated on the case's own inputs.
    Int4Compensated,
    Fixed,
}

impl Format {
    const ALL: [Format; 6] =
        [Format::F16, Format::Bf16, Format::Int8, Format::Int4, Format::Int4Compensated, Format::Fixed];

    fn name(self) -> &'static str {
        match self {
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::Int8 => "int8",
            Format::Int4 => "int4",
            Format::Int4Compensated => "int4, compensated",
            Format::Fixed => "int8 + fixed",
        }
    }

    /// The lowest argmax agreement at the first segment this format must reach on every case
    /// (int4's noise flips most of a random model's nearly flat argmaxes: its bound is on the
    /// logits' error instead).
    fn floor(self) -> f64 {
        match self {
            Format::F16 | Format::Bf16 | Format::Fixed => 0.8,
            // With AVX-512 VNNI the activations are quantised to 8 bits too: 76 % on the
            // chaotic `trm-sudoku-mlp`, 88–99 % elsewhere.
            Format::Int8 => 0.7,
            Format::Int4 | Format::Int4Compensated => 0.0,
        }
    }

    /// The largest relative error (`max |a − b| / max |b|`) of the first segment's logits.
    fn max_error(self) -> f32 {
        match self {
            Format::F16 => 0.02,
            Format::Bf16 => 0.1,
            Format::Fixed => 0.3,
            Format::Int8 => 0.5,
            // Catches a broken format only: 4-bit noise on these random weights reaches 0.3 on
            // the HRM cases and 1.2 on the chaotic `trm-sudoku-mlp`.
            Format::Int4 | Format::Int4Compensated => 1.5,
        }
    }
}

fn blob(ck: &Checkpoint, format: Format, inputs: &[(Vec<u32>, u32)]) -> hrm_convert::AlignedBlob {
    let options = match format {
        Format::F16 => BlobOptions::weights(DType::F16),
        Format::Bf16 => BlobOptions::weights(DType::Bf16),
        Format::Int8 => BlobOptions::weights(DType::I8),
        Format::Int4 => BlobOptions::weights(DType::Q4),
        Format::Int4Compensated => BlobOptions {
            moments: Some(hrm_convert::InputMoments::collect(ck, inputs, &|| ()).unwrap()),
            ..BlobOptions::weights(DType::Q4)
        },
        Format::Fixed => BlobOptions::fixed_point(hrm_convert::calibrate(ck, inputs, &|| ()).unwrap()),
    };
    hrm_convert::write_blob_with(ck, &options).unwrap()
}

/// Fraction of positions whose argmax over the vocabulary agrees.
fn agreement(got: &[f32], want: &[f32], vocab: usize) -> f64 {
    let argmax = |row: &[f32]| {
        row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
    };
    let rows = want.len() / vocab;
    let same = got.chunks_exact(vocab).zip(want.chunks_exact(vocab)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    same as f64 / rows as f64
}

fn examples(inputs: &HashMap<String, Values>, seq_len: usize) -> Vec<(Vec<u32>, u32)> {
    inputs["inputs"]
        .i64
        .chunks_exact(seq_len)
        .zip(&inputs["puzzle_identifiers"].i64)
        .map(|(row, &id)| (row.iter().map(|&t| t as u32).collect(), id as u32))
        .collect()
}

/// The checkpoint with every matrix replaced by its int8 quantisation, dequantised.
fn int8_rounded(ck: &Checkpoint) -> Checkpoint {
    let layout = hrm_runtime::blob::TensorLayout::new(ck.config);
    let named = (0..layout.count())
        .filter_map(|i| layout.spec(i))
        .filter(|spec| !spec.derived())
        .map(|spec| {
            let t = ck.tensor(spec.id).unwrap();
            let mut t = t.clone();
            if spec.rank == 2 {
                let (rows, cols) = spec.rows_cols();
                let (scales, q) = hrm_convert::quantise_i8(&t.data, rows, cols);
                t.data = q.iter().enumerate().map(|(i, &v)| scales[i / cols] * f32::from(v)).collect();
            }
            (spec.id.to_string(), t)
        })
        .collect();
    Checkpoint::from_tensors(ck.config, named).unwrap()
}

fn case_name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every format's answers agree with the reference on most positions of every golden case (the
/// fixed-point formats calibrated on the case's own inputs: the golden sets are a few examples).
#[test]
fn quantised_formats_agree_with_the_reference_argmax() {
    let mut table =
        vec!["| case | format | blob bytes | logit error, first segment | agreement, first segment | last segment |"
            .to_string()];
    table.push("|---|---|---:|---:|---:|---:|".into());
    let mut failures = Vec::new();
    for case in golden_cases() {
        let file = if case.join("checkpoint").is_file() { "checkpoint" } else { "weights.safetensors" };
        let ck = Checkpoint::load(&case.join(file), &Overrides::default()).unwrap();
        let expected = read_safetensors(&case.join("expected.safetensors"));
        let c = ck.config;
        let segments = c.halt_max_steps as usize;
        let inputs = examples(&expected, c.seq_len as usize);
        let f32_blob = hrm_convert::write_blob(&ck, DType::F32).unwrap();
        table.push(format!("| {} | f32 | {} | | | |", case_name(&case), f32_blob.len()));
        // The int8 weights run in f32 arithmetic (an f32 blob of the int8-rounded weights): what
        // the fixed-point path approximates.
        let rounded = hrm_convert::write_blob(&int8_rounded(&ck), DType::F32).unwrap();
        let reference = run_blob(&rounded, &expected["inputs"], &expected["puzzle_identifiers"], segments);
        let rounded_logits: Vec<f32> = reference.logits.iter().flat_map(|e| e[0].clone()).collect();
        let mut int4_error = f32::INFINITY;
        for format in Format::ALL {
            let b = blob(&ck, format, &inputs);
            let run = run_blob(&b, &expected["inputs"], &expected["puzzle_identifiers"], segments);
            let first_logits: Vec<f32> = run.logits.iter().flat_map(|e| e[0].clone()).collect();
            if let Format::Fixed = format {
                let error = hrm_tests::relative_error(&first_logits, &rounded_logits);
                eprintln!("{}: fixed point against f32 arithmetic, same int8 weights: {error:.2e}", case_name(&case));
                // Measured: 0.7e-3 to 2.4e-3 on the HRM and TRM attention cases, 3.4e-2 on the
                // chaotic `trm-sudoku-mlp` (where f16 rounding alone gives 1e-2).
                if error > 0.05 {
                    failures.push(format!("{}: fixed point vs int8 {error:.2e} > 5e-2", case_name(&case)));
                }
            }
            let at = |s: usize| {
                let got: Vec<f32> = run.logits.iter().flat_map(|e| e[s].clone()).collect();
                agreement(&got, &expected[&format!("segment{s}.logits")].f32, c.vocab_size as usize)
            };
            let (first, last) = (at(0), at(segments - 1));
            let got: Vec<f32> = run.logits.iter().flat_map(|e| e[0].clone()).collect();
            let error = hrm_tests::relative_error(&got, &expected["segment0.logits"].f32);
            match format {
                Format::Int4 => int4_error = error,
                // Calibrated on these very inputs, the compensated rounding must bring the
                // first segment's logits closer to the reference than plain rounding does,
                // where 4 bits still track the reference. On the chaotic `trm-sudoku-mlp` both
                // are past it (plain 1.16, compensated 1.17 since the f32 tiles of the calibration run
                // changed their order of additions; the other way round before): which is lower
                // there is the draw of f32 rounding.
                Format::Int4Compensated if int4_error < 1.0 && error >= int4_error => failures.push(format!(
                    "{}: compensated int4 logit error {error:.2e} not below plain int4's {int4_error:.2e}",
                    case_name(&case)
                )),
                _ => {}
            }
            table.push(format!(
                "| {} | {} | {} | {:.1e} | {:.1} % | {:.1} % |",
                case_name(&case),
                format.name(),
                b.len(),
                error,
                100.0 * first,
                100.0 * last
            ));
            if error > format.max_error() {
                failures.push(format!(
                    "{} {}: logit error {error:.2e} > {:.0e}",
                    case_name(&case),
                    format.name(),
                    format.max_error()
                ));
            }
            if first < format.floor() {
                failures.push(format!(
                    "{} {}: {:.1} % < {:.0} %",
                    case_name(&case),
                    format.name(),
                    100.0 * first,
                    100.0 * format.floor()
                ));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "formats beyond their bounds: {failures:?}");
}

/// The fixed-point path is deterministic: two sessions over the same blob, and a blob converted
/// twice, give the same logits to the bit.
#[test]
fn the_fixed_point_path_is_reproducible() {
    let case = golden_cases().into_iter().next().unwrap();
    let file = if case.join("checkpoint").is_file() { "checkpoint" } else { "weights.safetensors" };
    let ck = Checkpoint::load(&case.join(file), &Overrides::default()).unwrap();
    let expected = read_safetensors(&case.join("expected.safetensors"));
    let inputs = examples(&expected, ck.config.seq_len as usize);
    let (a, b) = (blob(&ck, Format::Fixed, &inputs), blob(&ck, Format::Fixed, &inputs));
    assert!(a.as_bytes() == b.as_bytes(), "calibration is not deterministic");
    let segments = ck.config.halt_max_steps as usize;
    let one = run_blob(&a, &expected["inputs"], &expected["puzzle_identifiers"], segments);
    let two = run_blob(&b, &expected["inputs"], &expected["puzzle_identifiers"], segments);
    let bits =
        |r: &hrm_tests::RunOutput| -> Vec<u32> { r.logits.iter().flatten().flatten().map(|v| v.to_bits()).collect() };
    assert_eq!(bits(&one), bits(&two));
}

/// The calibration run shows the converter the input of every layer matrix's product, each row
/// as wide as the matrix, as many rows as the forward pass multiplies.
#[test]
fn input_moments_cover_every_layer_matrix() {
    use hrm_runtime::blob::{LayerPart, Level, TensorId, TensorLayout};
    for case in golden_cases() {
        let file = if case.join("checkpoint").is_file() { "checkpoint" } else { "weights.safetensors" };
        let ck = Checkpoint::load(&case.join(file), &Overrides::default()).unwrap();
        let expected = read_safetensors(&case.join("expected.safetensors"));
        let c = ck.config;
        let inputs = examples(&expected, c.seq_len as usize);
        let moments = hrm_convert::InputMoments::collect(&ck, &inputs, &|| ()).unwrap();
        let layout = TensorLayout::new(c);
        let mut matrices = 0;
        for spec in (0..layout.count()).filter_map(|i| layout.spec(i)) {
            let TensorId::Layer { level, part, .. } = spec.id else {
                assert!(moments.get(spec.id).is_none(), "{}: {} is not a layer matrix", case_name(&case), spec.id);
                continue;
            };
            let m = moments.get(spec.id).unwrap_or_else(|| panic!("{}: no inputs for {}", case_name(&case), spec.id));
            let (_, cols) = spec.rows_cols();
            assert_eq!(m.width, cols, "{}: {}", case_name(&case), spec.id);
            // Runs of the module per segment: the L module l_cycles times per H cycle, the H
            // module (HRM) or the network in its H role (TRM, level L) once per H cycle.
            let runs = match (c.kind, level) {
                (hrm_runtime::ModelKind::Hrm, Level::L) => c.h_cycles * c.l_cycles,
                (hrm_runtime::ModelKind::Hrm, Level::H) => c.h_cycles,
                (hrm_runtime::ModelKind::Trm, _) => c.h_cycles * (c.l_cycles + 1),
            };
            // Rows per run: one per position, or one per channel for the token-mixing MLP.
            let rows = match part {
                LayerPart::TokenGateUp | LayerPart::TokenDown => c.hidden_size as usize,
                _ => c.positions(),
            };
            let want = inputs.len() * c.halt_max_steps as usize * runs as usize * rows;
            assert_eq!(m.rows, want as u64, "{}: rows of {}", case_name(&case), spec.id);
            let diagonal: f64 = (0..cols).map(|i| m.sum[i * cols + i]).sum();
            assert!(diagonal > 0.0 && m.sum.iter().all(|v| v.is_finite()), "{}: {}", case_name(&case), spec.id);
            matrices += 1;
        }
        assert!(matrices >= 4, "{}: {matrices} layer matrices", case_name(&case));
    }
}

/// A fixed-point blob's arena is the integer path's `i16` plan (well below the f32 one), and
/// a session given exactly that much runs; a fixed-point blob written before that plan, whose
/// header states the f32 arena, still loads and gives the same logits to the bit; any other
/// stated size is refused.
#[test]
fn the_fixed_point_arena_is_the_i16_plan_and_older_blobs_still_load() {
    use hrm_runtime::blob::{Header, HEADER_LEN};
    for case in golden_cases() {
        let file = if case.join("checkpoint").is_file() { "checkpoint" } else { "weights.safetensors" };
        let ck = Checkpoint::load(&case.join(file), &Overrides::default()).unwrap();
        let expected = read_safetensors(&case.join("expected.safetensors"));
        let inputs = examples(&expected, ck.config.seq_len as usize);
        let fixed = blob(&ck, Format::Fixed, &inputs);
        let model = hrm_runtime::Model::from_bytes(&fixed).unwrap();
        let config = *model.config();
        let name = case_name(&case);
        assert_eq!(model.arena_bytes(), config.fixed_arena_plan().total * 4, "{name}");
        assert_eq!(model.header().arena_bytes, model.arena_bytes() as u64, "{name}");
        eprintln!("{name}: fixed-point arena {} bytes, f32 {}", model.arena_bytes(), config.arena_bytes());
        // Activations halve; the logits and the attention's scores stay 32-bit.
        assert!(
            model.arena_bytes() * 4 < config.arena_bytes() * 3,
            "{name}: fixed-point arena {} bytes, f32 {}",
            model.arena_bytes(),
            config.arena_bytes()
        );

        // The same blob with the header an older converter wrote (both CRCs rewritten).
        let restated = |arena_bytes: u64| {
            let mut bytes = fixed.as_bytes().to_vec();
            let mut header = Header::parse(&bytes).unwrap();
            header.arena_bytes = arena_bytes;
            bytes[..HEADER_LEN].copy_from_slice(&header.encode());
            hrm_convert::AlignedBlob::from_bytes(&bytes)
        };
        let older = restated(config.arena_bytes() as u64);
        let older_model = hrm_runtime::Model::from_bytes(&older).unwrap();
        assert_eq!(older_model.arena_bytes(), model.arena_bytes(), "{name}");
        for wrong in [model.arena_bytes() as u64 - 4, model.arena_bytes() as u64 + 4] {
            assert!(
                matches!(
                    hrm_runtime::Model::from_bytes(&restated(wrong)),
                    Err(hrm_runtime::Error::InvalidHeader("arena_bytes does not match the configuration"))
                ),
                "{name}: arena_bytes {wrong} accepted"
            );
        }
        let bits = |r: &hrm_tests::RunOutput| -> Vec<u32> {
            r.logits.iter().flatten().flatten().map(|v| v.to_bits()).collect()
        };
        let (a, b) = (
            run_blob(&fixed, &expected["inputs"], &expected["puzzle_identifiers"], 2),
            run_blob(&older, &expected["inputs"], &expected["puzzle_identifiers"], 2),
        );
        assert_eq!(bits(&a), bits(&b), "{name}");
        assert_eq!((&a.q_halt, &a.q_continue), (&b.q_halt, &b.q_continue), "{name}");
    }
}
