//! Scenario errors that point at the file, line, column and field.
//!
//! A scenario is hand-written; an error is only useful if it says where. Three sources of
//! position are combined: the TOML parser's span (syntax errors, wrong types, unknown
//! fields), the serde path of the field being read, and — for checks made after parsing —
//! the span of the named field looked up in the parsed document.

use std::fmt;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A scenario file that cannot be read or used. `Display` is
/// `origin:line:column: field: message` for every error about the file's content.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{origin}: cannot read the scenario file: {source}")]
    Read {
        /// The path as given.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, does not match the schema, or fails a check.
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file name (or other origin) given to the parser.
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters) of the offending key or value.
        column: usize,
        /// The field's path, e.g. `phase[1].arrival.rate` (`[n]` is 0-based).
        field: String,
        /// What is wrong, naming the value.
        message: String,
    },
}

impl ScenarioError {
    /// The 1-based line of the problem (`None` for read errors).
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read { .. } => None,
        }
    }

    /// The field path of the problem (`None` for read errors).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } => None,
        }
    }
}

/// A problem found after parsing: the field's path and what is wrong. Turned into a
/// [`ScenarioError`] by [`Locator::error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `phase[1].arrival.rate` into `phase`, `[1]`, `arrival`, `rate`.
fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Seg::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_owned()));
        }
    }
    out
}

/// Finds positions in one scenario text.
#[derive(Debug)]
pub(crate) struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
    root: Option<&'a Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(origin: &'a str, text: &'a str, root: Option<&'a Spanned<DeTable<'a>>>) -> Self {
        Self { origin, text, root }
    }

    /// The error for `problem`, positioned at its field (or the nearest enclosing one that
    /// is written in the file).
    pub fn error(&self, problem: Problem) -> ScenarioError {
        let offset = self.offset_of(&problem.path);
        self.at(offset, problem.path, problem.message)
    }

    /// The error for `message` about `field` at byte `offset`.
    pub fn at(&self, offset: usize, field: String, message: String) -> ScenarioError {
        let (line, column) = line_column(self.text, offset);
        ScenarioError::Invalid {
            origin: self.origin.to_owned(),
            line,
            column,
            field: if field.is_empty() {
                "(document)".to_owned()
            } else {
                field
            },
            message,
        }
    }

    /// Whether `path` is written in the file (a key present, an index in range).
    pub fn is_written(&self, path: &str) -> bool {
        let want = segments(path);
        self.walk(&want).0 == want.len()
    }

    /// Byte offset of the field at `path`: of its key when it is a table entry, of the
    /// element when it is an array item; when part of the path is not written, of the
    /// deepest written ancestor.
    pub fn offset_of(&self, path: &str) -> usize {
        self.walk(&segments(path)).1
    }

    /// How many segments of `want` exist, and the offset of the last one that does.
    fn walk(&self, want: &[Seg]) -> (usize, usize) {
        let Some(root) = self.root else {
            return (0, 0);
        };
        let mut offset = 0;
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for (depth, seg) in want.iter().enumerate() {
            let next = match (seg, table, value.map(|v| v.get_ref())) {
                (Seg::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    .map(|(key, v)| (key.span(), v)),
                (Seg::Key(k), None, Some(DeValue::Table(t))) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    .map(|(key, v)| (key.span(), v)),
                (Seg::Index(i), None, Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span(), v)),
                _ => None,
            };
            let Some((span, v)) = next else {
                return (depth, offset);
            };
            offset = span.start.min(self.text.len());
            table = None;
            value = Some(v);
        }
        (want.len(), offset)
    }
}

/// Parses `text` as TOML into `T` and hands it, with a [`Locator`] for later checks, to
/// `then`. Syntax and schema errors name `origin`, line, column and the field's path: the
/// earliest syntax error (the parser recovers and reports every error; an unterminated
/// string is reported where its line ends, not where the next line then fails), and for
/// an unknown or missing key the key itself (serde names it in the message, at its
/// table's path).
pub(crate) fn parse_located<T: serde::de::DeserializeOwned, R>(
    text: &str,
    origin: &str,
    then: impl FnOnce(T, &Locator<'_>) -> Result<R, ScenarioError>,
) -> Result<R, ScenarioError> {
    let root = DeTable::parse(text).map_err(|first| {
        let (_, errors) = DeTable::parse_recoverable(text);
        let e = errors
            .iter()
            .min_by_key(|e| e.span().map_or(usize::MAX, |s| s.start))
            .unwrap_or(&first);
        let offset = e.span().map_or(0, |s| s.start);
        Locator::new(origin, text, None).at(
            offset,
            syntax_field(text, offset),
            format!("invalid TOML: {}", e.message()),
        )
    })?;
    let loc = Locator::new(origin, text, Some(&root));
    let de = toml::Deserializer::from(root.clone());
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut field = serde_path(e.path());
        let inner = e.inner();
        let message = inner.message().to_owned();
        for prefix in ["unknown field `", "missing field `"] {
            if let Some(key) = message
                .strip_prefix(prefix)
                .and_then(|r| r.split('`').next())
            {
                if field == key || field.ends_with(&format!(".{key}")) {
                    continue;
                }
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
        }
        let offset = inner
            .span()
            .map_or_else(|| loc.offset_of(&field), |s| s.start);
        loc.at(offset, field, message)
    })?;
    then(value, &loc)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The field a syntax error at byte `offset` is in, read from the text itself (the
/// document did not parse, so there is no tree): the enclosing `[table]` or `[[array]]`
/// header (with the item's index) and the key written on the error's line.
pub(crate) fn syntax_field(text: &str, offset: usize) -> String {
    let (line_no, _) = line_column(text, offset);
    let mut header = String::new();
    let mut array_counts: Vec<(String, usize)> = Vec::new();
    let mut key = String::new();
    for (i, line) in text.lines().enumerate().take(line_no) {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let index = match array_counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    array_counts.push((name.clone(), 1));
                    0
                }
            };
            header = format!("{name}[{index}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = name.trim().to_owned();
        }
        if i + 1 == line_no {
            key = t
                .split_once('=')
                .map(|(k, _)| k.trim())
                .filter(|k| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_alphanumeric() || "_-.\"' ".contains(c))
                })
                .map(|k| k.replace(['"', '\''], ""))
                .unwrap_or_default();
        }
    }
    match (header.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => header,
        (false, false) => format!("{header}.{key}"),
    }
}

/// The path `serde_path_to_error` reports, in scenario notation (`phase[1].arrival`).
pub(crate) fn serde_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
            }
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(
            segments("phase[1].arrival.rate"),
            vec![
                Seg::Key("phase".into()),
                Seg::Index(1),
                Seg::Key("arrival".into()),
                Seg::Key("rate".into())
            ]
        );
        assert_eq!(segments(""), vec![]);
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 7));
    }

    #[test]
    fn syntax_field_names_header_and_key() {
        let text =
            "name = \"x\"\n[[phase]]\nduration = \"1s\"\n[[phase]]\narrival = { rate = \"8/s }\n";
        let at = text.find("arrival").unwrap();
        assert_eq!(syntax_field(text, at), "phase[1].arrival");
        assert_eq!(syntax_field(text, 2), "name");
    }
}
