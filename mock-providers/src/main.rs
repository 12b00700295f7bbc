//! `mock-providers`: serve the OpenAI, Azure OpenAI and Anthropic mocks until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mock_providers::{MockConfig, MockServer};

/// Mock OpenAI, Azure OpenAI and Anthropic servers that enforce quotas like the real services.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (defaults apply without one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => match MockConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mock-providers: {e}");
                return ExitCode::from(2);
            }
        },
        None => MockConfig::default(),
    };
    let handle = match MockServer::start_on(config, cli.addr).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mock-providers: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", handle.base_url());
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("mock-providers: cannot wait for ctrl-c: {e}");
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
