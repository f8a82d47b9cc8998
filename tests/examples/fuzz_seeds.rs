//! Writes the seed corpora of the fuzz targets: `cargo run -p hrm-tests --example fuzz_seeds --
//! fuzz/corpus`. Small synthetic blobs and checkpoints, the golden fixtures, and (when
//! `../shared` is beside the checkout) puzzles, mazes and ARC tasks of the public data.

use std::path::{Path, PathBuf};

use hrm_runtime::{DType, HaltRule, ModelKind, PosEncoding};

/// The `pytorch` target's `-max_len` in scripts/fuzz.sh.
const PYTORCH_MAX_LEN: usize = 128 * 1024;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let root = hrm_tests::repo_root();
    let fixtures = hrm_tests::fixture_dir();

    // Blobs of every kind of model, a few kilobytes each.
    let mut configs = Vec::new();
    let mut base = hrm_tests::tiny_sudoku_config();
    base.hidden_size = 8;
    base.puzzle_emb_ndim = 8;
    base.mlp_inter = 8;
    base.seq_len = 6;
    base.vocab_size = 5;
    base.num_puzzle_identifiers = 2;
    configs.push(base);
    let mut learned = base;
    learned.pos_encoding = PosEncoding::Learned;
    learned.puzzle_emb_ndim = 0;
    learned.puzzle_emb_len = 0;
    configs.push(learned);
    let mut trm = base;
    trm.kind = ModelKind::Trm;
    trm.h_layers = 0;
    trm.halt_rule = HaltRule::HaltPositive;
    trm.puzzle_emb_len = 2;
    configs.push(trm);
    let mut mlp_t = trm;
    mlp_t.mlp_t = true;
    mlp_t.pos_encoding = PosEncoding::None;
    mlp_t.mlp_t_inter = 8;
    configs.push(mlp_t);
    for (i, config) in configs.iter().enumerate() {
        let ck =
            hrm_convert::Checkpoint::from_tensors(*config, hrm_tests::synthetic_tensors(config, i as u64)).unwrap();
        for dtype in [DType::F32, DType::F16, DType::Bf16, DType::I8, DType::Q4] {
            let blob = hrm_convert::write_blob(&ck, dtype).unwrap();
            for target in ["blob", "blob_resealed"] {
                write(&out.join(target), &format!("model{i}-{dtype}.blob"), &blob);
            }
        }
        // The integer-only path.
        let tokens: Vec<u32> = (0..config.seq_len).map(|t| t % config.vocab_size).collect();
        let formats = hrm_convert::calibrate(&ck, &[(tokens, 0)], &|| ()).unwrap();
        let options = hrm_convert::BlobOptions::fixed_point(formats);
        let blob = hrm_convert::write_blob_with(&ck, &options).unwrap();
        for target in ["blob", "blob_resealed"] {
            write(&out.join(target), &format!("model{i}-fixed.blob"), &blob);
        }
        // The same tensors as safetensors.
        let tmp = std::env::temp_dir().join(format!("hrm-seed-{}", std::process::id()));
        hrm_tests::write_reference_dir(&tmp, config, i as u64);
        write(
            &out.join("safetensors"),
            &format!("model{i}.safetensors"),
            &std::fs::read(tmp.join("weights.safetensors")).unwrap(),
        );
        let yaml = std::fs::read(tmp.join("all_config.yaml")).unwrap();
        let json = std::fs::read(tmp.join("dataset.json")).unwrap();
        write(&out.join("configs"), &format!("model{i}.txt"), &[yaml, b"\0".to_vec(), json].concat());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    // The golden fixtures: official PyTorch checkpoints and configs.
    for case in std::fs::read_dir(&fixtures).unwrap() {
        let case = case.unwrap().path();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        // Only the small ones: a checkpoint is mostly tensor bytes, and libFuzzer's speed falls
        // with input size (the `pytorch` target runs with `-max_len` 128 KiB). tiny.pt, kept in
        // tests/fixtures/fuzz/pytorch, has the official structure in 55 KB.
        if let Ok(bytes) = std::fs::read(case.join("checkpoint")) {
            if bytes.len() <= PYTORCH_MAX_LEN {
                write(&out.join("pytorch"), &name, &bytes);
            }
        }
        let yaml = std::fs::read(case.join("all_config.yaml")).unwrap();
        let json = std::fs::read(case.join("dataset.json")).unwrap();
        write(&out.join("configs"), &name, &[yaml, b"\0".to_vec(), json].concat());
    }

    // Inputs kept in the repository (tests/fixtures/fuzz/TARGET: small seeds and every input that
    // ever crashed a target).
    if let Ok(targets) = std::fs::read_dir(root.join("tests/fixtures/fuzz")) {
        for target in targets.flatten() {
            for file in std::fs::read_dir(target.path()).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                write(&out.join(target.file_name()), &name, &std::fs::read(file.path()).unwrap());
            }
        }
    }

    // Puzzles: the firmware's files, and the public data when it is there.
    for file in ["puzzles.txt", "malformed.txt"] {
        write(&out.join("puzzles"), file, &std::fs::read(root.join("firmware-examples").join(file)).unwrap());
    }
    let shared = root.join("../shared/data");
    if shared.is_dir() {
        for file in ["hard-1000.csv", "seventeen-1000.csv"] {
            let text = std::fs::read_to_string(shared.join("sudoku").join(file)).unwrap();
            let head: String = text.lines().take(12).map(|l| format!("{l}\n")).collect();
            write(&out.join("puzzles"), file, head.as_bytes());
        }
        let mazes = std::fs::read_to_string(shared.join("maze/maze30-200.txt")).unwrap();
        let first: String = mazes.split("\n\n").next().unwrap_or_default().to_string() + "\n";
        write(&out.join("puzzles"), "maze30.txt", first.as_bytes());
        let arc = shared.join("arc/arc-agi-1/training");
        let mut tasks: Vec<PathBuf> = std::fs::read_dir(&arc).unwrap().map(|e| e.unwrap().path()).collect();
        tasks.sort();
        for task in tasks.iter().take(5) {
            write(&out.join("puzzles"), &task.file_name().unwrap().to_string_lossy(), &std::fs::read(task).unwrap());
        }
    } else {
        eprintln!("warning: ../shared/data not found: no public puzzles, mazes or ARC tasks in the seeds");
    }
    eprintln!("seed corpora written to {}", out.display());
}
