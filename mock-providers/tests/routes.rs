//! In-process (`oneshot`) tests of every success route: response shapes, headers, real
//! token counts, generation rules (length cap, stop, n, seed), embeddings in both encodings.

mod common;

use base64::Engine as _;
use common::{chat, mock, AZURE_KEY, OPENAI_KEY};
use mock_providers::generation::tokenizer::Encoding;
use mock_providers::MockConfig;

#[tokio::test]
async fn openai_chat_has_the_provider_shape_and_headers() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "Hello there", r#""max_tokens":20"#),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "x-request-id",
        "openai-processing-ms",
    ] {
        assert!(r.header(h).is_some(), "missing {h}");
    }
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("30000"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("29999"));
    // 30 000 RPM refill one request in 2 ms; the estimate is ceil(11/4) + 20 = 23 tokens.
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("2ms"));
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("149999977"));
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["refusal"].is_null());
    assert!(choice["logprobs"].is_null());
    let content = choice["message"]["content"].as_str().unwrap();
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        completion,
        u64::from(Encoding::O200kBase.count(content)),
        "real token count"
    );
    // 3 priming + 3 framing + "user" (1) + "Hello there" (2).
    assert_eq!(usage["prompt_tokens"], 9);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), 9 + completion);
    assert!(completion <= 20);
    let finish = choice["finish_reason"].as_str().unwrap();
    assert!(
        finish == "stop" || (finish == "length" && completion == 20),
        "{finish}"
    );
}

#[tokio::test]
async fn max_tokens_caps_with_finish_reason_length() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4", "Tell me a story", r#""max_completion_tokens":3"#),
        )
        .await;
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(Encoding::Cl100kBase.count(text), 3);
}

#[tokio::test]
async fn n_choices_and_stop_sequences_are_honoured() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o", "Hi", r#""n":3,"stop":["."],"max_tokens":400"#),
        )
        .await;
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "stop");
        assert!(!c["message"]["content"].as_str().unwrap().contains('.'));
    }
}

#[tokio::test]
async fn same_seed_and_prompt_give_the_same_text() {
    let m = mock(MockConfig::default());
    let body = chat("gpt-4o-mini", "Same prompt", r#""seed":42"#);
    let a = m.post("/v1/chat/completions", &body).await.json();
    let b = m.post("/v1/chat/completions", &body).await.json();
    assert_eq!(a["choices"], b["choices"]);
    assert_ne!(a["id"], b["id"]);
    let c = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "Same prompt", r#""seed":43"#),
        )
        .await
        .json();
    assert_ne!(a["choices"], c["choices"]);
}

#[tokio::test]
async fn legacy_completions_answer_text_completion() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo","prompt":["one","two"],"max_tokens":5}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert!(v["choices"][0]["text"].is_string());
    assert_eq!(v["usage"]["prompt_tokens"], 2);
}

#[tokio::test]
async fn embeddings_in_float_and_base64_agree() {
    let m = mock(MockConfig::default());
    let float = m
        .post(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["hello world","bye"]}"#,
        )
        .await
        .json();
    assert_eq!(float["object"], "list");
    assert_eq!(float["data"][1]["index"], 1);
    assert_eq!(float["data"][0]["object"], "embedding");
    let v: Vec<f32> = serde_json::from_value(float["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 1536);
    assert_eq!(float["usage"]["prompt_tokens"], 3);
    assert_eq!(float["usage"]["total_tokens"], 3);
    let b64 = m
        .post(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64","dimensions":256}"#,
        )
        .await
        .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded.len(), 256);
    let norm: f32 = decoded.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn models_are_listed_and_fetched() {
    let m = mock(MockConfig::default());
    let list = m.call("GET", "/v1/models", &[OPENAI_KEY], "").await;
    assert_eq!(list.status, 200);
    let v = list.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-4o-mini",
            "gpt-4o",
            "gpt-3.5-turbo",
            "gpt-4",
            "text-embedding-3-small"
        ]
    );
    let one = m
        .call("GET", "/v1/models/gpt-4o", &[OPENAI_KEY], "")
        .await
        .json();
    assert_eq!(one["id"], "gpt-4o");
    assert_eq!(one["object"], "model");
    assert!(one["created"].is_u64() && one["owned_by"].is_string());
}

#[tokio::test]
async fn azure_model_list_answers_health_checks() {
    let m = mock(MockConfig {
        azure_keys: vec!["azure-key".to_owned()],
        ..MockConfig::default()
    });
    let uri = "/openai/models?api-version=2024-10-21";
    let r = m.call("GET", uri, &[AZURE_KEY], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "gpt-4o-mini",
            "gpt-4o",
            "gpt-3.5-turbo",
            "gpt-4",
            "text-embedding-3-small"
        ]
    );
    assert_eq!(
        data[0],
        serde_json::json!({
            "status": "succeeded",
            "capabilities": {"fine_tune": false, "inference": true, "completion": true,
                             "chat_completion": true, "embeddings": false},
            "lifecycle_status": "generally-available",
            "deprecation": {"inference": 1_798_761_600u64},
            "id": "gpt-4o-mini",
            "created_at": 1_715_367_049u64,
            "object": "model"
        })
    );
    assert_eq!(data[4]["capabilities"]["embeddings"], true);
    assert_eq!(data[4]["capabilities"]["chat_completion"], false);
    // Bearer (Entra) is accepted like on the deployment routes.
    let bearer = ("authorization", "Bearer azure-key");
    assert_eq!(m.call("GET", uri, &[bearer], "").await.status, 200);

    // Auth is checked as on the other Azure routes: missing or wrong key is Azure's 401.
    for headers in [&[][..], &[("api-key", "wrong")][..]] {
        let r = m.call("GET", uri, headers, "").await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "401");
    }
    // Without api-version: Azure's 404.
    let r = m.call("GET", "/openai/models", &[AZURE_KEY], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"error":{"code":"404","message":"Resource not found"}})
    );
}

#[tokio::test]
async fn azure_routes_serve_with_azure_headers() {
    let m = mock(MockConfig::default());
    let uri = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
    let r = m
        .post(
            uri,
            r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":10}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ms-region"), Some("eastus"));
    assert_eq!(r.header("x-request-id"), r.header("apim-request-id"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("999"));
    // Charged at the estimate: ceil(2/4) + 10.
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("999989"));
    assert!(r.header("x-ratelimit-limit-requests").is_none());
    assert_eq!(r.json()["object"], "chat.completion");

    let bearer = ("authorization", "Bearer entra-token");
    let uri = "/openai/deployments/gpt-4o-mini/completions?api-version=2024-10-21";
    let r = m.call("POST", uri, &[bearer], r#"{"prompt":"Hi"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "text_completion");
    // No max_tokens: Azure charges 16 tokens plus the prompt estimate.
    assert_eq!(
        r.header("x-ratelimit-remaining-tokens"),
        Some(&*format!("{}", 999_989 - 17))
    );

    let uri = "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21";
    let r = m
        .call("POST", uri, &[AZURE_KEY], r#"{"input":"hello"}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["data"][0]["embedding"].as_array().unwrap().len(),
        1536
    );
}

#[tokio::test]
async fn default_config_serves_with_no_file() {
    let m = mock(MockConfig::from_toml_str("", "empty").unwrap());
    let r = m
        .post("/v1/chat/completions", &chat("gpt-3.5-turbo", "x", ""))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openai-organization"), Some("org-mock"));
}
