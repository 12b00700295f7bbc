//! The `mock-providers` binary: `--config F --addr 127.0.0.1:0` prints the bound address and
//! serves the file's quotas; a bad file exits with status 2 naming file, line and field.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Kills the server even when an assertion fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mock-providers-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn serves_the_config_file_on_the_printed_address() {
    let config = temp_file(
        "good.toml",
        "[[models]]\nid = \"gpt-4o-mini\"\nrpm = 1\ntpm = 1000\n\n[[deployments]]\nname = \"d\"\nmodel = \"gpt-4o-mini\"\n",
    );
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_mock-providers"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "{base}"
    );

    let client = reqwest::Client::new();
    let body = serde_json::json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":1});
    let send = || {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("k")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "1");
    assert_eq!(send().await.unwrap().status(), 429, "1 RPM from the file");
}

#[test]
fn bad_config_exits_2_naming_file_line_and_field() {
    let config = temp_file("bad.toml", "seed = 1\n[latency]\nttft_median = \"soon\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mock-providers"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:3: field `latency.ttft_median`", config.display());
    assert!(stderr.contains(&expected), "{stderr}");
}
