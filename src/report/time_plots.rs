//! The report's plots over the test split's time: equity and drawdown of the strategy
//! against buy-and-hold, pooled (the portfolio the backtest scores) or of one symbol.

use plotters::backend::SVGBackend;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::axis::TimeAxis;
use super::chart::{
    Area, BLUE_, GREY, Key, LABEL_PX, Plot, SIZE, chart_on, decimals, draw_err, draw_mesh, padded,
    svg,
};
use super::data::EquityCurves;
use crate::config::{EvaluationConfig, Signal};

/// Right of the frame: room for the half of a date label centred on a tick near the end.
const RIGHT_MARGIN: u32 = 40;
/// Tick labels of the time axis: smaller than the others, so more dates fit.
const DATE_PX: u32 = 15;

type TimeChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<TimeAxis, RangedCoordf64>>;

/// Unix seconds as a date (a time of day too when the bars are intraday).
pub(super) fn date_label(secs: f64, intraday: bool) -> String {
    let format = if intraday {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    };
    chrono::DateTime::from_timestamp(secs.round() as i64, 0)
        .map_or_else(|| format!("{secs}"), |t| t.format(format).to_string())
}

/// A chart over bar times (Unix seconds) with dates on calendar boundaries.
fn time_chart<'a, 'b>(
    root: &'a Area<'b>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    y_desc: &str,
) -> Result<TimeChart<'a, 'b>, String> {
    // The plotting area's width: the canvas less the margins and the y labels.
    let width = SIZE.0 as i32 - 12 - RIGHT_MARGIN as i32 - 70;
    let axis = TimeAxis::new(x0, x1, width, DATE_PX, RIGHT_MARGIN as i32);
    let labels = axis.clone();
    let y_decimals = decimals(y1 - y0);
    let mut chart = chart_on(root, axis, y0..y1, RIGHT_MARGIN)?;
    draw_mesh(
        chart
            .configure_mesh()
            .x_desc(labels.desc.as_str())
            .y_desc(y_desc)
            .x_labels(12)
            .x_label_formatter(&|x| labels.label(*x))
            .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
            .x_label_style((super::chart::FONT, DATE_PX))
            .y_label_style((super::chart::FONT, LABEL_PX)),
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
    let keys = [
        Key::Line(GREY.stroke_width(2), "buy & hold"),
        Key::Line(BLUE_.stroke_width(2), "strategy"),
    ];
    let svg = svg(&keys, |root| {
        let mut chart = time_chart(root, (x0, x1), (y0, y1), "drawdown %")?;
        chart
            .draw_series(LineSeries::new(hold.iter().copied(), GREY.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(
                strategy.iter().copied(),
                BLUE_.stroke_width(2),
            ))
            .map_err(draw_err)?;
        Ok(())
    })?;
    let worst = |line: &[(f64, f64)]| line.iter().map(|p| p.1).fold(0.0, f64::min);
    let note = format!(
        "deepest drawdown: strategy {:.1}%, buy and hold {:.1}%",
        worst(&strategy),
        worst(&hold)
    );
    Ok(Plot { svg, note })
}

/// The strategy's and buy-and-hold's equity over the test split, from 1 at the first bar.
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
    let label = match evaluation.signal {
        Signal::Action => "strategy (action signal)",
        Signal::Price => "strategy (price signal)",
    };
    let keys = [
        Key::Line(GREY.stroke_width(2), "buy & hold"),
        Key::Line(BLUE_.stroke_width(2), label),
    ];
    let svg = svg(&keys, |root| {
        let mut chart = time_chart(root, (x0, x1), (y0, y1), "equity")?;
        chart
            .draw_series(LineSeries::new([(x0, 1.0), (x1, 1.0)], GREY.mix(0.4)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(hold, GREY.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(strategy, BLUE_.stroke_width(2)))
            .map_err(draw_err)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn equity_plots_label_dates_and_keep_the_legend_above_the_chart() {
        // 60 daily bars from 2023-11-14.
        let start = 1_699_920_000;
        let curves = EquityCurves {
            timestamps: (0..60).map(|i| start + i * 86_400).collect(),
            strategy: (0..60).map(|i| 1.0 + 0.004 * f64::from(i)).collect(),
            buy_and_hold: (0..60).map(|i| 1.0 - 0.002 * f64::from(i)).collect(),
        };
        let plot = equity_plot(&curves, &EvaluationConfig::default()).unwrap();
        // Mondays two weeks apart (a week would crowd the labels).
        for date in ["Nov 27", "Dec 11", "Dec 25", "Jan 08"] {
            assert!(plot.svg.contains(date), "{date} missing");
        }
        assert!(plot.svg.contains("date (2023-2024)"));
        // The legend sits in the strip above the chart's area (which starts 30 px down).
        let legend_y = text_y(&plot.svg, "buy &amp; hold").expect("legend text");
        assert!(legend_y < 30, "{legend_y}");
    }

    /// The `y` of the `<text>` element holding `label`.
    fn text_y(svg: &str, label: &str) -> Option<i32> {
        let at = svg.find(&format!(">\n{label}\n</text>"))?;
        let open = svg[..at].rfind("<text")?;
        let y = svg[open..at].split("y=\"").nth(1)?.split('"').next()?;
        y.parse().ok()
    }
}
