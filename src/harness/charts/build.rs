//! Turns one report's data into chart descriptions ([`LineFigure`], [`BarFigure`]): which
//! series go in which panel, units, smoothing and labels. No drawing happens here.

use crate::harness::report_files::{LimiterSeries, ReportData};
use crate::harness::summary::LimiterSummary;

use super::figure::{
    Bar, BarFigure, BarGroup, BarPanel, Line, LineFigure, LinePanel, Reference, XAxis, XLabels,
    YLabels,
};
use super::style::{percentile_ticks, percentile_to_x, short_number, Palette};

/// The palette of a report: limiters in summary order.
pub(crate) fn palette(report: &ReportData) -> Palette {
    Palette::new(
        report
            .summary
            .limiters
            .iter()
            .map(|l| (l.name.as_str(), l.strategy.as_str())),
    )
}

/// Seconds of the trailing moving average used for throughput lines: about 1/30 of the
/// run, between 1 s (no smoothing) and 60 s (the quota's own window).
pub(crate) fn smoothing_window_s(duration_s: f64) -> usize {
    ((duration_s / 30.0).floor() as usize).clamp(1, 60)
}

/// Trailing mean over `window` values (fewer at the start).
fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

/// Points of a per-second counter, scaled by `scale` and smoothed over `window` seconds.
fn counter_points(
    series: &LimiterSeries,
    values: &[u64],
    scale: f64,
    window: usize,
) -> Vec<Vec<(f64, f64)>> {
    let raw: Vec<f64> = values.iter().map(|&v| v as f64 * scale).collect();
    let smooth = moving_average(&raw, window);
    let points: Vec<(f64, f64)> = series
        .second
        .iter()
        .zip(smooth)
        .map(|(&s, v)| (s as f64, v))
        .collect();
    if points.is_empty() {
        Vec::new()
    } else {
        vec![points]
    }
}

/// Runs of present values; a missing value or a skipped second breaks the line.
fn gauge_segments(seconds: &[u64], values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    let mut previous: Option<u64> = None;
    for (&s, v) in seconds.iter().zip(values) {
        let contiguous = previous.is_some_and(|p| p + 1 == s);
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                if !contiguous && !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
                current.push((s as f64, v));
            }
            None => {
                if !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
            }
        }
        previous = Some(s);
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// An HDR-style curve: from sorted samples when available (20 points per decade of
/// 1/(1−p), as far as the sample count supports), else the summary's `[percentile, ms]`
/// points (the 100 % point cannot be placed on this axis and is left out). Returns the
/// points and whether they are sparse (worth marking).
pub(crate) fn hdr_points(samples: Option<&[f64]>, summary: &[[f64; 2]]) -> (Vec<(f64, f64)>, bool) {
    if let Some(sorted) = samples.filter(|s| !s.is_empty()) {
        let n = sorted.len();
        let max_x = (n as f64).log10();
        let mut points = Vec::new();
        let mut k = 0u32;
        loop {
            let x = f64::from(k) / 20.0;
            if x > max_x + 1e-12 {
                break;
            }
            let p = 1.0 - 10f64.powf(-x);
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            // (less a hair, so that 0.999 × 1000 computed as 999.0000000001 still ranks 999).
            let rank = ((p * n as f64 - 1e-9).ceil() as usize).clamp(1, n);
            points.push((x, sorted[rank - 1]));
            k += 1;
        }
        return (points, false);
    }
    let points = summary
        .iter()
        .filter_map(|&[p, ms]| percentile_to_x(p).map(|x| (x, ms)))
        .filter(|(x, ms)| x.is_finite() && ms.is_finite())
        .collect();
    (points, true)
}

fn line(label: String, colour: plotters::style::RGBColor, segments: Vec<Vec<(f64, f64)>>) -> Line {
    Line {
        label: Some(label),
        colour,
        width: 2,
        segments,
        markers: false,
    }
}

fn subtitle(report: &ReportData) -> String {
    let s = &report.summary;
    format!("{} ({}, seed {})", s.scenario, s.mode, s.seed)
}

/// p50 / p90 / p99 corrected latency per second, one panel per percentile.
pub(crate) fn latency_over_time(report: &ReportData, palette: &Palette) -> LineFigure {
    type Pick = fn(&LimiterSeries) -> &[Option<f64>];
    let percentiles: [(&str, Pick); 3] = [
        ("p50", |s| &s.latency_p50_ms),
        ("p90", |s| &s.latency_p90_ms),
        ("p99", |s| &s.latency_p99_ms),
    ];
    let panels = percentiles
        .iter()
        .map(|(name, pick)| LinePanel {
            caption: format!("{name} corrected latency of requests completed in each second"),
            y_desc: format!("{name} latency (ms)"),
            y_labels: YLabels::Short,
            lines: report
                .timeseries
                .iter()
                .map(|s| {
                    line(
                        s.limiter.clone(),
                        palette.colour(&s.limiter),
                        gauge_segments(&s.second, pick(s)),
                    )
                })
                .collect(),
            references: Vec::new(),
        })
        .collect();
    LineFigure {
        title: format!("Latency over time: {}", subtitle(report)),
        x: XAxis::seconds(report.duration_s()),
        panels,
    }
}

fn smoothing_note(window: usize) -> String {
    if window > 1 {
        format!(" ({window} s moving average)")
    } else {
        String::new()
    }
}

/// Tokens per minute used and charged, against the quota's TPM.
pub(crate) fn throughput_tokens(report: &ReportData, palette: &Palette) -> LineFigure {
    let window = smoothing_window_s(report.duration_s());
    let tpm = report.summary.quota.as_ref().and_then(|q| q.tpm);
    let references: Vec<Reference> = tpm
        .map(|t| Reference {
            label: format!("quota {} TPM", short_number(t as f64)),
            y: t as f64,
        })
        .into_iter()
        .collect();
    type Pick = fn(&LimiterSeries) -> &[u64];
    let kinds: [(&str, Pick); 2] = [
        (
            "tokens used (prompt + completion of completed requests)",
            |s| &s.tokens_used,
        ),
        ("tokens charged by the server at admission", |s| {
            &s.tokens_charged
        }),
    ];
    let panels = kinds
        .iter()
        .map(|(caption, pick)| LinePanel {
            caption: format!("{caption}{}", smoothing_note(window)),
            y_desc: "tokens/min".to_owned(),
            y_labels: YLabels::Short,
            lines: report
                .timeseries
                .iter()
                .map(|s| {
                    line(
                        s.limiter.clone(),
                        palette.colour(&s.limiter),
                        counter_points(s, pick(s), 60.0, window),
                    )
                })
                .collect(),
            references: references.clone(),
        })
        .collect();
    LineFigure {
        title: format!("Token throughput vs quota: {}", subtitle(report)),
        x: XAxis::seconds(report.duration_s()),
        panels,
    }
}

/// Requests per second sent and completed, against the quota's RPM / 60.
pub(crate) fn throughput_requests(report: &ReportData, palette: &Palette) -> LineFigure {
    let window = smoothing_window_s(report.duration_s());
    let rpm = report.summary.quota.as_ref().and_then(|q| q.rpm);
    let references: Vec<Reference> = rpm
        .map(|r| Reference {
            label: format!("quota {r} RPM = {}/s", short_number(r as f64 / 60.0)),
            y: r as f64 / 60.0,
        })
        .into_iter()
        .collect();
    type Pick = fn(&LimiterSeries) -> &[u64];
    let kinds: [(&str, Pick); 2] = [
        ("requests sent (first attempts)", |s| &s.sent),
        ("requests completed successfully", |s| &s.completed),
    ];
    let panels = kinds
        .iter()
        .map(|(caption, pick)| LinePanel {
            caption: format!("{caption}{}", smoothing_note(window)),
            y_desc: "requests/s".to_owned(),
            y_labels: YLabels::Short,
            lines: report
                .timeseries
                .iter()
                .map(|s| {
                    line(
                        s.limiter.clone(),
                        palette.colour(&s.limiter),
                        counter_points(s, pick(s), 1.0, window),
                    )
                })
                .collect(),
            references: references.clone(),
        })
        .collect();
    LineFigure {
        title: format!("Request throughput vs quota: {}", subtitle(report)),
        x: XAxis::seconds(report.duration_s()),
        panels,
    }
}

/// 429 responses received per second, per limiter (smoothed like throughput on long runs).
pub(crate) fn throttled_per_second(report: &ReportData, palette: &Palette) -> LineFigure {
    let window = smoothing_window_s(report.duration_s());
    let lines = report
        .timeseries
        .iter()
        .map(|s| {
            let total: u64 = s.throttled.iter().sum();
            line(
                format!("{} ({total} total)", s.limiter),
                palette.colour(&s.limiter),
                counter_points(s, &s.throttled, 1.0, window),
            )
        })
        .collect();
    LineFigure {
        title: format!("429 responses over time: {}", subtitle(report)),
        x: XAxis::seconds(report.duration_s()),
        panels: vec![LinePanel {
            caption: format!(
                "429 responses received in each second (every attempt){}",
                smoothing_note(window)
            ),
            y_desc: "429 responses/s".to_owned(),
            y_labels: YLabels::Short,
            lines,
            references: Vec::new(),
        }],
    }
}

/// An HDR percentile axis wide enough for `lines`.
pub(crate) fn percentile_axis(lines: &[Line]) -> XAxis {
    let max_x = lines
        .iter()
        .flat_map(|l| l.segments.iter().flatten())
        .map(|p| p.0)
        .fold(1.0, f64::max)
        .ceil();
    XAxis {
        desc: "percentile (axis: 1 / (1 − p), log scale)".to_owned(),
        range: (0.0, max_x),
        ticks: percentile_ticks(max_x),
        labels: XLabels::Percentile,
    }
}

/// A line of an HDR chart for one limiter.
pub(crate) fn hdr_line(
    label: String,
    colour: plotters::style::RGBColor,
    samples: Option<&[f64]>,
    summary: &[[f64; 2]],
) -> Line {
    let (points, sparse) = hdr_points(samples, summary);
    Line {
        label: Some(label),
        colour,
        width: 2,
        segments: if points.is_empty() {
            Vec::new()
        } else {
            vec![points]
        },
        markers: sparse,
    }
}

fn distribution_figure(
    report: &ReportData,
    palette: &Palette,
    what: &str,
    y_desc: &str,
    pick: fn(&LimiterSummary) -> &[[f64; 2]],
    pick_samples: fn(&crate::harness::report_files::LimiterSamples) -> &[f64],
) -> LineFigure {
    let lines: Vec<Line> = report
        .summary
        .limiters
        .iter()
        .map(|l| {
            hdr_line(
                l.name.clone(),
                palette.colour(&l.name),
                report.samples(&l.name).map(pick_samples),
                pick(l),
            )
        })
        .collect();
    let source = if report.samples.is_some() {
        "every request (requests.csv)"
    } else {
        "summary percentiles (dots)"
    };
    LineFigure {
        title: format!("{what} distribution: {}", subtitle(report)),
        x: percentile_axis(&lines),
        panels: vec![LinePanel {
            caption: format!("{what} by percentile, from {source}"),
            y_desc: y_desc.to_owned(),
            y_labels: YLabels::Short,
            lines,
            references: Vec::new(),
        }],
    }
}

/// Corrected latency by percentile (successful requests), HDR style.
pub(crate) fn latency_distribution(report: &ReportData, palette: &Palette) -> LineFigure {
    distribution_figure(
        report,
        palette,
        "Corrected latency",
        "latency from intended start (ms)",
        |l| &l.latency_distribution,
        |s| &s.latency_ms,
    )
}

/// Limiter wait by percentile (every request), HDR style.
pub(crate) fn limiter_wait_distribution(report: &ReportData, palette: &Palette) -> LineFigure {
    distribution_figure(
        report,
        palette,
        "Limiter wait",
        "time waiting in the limiter (ms)",
        |l| &l.limiter_wait_distribution,
        |s| &s.limiter_wait_ms,
    )
}

/// One bar panel of a per-limiter metric; `value` gives display units.
pub(crate) fn metric_panel(
    caption: &str,
    y_desc: &str,
    y_labels: YLabels,
    reference: Option<f64>,
    groups: Vec<BarGroup>,
) -> BarPanel {
    BarPanel {
        caption: caption.to_owned(),
        y_desc: y_desc.to_owned(),
        y_labels,
        groups,
        reference,
    }
}

/// Quota utilisation (or goodput when the quota is unknown), throttled ratio and p99
/// latency per limiter.
pub(crate) fn comparison(report: &ReportData, palette: &Palette) -> BarFigure {
    let limiters = &report.summary.limiters;
    let groups = |value: &dyn Fn(&LimiterSummary) -> Option<f64>| -> Vec<BarGroup> {
        limiters
            .iter()
            .map(|l| BarGroup {
                label: l.name.clone(),
                bars: vec![Bar {
                    value: value(l),
                    colour: palette.colour(&l.name),
                    tag: None,
                }],
            })
            .collect()
    };
    let quota_known = report.summary.quota.as_ref().and_then(|q| q.tpm).is_some();
    let first = if quota_known {
        metric_panel(
            "quota utilisation (goodput / TPM)",
            "% of quota TPM",
            YLabels::Percent,
            Some(100.0),
            groups(&|l| l.quota_utilisation.map(|u| u * 100.0)),
        )
    } else {
        metric_panel(
            "goodput",
            "tokens/min",
            YLabels::Short,
            None,
            groups(&|l| Some(l.goodput_tpm)),
        )
    };
    BarFigure {
        title: format!("Limiters compared: {}", subtitle(report)),
        panels: vec![
            first,
            metric_panel(
                "throttled requests (saw ≥ 1 429)",
                "% of requests",
                YLabels::Percent,
                None,
                groups(&|l| Some(l.throttled_ratio * 100.0)),
            ),
            metric_panel(
                "p99 corrected latency",
                "latency (ms)",
                YLabels::Short,
                None,
                groups(&|l| l.latency_ms.p99),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_and_exact_at_the_start() {
        assert_eq!(
            moving_average(&[2.0, 4.0, 6.0, 8.0], 2),
            vec![2.0, 3.0, 5.0, 7.0]
        );
        assert_eq!(moving_average(&[1.0, 3.0], 1), vec![1.0, 3.0]);
    }

    #[test]
    fn gauge_segments_break_at_missing_values_and_gaps() {
        let seconds = [0, 1, 2, 3, 5, 6];
        let values = [Some(1.0), Some(2.0), None, Some(3.0), Some(4.0), Some(5.0)];
        let segs = gauge_segments(&seconds, &values);
        assert_eq!(
            segs,
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(3.0, 3.0)],
                vec![(5.0, 4.0), (6.0, 5.0)]
            ]
        );
    }

    #[test]
    fn hdr_points_from_samples_follow_nearest_rank() {
        let samples: Vec<f64> = (1..=1000).map(f64::from).collect();
        let (points, sparse) = hdr_points(Some(&samples), &[]);
        assert!(!sparse);
        // x = 0 is the minimum, x = 1 is p90, x = 3 (p99.9) the last supported point.
        assert_eq!(points.first(), Some(&(0.0, 1.0)));
        let p90 = points.iter().find(|p| (p.0 - 1.0).abs() < 1e-9).unwrap();
        assert_eq!(p90.1, 900.0);
        let last = points.last().unwrap();
        assert!((last.0 - 3.0).abs() < 1e-9 && last.1 == 999.0, "{last:?}");
        assert_eq!(points.len(), 61);
    }

    #[test]
    fn hdr_points_from_summary_drop_the_max() {
        let (points, sparse) = hdr_points(None, &[[50.0, 10.0], [99.0, 30.0], [100.0, 90.0]]);
        assert!(sparse);
        assert_eq!(points.len(), 2);
        assert!((points[1].0 - 2.0).abs() < 1e-9);
    }
}
