//! Throwaway: in-process cost of one chat completion through the router (no network).
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use mock_providers::{app, MockConfig, MockState};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let text = std::fs::read_to_string("mock-providers/bench/perf.toml").unwrap();
    let config = MockConfig::from_toml_str(&text, "perf").unwrap();
    let router = app(MockState::new(config).unwrap());
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the load generator, please."}],"max_tokens":16}"#;
    for round in 0..5 {
        let n = 50_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let req = Request::post("/v1/chat/completions")
                .header("authorization", "Bearer sk")
                .body(Body::from(body))
                .unwrap();
            let resp = router.clone().oneshot(req).await.unwrap();
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(b.len() > 100);
        }
        println!("round {round}: {:.2} us/request", start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
