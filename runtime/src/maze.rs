//! Mazes in the reference's tokenisation: `side × side` cells row-major, pad 0, then `#` wall 1,
//! ` ` open 2, `S` start 3, `G` goal 4, `o` path 5. The model reads the maze without its path
//! and predicts every cell; the path is the open cells it marks `o`.
//!
//! The rule check an ensemble may use is [`path_steps`]: the marked cells form one unbroken
//! S→G path. Whether that path is also a shortest one is [`shortest_steps`], a breadth-first
//! search: the checker of an answer, never a source of one.

use core::fmt;

/// Vocabulary of the maze models.
pub const VOCAB: u32 = 6;
/// The largest side the fixed buffers here hold (the papers' mazes are 30 × 30).
pub const MAX_SIDE: usize = 32;
pub const MAX_CELLS: usize = MAX_SIDE * MAX_SIDE;

pub const WALL: u8 = b'#';
pub const OPEN: u8 = b' ';
pub const START: u8 = b'S';
pub const GOAL: u8 = b'G';
pub const PATH: u8 = b'o';

/// The characters of tokens 1..=5.
const CHARS: [u8; 5] = [WALL, OPEN, START, GOAL, PATH];

/// The token of a maze character, `None` for a character outside `# SGo`.
pub fn token(c: u8) -> Option<u32> {
    CHARS.iter().position(|&x| x == c).map(|i| i as u32 + 1)
}

/// The character of a token (`?` for pad or a token outside the vocabulary).
pub fn character(token: u32) -> u8 {
    CHARS.get((token as usize).wrapping_sub(1)).copied().unwrap_or(b'?')
}

/// Why a maze was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MazeError {
    /// Not `side²` cells, or a side of 0 or above [`MAX_SIDE`].
    Size { cells: usize, side: usize },
    /// A character outside `# SGo`.
    Character { position: usize, found: u8 },
    /// Not exactly one `S`.
    Starts(usize),
    /// Not exactly one `G`.
    Goals(usize),
}

impl fmt::Display for MazeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MazeError::Size { side, .. } if side == 0 || side > MAX_SIDE => {
                write!(f, "has side {side}; mazes of 1 to {MAX_SIDE} cells a side are supported")
            }
            MazeError::Size { cells, side } => write!(f, "has {cells} cells, a {side}×{side} maze has {}", side * side),
            MazeError::Character { position, found } => {
                write!(f, "character {:?} at cell {} is not one of `# SGo`", found as char, position + 1)
            }
            MazeError::Starts(n) => write!(f, "has {n} start cells `S`, expected 1"),
            MazeError::Goals(n) => write!(f, "has {n} goal cells `G`, expected 1"),
        }
    }
}

/// Checks a maze given as `side²` characters row-major (a path already marked is allowed).
pub fn validate(cells: &[u8], side: usize) -> Result<(), MazeError> {
    if side == 0 || side > MAX_SIDE || cells.len() != side * side {
        return Err(MazeError::Size { cells: cells.len(), side });
    }
    if let Some((position, &found)) = cells.iter().enumerate().find(|(_, &c)| token(c).is_none()) {
        return Err(MazeError::Character { position, found });
    }
    let starts = cells.iter().filter(|&&c| c == START).count();
    if starts != 1 {
        return Err(MazeError::Starts(starts));
    }
    let goals = cells.iter().filter(|&&c| c == GOAL).count();
    if goals != 1 {
        return Err(MazeError::Goals(goals));
    }
    Ok(())
}

/// The model's input: the maze's tokens with any marked path cleared (`out` of `cells.len()`
/// tokens; extra cells of `out` are left alone).
pub fn to_tokens(cells: &[u8], out: &mut [u32]) {
    for (o, &c) in out.iter_mut().zip(cells) {
        *o = token(if c == PATH { OPEN } else { c }).unwrap_or(0);
    }
}

/// The answer a model's predicted tokens give: the maze as given, with `o` on each open cell
/// predicted `o` (a prediction on a wall, `S` or `G` does not change it).
pub fn answer(maze: &[u8], predictions: &[u32], out: &mut [u8]) {
    for ((o, &c), &p) in out.iter_mut().zip(maze).zip(predictions) {
        let open = c == OPEN || c == PATH;
        *o = if open && p == 5 {
            PATH
        } else if open {
            OPEN
        } else {
            c
        };
    }
}

/// The 4-neighbours of `cell` in a `side × side` grid (`None` past an edge).
fn neighbours(side: usize, cell: usize) -> [Option<usize>; 4] {
    let (r, c) = (cell / side, cell % side);
    [
        (r > 0).then(|| cell - side),
        (r + 1 < side).then(|| cell + side),
        (c > 0).then(|| cell - 1),
        (c + 1 < side).then(|| cell + 1),
    ]
}

/// The rule check: if the `o` cells of `answer` (a maze of `side × side` characters, exactly
/// one `S` and one `G`) form one unbroken path from `S` to `G` — each step to a 4-neighbour,
/// no branch, no loop, no stray `o` — the number of steps from `S` to `G`; else `None`.
pub fn path_steps(answer: &[u8], side: usize) -> Option<u32> {
    if side == 0 || answer.len() != side * side {
        return None;
    }
    let on_path = |cell: usize| matches!(answer.get(cell), Some(&(PATH | START | GOAL)));
    let degree = |cell: usize| neighbours(side, cell).into_iter().flatten().filter(|&n| on_path(n)).count();
    let start = answer.iter().position(|&c| c == START)?;
    let goal = answer.iter().position(|&c| c == GOAL)?;
    // A simple path: S and G have one neighbour on the path, every `o` two. Walking from S
    // then reaches G; if it passed every `o`, nothing is left over (no separate loop).
    if degree(start) != 1 || degree(goal) != 1 {
        return None;
    }
    let marked = answer.iter().filter(|&&c| c == PATH).count();
    let (mut previous, mut here, mut steps) = (usize::MAX, start, 0usize);
    while here != goal {
        if here != start && degree(here) != 2 {
            return None;
        }
        let next = neighbours(side, here).into_iter().flatten().find(|&n| n != previous && on_path(n))?;
        if next == start || steps > marked {
            return None;
        }
        (previous, here, steps) = (here, next, steps + 1);
    }
    (steps == marked + 1).then_some(steps as u32)
}

/// Scratch space of [`shortest_steps`]: distances and the queue of a breadth-first search.
pub struct SearchSpace {
    distance: [u16; MAX_CELLS],
    queue: [u16; MAX_CELLS],
}

impl SearchSpace {
    pub const fn new() -> Self {
        SearchSpace { distance: [u16::MAX; MAX_CELLS], queue: [0; MAX_CELLS] }
    }
}

impl Default for SearchSpace {
    fn default() -> Self {
        Self::new()
    }
}

/// The fewest steps from `S` to `G` through cells that are not walls (breadth-first search),
/// `None` when `G` cannot be reached or the maze is not `side × side` with one `S` and one `G`
/// and at most [`MAX_SIDE`] a side.
pub fn shortest_steps(maze: &[u8], side: usize, space: &mut SearchSpace) -> Option<u32> {
    if side == 0 || side > MAX_SIDE || maze.len() != side * side {
        return None;
    }
    let start = maze.iter().position(|&c| c == START)?;
    let goal = maze.iter().position(|&c| c == GOAL)?;
    space.distance.fill(u16::MAX);
    *space.distance.get_mut(start)? = 0;
    *space.queue.get_mut(0)? = start as u16;
    let (mut head, mut tail) = (0usize, 1usize);
    while head < tail {
        let here = usize::from(*space.queue.get(head)?);
        head += 1;
        let d = *space.distance.get(here)?;
        if here == goal {
            return Some(u32::from(d));
        }
        for next in neighbours(side, here).into_iter().flatten() {
            if maze.get(next).is_some_and(|&c| c != WALL) && space.distance.get(next) == Some(&u16::MAX) {
                *space.distance.get_mut(next)? = d + 1;
                *space.queue.get_mut(tail)? = next as u16;
                tail += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5 × 5 maze: two routes of 4 steps from S to G, around the wall in the middle.
    const MAZE: &[u8; 25] = b"#####\
                              #S  #\
                              # # #\
                              #  G#\
                              #####";

    fn marked(cells: &[usize]) -> [u8; 25] {
        let mut m = *MAZE;
        for &c in cells {
            m[c] = PATH;
        }
        m
    }

    #[test]
    fn tokens_round_trip() {
        assert_eq!(validate(MAZE, 5), Ok(()));
        let mut t = [0u32; 25];
        to_tokens(&marked(&[7, 8]), &mut t);
        assert_eq!(t.iter().filter(|&&x| x == 5).count(), 0, "the input never shows the path");
        let back: [u8; 25] = core::array::from_fn(|i| character(t[i]));
        assert_eq!(&back, MAZE);
        assert_eq!(validate(b"#S##", 2), Err(MazeError::Goals(0)));
        assert_eq!(validate(b"#SG#x", 2), Err(MazeError::Size { cells: 5, side: 2 }));
        assert_eq!(validate(b"#SGx", 2), Err(MazeError::Character { position: 3, found: b'x' }));
    }

    #[test]
    fn a_marked_path_is_checked_by_walking_it() {
        // S at 6, G at 18. Shortest: 6→7→8→13→18 (4 steps) or 6→11→16→17→18.
        assert_eq!(path_steps(&marked(&[7, 8, 13]), 5), Some(4));
        assert_eq!(path_steps(&marked(&[11, 16, 17]), 5), Some(4));
        // A gap, a stray cell, both routes at once (a loop), nothing marked.
        assert_eq!(path_steps(&marked(&[7, 13]), 5), None);
        assert_eq!(path_steps(&marked(&[7, 8, 13, 16]), 5), None);
        assert_eq!(path_steps(&marked(&[7, 8, 13, 11, 16, 17]), 5), None);
        assert_eq!(path_steps(MAZE, 5), None);
        let mut space = SearchSpace::new();
        assert_eq!(shortest_steps(MAZE, 5, &mut space), Some(4));
        let mut walled = *MAZE;
        walled[7] = WALL;
        walled[11] = WALL;
        assert_eq!(shortest_steps(&walled, 5, &mut space), None);
    }

    #[test]
    fn answers_keep_the_maze_and_take_the_marks_on_open_cells() {
        let mut p = [2u32; 25];
        p[0] = 5; // a wall predicted as path stays a wall
        p[6] = 5; // so does S
        p[7] = 5;
        let mut out = [0u8; 25];
        answer(MAZE, &p, &mut out);
        assert_eq!(out, marked(&[7]));
    }
}
