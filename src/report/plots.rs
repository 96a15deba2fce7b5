//! The report's SVG plots (drawn by plotters): training and validation loss per epoch,
//! the test split's equity curves, predicted against actual returns, and the skill of each
//! walk-forward fold.

use plotters::backend::SVGBackend;
use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::data::{EquityCurves, LossCurves, PredictionRow};
use crate::config::{EvaluationConfig, Signal};

/// A drawn plot: its SVG and a caption line about what it shows.
pub(super) struct Plot {
    pub(super) svg: String,
    pub(super) note: String,
}

const SIZE: (u32, u32) = (480, 320);
const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(120, 120, 120);
const RED_: RGBColor = RGBColor(214, 39, 40);
const FONT: &str = "sans-serif";

fn draw_err(e: impl std::fmt::Display) -> String {
    format!("plot failed: {e}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Mesh<'a, 'b, 'c> = MeshStyle<'a, 'b, RangedCoordf64, RangedCoordf64, SVGBackend<'c>>;

/// A plot's SVG: a white canvas of [`SIZE`] for `draw` to chart on.
fn svg(draw: impl FnOnce(&Area) -> Result<(), String>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Draws `mesh` in the style every plot shares: label fonts, no light grid lines.
fn draw_mesh(mesh: &mut Mesh) -> Result<(), String> {
    mesh.label_style((FONT, 17))
        .axis_desc_style((FONT, 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)
}

/// Draws the legend of `chart` at `position`, boxed the same in every plot.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY.mix(0.5))
        .label_font((FONT, 16))
        .draw()
        .map_err(draw_err)
}

/// A legend key: a short line in `style` (legend coordinates are backend pixels).
fn line_key(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

/// `[min, max]` of the values widened by 5% each side (a unit around a single value), so
/// no point sits on the frame and a flat series still has a range.
fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        0.5 * lo.abs().max(1e-3)
    };
    Some((lo - pad, hi + pad))
}

/// Decimals that tell apart the ticks plotters draws over `span`: it may step by a
/// twentieth of it (0.05 over 1.0), so the labels are sized for that, else neighbouring
/// ticks print the same (`1.0, 1.0, 1.1`).
fn decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    (-libm::log10(span / 20.0)).ceil().clamp(0.0, 8.0) as usize
}

/// A chart whose x values are whole numbers (epochs, folds): only those are labelled.
fn whole_x_chart<'a, 'b>(
    root: &'a Area<'b>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    x_desc: &str,
    y_desc: &str,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let y_decimals = decimals(y1 - y0);
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(66)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    draw_mesh(
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(8)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.y_decimals$}")),
    )?;
    Ok(chart)
}

pub(super) fn loss_plot(curves: &LossCurves) -> Result<Plot, String> {
    let Some((x0, x1)) = padded(curves.train.iter().chain(&curves.val).map(|p| p.0)) else {
        return Err("no epochs logged".to_string());
    };
    let Some((y0, y1)) = padded(curves.train.iter().chain(&curves.val).map(|p| p.1)) else {
        return Err("no epochs logged".to_string());
    };
    let svg = svg(|root| {
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1), "epoch", "loss")?;
        for (points, color, label) in [
            (&curves.train, BLUE_, "train"),
            (&curves.val, ORANGE, "validation"),
        ] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(2),
                )
                .map_err(draw_err)?
                .label(label)
                .legend(line_key(color.stroke_width(2)));
        }
        if let Some(best) = curves.best {
            chart
                .draw_series(std::iter::once(Circle::new(
                    best,
                    5,
                    GREEN_.stroke_width(2),
                )))
                .map_err(draw_err)?
                .label("best validation")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, GREEN_.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })?;
    let note = match (curves.train.last(), curves.val.last()) {
        (Some(t), Some(v)) => format!(
            "{} epochs; last train loss {:.4}, last validation loss {:.4}",
            curves.train.len(),
            t.1,
            v.1
        ),
        (Some(t), None) => format!(
            "{} epochs; last train loss {:.4}; no validation windows",
            curves.train.len(),
            t.1
        ),
        _ => format!("{} epochs", curves.val.len()),
    };
    Ok(Plot { svg, note })
}

/// A chart over the test split's bar times (Unix seconds): three date labels, none so near
/// the right edge that the frame would cut it off.
fn time_chart<'a, 'b>(
    root: &'a Area<'b>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    y_desc: &str,
    intraday: bool,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let y_decimals = decimals(y1 - y0);
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .margin_right(44)
        .x_label_area_size(46)
        .y_label_area_size(66)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    draw_mesh(
        chart
            .configure_mesh()
            .x_desc("test split")
            .y_desc(y_desc)
            .x_labels(3)
            .x_label_formatter(&|x| {
                if *x > x1 - 0.12 * (x1 - x0) {
                    String::new()
                } else {
                    time_label(*x, intraday)
                }
            })
            .y_label_formatter(&|y| format!("{y:.y_decimals$}")),
    )?;
    Ok(chart)
}

/// How far each equity curve is below its running peak (0 at a new high), in percent: the
/// strategy's and buy-and-hold's drawdown over the test split.
pub(super) fn drawdown_plot(curves: &EquityCurves) -> Result<Plot, String> {
    let times = &curves.timestamps;
    let drawdown = |equity: &[f64]| -> Vec<(f64, f64)> {
        let mut peak = 1.0f64;
        times
            .iter()
            .zip(equity)
            .map(|(&t, &e)| {
                peak = peak.max(e);
                (t as f64, 100.0 * (e / peak - 1.0))
            })
            .collect()
    };
    let (strategy, hold) = (drawdown(&curves.strategy), drawdown(&curves.buy_and_hold));
    let Some((x0, x1)) = padded(times.iter().map(|&t| t as f64)) else {
        return Err("no test windows".to_string());
    };
    let Some((y0, y1)) = padded(strategy.iter().chain(&hold).map(|p| p.1).chain([0.0])) else {
        return Err("no finite equity values".to_string());
    };
    let intraday = times.windows(2).any(|w| (w[1] - w[0]) < 86_400);
    let svg = svg(|root| {
        let mut chart = time_chart(root, (x0, x1), (y0, y1), "drawdown %", intraday)?;
        chart
            .draw_series(LineSeries::new(hold, GREY.stroke_width(2)))
            .map_err(draw_err)?
            .label("buy & hold")
            .legend(line_key(GREY.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                strategy.iter().copied(),
                BLUE_.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("strategy")
            .legend(line_key(BLUE_.stroke_width(2)));
        // Drawdowns go down from 0: the legend sits at the bottom, clear of the zero line.
        draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)
    })?;
    let worst = |line: &[(f64, f64)]| line.iter().map(|p| p.1).fold(0.0, f64::min);
    let note = format!(
        "deepest drawdown: strategy {:.1}%, buy and hold {:.1}%",
        worst(&strategy),
        worst(&drawdown(&curves.buy_and_hold))
    );
    Ok(Plot { svg, note })
}

/// Skill against persistence per walk-forward fold (`(fold, model skill, ridge skill)`),
/// with the zero line persistence scores.
pub(super) fn fold_plot(folds: &[(f64, Option<f64>, Option<f64>)]) -> Result<Plot, String> {
    let model: Vec<(f64, f64)> = folds.iter().filter_map(|f| Some((f.0, f.1?))).collect();
    let ridge: Vec<(f64, f64)> = folds.iter().filter_map(|f| Some((f.0, f.2?))).collect();
    let Some((x0, x1)) = padded(folds.iter().map(|f| f.0)) else {
        return Err("no folds".to_string());
    };
    let values = model.iter().chain(&ridge).map(|p| p.1).chain([0.0]);
    let Some((y0, y1)) = padded(values) else {
        return Err("no skill figures".to_string());
    };
    let svg = svg(|root| {
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1), "fold", "skill vs persistence")?;
        chart
            .draw_series(LineSeries::new(
                [(x0, 0.0), (x1, 0.0)],
                GREY.stroke_width(1),
            ))
            .map_err(draw_err)?
            .label("persistence")
            .legend(line_key(GREY.stroke_width(1)));
        for (points, color, label) in [(&model, BLUE_, "model"), (&ridge, ORANGE, "ridge")] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(3),
                )
                .map_err(draw_err)?
                .label(label)
                .legend(line_key(color.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })?;
    let below = model.iter().filter(|p| p.1 < 0.0).count();
    let note = format!(
        "{} folds; the model is worse than persistence in {below} of them",
        folds.len()
    );
    Ok(Plot { svg, note })
}

/// Unix seconds as a date (a time of day too when the bars are intraday).
fn time_label(secs: f64, intraday: bool) -> String {
    let format = if intraday {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    };
    chrono::DateTime::from_timestamp(secs.round() as i64, 0)
        .map_or_else(|| format!("{secs}"), |t| t.format(format).to_string())
}

pub(super) fn equity_plot(
    curves: &EquityCurves,
    evaluation: &EvaluationConfig,
) -> Result<Plot, String> {
    let times = &curves.timestamps;
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Err("no test windows".to_string());
    };
    // Bar i's return is earned from its window's end to the next bar: equity starts at 1 at
    // the first bar and reaches its i-th value one bar later (the last one a spacing on).
    let step = match times.len() {
        0 | 1 => 86_400,
        n => (times[n - 1] - times[n - 2]).max(1),
    };
    let xs: Vec<f64> = times
        .iter()
        .chain(std::iter::once(&(last + step)))
        .map(|&t| t as f64)
        .collect();
    let line = |equity: &[f64]| -> Vec<(f64, f64)> {
        xs.iter()
            .copied()
            .zip(std::iter::once(1.0).chain(equity.iter().copied()))
            .collect()
    };
    let (strategy, hold) = (line(&curves.strategy), line(&curves.buy_and_hold));
    let (x0, x1) = (first as f64, (last + step) as f64);
    let Some((y0, y1)) = padded(strategy.iter().chain(&hold).map(|p| p.1)) else {
        return Err("no finite equity values".to_string());
    };
    let intraday = times.windows(2).any(|w| (w[1] - w[0]) < 86_400);
    let signal = match evaluation.signal {
        Signal::Action => "action",
        Signal::Price => "price",
    };
    // Both curves start at 1 on the left; the legend goes in the left corner they move away
    // from (the top when they end up, the bottom when they end down).
    let end = |line: &[(f64, f64)]| line.last().map_or(1.0, |p| p.1);
    let rises = end(&strategy) + end(&hold) >= 2.0;
    let legend_corner = if rises {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::LowerLeft
    };
    let svg = svg(|root| {
        let mut chart = time_chart(root, (x0, x1), (y0, y1), "equity", intraday)?;
        chart
            .draw_series(LineSeries::new([(x0, 1.0), (x1, 1.0)], GREY.mix(0.4)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(hold, GREY.stroke_width(2)))
            .map_err(draw_err)?
            .label("buy & hold")
            .legend(line_key(GREY.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(strategy, BLUE_.stroke_width(2)))
            .map_err(draw_err)?
            .label(format!("strategy ({signal} signal)"))
            .legend(line_key(BLUE_.stroke_width(2)));
        draw_legend(&mut chart, legend_corner)
    })?;
    let total = |equity: &[f64]| equity.last().map_or(0.0, |e| e - 1.0);
    let note = format!(
        "{} bars, {} bps per unit traded; strategy {:+.2}%, buy-and-hold {:+.2}%",
        times.len(),
        evaluation.cost_bps,
        100.0 * total(&curves.strategy),
        100.0 * total(&curves.buy_and_hold)
    );
    Ok(Plot { svg, note })
}

pub(super) fn scatter_plot(rows: &[PredictionRow]) -> Result<Plot, String> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (f64::from(r.actual_r1), f64::from(r.pred_r1)))
        .filter(|(a, p)| a.is_finite() && p.is_finite())
        .collect();
    // One range for both axes, so y = x is the diagonal and a timid model looks timid.
    let Some((lo, hi)) = padded(points.iter().flat_map(|&(a, p)| [a, p])) else {
        return Err("no test windows".to_string());
    };
    let pct_decimals = decimals(100.0 * (hi - lo));
    let pct = |v: &f64| format!("{:.pct_decimals$}%", 100.0 * v);
    let svg = svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(draw_err)?;
        draw_mesh(
            chart
                .configure_mesh()
                .x_desc("actual r1")
                .y_desc("predicted r1")
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&pct)
                .y_label_formatter(&pct),
        )?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 3, BLUE_.mix(0.5).filled())),
            )
            .map_err(draw_err)?
            .label("test window")
            .legend(|(x, y)| Circle::new((x + 9, y), 3, BLUE_.mix(0.6).filled()));
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED_.stroke_width(1)))
            .map_err(draw_err)?
            .label("y = x")
            .legend(line_key(RED_.stroke_width(1)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })?;
    let note = match correlation(&points) {
        Some(c) => format!("{} windows; correlation {c:.3}", points.len()),
        None => format!("{} windows", points.len()),
    };
    Ok(Plot { svg, note })
}

/// Pearson correlation; `None` when either side is constant or there are under two points.
fn correlation(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::{EquityCurves, decimals, drawdown_plot};

    #[test]
    fn drawdown_is_measured_from_the_running_peak() {
        let curves = EquityCurves {
            timestamps: vec![86_400, 2 * 86_400, 3 * 86_400],
            strategy: vec![1.1, 0.99, 1.2],
            buy_and_hold: vec![0.95, 1.0, 1.05],
        };
        let plot = drawdown_plot(&curves).unwrap();
        assert_eq!(
            plot.note,
            "deepest drawdown: strategy -10.0%, buy and hold -5.0%"
        );
        assert!(plot.svg.contains("drawdown %"));
    }

    #[test]
    fn tick_labels_have_the_decimals_their_steps_need() {
        // An equity axis from 0.95 to 1.3: ticks 0.05 apart need two decimals.
        assert_eq!(decimals(0.35), 2);
        assert_eq!(decimals(1.0), 2);
        assert_eq!(decimals(40.0), 0);
        assert_eq!(decimals(f64::NAN), 2);
    }
}
