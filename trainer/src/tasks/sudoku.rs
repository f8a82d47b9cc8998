//! Sudoku data: a fast solver, a generator of unique-solution puzzles, the reference's
//! augmentations, and the `puzzle,solution` CSV format.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hrm_runtime::sudoku::{self, Grid, CELLS};
use rand::seq::SliceRandom;
use rand::Rng;

/// Cells of each unit (rows, columns, boxes) and the three units of each cell.
struct Units {
    peers: [[u8; 20]; CELLS],
}

fn units() -> &'static Units {
    static UNITS: std::sync::OnceLock<Units> = std::sync::OnceLock::new();
    UNITS.get_or_init(|| {
        let mut peers = [[0u8; 20]; CELLS];
        for (cell, slot) in peers.iter_mut().enumerate() {
            let (r, c) = (cell / 9, cell % 9);
            let mut n = 0;
            for other in 0..CELLS {
                let (r2, c2) = (other / 9, other % 9);
                let same_box = r / 3 == r2 / 3 && c / 3 == c2 / 3;
                if other != cell && (r == r2 || c == c2 || same_box) {
                    slot[n] = other as u8;
                    n += 1;
                }
            }
        }
        Units { peers }
    })
}

/// Candidate bitmask (bits 1..=9) of every cell given the digits placed so far.
fn candidates(grid: &Grid) -> Option<[u16; CELLS]> {
    let u = units();
    let mut cand = [0x3feu16; CELLS];
    for (&d, peers) in grid.iter().zip(&u.peers) {
        if d != 0 {
            for &p in peers {
                cand[p as usize] &= !(1 << d);
            }
        }
    }
    for cell in 0..CELLS {
        if grid[cell] != 0 {
            if cand[cell] & (1 << grid[cell]) == 0 {
                return None;
            }
            cand[cell] = 1 << grid[cell];
        }
    }
    Some(cand)
}

/// Counts solutions up to `limit` by depth-first search on the cell with fewest candidates.
/// The first solution found is written to `first`.
fn search(grid: &mut Grid, limit: usize, first: &mut Option<Grid>) -> usize {
    let Some((cell, cand)) = most_constrained(grid) else { return 0 };
    let Some(cell) = cell else {
        if first.is_none() {
            *first = Some(*grid);
        }
        return 1;
    };
    let mut found = 0;
    for d in 1..=9u8 {
        if cand & (1 << d) != 0 {
            grid[cell] = d;
            found += search(grid, limit - found, first);
            grid[cell] = 0;
            if found >= limit {
                break;
            }
        }
    }
    found
}

/// The empty cell with fewest candidates (`None` when the grid is full) and its candidates;
/// `None` overall when some cell has no candidate left.
fn most_constrained(grid: &Grid) -> Option<(Option<usize>, u16)> {
    let cand = candidates(grid)?;
    let mut best = (None, 0u16);
    let mut best_count = 10;
    for cell in 0..CELLS {
        if grid[cell] == 0 {
            let n = cand[cell].count_ones();
            if n == 0 {
                return None;
            }
            if n < best_count {
                best = (Some(cell), cand[cell]);
                best_count = n;
            }
        }
    }
    Some(best)
}

/// Fills `grid` with a solution, trying digits in random order.
fn fill_random<R: Rng + ?Sized>(grid: &mut Grid, rng: &mut R) -> bool {
    let Some((cell, cand)) = most_constrained(grid) else { return false };
    let Some(cell) = cell else { return true };
    let mut digits: Vec<u8> = (1..=9).filter(|d| cand & (1 << d) != 0).collect();
    digits.shuffle(rng);
    for d in digits {
        grid[cell] = d;
        if fill_random(grid, rng) {
            return true;
        }
    }
    grid[cell] = 0;
    false
}

/// Number of solutions, counting at most `limit`.
pub fn count_solutions(grid: &Grid, limit: usize) -> usize {
    let mut g = *grid;
    search(&mut g, limit, &mut None)
}

/// The solution of a puzzle with exactly one.
pub fn solve_unique(grid: &Grid) -> Option<Grid> {
    let mut g = *grid;
    let mut first = None;
    (search(&mut g, 2, &mut first) == 1).then_some(first).flatten()
}

/// A uniformly shuffled valid full grid.
pub fn random_full_grid<R: Rng + ?Sized>(rng: &mut R) -> Grid {
    let mut g = [0u8; CELLS];
    fill_random(&mut g, rng);
    g
}

/// A puzzle with a unique solution and (at least, when fewer cannot be reached from this grid)
/// `givens` givens: blanks are dug in random order while the solution stays unique.
pub fn generate<R: Rng + ?Sized>(rng: &mut R, givens: usize) -> (Grid, Grid) {
    let solution = random_full_grid(rng);
    let mut puzzle = solution;
    let mut order: Vec<usize> = (0..CELLS).collect();
    order.shuffle(rng);
    let mut remaining = CELLS;
    for cell in order {
        if remaining <= givens {
            break;
        }
        let d = puzzle[cell];
        puzzle[cell] = 0;
        if count_solutions(&puzzle, 2) != 1 {
            puzzle[cell] = d;
        } else {
            remaining -= 1;
        }
    }
    (puzzle, solution)
}

/// The reference's augmentation: a digit permutation, band and stack shuffles, row and column
/// shuffles within them, and a transpose half of the time; the same map for puzzle and solution.
pub fn augment<R: Rng + ?Sized>(rng: &mut R, pair: &(Grid, Grid)) -> (Grid, Grid) {
    let mut digits: Vec<u8> = (1..=9).collect();
    digits.shuffle(rng);
    let mut perm3 = || {
        let mut p = [0usize, 1, 2];
        p.shuffle(rng);
        p
    };
    let bands = perm3();
    let stacks = perm3();
    let rows: Vec<usize> = bands.iter().flat_map(|&b| perm3().map(|r| b * 3 + r)).collect();
    let cols: Vec<usize> = stacks.iter().flat_map(|&s| perm3().map(|c| s * 3 + c)).collect();
    let transpose = rng.random_bool(0.5);
    let map = |g: &Grid| -> Grid {
        std::array::from_fn(|i| {
            let (r, c) = (i / 9, i % 9);
            let (r, c) = if transpose { (c, r) } else { (r, c) };
            let d = g[rows[r] * 9 + cols[c]];
            if d == 0 {
                0
            } else {
                digits[d as usize - 1]
            }
        })
    };
    (map(&pair.0), map(&pair.1))
}

/// Reads `puzzle,solution` rows (a header line is skipped); each puzzle is checked against its
/// solution.
pub fn read_csv(path: &Path) -> Result<Vec<(Grid, Grid)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("puzzle")) {
            continue;
        }
        let mut fields = line.split(',');
        let (Some(p), Some(s)) = (fields.next(), fields.next()) else {
            bail!("{}:{}: expected `puzzle,solution`", path.display(), n + 1);
        };
        let puzzle =
            sudoku::parse(p.trim()).map_err(|e| anyhow::anyhow!("{}:{}: puzzle {e}", path.display(), n + 1))?;
        let solution =
            sudoku::parse(s.trim()).map_err(|e| anyhow::anyhow!("{}:{}: solution {e}", path.display(), n + 1))?;
        if !sudoku::is_solution(&puzzle, &solution) {
            bail!("{}:{}: the solution does not solve the puzzle", path.display(), n + 1);
        }
        out.push((puzzle, solution));
    }
    if out.is_empty() {
        bail!("{}: no puzzles", path.display());
    }
    Ok(out)
}

pub fn givens(grid: &Grid) -> usize {
    grid.iter().filter(|&&d| d != 0).count()
}

pub fn grid_string(grid: &Grid) -> String {
    grid.iter().map(|&d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_puzzles_are_unique_and_augmentations_stay_valid() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for target in [25, 35, 45] {
            let (p, s) = generate(&mut rng, target);
            assert_eq!(givens(&p), target);
            assert_eq!(count_solutions(&p, 2), 1);
            assert!(sudoku::is_solution(&p, &s));
            let (ap, as_) = augment(&mut rng, &(p, s));
            assert_eq!(givens(&ap), target);
            assert!(sudoku::is_solution(&ap, &as_));
            assert_eq!(solve_unique(&ap), Some(as_));
        }
    }

    #[test]
    fn solver_handles_the_shared_hard_format() {
        let p =
            sudoku::parse("98.7..6..7.5.......4..5....3..8..9......2..1......13.42...8..93.7....2....92...6.").unwrap();
        let s =
            sudoku::parse("982714635735692148146358729351846972497523816628971354264187593573469281819235467").unwrap();
        assert_eq!(solve_unique(&p), Some(s));
    }
}
