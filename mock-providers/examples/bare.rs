//! Baseline for the throughput measurement: a bare axum server whose one route,
//! `POST /v1/chat/completions`, reads the body and returns a fixed chat-completion JSON of
//! the mock's typical size. Run: `bare 127.0.0.1:PORT` (default 127.0.0.1:8081).

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::Router;

const BODY: &str = r#"{"id":"chatcmpl-0123456789abcdefghijklmnopqrs","object":"chat.completion","created":1715367049,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The model answer is here for every request that comes in.","refusal":null},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":16,"completion_tokens":16,"total_tokens":32,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_0123456789"}"#;

async fn fixed(_body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = Router::new().route("/v1/chat/completions", post(fixed));
    axum::serve(listener, app).await
}
