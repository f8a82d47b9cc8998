//! Damaged and hostile blobs, and bad calls into a session: every one is refused with the
//! error that names the problem, never a panic.

use hrm_convert::AlignedBlob;
use hrm_runtime::blob::{self, Header, TensorEntry, ENTRY_LEN, HEADER_LEN};
use hrm_runtime::{Error, Model, Session, TensorProblem};
use hrm_tests::{synthetic_blob, tiny_sudoku_config};

/// A complete model of a few kilobytes, so that every one of its bits can be flipped.
fn small_config() -> hrm_runtime::Config {
    let mut config = tiny_sudoku_config();
    config.hidden_size = 8;
    config.puzzle_emb_ndim = 8;
    config.mlp_inter = 8;
    config.seq_len = 6;
    config.vocab_size = 5;
    config
}

fn small_blob() -> AlignedBlob {
    synthetic_blob(&small_config(), 7)
}

fn golden_fixture_blob() -> AlignedBlob {
    let case = hrm_tests::fixture_dir().join("trm-maze-att");
    let ck = hrm_convert::Checkpoint::load(&case, &Default::default()).unwrap();
    hrm_convert::write_blob(&ck, hrm_runtime::DType::F32).unwrap()
}

/// The error a single flipped bit at `byte` must give.
fn expected_for_flip(byte: usize) -> fn(&Error) -> bool {
    match byte {
        0..=3 => |e| matches!(e, Error::BadMagic),
        4..=7 => |e| matches!(e, Error::UnsupportedVersion { .. }),
        8..=127 => |e| matches!(e, Error::HeaderCrcMismatch { .. }),
        _ => |e| matches!(e, Error::PayloadCrcMismatch { .. }),
    }
}

#[test]
fn every_single_bit_flip_is_caught_with_the_right_error() {
    let mut blob = small_blob();
    Model::from_bytes(&blob).expect("the undamaged blob loads");
    let len = blob.len();
    assert!(len < 10_000, "the exhaustive test wants a small blob, not {len} bytes");
    for byte in 0..len {
        for bit in 0..8 {
            blob.as_mut_bytes()[byte] ^= 1 << bit;
            match Model::from_bytes(&blob) {
                Ok(_) => panic!("flipping bit {bit} of byte {byte} went unnoticed"),
                Err(e) => assert!(expected_for_flip(byte)(&e), "bit {bit} of byte {byte}: {e:?}"),
            }
            blob.as_mut_bytes()[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn bit_flips_in_a_real_model_are_caught() {
    let mut blob = golden_fixture_blob();
    let table_end = HEADER_LEN + Header::parse(&blob).unwrap().tensor_count as usize * ENTRY_LEN;
    // Every byte of header and table, then a spread of positions through the weights.
    let data_positions = (table_end..blob.len()).step_by(997);
    for byte in (0..table_end).chain(data_positions) {
        let bit = byte % 8;
        blob.as_mut_bytes()[byte] ^= 1 << bit;
        let e = Model::from_bytes(&blob).err();
        assert!(e.as_ref().is_some_and(expected_for_flip(byte)), "byte {byte}: {e:?}");
        blob.as_mut_bytes()[byte] ^= 1 << bit;
    }
}

#[test]
fn truncation_anywhere_is_caught() {
    for blob in [small_blob(), golden_fixture_blob()] {
        let bytes = blob.as_bytes();
        for len in 0..bytes.len() {
            match Model::from_bytes(&bytes[..len]) {
                Err(Error::Truncated { needed, got }) => {
                    assert_eq!(got, len as u64);
                    assert!(needed > got);
                }
                other => panic!("truncated to {len} bytes: {other:?}"),
            }
        }
        // Bytes after the blob (the rest of a flash sector, say) are ignored.
        let mut padded = bytes.to_vec();
        padded.extend_from_slice(&[0xff; 100]);
        let padded = AlignedBlob::from_bytes(&padded);
        assert_eq!(Model::from_bytes(&padded).unwrap().bytes().len(), bytes.len());
    }
}

#[test]
fn wrong_version_and_magic_are_named() {
    let mut bytes = small_blob().as_bytes().to_vec();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(Model::from_bytes(&AlignedBlob::from_bytes(&bytes)).err(), Some(Error::UnsupportedVersion { found: 2 }));
    bytes[..4].copy_from_slice(b"GGUF");
    assert_eq!(Model::from_bytes(&AlignedBlob::from_bytes(&bytes)).err(), Some(Error::BadMagic));
    assert_eq!(Model::from_bytes(&[]).err(), Some(Error::Truncated { needed: 128, got: 0 }));
}

/// Rewrites both CRCs, as a hostile (or buggy) writer would, so that only the structural checks
/// stand between the bytes and the kernels.
fn reseal(bytes: &mut [u8]) -> AlignedBlob {
    let crc = blob::CRC32.checksum(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    let mut header = Header::parse(bytes).expect("parsable header");
    let end = (header.blob_len as usize).min(bytes.len());
    header.payload_crc = blob::CRC32.checksum(&bytes[HEADER_LEN..end]);
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    AlignedBlob::from_bytes(bytes)
}

fn with_header(bytes: &[u8], edit: impl FnOnce(&mut Header)) -> AlignedBlob {
    let mut bytes = bytes.to_vec();
    let mut header = Header::parse(&bytes).unwrap();
    edit(&mut header);
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    reseal(&mut bytes)
}

fn with_entry(bytes: &[u8], index: usize, edit: impl FnOnce(&mut TensorEntry)) -> AlignedBlob {
    let mut bytes = bytes.to_vec();
    let mut entry = TensorEntry::read(&bytes, index).unwrap();
    edit(&mut entry);
    let at = HEADER_LEN + index * ENTRY_LEN;
    bytes[at..at + ENTRY_LEN].copy_from_slice(&entry.encode());
    reseal(&mut bytes)
}

#[test]
fn absurd_headers_with_valid_crcs_are_refused() {
    let good = small_blob();
    let cases: Vec<(&str, AlignedBlob)> = vec![
        ("hidden_size 0", with_header(&good, |h| h.config.hidden_size = 0)),
        ("huge hidden_size", with_header(&good, |h| h.config.hidden_size = u32::MAX)),
        ("heads do not divide h", with_header(&good, |h| h.config.num_heads = 3)),
        ("no layers", with_header(&good, |h| h.config.l_layers = 0)),
        ("huge seq_len", with_header(&good, |h| h.config.seq_len = u32::MAX)),
        ("zero vocabulary", with_header(&good, |h| h.config.vocab_size = 0)),
        ("too many cycles", with_header(&good, |h| h.config.l_cycles = u32::MAX)),
        ("NaN epsilon", with_header(&good, |h| h.config.rms_norm_eps = f32::NAN)),
        ("arena too small", with_header(&good, |h| h.arena_bytes -= 4)),
        ("arena huge", with_header(&good, |h| h.arena_bytes = u64::MAX)),
        ("tensor count", with_header(&good, |h| h.tensor_count += 1)),
        ("tensor count huge", with_header(&good, |h| h.tensor_count = u32::MAX)),
        ("blob longer than the bytes", with_header(&good, |h| h.blob_len += 64)),
    ];
    for (what, blob) in cases {
        match Model::from_bytes(&blob) {
            Err(Error::InvalidHeader(_) | Error::Truncated { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn hostile_tensor_tables_are_refused() {
    let good = small_blob();
    let len = good.len() as u64;
    let bad = |index: u32, problem| Err::<(), _>(Error::InvalidTensor { index, problem });
    let check = |blob: AlignedBlob, want: Result<(), Error>| {
        assert_eq!(Model::from_bytes(&blob).map(|_| ()), want);
    };
    check(with_entry(&good, 0, |e| e.shape[0] += 1), bad(0, TensorProblem::Shape));
    check(with_entry(&good, 0, |e| e.rank = 3), bad(0, TensorProblem::Shape));
    check(with_entry(&good, 2, |e| e.dtype = 9), bad(2, TensorProblem::DType));
    check(with_entry(&good, 1, |e| e.len -= 4), bad(1, TensorProblem::Length));
    check(with_entry(&good, 1, |e| e.offset = len - 64), bad(1, TensorProblem::OutOfBounds));
    check(with_entry(&good, 1, |e| e.offset = u64::MAX - 63), bad(1, TensorProblem::OutOfBounds));
    check(with_entry(&good, 1, |e| e.offset = 0), bad(1, TensorProblem::OutOfBounds));
    check(with_entry(&good, 1, |e| e.offset += 4), bad(1, TensorProblem::Alignment));
    // The rotary tables must stay f32 whatever the weights are.
    let rope = hrm_runtime::blob::TensorLayout::new(small_config()).index_of(hrm_runtime::TensorId::RopeCos).unwrap();
    check(
        with_entry(&good, rope, |e| {
            e.dtype = 1;
            e.len /= 2;
        }),
        bad(rope as u32, TensorProblem::DType),
    );
    // Panels (dtype 6) only for the attention's and the SwiGLU's matrices, and only when the
    // row ranges the forward pass takes start panels (the small model's h = 8 does not).
    let layout = hrm_runtime::blob::TensorLayout::new(small_config());
    let qkv = layout
        .index_of(hrm_runtime::TensorId::Layer {
            level: hrm_runtime::blob::Level::L,
            layer: 0,
            part: hrm_runtime::blob::LayerPart::Qkv,
        })
        .unwrap();
    let to_panels = |e: &mut TensorEntry| {
        e.dtype = hrm_runtime::DType::F32Panels.code();
        e.len = hrm_runtime::DType::F32Panels.bytes(e.shape[0] as usize, e.shape[1] as usize).unwrap() as u64;
    };
    check(with_entry(&good, 0, to_panels), bad(0, TensorProblem::DType));
    check(with_entry(&good, qkv, to_panels), bad(qkv as u32, TensorProblem::DType));
    let swapped = with_entry(&good, 0, |e| e.id = hrm_runtime::TensorId::LmHead.code());
    assert!(matches!(
        Model::from_bytes(&swapped),
        Err(Error::InvalidTensor { index: 0, problem: TensorProblem::UnexpectedId { .. } })
    ));
    let message = Model::from_bytes(&swapped).err().unwrap().to_string();
    assert!(message.contains("lm_head.weight") && message.contains("embed_tokens"), "{message}");
}

#[test]
fn misaligned_blobs_and_arenas_are_refused() {
    let blob = small_blob();
    let mut shifted = vec![0u8; blob.len() + 8];
    let start = (0..8).find(|i| (shifted.as_ptr() as usize + i) % 4 == 1).unwrap();
    shifted[start..start + blob.len()].copy_from_slice(&blob);
    assert_eq!(Model::from_bytes(&shifted[start..]).err(), Some(Error::Misaligned));

    let model = Model::from_bytes(&blob).unwrap();
    let needed = model.arena_bytes();
    assert_eq!(needed, small_config().arena_bytes());
    let mut arena = vec![0u32; needed / 4 + 1];
    let bytes: &mut [u8] = bytemuck_bytes(&mut arena);
    assert_eq!(
        Session::new(model, &mut bytes[..needed - 1]).err(),
        Some(Error::ArenaTooSmall { needed, got: needed - 1 })
    );
    assert_eq!(Session::new(model, &mut bytes[1..needed + 1]).err(), Some(Error::ArenaMisaligned));
    assert!(Session::new(model, &mut bytes[..needed]).is_ok());
}

fn bytemuck_bytes(words: &mut [u32]) -> &mut [u8] {
    let len = words.len() * 4;
    // SAFETY: u32 storage viewed as bytes; alignment only decreases.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

#[test]
fn bad_inputs_to_a_session_are_refused() {
    let blob = small_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let mut arena = hrm_runtime::Arena::<{ 1 << 16 }>::new();
    let mut session = Session::new(model, arena.as_mut_bytes()).unwrap();
    assert_eq!(session.step().err(), Some(Error::NotReset));
    let mut tokens = [1u32; 6];
    assert_eq!(session.reset(&tokens[..5], 0).err(), Some(Error::InputLength { expected: 6, got: 5 }));
    tokens[5] = 5;
    assert_eq!(session.reset(&tokens, 0).err(), Some(Error::InvalidToken { position: 5, token: 5 }));
    tokens[5] = 4;
    assert_eq!(session.reset(&tokens, 1).err(), Some(Error::InvalidPuzzleId { id: 1, count: 1 }));
    // A failed reset leaves no half-loaded example behind.
    assert_eq!(session.step().err(), Some(Error::NotReset));
    session.reset(&tokens, 0).unwrap();
    assert_eq!(session.run(hrm_runtime::Halting::Fixed).unwrap(), 3);
    let mut out = [0u32; 5];
    assert_eq!(session.predictions(&mut out).err(), Some(Error::OutputLength { expected: 6, got: 5 }));
}
