//! Helpers shared by the cross-crate tests and the CLI tests: where the reference data lives,
//! reading golden files, running a blob, comparing within the reference's tolerances, and
//! building small synthetic models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hrm_convert::{AlignedBlob, Checkpoint, HostTensor};
use hrm_runtime::blob::TensorLayout;
use hrm_runtime::{Config, HaltRule, ModelKind, PosEncoding, Session};
use safetensors::{Dtype, SafeTensors};

pub mod fuzzing;
pub mod peak;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// `../shared` beside the checkout (or `$HRM_SHARED`). When it is missing the tests that need it
/// say so loudly and skip, except under CI (`CI` set), where a missing `../shared` is a failure.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HRM_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"));
    if dir.join("golden").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {} has no golden/ folder: the reference data must be beside the clone", dir.display());
    }
    loud(&format!("{} not found: running only the golden cases copied into tests/fixtures", dir.display()));
    None
}

/// A warning that shows even though the test harness captures `eprintln!` of passing tests.
pub fn loud(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** WARNING: {message} ***\n");
}

/// The golden cases copied into the repository (the smallest three; hrm-sudoku-tiny without its
/// PyTorch `checkpoint`, which holds the same tensors as its `weights.safetensors`).
pub fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/golden")
}

/// Every golden case to test: all of `../shared/golden` when present, else the fixtures.
pub fn golden_cases() -> Vec<PathBuf> {
    let root = shared_dir().map(|d| d.join("golden")).unwrap_or_else(fixture_dir);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.safetensors").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases in {}", root.display());
    cases
}

/// A tensor from a golden file.
#[derive(Debug, Clone)]
pub struct Values {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

pub fn read_safetensors(path: &Path) -> HashMap<String, Values> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let d = t.data();
            let (f, i) = match t.dtype() {
                Dtype::F32 => (d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![]),
                Dtype::I32 => {
                    (vec![], d.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap()))).collect())
                }
                Dtype::I64 => (vec![], d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
                other => panic!("{}: {name} has dtype {other:?}", path.display()),
            };
            (name, Values { shape: t.shape().to_vec(), f32: f, i64: i })
        })
        .collect()
}

/// `max |a − b| / max |b|`, the measure of `golden/README.md`.
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "tensor lengths differ");
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0f32, f32::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// The tolerance of `golden/README.md`: HRM 1e-4; TRM's recursion amplifies rounding, so
/// 1e-4, 1e-3 and 5e-3 at segments 0, 1 and 2 (and 5e-3 beyond).
pub fn tolerance(kind: ModelKind, segment: usize) -> f32 {
    match (kind, segment) {
        (ModelKind::Hrm, _) | (ModelKind::Trm, 0) => 1e-4,
        (ModelKind::Trm, 1) => 1e-3,
        (ModelKind::Trm, _) => 5e-3,
    }
}

/// Outputs of every segment of every example: `[example][segment]`.
pub struct RunOutput {
    pub logits: Vec<Vec<Vec<f32>>>,
    pub q_halt: Vec<Vec<f32>>,
    pub q_continue: Vec<Vec<f32>>,
    /// `z_H`, `z_L` after the first segment, per example.
    pub carry0: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Runs `segments` segments of a blob on the golden inputs.
pub fn run_blob(blob: &[u8], inputs: &Values, ids: &Values, segments: usize) -> RunOutput {
    let model = hrm_runtime::Model::from_bytes(blob).expect("valid blob");
    let seq_len = model.config().seq_len as usize;
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).expect("arena");
    let mut out = RunOutput { logits: vec![], q_halt: vec![], q_continue: vec![], carry0: vec![] };
    for (row, &id) in inputs.i64.chunks_exact(seq_len).zip(&ids.i64) {
        let tokens: Vec<u32> = row.iter().map(|&t| t as u32).collect();
        session.reset(&tokens, id as u32).expect("reset");
        let (mut l, mut qh, mut qc) = (vec![], vec![], vec![]);
        for s in 0..segments {
            let o = session.step().expect("step");
            assert_eq!(o.index as usize, s);
            if s == 0 {
                out.carry0.push((session.z_h().to_vec(), session.z_l().to_vec()));
            }
            let mut logits = vec![0.0f32; seq_len * model.config().vocab_size as usize];
            session.logits_into(&mut logits).expect("logits");
            l.push(logits);
            qh.push(o.q_halt);
            qc.push(o.q_continue);
        }
        out.logits.push(l);
        out.q_halt.push(qh);
        out.q_continue.push(qc);
    }
    out
}

/// Compares a run with a golden `expected*.safetensors`; returns one line per tensor with its
/// relative error, and panics (naming the tensor) beyond tolerance.
pub fn assert_matches(case: &str, kind: ModelKind, run: &RunOutput, expected: &HashMap<String, Values>) -> Vec<String> {
    let mut report = Vec::new();
    let segments = run.logits.first().map_or(0, Vec::len);
    let batch = run.logits.len();
    let mut check = |name: String, got: Vec<f32>, tol: f32| {
        let want = expected.get(&name).unwrap_or_else(|| panic!("{case}: expected file has no {name}"));
        assert_eq!(got.len(), want.f32.len(), "{case}: {name} length");
        let err = relative_error(&got, &want.f32);
        report.push(format!("{case} {name}: {err:.2e} (tolerance {tol:.0e})"));
        assert!(err <= tol, "{case}: {name} differs from the reference by {err:.3e} > {tol:.0e}");
    };
    for s in 0..segments {
        let tol = tolerance(kind, s);
        check(format!("segment{s}.logits"), run.logits.iter().flat_map(|e| e[s].clone()).collect(), tol);
        check(format!("segment{s}.q_halt"), (0..batch).map(|b| run.q_halt[b][s]).collect(), tol);
        check(format!("segment{s}.q_continue"), (0..batch).map(|b| run.q_continue[b][s]).collect(), tol);
    }
    if expected.contains_key("segment0.z_H") {
        check("segment0.z_H".into(), run.carry0.iter().flat_map(|c| c.0.clone()).collect(), tolerance(kind, 0));
        check("segment0.z_L".into(), run.carry0.iter().flat_map(|c| c.1.clone()).collect(), tolerance(kind, 0));
    }
    assert!(expected.contains_key(&format!("segment{}.logits", segments.saturating_sub(1))));
    assert!(!expected.contains_key(&format!("segment{segments}.logits")), "{case}: the reference ran more segments");
    report
}

/// Deterministic pseudo-random numbers (splitmix64) for synthetic weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

/// A small HRM Sudoku configuration (h 16, 2 heads, one layer per module).
pub fn tiny_sudoku_config() -> Config {
    Config {
        kind: ModelKind::Hrm,
        pos_encoding: PosEncoding::Rope,
        halt_rule: HaltRule::HaltOverContinue,
        mlp_t: false,
        hidden_size: 16,
        num_heads: 2,
        h_layers: 1,
        l_layers: 1,
        h_cycles: 2,
        l_cycles: 2,
        halt_max_steps: 3,
        seq_len: 81,
        vocab_size: 11,
        num_puzzle_identifiers: 1,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 1,
        mlp_inter: Config::swiglu_inter(2.0, 16),
        mlp_t_inter: 0,
        expansion: 2.0,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        halt_exploration_prob: 0.1,
        block: 4,
    }
}

/// Random tensors, named as in a reference state dict, for every tensor `config` needs.
pub fn synthetic_tensors(config: &Config, seed: u64) -> Vec<(String, HostTensor)> {
    let layout = TensorLayout::new(*config);
    let mut rng = Rng::new(seed);
    (0..layout.count())
        .filter_map(|i| layout.spec(i))
        .filter(|spec| !spec.always_f32())
        .map(|spec| {
            let shape: Vec<usize> = spec.shape.iter().take(spec.rank as usize).map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            let scale = 1.0 / (*shape.last().unwrap() as f32).sqrt();
            let data = (0..n).map(|_| rng.uniform(scale * 1.7)).collect();
            (format!("_orig_mod.model.inner.{}", spec.id), HostTensor { shape, data })
        })
        .collect()
}

/// A blob of a synthetic model.
pub fn synthetic_blob(config: &Config, seed: u64) -> AlignedBlob {
    let ck = Checkpoint::from_tensors(*config, synthetic_tensors(config, seed)).expect("synthetic checkpoint");
    hrm_convert::write_blob(&ck, hrm_runtime::DType::F32).expect("synthetic blob")
}

/// Writes a checkpoint directory as the reference would (`weights.safetensors`,
/// `all_config.yaml`, `dataset.json`) for a synthetic HRM model of `config`.
pub fn write_reference_dir(dir: &Path, config: &Config, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let tensors = synthetic_tensors(config, seed);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("weights.safetensors")).unwrap();
    let name = match config.kind {
        ModelKind::Hrm => "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
        ModelKind::Trm => "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
    };
    let pos = match config.pos_encoding {
        PosEncoding::Rope => "rope",
        PosEncoding::Learned => "learned",
        PosEncoding::None => "none",
    };
    let yaml = format!(
        "arch:\n  name: {name}\n  H_cycles: {}\n  L_cycles: {}\n  H_layers: {}\n  L_layers: {}\n  hidden_size: {}\n  \
         num_heads: {}\n  expansion: {}\n  halt_max_steps: {}\n  halt_exploration_prob: 0.1\n  pos_encodings: {pos}\n  \
         puzzle_emb_ndim: {}\n  puzzle_emb_len: {}\n  mlp_t: {}\nlr: 0.0001\n",
        config.h_cycles,
        config.l_cycles,
        config.h_layers,
        config.l_layers,
        config.hidden_size,
        config.num_heads,
        config.expansion,
        config.halt_max_steps,
        config.puzzle_emb_ndim,
        config.puzzle_emb_len,
        config.mlp_t
    );
    std::fs::write(dir.join("all_config.yaml"), yaml).unwrap();
    let json = serde_json::json!({
        "seq_len": config.seq_len,
        "vocab_size": config.vocab_size,
        "num_puzzle_identifiers": config.num_puzzle_identifiers,
        "pad_id": 0,
    });
    std::fs::write(dir.join("dataset.json"), json.to_string()).unwrap();
}
