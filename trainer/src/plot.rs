//! `metrics.png`: training loss and accuracies against steps.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::train::MetricsLine;

pub use hrm_host::register_font;

pub fn plot(lines: &[MetricsLine], out: &Path) -> Result<()> {
    let train: Vec<&MetricsLine> = lines.iter().filter(|l| l.loss > 0.0).collect();
    anyhow::ensure!(!train.is_empty(), "no metrics to plot");
    let text = register_font();
    let root = BitMapBackend::new(out, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let max_step = train.iter().map(|l| l.step).max().unwrap_or(1) as f64;
    let max_loss = train.iter().map(|l| l.loss).fold(0.0, f64::max) * 1.05;

    let mut chart = ChartBuilder::on(&left);
    chart.margin(15).x_label_area_size(35).y_label_area_size(50);
    if text {
        chart.caption("training loss", ("sans-serif", 20));
    }
    let mut chart = chart.build_cartesian_2d(0.0..max_step, 0.0..max_loss.max(1e-3))?;
    if text {
        chart.configure_mesh().x_desc("step").draw()?;
    }
    for (name, get, color) in [
        ("loss", (|l: &MetricsLine| l.loss) as fn(&MetricsLine) -> f64, RED),
        ("lm_loss", |l: &MetricsLine| l.lm_loss, BLUE),
        ("q_loss", |l: &MetricsLine| l.q_loss, GREEN),
    ] {
        let series = chart.draw_series(LineSeries::new(train.iter().map(|l| (l.step as f64, get(l))), color))?;
        if text {
            series.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }

    let mut chart = ChartBuilder::on(&right);
    chart.margin(15).x_label_area_size(35).y_label_area_size(50);
    if text {
        chart.caption("accuracy", ("sans-serif", 20));
    }
    let mut chart = chart.build_cartesian_2d(0.0..max_step, 0.0..1.0)?;
    if text {
        chart.configure_mesh().x_desc("step").draw()?;
    }
    let evals: Vec<&MetricsLine> = lines.iter().filter(|l| l.eval_exact_accuracy.is_some()).collect();
    type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);
    let series: [Series; 4] = [
        ("train cell", train.iter().map(|l| (l.step as f64, l.accuracy)).collect(), BLUE),
        ("train exact", train.iter().map(|l| (l.step as f64, l.exact_accuracy)).collect(), RED),
        (
            "eval blank cells",
            evals.iter().map(|l| (l.step as f64, l.eval_blank_accuracy.unwrap_or(0.0))).collect(),
            CYAN,
        ),
        ("eval exact", evals.iter().map(|l| (l.step as f64, l.eval_exact_accuracy.unwrap_or(0.0))).collect(), MAGENTA),
    ];
    for (name, points, color) in series {
        let s = chart.draw_series(LineSeries::new(points, color))?;
        if text {
            s.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present().with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// One line of [`plot_ensemble`]: a name and its (mean segments per puzzle, accuracy) points.
/// Lines of one `family` (say, one kind of trajectory) share a colour; `variant` (say, the
/// selection rule) picks the marker and the dash, so a dozen lines stay apart.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub family: usize,
    pub variant: usize,
}

/// An ensemble ablation: one panel per data set (title, curves), accuracy against the mean
/// compute per puzzle (segments, log scale).
pub fn plot_ensemble(panels: &[(String, Vec<Curve>)], out: &Path) -> Result<()> {
    anyhow::ensure!(!panels.is_empty(), "nothing to plot");
    let text = register_font();
    let width = 520 * panels.len() as u32;
    let root = BitMapBackend::new(out, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let colors = [RED, BLUE, RGBColor(0, 150, 0), MAGENTA, RGBColor(0, 160, 180), BLACK, RGBColor(230, 140, 0)];
    for (panel, ((title, curves), area)) in panels.iter().zip(root.split_evenly((1, panels.len()))).enumerate() {
        let max_x = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).fold(8.0, f64::max) * 1.3;
        let mut chart = ChartBuilder::on(&area);
        chart.margin(15).x_label_area_size(35).y_label_area_size(45);
        if text {
            chart.caption(title, ("sans-serif", 18));
        }
        let mut chart = chart.build_cartesian_2d((1.0..max_x).log_scale(), 0.0..100.0)?;
        if text {
            chart.configure_mesh().x_desc("segments per puzzle (mean)").y_desc("solved %").draw()?;
        }
        // Every panel has the same lines: the legend goes on the first only, so that it hides
        // no points of the others.
        let legend = text && panel == 0;
        for curve in curves {
            let color = colors.get(curve.family % colors.len()).copied().unwrap_or(BLACK);
            let variant = curve.variant % 3;
            let line = color.stroke_width(if variant == 0 { 2 } else { 1 });
            let points = curve.points.iter().copied();
            let series = match variant {
                0 => {
                    chart.draw_series(curve.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                    chart.draw_series(LineSeries::new(points, line))?
                }
                1 => {
                    chart.draw_series(curve.points.iter().map(|&p| TriangleMarker::new(p, 4, color.filled())))?;
                    chart.draw_series(DashedLineSeries::new(points, 6, 4, line))?
                }
                _ => {
                    chart.draw_series(curve.points.iter().map(|&p| Cross::new(p, 4, color)))?;
                    chart.draw_series(DashedLineSeries::new(points, 2, 3, line))?
                }
            };
            if legend {
                series.label(curve.name.clone()).legend(move |(x, y)| {
                    let marker: DynElement<'static, BitMapBackend, (i32, i32)> = match variant {
                        0 => Circle::new((10, 0), 3, color.filled()).into_dyn(),
                        1 => TriangleMarker::new((10, 0), 4, color.filled()).into_dyn(),
                        _ => Cross::new((10, 0), 4, color).into_dyn(),
                    };
                    EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (20, 0)], color) + marker
                });
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()?;
        }
    }
    root.present().with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's header (IHDR follows the 8-byte signature).
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        (be(16), be(20))
    }

    #[test]
    fn an_ensemble_plot_draws_every_family_and_variant() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ablation.png");
        // Four kinds × three rules, more lines than colours, on two panels.
        let curves = || {
            (0..12)
                .map(|i| Curve {
                    name: format!("kind {}, rule {}", i / 3, i % 3),
                    points: vec![(8.0, 10.0 * i as f64), (64.0, 20.0 + 5.0 * i as f64), (1024.0, 90.0)],
                    family: i / 3,
                    variant: i % 3,
                })
                .collect::<Vec<_>>()
        };
        let panels = vec![("a".to_string(), curves()), ("b".to_string(), curves())];
        plot_ensemble(&panels, &out).unwrap();
        assert_eq!(png_size(&std::fs::read(&out).unwrap()), (1040, 460));
        assert!(plot_ensemble(&[], &dir.path().join("none.png")).is_err());
        assert!(!dir.path().join("none.png").exists());
    }
}
