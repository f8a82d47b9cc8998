//! Test-time compute on the built-in Sudoku model: ensembles of trajectories under symmetries
//! and latent noise (runtime/src/ensemble.rs), their selection rules and budgets.

use hrm_convert::{AlignedBlob, BlobOptions, Checkpoint, Overrides};
use hrm_runtime::ensemble::{self, Noise, Plan, Reason, Select};
use hrm_runtime::sudoku::{self, Grid, CELLS};
use hrm_runtime::{Halting, Model, Session};

fn shipped_blob() -> AlignedBlob {
    AlignedBlob::read(&hrm_tests::repo_root().join("models/sudoku/sudoku.blob")).unwrap()
}

/// The ten puzzles of the firmware examples (25-35 givens).
fn puzzles() -> Vec<Grid> {
    let text = std::fs::read_to_string(hrm_tests::repo_root().join("firmware-examples/puzzles.txt")).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| sudoku::parse(l.trim()).unwrap()).collect()
}

/// Harder puzzles than the model solves alone: the firmware puzzles with givens removed
/// (every fourth given from the 6th on), deterministic.
fn harder(grid: &Grid) -> Grid {
    let mut out = *grid;
    let mut seen = 0;
    for cell in out.iter_mut() {
        if *cell != 0 {
            seen += 1;
            if seen >= 6 && seen % 4 == 0 {
                *cell = 0;
            }
        }
    }
    out
}

fn plan(k: u32, select: Select, noise: f32, augment: bool) -> Plan {
    Plan {
        trajectories: k,
        augment,
        noise: (noise > 0.0).then_some(Noise { sigma: noise, seed: 0, z_h: false }),
        seed: 7,
        select,
        halting: Halting::Fixed,
        max_segments: u64::MAX,
    }
}

struct Trajectory {
    answer: Grid,
    q_halt: f32,
    valid_at: Option<u32>,
    segments: u32,
}

/// Runs a plan and records every trajectory's last segment as the ensemble reports it.
fn run(session: &mut Session<'_, '_>, grid: &Grid, plan: &Plan) -> (ensemble::Outcome, Vec<Trajectory>) {
    let mut log: Vec<Trajectory> = Vec::new();
    let mut valid_at = None;
    let outcome = ensemble::solve_sudoku(session, grid, plan, |p, _| {
        if p.valid && valid_at.is_none() {
            valid_at = Some(p.segment);
        }
        if p.last {
            log.push(Trajectory { answer: *p.answer, q_halt: p.q_halt, valid_at, segments: p.segment + 1 });
            valid_at = None;
        }
        true
    })
    .unwrap();
    (outcome, log)
}

#[test]
fn one_plain_trajectory_is_the_models_own_answer() {
    let blob = shipped_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let all = u64::from(model.config().halt_max_steps);
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    for grid in puzzles() {
        session.reset(&sudoku::to_tokens(&grid), 0).unwrap();
        session.run(Halting::Fixed).unwrap();
        let mut tokens = [0u32; CELLS];
        session.predictions(&mut tokens).unwrap();
        let plain = sudoku::from_tokens(&tokens);
        let q = session.q_halt();

        let (outcome, log) = run(&mut session, &grid, &Plan::single(Halting::Fixed));
        assert_eq!(outcome.answer, plain);
        assert_eq!((outcome.trajectories, outcome.segments, outcome.chosen), (1, all, Some(0)));
        assert_eq!(outcome.q_halt.to_bits(), q.to_bits());
        assert_eq!(log.len(), 1);
        // With the rule check one trajectory stops at its first valid answer, and answers
        // validly whenever any segment did (never worse than all segments).
        let (checked, _) = run(&mut session, &grid, &plan(1, Select::Valid, 0.0, false));
        assert!(checked.segments <= all);
        if sudoku::is_solution(&grid, &plain) {
            assert!(checked.valid && checked.reason == Reason::Valid);
        }
        if checked.valid {
            assert!(sudoku::is_solution(&grid, &checked.answer));
        }
    }
}

#[test]
fn valid_selection_stops_at_the_first_valid_answer_and_is_reproducible() {
    let blob = shipped_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let max = model.config().halt_max_steps;
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    let (mut solved_by_ensemble, mut plain_failures) = (0, 0);
    for grid in puzzles().iter().map(harder).take(6) {
        let p = plan(12, Select::Valid, 0.1, true);
        let (outcome, log) = run(&mut session, &grid, &p);
        let again = run(&mut session, &grid, &p).0;
        assert_eq!(outcome, again, "the same seed must give the same ensemble");
        assert_eq!(outcome.trajectories as usize, log.len());
        // Every trajectory before the chosen one ran all its segments without a valid answer.
        let segments: u64 = log.iter().map(|t| u64::from(t.segments)).sum();
        assert_eq!(segments, outcome.segments);
        if outcome.valid {
            let t = outcome.chosen.unwrap();
            assert_eq!(outcome.reason, Reason::Valid);
            assert!(sudoku::is_solution(&grid, &outcome.answer));
            assert!(log[..t as usize].iter().all(|t| t.valid_at.is_none() && t.segments == max));
            assert_eq!(log[t as usize].valid_at, Some(log[t as usize].segments - 1));
            // A smaller ensemble that still holds the chosen trajectory answers the same: a
            // trajectory depends on (seed, index) alone.
            let (prefix, _) = run(&mut session, &grid, &Plan { trajectories: t + 1, ..p });
            assert_eq!(prefix, outcome);
            if t > 0 {
                solved_by_ensemble += 1;
            }
        } else {
            plain_failures += 1;
            assert_eq!(outcome.segments, 12 * u64::from(max));
            // No valid answer: the highest final Q-halt.
            let best = log.iter().map(|t| t.q_halt).fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(outcome.reason, Reason::Q);
            assert_eq!(outcome.q_halt, best);
        }
    }
    assert!(solved_by_ensemble > 0, "no puzzle needed more than the plain trajectory: the test proves nothing");
    eprintln!("harder puzzles: {solved_by_ensemble} solved by a later trajectory, {plain_failures} unsolved");
}

#[test]
fn q_and_vote_selections_pick_what_they_say() {
    let blob = shipped_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let max = model.config().halt_max_steps;
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    let grid = harder(&puzzles()[0]);
    let (q, log) = run(&mut session, &grid, &plan(6, Select::Q, 0.0, true));
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|t| t.segments == max), "Q selection runs every trajectory to the end");
    let best = (0..6).max_by(|&a, &b| log[a].q_halt.total_cmp(&log[b].q_halt)).unwrap();
    assert_eq!(q.chosen, Some(best as u32));
    assert_eq!(q.answer, log[best].answer);

    let (vote, log) = run(&mut session, &grid, &plan(6, Select::Vote, 0.0, true));
    assert_eq!(vote.reason, Reason::Vote);
    for cell in 0..CELLS {
        let mut counts = [0; 10];
        for t in &log {
            counts[t.answer[cell] as usize] += 1;
        }
        let winner = (0..10).fold(0, |w, d| if counts[d] > counts[w] { d } else { w });
        assert_eq!(vote.answer[cell] as usize, winner, "cell {cell}");
    }
}

#[test]
fn budgets_and_the_callers_check_stop_the_ensemble() {
    let blob = shipped_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let max = u64::from(model.config().halt_max_steps);
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    let grid = harder(&harder(&puzzles()[1]));
    // One whole trajectory and 3 segments of the second.
    let limited = Plan { max_segments: max + 3, ..plan(8, Select::Q, 0.0, true) };
    let outcome = ensemble::solve_sudoku(&mut session, &grid, &limited, |_, _| true).unwrap();
    assert_eq!(outcome.segments, max + 3);
    assert_eq!(outcome.trajectories, 2);
    assert!(outcome.cut_short);
    let mut calls = 0;
    let stopped = ensemble::solve_sudoku(&mut session, &grid, &plan(8, Select::Q, 0.0, true), |_, _| {
        calls += 1;
        calls < 3
    })
    .unwrap();
    assert_eq!((stopped.segments, stopped.trajectories, stopped.cut_short), (3, 1, true));
}

/// Noise changes the computation, deterministically, with the same integer draws on the f32
/// and the fixed-point path.
#[test]
fn latent_noise_is_seeded_and_refuses_bad_levels() {
    let blob = shipped_blob();
    let model = Model::from_bytes(&blob).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    let grid = puzzles()[2];
    let logits = |session: &mut Session<'_, '_>, noise: Option<Noise>| {
        session.set_noise(noise).unwrap();
        session.reset(&sudoku::to_tokens(&grid), 0).unwrap();
        session.run(Halting::Segments(2)).unwrap();
        session.logits().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let plain = logits(&mut session, None);
    let a = logits(&mut session, Some(Noise { sigma: 0.3, seed: 5, z_h: false }));
    let b = logits(&mut session, Some(Noise { sigma: 0.3, seed: 5, z_h: false }));
    let c = logits(&mut session, Some(Noise { sigma: 0.3, seed: 6, z_h: false }));
    let h = logits(&mut session, Some(Noise { sigma: 0.3, seed: 5, z_h: true }));
    assert_eq!(a, b);
    assert_ne!(a, plain);
    assert_ne!(a, c);
    assert_ne!(a, h);
    assert_eq!(logits(&mut session, Some(Noise { sigma: 0.0, seed: 5, z_h: true })), plain);
    assert_eq!(logits(&mut session, None), plain);
    for bad in [f32::NAN, -0.1, f32::INFINITY, 1e4] {
        assert_eq!(
            session.set_noise(Some(Noise { sigma: bad, seed: 0, z_h: false })),
            Err(hrm_runtime::Error::InvalidNoise)
        );
    }

    // The integer-only path: noisy sessions are reproducible and differ from the plain one.
    let ck = Checkpoint::load(&hrm_tests::repo_root().join("models/sudoku"), &Overrides::default()).unwrap();
    let inputs: Vec<(Vec<u32>, u32)> = puzzles().iter().map(|g| (sudoku::to_tokens(g).to_vec(), 0)).collect();
    let formats = hrm_convert::calibrate(&ck, &inputs, &|| ()).unwrap();
    let fixed = hrm_convert::write_blob_with(&ck, &BlobOptions::fixed_point(formats)).unwrap();
    let model = Model::from_bytes(&fixed).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(model, &mut arena).unwrap();
    let digest = |session: &mut Session<'_, '_>, noise: Option<Noise>| {
        session.set_noise(noise).unwrap();
        session.reset(&sudoku::to_tokens(&grid), 0).unwrap();
        let mut d = hrm_runtime::DIGEST_START;
        session.run_with(Halting::Segments(2), |s, _| d = s.outputs_digest(d)).unwrap();
        d
    };
    let plain = digest(&mut session, None);
    let a = digest(&mut session, Some(Noise { sigma: 0.3, seed: 5, z_h: false }));
    assert_eq!(a, digest(&mut session, Some(Noise { sigma: 0.3, seed: 5, z_h: false })));
    assert_ne!(a, plain);
    assert_eq!(digest(&mut session, None), plain);
}
