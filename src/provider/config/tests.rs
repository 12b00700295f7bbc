//! Tests of connector configuration: environment parsing, validation, redaction.

use super::*;

const SECRET: &str = "hunter2-very-secret-key";

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn openai_from_env_reads_every_variable() {
    let c = OpenAiConfig::from_lookup(env(&[
        ("OPENAI_API_KEY", SECRET),
        ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        ("OPENAI_ORGANIZATION", "org-1"),
        ("OPENAI_PROJECT_ID", "proj-1"),
        ("OPENAI_TIMEOUT_SECS", "2.5"),
        ("OPENAI_MAX_RETRIES", "5"),
    ]))
    .unwrap();
    assert_eq!(c.api_key.expose(), SECRET);
    assert_eq!(c.base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(c.organization.as_deref(), Some("org-1"));
    assert_eq!(c.project.as_deref(), Some("proj-1"));
    assert_eq!(c.timeout, Duration::from_millis(2500));
    assert_eq!(c.max_retries, 5);
}

#[test]
fn openai_from_env_defaults_and_org_id_fallback() {
    let c = OpenAiConfig::from_lookup(env(&[
        ("OPENAI_API_KEY", SECRET),
        ("OPENAI_ORG_ID", "org-2"),
        ("OPENAI_BASE_URL", ""),
    ]))
    .unwrap();
    assert_eq!(c.base_url, OPENAI_DEFAULT_BASE_URL);
    assert_eq!(c.organization.as_deref(), Some("org-2"));
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.max_retries, DEFAULT_MAX_RETRIES);
}

#[test]
fn from_env_reports_missing_and_malformed_variables() {
    assert_eq!(
        OpenAiConfig::from_lookup(env(&[])),
        Err(ConfigError::MissingEnvironmentVariable("OPENAI_API_KEY"))
    );
    let bad_timeout = OpenAiConfig::from_lookup(env(&[
        ("OPENAI_API_KEY", "k"),
        ("OPENAI_TIMEOUT_SECS", "0"),
    ]));
    assert!(matches!(
        bad_timeout,
        Err(ConfigError::InvalidEnvironmentVariable {
            name: "OPENAI_TIMEOUT_SECS",
            ..
        })
    ));
    let bad_retries = OpenAiConfig::from_lookup(env(&[
        ("OPENAI_API_KEY", "k"),
        ("OPENAI_MAX_RETRIES", "-1"),
    ]));
    assert!(matches!(
        bad_retries,
        Err(ConfigError::InvalidEnvironmentVariable {
            name: "OPENAI_MAX_RETRIES",
            ..
        })
    ));
    let bad_url =
        OpenAiConfig::from_lookup(env(&[("OPENAI_API_KEY", "k"), ("OPENAI_BASE_URL", "nope")]));
    assert!(matches!(bad_url, Err(ConfigError::InvalidUrl { .. })));
}

#[test]
fn validate_accepts_keys_without_the_sk_prefix() {
    for key in ["EMPTY", "ollama", "token-abc123", "sk-proj-xyz"] {
        let c = OpenAiConfig::new(key).with_base_url("http://localhost:11434/v1");
        assert_eq!(c.validate(), Ok(()), "key {key:?}");
    }
}

#[test]
fn validate_rejects_blank_keys_bad_urls_and_zero_timeouts() {
    assert_eq!(
        OpenAiConfig::new("  ").validate(),
        Err(ConfigError::MissingApiKey)
    );
    assert!(matches!(
        OpenAiConfig::new("k\n").validate(),
        Err(ConfigError::InvalidApiKey { .. })
    ));
    for url in ["", "localhost:8080", "ftp://example.com/v1", "http://"] {
        let c = OpenAiConfig::new("k").with_base_url(url);
        assert!(
            matches!(c.validate(), Err(ConfigError::InvalidUrl { .. })),
            "url {url:?}"
        );
    }
    let mut c = OpenAiConfig::new("k");
    c.timeout = Duration::ZERO;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::InvalidParameter {
            name: "timeout",
            ..
        })
    ));
    let mut c = OpenAiConfig::new("k");
    c.provider_id = "OpenAI".into();
    assert!(matches!(
        c.validate(),
        Err(ConfigError::InvalidParameter {
            name: "provider_id",
            ..
        })
    ));
}

#[test]
fn secret_never_appears_in_config_map_or_debug() {
    let mut openai = OpenAiConfig::new(SECRET);
    openai.organization = Some("org-1".into());
    let azure = AzureConfig::new(SECRET, "https://r.openai.azure.com", "dep");
    let shown: Vec<(HashMap<String, String>, String)> = vec![
        (openai.to_config_map(), format!("{openai:?} {openai:#?}")),
        (azure.to_config_map(), format!("{azure:?} {azure:#?}")),
    ];
    for (map, debug) in shown {
        assert_eq!(map.get("api_key").map(String::as_str), Some(REDACTED));
        for (k, v) in &map {
            assert!(!k.contains(SECRET) && !v.contains(SECRET), "{k}={v}");
        }
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains(REDACTED));
    }
}

#[test]
fn config_map_lists_the_settings() {
    let m = OpenAiConfig::new("k").to_config_map();
    assert_eq!(m["provider_id"], "openai");
    assert_eq!(m["base_url"], OPENAI_DEFAULT_BASE_URL);
    assert_eq!(m["timeout_secs"], "60");
    assert_eq!(m["max_retries"], "2");
    let m = AzureConfig::new("k", "https://r.openai.azure.com", "dep").to_config_map();
    assert_eq!(m["deployment"], "dep");
    assert_eq!(m["api_version"], AZURE_DEFAULT_API_VERSION);
    assert_eq!(m["auth"], "api_key");
}

#[test]
fn azure_from_env_reads_key_or_entra_token() {
    let c = AzureConfig::from_lookup(env(&[
        ("AZURE_OPENAI_API_KEY", SECRET),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt4o-prod"),
        ("OPENAI_API_VERSION", "2024-02-15-preview"),
    ]))
    .unwrap();
    assert_eq!(c.auth, AzureAuth::ApiKey);
    assert_eq!(c.deployment, "gpt4o-prod");
    assert_eq!(c.api_version, "2024-02-15-preview");
    let c = AzureConfig::from_lookup(env(&[
        ("AZURE_OPENAI_AD_TOKEN", "eyJ0eXAi"),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("AZURE_OPENAI_DEPLOYMENT", "d"),
    ]))
    .unwrap();
    assert_eq!(c.auth, AzureAuth::Bearer);
    assert_eq!(c.api_version, AZURE_DEFAULT_API_VERSION);
    assert_eq!(
        AzureConfig::from_lookup(env(&[
            ("AZURE_OPENAI_API_KEY", "k"),
            ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ])),
        Err(ConfigError::MissingEnvironmentVariable(
            "AZURE_OPENAI_DEPLOYMENT"
        ))
    );
}

#[test]
fn azure_validate_requires_deployment_and_version() {
    let mut c = AzureConfig::new("k", "https://r.openai.azure.com", " ");
    assert!(matches!(
        c.validate(),
        Err(ConfigError::InvalidParameter {
            name: "deployment",
            ..
        })
    ));
    c.deployment = "d".into();
    c.api_version.clear();
    assert!(matches!(
        c.validate(),
        Err(ConfigError::InvalidParameter {
            name: "api_version",
            ..
        })
    ));
}
