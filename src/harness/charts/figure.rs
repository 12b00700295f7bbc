//! Backend-independent chart descriptions (line panels and bar panels) and the one place
//! that turns them into plotters drawing calls, so SVG and PNG (and report and comparison
//! charts) come out of the same code.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{nice_ticks, tint, REFERENCE_COLOUR};

/// A plotters drawing error for backend `DB`.
pub(crate) type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;

/// What a figure is drawn for: lines are stroked differently (see [`LineStroke`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// An SVG document: the viewer joins thick polylines itself.
    Svg,
    /// A raster image: plotters joins thick polylines with unbounded miters, which spike
    /// far out of the plot at sharp turns, so thick lines are drawn segment by segment.
    Bitmap,
}

/// Something that can draw itself on any plotters backend.
pub(crate) trait Figure {
    /// Draws the whole figure on `root` (which it fills), for `target`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        target: Target,
    ) -> Result<(), DrawError<DB>>;
}

/// Approximate width of a line panel's plot area, px.
const PLOT_WIDTH_PX: f64 = 1080.0;

const TITLE_FONT: u32 = 24;
const CAPTION_FONT: u32 = 17;
const LABEL_FONT: u32 = 14;
const DESC_FONT: u32 = 15;

/// A linear f64 axis whose ticks (labels and grid lines) are exactly the given values.
#[derive(Debug, Clone)]
struct TickedAxis {
    range: (f64, f64),
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = self.range;
        let span = if hi > lo { hi - lo } else { 1.0 };
        let frac = (value - lo) / span;
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.0..self.range.1
    }
}

/// How x values are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XLabels {
    /// Plain numbers (seconds).
    Plain,
    /// HDR percentile axis: x = log10(1 / (1 − p)), labelled as the percentile.
    Percentile,
}

/// How y values are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum YLabels {
    /// Short numbers: 950, 12k, 1.2M.
    Short,
    /// Percentages (values already in %).
    Percent,
}

impl YLabels {
    /// A value written on a bar: like the axis, but whole numbers below 100 000 in full.
    pub(crate) fn value_label(self, v: f64) -> String {
        match self {
            YLabels::Short if (10.0..1e5).contains(&v.abs()) => format!("{v:.0}"),
            other => other.format(v),
        }
    }

    pub(crate) fn format(self, v: f64) -> String {
        match self {
            YLabels::Short => super::style::short_number(v),
            YLabels::Percent => {
                if v.abs() >= 10.0 || v == 0.0 {
                    format!("{v:.0} %")
                } else if v.abs() >= 1.0 {
                    format!("{v:.1} %")
                } else {
                    format!("{v:.2} %")
                }
            }
        }
    }
}

/// The shared x axis of a [`LineFigure`].
#[derive(Debug, Clone)]
pub(crate) struct XAxis {
    /// Axis description with unit.
    pub desc: String,
    /// Visible range.
    pub range: (f64, f64),
    /// Tick positions (labelled and gridded).
    pub ticks: Vec<f64>,
    /// Label style.
    pub labels: XLabels,
}

impl XAxis {
    /// A time axis in seconds over `0..duration_s`.
    pub(crate) fn seconds(duration_s: f64) -> Self {
        let hi = duration_s.max(1.0);
        Self {
            desc: "time since run start (s)".to_owned(),
            range: (0.0, hi),
            ticks: nice_ticks(0.0, hi, 12),
            labels: XLabels::Plain,
        }
    }
}

/// One labelled line; broken into segments where data is missing.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Legend text (`None`: not in the legend).
    pub label: Option<String>,
    /// Stroke colour.
    pub colour: RGBColor,
    /// Stroke width, px.
    pub width: u32,
    /// Contiguous runs of points.
    pub segments: Vec<Vec<(f64, f64)>>,
    /// Whether to mark every point with a dot.
    pub markers: bool,
}

/// A horizontal dashed reference line (a quota).
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    /// Legend text.
    pub label: String,
    /// y value.
    pub y: f64,
}

/// One plot area of a [`LineFigure`].
#[derive(Debug, Clone)]
pub(crate) struct LinePanel {
    /// Text above the plot.
    pub caption: String,
    /// y axis description with unit.
    pub y_desc: String,
    /// y label style.
    pub y_labels: YLabels,
    /// Lines, drawn in order.
    pub lines: Vec<Line>,
    /// Reference lines.
    pub references: Vec<Reference>,
}

impl LinePanel {
    fn y_max(&self) -> f64 {
        let data = self
            .lines
            .iter()
            .flat_map(|l| l.segments.iter().flatten())
            .map(|p| p.1);
        let refs = self.references.iter().map(|r| r.y);
        let max = data
            .chain(refs)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        if max > 0.0 {
            max * 1.08
        } else {
            1.0
        }
    }
}

/// Panels of lines stacked vertically over one x axis.
#[derive(Debug, Clone)]
pub(crate) struct LineFigure {
    /// Title of the whole figure.
    pub title: String,
    /// The x axis shared by all panels.
    pub x: XAxis,
    /// Panels, top to bottom.
    pub panels: Vec<LinePanel>,
}

impl Figure for LineFigure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        target: Target,
    ) -> Result<(), DrawError<DB>> {
        root.fill(&WHITE)?;
        let body = root.titled(&self.title, ("sans-serif", TITLE_FONT))?;
        let areas = body.split_evenly((self.panels.len().max(1), 1));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_line_panel(&self.x, panel, area, target)?;
        }
        root.present()
    }
}

/// Stroke width of `line` on axis `x`: 1 px when its points are closer than 3 px apart
/// (a thick zigzag there is a solid blob), else the line's own width.
fn stroke_width(x: &XAxis, line: &Line) -> u32 {
    let points: usize = line.segments.iter().map(Vec::len).sum();
    let xs = line.segments.iter().flatten().map(|p| p.0);
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let range = x.range.1 - x.range.0;
    if points < 2 || range <= 0.0 {
        return line.width;
    }
    let px_per_point = PLOT_WIDTH_PX * (hi - lo) / range / points as f64;
    if px_per_point < 3.0 {
        1
    } else {
        line.width
    }
}

fn draw_line_panel<DB: DrawingBackend>(
    x: &XAxis,
    panel: &LinePanel,
    area: &DrawingArea<DB, Shift>,
    target: Target,
) -> Result<(), DrawError<DB>> {
    let (x0, x1) = x.range;
    let y1 = panel.y_max();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, ("sans-serif", CAPTION_FONT))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .build_cartesian_2d(
            TickedAxis {
                range: (x0, x1),
                ticks: x.ticks.clone(),
            },
            0.0..y1,
        )?;
    let x_fmt = |v: &f64| match x.labels {
        XLabels::Plain if v.fract() == 0.0 && v.abs() < 1e4 => format!("{v:.0}"),
        XLabels::Plain => super::style::short_number(*v),
        XLabels::Percentile => super::style::x_to_percentile_label(*v),
    };
    let y_fmt = |v: &f64| panel.y_labels.format(*v);
    chart
        .configure_mesh()
        .x_desc(x.desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_labels(6)
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    let mut legend = false;
    for line in &panel.lines {
        let width = stroke_width(x, line);
        let style = ShapeStyle::from(&line.colour).stroke_width(width);
        let mut labelled = line.label.is_none();
        for segment in &line.segments {
            let anno = if width > 1 && target == Target::Bitmap {
                // One element per pair of points: no joins, so no miter spikes.
                let pairs = segment
                    .windows(2)
                    .map(|w| PathElement::new(w.to_vec(), style));
                let single = (segment.len() == 1).then(|| PathElement::new(segment.clone(), style));
                chart.draw_series(pairs.chain(single))?
            } else {
                chart.draw_series(LineSeries::new(segment.iter().copied(), style))?
            };
            if !labelled {
                labelled = true;
                legend = true;
                attach_legend(anno, line);
            }
            if line.markers {
                chart.draw_series(
                    segment
                        .iter()
                        .map(|&p| Circle::new(p, line.width + 2, line.colour.filled())),
                )?;
            }
        }
        if !labelled {
            // No data at all: keep the limiter in the legend so colours stay readable.
            legend = true;
            let anno = chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?;
            attach_legend(anno, line);
        }
    }
    for r in &panel.references {
        let style = ShapeStyle::from(&REFERENCE_COLOUR).stroke_width(2);
        let anno = chart.draw_series(DashedLineSeries::new(
            vec![(x0, r.y), (x1, r.y)],
            10,
            6,
            style,
        ))?;
        anno.label(r.label.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], style));
        legend = true;
    }
    if legend {
        chart
            .configure_series_labels()
            // Percentile curves rise to the right: their lower right corner is empty.
            .position(match x.labels {
                XLabels::Plain => SeriesLabelPosition::UpperRight,
                XLabels::Percentile => SeriesLabelPosition::LowerRight,
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", LABEL_FONT))
            .draw()?;
    }
    Ok(())
}

fn attach_legend<DB: DrawingBackend>(anno: &mut plotters::chart::SeriesAnno<'_, DB>, line: &Line) {
    let style = ShapeStyle::from(&line.colour).stroke_width(line.width.max(3));
    anno.label(line.label.clone().unwrap_or_default())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
}

/// One bar.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// Value in display units (`None`: not available, shown as "n/a").
    pub value: Option<f64>,
    /// Fill colour.
    pub colour: RGBColor,
    /// Short tag written at the bar's foot (which report it belongs to), if any.
    pub tag: Option<String>,
}

/// Bars of one category (one limiter), side by side.
#[derive(Debug, Clone)]
pub(crate) struct BarGroup {
    /// Category label on the x axis.
    pub label: String,
    /// Bars in the group.
    pub bars: Vec<Bar>,
}

/// One bar chart panel.
#[derive(Debug, Clone)]
pub(crate) struct BarPanel {
    /// Text above the plot.
    pub caption: String,
    /// y axis description with unit.
    pub y_desc: String,
    /// y label style (values are in display units).
    pub y_labels: YLabels,
    /// Groups along the x axis.
    pub groups: Vec<BarGroup>,
    /// A dashed reference value (e.g. 100 % of quota).
    pub reference: Option<f64>,
}

/// Bar panels side by side.
#[derive(Debug, Clone)]
pub(crate) struct BarFigure {
    /// Title of the whole figure.
    pub title: String,
    /// Panels, left to right.
    pub panels: Vec<BarPanel>,
}

impl Figure for BarFigure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _target: Target,
    ) -> Result<(), DrawError<DB>> {
        root.fill(&WHITE)?;
        let body = root.titled(&self.title, ("sans-serif", TITLE_FONT))?;
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_bar_panel(panel, area)?;
        }
        root.present()
    }
}

fn draw_bar_panel<DB: DrawingBackend>(
    panel: &BarPanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError<DB>> {
    let n = panel.groups.len().max(1);
    let max = panel
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().filter_map(|b| b.value))
        .chain(panel.reference)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y1 = if max > 0.0 { max * 1.15 } else { 1.0 };
    let x_ticks: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, ("sans-serif", CAPTION_FONT))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            TickedAxis {
                range: (-0.5, n as f64 - 0.5),
                ticks: x_ticks,
            },
            0.0..y1,
        )?;
    // Long limiter names are cut so that neighbouring labels do not overlap.
    let max_chars = (area.dim_in_pixel().0 as usize / n / 8).max(4);
    let x_fmt = |v: &f64| {
        let i = v.round();
        if i < 0.0 || (v - i).abs() > 1e-6 {
            return String::new();
        }
        panel
            .groups
            .get(i as usize)
            .map(|g| shorten(&g.label, max_chars))
            .unwrap_or_default()
    };
    let y_fmt = |v: &f64| panel.y_labels.format(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(panel.y_desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_labels(6)
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    let value_font = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let tag_font = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (gi, group) in panel.groups.iter().enumerate() {
        let k = group.bars.len().max(1) as f64;
        let width = 0.8 / k;
        for (bi, bar) in group.bars.iter().enumerate() {
            let left = gi as f64 - 0.4 + bi as f64 * width;
            let (l, r) = (left + width * 0.06, left + width * 0.94);
            let centre = left + width / 2.0;
            match bar.value.filter(|v| v.is_finite()) {
                Some(v) => {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(l, 0.0), (r, v.max(0.0))],
                        bar.colour.filled(),
                    )))?;
                    // Kept above the tag line so small values stay readable.
                    let label_y = if bar.tag.is_some() {
                        v.max(y1 * 0.04)
                    } else {
                        v.max(0.0)
                    };
                    chart.draw_series(std::iter::once(Text::new(
                        panel.y_labels.value_label(v),
                        (centre, label_y),
                        value_font.clone(),
                    )))?;
                }
                None => {
                    let label_y = if bar.tag.is_some() { y1 * 0.04 } else { 0.0 };
                    chart.draw_series(std::iter::once(Text::new(
                        "n/a".to_owned(),
                        (centre, label_y),
                        value_font.clone(),
                    )))?;
                }
            }
            if let Some(tag) = &bar.tag {
                // The tag sits just above the axis, inside the bar.
                chart.draw_series(std::iter::once(Text::new(
                    tag.clone(),
                    (centre, y1 * 0.005),
                    tag_font.clone(),
                )))?;
            }
        }
    }
    if let Some(r) = panel.reference {
        let style = ShapeStyle::from(&tint(REFERENCE_COLOUR, 0.8)).stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            vec![(-0.5, r), (n as f64 - 0.5, r)],
            10,
            6,
            style,
        ))?;
    }
    Ok(())
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
