//! Charts of one report (and, through [`crate::harness::compare`], of several): latency
//! over time, throughput against the quota, 429s over time, HDR-style latency and limiter
//! wait distributions and per-limiter comparison bars — so a run answers "which strategy,
//! which settings?" at a glance.
//!
//! Every chart is written as SVG (inlined by `index.html`) and PNG, 1200×700 px, drawn by
//! plotters' pure-Rust backends. Text in PNGs is rasterised with the DejaVu Sans font
//! bundled in `assets/` (no system fonts, no system libraries). A limiter keeps one colour
//! across all charts of a report; the `none` baseline is grey.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use super::report_files::ReportData;

pub(crate) mod build;
pub(crate) mod figure;
pub(crate) mod style;

use figure::{BarFigure, Figure, LineFigure, Target};

/// Width and height of every chart, px.
pub const CHART_SIZE: (u32, u32) = (1200, 700);

/// The bundled font (DejaVu Sans; licence in `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// A chart could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The bundled font was rejected by the glyph rasteriser.
    #[error("the bundled font assets/DejaVuSans.ttf cannot be loaded")]
    Font,
    /// plotters failed while drawing.
    #[error("cannot draw chart {chart}: {message}")]
    Draw {
        /// The chart's file stem.
        chart: String,
        /// plotters' message.
        message: String,
    },
    /// PNG encoding failed.
    #[error("cannot encode {chart}.png: {source}")]
    Png {
        /// The chart's file stem.
        chart: String,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// Writing a chart file or creating its directory failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The charts of one report, in the order they are written and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChartKind {
    /// p50/p90/p99 corrected latency per second, one panel per percentile, a line per limiter.
    LatencyOverTime,
    /// Tokens/min used and charged per limiter against the quota's TPM.
    ThroughputTokens,
    /// Requests/s sent and completed per limiter against the quota's RPM/60.
    ThroughputRequests,
    /// 429 responses per second per limiter.
    ThrottledPerSecond,
    /// Corrected latency by percentile (HDR style: x = 1/(1−p), log scale).
    LatencyDistribution,
    /// Limiter wait by percentile (HDR style).
    LimiterWaitDistribution,
    /// Bars per limiter: quota utilisation, throttled ratio, p99 latency.
    Comparison,
}

impl ChartKind {
    /// Every chart of a report, in display order.
    pub const ALL: [ChartKind; 7] = [
        ChartKind::LatencyOverTime,
        ChartKind::ThroughputTokens,
        ChartKind::ThroughputRequests,
        ChartKind::ThrottledPerSecond,
        ChartKind::LatencyDistribution,
        ChartKind::LimiterWaitDistribution,
        ChartKind::Comparison,
    ];

    /// File stem under `charts/` (`.svg` and `.png` are appended).
    pub fn file_stem(self) -> &'static str {
        match self {
            ChartKind::LatencyOverTime => "latency_over_time",
            ChartKind::ThroughputTokens => "throughput_tokens",
            ChartKind::ThroughputRequests => "throughput_requests",
            ChartKind::ThrottledPerSecond => "throttled_per_second",
            ChartKind::LatencyDistribution => "latency_distribution",
            ChartKind::LimiterWaitDistribution => "limiter_wait_distribution",
            ChartKind::Comparison => "comparison",
        }
    }

    /// A human title for headings.
    pub fn title(self) -> &'static str {
        match self {
            ChartKind::LatencyOverTime => "Latency percentiles over time",
            ChartKind::ThroughputTokens => "Token throughput against the quota",
            ChartKind::ThroughputRequests => "Request throughput against the quota",
            ChartKind::ThrottledPerSecond => "429 responses per second",
            ChartKind::LatencyDistribution => "Latency distribution",
            ChartKind::LimiterWaitDistribution => "Limiter wait distribution",
            ChartKind::Comparison => "Limiters compared",
        }
    }
}

/// A chart rendered as an SVG document.
#[derive(Debug, Clone)]
pub struct SvgChart {
    /// Which chart.
    pub kind: ChartKind,
    /// The `<svg …>…</svg>` document (no XML declaration), `CHART_SIZE` px.
    pub svg: String,
}

/// A figure of either shape.
#[derive(Debug, Clone)]
pub(crate) enum AnyFigure {
    /// Stacked line panels.
    Lines(LineFigure),
    /// Side-by-side bar panels.
    Bars(BarFigure),
}

impl Figure for AnyFigure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &plotters::drawing::DrawingArea<DB, plotters::coord::Shift>,
        target: Target,
    ) -> Result<(), figure::DrawError<DB>> {
        match self {
            AnyFigure::Lines(f) => f.draw(root, target),
            AnyFigure::Bars(f) => f.draw(root, target),
        }
    }
}

/// Registers the bundled font with plotters (once per process).
pub(crate) fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

fn draw_error(chart: &str, e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw {
        chart: chart.to_owned(),
        message: e.to_string(),
    }
}

/// Renders `figure` as an SVG document. The font must be registered.
pub(crate) fn figure_svg(figure: &impl Figure, stem: &str) -> Result<String, ChartError> {
    let mut svg = String::with_capacity(1 << 16);
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        figure
            .draw(&root, Target::Svg)
            .map_err(|e| draw_error(stem, e))?;
    }
    Ok(svg)
}

/// Renders `figure` as a PNG file's bytes. The font must be registered.
pub(crate) fn figure_png(figure: &impl Figure, stem: &str) -> Result<Vec<u8>, ChartError> {
    let (w, h) = CHART_SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, CHART_SIZE).into_drawing_area();
        figure
            .draw(&root, Target::Bitmap)
            .map_err(|e| draw_error(stem, e))?;
    }
    let png_error = |source| ChartError::Png {
        chart: stem.to_owned(),
        source,
    };
    let mut bytes = Vec::with_capacity(1 << 17);
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&rgb).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
    }
    Ok(bytes)
}

fn write_file(path: PathBuf, bytes: &[u8]) -> Result<PathBuf, ChartError> {
    std::fs::write(&path, bytes).map_err(|source| ChartError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes `figure` as `<dir>/<stem>.svg` and `<dir>/<stem>.png` (creating `dir`); returns
/// both paths, SVG first.
pub(crate) fn write_figure(
    figure: &impl Figure,
    dir: &Path,
    stem: &str,
) -> Result<[PathBuf; 2], ChartError> {
    ensure_font()?;
    std::fs::create_dir_all(dir).map_err(|source| ChartError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let svg = figure_svg(figure, stem)?;
    let png = figure_png(figure, stem)?;
    Ok([
        write_file(dir.join(format!("{stem}.svg")), svg.as_bytes())?,
        write_file(dir.join(format!("{stem}.png")), &png)?,
    ])
}

/// The figures of a report, in [`ChartKind::ALL`] order.
fn figures(report: &ReportData) -> Vec<(ChartKind, AnyFigure)> {
    let palette = build::palette(report);
    ChartKind::ALL
        .iter()
        .map(|&kind| {
            let figure = match kind {
                ChartKind::LatencyOverTime => {
                    AnyFigure::Lines(build::latency_over_time(report, &palette))
                }
                ChartKind::ThroughputTokens => {
                    AnyFigure::Lines(build::throughput_tokens(report, &palette))
                }
                ChartKind::ThroughputRequests => {
                    AnyFigure::Lines(build::throughput_requests(report, &palette))
                }
                ChartKind::ThrottledPerSecond => {
                    AnyFigure::Lines(build::throttled_per_second(report, &palette))
                }
                ChartKind::LatencyDistribution => {
                    AnyFigure::Lines(build::latency_distribution(report, &palette))
                }
                ChartKind::LimiterWaitDistribution => {
                    AnyFigure::Lines(build::limiter_wait_distribution(report, &palette))
                }
                ChartKind::Comparison => AnyFigure::Bars(build::comparison(report, &palette)),
            };
            (kind, figure)
        })
        .collect()
}

/// Renders every chart of `report` as an SVG document (for inlining), in
/// [`ChartKind::ALL`] order. Writes nothing.
pub fn render_svgs(report: &ReportData) -> Result<Vec<SvgChart>, ChartError> {
    ensure_font()?;
    figures(report)
        .into_iter()
        .map(|(kind, figure)| {
            Ok(SvgChart {
                kind,
                svg: figure_svg(&figure, kind.file_stem())?,
            })
        })
        .collect()
}

/// Writes every chart of `report` to `<out_dir>/charts/<stem>.svg` and `.png` (creating the
/// directory, replacing older files); returns the paths written, SVG before PNG, in
/// [`ChartKind::ALL`] order.
pub fn render_charts(report: &ReportData, out_dir: &Path) -> Result<Vec<PathBuf>, ChartError> {
    let dir = out_dir.join("charts");
    let mut written = Vec::with_capacity(ChartKind::ALL.len() * 2);
    for (kind, figure) in figures(report) {
        written.extend(write_figure(&figure, &dir, kind.file_stem())?);
    }
    Ok(written)
}
