//! `hrm train --replay` against the reference's training traces (`../shared/golden-train`, or
//! the cases copied into `tests/fixtures/golden-train`): every step of every case within the
//! README's tolerances, free-running and, where the case keeps its states, teacher-forced.

use std::path::PathBuf;

use candle_core::Device;
use hrm_trainer::replay::{self, Case, Report};

/// Every golden training case to check: all of `../shared/golden-train` when present, else the
/// fixtures.
fn cases() -> Vec<PathBuf> {
    let root = hrm_tests::shared_dir()
        .map(|d| d.join("golden-train"))
        .unwrap_or_else(|| hrm_tests::repo_root().join("tests/fixtures/golden-train"));
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("batches.safetensors").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden training cases in {}", root.display());
    cases
}

fn describe(report: &Report) -> String {
    report
        .failures()
        .iter()
        .map(|c| format!("  step {}: {} = {:.3e} > {:.2e}", c.step, c.what, c.value, c.bound))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(teacher_forced: bool) -> usize {
    let mut checked = 0;
    let mut failed = Vec::new();
    for dir in cases() {
        if teacher_forced && !dir.join("states.safetensors").is_file() {
            continue;
        }
        let case = Case::load(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        let replayed =
            replay::replay(&case, teacher_forced, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        let report = replay::compare(&case, &replayed).unwrap();
        assert!(report.checks.len() > 15 * case.batches.len(), "{}: too few checks", case.name);
        eprintln!("{} ({} checks, bounds: {})", case.name, report.checks.len(), report.bounds);
        for c in report.worst() {
            eprintln!("  {:<40} {:>10.3e} (step {}) bound {:.2e}", c.what, c.value, c.step, c.bound);
        }
        if !report.failures().is_empty() {
            failed.push(format!("{}:\n{}", case.name, describe(&report)));
        }
        checked += 1;
    }
    assert!(failed.is_empty(), "out of bounds:\n{}", failed.join("\n"));
    checked
}

#[test]
fn every_case_free_running_stays_within_its_bounds() {
    assert!(check(false) > 0);
}

#[test]
fn every_step_teacher_forced_stays_within_the_tolerances() {
    let checked = check(true);
    if hrm_tests::shared_dir().is_some() {
        assert!(checked >= 4, "../shared/golden-train keeps states for four cases; {checked} found");
    } else {
        hrm_tests::loud("the fixtures keep no states.safetensors: no teacher-forced replay without ../shared");
    }
}

/// `hrm train --replay` writes the trace under the reference's names, dtypes and shapes: all of
/// them but the draws it replays instead of making (`explore_rand`, `explore_randint`) and the
/// per-slot puzzle-embedding gradients (it has the table's gradient, summed per identifier).
#[test]
fn the_replay_command_writes_the_reference_trace_names() {
    // The fixtures' traces keep only part of the full-state records.
    if hrm_tests::shared_dir().is_none() {
        return;
    }
    let case = cases()
        .into_iter()
        .min_by_key(|c| std::fs::metadata(c.join("trace.safetensors")).map(|m| m.len()).unwrap_or(u64::MAX))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let args =
        <hrm_trainer::train::TrainArgs as clap::FromArgMatches>::from_arg_matches(
            &<hrm_trainer::train::TrainArgs as clap::Args>::augment_args(clap::Command::new("train")).get_matches_from(
                ["train".as_ref(), "--replay".as_ref(), case.as_os_str(), "--out".as_ref(), out.path().as_os_str()],
            ),
        )
        .unwrap();
    hrm_trainer::train::run(&args).unwrap_or_else(|e| panic!("{}: {e:#}", case.display()));
    let ours = replay::read_arrays(&out.path().join("trace.safetensors")).unwrap();
    let theirs = replay::read_arrays(&case.join("trace.safetensors")).unwrap();
    for (name, a) in &ours {
        let t = theirs.get(name).unwrap_or_else(|| panic!("{name} is not a name of the reference's trace"));
        assert_eq!((a.dtype, &a.shape), (t.dtype, &t.shape), "{name}");
    }
    let missing: Vec<&String> = theirs
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .filter(|k| {
            !k.ends_with(".explore_rand") && !k.ends_with(".explore_randint") && !k.contains(".grad.puzzle_emb.local_")
        })
        .collect();
    assert!(missing.is_empty(), "not written: {missing:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert!(report["checks"].as_array().is_some_and(|c| c.len() > 100));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("trace.json")).unwrap()).unwrap();
    assert_eq!(summary["per_step"].as_array().map(Vec::len), Some(6));
}
