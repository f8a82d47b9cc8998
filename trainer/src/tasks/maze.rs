//! Mazes: the text format of `../shared/data/maze` (`#` wall, ` ` open, `S`, `G`, `o` on the
//! shortest path; n lines of n characters, a blank line between mazes), a generator of
//! perfect mazes with long shortest paths, and the tokenisation `# SGo` → 1..5.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::IndexedRandom;
use rand::Rng;

pub const VOCAB: u32 = 6;
const CHARS: [u8; 5] = *b"# SGo";

/// A square maze; `cells` row-major in `# SGo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maze {
    pub size: usize,
    pub cells: Vec<u8>,
}

impl Maze {
    /// Model input: the maze without its path.
    pub fn input_tokens(&self) -> Vec<u32> {
        self.cells.iter().map(|&c| token(if c == b'o' { b' ' } else { c })).collect()
    }

    /// Labels: the maze with its path.
    pub fn label_tokens(&self) -> Vec<u32> {
        self.cells.iter().map(|&c| token(c)).collect()
    }

    pub fn from_tokens(size: usize, tokens: &[u32]) -> Maze {
        let cells = tokens.iter().map(|&t| CHARS.get((t as usize).wrapping_sub(1)).copied().unwrap_or(b'?')).collect();
        Maze { size, cells }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.cells.len() + self.size);
        for row in self.cells.chunks(self.size) {
            s.push_str(&String::from_utf8_lossy(row));
            s.push('\n');
        }
        s
    }
}

fn token(c: u8) -> u32 {
    CHARS.iter().position(|&x| x == c).map_or(0, |i| i as u32 + 1)
}

/// Reads mazes: `size` lines of `size` characters from `# SGo` each, blank lines between.
/// Trailing spaces are significant.
pub fn parse_mazes(text: &str, origin: &str) -> Result<Vec<Maze>> {
    let mut mazes = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let flush = |rows: &mut Vec<&str>, mazes: &mut Vec<Maze>, line: usize| -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let size = rows.len();
        let mut cells = Vec::with_capacity(size * size);
        for (i, r) in rows.iter().enumerate() {
            if r.len() != size {
                bail!("{origin}: line {}: {} characters, the maze has {size} rows", line - size + i + 1, r.len());
            }
            if let Some(bad) = r.bytes().find(|b| !CHARS.contains(b)) {
                bail!("{origin}: line {}: character {:?} is not one of `# SGo`", line - size + i + 1, bad as char);
            }
            cells.extend_from_slice(r.as_bytes());
        }
        for (what, ch) in [("start", b'S'), ("goal", b'G')] {
            let n = cells.iter().filter(|&&c| c == ch).count();
            if n != 1 {
                bail!("{origin}: maze ending at line {line} has {n} {what} cells, expected 1");
            }
        }
        mazes.push(Maze { size, cells });
        rows.clear();
        Ok(())
    };
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            flush(&mut rows, &mut mazes, i)?;
        } else {
            rows.push(line);
        }
    }
    flush(&mut rows, &mut mazes, lines.len())?;
    if mazes.is_empty() {
        bail!("{origin}: no mazes");
    }
    Ok(mazes)
}

pub fn read_mazes(path: &Path) -> Result<Vec<Maze>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_mazes(&text, &path.display().to_string())
}

/// Breadth-first distances from `from` over open cells (everything but `#`), `usize::MAX` where
/// unreachable, and each cell's predecessor.
fn bfs(size: usize, cells: &[u8], from: usize) -> (Vec<usize>, Vec<usize>) {
    let mut dist = vec![usize::MAX; cells.len()];
    let mut prev = vec![usize::MAX; cells.len()];
    let mut queue = VecDeque::from([from]);
    dist[from] = 0;
    while let Some(c) = queue.pop_front() {
        let (r, col) = (c / size, c % size);
        let mut next = [None; 4];
        if r > 0 {
            next[0] = Some(c - size);
        }
        if r + 1 < size {
            next[1] = Some(c + size);
        }
        if col > 0 {
            next[2] = Some(c - 1);
        }
        if col + 1 < size {
            next[3] = Some(c + 1);
        }
        for n in next.into_iter().flatten() {
            if cells[n] != b'#' && dist[n] == usize::MAX {
                dist[n] = dist[c] + 1;
                prev[n] = c;
                queue.push_back(n);
            }
        }
    }
    (dist, prev)
}

/// Marks the shortest S→G path with `o` (S and G unmarked); `None` if G is unreachable.
pub fn solve(maze: &Maze) -> Option<Maze> {
    let start = maze.cells.iter().position(|&c| c == b'S')?;
    let goal = maze.cells.iter().position(|&c| c == b'G')?;
    let mut cells: Vec<u8> = maze.cells.iter().map(|&c| if c == b'o' { b' ' } else { c }).collect();
    let (dist, prev) = bfs(maze.size, &cells, start);
    if dist[goal] == usize::MAX {
        return None;
    }
    let mut c = prev[goal];
    while c != start {
        cells[c] = b'o';
        c = prev[c];
    }
    Some(Maze { size: maze.size, cells })
}

/// A perfect maze (a random depth-first spanning tree of the lattice of odd cells, walls
/// between) of `size`×`size`, with S and G chosen so that the path has at least `min_path`
/// steps where the maze allows it (else the longest found), solved.
pub fn generate(rng: &mut impl Rng, size: usize, min_path: usize) -> Maze {
    let lattice = (size.max(3) - 1) / 2;
    let full = 2 * lattice + 1;
    let mut grid = vec![b'#'; full * full];
    let mut visited = vec![false; lattice * lattice];
    let mut stack = vec![rng.random_range(0..lattice * lattice)];
    visited[stack[0]] = true;
    let px = |node: usize| (2 * (node / lattice) + 1) * full + 2 * (node % lattice) + 1;
    grid[px(stack[0])] = b' ';
    while let Some(&node) = stack.last() {
        let (r, c) = (node / lattice, node % lattice);
        let mut options = Vec::with_capacity(4);
        if r > 0 {
            options.push(node - lattice);
        }
        if r + 1 < lattice {
            options.push(node + lattice);
        }
        if c > 0 {
            options.push(node - 1);
        }
        if c + 1 < lattice {
            options.push(node + 1);
        }
        options.retain(|&n| !visited[n]);
        match options.choose(rng) {
            Some(&next) => {
                visited[next] = true;
                let (a, b) = (px(node), px(next));
                grid[(a + b) / 2] = b' ';
                grid[b] = b' ';
                stack.push(next);
            }
            None => {
                stack.pop();
            }
        }
    }
    // Crop to size×size (the reference drops the all-wall last row and column).
    let mut cells = Vec::with_capacity(size * size);
    for r in 0..size {
        for c in 0..size {
            cells.push(if r < full && c < full { grid[r * full + c] } else { b'#' });
        }
    }
    let open: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == b' ').collect();
    let mut best = (0, 0, 0);
    for _ in 0..24 {
        let s = open[rng.random_range(0..open.len())];
        let (dist, _) = bfs(size, &cells, s);
        // Among cells at least min_path away pick one at random; remember the farthest.
        let far: Vec<usize> = open.iter().copied().filter(|&g| dist[g] != usize::MAX && dist[g] >= min_path).collect();
        if let Some(&g) = far.choose(rng) {
            best = (s, g, dist[g]);
            break;
        }
        if let Some(&g) = open.iter().filter(|&&g| dist[g] != usize::MAX).max_by_key(|&&g| dist[g]) {
            if dist[g] > best.2 {
                best = (s, g, dist[g]);
            }
        }
    }
    let (s, g, _) = best;
    cells[s] = b'S';
    cells[g] = b'G';
    solve(&Maze { size, cells: cells.clone() }).unwrap_or(Maze { size, cells })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_mazes_round_trip_and_have_long_paths() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let m = generate(&mut rng, 30, 110);
        let path = m.cells.iter().filter(|&&c| c == b'o').count();
        assert!(path + 1 >= 110, "path of {path}");
        let parsed = parse_mazes(&format!("{}\n{}", m.to_text(), m.to_text()), "test").unwrap();
        assert_eq!(parsed, vec![m.clone(), m.clone()]);
        assert_eq!(solve(&m).unwrap(), m);
        assert_eq!(Maze::from_tokens(30, &m.label_tokens()), m);
        assert!(!m.input_tokens().contains(&5));
    }

    #[test]
    fn reads_the_shared_format() {
        let text = "#####\n#Soo#\n###o#\n#Goo#\n#####\n";
        let mazes = parse_mazes(text, "t").unwrap();
        assert_eq!(mazes.len(), 1);
        assert_eq!(solve(&mazes[0]).unwrap(), mazes[0]);
        assert!(parse_mazes("###\n#S#\n###\n", "t").is_err());
    }
}
