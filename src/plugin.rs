//! Connector plugins (hub specification §ConnectorPlugin): a registry of provider factories
//! by type name, each building an [`LLMProvider`] from a string map (a TOML table, a
//! config file section), so a new provider is added by registering a plugin — no hub code
//! changes. OpenAI, Azure and Anthropic are registered as [`OpenAiPlugin`], [`AzurePlugin`] and
//! [`AnthropicPlugin`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::clock::Clock;
use crate::provider::admission::AdmissionRule;
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

/// A server a run sends to, in neutral terms; a plugin turns it into its own config map
/// ([`ConnectorPlugin::endpoint_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's address.
    pub url: EndpointUrl,
    /// The API key to send.
    pub api_key: String,
    /// The model requests name.
    pub model: String,
    /// The deployment, for providers that route by one (Azure); `None` = the model's name.
    pub deployment: Option<String>,
    /// An API version, for providers that take one in the URL (Azure); `None` = default.
    pub api_version: Option<String>,
    /// Retries after the first try, at most.
    pub max_retries: u32,
}

/// Where an [`Endpoint`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointUrl {
    /// A server's root (`http://127.0.0.1:PORT`, the embedded mock): the plugin adds its
    /// API's path prefix (`/v1` for OpenAI).
    Root(String),
    /// A URL as a user wrote it for this provider (used as the plugin's base URL as is).
    Given(String),
}

/// A factory of one kind of provider, and the provider-level facts every driver looks up
/// by its name instead of matching on a provider kind: the admission rule, the API key's
/// environment variable and how to reach a given server.
pub trait ConnectorPlugin: Send + Sync + fmt::Debug {
    /// The type name configs use to pick this plugin (`"openai"`, `"azure"`,
    /// `"anthropic"`).
    fn name(&self) -> &str;

    /// Builds a provider from `config` (string keys and values), reading time from `clock`.
    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError>;

    /// How the provider charges a request at admission: the rule its connectors report
    /// through [`LLMProvider::admission_rule`] (default: OpenAI's).
    fn admission_rule(&self) -> AdmissionRule {
        AdmissionRule::OPENAI
    }

    /// The environment variable the provider's SDK reads the API key from (default
    /// `API_KEY`; the built-in plugins name their SDK's variable).
    fn api_key_env(&self) -> &'static str {
        "API_KEY"
    }

    /// The config map that reaches `endpoint` (for [`create`](Self::create)). Default:
    /// `api_key`, `max_retries` and `base_url` = the endpoint's URL as it is (root or
    /// given).
    fn endpoint_config(&self, endpoint: &Endpoint) -> HashMap<String, String> {
        let (EndpointUrl::Root(url) | EndpointUrl::Given(url)) = &endpoint.url;
        endpoint_map(endpoint, &[("base_url", Some(url))])
    }

    /// [`create`](Self::create) on [`endpoint_config`](Self::endpoint_config).
    fn connect(
        &self,
        endpoint: &Endpoint,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
        self.create(&self.endpoint_config(endpoint), clock)
    }
}

/// The built-in plugins, by name: `openai`, `azure`, `anthropic`.
static BUILTINS: [&dyn ConnectorPlugin; 3] = [&OpenAiPlugin, &AzurePlugin, &AnthropicPlugin];

/// The built-in plugin named `name` (`openai`, `azure`, `anthropic`), if there is one.
pub fn builtin(name: &str) -> Option<&'static dyn ConnectorPlugin> {
    BUILTINS.iter().copied().find(|p| p.name() == name)
}

/// `api_key` and `max_retries` of `e`, plus `(key, value)` pairs.
fn endpoint_map(e: &Endpoint, more: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let mut map = HashMap::from([
        ("api_key".to_owned(), e.api_key.clone()),
        ("max_retries".to_owned(), e.max_retries.to_string()),
    ]);
    for (k, v) in more {
        if let Some(v) = v {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    map
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

    fn api_key_env(&self) -> &'static str {
        "OPENAI_API_KEY"
    }

    /// `base_url`: a root with `/v1` added, a given URL as is.
    fn endpoint_config(&self, e: &Endpoint) -> HashMap<String, String> {
        let base = match &e.url {
            EndpointUrl::Root(root) => format!("{}/v1", root.trim_end_matches('/')),
            EndpointUrl::Given(url) => url.clone(),
        };
        endpoint_map(e, &[("base_url", Some(&base))])
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

    fn admission_rule(&self) -> AdmissionRule {
        AdmissionRule::AZURE
    }

    fn api_key_env(&self) -> &'static str {
        "AZURE_OPENAI_API_KEY"
    }

    /// `endpoint` (the resource's root either way), `deployment` (default: the model),
    /// `api_version` when given.
    fn endpoint_config(&self, e: &Endpoint) -> HashMap<String, String> {
        let (EndpointUrl::Root(url) | EndpointUrl::Given(url)) = &e.url;
        let deployment = e.deployment.as_deref().unwrap_or(&e.model);
        endpoint_map(
            e,
            &[
                ("endpoint", Some(url)),
                ("deployment", Some(deployment)),
                ("api_version", e.api_version.as_deref()),
            ],
        )
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

    fn admission_rule(&self) -> AdmissionRule {
        crate::provider::anthropic::ADMISSION
    }

    fn api_key_env(&self) -> &'static str {
        "ANTHROPIC_API_KEY"
    }

    // `endpoint_config`: the default, `base_url` = the API root either way (the connector
    // adds `/v1/…`).
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
        debug_assert!(BUILTINS.iter().all(|p| r.plugins.contains_key(p.name())));
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

    #[test]
    fn each_builtin_maps_an_endpoint_to_its_own_config_keys() {
        let e = Endpoint {
            url: EndpointUrl::Root("http://127.0.0.1:9".into()),
            api_key: "k".into(),
            model: "m".into(),
            deployment: None,
            api_version: Some("2024-10-21".into()),
            max_retries: 5,
        };
        let get = |name: &str, key: &str| {
            builtin(name)
                .expect("builtin")
                .endpoint_config(&e)
                .get(key)
                .cloned()
        };
        assert_eq!(
            get("openai", "base_url").as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(
            get("anthropic", "base_url").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            get("azure", "endpoint").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(get("azure", "deployment").as_deref(), Some("m"));
        assert_eq!(get("azure", "api_version").as_deref(), Some("2024-10-21"));
        assert_eq!(get("openai", "max_retries").as_deref(), Some("5"));
        let given = Endpoint {
            url: EndpointUrl::Given("https://gw.example/openai/v1".into()),
            ..e
        };
        let openai = builtin("openai").expect("builtin");
        assert_eq!(
            openai.endpoint_config(&given)["base_url"],
            "https://gw.example/openai/v1"
        );
        let clock = Arc::new(ManualClock::new(0));
        for name in ["openai", "azure", "anthropic"] {
            let p = builtin(name).expect("builtin");
            let c = p.connect(&given, clock.clone()).expect("connects");
            assert_eq!(c.provider_id(), name);
            assert_eq!(c.admission_rule(), p.admission_rule());
            assert_eq!(c.max_retries(), Some(5));
        }
        assert_eq!(
            builtin("azure").map(|p| p.api_key_env()),
            Some("AZURE_OPENAI_API_KEY")
        );
        assert!(builtin("bedrock").is_none());
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
