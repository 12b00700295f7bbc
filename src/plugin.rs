//! Connector plugins (hub specification §ConnectorPlugin): a registry of provider factories
//! by type name, each building an [`LLMProvider`] from a string map (a TOML table, a
//! config file section), so a new provider is added by registering a plugin — no hub code
//! changes. OpenAI, Azure and Anthropic are registered as [`OpenAiPlugin`], [`AzurePlugin`] and
//! [`AnthropicPlugin`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::clock::Clock;
use crate::provider::{
    AnthropicConfig, AnthropicConnector, AzureConfig, AzureConnector, ConfigError, LLMProvider,
    OpenAIConnector, OpenAiConfig,
};

/// A plugin could not build a provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// No plugin is registered under this type name.
    #[error("no connector plugin named `{0}`")]
    Unknown(String),
    /// The plugin rejected the configuration.
    #[error("connector `{plugin}`: {source}")]
    Config {
        /// The plugin's type name.
        plugin: String,
        /// What was wrong.
        #[source]
        source: ConfigError,
    },
}

/// A factory of one kind of provider.
pub trait ConnectorPlugin: Send + Sync + fmt::Debug {
    /// The type name configs use to pick this plugin (`"openai"`, `"azure"`).
    fn name(&self) -> &str;

    /// Builds a provider from `config` (string keys and values), reading time from `clock`.
    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError>;
}

/// Reads `config` through the provider's environment-variable names: each name is looked
/// up as itself and as its lowercase short alias (`OPENAI_API_KEY` → `api_key`).
fn lookup<'a>(
    config: &'a HashMap<String, String>,
    aliases: &'a [(&str, &str)],
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        config.get(name).cloned().or_else(|| {
            aliases
                .iter()
                .find(|(env, _)| *env == name)
                .and_then(|(_, short)| config.get(*short).cloned())
        })
    }
}

/// OpenAI and OpenAI-compatible servers. Keys: `api_key` (required), `base_url`,
/// `organization`, `timeout_secs`, `max_retries`, `provider_id` (or the `OPENAI_*`
/// variable names `OpenAiConfig::from_lookup` documents).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiPlugin;

impl ConnectorPlugin for OpenAiPlugin {
    fn name(&self) -> &str {
        "openai"
    }

    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
        const ALIASES: &[(&str, &str)] = &[
            ("OPENAI_API_KEY", "api_key"),
            ("OPENAI_BASE_URL", "base_url"),
            ("OPENAI_ORGANIZATION", "organization"),
            ("OPENAI_PROJECT_ID", "project"),
            ("OPENAI_TIMEOUT_SECS", "timeout_secs"),
            ("OPENAI_MAX_RETRIES", "max_retries"),
        ];
        let mut c = OpenAiConfig::from_lookup(lookup(config, ALIASES))?;
        if let Some(id) = config.get("provider_id") {
            c.provider_id = id.clone();
        }
        Ok(Arc::new(OpenAIConnector::new(c, clock)?))
    }
}

/// Azure OpenAI deployments. Keys: `api_key`, `endpoint`, `deployment` (required),
/// `api_version`, `timeout_secs`, `max_retries`, `provider_id` (or the `AZURE_OPENAI_*`
/// variable names `AzureConfig::from_lookup` documents).
#[derive(Debug, Clone, Copy, Default)]
pub struct AzurePlugin;

impl ConnectorPlugin for AzurePlugin {
    fn name(&self) -> &str {
        "azure"
    }

    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
        const ALIASES: &[(&str, &str)] = &[
            ("AZURE_OPENAI_API_KEY", "api_key"),
            ("AZURE_OPENAI_AD_TOKEN", "ad_token"),
            ("AZURE_OPENAI_ENDPOINT", "endpoint"),
            ("AZURE_OPENAI_DEPLOYMENT", "deployment"),
            ("OPENAI_API_VERSION", "api_version"),
            ("OPENAI_TIMEOUT_SECS", "timeout_secs"),
            ("OPENAI_MAX_RETRIES", "max_retries"),
        ];
        let mut c = AzureConfig::from_lookup(lookup(config, ALIASES))?;
        if let Some(id) = config.get("provider_id") {
            c.provider_id = id.clone();
        }
        Ok(Arc::new(AzureConnector::new(c, clock)?))
    }
}

/// The Anthropic Messages API. Keys: `api_key` (required), `base_url`, `version`, `beta`,
/// `timeout_secs`, `max_retries`, `provider_id` (or the `ANTHROPIC_*` variable names
/// `AnthropicConfig::from_lookup` documents).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicPlugin;

impl ConnectorPlugin for AnthropicPlugin {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
        const ALIASES: &[(&str, &str)] = &[
            ("ANTHROPIC_API_KEY", "api_key"),
            ("ANTHROPIC_BASE_URL", "base_url"),
            ("ANTHROPIC_VERSION", "version"),
            ("ANTHROPIC_BETA", "beta"),
            ("ANTHROPIC_TIMEOUT_SECS", "timeout_secs"),
            ("ANTHROPIC_MAX_RETRIES", "max_retries"),
        ];
        let mut c = AnthropicConfig::from_lookup(lookup(config, ALIASES))?;
        if let Some(id) = config.get("provider_id") {
            c.provider_id = id.clone();
        }
        Ok(Arc::new(AnthropicConnector::new(c, clock)?))
    }
}

/// Plugins by type name.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    plugins: HashMap<String, Arc<dyn ConnectorPlugin>>,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in plugins: `openai`, `azure` and `anthropic`.
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(OpenAiPlugin));
        r.register(Arc::new(AzurePlugin));
        r.register(Arc::new(AnthropicPlugin));
        r
    }

    /// Adds `plugin` under its name, replacing any plugin of that name.
    pub fn register(&mut self, plugin: Arc<dyn ConnectorPlugin>) {
        self.plugins.insert(plugin.name().to_owned(), plugin);
    }

    /// The registered type names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugins.keys().cloned().collect();
        names.sort();
        names
    }

    /// Builds a provider with the plugin named `plugin` from `config`.
    pub fn create(
        &self,
        plugin: &str,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, PluginError> {
        let p = self
            .plugins
            .get(plugin)
            .ok_or_else(|| PluginError::Unknown(plugin.to_owned()))?;
        p.create(config, clock)
            .map_err(|source| PluginError::Config {
                plugin: plugin.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn builtins_build_openai_and_azure_from_config_maps() {
        let r = PluginRegistry::with_builtins();
        assert_eq!(r.names(), ["anthropic", "azure", "openai"]);
        let clock = Arc::new(ManualClock::new(0));
        let o = r
            .create(
                "openai",
                &map(&[
                    ("api_key", "k"),
                    ("base_url", "http://127.0.0.1:1/v1"),
                    ("provider_id", "local"),
                ]),
                clock.clone(),
            )
            .expect("valid");
        assert_eq!(o.provider_id(), "local");
        let a = r
            .create(
                "azure",
                &map(&[
                    ("api_key", "k"),
                    ("endpoint", "http://127.0.0.1:1"),
                    ("deployment", "d"),
                ]),
                clock.clone(),
            )
            .expect("valid");
        assert_eq!(a.provider_id(), "azure");
        assert!(matches!(
            r.create("azure", &map(&[("api_key", "k")]), clock.clone()),
            Err(PluginError::Config { .. })
        ));
        let c = r
            .create(
                "anthropic",
                &map(&[("api_key", "k"), ("base_url", "http://127.0.0.1:1")]),
                clock.clone(),
            )
            .expect("valid");
        assert_eq!(c.provider_id(), "anthropic");
        assert_eq!(c.admission_rule(), crate::provider::anthropic::ADMISSION);
        assert!(matches!(
            r.create("anthropic", &map(&[]), clock.clone()),
            Err(PluginError::Config { .. })
        ));
        assert_eq!(
            r.create("bedrock", &map(&[]), clock).unwrap_err(),
            PluginError::Unknown("bedrock".into())
        );
    }

    /// A third-party provider type registered without touching hub code.
    #[derive(Debug)]
    struct Alias;

    impl ConnectorPlugin for Alias {
        fn name(&self) -> &str {
            "local-llm"
        }
        fn create(
            &self,
            config: &HashMap<String, String>,
            clock: Arc<dyn Clock>,
        ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
            let mut c = config.clone();
            c.entry("provider_id".into()).or_insert("local-llm".into());
            c.entry("api_key".into()).or_insert("unused".into());
            OpenAiPlugin.create(&c, clock)
        }
    }

    #[test]
    fn a_new_provider_type_is_added_by_registering_a_plugin() {
        let mut r = PluginRegistry::with_builtins();
        r.register(Arc::new(Alias));
        let p = r
            .create(
                "local-llm",
                &map(&[("base_url", "http://127.0.0.1:1/v1")]),
                Arc::new(ManualClock::new(0)),
            )
            .expect("valid");
        assert_eq!(p.provider_id(), "local-llm");
    }
}
