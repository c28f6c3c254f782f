//! `leasehold`: see README.md, or `leasehold --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use leasehold::cli::{Cli, LogFormat};
use std::io::IsTerminal;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(cli.global.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = cli.global.log_format == LogFormat::Json;
    match cli.global.log_format {
        LogFormat::Human => subscriber.init(),
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("leasehold: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(leasehold::run(cli)) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) if json => {
            tracing::error!(exit_code = e.code as u8, "{e}");
            std::process::ExitCode::from(e.code as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.code as u8)
        }
    }
}
