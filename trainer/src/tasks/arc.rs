//! ARC: task JSON, the reference's 30×30 canvas encoding, dihedral × colour-permutation
//! augmentations with a puzzle id each, and pass@2 by voting over augmentations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::Rng;

pub const SIDE: usize = 30;
pub const SEQ_LEN: usize = SIDE * SIDE;
pub const VOCAB: u32 = 12;

/// A grid of colours 0–9, at most 30×30.
pub type Grid = Vec<Vec<u8>>;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Pair {
    pub input: Grid,
    pub output: Option<Grid>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Task {
    #[serde(skip)]
    pub id: String,
    pub train: Vec<Pair>,
    pub test: Vec<Pair>,
}

fn check_grid(g: &Grid, what: &str) -> Result<()> {
    let h = g.len();
    let w = g.first().map_or(0, Vec::len);
    if h == 0 || w == 0 || h > SIDE || w > SIDE || g.iter().any(|r| r.len() != w) || g.iter().flatten().any(|&c| c > 9)
    {
        bail!("{what}: not a rectangular grid of 1–30 rows and columns with colours 0–9");
    }
    Ok(())
}

/// One task from its JSON text, with its grids checked.
pub fn parse_task(text: &str, id: &str) -> Result<Task> {
    let mut task: Task = serde_json::from_str(text).context("not an ARC task")?;
    task.id = id.to_string();
    for (i, p) in task.train.iter().chain(&task.test).enumerate() {
        check_grid(&p.input, &format!("pair {i} input"))?;
        if let Some(o) = &p.output {
            check_grid(o, &format!("pair {i} output"))?;
        }
    }
    if task.train.iter().any(|p| p.output.is_none()) {
        bail!("a demonstration pair has no output");
    }
    Ok(task)
}

/// Reads one task file, or every `*.json` of a directory (sorted by name).
pub fn read_tasks(path: &Path) -> Result<Vec<Task>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_owned()]
    };
    let mut tasks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut task: Task =
            serde_json::from_str(&text).with_context(|| format!("{}: not an ARC task", file.display()))?;
        task.id = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for (i, p) in task.train.iter().chain(&task.test).enumerate() {
            check_grid(&p.input, &format!("{} pair {i} input", file.display()))?;
            if let Some(o) = &p.output {
                check_grid(o, &format!("{} pair {i} output", file.display()))?;
            }
        }
        if task.train.iter().any(|p| p.output.is_none()) {
            bail!("{}: a demonstration pair has no output", file.display());
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        bail!("{}: no ARC tasks", path.display());
    }
    Ok(tasks)
}

/// The canvas: colour c → c + 2 at the top left, 0 elsewhere, the end-of-grid marker 1 on the
/// row below the grid (over its columns) and the column right of it (over its rows).
pub fn encode(grid: &Grid) -> Vec<u32> {
    let mut canvas = vec![0u32; SEQ_LEN];
    let h = grid.len();
    let w = grid.first().map_or(0, Vec::len);
    for (r, row) in grid.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            canvas[r * SIDE + c] = u32::from(v) + 2;
        }
    }
    if h < SIDE {
        for c in 0..w {
            canvas[h * SIDE + c] = 1;
        }
    }
    if w < SIDE {
        for r in 0..h {
            canvas[r * SIDE + w] = 1;
        }
    }
    canvas
}

/// The reference's crop: the largest top-left rectangle of colour tokens.
pub fn decode(tokens: &[u32]) -> Grid {
    let mut best = (0, 0);
    let mut cols = SIDE;
    for rows in 1..=SIDE {
        for c in 0..cols {
            let t = tokens.get((rows - 1) * SIDE + c).copied().unwrap_or(0);
            if !(2..=11).contains(&t) {
                cols = c;
                break;
            }
        }
        if rows * cols > best.0 * best.1 {
            best = (rows, cols);
        }
    }
    (0..best.0).map(|r| (0..best.1).map(|c| (tokens[r * SIDE + c] - 2) as u8).collect()).collect()
}

/// One of the 8 symmetries of the square and a permutation of colours 1–9 (0, the background,
/// stays).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    pub dihedral: u8,
    pub colours: [u8; 10],
}

impl Augmentation {
    pub fn identity() -> Self {
        Augmentation { dihedral: 0, colours: std::array::from_fn(|i| i as u8) }
    }

    pub fn random(rng: &mut impl Rng) -> Self {
        let mut perm: Vec<u8> = (1..=9).collect();
        perm.shuffle(rng);
        let mut colours = [0u8; 10];
        colours[1..].copy_from_slice(&perm);
        Augmentation { dihedral: rng.random_range(0..8), colours }
    }

    fn transform(d: u8, g: &Grid) -> Grid {
        let h = g.len();
        let w = g.first().map_or(0, Vec::len);
        let at = |r: usize, c: usize| g[r][c];
        // d & 4: transpose first; d & 3: rotate by 90° that many times.
        let mut out: Grid =
            if d & 4 != 0 { (0..w).map(|c| (0..h).map(|r| at(r, c)).collect()).collect() } else { g.clone() };
        for _ in 0..(d & 3) {
            let (hh, ww) = (out.len(), out.first().map_or(0, Vec::len));
            out = (0..ww).map(|c| (0..hh).rev().map(|r| out[r][c]).collect()).collect();
        }
        out
    }

    fn inverse_dihedral(d: u8) -> u8 {
        (0..8)
            .find(|&e| {
                let probe: Grid = vec![vec![0, 1, 2], vec![3, 4, 5]];
                Self::transform(e, &Self::transform(d, &probe)) == probe
            })
            .unwrap_or(0)
    }

    pub fn apply(&self, g: &Grid) -> Grid {
        Self::transform(self.dihedral, g)
            .into_iter()
            .map(|r| r.into_iter().map(|v| self.colours[v as usize]).collect())
            .collect()
    }

    pub fn invert(&self, g: &Grid) -> Grid {
        let mut inverse = [0u8; 10];
        for (i, &c) in self.colours.iter().enumerate() {
            inverse[c as usize] = i as u8;
        }
        let recoloured: Grid = g.iter().map(|r| r.iter().map(|&v| inverse[(v as usize).min(9)]).collect()).collect();
        Self::transform(Self::inverse_dihedral(self.dihedral), &recoloured)
    }
}

/// Puzzle identifiers: 0 is blank; each (task, augmentation) gets its own. Saved with a run
/// (`identifiers.json`) because a trained puzzle embedding only means something with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Identifiers {
    pub entries: Vec<(String, Augmentation)>,
}

impl Identifiers {
    /// `augmentations` per task (the first is the identity), drawn with `rng`.
    pub fn build(tasks: &[&Task], augmentations: usize, rng: &mut impl Rng) -> Self {
        let mut entries = Vec::new();
        for t in tasks {
            entries.push((t.id.clone(), Augmentation::identity()));
            for _ in 1..augmentations.max(1) {
                entries.push((t.id.clone(), Augmentation::random(rng)));
            }
        }
        Identifiers { entries }
    }

    /// Number of ids including the blank one.
    pub fn count(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    /// Ids (and augmentations) of one task.
    pub fn of_task<'a>(&'a self, task: &'a str) -> impl Iterator<Item = (u32, &'a Augmentation)> + 'a {
        self.entries.iter().enumerate().filter(move |(_, (t, _))| t == task).map(|(i, (_, a))| (i as u32 + 1, a))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string(self)?).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not an identifiers file", path.display()))
    }
}

/// Training pairs of every id: a task's demonstrations (and its test pairs when `with_tests`,
/// for training-split tasks), augmented. Labels use 0 (padding) as "no target".
pub fn training_examples(tasks: &[Task], ids: &Identifiers, with_tests: &[bool]) -> Vec<(Vec<u32>, Vec<u32>, u32)> {
    let by_id: HashMap<&str, (usize, &Task)> = tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), (i, t))).collect();
    let mut out = Vec::new();
    for (index, (task_id, aug)) in ids.entries.iter().enumerate() {
        let Some(&(i, task)) = by_id.get(task_id.as_str()) else { continue };
        let tests = if with_tests.get(i).copied().unwrap_or(false) { task.test.as_slice() } else { &[] };
        for pair in task.train.iter().chain(tests) {
            if let Some(o) = &pair.output {
                out.push((encode(&aug.apply(&pair.input)), encode(&aug.apply(o)), index as u32 + 1));
            }
        }
    }
    out
}

/// Votes over the predictions of a test input's augmentations; `predicted` holds
/// (augmentation, predicted canvas). Returns answers by decreasing votes.
pub fn vote(predicted: &[(&Augmentation, Vec<u32>)]) -> Vec<(Grid, usize)> {
    let mut counts: Vec<(Grid, usize)> = Vec::new();
    for (aug, tokens) in predicted {
        let answer = aug.invert(&decode(tokens));
        match counts.iter_mut().find(|(g, _)| *g == answer) {
            Some(entry) => entry.1 += 1,
            None => counts.push((answer, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn canvas_and_augmentations_round_trip() {
        let g: Grid = vec![vec![1, 2, 3], vec![4, 5, 0]];
        let t = encode(&g);
        assert_eq!(&t[..4], &[3, 4, 5, 1]);
        assert_eq!(&t[SIDE..SIDE + 4], &[6, 7, 2, 1]);
        assert_eq!(&t[2 * SIDE..2 * SIDE + 4], &[1, 1, 1, 0]);
        assert_eq!(decode(&t), g);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for _ in 0..40 {
            let a = Augmentation::random(&mut rng);
            assert_eq!(a.invert(&a.apply(&g)), g, "{a:?}");
        }
        let full: Grid = vec![vec![7; 30]; 30];
        assert_eq!(decode(&encode(&full)), full);
    }
}
