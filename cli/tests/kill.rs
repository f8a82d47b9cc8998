//! `hrm train` killed at random moments (SIGKILL, no chance to clean up) and resumed each time
//! ends exactly where an uninterrupted run ends: same metrics, same weights.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train(out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hrm"));
    cmd.args([
        "train",
        "--task",
        "sudoku",
        "--arch",
        "hrm",
        "--preset",
        "tiny",
        "--steps",
        "30",
        "--batch-size",
        "4",
        "--pool",
        "30",
        "--givens",
        "40..=50",
        "--eval-every",
        "10",
        "--eval-count",
        "4",
        "--log-every",
        "1",
        "--checkpoint-minutes",
        "0",
        "--seed",
        "3",
        "--quiet",
        "--out",
    ]);
    cmd.arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// metrics.jsonl without the wall-clock fields.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["steps_per_s"] = 0.into();
            v["elapsed_s"] = 0.into();
            v
        })
        .collect()
}

#[test]
fn killed_runs_resume_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let out = train(&whole, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let killed = tmp.path().join("killed");
    // Kill moments from a fixed pseudo-random sequence (reproducible), 50 ms to 1 s.
    let mut seed: u64 = 0x5eed;
    let mut kills = 0;
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(600), "no progress after {kills} kills");
        let resume = killed.join("train_state.safetensors").exists();
        let mut child = train(&killed, resume).spawn().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(50 + (seed >> 33) % 950);
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "{err}");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    eprintln!("resumed after {kills} kills");
    assert!(kills >= 3, "only {kills} kills: the run ended too soon for the test to mean anything");
    assert_eq!(metrics(&whole), metrics(&killed), "metrics differ after {kills} kills");
    assert_eq!(
        std::fs::read(whole.join("model.safetensors")).unwrap(),
        std::fs::read(killed.join("model.safetensors")).unwrap(),
        "weights differ after {kills} kills"
    );
}
