//! Sudoku in the reference's tokenisation: 81 cells row-major, pad 0, blank 1, digit d → d + 1.

use core::fmt;

pub const CELLS: usize = 81;
/// Vocabulary of the Sudoku models.
pub const VOCAB: u32 = 11;

/// A grid of digits, 0 for a blank.
pub type Grid = [u8; CELLS];

/// Why a puzzle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PuzzleError {
    /// Not 81 cells.
    Length { got: usize },
    /// A character other than `1`–`9`, `.` or `0`.
    Character { position: usize, found: char },
    /// Two givens with the same digit in one row, column or box.
    Conflict(Conflict),
}

/// Two cells holding the same digit in one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub digit: u8,
    pub unit: Unit,
    /// Cell indices (row-major, 0-based) of the two clashing cells.
    pub cells: [usize; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Row(u8),
    Column(u8),
    Box(u8),
}

impl fmt::Display for PuzzleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PuzzleError::Length { got } => write!(f, "has {got} cells, a Sudoku has {CELLS}"),
            PuzzleError::Character { position, found } => {
                write!(f, "character {found:?} at position {} is not a digit, '.' or '0'", position + 1)
            }
            PuzzleError::Conflict(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.cells;
        let unit = match self.unit {
            Unit::Row(i) => ("row", i),
            Unit::Column(i) => ("column", i),
            Unit::Box(i) => ("box", i),
        };
        write!(
            f,
            "digit {} appears twice in {} {} (r{}c{} and r{}c{})",
            self.digit,
            unit.0,
            unit.1 + 1,
            a / 9 + 1,
            a % 9 + 1,
            b / 9 + 1,
            b % 9 + 1
        )
    }
}

/// Parses 81 characters (`1`–`9` a given, `.` or `0` a blank) and checks that the givens do
/// not already conflict.
pub fn parse(text: &str) -> Result<Grid, PuzzleError> {
    let mut grid = [0u8; CELLS];
    let mut n = 0;
    for (position, ch) in text.chars().enumerate() {
        let digit = match ch {
            '.' | '0' => 0,
            '1'..='9' => ch as u8 - b'0',
            _ => return Err(PuzzleError::Character { position, found: ch }),
        };
        if let Some(cell) = grid.get_mut(position) {
            *cell = digit;
        }
        n += 1;
    }
    if n != CELLS {
        return Err(PuzzleError::Length { got: n });
    }
    match first_conflict(&grid) {
        Some(c) => Err(PuzzleError::Conflict(c)),
        None => Ok(grid),
    }
}

fn unit_cells(unit: Unit) -> [usize; 9] {
    core::array::from_fn(|k| match unit {
        Unit::Row(r) => r as usize * 9 + k,
        Unit::Column(c) => k * 9 + c as usize,
        Unit::Box(b) => {
            let (br, bc) = (b as usize / 3 * 3, b as usize % 3 * 3);
            (br + k / 3) * 9 + bc + k % 3
        }
    })
}

fn units() -> impl Iterator<Item = Unit> {
    (0..9u8).flat_map(|i| [Unit::Row(i), Unit::Column(i), Unit::Box(i)])
}

/// The first pair of equal non-zero digits in a row, column or box.
pub fn first_conflict(grid: &Grid) -> Option<Conflict> {
    for unit in units() {
        let mut seen = [usize::MAX; 10];
        for cell in unit_cells(unit) {
            let digit = grid.get(cell).copied().unwrap_or(0);
            if digit == 0 {
                continue;
            }
            let slot = seen.get_mut(digit as usize)?;
            if *slot != usize::MAX {
                return Some(Conflict { digit, unit, cells: [*slot, cell] });
            }
            *slot = cell;
        }
    }
    None
}

/// Whether `answer` is a complete, valid grid that keeps every given of `puzzle`.
pub fn is_solution(puzzle: &Grid, answer: &Grid) -> bool {
    let complete = answer.iter().all(|&d| (1..=9).contains(&d));
    let keeps_givens = puzzle.iter().zip(answer).all(|(&p, &a)| p == 0 || p == a);
    complete && keeps_givens && first_conflict(answer).is_none()
}

/// Model input tokens of a grid.
pub fn to_tokens(grid: &Grid) -> [u32; CELLS] {
    core::array::from_fn(|i| u32::from(grid.get(i).copied().unwrap_or(0)) + 1)
}

/// Digits of predicted tokens; anything that is not a digit token (pad, blank) becomes 0.
pub fn from_tokens(tokens: &[u32]) -> Grid {
    core::array::from_fn(|i| match tokens.get(i) {
        Some(&t) if (2..=10).contains(&t) => (t - 1) as u8,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    const PUZZLE: &str = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79";
    const SOLUTION: &str = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";

    #[test]
    fn parses_checks_and_tokenises() {
        let p = parse(PUZZLE).unwrap();
        let s = parse(SOLUTION).unwrap();
        assert!(is_solution(&p, &s));
        let t = to_tokens(&p);
        assert_eq!(&t[..3], &[6, 4, 1]);
        assert_eq!(from_tokens(&to_tokens(&s)), s);
        let mut wrong = s;
        wrong.swap(0, 1);
        assert!(!is_solution(&p, &wrong));
    }

    #[test]
    fn rejects_malformed_puzzles() {
        assert_eq!(parse("123"), Err(PuzzleError::Length { got: 3 }));
        let bad_char = PUZZLE.replacen('.', "x", 1);
        assert!(matches!(parse(&bad_char), Err(PuzzleError::Character { position: 2, found: 'x' })));
        let clash = format!("55{}", &PUZZLE[2..]);
        match parse(&clash) {
            Err(PuzzleError::Conflict(c)) => {
                assert_eq!(c.digit, 5);
                assert_eq!(c.cells, [0, 1]);
                assert_eq!(c.unit, Unit::Row(0));
            }
            other => panic!("{other:?}"),
        }
    }
}
