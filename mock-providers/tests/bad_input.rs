//! In-process tests of every bad-input answer: the provider's own status and error JSON for
//! invalid JSON, missing or mistyped fields, unknown model or deployment, missing or wrong
//! keys, oversized bodies, wrong methods and paths; and the server keeps serving after each.

mod common;

use common::{chat, mock, Mock, Reply, AZURE_KEY, OPENAI_KEY};
use mock_providers::config::OrganizationConfig;
use mock_providers::MockConfig;
use serde_json::json;

const AZ_CHAT: &str = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";

fn openai_error(r: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let e = &v["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "OpenAI error lacks {k}: {v}");
    }
    e.clone()
}

async fn still_serving(m: &Mock) {
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "still there?", ""),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn invalid_json_is_400() {
    let m = mock(MockConfig::default());
    for body in ["{", "not json", "", "{\"model\":\"gpt-4o\",}"] {
        let e = openai_error(&m.post("/v1/chat/completions", body).await, 400);
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"]
            .as_str()
            .unwrap()
            .starts_with("We could not parse the JSON body"));
    }
    let r = m.post(AZ_CHAT, "{oops").await;
    openai_error(&r, 400);
    still_serving(&m).await;
}

#[tokio::test]
async fn missing_and_mistyped_fields_name_their_param() {
    let m = mock(MockConfig::default());
    let cases = [
        (
            r#"{"model":"gpt-4o"}"#,
            "messages",
            "missing_required_parameter",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            "model",
            "missing_required_parameter",
        ),
        (
            r#"{"model":"gpt-4o","messages":"hi"}"#,
            "messages",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[]}"#,
            "messages",
            "empty_array",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"content":"x"}]}"#,
            "messages[0].role",
            "missing_required_parameter",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":5}]}"#,
            "messages[0].content",
            "invalid_type",
        ),
        (
            r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#,
            "model",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":"5"}"#,
            "max_tokens",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            "max_tokens",
            "integer_below_min_value",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"n":1.5}"#,
            "n",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
            "stop[0]",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"temperature":-1}"#,
            "temperature",
            "decimal_below_min_value",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"seed":"s"}"#,
            "seed",
            "invalid_type",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"user":1}"#,
            "user",
            "invalid_type",
        ),
    ];
    for (body, param, code) in cases {
        let e = openai_error(&m.post("/v1/chat/completions", body).await, 400);
        assert_eq!(
            (e["param"].as_str(), e["code"].as_str()),
            (Some(param), Some(code)),
            "{body}"
        );
    }
    let e = openai_error(
        &m.post("/v1/completions", r#"{"model":"gpt-4o"}"#).await,
        400,
    );
    assert_eq!(e["param"], "prompt");
    let e = openai_error(
        &m.post(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x","encoding_format":"hex"}"#,
        )
        .await,
        400,
    );
    assert_eq!(e["param"], "encoding_format");
    still_serving(&m).await;
}

#[tokio::test]
async fn unknown_extra_fields_are_accepted() {
    let m = mock(MockConfig::default());
    let body = chat(
        "gpt-4o",
        "x",
        r#""tools":[],"logit_bias":{},"whatever":{"deep":[1,2]}"#,
    );
    assert_eq!(m.post("/v1/chat/completions", &body).await.status, 200);
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let m = mock(MockConfig::default());
    let e = openai_error(
        &m.post("/v1/chat/completions", &chat("gpt-9", "x", ""))
            .await,
        404,
    );
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(
        e["message"],
        "The model `gpt-9` does not exist or you do not have access to it."
    );
    let e = openai_error(
        &m.call("GET", "/v1/models/gpt-9", &[OPENAI_KEY], "").await,
        404,
    );
    assert_eq!(e["code"], "model_not_found");
    // A model of the wrong kind for the route.
    let e = openai_error(
        &m.post("/v1/embeddings", r#"{"model":"gpt-4o","input":"x"}"#)
            .await,
        404,
    );
    assert_eq!(e["param"], "model");
    still_serving(&m).await;
}

#[tokio::test]
async fn unknown_deployment_is_404_deployment_not_found() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/openai/deployments/nope/chat/completions?api-version=2024-10-21",
            &chat("x", "y", ""),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}})
    );
    let r = m
        .post(
            "/openai/deployments/gpt-4o-mini/chat/completions",
            &chat("x", "y", ""),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (
            404,
            json!({"error":{"code":"404","message":"Resource not found"}})
        )
    );
    let r = m
        .post(
            "/openai/deployments/gpt-4o-mini/embeddings?api-version=2024-10-21",
            r#"{"input":"x"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "OperationNotSupported");
    still_serving(&m).await;
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let config = MockConfig {
        organizations: vec![OrganizationConfig {
            id: "org-a".into(),
            keys: vec!["sk-test-key-0001".into()],
        }],
        azure_keys: vec!["azure-key".into()],
        ..MockConfig::default()
    };
    let m = mock(config);
    let body = chat("gpt-4o", "x", "");
    let e = openai_error(
        &m.call("POST", "/v1/chat/completions", &[], &body).await,
        401,
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key."));
    let wrong = ("authorization", "Bearer sk-wrong-key-9999");
    let e = openai_error(
        &m.call("POST", "/v1/chat/completions", &[wrong], &body)
            .await,
        401,
    );
    assert_eq!(e["code"], "invalid_api_key");
    assert_eq!(
        e["message"],
        "Incorrect API key provided: sk-w*********9999. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    let e = openai_error(&m.call("GET", "/v1/models", &[], "").await, 401);
    assert!(e["code"].is_null());
    let org = ("openai-organization", "org-other");
    let e = openai_error(
        &m.call("POST", "/v1/chat/completions", &[OPENAI_KEY, org], &body)
            .await,
        401,
    );
    assert_eq!(e["code"], "mismatched_organization");
    let ok = m
        .call("POST", "/v1/chat/completions", &[OPENAI_KEY], &body)
        .await;
    assert_eq!(ok.header("openai-organization"), Some("org-a"));

    let azure_401 = json!({"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}});
    for headers in [vec![], vec![("api-key", "nope")], vec![("api-key", "")]] {
        let r = m.call("POST", AZ_CHAT, &headers, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.json()),
            (401, azure_401.clone()),
            "{headers:?}"
        );
    }
    assert_eq!(
        m.call("POST", AZ_CHAT, &[AZURE_KEY], &body).await.status,
        200
    );
    assert_eq!(
        m.call(
            "POST",
            AZ_CHAT,
            &[("authorization", "Bearer azure-key")],
            &body
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn body_over_the_configured_size_is_413() {
    let config = MockConfig {
        max_body_bytes: 1_000,
        ..MockConfig::default()
    };
    let m = mock(config);
    let big = chat("gpt-4o", &"x".repeat(2_000), "");
    let e = openai_error(&m.post("/v1/chat/completions", &big).await, 413);
    assert_eq!(e["code"], "request_too_large");
    let r = m.post(AZ_CHAT, &big).await;
    assert_eq!(r.status, 413);
    still_serving(&m).await;
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_404() {
    let m = mock(MockConfig::default());
    for (method, path) in [
        ("GET", "/v1/chat/completions"),
        ("DELETE", "/v1/embeddings"),
        ("POST", "/v1/models"),
        ("PUT", AZ_CHAT),
    ] {
        let e = openai_error(&m.call(method, path, &[OPENAI_KEY], "").await, 405);
        let uri_path = path.split('?').next().unwrap();
        assert_eq!(
            e["message"],
            format!("Invalid method for URL ({method} {uri_path})")
        );
    }
    let e = openai_error(
        &m.call("POST", "/v1/nothing", &[OPENAI_KEY], "{}").await,
        404,
    );
    assert_eq!(e["message"], "Invalid URL (POST /v1/nothing)");
    let r = m.call("POST", "/openai/other", &[AZURE_KEY], "{}").await;
    assert_eq!(
        r.json(),
        json!({"error":{"code":"404","message":"Resource not found"}})
    );
    still_serving(&m).await;
}

#[tokio::test]
async fn arbitrary_bytes_never_break_the_server() {
    let m = mock(MockConfig::default());
    let junk: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00],
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999}"#.to_vec(),
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"n":1000}"#.to_vec(),
        br#"{"model":"text-embedding-3-small","input":[]}"#.to_vec(),
        br#"{"model":"text-embedding-3-small","input":[[]]}"#.to_vec(),
        br#"null"#.to_vec(),
    ];
    for body in junk {
        for path in [
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/completions",
            AZ_CHAT,
        ] {
            let key = if path.starts_with("/openai") {
                AZURE_KEY
            } else {
                OPENAI_KEY
            };
            let r = common::call(&m.router, "POST", path, &[key], body.clone()).await;
            assert!(
                r.status.is_client_error(),
                "{path} {:?} -> {}",
                String::from_utf8_lossy(&body),
                r.status
            );
        }
    }
    still_serving(&m).await;
}
