//! Colours, number formats and axis ticks shared by every chart, so that a limiter has the
//! same colour in every chart of a report (and of a comparison) and numbers read the same.

use plotters::style::RGBColor;

/// Colours for limiters, in assignment order (Tableau 10 without its grey, whose place the
/// `none` baseline takes).
const LIMITER_COLOURS: [RGBColor; 9] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0xc9, 0xa2, 0x27),
];

/// The colour of the `none` baseline (no client-side limiter).
const BASELINE_COLOUR: RGBColor = RGBColor(0x6e, 0x6e, 0x6e);

/// Reference lines (quota TPM, RPM/60, 100 %).
pub(crate) const REFERENCE_COLOUR: RGBColor = RGBColor(0x20, 0x20, 0x20);

/// One colour per limiter name, fixed for a whole report or comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct Palette {
    entries: Vec<(String, RGBColor)>,
}

impl Palette {
    /// Assigns colours to `(name, strategy)` pairs in order; a name seen before keeps its
    /// colour; strategy `none` gets the baseline grey.
    pub(crate) fn new<'a>(limiters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut palette = Self::default();
        let mut next = 0usize;
        for (name, strategy) in limiters {
            if palette.entries.iter().any(|(n, _)| n == name) {
                continue;
            }
            let colour = if strategy == "none" {
                BASELINE_COLOUR
            } else {
                let c = LIMITER_COLOURS[next % LIMITER_COLOURS.len()];
                next += 1;
                c
            };
            palette.entries.push((name.to_owned(), colour));
        }
        palette
    }

    /// The colour of limiter `name` (black for a name the palette does not know).
    pub(crate) fn colour(&self, name: &str) -> RGBColor {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .unwrap_or(RGBColor(0, 0, 0))
    }
}

/// `colour` blended towards white by `1 − strength` (strength 1 = the colour itself).
pub(crate) fn tint(colour: RGBColor, strength: f64) -> RGBColor {
    let s = strength.clamp(0.0, 1.0);
    let mix = |c: u8| (255.0 - (255.0 - c as f64) * s).round() as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// A number in a short human form: `950`, `12.5k`, `1.2M`; two decimals below 10.
pub(crate) fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "Nice" tick positions (1, 2, 5 × 10ⁿ steps) covering `lo..=hi`, about `count` of them.
pub(crate) fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Percentile `p` (0..100) as its HDR-plot x coordinate, `log10(1 / (1 − p/100))`.
pub(crate) fn percentile_to_x(p: f64) -> Option<f64> {
    let tail = 1.0 - p / 100.0;
    (tail > 0.0 && p >= 0.0).then(|| -(tail.log10()))
}

/// The percentile label of HDR-plot x coordinate `x`: `0 %`, `50 %`, `99.9 %`.
pub(crate) fn x_to_percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let mut s = format!("{p:.4}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s} %")
}

/// HDR-plot tick positions up to `max_x`: 0 %, 50 %, 90 %, 99 %, 99.9 %, …
pub(crate) fn percentile_ticks(max_x: f64) -> Vec<f64> {
    let mut ticks = vec![0.0, 2f64.log10()];
    let mut decade = 1.0;
    while decade <= max_x + 1e-9 {
        ticks.push(decade);
        decade += 1.0;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_keeps_its_colour_and_baseline_is_grey() {
        let p = Palette::new([
            ("a", "gcra"),
            ("none", "none"),
            ("b", "gcra"),
            ("a", "gcra"),
        ]);
        assert_eq!(p.colour("a"), LIMITER_COLOURS[0]);
        assert_eq!(p.colour("b"), LIMITER_COLOURS[1]);
        assert_eq!(p.colour("none"), BASELINE_COLOUR);
    }

    #[test]
    fn hdr_axis_maps_percentiles_to_decades() {
        assert!((percentile_to_x(90.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((percentile_to_x(99.9).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(percentile_to_x(100.0), None);
        assert_eq!(x_to_percentile_label(2f64.log10()), "50 %");
        assert_eq!(x_to_percentile_label(3.0), "99.9 %");
        assert_eq!(x_to_percentile_label(0.0), "0 %");
        assert_eq!(percentile_ticks(3.0).len(), 5);
    }

    #[test]
    fn nice_ticks_cover_the_range_with_round_steps() {
        assert_eq!(
            nice_ticks(0.0, 60.0, 6),
            vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        );
        let t = nice_ticks(0.0, 3600.0, 10);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 6 && t.len() <= 12, "{t:?}");
    }

    #[test]
    fn short_numbers_read_well() {
        assert_eq!(short_number(40_000.0), "40k");
        assert_eq!(short_number(1_500.0), "1.5k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.0), "0");
    }
}
