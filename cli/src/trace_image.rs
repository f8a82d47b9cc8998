//! The trace as a picture (`--trace FILE.png` / `.svg`, plotters): a grid of boards, one row
//! per trajectory (the chosen one first, [`ROWS`] at most) and one column per segment, above
//! three charts: the Q values against the segment, and `z_H` and `z_L` on their two principal
//! components.
//!
//! Size: width `max(LEFT + columns × BOARD_STEP + GAP, 3 × PANEL_WIDTH)`, height
//! `TOP + rows × (BOARD_STEP + CAPTION) + PANEL_HEIGHT` pixels. The digits are drawn from a
//! small built-in bitmap font, so the boards need no font file; the charts' labels appear when
//! a system sans-serif font is found.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::trace::{Projection, Trace};

pub const CELL: i32 = 14;
pub const GAP: i32 = 10;
pub const BOARD_STEP: i32 = 9 * CELL + GAP;
pub const CAPTION: i32 = 16;
pub const LEFT: i32 = 40;
pub const TOP: i32 = 20;
pub const PANEL_WIDTH: i32 = 320;
pub const PANEL_HEIGHT: i32 = 280;
/// Trajectories drawn as boards at most (all of them are in the charts).
pub const ROWS: usize = 8;

/// 3 × 5 glyphs of the digits 0-9, a row per 3 bits.
const GLYPHS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// The trajectories drawn as boards, the chosen one first.
fn shown(trace: &Trace) -> Vec<usize> {
    let mut order: Vec<usize> = (0..trace.trajectories.len()).collect();
    order.sort_by_key(|&i| trace.chosen != Some(trace.trajectories[i].index));
    order.truncate(ROWS);
    order
}

/// The picture's width and height in pixels.
pub fn size(trace: &Trace) -> (u32, u32) {
    let columns = trace.trajectories.iter().map(|t| t.segments.len()).max().unwrap_or(1) as i32;
    let rows = shown(trace).len() as i32;
    let width = (LEFT + columns * BOARD_STEP + GAP).max(3 * PANEL_WIDTH);
    let height = TOP + rows * (BOARD_STEP + CAPTION) + PANEL_HEIGHT;
    (width as u32, height as u32)
}

pub fn png(trace: &Trace) -> Result<Vec<u8>> {
    let (w, h) = size(trace);
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root, trace)?;
        root.present().map_err(|e| anyhow!("cannot draw the trace: {e}"))?;
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    encoder.set_filter(png::FilterType::Paeth);
    let mut writer = encoder.write_header().map_err(|e| anyhow!("cannot encode the trace as PNG: {e}"))?;
    writer.write_image_data(&pixels).map_err(|e| anyhow!("cannot encode the trace as PNG: {e}"))?;
    writer.finish().map_err(|e| anyhow!("cannot encode the trace as PNG: {e}"))?;
    Ok(bytes)
}

pub fn svg(trace: &Trace) -> Result<String> {
    let (w, h) = size(trace);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        draw(&root, trace)?;
        root.present().map_err(|e| anyhow!("cannot draw the trace: {e}"))?;
    }
    Ok(text)
}

fn fail<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the trace: {e:?}")
}

/// `n` in the bitmap font, `scale` pixels per dot, top-left at `(x, y)`.
fn number<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    n: usize,
    x: i32,
    y: i32,
    scale: i32,
    colour: RGBColor,
) -> Result<()> {
    for (k, ch) in n.to_string().bytes().enumerate() {
        let glyph = &GLYPHS[usize::from(ch - b'0')];
        let left = x + k as i32 * 4 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    let (px, py) = (left + col * scale, y + row as i32 * scale);
                    area.draw(&Rectangle::new([(px, py), (px + scale, py + scale)], colour.filled())).map_err(fail)?;
                }
            }
        }
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, trace: &Trace) -> Result<()> {
    let text = hrm_host::register_font();
    root.fill(&WHITE).map_err(fail)?;
    let given = RGBColor(0xe6, 0xe6, 0xe6);
    let predicted = RGBColor(0x1a, 0x3e, 0x8c);
    let changed = RGBColor(0xe0, 0x70, 0x00);
    let chosen = RGBColor(0x1e, 0x84, 0x49);
    if text {
        root.draw(&Text::new(
            format!("{}: answer {}", trace.model, if trace.valid { "valid" } else { "not valid" }),
            (LEFT, 3),
            ("sans-serif", 14),
        ))
        .map_err(fail)?;
    }
    for (row, &t) in shown(trace).iter().enumerate() {
        let trajectory = &trace.trajectories[t];
        let y0 = TOP + row as i32 * (BOARD_STEP + CAPTION);
        let label = if trace.chosen == Some(trajectory.index) { chosen } else { BLACK };
        number(root, trajectory.index as usize + 1, 8, y0 + CAPTION + 4 * CELL, 2, label)?;
        for (s, seg) in trajectory.segments.iter().enumerate() {
            let x0 = LEFT + s as i32 * BOARD_STEP;
            number(root, s + 1, x0, y0 + 2, 2, if seg.valid { chosen } else { BLACK })?;
            let top = y0 + CAPTION;
            for cell in 0..81 {
                let (r, c) = ((cell / 9) as i32, (cell % 9) as i32);
                let (x, y) = (x0 + c * CELL, top + r * CELL);
                let is_given = trace.puzzle[cell] != 0;
                let fill = if is_given {
                    given
                } else {
                    // White at no confidence to pale blue at full.
                    let p = f64::from(seg.confidence[cell].clamp(0.0, 1.0));
                    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * p).round() as u8;
                    RGBColor(mix(255, 0xcf), mix(255, 0xe3), mix(255, 0xff))
                };
                root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], fill.filled())).map_err(fail)?;
                root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], RGBColor(0xcc, 0xcc, 0xcc))).map_err(fail)?;
                if seg.changed[cell] {
                    root.draw(&Rectangle::new([(x + 1, y + 1), (x + CELL - 1, y + CELL - 1)], changed.stroke_width(2)))
                        .map_err(fail)?;
                }
                let d = seg.board[cell];
                if d != 0 {
                    number(root, usize::from(d), x + 4, y + 2, 2, if is_given { BLACK } else { predicted })?;
                }
            }
            for k in [0, 3, 6, 9] {
                let line = |a: (i32, i32), b: (i32, i32)| PathElement::new(vec![a, b], BLACK.stroke_width(1));
                root.draw(&line((x0 + k * CELL, top), (x0 + k * CELL, top + 9 * CELL))).map_err(fail)?;
                root.draw(&line((x0, top + k * CELL), (x0 + 9 * CELL, top + k * CELL))).map_err(fail)?;
            }
        }
    }
    let (w, h) = root.dim_in_pixel();
    let panels = root.margin(0, 0, 0, 0).shrink((0, h as i32 - PANEL_HEIGHT), (w, PANEL_HEIGHT as u32));
    let columns = panels.split_evenly((1, 3));
    q_chart(&columns[0], trace, text)?;
    for (area, (name, projection)) in columns[1..].iter().zip([("z_H", &trace.z_h), ("z_L", &trace.z_l)]) {
        match projection {
            Some(p) => projection_chart(area, trace, name, p, text)?,
            None if text => {
                let note = trace.latent_note.as_deref().unwrap_or("no projection");
                area.draw(&Text::new(format!("{name}: {note}"), (10, 20), ("sans-serif", 12))).map_err(fail)?;
            }
            None => {}
        }
    }
    Ok(())
}

fn q_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, trace: &Trace, text: bool) -> Result<()> {
    let most = trace.trajectories.iter().map(|t| t.segments.len()).max().unwrap_or(1).max(2);
    let values = trace.trajectories.iter().flat_map(|t| &t.segments).flat_map(|s| [s.q_halt, s.q_continue]);
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((0.0f32, 0.0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.05).max(0.05);
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption("q_halt (red), q_continue (blue)", ("sans-serif", 13))
            .x_label_area_size(28)
            .y_label_area_size(36);
    }
    let mut chart = builder.build_cartesian_2d(1f32..most as f32, (lo - pad)..(hi + pad)).map_err(fail)?;
    if text {
        chart.configure_mesh().x_desc("segment").x_labels(most.min(16)).draw().map_err(fail)?;
    }
    for t in &trace.trajectories {
        let picked = trace.chosen == Some(t.index) || trace.trajectories.len() == 1;
        let (halt, cont) = if picked {
            (RED.stroke_width(2), BLUE.stroke_width(2))
        } else {
            (RED.mix(0.25).stroke_width(1), BLUE.mix(0.25).stroke_width(1))
        };
        let points = |f: fn(&crate::trace::SegmentTrace) -> f32| -> Vec<(f32, f32)> {
            t.segments.iter().enumerate().map(|(s, seg)| ((s + 1) as f32, f(seg))).collect()
        };
        chart.draw_series(LineSeries::new(points(|s| s.q_halt), halt)).map_err(fail)?;
        chart.draw_series(LineSeries::new(points(|s| s.q_continue), cont)).map_err(fail)?;
        if picked {
            let halts = t.segments.iter().enumerate().filter(|(_, s)| s.halt_requested);
            chart
                .draw_series(halts.map(|(s, seg)| Circle::new(((s + 1) as f32, seg.q_halt), 4, RED.filled())))
                .map_err(fail)?;
        }
    }
    Ok(())
}

fn projection_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    trace: &Trace,
    name: &str,
    p: &Projection,
    text: bool,
) -> Result<()> {
    let all: Vec<[f32; 2]> = p.points.iter().flatten().flatten().copied().collect();
    let range = |k: usize| {
        let (lo, hi) = all.iter().fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v[k]), hi.max(v[k])));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        let caption = format!("{name}: PC1 {:.0} %, PC2 {:.0} %", 100.0 * p.explained[0], 100.0 * p.explained[1]);
        builder.caption(caption, ("sans-serif", 13)).x_label_area_size(20).y_label_area_size(36);
    }
    let mut chart = builder.build_cartesian_2d(range(0), range(1)).map_err(fail)?;
    if text {
        chart.configure_mesh().x_labels(4).y_labels(4).draw().map_err(fail)?;
    }
    for (t, points) in trace.trajectories.iter().zip(&p.points) {
        let picked = trace.chosen == Some(t.index) || trace.trajectories.len() == 1;
        let colour = if picked { RGBColor(0x1e, 0x84, 0x49).to_rgba() } else { BLACK.mix(0.25) };
        let path: Vec<(f32, f32)> = points.iter().flatten().map(|[x, y]| (*x, *y)).collect();
        chart
            .draw_series(LineSeries::new(path.iter().copied(), colour.stroke_width(if picked { 2 } else { 1 })))
            .map_err(fail)?;
        chart.draw_series(path.iter().map(|&xy| Circle::new(xy, 3, colour.filled()))).map_err(fail)?;
        if picked {
            // Segment numbers beside the chosen trajectory's points, where it starts and turns.
            let base = area.get_base_pixel();
            for (s, point) in points.iter().enumerate() {
                if let Some([x, y]) = point {
                    let (px, py) = chart.plotting_area().map_coordinate(&(*x, *y));
                    number(area, s + 1, px - base.0 + 5, py - base.1 - 12, 1, BLACK)?;
                }
            }
        }
    }
    Ok(())
}
