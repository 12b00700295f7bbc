//! Charts, `index.html` and `hub compare` on real report directories: synthetic runs are
//! aggregated and written by the harness's own `RunAggregate` and `ReportWriter`, read back
//! by `report_files`, rendered, and the output files are parsed (SVG and HTML as XML, PNG
//! by its decoder) to check they are valid and carry the data.

use std::path::{Path, PathBuf};

use connector_hub::harness::capacity::{QuotaDimension, Refill};
use connector_hub::harness::charts::{render_charts, ChartKind, CHART_SIZE};
use connector_hub::harness::compare::{compare, rules, RegressionRule, Verdict};
use connector_hub::harness::html::write_index_html;
use connector_hub::harness::record::{Attempt, Outcome, RequestRecord, RunAggregate};
use connector_hub::harness::report::ReportWriter;
use connector_hub::harness::report_files::ReportData;
use connector_hub::harness::summary::{
    ProviderSummary, QuotaSummary, Summary, ThresholdResult, SCHEMA_VERSION,
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Scenario text with characters that must be escaped in HTML.
const SCENARIO_TEXT: &str =
    "# synthetic <test> scenario & friends\nname = \"synthetic\"\nseed = 7\n";

/// xorshift64*: deterministic noise without depending on any RNG crate's stream.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parameters of a synthetic run.
struct Synth {
    duration_s: u64,
    rate: f64,
    /// Multiplies the chance of a 429 for the baseline (and gives the token bucket some).
    pressure: f64,
    requests_csv: bool,
}

const LIMITERS: [(&str, &str); 3] = [
    ("token-bucket", "token_bucket"),
    ("gcra", "gcra"),
    ("none", "none"),
];

/// One synthetic request of limiter `strategy`.
fn request(id: u64, strategy: &str, synth: &Synth, noise: &mut Noise) -> RequestRecord {
    let intended = (id as f64 / synth.rate * S as f64) as u64;
    let second = intended / S;
    let burst = second % 20 >= 14;
    let prompt = 200 + (noise.next() * 100.0) as u64;
    let completion = 50 + (noise.next() * 50.0) as u64;
    let service = |n: &mut Noise| {
        let tail = if n.next() < 0.01 { 1_500 * MS } else { 0 };
        300 * MS + (n.next() * 200.0) as u64 * MS + tail
    };
    let mut record = RequestRecord {
        request_id: id,
        phase: 0,
        intended_start: intended,
        attempts: Vec::new(),
        first_byte: None,
        end: intended,
        outcome: Outcome::Ok,
        estimated_tokens: prompt + 150,
        server_tokens: prompt + 150,
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        limiter_wait: 0,
        streamed: id % 3 == 0,
    };
    let throttle_chance = match strategy {
        "none" if burst => 0.3 * synth.pressure,
        "none" => 0.02 * synth.pressure,
        "token_bucket" if burst => 0.02 * (synth.pressure - 1.0),
        _ => 0.0,
    };
    let mut sent = intended;
    if strategy != "none" {
        let wait = if burst {
            noise.next() * 400.0
        } else {
            noise.next() * 5.0
        };
        record.limiter_wait = (wait * MS as f64) as u64;
        sent += record.limiter_wait;
    }
    if strategy == "gcra" && id % 97 == 13 {
        record.outcome = Outcome::Dropped;
        record.prompt_tokens = None;
        record.completion_tokens = None;
        record.end = intended + S;
        return record;
    }
    if noise.next() < throttle_chance {
        record.attempts.push(Attempt {
            sent,
            end: sent + 20 * MS,
            status: Some(429),
        });
        if noise.next() < 0.2 {
            record.outcome = Outcome::Throttled;
            record.end = sent + 20 * MS;
            record.prompt_tokens = None;
            record.completion_tokens = None;
            return record;
        }
        sent += S;
    }
    if id % 499 == 7 {
        record.attempts.push(Attempt {
            sent,
            end: sent + 50 * MS,
            status: Some(500),
        });
        record.outcome = Outcome::Error;
        record.end = sent + 50 * MS;
        record.prompt_tokens = None;
        record.completion_tokens = None;
        return record;
    }
    let end = sent + service(noise);
    record.attempts.push(Attempt {
        sent,
        end,
        status: Some(200),
    });
    record.first_byte = Some(sent + 100 * MS);
    record.end = end;
    record
}

/// Runs the synthetic model through the harness's aggregation and report writer into
/// `dir`; returns the summary written.
fn synthetic_report(dir: &Path, synth: &Synth) -> Summary {
    let _ = std::fs::remove_dir_all(dir);
    let quota = QuotaSummary {
        rpm: Some(600),
        tpm: Some(170_000),
    };
    let mut writer = ReportWriter::create(dir, synth.requests_csv).expect("create report dir");
    let mut limiters = Vec::new();
    for (name, strategy) in LIMITERS {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let mut agg = RunAggregate::new(name, strategy);
        let n = (synth.duration_s as f64 * synth.rate) as u64;
        for id in 0..n {
            let r = request(id, strategy, synth, &mut noise);
            writer.request(name, &r).expect("write request row");
            agg.add(&r);
        }
        writer
            .timeseries(name, agg.seconds(synth.duration_s))
            .expect("write timeseries");
        let per_minute = |dimension, limit| QuotaDimension {
            dimension,
            limit,
            refill: Refill::Continuous { period: 60 * S },
        };
        let dims = [
            per_minute("requests", quota.rpm.unwrap_or(0)),
            per_minute("tokens", quota.tpm.unwrap_or(0)),
        ];
        let mut summary = agg.summary(synth.duration_s as f64, &dims);
        let passed = summary.throttled_ratio < 0.01;
        summary.thresholds = vec![ThresholdResult {
            metric: "throttled_ratio".to_owned(),
            expr: "< 0.01".to_owned(),
            value: Some(summary.throttled_ratio),
            passed,
        }];
        summary.passed = passed;
        limiters.push(summary);
    }
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        scenario: "synthetic".to_owned(),
        mode: "simulated".to_owned(),
        seed: 7,
        duration_s: synth.duration_s as f64,
        provider: ProviderSummary {
            kind: "openai".to_owned(),
            target: "mock".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            deployment: None,
        },
        quota: Some(quota),
        limiters,
    };
    writer
        .finish(&summary, SCENARIO_TEXT)
        .expect("finish report");
    summary
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("charts")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const BEFORE: Synth = Synth {
    duration_s: 30,
    rate: 8.0,
    pressure: 1.0,
    requests_csv: true,
};

const AFTER: Synth = Synth {
    duration_s: 30,
    rate: 8.0,
    pressure: 2.0,
    requests_csv: false,
};

/// Rewrites the committed fixtures from the synthetic model (run after a report format
/// change: `cargo test --test charts -- --ignored regenerate_fixtures`).
#[test]
#[ignore = "rewrites tests/fixtures"]
fn regenerate_fixtures() {
    synthetic_report(&fixture("report-before"), &BEFORE);
    synthetic_report(&fixture("report-after"), &AFTER);
}

#[test]
fn report_files_read_back_what_the_writer_wrote() {
    let dir = scratch("round-trip");
    let written = synthetic_report(&dir, &BEFORE);
    let report = ReportData::load(&dir).unwrap();
    assert_eq!(report.summary, written);
    assert_eq!(report.scenario_text.as_deref(), Some(SCENARIO_TEXT));
    assert_eq!(report.timeseries.len(), 3);
    for (series, limiter) in report.timeseries.iter().zip(&written.limiters) {
        assert_eq!(series.limiter, limiter.name);
        assert!(
            series.len() >= 30,
            "{} has {} rows",
            series.limiter,
            series.len()
        );
        assert_eq!(series.offered.iter().sum::<u64>(), limiter.requests);
        assert_eq!(series.completed.iter().sum::<u64>(), limiter.completed);
    }
    let samples = report.samples.as_ref().expect("requests.csv was written");
    for (s, limiter) in samples.iter().zip(&written.limiters) {
        assert_eq!(
            s.latency_ms.len() as u64,
            limiter.completed,
            "{}",
            s.limiter
        );
        assert_eq!(
            s.limiter_wait_ms.len() as u64,
            limiter.requests,
            "{}",
            s.limiter
        );
        assert!(s.latency_ms.windows(2).all(|w| w[0] <= w[1]));
    }
    // The samples and the summary's HDR percentiles agree (histograms keep 3 digits).
    let tb = &written.limiters[0];
    let p99 = tb.latency_ms.p99.unwrap();
    let sorted = &samples[0].latency_ms;
    let rank = (0.99 * sorted.len() as f64).ceil() as usize - 1;
    assert!(
        (sorted[rank] - p99).abs() <= p99 * 0.002 + 0.01,
        "{} vs {p99}",
        sorted[rank]
    );
}

#[test]
fn committed_fixtures_load_and_a_missing_requests_csv_is_tolerated() {
    let before = ReportData::load(&fixture("report-before")).unwrap();
    let after = ReportData::load(&fixture("report-after")).unwrap();
    assert!(before.samples.is_some());
    assert!(!fixture("report-after").join("requests.csv").exists());
    assert!(after.samples.is_none());
    assert_eq!(after.summary.limiters.len(), 3);
    // Every metric a --fail-if rule may name has a value for a limiter with samples, so
    // the rule list and `LimiterSummary::metric` have not drifted apart.
    let tb = &before.summary.limiters[0];
    for metric in rules::METRICS {
        assert!(rules::metric_value(tb, metric).is_some(), "{metric}");
    }
}

#[test]
fn a_report_directory_without_summary_names_the_missing_file() {
    let dir = scratch("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let err = ReportData::load(&dir).unwrap_err().to_string();
    assert!(err.contains("summary.json"), "{err}");
}

/// Number of coordinate pairs in every `<polyline>` of an SVG document.
fn polyline_points(doc: &roxmltree::Document) -> Vec<usize> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect()
}

fn svg_texts(doc: &roxmltree::Document) -> String {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Decodes a PNG fully; returns (width, height, RGB(A) pixels).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} signature",
        path.display()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf, channels)
}

#[test]
fn every_chart_is_written_as_valid_nontrivial_svg_and_png() {
    let dir = scratch("render");
    let report = ReportData::load(&fixture("report-before")).unwrap();
    let written = render_charts(&report, &dir).unwrap();
    assert_eq!(written.len(), ChartKind::ALL.len() * 2);
    for kind in ChartKind::ALL {
        let stem = kind.file_stem();
        let svg_path = dir.join("charts").join(format!("{stem}.svg"));
        let png_path = dir.join("charts").join(format!("{stem}.png"));
        assert!(
            written.contains(&svg_path) && written.contains(&png_path),
            "{stem}"
        );

        let text = std::fs::read_to_string(&svg_path).unwrap();
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{stem}.svg is not XML: {e}"));
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        assert_eq!(root.attribute("width"), Some("1200"));
        assert_eq!(root.attribute("height"), Some("700"));
        let labels = svg_texts(&doc);
        for (name, _) in LIMITERS {
            assert!(
                labels.contains(name),
                "{stem}.svg lacks limiter {name}:\n{labels}"
            );
        }
        match kind {
            ChartKind::Comparison => {
                let bars = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
                // Background + panels' frames + at least one bar per limiter and panel.
                assert!(bars >= 9, "{stem}.svg has {bars} rects");
                assert!(labels.contains("% of quota TPM"), "{labels}");
                assert!(labels.contains("latency (ms)"), "{labels}");
            }
            ChartKind::LatencyOverTime => {
                let lines = polyline_points(&doc);
                // Three panels × three limiters with ~30 points each (gaps allowed).
                let long = lines.iter().filter(|&&n| n >= 10).count();
                assert!(long >= 9, "{stem}.svg polylines: {lines:?}");
                assert!(labels.contains("time since run start (s)"), "{labels}");
                assert!(labels.contains("p99 latency (ms)"), "{labels}");
            }
            ChartKind::ThroughputTokens => {
                assert!(labels.contains("tokens/min"));
                assert!(labels.contains("quota 170k TPM"), "{labels}");
                assert!(polyline_points(&doc).iter().filter(|&&n| n >= 30).count() >= 6);
            }
            ChartKind::ThroughputRequests => {
                assert!(labels.contains("requests/s"));
                assert!(labels.contains("quota 600 RPM = 10/s"), "{labels}");
            }
            ChartKind::ThrottledPerSecond => {
                assert!(labels.contains("429 responses/s"));
                let none = report
                    .series("none")
                    .map(|s| s.throttled.iter().sum::<u64>())
                    .unwrap();
                assert!(none > 0);
                assert!(labels.contains(&format!("none ({none} total)")), "{labels}");
            }
            ChartKind::LatencyDistribution | ChartKind::LimiterWaitDistribution => {
                for tick in ["50 %", "90 %", "99 %"] {
                    assert!(labels.contains(tick), "{stem}.svg lacks tick {tick}");
                }
                // Curves from requests.csv: 20 points per decade up to ~240 samples.
                assert!(polyline_points(&doc).iter().filter(|&&n| n >= 40).count() >= 2);
                assert!(labels.contains("(ms)"));
            }
        }

        let (w, h, pixels, channels) = decode_png(&png_path);
        assert_eq!((w, h), CHART_SIZE, "{stem}.png size");
        let px = pixels.chunks(channels);
        let inked = px.clone().filter(|p| p[..3] != [255, 255, 255]).count();
        assert!(
            inked > 5_000,
            "{stem}.png has only {inked} non-white pixels"
        );
        // The first limiter's colour (#4e79a7) is drawn.
        let blue = px.filter(|p| p[..3] == [0x4e, 0x79, 0xa7]).count();
        assert!(
            blue > 50,
            "{stem}.png has {blue} pixels of the first limiter's colour"
        );
    }
}

#[test]
fn charts_render_from_summary_points_when_requests_csv_is_absent() {
    let dir = scratch("render-summary-only");
    let report = ReportData::load(&fixture("report-after")).unwrap();
    render_charts(&report, &dir).unwrap();
    let text = std::fs::read_to_string(dir.join("charts/latency_distribution.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    // 8 summary percentiles below 100 % per limiter, marked with dots.
    assert!(polyline_points(&doc).iter().filter(|&&n| n == 8).count() >= 3);
    let dots = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert!(dots >= 24, "{dots} markers");
}

#[test]
fn a_limiter_without_any_completion_still_renders() {
    let dir = scratch("degenerate");
    let mut report = ReportData::load(&fixture("report-after")).unwrap();
    // Blank out the gcra limiter: no completions, no latencies, no distribution.
    let l = &mut report.summary.limiters[1];
    l.completed = 0;
    l.latency_ms = Default::default();
    l.latency_distribution.clear();
    l.quota_utilisation = None;
    let s = &mut report.timeseries[1];
    s.completed.iter_mut().for_each(|v| *v = 0);
    s.latency_p50_ms.iter_mut().for_each(|v| *v = None);
    s.latency_p90_ms.iter_mut().for_each(|v| *v = None);
    s.latency_p99_ms.iter_mut().for_each(|v| *v = None);
    report.summary.quota = None;
    render_charts(&report, &dir).unwrap();
    let text = std::fs::read_to_string(dir.join("charts/comparison.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let labels = svg_texts(&doc);
    assert!(
        labels.contains("n/a"),
        "missing value shown as n/a:\n{labels}"
    );
    assert!(
        labels.contains("goodput"),
        "goodput replaces utilisation without a quota"
    );
}

#[test]
fn dense_zigzag_lines_stay_inside_their_plot_in_png() {
    // plotters joins thick raster polylines with unbounded miters: a sharp zigzag used to
    // spike hundreds of px out of the plot, across the title. Guard the first limiter's
    // colour out of the title band and the left and bottom margins.
    let dir = scratch("zigzag");
    let mut report = ReportData::load(&fixture("report-after")).unwrap();
    let n = 3000u64;
    let zigzag = |i: u64| Some(if i % 2 == 0 { 100.0 } else { 3000.0 });
    let s = &mut report.timeseries[0];
    s.second = (0..n).collect();
    s.latency_p50_ms = (0..n).map(zigzag).collect();
    s.latency_p90_ms = (0..n).map(zigzag).collect();
    s.latency_p99_ms = (0..n).map(zigzag).collect();
    for v in [
        &mut s.offered,
        &mut s.sent,
        &mut s.completed,
        &mut s.throttled,
        &mut s.errors,
        &mut s.tokens_charged,
        &mut s.tokens_used,
    ] {
        *v = (0..n).map(|i| if i % 2 == 0 { 0 } else { 5000 }).collect();
    }
    report.summary.duration_s = n as f64;
    render_charts(&report, &dir).unwrap();
    for stem in [
        "latency_over_time",
        "throughput_tokens",
        "throttled_per_second",
    ] {
        let (w, h, pixels, channels) = decode_png(&dir.join(format!("charts/{stem}.png")));
        let blue_at = |x: u32, y: u32| {
            let i = (y * w + x) as usize * channels;
            pixels[i..i + 3] == [0x4e, 0x79, 0xa7]
        };
        let outside = (0..w)
            .flat_map(|x| (0..24).chain(h - 6..h).map(move |y| (x, y)))
            .chain((0..h).flat_map(|y| (0..12).map(move |x| (x, y))))
            .filter(|&(x, y)| blue_at(x, y))
            .count();
        assert_eq!(outside, 0, "{stem}.png: line pixels outside the plot");
        let inside = (0..w * h).filter(|&i| blue_at(i % w, i / w)).count();
        assert!(inside > 1_000, "{stem}.png: zigzag not drawn ({inside} px)");
    }
}

#[test]
fn index_html_is_self_contained_and_shows_the_summary() {
    let dir = scratch("html");
    let report = ReportData::load(&fixture("report-before")).unwrap();
    let path = write_index_html(&report, &dir).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&html, opts)
        .unwrap_or_else(|e| panic!("index.html is not well-formed: {e}"));

    // No external references: no src/href at all, no scripts, no links.
    for n in doc.descendants().filter(|n| n.is_element()) {
        for attr in ["src", "href"] {
            assert!(
                n.attribute(attr).is_none(),
                "<{}> has {attr}",
                n.tag_name().name()
            );
        }
        assert!(!["script", "link", "img", "iframe"].contains(&n.tag_name().name()));
    }

    // Every chart is inlined as an SVG element in its figure.
    for kind in ChartKind::ALL {
        let id = format!("chart-{}", kind.file_stem());
        let figure = doc
            .descendants()
            .find(|n| n.attribute("id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no figure {id}"));
        let svg = figure
            .children()
            .find(|n| n.has_tag_name("svg"))
            .unwrap_or_else(|| panic!("figure {id} has no inline svg"));
        assert_eq!(svg.attribute("width"), Some("1200"));
        assert!(svg.descendants().count() > 50, "{id} is nearly empty");
    }

    // The summary table: one row per limiter, cells equal to the summary's values.
    let table = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("summary"))
        .expect("summary table");
    let header: Vec<String> = table
        .descendants()
        .filter(|n| n.has_tag_name("th"))
        .map(|n| n.text().unwrap_or("").to_owned())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<Vec<String>> = table
        .descendants()
        .filter(|n| n.has_tag_name("tr") && n.attribute("data-limiter").is_some())
        .map(|tr| {
            tr.children()
                .filter(|n| n.has_tag_name("td"))
                .map(|td| td.text().unwrap_or("").to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), report.summary.limiters.len());
    for (row, l) in rows.iter().zip(&report.summary.limiters) {
        assert_eq!(row[col("limiter")], l.name);
        assert_eq!(row[col("strategy")], l.strategy);
        assert_eq!(row[col("requests")], l.requests.to_string());
        assert_eq!(row[col("completed")], l.completed.to_string());
        assert_eq!(row[col("throttled")], l.throttled.to_string());
        let ratio: f64 = row[col("throttled ratio")]
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(
            (ratio - l.throttled_ratio * 100.0).abs() < 0.005 + 1e-9,
            "{ratio}"
        );
        let p99: f64 = row[col("latency p99 (ms)")].parse().unwrap();
        assert!((p99 - l.latency_ms.p99.unwrap()).abs() <= 0.05 + 1e-9);
        let verdict = if l.passed { "pass" } else { "FAIL" };
        assert_eq!(row[col("thresholds")], verdict);
    }
    // The baseline throttles in this report; the threshold table says so.
    assert!(rows.iter().any(|r| r[col("thresholds")] == "FAIL"));

    // Scenario text (escaped in the file, intact once parsed) and the seed.
    let scenario = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("scenario"))
        .unwrap();
    assert_eq!(scenario.text(), Some(SCENARIO_TEXT));
    assert!(html.contains("&lt;test&gt; scenario &amp; friends"));
    let seed = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("seed"))
        .unwrap();
    assert_eq!(seed.text(), Some("7"));
}

#[test]
fn compare_tables_reports_side_by_side_and_flags_a_regression() {
    let out = scratch("compare-fail");
    let rules: Vec<RegressionRule> = ["throttled_ratio > +10%", "latency_p99 > 60s"]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let dirs = [fixture("report-before"), fixture("report-after")];
    let outcome = compare(&dirs, &out, &rules).unwrap();

    // Table: a row per limiter per report, with changes against A.
    assert!(
        outcome.markdown.contains("| limiter | report |"),
        "{}",
        outcome.markdown
    );
    for (name, _) in LIMITERS {
        assert!(outcome
            .markdown
            .contains(&format!("| {name} | A report-before |")));
        assert!(outcome
            .markdown
            .contains(&format!("| {name} | B report-after |")));
    }
    assert!(outcome.text.contains("A = report-before, B = report-after"));
    assert!(outcome.text.lines().count() >= 7, "{}", outcome.text);

    // The baseline throttles more under pressure: a violation; gcra is unchanged.
    let violated: Vec<_> = outcome.violations().collect();
    assert!(
        violated
            .iter()
            .any(|e| e.limiter == "none" && e.rule == "throttled_ratio > +10%"),
        "{violated:?}"
    );
    assert!(outcome.regressed());
    let shown: Vec<String> = violated.iter().map(|e| e.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("B none: throttled_ratio ")
                && s.contains("(change +89.4737 %) > +10%")
                && s.ends_with("[REGRESSION]")),
        "{shown:?}"
    );
    let gcra = outcome
        .evaluations
        .iter()
        .find(|e| e.limiter == "gcra" && e.rule == "throttled_ratio > +10%")
        .unwrap();
    assert_eq!(gcra.verdict, Verdict::Pass, "{gcra:?}");
    // The absolute latency rule holds everywhere.
    assert!(outcome
        .evaluations
        .iter()
        .filter(|e| e.rule == "latency_p99 > 60s")
        .all(|e| e.verdict == Verdict::Pass));
    assert!(outcome.markdown.contains("**REGRESSION**"));

    // Files: the table and two overlay charts, valid SVG.
    assert_eq!(outcome.files.len(), 5);
    for f in &outcome.files {
        assert!(f.is_file(), "{}", f.display());
        if f.extension().is_some_and(|e| e == "svg") {
            let text = std::fs::read_to_string(f).unwrap();
            let doc = roxmltree::Document::parse(&text).unwrap();
            assert!(svg_texts(&doc).contains("report-after"));
        }
    }
}

#[test]
fn compare_passes_when_no_rule_is_broken() {
    let out = scratch("compare-pass");
    let rules: Vec<RegressionRule> = ["latency_p99 > +500%", "goodput_tpm < -50%"]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let dirs = [fixture("report-before"), fixture("report-after")];
    let outcome = compare(&dirs, &out, &rules).unwrap();
    assert!(!outcome.regressed(), "{:?}", outcome.evaluations);
    assert_eq!(outcome.evaluations.len(), 2 * LIMITERS.len());
    assert!(outcome.missing.is_empty());
}

#[test]
fn compare_needs_two_reports() {
    let err = compare(&[fixture("report-before")], &scratch("compare-one"), &[]).unwrap_err();
    assert!(err.to_string().contains("at least two"), "{err}");
}

/// Render time of a 3 limiters × 3600 s report (run in release:
/// `cargo test --release --test charts -- --ignored --nocapture render_speed`).
#[test]
#[ignore = "measurement"]
fn render_speed_of_an_hour_long_report() {
    let dir = scratch("hour");
    let synth = Synth {
        duration_s: 3600,
        rate: 10.0,
        pressure: 1.0,
        requests_csv: false,
    };
    synthetic_report(&dir, &synth);
    let t0 = std::time::Instant::now();
    let report = ReportData::load(&dir).unwrap();
    let loaded = t0.elapsed();
    let t1 = std::time::Instant::now();
    render_charts(&report, &dir).unwrap();
    let charts = t1.elapsed();
    let t2 = std::time::Instant::now();
    write_index_html(&report, &dir).unwrap();
    let html = t2.elapsed();
    let size = std::fs::metadata(dir.join("index.html")).unwrap().len();
    println!(
        "3 limiters x 3600 s: load {loaded:?}, render_charts (7 SVG + 7 PNG) {charts:?}, index.html {html:?} ({size} bytes)"
    );
}
