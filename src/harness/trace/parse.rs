//! Reading trace files row by row: one line in memory at a time, every error located by
//! file, line and column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{TraceError, TraceFormat, TraceRow};

/// The header line each CSV format starts with, exactly.
const AZURE_HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens";
const BURSTGPT_HEADER: &str =
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type";

/// Reads a trace file's rows in file order; see [`TraceFormat`] for the layouts. Rows must
/// be in time order (a timestamp below the previous one is an error); blank lines are
/// skipped. Memory: one line.
#[derive(Debug)]
pub struct TraceReader<R> {
    path: PathBuf,
    format: TraceFormat,
    input: R,
    line: usize,
    buf: String,
    last_at: Option<u64>,
    failed: bool,
}

impl TraceReader<BufReader<File>> {
    /// Opens `path` as a trace of `format`.
    pub fn open(path: &Path, format: TraceFormat) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(
            path,
            format,
            BufReader::with_capacity(1 << 16, file),
        ))
    }
}

impl<R: BufRead> TraceReader<R> {
    /// Reads rows of `format` from `input`; `path` names it in errors.
    pub fn new(path: &Path, format: TraceFormat, input: R) -> Self {
        Self {
            path: path.to_owned(),
            format,
            input,
            line: 0,
            buf: String::new(),
            last_at: None,
            failed: false,
        }
    }

    fn error(&self, column: usize, message: impl Into<String>) -> TraceError {
        TraceError::Row {
            path: self.path.clone(),
            line: self.line,
            column,
            message: message.into(),
        }
    }

    /// The next non-blank line (without its line ending), `None` at the end.
    fn next_line(&mut self) -> Result<Option<()>, TraceError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .map_err(|source| TraceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let trimmed = self.buf.trim_end_matches(['\n', '\r']).len();
            self.buf.truncate(trimmed);
            if !self.buf.trim().is_empty() {
                return Ok(Some(()));
            }
        }
    }

    fn read_row(&mut self) -> Result<Option<TraceRow>, TraceError> {
        if self.line == 0 {
            if let Some(header) = self.format.header() {
                if self.next_line()?.is_none() {
                    return Err(TraceError::Empty {
                        path: self.path.clone(),
                        windowed: false,
                    });
                }
                let got = self.buf.trim_start_matches('\u{feff}').trim_end();
                if got != header {
                    return Err(
                        self.error(1, format!("expected the header {header:?}, found {got:?}"))
                    );
                }
            }
        }
        if self.next_line()?.is_none() {
            return Ok(None);
        }
        let row = match self.format {
            TraceFormat::Azure => self.azure_row(),
            TraceFormat::BurstGpt => self.burstgpt_row(),
            TraceFormat::Mooncake => self.mooncake_row(),
        }?;
        if let Some(last) = self.last_at.filter(|&last| row.at < last) {
            return Err(self.error(
                1,
                format!(
                    "the timestamp goes back in time ({} ns before the previous row's): a trace must be in time order",
                    last - row.at
                ),
            ));
        }
        self.last_at = Some(row.at);
        Ok(Some(row))
    }

    /// The line's comma-separated fields with their 1-based starting columns; exactly
    /// `n` of them.
    fn fields(&self, n: usize) -> Result<Vec<(usize, &str)>, TraceError> {
        let mut out = Vec::with_capacity(n);
        let mut column = 1;
        for f in self.buf.split(',') {
            out.push((column, f));
            column += f.chars().count() + 1;
        }
        if out.len() != n {
            // Too many: where the first extra field starts; too few: just past the end.
            let at = out.get(n).map_or(column - 1, |(c, _)| *c);
            return Err(self.error(
                at,
                format!("expected {n} comma-separated fields, found {}", out.len()),
            ));
        }
        Ok(out)
    }

    fn tokens(&self, (column, text): (usize, &str), what: &str) -> Result<u64, TraceError> {
        text.trim().parse::<u64>().map_err(|_| {
            self.error(
                column,
                format!("{what}: expected a whole number of tokens, found {text:?}"),
            )
        })
    }

    fn azure_row(&self) -> Result<TraceRow, TraceError> {
        let f = self.fields(3)?;
        let (column, stamp) = f[0];
        let at = parse_datetime(stamp.trim()).map_err(|(offset, message)| {
            self.error(column + offset, format!("TIMESTAMP {stamp:?}: {message}"))
        })?;
        Ok(TraceRow {
            at,
            prompt_tokens: self.tokens(f[1], "ContextTokens")?,
            output_tokens: self.tokens(f[2], "GeneratedTokens")?,
        })
    }

    fn burstgpt_row(&self) -> Result<TraceRow, TraceError> {
        let f = self.fields(6)?;
        let (column, stamp) = f[0];
        let at = parse_decimal(stamp.trim(), 9).ok_or_else(|| {
            self.error(
                column,
                format!("Timestamp: expected seconds (e.g. 12.5), found {stamp:?}"),
            )
        })?;
        Ok(TraceRow {
            at,
            prompt_tokens: self.tokens(f[2], "Request tokens")?,
            output_tokens: self.tokens(f[3], "Response tokens")?,
        })
    }

    fn mooncake_row(&self) -> Result<TraceRow, TraceError> {
        /// One line of a Mooncake trace; other keys (`hash_ids`, …) are ignored.
        #[derive(Deserialize)]
        struct Line {
            timestamp: serde_json::Number,
            input_length: u64,
            output_length: u64,
        }
        let line: Line = serde_json::from_str(&self.buf)
            .map_err(|e| self.error(e.column().max(1), e.to_string()))?;
        let ms = line.timestamp.to_string();
        let at = parse_decimal(&ms, 6).ok_or_else(|| {
            let column = self.buf.find("\"timestamp\"").map_or(1, |i| i + 1);
            self.error(
                column,
                format!("timestamp: expected milliseconds >= 0, found {ms}"),
            )
        })?;
        Ok(TraceRow {
            at,
            prompt_tokens: line.input_length,
            output_tokens: line.output_length,
        })
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<TraceRow, TraceError>;

    /// The next row, or the first error (after which the reader ends).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.read_row().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

impl TraceFormat {
    /// The header line the format starts with (`None`: JSON lines have none).
    fn header(self) -> Option<&'static str> {
        match self {
            Self::Azure => Some(AZURE_HEADER),
            Self::BurstGpt => Some(BURSTGPT_HEADER),
            Self::Mooncake => None,
        }
    }
}

/// A non-negative decimal `int[.frac]` in units of 10^-`scale_digits` of its unit, exactly
/// (digits past `scale_digits` are truncated), e.g. `"1.5"` at 9 digits = 1 500 000 000.
fn parse_decimal(s: &str, scale_digits: u32) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value = int
        .parse::<u64>()
        .ok()?
        .checked_mul(10u64.pow(scale_digits))?;
    let mut place = 10u64.pow(scale_digits);
    for b in frac.bytes().take(scale_digits as usize) {
        place /= 10;
        value = value.checked_add(u64::from(b - b'0') * place)?;
    }
    Some(value)
}

/// `YYYY-MM-DD HH:MM:SS[.fffffffff]` (UTC) to nanoseconds since the Unix epoch; on error
/// the 0-based character offset of the bad part and what was expected.
fn parse_datetime(s: &str) -> Result<u64, (usize, String)> {
    let bytes = s.as_bytes();
    let num = |from: usize, len: usize, what: &str| -> Result<u64, (usize, String)> {
        let part = s
            .get(from..from + len)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
        part.and_then(|p| p.parse().ok())
            .ok_or_else(|| (from, format!("expected {len} digits of the {what}")))
    };
    let sep = |at: usize, want: u8| -> Result<(), (usize, String)> {
        if bytes.get(at) == Some(&want) {
            Ok(())
        } else {
            Err((at, format!("expected {:?}", want as char)))
        }
    };
    let year = num(0, 4, "year")?;
    sep(4, b'-')?;
    let month = num(5, 2, "month")?;
    sep(7, b'-')?;
    let day = num(8, 2, "day")?;
    if bytes.get(10) != Some(&b' ') && bytes.get(10) != Some(&b'T') {
        return Err((10, "expected a space between date and time".into()));
    }
    let hour = num(11, 2, "hour")?;
    sep(13, b':')?;
    let minute = num(14, 2, "minute")?;
    sep(16, b':')?;
    let second = num(17, 2, "second")?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err((0, "not a valid date and time".into()));
    }
    let frac_ns = match s.get(19..) {
        None | Some("") => 0,
        Some(rest) => {
            let digits = rest
                .strip_prefix('.')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| (19, "expected a fraction of a second after '.'".to_owned()))?;
            parse_decimal(&format!("0.{digits}"), 9).unwrap_or(0)
        }
    };
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let secs = days * 86_400 + (hour * 3_600 + minute * 60 + second) as i64;
    let secs = u64::try_from(secs).map_err(|_| (0, "before 1970".to_owned()))?;
    Ok(secs * 1_000_000_000 + frac_ns)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: TraceFormat, text: &str) -> Vec<Result<TraceRow, TraceError>> {
        TraceReader::new(Path::new("t.csv"), format, text.as_bytes()).collect()
    }

    fn err(format: TraceFormat, text: &str) -> String {
        read(format, text)
            .into_iter()
            .find_map(Result::err)
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("no error in {text:?}"))
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn datetimes_are_exact_nanoseconds_since_the_epoch() {
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(
            parse_datetime("1970-01-02 00:00:01.5"),
            Ok(86_401 * S + S / 2)
        );
        // 2023-11-16 18:15:46 UTC = 1700158546.
        assert_eq!(
            parse_datetime("2023-11-16 18:15:46.6805900"),
            Ok(1_700_158_546 * S + 680_590_000)
        );
        assert_eq!(parse_datetime("2024-02-29 00:00:00"), Ok(1_709_164_800 * S));
        assert_eq!(parse_datetime("2023-11-16 18:1x:46").unwrap_err().0, 14);
        assert_eq!(parse_datetime("2023-11-16 18:15:46.").unwrap_err().0, 19);
        assert_eq!(parse_datetime("2023-13-16 18:15:46").unwrap_err().0, 0);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12", 9), Some(12 * S));
        assert_eq!(parse_decimal("0.000000001", 9), Some(1));
        assert_eq!(parse_decimal("1.2345678919", 9), Some(1_234_567_891));
        assert_eq!(parse_decimal("1500", 6), Some(1_500_000_000));
        assert_eq!(parse_decimal("-1", 9), None);
        assert_eq!(parse_decimal("1e3", 9), None);
        assert_eq!(parse_decimal(".5", 9), None);
    }

    #[test]
    fn azure_rows_parse() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2023-11-16 18:15:46.6805900,374,44\n\
                    2023-11-16 18:15:50.9951690,396,109\r\n\n";
        let rows: Vec<_> = read(TraceFormat::Azure, text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].prompt_tokens, rows[0].output_tokens), (374, 44));
        assert_eq!(rows[1].at - rows[0].at, 4_314_579_000);
    }

    #[test]
    fn burstgpt_rows_parse() {
        let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                    5,ChatGPT,472,18,490,Conversation log\n\
                    45.25,GPT-4,1087,0,1087,API log\n";
        let rows: Vec<_> = read(TraceFormat::BurstGpt, text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows[0],
            TraceRow {
                at: 5 * S,
                prompt_tokens: 472,
                output_tokens: 18
            }
        );
        assert_eq!(
            rows[1],
            TraceRow {
                at: 45 * S + S / 4,
                prompt_tokens: 1087,
                output_tokens: 0
            }
        );
    }

    #[test]
    fn mooncake_rows_parse() {
        let text = "{\"timestamp\": 0, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47]}\n\
                    {\"timestamp\": 27482, \"input_length\": 6472, \"output_length\": 26, \"hash_ids\": []}\n\
                    {\"timestamp\": 27482.5, \"input_length\": 1, \"output_length\": 2}\n";
        let rows: Vec<_> = read(TraceFormat::Mooncake, text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows[0],
            TraceRow {
                at: 0,
                prompt_tokens: 6955,
                output_tokens: 52
            }
        );
        assert_eq!(rows[1].at, 27_482_000_000);
        assert_eq!(rows[2].at, 27_482_500_000);
    }

    /// Each malformed row names file, line and column of what is wrong.
    #[test]
    fn malformed_rows_are_located() {
        use TraceFormat::{Azure, BurstGpt, Mooncake};
        let h = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let cases: &[(TraceFormat, String, &str)] = &[
            (Azure, "".into(), "t.csv: the trace has no rows"),
            (Azure, "time,a,b\n".into(), "t.csv:1:1: expected the header"),
            (Azure, format!("{h}2023-11-16 18:15:46.1,374\n"), "t.csv:2:26: expected 3 comma-separated fields, found 2"),
            (Azure, format!("{h}2023-11-16 18:15:46.1,374,44,9\n"), "t.csv:2:30: expected 3 comma-separated fields, found 4"),
            (Azure, format!("{h}2023-11-16 18:15:46.1,x74,44\n"), "t.csv:2:23: ContextTokens: expected a whole number of tokens, found \"x74\""),
            (Azure, format!("{h}2023-11-16 18:15:46.1,374,-4\n"), "t.csv:2:27: GeneratedTokens"),
            (Azure, format!("{h}2023/11-16 18:15:46.1,374,44\n"), "t.csv:2:5: TIMESTAMP \"2023/11-16 18:15:46.1\": expected '-'"),
            (Azure, format!("{h}2023-11-16 18:15:46.1,1,1\n2023-11-16 18:15:45.1,1,1\n"), "t.csv:3:1: the timestamp goes back in time"),
            (BurstGpt, "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\nfive,GPT-4,1,1,2,API log\n".into(), "t.csv:3:1: Timestamp: expected seconds"),
            (BurstGpt, "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,1.5,490,Conversation log\n".into(), "t.csv:2:15: Response tokens"),
            (Mooncake, "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 2}\n{\"timestamp\": 5, \"input_length\": \"7\", \"output_length\": 2}\n".into(), "t.csv:2:"),
            (Mooncake, "{\"timestamp\": 5, \"input_length\": 1}\n".into(), "t.csv:1:"),
            (Mooncake, "{\"timestamp\": -5, \"input_length\": 1, \"output_length\": 2}\n".into(), "t.csv:1:2: timestamp: expected milliseconds >= 0, found -5"),
            (Mooncake, "not json\n".into(), "t.csv:1:2: expected ident"),
        ];
        for (format, text, want) in cases {
            let got = err(*format, text);
            assert!(
                got.starts_with(want),
                "{format:?} {text:?}:\n got  {got}\n want {want}"
            );
        }
        let missing = err(Mooncake, "{\"timestamp\": 5, \"input_length\": 1}\n");
        assert!(
            missing.contains("missing field `output_length`"),
            "{missing}"
        );
    }

    #[test]
    fn the_reader_stops_after_an_error() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\nbad\n2023-11-16 18:15:46.1,1,1\n";
        let rows = read(TraceFormat::Azure, text);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].is_err());
    }
}
