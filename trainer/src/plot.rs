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
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// An ensemble ablation: one panel per data set (title, curves), accuracy against the mean
/// compute per puzzle (segments, log scale).
pub fn plot_ensemble(panels: &[(String, Vec<Curve>)], out: &Path) -> Result<()> {
    anyhow::ensure!(!panels.is_empty(), "nothing to plot");
    let text = register_font();
    let width = 520 * panels.len() as u32;
    let root = BitMapBackend::new(out, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK, RGBColor(230, 140, 0), RGBColor(120, 60, 160)];
    for ((title, curves), area) in panels.iter().zip(root.split_evenly((1, panels.len()))) {
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
        for (i, curve) in curves.iter().enumerate() {
            let color = colors.get(i % colors.len()).copied().unwrap_or(BLACK);
            chart.draw_series(curve.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            let series = chart.draw_series(LineSeries::new(curve.points.iter().copied(), color))?;
            if text {
                series
                    .label(curve.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
        }
        if text {
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
