//! Reading and checking a configuration file; every error names the file, line and field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{MockConfig, ModelKind};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML for [`MockConfig`] (syntax, unknown field, wrong type).
    #[error("{origin}:{line}: field `{field}`: {message}")]
    Parse {
        /// Where the text came from (a path, or a name given by the caller).
        origin: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// The dotted field path, e.g. `deployments.rpm_window` (empty when unknown).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The values parse but do not make a usable mock (unknown model, duplicate id, …).
    #[error("{origin}:{line}: field `{field}`: {message}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the field (0 when the field is not written in the text).
        line: usize,
        /// The field path with list indices, e.g. `deployments[1].model`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl MockConfig {
    /// Parses and checks a TOML configuration; `origin` names it in errors (a path or
    /// e.g. `"scenario foo.toml [mock]"`).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: MockConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let (line, field) = match e.span() {
                Some(_) => (line_of(text, at), field_at(text, at)),
                None => (0, String::new()),
            };
            ConfigError::Parse {
                origin: origin.to_owned(),
                line,
                field,
                message: e.message().trim_end_matches('.').to_owned(),
            }
        })?;
        let written =
            |key: &str| toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key(key));
        if written("models") && !written("deployments") {
            // The default deployments name the default models; a file that replaces the
            // models but writes no deployments keeps only the defaults whose model it lists.
            let models: HashSet<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
            let kept: Vec<_> = config
                .deployments
                .iter()
                .filter(|d| models.contains(d.model.as_str()))
                .cloned()
                .collect();
            config.deployments = kept;
        }
        config.check().map_err(|p| p.into_error(origin, text))?;
        Ok(config)
    }

    /// Checks a configuration built in code (what [`Self::from_toml_str`] checks after
    /// parsing): ids present and unique, deployments naming known models, probabilities in
    /// `0..=1`, usable latency and length parameters. Errors have origin `<config>`, line 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|p| p.into_error("<config>", ""))
    }

    /// Reads and checks a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks what serde cannot: ids present and unique, references resolve, parameters
    /// usable.
    fn check(&self) -> Result<(), Problem> {
        if let Some(p) = self.latency.problem() {
            return Err(Problem("latency", None, "ttft_p99", p));
        }
        if let Some(p) = self.output_tokens.problem() {
            return Err(Problem("output_tokens", None, "distribution", p));
        }
        if self.organizations.is_empty() {
            return Err(Problem(
                "",
                None,
                "organizations",
                "at least one organization is needed".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, org) in self.organizations.iter().enumerate() {
            if org.id.is_empty() || !seen.insert(org.id.as_str()) {
                let msg = format!("organization id {:?} is empty or repeated", org.id);
                return Err(Problem("organizations", Some(i), "id", msg));
            }
        }
        let mut models = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if m.id.is_empty() || !models.insert(m.id.as_str()) {
                let msg = format!("model id {:?} is empty or repeated", m.id);
                return Err(Problem("models", Some(i), "id", msg));
            }
            if m.kind == ModelKind::Embedding && m.dimensions == 0 {
                let msg = "an embedding model needs dimensions >= 1".to_owned();
                return Err(Problem("models", Some(i), "dimensions", msg));
            }
            if let Some(p) = fault_problem(&m.faults) {
                return Err(Problem("models", Some(i), "faults", p));
            }
        }
        if let Some((index, key, message)) = self.anthropic.problem() {
            let table = if index.is_some() {
                "anthropic.models"
            } else {
                "anthropic"
            };
            return Err(Problem(table, index, key, message));
        }
        let mut names = HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            if d.name.is_empty() || !names.insert(d.name.as_str()) {
                let msg = format!("deployment name {:?} is empty or repeated", d.name);
                return Err(Problem("deployments", Some(i), "name", msg));
            }
            if !models.contains(d.model.as_str()) {
                let msg = format!("deployment model {:?} is not among models", d.model);
                return Err(Problem("deployments", Some(i), "model", msg));
            }
            if d.rpm_window.is_zero() || d.rpm_window > std::time::Duration::from_secs(60) {
                let msg = format!("rpm_window {:?} must be within (0, 60s]", d.rpm_window);
                return Err(Problem("deployments", Some(i), "rpm_window", msg));
            }
            if let Some(p) = fault_problem(&d.faults) {
                return Err(Problem("deployments", Some(i), "faults", p));
            }
        }
        Ok(())
    }
}

/// A failed check: (table, list index, key, message).
struct Problem(&'static str, Option<usize>, &'static str, String);

impl Problem {
    fn into_error(self, origin: &str, text: &str) -> ConfigError {
        let Problem(table, index, key, message) = self;
        let field = match (table, index) {
            ("", _) => key.to_owned(),
            (t, Some(i)) => format!("{t}[{i}].{key}"),
            (t, None) => format!("{t}.{key}"),
        };
        let line = locate(text, table, index, key);
        let message = if line == 0 && !text.is_empty() && !text.contains(&format!("[[{table}]]")) {
            format!("{message} (a list not written in the file keeps its defaults; write [[{table}]] to replace them)")
        } else {
            message
        };
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            field,
            message,
        }
    }
}

fn fault_problem(f: &super::FaultConfig) -> Option<String> {
    [
        ("error_500", f.error_500),
        ("error_503", f.error_503),
        ("insufficient_quota", f.insufficient_quota),
        ("drop_mid_stream", f.drop_mid_stream),
        ("stall", f.stall),
    ]
    .into_iter()
    .find(|(_, p)| !(0.0..=1.0).contains(p))
    .map(|(name, p)| format!("{name} probability {p} is outside 0..=1"))
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The table header (`[a.b]` or `[[a]]`) in force at line `line` (1-based), without brackets.
fn table_at(text: &str, line: usize) -> String {
    text.lines()
        .take(line)
        .filter_map(header)
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn header(line: &str) -> Option<&str> {
    let l = line.trim();
    l.strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(str::trim)
}

/// The dotted field at byte offset `at`: the table in force plus the key on that line.
fn field_at(text: &str, at: usize) -> String {
    let line = line_of(text, at);
    let content = text.lines().nth(line - 1).unwrap_or_default();
    let key = content
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .unwrap_or("");
    if let Some(h) = header(content) {
        return h.to_owned();
    }
    let table = table_at(text, line);
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Best-effort 1-based line where `key` is written in the `index`-th `[[table]]` (or
/// `[table]`, or the top level when `table` is empty); 0 when it is not written.
fn locate(text: &str, table: &str, index: Option<usize>, key: &str) -> usize {
    let mut current = String::new();
    let mut count = 0usize;
    for (n, line) in text.lines().enumerate() {
        if let Some(h) = header(line) {
            current = h.to_owned();
            if h == table {
                count += 1;
            }
            continue;
        }
        let in_table = current == table && index.is_none_or(|i| count == i + 1);
        let is_key = line
            .split_once('=')
            .is_some_and(|(k, _)| k.trim().trim_matches('"') == key);
        if in_table && is_key {
            return n + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_the_default() {
        let c = MockConfig::from_toml_str("", "empty").unwrap();
        assert_eq!(c, MockConfig::default());
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let text = "seed = 1\n\n[[deployments]]\nname = \"d\"\nmodel = \"gpt-4o\"\ntmp = 5\n";
        let err = MockConfig::from_toml_str(text, "mock.toml").unwrap_err();
        let ConfigError::Parse {
            origin,
            line,
            field,
            message,
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!((origin.as_str(), *line), ("mock.toml", 6));
        assert_eq!(field, "deployments.tmp");
        assert!(message.contains("unknown field"), "{message}");
        assert!(err
            .to_string()
            .starts_with("mock.toml:6: field `deployments.tmp`"));
    }

    #[test]
    fn wrong_type_names_line_and_field() {
        let text = "[latency]\nzero = false\nttft_median = \"fast\"\n";
        let err = MockConfig::from_toml_str(text, "f").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("f:3: field `latency.ttft_median`"), "{msg}");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn unknown_deployment_model_is_located() {
        let text = "[[deployments]]\nname = \"a\"\nmodel = \"gpt-4o\"\n\n[[deployments]]\nname = \"b\"\nmodel = \"nope\"\n";
        let err = MockConfig::from_toml_str(text, "f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:7: field `deployments[1].model`: deployment model \"nope\" is not among models"
        );
    }

    /// Models without deployments: the default deployments naming models the file
    /// dropped go too (they used to make the file invalid at `f:0:`).
    #[test]
    fn models_without_deployments_keep_the_defaults_that_still_fit() {
        let text = "[[models]]\nid = \"gpt-4o\"\n";
        let cfg = MockConfig::from_toml_str(text, "f").expect("valid without [[deployments]]");
        assert_eq!(cfg.models.len(), 1);
        assert!(cfg.deployments.is_empty(), "{:?}", cfg.deployments);
        let text = "[[models]]\nid = \"gpt-4o-mini\"\n";
        let cfg = MockConfig::from_toml_str(text, "f").expect("valid");
        assert_eq!(
            cfg.deployments
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["gpt-4o-mini"],
            "the default deployment of a listed model stays"
        );
    }

    /// A deployments list written in the file is never pruned: a wrong model is an error
    /// located at its line.
    #[test]
    fn written_deployments_still_must_name_listed_models() {
        let text = "[[models]]\nid = \"gpt-4o\"\n\n[[deployments]]\nname = \"d\"\nmodel = \"gpt-4o-mini\"\n";
        let err = MockConfig::from_toml_str(text, "f")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f:6: field `deployments[0].model`"),
            "{err}"
        );
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
seed = 7
max_body_bytes = 1000
azure_keys = ["az-1"]

[latency]
ttft_median = "300ms"
ttft_p99 = "2s"
per_token = "15ms"

[output_tokens]
distribution = "uniform"
min = 10
max = 20

[headers]
retry_after_ms = false

[[organizations]]
id = "org-a"
keys = ["sk-a"]

[[models]]
id = "gpt-4o-mini"
encoding = "o200k_base"
rpm = 3
tpm = 1000
replenish = "sliding"

[models.faults]
error_500 = 0.1
insufficient_quota = 0.25
should_retry = false

[[deployments]]
name = "chat"
model = "gpt-4o-mini"
tpm = 10000
rpm_window = "1s"
"#;
        let c = MockConfig::from_toml_str(text, "full").unwrap();
        assert!(!c.latency.zero);
        assert_eq!(c.latency.ttft_median, std::time::Duration::from_millis(300));
        assert!(!c.headers.retry_after_ms && c.headers.retry_after);
        assert_eq!(c.models.len(), 1);
        assert_eq!(c.models[0].faults.should_retry, Some(false));
        assert_eq!(c.models[0].faults.insufficient_quota, 0.25);
        assert_eq!(c.deployments[0].limits().requests_per_window(), 1);
        assert_eq!(
            c.output_tokens,
            crate::generation::OutputTokens::Uniform { min: 10, max: 20 }
        );
    }
}
