//! Parity with the reference implementations: every golden case, converted from its official
//! PyTorch checkpoint and from its safetensors copy, run through the runtime, against the
//! outputs the reference computed, in f32, f16 and bf16.

use std::path::Path;

use hrm_convert::{Checkpoint, Overrides};
use hrm_runtime::DType;
use hrm_tests::{assert_matches, golden_cases, read_safetensors, run_blob};

fn convert(case: &Path, weights_file: &str, dtype: DType) -> (Checkpoint, hrm_convert::AlignedBlob) {
    let ck = Checkpoint::load(&case.join(weights_file), &Overrides::default())
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    let blob = hrm_convert::write_blob(&ck, dtype).unwrap();
    (ck, blob)
}

/// The official PyTorch checkpoint, or the safetensors copy where a fixture ships only that.
fn weights_file(case: &Path) -> &'static str {
    if case.join("checkpoint").is_file() {
        "checkpoint"
    } else {
        "weights.safetensors"
    }
}

fn check_case(case: &Path, dtype: DType, expected_file: &str) -> Vec<String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let (ck, blob) = convert(case, weights_file(case), dtype);
    let expected = read_safetensors(&case.join(expected_file));
    let inputs = read_safetensors(&case.join("expected.safetensors"));
    let segments = ck.config.halt_max_steps as usize;
    let run = run_blob(&blob, &inputs["inputs"], &inputs["puzzle_identifiers"], segments);
    assert_matches(&format!("{name} ({dtype})"), ck.config.kind, &run, &expected)
}

#[test]
fn f32_blobs_from_official_checkpoints_match_the_reference() {
    for case in golden_cases() {
        for line in check_case(&case, DType::F32, "expected.safetensors") {
            eprintln!("{line}");
        }
    }
}

#[test]
fn f16_blobs_match_the_reference_on_f16_rounded_weights() {
    for case in golden_cases() {
        check_case(&case, DType::F16, "expected-f16.safetensors");
    }
}

#[test]
fn bf16_blobs_match_the_reference_on_bf16_rounded_weights() {
    for case in golden_cases() {
        check_case(&case, DType::Bf16, "expected-bf16.safetensors");
    }
}

/// The safetensors copy holds the same tensors as the PyTorch checkpoint, so both readers must
/// give the same blob byte for byte (then the f32 parity above covers both), for every dtype.
#[test]
fn safetensors_and_pytorch_checkpoints_give_identical_blobs() {
    for case in golden_cases().into_iter().filter(|c| c.join("checkpoint").is_file()) {
        for dtype in [DType::F32, DType::F16, DType::Bf16] {
            let (_, from_pickle) = convert(&case, "checkpoint", dtype);
            let (_, from_safetensors) = convert(&case, "weights.safetensors", dtype);
            assert!(
                from_pickle.as_bytes() == from_safetensors.as_bytes(),
                "{}: {dtype} blobs differ between the checkpoint and weights.safetensors",
                case.display()
            );
        }
    }
}

/// A checkpoint directory converts the same as naming its `checkpoint` file.
#[test]
fn directories_convert_like_their_checkpoint_file() {
    let case = &golden_cases().into_iter().find(|c| c.join("checkpoint").is_file()).unwrap();
    let from_dir =
        hrm_convert::write_blob(&Checkpoint::load(case, &Overrides::default()).unwrap(), DType::F32).unwrap();
    let (_, from_file) = convert(case, "checkpoint", DType::F32);
    assert!(from_dir.as_bytes() == from_file.as_bytes());
}

/// The copies in tests/fixtures are the reference data, unchanged.
#[test]
fn fixtures_are_identical_to_the_shared_golden_files() {
    let Some(shared) = hrm_tests::shared_dir() else { return };
    let fixtures = hrm_tests::fixture_dir();
    let mut compared = 0;
    for case in std::fs::read_dir(&fixtures).unwrap() {
        let case = case.unwrap().path();
        for file in std::fs::read_dir(&case).unwrap() {
            let file = file.unwrap().path();
            let twin = shared.join("golden").join(case.file_name().unwrap()).join(file.file_name().unwrap());
            assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&twin).unwrap(), "{}", file.display());
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} fixture files");
}

/// The runtime's two strategies (whole sequence for a block covering it; blocks of rows for a
/// small block, as on a microcontroller) give the reference's answers alike.
#[test]
fn small_work_blocks_match_the_reference_too() {
    for case in golden_cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        for block in [1, 5] {
            let mut ck = Checkpoint::load(&case.join(weights_file(&case)), &Overrides::default()).unwrap();
            ck.config.block = block;
            let blob = hrm_convert::write_blob(&ck, DType::F32).unwrap();
            let expected = read_safetensors(&case.join("expected.safetensors"));
            let segments = ck.config.halt_max_steps as usize;
            let run = run_blob(&blob, &expected["inputs"], &expected["puzzle_identifiers"], segments);
            assert_matches(&format!("{name} (block {block})"), ck.config.kind, &run, &expected);
        }
    }
}

/// A blob whose attention and SwiGLU matrices are stored in 16-row panels (`hrm convert
/// --layout panels`) matches the reference, and on x86-64 and aarch64, where its tiles are
/// the row-major product's without the packing, gives that product's bits: every logit, Q
/// value and carry equal to the row-major blob's.
#[test]
fn panel_blobs_match_the_reference_and_the_row_major_bits() {
    for case in golden_cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (ck, rows) = convert(&case, weights_file(&case), DType::F32);
        let (_, panels) = convert(&case, weights_file(&case), DType::F32Panels);
        assert_ne!(&rows[..], &panels[..], "{name}: the layouts differ");
        let expected = read_safetensors(&case.join("expected.safetensors"));
        let segments = ck.config.halt_max_steps as usize;
        let run = |blob: &[u8]| run_blob(blob, &expected["inputs"], &expected["puzzle_identifiers"], segments);
        let (a, b) = (run(&rows), run(&panels));
        assert_matches(&format!("{name} (f32 panels)"), ck.config.kind, &b, &expected);
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            let bits = |r: &hrm_tests::RunOutput| -> Vec<u32> {
                let mut v: Vec<u32> = r.logits.iter().flatten().flatten().map(|x| x.to_bits()).collect();
                v.extend(r.q_halt.iter().chain(&r.q_continue).flatten().map(|x| x.to_bits()));
                v.extend(r.carry0.iter().flat_map(|(h, l)| h.iter().chain(l)).map(|x| x.to_bits()));
                v
            };
            assert_eq!(bits(&a), bits(&b), "{name}: the panel blob's outputs differ from the row-major blob's");
        }
    }
}
