//! The maze path checker of `hrm_runtime::maze` on the public mazes (`../shared/data/maze`, or
//! the three copied into `tests/fixtures/maze`): each marked solution is one unbroken S→G path
//! as long as the file's metadata says and as the breadth-first search finds, and every way of
//! spoiling it is refused.

use hrm_runtime::maze::{self, SearchSpace};
use hrm_tests::{repo_root, shared_dir};

/// The mazes (`side²` characters each) and their shortest-path steps from the metadata.
fn public_mazes() -> Vec<(Vec<u8>, u32)> {
    let (text, meta) = match shared_dir() {
        Some(dir) => (dir.join("data/maze/maze30-200.txt"), dir.join("data/maze/maze30-200-meta.csv")),
        None => {
            let dir = repo_root().join("tests/fixtures/maze");
            (dir.join("maze30-3.txt"), dir.join("maze30-3-meta.csv"))
        }
    };
    let text = std::fs::read_to_string(&text).unwrap();
    let steps: Vec<u32> = std::fs::read_to_string(&meta)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let mazes: Vec<Vec<u8>> = text
        .split("\n\n")
        .map(|m| m.trim_end_matches('\n').bytes().filter(|&b| b != b'\n').collect())
        .filter(|m: &Vec<u8>| !m.is_empty())
        .collect();
    assert_eq!(mazes.len(), steps.len());
    mazes.into_iter().zip(steps).collect()
}

#[test]
fn every_public_solution_is_one_shortest_path() {
    let mut space = Box::new(SearchSpace::new());
    let mazes = public_mazes();
    assert!(mazes.len() >= 3);
    for (i, (cells, steps)) in mazes.iter().enumerate() {
        assert_eq!(maze::validate(cells, 30), Ok(()), "maze {i}");
        assert_eq!(maze::path_steps(cells, 30), Some(*steps), "maze {i}");
        assert_eq!(maze::shortest_steps(cells, 30, &mut space), Some(*steps), "maze {i}");
        // The input the model reads shows no path; the answer built from the solution's own
        // tokens is the solution.
        let mut tokens = vec![0u32; cells.len()];
        maze::to_tokens(cells, &mut tokens);
        assert!(tokens.iter().all(|&t| (1..=4).contains(&t)), "maze {i}");
        let solution_tokens: Vec<u32> = cells.iter().map(|&c| maze::token(c).unwrap()).collect();
        let mut answer = vec![0u8; cells.len()];
        maze::answer(cells, &solution_tokens, &mut answer);
        assert_eq!(&answer, cells);
    }
}

#[test]
fn every_spoiled_solution_is_refused() {
    for (i, (cells, _)) in public_mazes().iter().enumerate() {
        let path: Vec<usize> = (0..cells.len()).filter(|&c| cells[c] == b'o').collect();
        // Any one path cell missing breaks the path.
        for &gap in path.iter().step_by(7) {
            let mut spoiled = cells.clone();
            spoiled[gap] = b' ';
            assert_eq!(maze::path_steps(&spoiled, 30), None, "maze {i} without cell {gap}");
        }
        // Any open cell marked besides the path is a branch or a stray mark.
        let open: Vec<usize> = (0..cells.len()).filter(|&c| cells[c] == b' ').collect();
        for &extra in open.iter().step_by(11) {
            let mut spoiled = cells.clone();
            spoiled[extra] = b'o';
            assert_eq!(maze::path_steps(&spoiled, 30), None, "maze {i} with cell {extra}");
        }
    }
}
