//! What every plot of the report shares: the canvas, the colours, the axis style, the value
//! ranges and the legend, drawn in a strip above the chart so that it never covers data.

use plotters::backend::SVGBackend;
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

/// A drawn plot: its SVG and a caption line about what it shows.
pub(super) struct Plot {
    pub(super) svg: String,
    pub(super) note: String,
}

pub(super) const SIZE: (u32, u32) = (480, 340);
pub(super) const BLUE_: RGBColor = RGBColor(31, 119, 180);
pub(super) const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(super) const GREEN_: RGBColor = RGBColor(44, 160, 44);
pub(super) const GREY: RGBColor = RGBColor(120, 120, 120);
pub(super) const RED_: RGBColor = RGBColor(214, 39, 40);
pub(super) const FONT: &str = "sans-serif";
/// Tick labels; the x axis of time charts uses a smaller size to fit more dates.
pub(super) const LABEL_PX: u32 = 17;
const LEGEND_PX: u32 = 15;
const LEGEND_ROW: i32 = 22;

pub(super) fn draw_err(e: impl std::fmt::Display) -> String {
    format!("plot failed: {e}")
}

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One legend entry: what its key looks like and its label.
pub(super) enum Key {
    Line(ShapeStyle, &'static str),
    Dot(RGBColor, &'static str),
    Ring(RGBColor, &'static str),
    Owned(ShapeStyle, String),
}

impl Key {
    fn label(&self) -> &str {
        match self {
            Key::Line(_, l) | Key::Dot(_, l) | Key::Ring(_, l) => l,
            Key::Owned(_, l) => l,
        }
    }
}

/// Width of `text` in pixels at `px`, estimated (the browser lays the text out): about 0.6
/// of the font size per character in a sans-serif face.
pub(super) fn text_px(text: &str, px: u32) -> i32 {
    (text.chars().count() as f64 * 0.6 * f64::from(px)).ceil() as i32
}

/// The legend's entries laid out left to right, wrapped to the canvas: `(row, x)` each.
fn legend_layout(keys: &[Key]) -> Vec<(i32, i32)> {
    let (mut row, mut x) = (0, 12);
    keys.iter()
        .map(|k| {
            let width = 24 + text_px(k.label(), LEGEND_PX) + 18;
            if x > 12 && x + width > SIZE.0 as i32 - 8 {
                row += 1;
                x = 12;
            }
            let at = (row, x);
            x += width;
            at
        })
        .collect()
}

/// A plot's SVG: a white canvas of [`SIZE`], the legend of `keys` in a strip on top and
/// the rest for `draw` to chart on.
pub(super) fn svg(
    keys: &[Key],
    draw: impl FnOnce(&Area) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let layout = legend_layout(keys);
        let rows = layout.last().map_or(0, |(r, _)| r + 1);
        let strip = if rows == 0 { 8 } else { rows * LEGEND_ROW + 8 };
        let (top, chart) = root.split_vertically(strip);
        for (key, (row, x)) in keys.iter().zip(layout) {
            let y = 6 + row * LEGEND_ROW + LEGEND_ROW / 2;
            match key {
                Key::Line(style, _) | Key::Owned(style, _) => top
                    .draw(&PathElement::new(vec![(x, y), (x + 18, y)], *style))
                    .map_err(draw_err)?,
                Key::Dot(color, _) => top
                    .draw(&Circle::new((x + 9, y), 4, color.filled()))
                    .map_err(draw_err)?,
                Key::Ring(color, _) => top
                    .draw(&Circle::new((x + 9, y), 5, color.stroke_width(2)))
                    .map_err(draw_err)?,
            }
            let style = TextStyle::from((FONT, LEGEND_PX).into_font()).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                ),
            );
            top.draw_text(key.label(), &style, (x + 24, y))
                .map_err(draw_err)?;
        }
        draw(&chart)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Draws `mesh` in the style every plot shares: label fonts, no light grid lines.
pub(super) fn draw_mesh<X, Y>(
    mesh: &mut MeshStyle<'_, '_, X, Y, SVGBackend<'_>>,
) -> Result<(), String>
where
    X: Ranged + ValueFormatter<<X as Ranged>::ValueType>,
    Y: Ranged + ValueFormatter<<Y as Ranged>::ValueType>,
{
    mesh.label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)
}

/// `[min, max]` of the values widened by 5% each side (a unit around a single value), so
/// no point sits on the frame and a flat series still has a range.
pub(super) fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
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
pub(super) fn decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    (-(span / 20.0).log10()).ceil().clamp(0.0, 8.0) as usize
}

/// A chart of the report over axes `X` and `Y`.
pub(super) type Chart<'a, 'b, X, Y> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// A chart on `area` over `x` and `y`, with the margins every plot uses.
pub(super) fn chart_on<'a, 'b, X: AsRangedCoord, Y: AsRangedCoord>(
    area: &'a Area<'b>,
    x: X,
    y: Y,
    right_margin: u32,
) -> Result<Chart<'a, 'b, X, Y>, String> {
    ChartBuilder::on(area)
        .margin(12)
        .margin_top(4)
        .margin_right(right_margin)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_have_the_decimals_their_steps_need() {
        // An equity axis from 0.95 to 1.3: ticks 0.05 apart need two decimals.
        assert_eq!(decimals(0.35), 2);
        assert_eq!(decimals(1.0), 2);
        assert_eq!(decimals(40.0), 0);
        assert_eq!(decimals(f64::NAN), 2);
    }

    #[test]
    fn the_legend_wraps_to_the_canvas_and_sits_above_the_chart() {
        let keys: Vec<Key> = (0..6)
            .map(|i| Key::Owned(BLUE_.stroke_width(2), format!("a long series name {i}")))
            .collect();
        let layout = legend_layout(&keys);
        assert_eq!(layout[0], (0, 12));
        assert!(layout.iter().any(|(row, _)| *row > 0), "{layout:?}");
        for (key, (_, x)) in keys.iter().zip(&layout) {
            assert!(
                x + 24 + text_px(key.label(), LEGEND_PX) <= SIZE.0 as i32,
                "{layout:?}"
            );
        }
        let svg = svg(&keys, |_| Ok(())).unwrap();
        assert!(svg.contains("a long series name 5"));
    }
}
