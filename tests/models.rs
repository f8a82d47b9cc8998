//! The models shipped in `models/`: their blobs are exactly what the converter makes of their
//! checkpoints, so the binary's built-in model is the documented, reproducible one.

use hrm_convert::{Checkpoint, Overrides};

#[test]
fn the_shipped_sudoku_blob_is_the_conversion_of_its_checkpoint() {
    let dir = hrm_tests::repo_root().join("models/sudoku");
    let ck = Checkpoint::load(&dir, &Overrides::default()).unwrap();
    let blob = hrm_convert::write_blob(&ck, hrm_runtime::DType::F32).unwrap();
    let shipped = std::fs::read(dir.join("sudoku.blob")).unwrap();
    assert!(
        blob.as_bytes() == shipped.as_slice(),
        "models/sudoku/sudoku.blob differs from `hrm convert models/sudoku`"
    );
    let model = hrm_runtime::Model::from_bytes(&blob).unwrap();
    assert_eq!(model.config().seq_len, 81);
    assert_eq!(model.config().vocab_size, hrm_runtime::sudoku::VOCAB);
}
