//! `hrm solve sudoku --trace FILE`: every segment of a solve as the model saw it.
//!
//! The solve loop hands each segment's session to a [`Recorder`] (the board mapped back to the
//! puzzle, per-cell confidence from the softmax, the Q values, the halting decision, the
//! latents); [`Trace::finish`] projects the latents on their two principal components across
//! all segments and trajectories; the writers draw it: `.html` (one self-contained page),
//! `.png` / `.svg` (trace_image.rs), `.json` (the data) or `-` (the terminal).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hrm_runtime::ensemble::{Progress, Reason, SudokuSymmetry};
use hrm_runtime::sudoku::{Grid, CELLS};
use hrm_runtime::Session;

/// Latent values kept for the projection, all segments together: beyond it later segments are
/// drawn without their latents (the projection costs segments² × this).
const LATENT_BUDGET: usize = 12 << 20;

/// One segment of one trajectory, in the puzzle's own cells and digits.
pub struct SegmentTrace {
    pub board: Grid,
    /// Softmax probability of the predicted token at every cell.
    pub confidence: [f32; CELLS],
    /// Cells whose prediction differs from the previous segment's (none at the first).
    pub changed: [bool; CELLS],
    pub q_halt: f32,
    pub q_continue: f32,
    /// Whether the Q head asked to halt here (q_halt > q_continue).
    pub halt_requested: bool,
    /// Whether the board is a valid completion of the puzzle.
    pub valid: bool,
    z_h: Vec<f32>,
    z_l: Vec<f32>,
}

pub struct TrajectoryTrace {
    pub index: u32,
    pub segments: Vec<SegmentTrace>,
}

/// Two principal components of one latent over every recorded segment.
pub struct Projection {
    /// Per trajectory, per segment: the two coordinates (`None` where the latent was not kept).
    pub points: Vec<Vec<Option<[f32; 2]>>>,
    /// Fraction of the variance each component explains.
    pub explained: [f32; 2],
}

pub struct Trace {
    /// The model's name as the user gave it.
    pub model: String,
    pub puzzle: Grid,
    pub trajectories: Vec<TrajectoryTrace>,
    pub answer: Grid,
    pub valid: bool,
    /// The trajectory whose answer was taken (none for a vote).
    pub chosen: Option<u32>,
    /// Why that answer.
    pub reason: &'static str,
    /// `z_H` and `z_L` projections; none for a fixed-point blob (its latents are integers the
    /// session does not expose) or with fewer than three segments.
    pub z_h: Option<Projection>,
    pub z_l: Option<Projection>,
    /// Why the projection is missing or partial, for the outputs to say.
    pub latent_note: Option<String>,
}

/// Collects the segments of one puzzle's solve.
pub struct Recorder {
    puzzle: Grid,
    trajectories: Vec<TrajectoryTrace>,
    logits: Vec<f32>,
    latents_kept: usize,
    latents_dropped: bool,
}

impl Recorder {
    pub fn new(puzzle: Grid) -> Self {
        Recorder { puzzle, trajectories: Vec::new(), logits: Vec::new(), latents_kept: 0, latents_dropped: false }
    }

    /// Records the segment `session` just ran, as the solve reported it (its answer already
    /// mapped back through the trajectory's symmetry).
    pub fn segment(&mut self, session: &Session<'_, '_>, progress: &Progress) -> Result<()> {
        let (trajectory, symmetry, board) = (progress.trajectory, progress.symmetry, progress.answer);
        let c = session.model().config();
        let (seq, vocab) = (c.seq_len as usize, c.vocab_size as usize);
        self.logits.resize(seq * vocab, 0.0);
        session.logits_into(&mut self.logits)?;
        let mut confidence = [0.0f32; CELLS];
        for (position, row) in self.logits.chunks_exact(vocab).enumerate().take(CELLS) {
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|&l| (l - top).exp()).sum();
            if let Some(slot) = confidence.get_mut(symmetry.source_cell(position)) {
                *slot = if sum.is_finite() && sum > 0.0 { 1.0 / sum } else { 0.0 };
            }
        }
        let (z_h, z_l) = (session.z_h(), session.z_l());
        let keep = self.latents_kept + z_h.len() + z_l.len() <= LATENT_BUDGET;
        let (z_h, z_l) = if keep {
            self.latents_kept += z_h.len() + z_l.len();
            let h = c.hidden_size as usize;
            (in_puzzle_order(z_h, h, symmetry), in_puzzle_order(z_l, h, symmetry))
        } else {
            self.latents_dropped = true;
            (Vec::new(), Vec::new())
        };
        if self.trajectories.last().is_none_or(|t| t.index != trajectory) {
            self.trajectories.push(TrajectoryTrace { index: trajectory, segments: Vec::new() });
        }
        let Some(current) = self.trajectories.last_mut() else { bail!("no trajectory recorded") };
        let changed = match current.segments.last() {
            Some(previous) => core::array::from_fn(|i| previous.board.get(i) != board.get(i)),
            None => [false; CELLS],
        };
        current.segments.push(SegmentTrace {
            board: *board,
            confidence,
            changed,
            q_halt: progress.q_halt,
            q_continue: progress.q_continue,
            halt_requested: progress.halt_requested,
            valid: progress.valid,
            z_h,
            z_l,
        });
        Ok(())
    }

    /// The trace, once the solve picked `answer` from `chosen` for `reason`.
    pub fn finish(self, model: String, answer: Grid, valid: bool, chosen: Option<u32>, reason: &'static str) -> Trace {
        let z_h = project(&self.trajectories, |s| &s.z_h);
        let z_l = project(&self.trajectories, |s| &s.z_l);
        let fixed =
            self.trajectories.iter().flat_map(|t| &t.segments).all(|s| s.z_h.is_empty()) && !self.latents_dropped;
        let latent_note = if fixed {
            Some("no latent projection: this blob computes in fixed point".to_string())
        } else if self.latents_dropped {
            Some(format!("latents of the later segments not kept (over {} MiB)", (LATENT_BUDGET * 4) >> 20))
        } else if z_h.is_none() {
            Some("no latent projection: fewer than three segments".to_string())
        } else {
            None
        };
        Trace {
            model,
            puzzle: self.puzzle,
            trajectories: self.trajectories,
            answer,
            valid,
            chosen,
            reason,
            z_h,
            z_l,
            latent_note,
        }
    }
}

/// A latent `[prefix + 81, h]` with its cell rows moved back to the puzzle's cells, so the
/// trajectories of an ensemble compare cell by cell (the digit relabelling stays).
fn in_puzzle_order(z: &[f32], h: usize, symmetry: &SudokuSymmetry) -> Vec<f32> {
    let mut out = z.to_vec();
    let prefix = (z.len() / h.max(1)).saturating_sub(CELLS);
    for position in 0..CELLS {
        let from = z.get((prefix + position) * h..(prefix + position + 1) * h);
        let cell = symmetry.source_cell(position);
        let to = out.get_mut((prefix + cell) * h..(prefix + cell + 1) * h);
        if let (Some(from), Some(to)) = (from, to) {
            to.copy_from_slice(from);
        }
    }
    out
}

/// Why an ensemble took its answer, in words.
pub fn reason(reason: Reason) -> &'static str {
    match reason {
        Reason::Valid => "the first answer that is a valid completion",
        Reason::Q => "the highest final Q-halt",
        Reason::Vote => "the per-cell vote over the trajectories",
    }
}

/// Principal components of the latents `pick` returns, over every segment that kept them: the
/// eigenvectors of the Gram matrix of the centred points (there are far fewer points than
/// dimensions), by power iteration with deflation.
fn project(trajectories: &[TrajectoryTrace], pick: impl Fn(&SegmentTrace) -> &Vec<f32>) -> Option<Projection> {
    let points: Vec<&[f32]> =
        trajectories.iter().flat_map(|t| &t.segments).map(|s| pick(s).as_slice()).filter(|p| !p.is_empty()).collect();
    let n = points.len();
    let dim = points.first()?.len();
    if n < 3 || points.iter().any(|p| p.len() != dim) {
        return None;
    }
    let mut mean = vec![0.0f64; dim];
    for p in &points {
        for (m, &x) in mean.iter_mut().zip(*p) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<Vec<f32>> =
        points.iter().map(|p| p.iter().zip(&mean).map(|(&x, &m)| (f64::from(x) - m) as f32).collect()).collect();
    let mut gram = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let d = dot(&centred[i], &centred[j]);
            gram[i * n + j] = d;
            gram[j * n + i] = d;
        }
    }
    let total: f64 = (0..n).map(|i| gram[i * n + i]).sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let mut coordinates = vec![[0.0f32; 2]; n];
    let mut explained = [0.0f32; 2];
    for component in 0..2 {
        let (value, vector) = top_eigen(&gram, n);
        let scale = value.max(0.0).sqrt();
        // A fixed sign: the last point of the first trajectory on the positive side.
        let sign = if vector.last().is_some_and(|&v| v < 0.0) { -1.0 } else { 1.0 };
        for (c, &v) in coordinates.iter_mut().zip(&vector) {
            c[component] = (sign * scale * v) as f32;
        }
        explained[component] = (value.max(0.0) / total) as f32;
        for i in 0..n {
            for j in 0..n {
                gram[i * n + j] -= value * vector[i] * vector[j];
            }
        }
    }
    let mut next = coordinates.into_iter();
    let points = trajectories
        .iter()
        .map(|t| t.segments.iter().map(|s| if pick(s).is_empty() { None } else { next.next() }).collect())
        .collect();
    Some(Projection { points, explained })
}

/// Dot product in f64, eight lanes at a time so it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += f64::from(x[k]) * f64::from(y[k]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// The largest eigenvalue of the symmetric `n × n` matrix and its unit eigenvector.
fn top_eigen(matrix: &[f64], n: usize) -> (f64, Vec<f64>) {
    // Start from a fixed, non-symmetric vector: the same input gives the same output.
    let mut v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.618_034).fract()).collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut value = 0.0;
    for _ in 0..500 {
        let w: Vec<f64> = (0..n).map(|i| (0..n).map(|j| matrix[i * n + j] * v[j]).sum()).collect();
        let length = norm(&w);
        if !(length.is_finite() && length > 0.0) {
            return (0.0, v.iter().map(|_| 0.0).collect());
        }
        let next: Vec<f64> = w.iter().map(|x| x / length).collect();
        let moved = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        v = next;
        value = length;
        if moved < 1e-10 {
            break;
        }
    }
    (value, v)
}

/// The outputs a trace can be written as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Terminal,
    Html,
    Json,
    Png,
    Svg,
}

impl Format {
    /// The format `path` names (`-`: the terminal), refused before any work if unknown.
    pub fn of(path: &Path) -> Result<Format> {
        if path.as_os_str() == "-" {
            return Ok(Format::Terminal);
        }
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        Ok(match extension.as_deref() {
            Some("html" | "htm") => Format::Html,
            Some("json") => Format::Json,
            Some("png") => Format::Png,
            Some("svg") => Format::Svg,
            _ => bail!(
                "--trace {}: give a file ending in .html, .png, .svg or .json, or - for the terminal",
                path.display()
            ),
        })
    }
}

/// Writes the trace where `path` says: `-` the terminal, else by extension.
pub fn write(trace: &Trace, path: &Path) -> Result<()> {
    let bytes = match Format::of(path)? {
        Format::Terminal => {
            use std::io::IsTerminal;
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            return crate::print(&terminal(trace, colour));
        }
        Format::Html => html(trace).into_bytes(),
        Format::Json => serde_json::to_vec_pretty(&json(trace))?,
        Format::Png => crate::trace_image::png(trace)?,
        Format::Svg => crate::trace_image::svg(trace)?.into_bytes(),
    };
    crate::write_atomically(path, &bytes).with_context(|| format!("cannot write the trace {}", path.display()))
}

fn digits(grid: &Grid) -> String {
    grid.iter().map(|&d| if d == 0 { '.' } else { char::from(b'0' + d) }).collect()
}

fn halting_word(s: &SegmentTrace) -> &'static str {
    if s.halt_requested {
        "halt"
    } else {
        "continue"
    }
}

/// The trace as JSON: what the pictures show, for one's own analysis.
fn json(trace: &Trace) -> serde_json::Value {
    use serde_json::json;
    let projection =
        |p: &Option<Projection>| p.as_ref().map(|p| json!({ "explained": p.explained, "points": p.points }));
    json!({
        "model": trace.model,
        "puzzle": digits(&trace.puzzle),
        "answer": digits(&trace.answer),
        "valid": trace.valid,
        "chosen": trace.chosen,
        "reason": trace.reason,
        "latent_note": trace.latent_note,
        "z_H": projection(&trace.z_h),
        "z_L": projection(&trace.z_l),
        "trajectories": trace.trajectories.iter().map(|t| json!({
            "trajectory": t.index,
            "segments": t.segments.iter().map(|s| json!({
                "board": digits(&s.board),
                "confidence": s.confidence.to_vec(),
                "changed": s.changed.iter().enumerate().filter(|(_, &c)| c).map(|(i, _)| i).collect::<Vec<_>>(),
                "q_halt": s.q_halt,
                "q_continue": s.q_continue,
                "halt": s.halt_requested,
                "valid": s.valid,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One board per segment, the changed cells marked (`*`, or reversed with colour), the givens
/// bold with colour and cells under 50 % confidence dim.
fn terminal(trace: &Trace, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trace of {} on {}", trace.model, digits(&trace.puzzle));
    if !colour {
        let _ = writeln!(out, "(* marks a cell that changed since the previous segment, ? one under 50 % confidence)");
    }
    for t in &trace.trajectories {
        for (s, seg) in t.segments.iter().enumerate() {
            let _ = writeln!(
                out,
                "\ntrajectory {} segment {}: q_halt {:+.3} q_continue {:+.3} -> {}{}",
                t.index + 1,
                s + 1,
                seg.q_halt,
                seg.q_continue,
                halting_word(seg),
                if seg.valid { ", a valid completion" } else { "" }
            );
            for row in 0..9 {
                if row % 3 == 0 && row > 0 {
                    let _ = writeln!(out, "  ------+-------+------");
                }
                let _ = write!(out, " ");
                for col in 0..9 {
                    if col % 3 == 0 && col > 0 {
                        let _ = write!(out, " |");
                    }
                    let cell = row * 9 + col;
                    let d = seg.board[cell];
                    let ch = if d == 0 { '.' } else { char::from(b'0' + d) };
                    let given = trace.puzzle[cell] != 0;
                    let unsure = seg.confidence[cell] < 0.5;
                    if colour {
                        let style = match (given, seg.changed[cell], unsure) {
                            (true, _, _) => "1",
                            (false, true, _) => "7;33",
                            (false, false, true) => "2",
                            _ => "0",
                        };
                        let _ = write!(out, " \x1b[{style}m{ch}\x1b[0m");
                    } else {
                        let mark = if seg.changed[cell] {
                            '*'
                        } else if unsure && !given {
                            '?'
                        } else {
                            ' '
                        };
                        let _ = write!(out, "{ch}{mark}");
                    }
                }
                let _ = writeln!(out);
            }
        }
    }
    let _ = writeln!(
        out,
        "\nanswer: {} ({}), from {}{}",
        digits(&trace.answer),
        if trace.valid { "a valid completion" } else { "not a valid completion" },
        trace.reason,
        trace.chosen.map_or(String::new(), |c| format!(" (trajectory {})", c + 1))
    );
    for (name, projection) in [("z_H", &trace.z_h), ("z_L", &trace.z_l)] {
        if let Some(p) = projection {
            let _ = writeln!(
                out,
                "{name} on its two principal components ({:.0} % and {:.0} % of the variance):",
                100.0 * p.explained[0],
                100.0 * p.explained[1]
            );
            for (t, points) in trace.trajectories.iter().zip(&p.points) {
                let text: Vec<String> = points.iter().flatten().map(|[x, y]| format!("({x:.2}, {y:.2})")).collect();
                let _ = writeln!(out, "  trajectory {}: {}", t.index + 1, text.join(" "));
            }
        }
    }
    if let Some(note) = &trace.latent_note {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One board as an HTML table: givens bold, changed cells outlined, the background as pale as
/// the model is unsure.
fn board_html(out: &mut String, trace: &Trace, t: u32, s: usize, seg: &SegmentTrace) {
    let _ = write!(
        out,
        "<table class=\"board\" data-trajectory=\"{t}\" data-segment=\"{s}\" data-q-halt=\"{:.4}\" data-q-continue=\"{:.4}\" data-halt=\"{}\" data-valid=\"{}\"><caption>segment {}</caption>",
        seg.q_halt,
        seg.q_continue,
        seg.halt_requested,
        seg.valid,
        s + 1
    );
    for row in 0..9 {
        out.push_str("<tr>");
        for col in 0..9 {
            let cell = row * 9 + col;
            let d = seg.board[cell];
            let mut classes = Vec::new();
            if trace.puzzle[cell] != 0 {
                classes.push("given");
            }
            if seg.changed[cell] {
                classes.push("changed");
            }
            if col % 3 == 2 && col < 8 {
                classes.push("right");
            }
            if row % 3 == 2 && row < 8 {
                classes.push("bottom");
            }
            let shade = (seg.confidence[cell].clamp(0.0, 1.0) * 100.0).round();
            let _ = write!(
                out,
                "<td class=\"{}\" style=\"--c:{shade}%\" title=\"confidence {:.1} %\">{}</td>",
                classes.join(" "),
                100.0 * seg.confidence[cell],
                if d == 0 { String::new() } else { d.to_string() }
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// One trajectory's line through `points` (pixels), marked when it is the chosen one.
fn polyline(svg: &mut String, class: &str, chosen: bool, trajectory: u32, points: impl Iterator<Item = (f32, f32)>) {
    let points: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        svg,
        "<polyline class=\"{class}{}\" data-trajectory=\"{trajectory}\" points=\"{}\"/>",
        if chosen { " chosen" } else { "" },
        points.join(" ")
    );
}

/// One number of a segment.
type Value = fn(&SegmentTrace) -> f32;

/// An SVG line chart of every trajectory's q_halt and q_continue against the segment.
fn q_chart_svg(trace: &Trace) -> String {
    let (w, h, pad) = (420.0f32, 240.0f32, 34.0f32);
    let most = trace.trajectories.iter().map(|t| t.segments.len()).max().unwrap_or(1).max(2);
    let values = trace.trajectories.iter().flat_map(|t| &t.segments).flat_map(|s| [s.q_halt, s.q_continue]);
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((0.0f32, 0.0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi - lo < 1e-3 { (lo - 1.0, hi + 1.0) } else { (lo, hi) };
    let x = |s: usize| pad + (w - 2.0 * pad) * s as f32 / (most - 1) as f32;
    let y = |v: f32| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let mut svg = format!("<svg id=\"q\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\"><title>Q values per segment</title>");
    let _ = write!(svg, "<line class=\"axis\" x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", y(0.0), w - pad, y(0.0));
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\">{hi:.1}</text><text x=\"4\" y=\"{}\">{lo:.1}</text><text x=\"{}\" y=\"{}\">segment</text>",
        pad,
        h - pad,
        w / 2.0 - 24.0,
        h - 6.0
    );
    for s in 0..most {
        let _ = write!(svg, "<text x=\"{}\" y=\"{}\" class=\"tick\">{}</text>", x(s) - 3.0, h - pad + 14.0, s + 1);
    }
    for t in &trace.trajectories {
        let chosen = trace.chosen == Some(t.index);
        let series: [(&str, Value); 2] = [("halt", |s| s.q_halt), ("continue", |s| s.q_continue)];
        for (class, value) in series {
            let points = t.segments.iter().enumerate().map(|(s, seg)| (x(s), y(value(seg))));
            polyline(&mut svg, class, chosen, t.index, points);
        }
        for (s, seg) in t.segments.iter().enumerate() {
            let _ = write!(
                svg,
                "<circle class=\"mark\" data-trajectory=\"{}\" data-segment=\"{s}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"/>",
                t.index,
                x(s),
                y(seg.q_halt)
            );
        }
    }
    svg.push_str("<text x=\"270\" y=\"16\" class=\"halt\">q_halt</text><text x=\"330\" y=\"16\" class=\"continue\">q_continue</text></svg>");
    svg
}

/// An SVG scatter of one projection: each trajectory a path through its segments.
fn projection_svg(trace: &Trace, name: &str, p: &Projection) -> String {
    let (w, h, pad) = (300.0f32, 240.0f32, 20.0f32);
    let all = p.points.iter().flatten().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for [a, b] in all {
        (x0, x1, y0, y1) = (x0.min(*a), x1.max(*a), y0.min(*b), y1.max(*b));
    }
    let span = |lo: f32, hi: f32| if hi - lo < 1e-6 { 1.0 } else { hi - lo };
    let x = |v: f32| pad + (w - 2.0 * pad) * (v - x0) / span(x0, x1);
    let y = |v: f32| h - pad - (h - 2.0 * pad) * (v - y0) / span(y0, y1);
    let mut svg = format!(
        "<svg class=\"pca\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\"><title>{name} on its principal components</title><text x=\"4\" y=\"14\">{name}: PC1 {:.0} %, PC2 {:.0} % of the variance</text>",
        100.0 * p.explained[0],
        100.0 * p.explained[1]
    );
    for (t, points) in trace.trajectories.iter().zip(&p.points) {
        let chosen = trace.chosen == Some(t.index);
        polyline(&mut svg, "path", chosen, t.index, points.iter().flatten().map(|[a, b]| (x(*a), y(*b))));
        for (s, point) in points.iter().enumerate() {
            if let Some([a, b]) = point {
                let _ = write!(
                    svg,
                    "<circle class=\"mark\" data-trajectory=\"{}\" data-segment=\"{s}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"/>",
                    t.index,
                    x(*a),
                    y(*b)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px}code{font-size:13px}
.board{border-collapse:collapse;margin:4px;display:inline-table;vertical-align:top}
.board caption{font-size:12px;color:#555}
.board td{width:18px;height:18px;text-align:center;border:1px solid #ccc;font-size:13px;
 background:color-mix(in srgb,#fff calc(100% - var(--c)),#cfe3ff var(--c))}
.board td.given{font-weight:bold;background:#e6e6e6}
.board td.changed{outline:2px solid #e07000;outline-offset:-2px}
.board td.right{border-right:2px solid #444}.board td.bottom{border-bottom:2px solid #444}
.board.current{box-shadow:0 0 0 3px #2a6fdb}
.strip{display:none}.strip.shown{display:block}
#main .board td{width:34px;height:34px;font-size:22px}
svg{background:#fafafa;border:1px solid #ddd;margin:4px}svg text{font-size:11px;fill:#333}
.axis{stroke:#999}.halt{stroke:#c0392b;fill:none;stroke-width:1;opacity:.35}.continue{stroke:#2471a3;fill:none;stroke-width:1;opacity:.35}
text.halt{fill:#c0392b;opacity:1;stroke:none}text.continue{fill:#2471a3;opacity:1;stroke:none}
.halt.shown,.continue.shown{opacity:1;stroke-width:2}
.path{stroke:#888;fill:none;opacity:.3}.path.chosen{stroke:#1e8449;opacity:.8}.path.shown{stroke:#2a6fdb;opacity:1;stroke-width:2}
.mark{fill:#2a6fdb;opacity:0}.mark.shown{opacity:.45}.mark.current{opacity:1;fill:#e07000}
.row{display:flex;flex-wrap:wrap;align-items:flex-start}";

// Reports any error (a syntax error in the main script included) on the page itself, where a
// test or a reader finds it.
const ERROR_SCRIPT: &str = "window.addEventListener('error',function(e){document.body.dataset.errors=(document.body.dataset.errors||'')+e.message+';';});";

const SCRIPT: &str = "(function(){
const strips=[...document.querySelectorAll('.strip')];
const slider=document.getElementById('segment'),picker=document.getElementById('trajectory');
const label=document.getElementById('where'),main=document.getElementById('main');
function show(){
 const t=picker?picker.value:strips[0].dataset.trajectory;
 const strip=strips.find(s=>s.dataset.trajectory===t);
 const boards=strip.querySelectorAll('.board');
 slider.max=boards.length-1;
 const s=Math.min(+slider.value,boards.length-1);
 strips.forEach(x=>x.classList.toggle('shown',x===strip));
 boards.forEach((b,i)=>b.classList.toggle('current',i===s));
 const b=boards[s];
 main.replaceChildren(b.cloneNode(true));
 main.firstChild.classList.remove('current');
 label.textContent='trajectory '+(+t+1)+', segment '+(s+1)+': q_halt '+b.dataset.qHalt+', q_continue '+b.dataset.qContinue+
  ' -> '+(b.dataset.halt==='true'?'halt':'continue')+(b.dataset.valid==='true'?' (a valid completion)':'');
 document.querySelectorAll('[data-trajectory]').forEach(e=>{
  if(e.tagName==='TABLE'||e.classList.contains('strip'))return;
  const mine=e.dataset.trajectory===t;
  e.classList.toggle('shown',mine);
  if(e.dataset.segment!==undefined)e.classList.toggle('current',mine&&+e.dataset.segment===s);
 });
}
slider.addEventListener('input',show);if(picker)picker.addEventListener('change',()=>{slider.value=0;show();});
document.addEventListener('keydown',e=>{if(e.key==='ArrowRight'){slider.value=+slider.value+1;show();}if(e.key==='ArrowLeft'){slider.value=+slider.value-1;show();}});
show();
document.body.dataset.ready='1';
})();";

/// One self-contained page: no network, no external script.
fn html(trace: &Trace) -> String {
    let mut out =
        String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hrm trace</title><style>");
    out.push_str(STYLE);
    let _ = write!(out, "</style></head><body><script>{ERROR_SCRIPT}</script><h1>Reasoning trace</h1>");
    let _ = write!(
        out,
        "<p>Model: {}. Puzzle <code>{}</code>.<br>Answer <code>{}</code>: {}, from {}{}.</p>",
        escape(&trace.model),
        digits(&trace.puzzle),
        digits(&trace.answer),
        if trace.valid { "a valid completion" } else { "not a valid completion" },
        trace.reason,
        trace.chosen.map_or(String::new(), |c| format!(" (trajectory {})", c + 1))
    );
    out.push_str("<p>");
    if trace.trajectories.len() > 1 {
        out.push_str("<label>Trajectory <select id=\"trajectory\">");
        for t in &trace.trajectories {
            let _ = write!(
                out,
                "<option value=\"{}\"{}>{}{}</option>",
                t.index,
                if trace.chosen == Some(t.index) { " selected" } else { "" },
                t.index + 1,
                if trace.chosen == Some(t.index) { " (chosen)" } else { "" }
            );
        }
        out.push_str("</select></label> ");
    }
    let most = trace.trajectories.iter().map(|t| t.segments.len()).max().unwrap_or(1);
    let _ = write!(
        out,
        "<label>Segment <input id=\"segment\" type=\"range\" min=\"0\" max=\"{}\" value=\"0\"></label> <span id=\"where\"></span></p>",
        most.saturating_sub(1)
    );
    out.push_str("<div class=\"row\"><div id=\"main\"></div>");
    out.push_str(&q_chart_svg(trace));
    for (name, projection) in [("z_H", &trace.z_h), ("z_L", &trace.z_l)] {
        if let Some(p) = projection {
            out.push_str(&projection_svg(trace, name, p));
        }
    }
    out.push_str("</div>");
    if let Some(note) = &trace.latent_note {
        let _ = write!(out, "<p>{}</p>", escape(note));
    }
    out.push_str("<p>Bold: givens. Outlined: changed since the previous segment. Blue: the model's confidence (softmax of the predicted digit).</p>");
    for t in &trace.trajectories {
        let _ = write!(out, "<div class=\"strip\" data-trajectory=\"{}\">", t.index);
        for (s, seg) in t.segments.iter().enumerate() {
            board_html(&mut out, trace, t.index, s, seg);
        }
        out.push_str("</div>");
    }
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(z: Vec<f32>) -> SegmentTrace {
        SegmentTrace {
            board: [0; CELLS],
            confidence: [1.0; CELLS],
            changed: [false; CELLS],
            q_halt: 0.0,
            q_continue: 0.0,
            halt_requested: false,
            valid: false,
            z_h: z.clone(),
            z_l: z,
        }
    }

    #[test]
    fn the_projection_recovers_points_on_a_plane() {
        // Points a·u + b·v in 50 dimensions: two components explain everything, and the
        // distances between points survive the projection.
        let u: Vec<f32> = (0..50).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
        let v: Vec<f32> = (0..50).map(|i| ((i * 3 % 13) as f32 - 6.0) / 10.0).collect();
        let coefficients = [(0.0, 0.0), (1.0, 0.5), (2.0, -1.0), (-1.5, 2.0), (0.5, 3.0)];
        let points: Vec<Vec<f32>> =
            coefficients.iter().map(|&(a, b)| u.iter().zip(&v).map(|(x, y)| a * x + b * y).collect()).collect();
        let trajectories = vec![TrajectoryTrace { index: 0, segments: points.iter().cloned().map(segment).collect() }];
        let p = project(&trajectories, |s| &s.z_h).expect("a projection");
        assert!((p.explained[0] + p.explained[1] - 1.0).abs() < 1e-4, "{:?}", p.explained);
        assert!(p.explained[0] >= p.explained[1]);
        let coords: Vec<[f32; 2]> = p.points[0].iter().map(|c| c.expect("kept")).collect();
        for i in 0..points.len() {
            for j in 0..points.len() {
                let full: f32 = points[i].iter().zip(&points[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
                let [a, b] = [coords[i][0] - coords[j][0], coords[i][1] - coords[j][1]];
                let projected = (a * a + b * b).sqrt();
                assert!((full - projected).abs() < 1e-3 * (1.0 + full), "{i} {j}: {full} vs {projected}");
            }
        }
    }

    #[test]
    fn no_projection_without_latents_or_points() {
        let two = vec![TrajectoryTrace { index: 0, segments: vec![segment(vec![1.0; 4]), segment(vec![2.0; 4])] }];
        assert!(project(&two, |s| &s.z_h).is_none());
        let none = vec![TrajectoryTrace { index: 0, segments: (0..5).map(|_| segment(Vec::new())).collect() }];
        assert!(project(&none, |s| &s.z_h).is_none());
    }
}
