//! The `Hub` facade built from TOML, against real HTTP to in-process `mock-providers`:
//! `complete` and `stream` (usage, TTFT in the metrics), credentials from `[auth]`,
//! fallback from a 429-ing provider (and the cooldown after it), cache hits that skip the
//! provider, metrics totals equal to the mock's own counters, and config errors that name
//! the line and field.

use connector_hub::hub::{Hub, HubError};
use connector_hub::middleware::PipelineError;
use connector_hub::provider::{CompletionRequest, ConnectorError, Message, StreamChunk};
use futures::StreamExt;
use mock_providers::config::{ModelConfig, OrganizationConfig};
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";
const KEY: &str = "openai/org-mock/gpt-4o-mini";

async fn start(config: MockConfig) -> MockHandle {
    MockServer::start(config).await.expect("mock starts")
}

/// The mock with `rpm` requests per minute for MODEL.
fn with_rpm(rpm: u64) -> MockConfig {
    let mut c = MockConfig::default();
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, rpm, 1_000_000);
    }
    c
}

async fn stats(mock: &MockHandle) -> Value {
    reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("json")
}

/// A `[[provider]]` table for an OpenAI-compatible mock.
fn provider(id: &str, mock: &MockHandle, priority: u32, key: &str) -> String {
    format!(
        "[[provider]]\nid = \"{id}\"\nkind = \"openai\"\npriority = {priority}\n\
         config = {{ api_key = \"{key}\", base_url = \"{}/v1\", timeout_secs = 10 }}\n",
        mock.base_url()
    )
}

fn request(prompt: &str) -> CompletionRequest {
    let mut r = CompletionRequest::new(MODEL, vec![Message::user(prompt)]).with_max_tokens(16);
    r.temperature = Some(0.0);
    r
}

async fn collect(hub: &Hub, r: CompletionRequest) -> Vec<StreamChunk> {
    let s = hub.stream(r).await.expect("stream opens");
    s.map(|c| c.expect("no stream error")).collect().await
}

#[tokio::test]
async fn a_hub_from_toml_completes_and_streams_with_usage_and_ttft_in_its_metrics() {
    // The mock accepts one key; the provider config's key is wrong, `[auth]` has the right one.
    let mock = start(MockConfig {
        organizations: vec![OrganizationConfig {
            id: "org-mock".into(),
            keys: vec!["sk-right".into()],
        }],
        ..MockConfig::default()
    })
    .await;
    let toml = format!(
        "middleware = [\"auth\", \"logging\", \"rate_limit\", \"retry\", \"cache\", \"fallback\"]\n\
         selector = \"most_headroom\"\n\
         [auth]\nkeys = {{ main = \"sk-right\" }}\n\
         [[limits.key]]\nprovider = \"main\"\n\
         limit = {{ strategy = \"sliding_log\", limits = {{ rpm = 100 }} }}\n\
         {}",
        provider("main", &mock, 0, "sk-wrong")
    );
    let hub = Hub::from_toml_str(&toml).expect("valid config");
    assert_eq!(hub.provider_ids(), ["main"]);

    let response = hub
        .complete(request("Write one sentence."))
        .await
        .expect("completes");
    assert!(!response.text().is_empty());
    assert!(response.usage.output_tokens > 0);

    let chunks = collect(&hub, request("Write another sentence.")).await;
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert!(!text.is_empty(), "the stream carries content");
    let usage = chunks
        .last()
        .and_then(|c| c.usage)
        .expect("final usage chunk");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);

    let s = stats(&mock).await;
    assert_eq!(s["requests_total"], 2, "{s}");
    let snap = hub.metrics_snapshot();
    let series = snap
        .iter()
        .find(|x| x.provider == "main" && x.model == MODEL)
        .expect("a series");
    assert_eq!((series.requests, series.successes), (2, 2));
    assert_eq!(series.ttft.count, 1, "the stream's time to first token");
    assert_eq!(
        series.tokens_in + series.tokens_out,
        s["keys"][KEY]["tokens_used"].as_u64().expect("tokens used")
    );
    // The limiter recorded both calls' actual usage.
    let key = connector_hub::limiter::LimitKey::new("main", MODEL);
    let used = hub.limiter().usage_stats(&key).await.expect("stats");
    assert_eq!(used.requests_remaining(), Some(98));
    assert!(hub.prometheus_text().contains("hub_ttft_seconds_count"));
    mock.shutdown().await;
}

#[tokio::test]
async fn the_hub_falls_back_from_a_429ing_provider_and_then_skips_it_while_it_cools_down() {
    let busy = start(with_rpm(1)).await;
    let healthy = start(MockConfig::default()).await;
    let toml = format!(
        "middleware = [\"rate_limit\", \"retry\", \"fallback\"]\n{}{}",
        provider("busy", &busy, 0, "k"),
        provider("healthy", &healthy, 1, "k")
    );
    let hub = Hub::from_toml_str(&toml).expect("valid config");
    for i in 0..3 {
        hub.complete(request(&format!("Call {i}.")))
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    let b = stats(&busy).await;
    assert_eq!(b["keys"][KEY]["admitted"], 1, "{b}");
    assert_eq!(
        b["keys"][KEY]["throttled"]["requests"], 1,
        "one 429, then cooled down: {b}"
    );
    assert_eq!(b["requests_total"], 2, "{b}");
    let h = stats(&healthy).await;
    assert_eq!(h["keys"][KEY]["admitted"], 2, "{h}");
    // A stream falls back the same way (busy is still cooling down: straight to healthy).
    let chunks = collect(&hub, request("Stream.")).await;
    assert!(!chunks.is_empty());
    assert_eq!(stats(&healthy).await["keys"][KEY]["admitted"], 3);
    assert_eq!(stats(&busy).await["requests_total"], 2);
    busy.shutdown().await;
    healthy.shutdown().await;
}

#[tokio::test]
async fn a_cache_hit_skips_the_provider_and_streams_are_never_cached() {
    let mock = start(MockConfig::default()).await;
    let toml = format!(
        "middleware = [\"cache\", \"rate_limit\"]\n[cache]\nbytes = 1048576\nttl = \"5m\"\n{}",
        provider("main", &mock, 0, "k")
    );
    let hub = Hub::from_toml_str(&toml).expect("valid config");
    let first = hub
        .complete(request("Name a colour."))
        .await
        .expect("first");
    let second = hub
        .complete(request("Name a colour."))
        .await
        .expect("second");
    // The same response (a cached one carries no quota headers: they were not sent again).
    assert_eq!(
        (&first.id, first.text(), first.usage),
        (&second.id, second.text(), second.usage)
    );
    assert_eq!(first.meta.status, Some(200));
    assert_eq!(second.meta.status, None);
    let s = stats(&mock).await;
    assert_eq!(s["requests_total"], 1, "{s}");
    assert_eq!(s["keys"][KEY]["admitted"], 1, "{s}");
    let c = hub.cache_stats().await.expect("cache configured");
    assert_eq!((c.hits, c.misses, c.entries), (1, 1, 1));
    assert_eq!(
        hub.metrics_snapshot()[0].requests,
        1,
        "a hit is no provider call"
    );
    // The same request streamed goes to the provider, twice.
    collect(&hub, request("Name a colour.")).await;
    collect(&hub, request("Name a colour.")).await;
    assert_eq!(stats(&mock).await["requests_total"], 3);
    assert_eq!(hub.cache_stats().await.expect("cache").entries, 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn hub_metrics_totals_equal_the_mocks_stats() {
    let mock = start(with_rpm(4)).await;
    let toml = format!(
        "middleware = [\"logging\"]\n{}",
        provider("main", &mock, 0, "k")
    );
    let hub = Hub::from_toml_str(&toml).expect("valid config");
    let mut outcomes = (0, 0);
    for i in 0..6 {
        let r = request(&format!("Count to {i}."));
        let ok = if [0, 2, 5].contains(&i) {
            match hub.stream(r).await {
                Ok(s) => {
                    let items: Vec<_> = s.collect().await;
                    items.iter().all(Result::is_ok)
                }
                Err(e) => {
                    assert!(matches!(
                        e,
                        PipelineError::Provider(ConnectorError::RateLimit { .. })
                    ));
                    false
                }
            }
        } else {
            hub.complete(r).await.is_ok()
        };
        if ok {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
    }
    assert_eq!(outcomes, (4, 2), "4 RPM: four admitted, two throttled");
    let s = stats(&mock).await;
    let snap = hub.metrics_snapshot();
    assert_eq!(snap.len(), 1);
    let m = &snap[0];
    assert_eq!(m.requests, s["requests_total"].as_u64().expect("count"));
    assert_eq!(m.successes, s["keys"][KEY]["admitted"].as_u64().expect("n"));
    assert_eq!(
        m.rate_limited.get("requests").copied(),
        s["keys"][KEY]["throttled"]["requests"].as_u64()
    );
    assert_eq!(
        m.tokens_in + m.tokens_out,
        s["keys"][KEY]["tokens_used"].as_u64().expect("n")
    );
    assert_eq!(m.ttft.count, 2, "two streams opened and produced text");
    mock.shutdown().await;
}

#[test]
fn config_errors_name_the_line_and_the_field() {
    let err = |text: &str| Hub::from_toml_str(text).unwrap_err();
    let e = err("selector = \"priority\"\nretries = 3\n");
    assert_eq!((e.line(), e.field()), (Some(2), Some("retries")), "{e}");
    let e = err("[[provider]]\nid = \"a\"\nkind = \"bedrock\"\nconfig = { api_key = \"k\" }\n");
    assert_eq!(
        (e.line(), e.field()),
        (Some(3), Some("provider[0].kind")),
        "{e}"
    );
    assert!(e.to_string().contains("bedrock"), "{e}");
    let e = err("[[provider]]\nid = \"a\"\nkind = \"azure\"\nconfig = { api_key = \"k\" }\n");
    assert_eq!(
        (e.line(), e.field()),
        (Some(4), Some("provider[0].config")),
        "{e}"
    );
    let e = err(
        "[[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\" }\n\
         [[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\" }\n",
    );
    assert_eq!(
        (e.line(), e.field()),
        (Some(6), Some("provider[1].id")),
        "{e}"
    );
    let e =
        err("middleware = [\"retry\", \"sparkle\"]\n[[provider]]\nid = \"a\"\nkind = \"openai\"\n");
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.to_string().contains("sparkle"), "{e}");
    let e = err(
        "middleware = [\"retry\",\n  \"retry\"]\n[[provider]]\nid = \"a\"\nkind = \"openai\"\n\
         config = { api_key = \"k\" }\n",
    );
    assert_eq!(
        (e.line(), e.field()),
        (Some(2), Some("middleware[1]")),
        "{e}"
    );
    assert!(e.to_string().contains("`retry` is listed twice"), "{e}");
    let e = err(
        "[[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\" }\n\
         [[limits.key]]\nprovider = \"a\"\nlimit = { limits = { rpx = 5 } }\n",
    );
    assert_eq!(e.line(), Some(7), "{e}");
    assert!(e.to_string().contains("rpx"), "{e}");
    let e = err("[[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\" }\n[cache]\nttl = \"soon\"\n");
    assert_eq!(e.line(), Some(6), "{e}");

    let path = std::env::temp_dir().join(format!("hub-facade-{}.toml", std::process::id()));
    std::fs::write(&path, "[[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\", timeout_secs = 5 }\n[auth]\nkeys = { b = \"x\" }\n")
        .expect("temp file");
    let e = Hub::from_file(&path).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert!(matches!(e, HubError::Invalid { .. }));
    assert_eq!((e.line(), e.field()), (Some(6), Some("auth.keys.b")), "{e}");
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
}

/// A hub's `[limits]` take input- and output-token limits and `charge_at` like any other
/// dimension; a bad value is named with its line.
#[tokio::test]
async fn hub_limits_take_input_and_output_token_dimensions() {
    use connector_hub::limiter::{Cost, LimitKey, RateLimitType};
    let head = "[[provider]]\nid = \"a\"\nkind = \"openai\"\nconfig = { api_key = \"k\" }\n\
                [[limits.key]]\nprovider = \"a\"\n";
    let hub = Hub::from_toml_str(&format!(
        "{head}limit = {{ limits = {{ rpm = 50, itpm = 1000, otpm = 600 }}, charge_at = {{ output = \"usage\" }} }}\n"
    ))
    .expect("valid limits");
    let key = LimitKey::new("a", MODEL);
    let est = Cost::request(0).with_split(900, 5_000);
    let p = hub
        .limiter()
        .try_acquire(&key, est)
        .await
        .expect("output charged at usage");
    assert_eq!(p.charged().output(), 0);
    let d = hub.limiter().try_acquire(&key, est).await.unwrap_err();
    assert_eq!(d.dimension(), Some(RateLimitType::InputTokensPerMinute));
    let e = Hub::from_toml_str(&format!(
        "{head}limit = {{ limits = {{ rpm = 50, otpm = 0 }} }}\n"
    ))
    .unwrap_err();
    assert_eq!(e.line(), Some(7), "{e}");
    assert!(e.to_string().contains("otpm"), "{e}");
    let e = Hub::from_toml_str(&format!(
        "{head}limit = {{ limits = {{ itpm = 5 }}, charge_at = {{ input = \"later\" }} }}\n"
    ))
    .unwrap_err();
    assert_eq!(e.line(), Some(7), "{e}");
}
