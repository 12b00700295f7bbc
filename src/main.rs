//! `hub`: the command-line front of llm-connector-hub (see `connector_hub::cli`).

use std::process::ExitCode;

use clap::Parser;
use connector_hub::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(Cli::parse()) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("hub: {failure}");
            failure.exit_code()
        }
    }
}
