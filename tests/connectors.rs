//! The OpenAI and Azure connectors against in-process mock providers over real HTTP on
//! 127.0.0.1: completions and streams with the mock's usage, every error class from the
//! mock's quotas, faults and key lists, metadata caching, health checks, and an ignored
//! throughput measurement against raw reqwest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_hub::clock::ManualClock;
use connector_hub::provider::{
    AzureAuth, AzureConfig, AzureConnector, CompletionRequest, ConfigError, ConnectorError,
    HealthStatus, LLMProvider, Message, OpenAIConnector, OpenAiConfig, RateLimitDimension,
    StreamChunk, Usage,
};
use futures::StreamExt;
use mock_providers::config::{DeploymentConfig, FaultConfig, ModelConfig, OrganizationConfig};
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";

async fn start(config: MockConfig) -> MockHandle {
    MockServer::start(config).await.expect("mock starts")
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(0))
}

fn openai_with(
    mock: &MockHandle,
    key: &str,
    edit: impl FnOnce(&mut OpenAiConfig),
) -> OpenAIConnector {
    let mut c = OpenAiConfig::new(key).with_base_url(format!("{}/v1", mock.base_url()));
    c.timeout = Duration::from_secs(10);
    edit(&mut c);
    OpenAIConnector::new(c, clock()).expect("valid config")
}

fn openai(mock: &MockHandle) -> OpenAIConnector {
    openai_with(mock, "any-key-works", |_| {})
}

fn azure_with(
    mock: &MockHandle,
    deployment: &str,
    edit: impl FnOnce(&mut AzureConfig),
) -> AzureConnector {
    let mut c = AzureConfig::new("azure-key", mock.base_url(), deployment);
    c.timeout = Duration::from_secs(10);
    edit(&mut c);
    AzureConnector::new(c, clock()).expect("valid config")
}

fn azure(mock: &MockHandle) -> AzureConnector {
    azure_with(mock, MODEL, |_| {})
}

fn request(max_tokens: u32) -> CompletionRequest {
    let mut r = CompletionRequest::new(
        MODEL,
        vec![
            Message::system("You are terse."),
            Message::user("Say something about rate limits."),
        ],
    )
    .with_max_tokens(max_tokens);
    r.temperature = Some(0.0);
    r
}

/// `GET /_mock/stats` → the entry of `key` (e.g. `openai/org-mock/gpt-4o-mini`).
async fn mock_stats(mock: &MockHandle, key: &str) -> Value {
    let all: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("stats are json");
    all["keys"][key].clone()
}

/// Collects a stream: chunks until the end, or the chunks before an error and the error.
async fn collect(
    mut stream: connector_hub::provider::ChunkStream,
) -> (Vec<StreamChunk>, Option<ConnectorError>) {
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(c) => chunks.push(c),
            Err(e) => {
                assert!(stream.next().await.is_none(), "nothing follows an error");
                return (chunks, Some(e));
            }
        }
    }
    (chunks, None)
}

/// The error of a stream request that must fail before any chunk.
async fn open_err(conn: &dyn LLMProvider, req: CompletionRequest) -> ConnectorError {
    match conn.open_stream(req).await {
        Ok((meta, _)) => panic!("stream opened: {meta:?}"),
        Err(e) => e,
    }
}

fn streamed_text(chunks: &[StreamChunk]) -> String {
    chunks.iter().map(|c| c.delta.as_str()).collect()
}

fn streamed_usage(chunks: &[StreamChunk]) -> Usage {
    let with_usage: Vec<_> = chunks.iter().filter_map(|c| c.usage).collect();
    assert_eq!(with_usage.len(), 1, "exactly one usage chunk: {chunks:?}");
    assert!(chunks.last().unwrap().usage.is_some(), "usage comes last");
    with_usage[0]
}

fn models_with(edit: impl Fn(&mut ModelConfig)) -> Vec<ModelConfig> {
    let mut models = MockConfig::default().models;
    for m in models.iter_mut().filter(|m| m.id == MODEL) {
        edit(m);
    }
    models
}

fn deployment(name: &str, tpm: u64, rpm: Option<u64>, faults: FaultConfig) -> DeploymentConfig {
    DeploymentConfig {
        rpm,
        faults,
        ..DeploymentConfig::new(name, MODEL, tpm)
    }
}

// ---------------------------------------------------------------- successes

#[tokio::test]
async fn openai_completion_has_text_usage_equal_to_the_mocks_and_header_meta() {
    let mock = start(MockConfig::default()).await;
    let conn = openai(&mock);
    let r = conn.send_completion(request(40)).await.unwrap();
    assert!(r.id.starts_with("chatcmpl-"), "{}", r.id);
    assert_eq!(r.model, MODEL);
    assert!(!r.text().is_empty());
    assert!(r.finish_reason.is_some());
    assert!(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
    assert!(r.usage.output_tokens <= 40);
    let stats = mock_stats(&mock, "openai/org-mock/gpt-4o-mini").await;
    assert_eq!(stats["tokens_used"], r.usage.total());
    assert_eq!(r.meta.status, Some(200));
    assert_eq!(r.meta.limit_requests, Some(30_000));
    assert_eq!(r.meta.remaining_requests, Some(29_999));
    assert!(r.meta.reset_tokens.is_some());
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_stream_yields_the_same_text_and_usage_as_the_plain_call() {
    let mock = start(MockConfig::default()).await;
    let conn = openai(&mock);
    let plain = conn.send_completion(request(60)).await.unwrap();
    let (meta, stream) = conn.open_stream(request(60)).await.unwrap();
    assert_eq!(meta.status, Some(200));
    assert_eq!(meta.limit_requests, Some(30_000));
    let (chunks, err) = collect(stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        streamed_text(&chunks),
        plain.text(),
        "temperature 0: same text"
    );
    assert_eq!(streamed_usage(&chunks), plain.usage);
    let finishes: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.finish_reason.clone())
        .collect();
    assert_eq!(finishes, vec![plain.finish_reason.clone().unwrap()]);
    let stats = mock_stats(&mock, "openai/org-mock/gpt-4o-mini").await;
    assert_eq!(stats["tokens_used"], 2 * plain.usage.total());
    mock.shutdown().await;
}

#[tokio::test]
async fn stream_completion_of_several_choices_finishes_each() {
    let mock = start(MockConfig::default()).await;
    let mut req = request(20);
    req.n = Some(3);
    let stream = openai(&mock).stream_completion(req).await.unwrap();
    let (chunks, err) = collect(stream).await;
    assert!(err.is_none(), "{err:?}");
    for i in 0..3 {
        assert_eq!(
            chunks
                .iter()
                .filter(|c| c.index == i && c.finish_reason.is_some())
                .count(),
            1,
            "choice {i}"
        );
    }
    let usage = streamed_usage(&chunks);
    let stats = mock_stats(&mock, "openai/org-mock/gpt-4o-mini").await;
    assert_eq!(stats["tokens_used"], usage.total());
    mock.shutdown().await;
}

#[tokio::test]
async fn azure_completion_and_stream_report_the_mocks_usage() {
    let mock = start(MockConfig::default()).await;
    let conn = azure(&mock);
    let plain = conn.send_completion(request(50)).await.unwrap();
    assert!(!plain.text().is_empty());
    assert_eq!(plain.meta.status, Some(200));
    assert!(plain.meta.remaining_requests.is_some() && plain.meta.remaining_tokens.is_some());
    assert_eq!(
        plain.meta.limit_requests, None,
        "azure sends no limit headers"
    );
    let (meta, stream) = conn.open_stream(request(50)).await.unwrap();
    assert!(meta.remaining_tokens.is_some());
    let (chunks, err) = collect(stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(streamed_text(&chunks), plain.text());
    assert_eq!(streamed_usage(&chunks), plain.usage);
    let stats = mock_stats(&mock, "azure/gpt-4o-mini").await;
    assert_eq!(stats["tokens_used"], 2 * plain.usage.total());
    mock.shutdown().await;
}

#[tokio::test]
async fn azure_accepts_api_key_or_bearer_and_refuses_other_keys() {
    let mock = start(MockConfig {
        azure_keys: vec!["az-1".into()],
        ..MockConfig::default()
    })
    .await;
    for auth in [AzureAuth::ApiKey, AzureAuth::Bearer] {
        let ok = azure_with(&mock, MODEL, |c| {
            c.api_key = "az-1".into();
            c.auth = auth;
        });
        ok.send_completion(request(5)).await.unwrap();
        let bad = azure_with(&mock, MODEL, |c| {
            c.api_key = "az-2".into();
            c.auth = auth;
        });
        let e = bad.send_completion(request(5)).await.unwrap_err();
        assert!(
            matches!(e, ConnectorError::Authentication { status: 401, .. }),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.meta().and_then(|m| m.status), Some(401));
    }
    mock.shutdown().await;
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn openai_bad_key_and_foreign_organization_are_authentication_errors() {
    let mock = start(MockConfig {
        organizations: vec![
            OrganizationConfig {
                id: "org-a".into(),
                keys: vec!["key-a".into()],
            },
            OrganizationConfig {
                id: "org-b".into(),
                keys: vec!["key-b".into()],
            },
        ],
        ..MockConfig::default()
    })
    .await;
    let e = openai_with(&mock, "key-c", |_| {})
        .send_completion(request(5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::Authentication { status: 401, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("Incorrect API key"), "{e}");
    assert!(!e.is_retryable());
    // The organization header is sent: the mock refuses an organization the key is not in.
    let foreign = openai_with(&mock, "key-a", |c| c.organization = Some("org-b".into()));
    let e = foreign.send_completion(request(5)).await.unwrap_err();
    assert!(e.to_string().contains("OpenAI-Organization"), "{e}");
    let own = openai_with(&mock, "key-a", |c| c.organization = Some("org-a".into()));
    own.send_completion(request(5)).await.unwrap();
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_429_on_requests_carries_dimension_and_retry_after() {
    let mock = start(MockConfig {
        models: models_with(|m| m.rpm = 2),
        ..MockConfig::default()
    })
    .await;
    let conn = openai(&mock);
    conn.send_completion(request(5)).await.unwrap();
    conn.send_completion(request(5)).await.unwrap();
    let e = conn.send_completion(request(5)).await.unwrap_err();
    let ConnectorError::RateLimit {
        retry_after,
        dimension,
        ref meta,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(dimension, Some(RateLimitDimension::Requests));
    let wait = retry_after.expect("a wait");
    assert!(
        wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!((meta.status, meta.remaining_requests), (Some(429), Some(0)));
    assert!(e.is_retryable());
    let info = e.error_info();
    assert!(info.rate_limited && info.retryable);
    assert_eq!(info.retry_after, Some(wait));
    // A stream request is refused the same way, before any chunk.
    let e = open_err(&conn, request(5)).await;
    assert!(matches!(e, ConnectorError::RateLimit { .. }), "{e:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_429_on_tokens_and_request_too_large() {
    let mock = start(MockConfig {
        models: models_with(|m| m.tpm = 1_000),
        ..MockConfig::default()
    })
    .await;
    let conn = openai(&mock);
    conn.send_completion(request(400)).await.unwrap();
    conn.send_completion(request(400)).await.unwrap();
    let e = conn.send_completion(request(400)).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimit {
                dimension: Some(RateLimitDimension::Tokens),
                retry_after: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
    let e = conn.send_completion(request(5_000)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::RequestTooLarge { .. }), "{e:?}");
    assert!(!e.is_retryable() && !e.error_info().rate_limited);
    assert_eq!(e.status(), Some(429));
    mock.shutdown().await;
}

#[tokio::test]
async fn azure_429s_name_the_dimension_and_carry_retry_after_ms() {
    let mock = start(MockConfig {
        deployments: vec![
            // 1 000 TPM → 6 RPM → 1 request per 10-s window.
            deployment("calls", 1_000, None, FaultConfig::default()),
            deployment("tokens", 1_000, Some(600), FaultConfig::default()),
        ],
        ..MockConfig::default()
    })
    .await;
    let calls = azure_with(&mock, "calls", |_| {});
    calls.send_completion(request(5)).await.unwrap();
    let e = calls.send_completion(request(5)).await.unwrap_err();
    let ConnectorError::RateLimit {
        retry_after,
        dimension,
        ref meta,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(dimension, Some(RateLimitDimension::Requests));
    let wait = retry_after.expect("retry-after-ms");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert_eq!(
        meta.retry_after,
        Some(wait),
        "from the header, not the text"
    );
    assert!(e.is_retryable() && e.error_info().rate_limited);

    let tokens = azure_with(&mock, "tokens", |_| {});
    tokens.send_completion(request(600)).await.unwrap();
    let e = tokens.send_completion(request(600)).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimit {
                dimension: Some(RateLimitDimension::Tokens),
                retry_after: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retryable_unless_the_server_says_otherwise() {
    let mock = start(MockConfig {
        models: models_with(|m| {
            m.faults = FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            }
        }),
        deployments: vec![
            deployment(
                "overloaded",
                100_000,
                None,
                FaultConfig {
                    error_503: 1.0,
                    ..FaultConfig::default()
                },
            ),
            deployment(
                "final",
                100_000,
                None,
                FaultConfig {
                    error_500: 1.0,
                    should_retry: Some(false),
                    ..FaultConfig::default()
                },
            ),
        ],
        ..MockConfig::default()
    })
    .await;
    let e = openai(&mock).send_completion(request(5)).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Provider { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.error_type(), "provider");
    let e = azure_with(&mock, "overloaded", |_| {})
        .send_completion(request(5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::Provider { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.is_retryable());
    let e = azure_with(&mock, "final", |_| {})
        .send_completion(request(5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::Provider { status: 500, .. }),
        "{e:?}"
    );
    assert_eq!(e.meta().unwrap().should_retry, Some(false));
    assert!(!e.is_retryable(), "x-should-retry: false wins");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_parameters_are_invalid_requests_with_the_providers_message() {
    let mock = start(MockConfig::default()).await;
    let mut req = request(5);
    req.temperature = Some(3.0);
    for conn in [
        Box::new(openai(&mock)) as Box<dyn LLMProvider>,
        Box::new(azure(&mock)),
    ] {
        let e = conn.send_completion(req.clone()).await.unwrap_err();
        let ConnectorError::InvalidRequest {
            status,
            ref message,
            ref param,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(status, 400);
        assert!(message.starts_with("Invalid 'temperature'"), "{message}");
        assert_eq!(param.as_deref(), Some("temperature"));
        assert!(!e.is_retryable());
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn unknown_models_and_deployments_are_not_found() {
    let mock = start(MockConfig::default()).await;
    let mut req = request(5);
    req.model = "gpt-9".into();
    let e = openai(&mock).send_completion(req).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::NotFound { code: Some(ref c), .. } if c == "model_not_found"),
        "{e:?}"
    );
    let e = azure_with(&mock, "nope", |_| {})
        .send_completion(request(5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::NotFound { code: Some(ref c), .. } if c == "DeploymentNotFound"),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    mock.shutdown().await;
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_a_stream_error() {
    let cut = FaultConfig {
        drop_mid_stream: 1.0,
        ..FaultConfig::default()
    };
    let mock = start(MockConfig {
        models: models_with(|m| m.faults = cut),
        deployments: vec![deployment("cut", 100_000, None, cut)],
        ..MockConfig::default()
    })
    .await;
    let conns: Vec<Box<dyn LLMProvider>> = vec![
        Box::new(openai(&mock)),
        Box::new(azure_with(&mock, "cut", |_| {})),
    ];
    for conn in conns {
        let stream = conn.stream_completion(request(200)).await.unwrap();
        let (chunks, err) = collect(stream).await;
        let err = err.expect("a cut stream is an error");
        assert!(matches!(err, ConnectorError::Stream { .. }), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            chunks.iter().all(|c| c.usage.is_none()),
            "no usage from a cut stream"
        );
    }
    assert_eq!(
        mock_stats(&mock, "openai/org-mock/gpt-4o-mini").await["faults"]["dropped"],
        1
    );
    assert_eq!(mock_stats(&mock, "azure/cut").await["faults"]["dropped"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout() {
    let stall = FaultConfig {
        stall: 1.0,
        stall_for: Duration::from_secs(5),
        ..FaultConfig::default()
    };
    let mock = start(MockConfig {
        models: models_with(|m| m.faults = stall),
        ..MockConfig::default()
    })
    .await;
    let conn = openai_with(&mock, "k", |c| c.timeout = Duration::from_millis(300));
    let e = conn.send_completion(request(5)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    let e = open_err(&conn, request(5)).await;
    assert!(matches!(e, ConnectorError::Timeout { .. }), "{e:?}");
    assert_eq!(
        mock_stats(&mock, "openai/org-mock/gpt-4o-mini").await["faults"]["stalled"],
        2
    );
    // Not shut down: graceful shutdown would wait for the stalled handlers.
}

#[tokio::test]
async fn a_closed_port_is_a_network_error_and_unhealthy() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = OpenAiConfig::new("k").with_base_url(format!("http://127.0.0.1:{port}/v1"));
    c.timeout = Duration::from_secs(5);
    let conn = OpenAIConnector::new(c, clock()).unwrap();
    let e = conn.send_completion(request(5)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Network { .. }), "{e:?}");
    assert!(e.is_retryable() && e.meta().is_none());
    let e = open_err(&conn, request(5)).await;
    assert!(matches!(e, ConnectorError::Network { .. }), "{e:?}");
    assert!(matches!(
        conn.health_check().await.unwrap(),
        HealthStatus::Unhealthy { .. }
    ));
    let az = AzureConnector::new(
        AzureConfig::new("k", format!("http://127.0.0.1:{port}"), "d"),
        clock(),
    )
    .unwrap();
    assert!(matches!(
        az.health_check().await.unwrap(),
        HealthStatus::Unhealthy { .. }
    ));
}

/// A one-purpose HTTP server on 127.0.0.1:0 that reads each request whole and answers
/// `status` with `content_type` and `body` (a complete, well-formed HTTP response), for
/// what the mock never sends: a stream that ends cleanly but early, a non-JSON 200.
async fn canned_server(status: &str, content_type: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as many body bytes as content-length says.
            let needed = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break Some(end + 4 + len);
                }
            };
            let Some(needed) = needed else { continue };
            while buf.len() < needed {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_stream_that_ends_cleanly_before_done_is_a_stream_error() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    );
    let base = canned_server("200 OK", "text/event-stream", body).await;
    let conn = OpenAIConnector::new(
        OpenAiConfig::new("k").with_base_url(format!("{base}/v1")),
        clock(),
    )
    .unwrap();
    let (meta, stream) = conn.open_stream(request(5)).await.unwrap();
    assert_eq!(meta.status, Some(200));
    let (chunks, err) = collect(stream).await;
    assert_eq!(streamed_text(&chunks), "Hel");
    let err = err.expect("an early end is an error");
    assert!(matches!(err, ConnectorError::Stream { .. }), "{err:?}");
    assert!(err.to_string().contains("unfinished"), "{err}");
}

#[tokio::test]
async fn a_success_status_with_a_non_json_body_is_a_parse_error() {
    let base = canned_server("200 OK", "text/html", "<html>captive portal</html>").await;
    let conn = OpenAIConnector::new(
        OpenAiConfig::new("k").with_base_url(format!("{base}/v1")),
        clock(),
    )
    .unwrap();
    let e = conn.send_completion(request(5)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Parse { .. }), "{e:?}");
    assert_eq!(e.status(), Some(200));
    assert!(!e.is_retryable());
}

// ---------------------------------------------------------------- metadata, health, config

#[tokio::test]
async fn metadata_is_served_from_cache_for_an_hour_of_the_injected_clock() {
    let mock = start(MockConfig::default()).await;
    let manual = clock();
    let mut c = OpenAiConfig::new("k").with_base_url(format!("{}/v1", mock.base_url()));
    c.timeout = Duration::from_secs(5);
    let conn = OpenAIConnector::new(c, manual.clone()).unwrap();
    conn.send_completion(request(5)).await.unwrap();
    let m = conn.get_metadata().await.unwrap();
    assert_eq!(m.provider_id, "openai");
    assert_eq!(m.api_version, "v1");
    let mini = m
        .models
        .iter()
        .find(|x| x.id == MODEL)
        .expect("model listed");
    assert_eq!(mini.context_window, Some(128_000));
    assert!(mini.pricing.is_some());
    assert_eq!(m.rate_limits.requests_per_minute, Some(30_000));
    assert_eq!(m.rate_limits.tokens_per_minute, Some(150_000_000));
    assert_eq!(m.models.len(), MockConfig::default().models.len());

    // With the server gone, the cache still answers until an hour has passed.
    mock.shutdown().await;
    manual.advance(Duration::from_secs(3599));
    assert_eq!(conn.get_metadata().await.unwrap().models, m.models);
    manual.advance(Duration::from_secs(1));
    let e = conn.get_metadata().await.unwrap_err();
    assert!(matches!(e, ConnectorError::Network { .. }), "{e:?}");
}

#[tokio::test]
async fn azure_metadata_describes_the_deployment() {
    let mock = start(MockConfig::default()).await;
    let conn = azure_with(&mock, MODEL, |c| c.model = Some("gpt-4o-mini".into()));
    let m = conn.get_metadata().await.unwrap();
    assert_eq!(m.provider_id, "azure");
    assert_eq!(
        m.api_version,
        connector_hub::provider::config::AZURE_DEFAULT_API_VERSION
    );
    assert_eq!(m.models.len(), 1);
    assert_eq!(m.models[0].id, MODEL);
    assert_eq!(m.models[0].context_window, Some(128_000));
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_health_check_is_healthy_with_a_good_key_and_unhealthy_with_a_bad_one() {
    let mock = start(MockConfig {
        organizations: vec![OrganizationConfig {
            id: "org-a".into(),
            keys: vec!["key-a".into()],
        }],
        ..MockConfig::default()
    })
    .await;
    assert_eq!(
        openai_with(&mock, "key-a", |_| {})
            .health_check()
            .await
            .unwrap(),
        HealthStatus::Healthy
    );
    let bad = openai_with(&mock, "key-z", |_| {})
        .health_check()
        .await
        .unwrap();
    let HealthStatus::Unhealthy { reason } = bad else {
        panic!("{bad:?}")
    };
    assert!(reason.contains("401"), "{reason}");
    mock.shutdown().await;
}

#[tokio::test]
async fn validate_config_checks_the_provider_and_the_values() {
    let mock = start(MockConfig::default()).await;
    let conn = openai(&mock);
    assert_eq!(conn.validate_config(conn.config()), Ok(()));
    let az = AzureConfig::new("k", "https://r.openai.azure.com", "d");
    assert!(matches!(
        conn.validate_config(&az),
        Err(ConfigError::ProviderMismatch { .. })
    ));
    let blank = OpenAiConfig::new(" ");
    assert_eq!(
        conn.validate_config(&blank),
        Err(ConfigError::MissingApiKey)
    );
    assert!(OpenAIConnector::new(blank, clock()).is_err());
    mock.shutdown().await;
}

// ---------------------------------------------------------------- throughput (measurement)

/// CPU time (user + system) of this whole process so far — the mock's and the client's —
/// from `/proc/self/stat`, in clock ticks (`None` where there is no procfs).
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Runs `TASKS` tasks calling `one` until `deadline`; returns the number of calls.
async fn load<F, Fut>(tasks: usize, deadline: Instant, one: F) -> u64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    one().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.expect("load task does not panic");
    }
    total
}

/// Requests per second of one connector vs. raw reqwest against the zero-latency mock
/// (quotas out of reach), 64 concurrent tasks, rotating four loads in 10 rounds of `PHASE`
/// each (5 s per load), all in the same run:
/// 0. raw reqwest posting pre-serialised bytes and reading the body (the anchor);
/// 1. the same with reqwest's per-request timeout;
/// 2. the same plus what any client must do with the answer: the rate-limit headers read
///    into `ResponseMeta` and the body parsed as JSON;
/// 3. `OpenAIConnector::send_completion` (serialises, times out, classifies, parses).
///
/// Besides req/s it prints the process's CPU time per request (client and mock together;
/// the mock's share is the same for every load), which the machine's other load disturbs
/// less than throughput. Run with
/// `cargo test --release -p llm-connector-hub --test connectors -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run in release with --ignored --nocapture"]
async fn throughput_connector_vs_raw_reqwest() {
    const TASKS: usize = 64;
    const ROUNDS: u32 = 10;
    const PHASE: Duration = Duration::from_millis(500);
    const NAMES: [&str; 4] = [
        "raw reqwest",
        "raw reqwest + timeout",
        "raw reqwest + timeout + meta + JSON parse",
        "connector",
    ];
    let mock = start(MockConfig {
        models: models_with(|m| {
            m.rpm = 1_000_000_000;
            m.tpm = 1_000_000_000_000;
        }),
        ..MockConfig::default()
    })
    .await;
    let conn = openai(&mock);
    let url: Arc<str> = format!("{}/v1/chat/completions", mock.base_url()).into();
    let raw = connector_hub::provider::default_client(Duration::from_secs(10)).unwrap();
    // The exact body the connector sends.
    let body = bytes::Bytes::from(serde_json::to_vec(&request(16)).unwrap());
    let raw_call = move |level: u8| {
        let (raw, url, body) = (raw.clone(), url.clone(), body.clone());
        async move {
            let mut rb = raw
                .post(&*url)
                .bearer_auth("any-key-works")
                .header("content-type", "application/json")
                .body(body);
            if level >= 1 {
                rb = rb.timeout(Duration::from_secs(10));
            }
            let resp = rb.send().await.expect("sent");
            assert!(resp.status().is_success(), "{}", resp.status());
            if level >= 2 {
                let meta = connector_hub::provider::headers::HeaderProfile::Openai
                    .parse(Some(resp.status().as_u16()), resp.headers());
                assert!(meta.limit_requests.is_some());
                let bytes = resp.bytes().await.expect("body");
                let v: Value = serde_json::from_slice(&bytes).expect("json");
                assert!(v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
            } else {
                assert!(!resp.bytes().await.expect("body").is_empty());
            }
        }
    };
    let raw_level = |level: u8| {
        let call = raw_call.clone();
        move || call(level)
    };
    let connector = move || {
        let conn = conn.clone();
        async move {
            let r = conn.send_completion(request(16)).await.expect("200");
            assert!(r.usage.output_tokens > 0);
        }
    };

    // Warm-up: connection pools and the mock's tokenizer.
    let warm = Duration::from_millis(300);
    load(TASKS, Instant::now() + warm, raw_level(0)).await;
    load(TASKS, Instant::now() + warm, connector.clone()).await;
    let mut counts = [0u64; 4];
    let mut times = [Duration::ZERO; 4];
    let mut ticks = [0u64; 4];
    for _ in 0..ROUNDS {
        for i in 0..NAMES.len() {
            let cpu_before = process_cpu_ticks().unwrap_or(0);
            let start = Instant::now();
            counts[i] += match i {
                0..=2 => load(TASKS, start + PHASE, raw_level(i as u8)).await,
                _ => load(TASKS, start + PHASE, connector.clone()).await,
            };
            times[i] += start.elapsed();
            ticks[i] += process_cpu_ticks().unwrap_or(0).saturating_sub(cpu_before);
        }
    }
    let rps: Vec<f64> = (0..4)
        .map(|i| counts[i] as f64 / times[i].as_secs_f64())
        .collect();
    // Ticks are 10 ms.
    let cpu_us: Vec<f64> = (0..4)
        .map(|i| ticks[i] as f64 * 10_000.0 / counts[i].max(1) as f64)
        .collect();
    for i in 0..4 {
        println!(
            "{:<42} {:>7} requests in {:.2?} = {:>6.0} req/s, {:>6.1} µs CPU/req (client+mock); \
             connector/this = {:.3} (req/s)",
            NAMES[i],
            counts[i],
            times[i],
            rps[i],
            cpu_us[i],
            rps[3] / rps[i],
        );
    }
    mock.shutdown().await;
}
