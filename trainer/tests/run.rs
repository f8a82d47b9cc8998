//! Whole runs: a resumed run continues exactly as an uninterrupted one, and a run's model and
//! the blob converted from it predict the same answers.

use std::path::Path;

use hrm_runtime::Halting;
use hrm_trainer::eval::{self, Predictor};
use hrm_trainer::evaluate::Loaded;
use hrm_trainer::run_dir::read_metrics;
use hrm_trainer::tasks::TaskKind;
use hrm_trainer::train::{self, TrainArgs};

fn args(out: &Path, task: TaskKind, arch: hrm_trainer::presets::Arch, steps: u64) -> TrainArgs {
    TrainArgs {
        task: Some(task),
        arch,
        preset: hrm_trainer::presets::Preset::Tiny,
        data: None,
        eval_data: None,
        max_minutes: None,
        steps: Some(steps),
        out: out.to_owned(),
        resume: false,
        device: "cpu".into(),
        seed: 7,
        batch_size: Some(8),
        lr: None,
        halt_max_steps: None,
        eval_every: 4,
        eval_count: 8,
        log_every: 1,
        checkpoint_minutes: 100.0,
        init: None,
        givens: (40, 50),
        pool: 40,
        maze_size: 10,
        augmentations: 2,
        quiet: true,
        replay: None,
        teacher_forced: false,
    }
}

/// Metrics without the wall-clock fields.
fn comparable(dir: &Path) -> Vec<String> {
    read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|mut m| {
            m.steps_per_s = 0.0;
            m.elapsed_s = 0.0;
            serde_json::to_string(&m).unwrap()
        })
        .collect()
}

#[test]
fn a_resumed_run_continues_exactly() {
    for (task, arch) in
        [(TaskKind::Sudoku, hrm_trainer::presets::Arch::Hrm), (TaskKind::Maze, hrm_trainer::presets::Arch::Trm)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        let parts = tmp.path().join("parts");
        train::run(&args(&whole, task, arch, 8)).unwrap();
        train::run(&args(&parts, task, arch, 3)).unwrap();
        let mut more = args(&parts, task, arch, 8);
        more.resume = true;
        train::run(&more).unwrap();
        let (a, b) = (comparable(&whole), comparable(&parts));
        // The interrupted run has one extra line: the final evaluation at step 3.
        let b: Vec<String> = b.into_iter().filter(|l| !l.starts_with("{\"step\":3,") || a.contains(l)).collect();
        assert_eq!(a, b, "{task:?}: metrics differ after resuming");
        assert_eq!(
            std::fs::read(whole.join("model.safetensors")).unwrap(),
            std::fs::read(parts.join("model.safetensors")).unwrap(),
            "{task:?}: weights differ after resuming"
        );
        // Without --resume an existing run is not overwritten.
        assert!(train::run(&args(&parts, task, arch, 8)).is_err());
    }
}

#[test]
fn the_blob_of_a_run_predicts_what_the_run_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut a = args(&dir, TaskKind::Sudoku, hrm_trainer::presets::Arch::Hrm, 30);
    a.batch_size = Some(16);
    train::run(&a).unwrap();

    let ck = hrm_convert::Checkpoint::load(&dir, &Default::default()).unwrap();
    let blob_path = tmp.path().join("run.blob");
    std::fs::write(&blob_path, hrm_convert::write_blob(&ck, hrm_runtime::DType::F32).unwrap().as_bytes()).unwrap();

    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(99);
    let pairs: Vec<_> = (0..40).map(|i| hrm_trainer::tasks::sudoku::generate(&mut rng, 30 + i % 20)).collect();
    let set = hrm_trainer::tasks::sudoku_eval_set(&pairs);
    let mut run = Loaded::open(&dir, None).unwrap();
    let mut blob = Loaded::open(&blob_path, Some(2)).unwrap();
    for halting in [Halting::Fixed, Halting::Adaptive, Halting::Segments(2)] {
        let (r1, p1) = run.with_predictor(|p| eval::evaluate(p, &set, halting, 16, |_| {})).unwrap();
        let (r2, p2) = blob.with_predictor(|p| eval::evaluate(p, &set, halting, 16, |_| {})).unwrap();
        let differing: usize =
            p1.iter().zip(&p2).map(|(a, b)| a.tokens.iter().zip(&b.tokens).filter(|(x, y)| x != y).count()).sum();
        assert_eq!(differing, 0, "{halting:?}: trainer and runtime disagree on {differing} cells");
        assert_eq!(
            p1.iter().map(|p| p.segments).collect::<Vec<_>>(),
            p2.iter().map(|p| p.segments).collect::<Vec<_>>()
        );
        assert_eq!(r1.exact_accuracy, r2.exact_accuracy);
    }
    let mut b = match blob {
        Loaded::Blob(b) => b,
        Loaded::Run(_) => unreachable!(),
    };
    assert_eq!(b.config().seq_len, 81);
    assert_eq!(b.predict(&set.examples[..1], Halting::Fixed).unwrap().len(), 1);
}

#[test]
fn a_run_started_from_a_checkpoint_begins_with_its_weights() {
    use hrm_trainer::presets::Arch;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    train::run(&args(&base, TaskKind::Sudoku, Arch::Trm, 3)).unwrap();

    // No steps: the fine-tuned run saves exactly the weights it started from, and its final
    // evaluation (same data seed) is the base run's.
    let same = tmp.path().join("same");
    let mut a = args(&same, TaskKind::Sudoku, Arch::Trm, 0);
    a.init = Some(base.clone());
    train::run(&a).unwrap();
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        std::fs::read(same.join("model.safetensors")).unwrap(),
        "--init did not start from the checkpoint's weights"
    );
    let last = |d: &Path| read_metrics(&d.join("metrics.jsonl")).unwrap().pop().unwrap().eval_exact_accuracy;
    assert_eq!(last(&base), last(&same));
    let settings = std::fs::read_to_string(same.join("config.json")).unwrap();
    assert!(settings.contains("\"init\""), "config.json does not record --init: {settings}");

    // More segments than the checkpoint's, and training moves the weights; the run resumes
    // from its own state afterwards.
    let tuned = tmp.path().join("tuned");
    let mut a = args(&tuned, TaskKind::Sudoku, Arch::Trm, 2);
    a.init = Some(base.clone());
    a.halt_max_steps = Some(4);
    train::run(&a).unwrap();
    assert_ne!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        std::fs::read(tuned.join("model.safetensors")).unwrap()
    );
    assert!(std::fs::read_to_string(tuned.join("all_config.yaml")).unwrap().contains("halt_max_steps: 4"));
    let mut more = args(&tuned, TaskKind::Sudoku, Arch::Trm, 3);
    more.resume = true;
    train::run(&more).unwrap();

    // Another architecture is refused by name, before anything is written.
    let other = tmp.path().join("other");
    let mut a = args(&other, TaskKind::Sudoku, Arch::Hrm, 1);
    a.init = Some(base.clone());
    let err = format!("{:#}", train::run(&a).unwrap_err());
    assert!(err.contains("architecture"), "{err}");
    assert!(!other.join("config.json").exists());
    // A directory without a checkpoint is refused with its name.
    let mut a = args(&tmp.path().join("none"), TaskKind::Sudoku, Arch::Trm, 1);
    a.init = Some(tmp.path().join("missing"));
    let err = format!("{:#}", train::run(&a).unwrap_err());
    assert!(err.contains("missing"), "{err}");
}
