//! The `[anthropic]` table: every setting parses, unknown fields are refused with file,
//! line and field, and checks name the model's index.

use std::time::Duration;

use mock_providers::provider::anthropic::{OtpmRule, OverloadedAt};
use mock_providers::MockConfig;

#[test]
fn full_anthropic_table_parses() {
    let text = r#"
seed = 3

[anthropic]
keys = ["sk-ant-1"]
forbidden_keys = ["sk-ant-ro"]
organization_id = "org-1"
versions = ["2023-06-01"]
otpm_rule = "generated"
rpm_interval = "1s"
round_token_remaining = true

[[anthropic.models]]
id = "claude-sonnet-4-5"
display_name = "Claude Sonnet 4.5"
created_at = "2025-09-29T00:00:00Z"
encoding = "o200k_base"
rpm = 50
itpm = 30000
otpm = 8000
count_tokens_rpm = 100
max_tokens = 64000
context_window = 200000

[anthropic.models.faults]
error_500 = 0.01
error_529 = 0.02
stream_overloaded = 0.03
stream_overloaded_at = "start"
drop_mid_stream = 0.04
stall = 0.05
stall_for = "2s"
should_retry = true
"#;
    let c = MockConfig::from_toml_str(text, "mock.toml").unwrap();
    let a = &c.anthropic;
    assert_eq!(a.otpm_rule, OtpmRule::Generated);
    assert_eq!(a.versions, ["2023-06-01"]);
    assert_eq!(a.rpm_interval, Some(Duration::from_secs(1)));
    assert!(a.round_token_remaining);
    assert_eq!(a.models.len(), 1);
    let m = &a.models[0];
    assert_eq!(
        (m.rpm, m.itpm, m.otpm, m.count_tokens_rpm),
        (50, 30_000, 8_000, 100)
    );
    assert_eq!(m.faults.stream_overloaded_at, OverloadedAt::Start);
    assert_eq!(m.faults.stall_for, Duration::from_secs(2));
    assert_eq!(m.faults.should_retry, Some(true));
    // OpenAI and Azure keep their defaults.
    assert_eq!(c.models, MockConfig::default().models);
}

#[test]
fn unknown_fields_name_file_line_and_field() {
    let text =
        "[anthropic]\notpm_rule = \"max_tokens\"\n\n[[anthropic.models]]\nid = \"c\"\ntpm = 5\n";
    let err = MockConfig::from_toml_str(text, "mock.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("mock.toml:6: field `anthropic.models.tpm`"),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");
    let text = "[anthropic]\notpm_rule = \"sometimes\"\n";
    let err = MockConfig::from_toml_str(text, "m")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("m:2: field `anthropic.otpm_rule`"), "{err}");
}

#[test]
fn checks_locate_the_model() {
    let text = "[[anthropic.models]]\nid = \"a\"\n\n[[anthropic.models]]\nid = \"b\"\notpm = 0\n";
    let err = MockConfig::from_toml_str(text, "f")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "f:6: field `anthropic.models[1].otpm`: otpm must be at least 1"
    );
    let text = "[anthropic]\nrpm_interval = \"2m\"\n";
    let err = MockConfig::from_toml_str(text, "f")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("f:2: field `anthropic.rpm_interval`"),
        "{err}"
    );
    let text = "[[anthropic.models]]\nid = \"a\"\ncreated_at = \"yesterday\"\n";
    let err = MockConfig::from_toml_str(text, "f")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("f:3: field `anthropic.models[0].created_at`"),
        "{err}"
    );
    let text = "[[anthropic.models]]\nid = \"a\"\n[anthropic.models.faults]\nerror_529 = 2.0\n";
    let err = MockConfig::from_toml_str(text, "f")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("error_529 probability 2 is outside 0..=1"),
        "{err}"
    );
}
