//! Helpers shared by the integration tests: an in-process router on a manual clock and a
//! one-call driver that returns status, headers and body.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mock_providers::clock::ManualClock;
use mock_providers::{app, MockConfig, MockState};
use tower::ServiceExt;

/// A router over a fresh state whose quota clock only moves when the test says so.
pub struct Mock {
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub state: MockState,
}

pub fn mock(config: MockConfig) -> Mock {
    let clock = Arc::new(ManualClock::default());
    let state = MockState::with_clock(config, clock.clone()).expect("valid config");
    Mock {
        router: app(state.clone()),
        clock,
        state,
    }
}

/// One response, body collected.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }
}

pub const OPENAI_KEY: (&str, &str) = ("authorization", "Bearer sk-test-key-0001");
pub const AZURE_KEY: (&str, &str) = ("api-key", "azure-key");

impl Mock {
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        call(&self.router, method, uri, headers, body.as_bytes().to_vec()).await
    }

    pub async fn post(&self, uri: &str, body: &str) -> Reply {
        let key = if uri.starts_with("/openai/") {
            AZURE_KEY
        } else {
            OPENAI_KEY
        };
        self.call("POST", uri, &[key], body).await
    }
}

pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("infallible router");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A chat body for `model` with one user message.
pub fn chat(model: &str, content: &str, extra: &str) -> String {
    let content = serde_json::to_string(content).expect("string");
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":{content}}}]{extra}}}"#)
}

/// Anthropic's key and version headers.
pub const ANTHROPIC: [(&str, &str); 2] = [
    ("x-api-key", "sk-ant-test-0001"),
    ("anthropic-version", "2023-06-01"),
];

/// The default config's Anthropic model used by the tests.
pub const CLAUDE: &str = "claude-sonnet-4-5-20250929";

/// A Messages body for `model` with one user message and `max_tokens`.
pub fn message(model: &str, content: &str, max_tokens: u64, extra: &str) -> String {
    let content = serde_json::to_string(content).expect("string");
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"model":"{model}","max_tokens":{max_tokens},"messages":[{{"role":"user","content":{content}}}]{extra}}}"#
    )
}

impl Mock {
    /// The quota clock's now.
    pub fn clock_now(&self) -> u64 {
        use mock_providers::clock::MockClock;
        self.clock.now()
    }

    /// POSTs `body` to an Anthropic route with the key and version headers.
    pub async fn anthropic(&self, uri: &str, body: &str) -> Reply {
        self.call("POST", uri, &ANTHROPIC, body).await
    }
}
