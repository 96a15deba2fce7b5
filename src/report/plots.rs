//! The report's SVG plots that are not over time (drawn by plotters): training and
//! validation loss per epoch, predicted against actual returns, the forecast's skill and
//! the band's calibration per horizon step, and the skill of each walk-forward fold.

use plotters::backend::SVGBackend;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::chart::{
    Area, BLUE_, GREEN_, GREY, Key, ORANGE, Plot, RED_, chart_on, decimals, draw_err, draw_mesh,
    padded, svg,
};
use super::data::{HorizonStats, LossCurves, PredictionRow};

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart whose x values are whole numbers (epochs, folds, horizon steps): only those are
/// labelled, `prefix` before each (`r` for steps).
fn whole_x_chart<'a, 'b>(
    root: &'a Area<'b>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (x_desc, y_desc): (&str, &str),
    prefix: &str,
) -> Result<Chart<'a, 'b>, String> {
    let y_decimals = decimals(y1 - y0);
    let mut chart = chart_on(root, x0..x1, y0..y1, 16)?;
    draw_mesh(
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(8)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{prefix}{}", x.round() as i64)
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
    let mut keys = Vec::new();
    if !curves.train.is_empty() {
        keys.push(Key::Line(BLUE_.stroke_width(2), "train"));
    }
    if !curves.val.is_empty() {
        keys.push(Key::Line(ORANGE.stroke_width(2), "validation"));
    }
    if curves.best.is_some() {
        keys.push(Key::Ring(GREEN_, "best validation"));
    }
    let svg = svg(&keys, |root| {
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1), ("epoch", "loss"), "")?;
        for (points, color) in [(&curves.train, BLUE_), (&curves.val, ORANGE)] {
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(2),
                )
                .map_err(draw_err)?;
        }
        if let Some(best) = curves.best {
            chart
                .draw_series(std::iter::once(Circle::new(
                    best,
                    5,
                    GREEN_.stroke_width(2),
                )))
                .map_err(draw_err)?;
        }
        Ok(())
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
    let mut keys = vec![Key::Line(GREY.stroke_width(1), "persistence")];
    if !model.is_empty() {
        keys.push(Key::Line(BLUE_.stroke_width(2), "model"));
    }
    if !ridge.is_empty() {
        keys.push(Key::Line(ORANGE.stroke_width(2), "ridge"));
    }
    let svg = svg(&keys, |root| {
        let axes = ("fold", "skill vs persistence");
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1), axes, "")?;
        chart
            .draw_series(LineSeries::new(
                [(x0, 0.0), (x1, 0.0)],
                GREY.stroke_width(1),
            ))
            .map_err(draw_err)?;
        for (points, color) in [(&model, BLUE_), (&ridge, ORANGE)] {
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(3),
                )
                .map_err(draw_err)?;
        }
        Ok(())
    })?;
    let below = model.iter().filter(|p| p.1 < 0.0).count();
    let note = format!(
        "{} folds; the model is worse than persistence in {below} of them",
        folds.len()
    );
    Ok(Plot { svg, note })
}

/// The forecast at every horizon step: skill against persistence (0 is persistence) and
/// the share of directions right, in percent on the same axis scaled to a skill's.
pub(super) fn horizon_plot(stats: &HorizonStats) -> Result<Plot, String> {
    let step = |h: usize| (h + 1) as f64;
    let skill: Vec<(f64, f64)> = stats
        .skill
        .iter()
        .enumerate()
        .filter_map(|(h, s)| Some((step(h), (*s)?)))
        .collect();
    if skill.is_empty() {
        return Err("no moves in the test split to score".to_string());
    }
    let steps = stats.skill.len();
    let (x0, x1) = (0.5, steps as f64 + 0.5);
    let Some((y0, y1)) = padded(skill.iter().map(|p| p.1).chain([0.0])) else {
        return Err("no skill figures".to_string());
    };
    let keys = [
        Key::Line(GREY.stroke_width(1), "persistence"),
        Key::Line(BLUE_.stroke_width(2), "model skill"),
    ];
    let svg = svg(&keys, |root| {
        let axes = ("horizon step", "skill vs persistence");
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1), axes, "r")?;
        chart
            .draw_series(LineSeries::new(
                [(x0, 0.0), (x1, 0.0)],
                GREY.stroke_width(1),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(
                LineSeries::new(skill.iter().copied(), BLUE_.stroke_width(2)).point_size(4),
            )
            .map_err(draw_err)?;
        Ok(())
    })?;
    let accuracy: Vec<String> = stats
        .directional_accuracy
        .iter()
        .enumerate()
        .map(|(h, a)| match a {
            Some(a) => format!("r{} {:.1}%", h + 1, 100.0 * a),
            None => format!("r{} -", h + 1),
        })
        .collect();
    let note = format!(
        "{steps} step{}; direction right: {}",
        if steps == 1 { "" } else { "s" },
        accuracy.join(", ")
    );
    Ok(Plot { svg, note })
}

/// The band's observed coverage per horizon step against its nominal coverage (80% for a
/// 10%-90% band): above the line the band is too wide, below it too narrow.
pub(super) fn calibration_plot(coverage: &[f64], levels: [f64; 2]) -> Result<Plot, String> {
    if coverage.is_empty() {
        return Err("no band".to_string());
    }
    let nominal = 100.0 * (levels[1] - levels[0]);
    let points: Vec<(f64, f64)> = coverage
        .iter()
        .enumerate()
        .map(|(h, c)| ((h + 1) as f64, 100.0 * c))
        .collect();
    let (x0, x1) = (0.5, coverage.len() as f64 + 0.5);
    let Some((y0, y1)) = padded(points.iter().map(|p| p.1).chain([nominal, 100.0])) else {
        return Err("no finite coverage".to_string());
    };
    let nominal_label = format!("nominal {nominal:.0}%");
    let keys = [
        Key::Owned(RED_.stroke_width(1), nominal_label),
        Key::Line(BLUE_.stroke_width(2), "observed"),
    ];
    let svg = svg(&keys, |root| {
        let axes = ("horizon step", "coverage %");
        let mut chart = whole_x_chart(root, (x0, x1), (y0, y1.min(102.0)), axes, "r")?;
        chart
            .draw_series(LineSeries::new(
                [(x0, nominal), (x1, nominal)],
                RED_.stroke_width(1),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(
                LineSeries::new(points.iter().copied(), BLUE_.stroke_width(2)).point_size(4),
            )
            .map_err(draw_err)?;
        Ok(())
    })?;
    let pooled = 100.0 * coverage.iter().sum::<f64>() / coverage.len() as f64;
    let note = format!(
        "the {:.0}%-{:.0}% band holds {pooled:.1}% of actual returns (nominal {nominal:.0}%)",
        100.0 * levels[0],
        100.0 * levels[1]
    );
    Ok(Plot { svg, note })
}

pub(super) fn scatter_plot(rows: &[PredictionRow]) -> Result<Plot, String> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (f64::from(r.actual_r1()), f64::from(r.pred_r1())))
        .filter(|(a, p)| a.is_finite() && p.is_finite())
        .collect();
    // One range for both axes, so y = x is the diagonal and a timid model looks timid.
    let Some((lo, hi)) = padded(points.iter().flat_map(|&(a, p)| [a, p])) else {
        return Err("no test windows".to_string());
    };
    let pct_decimals = decimals(100.0 * (hi - lo));
    let pct = |v: &f64| format!("{:.pct_decimals$}%", 100.0 * v);
    let keys = [
        Key::Dot(BLUE_, "test window"),
        Key::Line(RED_.stroke_width(1), "y = x"),
    ];
    let svg = svg(&keys, |root| {
        let mut chart = chart_on(root, lo..hi, lo..hi, 24)?;
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
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED_.stroke_width(1)))
            .map_err(draw_err)?;
        Ok(())
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
    use super::*;

    #[test]
    fn every_horizon_step_is_plotted_and_the_band_against_its_nominal_coverage() {
        let stats = HorizonStats {
            skill: vec![Some(0.1), Some(-0.05), None],
            directional_accuracy: vec![Some(0.55), Some(0.5), None],
            coverage: vec![0.78, 0.81, 0.9],
        };
        let plot = horizon_plot(&stats).unwrap();
        for label in [">\nr1\n<", ">\nr2\n<", ">\nr3\n<"] {
            assert!(plot.svg.contains(label), "{label}");
        }
        assert_eq!(
            plot.note,
            "3 steps; direction right: r1 55.0%, r2 50.0%, r3 -"
        );
        let plot = calibration_plot(&stats.coverage, [0.1, 0.9]).unwrap();
        assert!(plot.svg.contains("nominal 80%"));
        assert_eq!(
            plot.note,
            "the 10%-90% band holds 83.0% of actual returns (nominal 80%)"
        );
        assert!(calibration_plot(&[], [0.1, 0.9]).is_err());
    }
}
