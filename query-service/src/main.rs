//! The `query-service` binary: settings, logging, then the [`Application`] until SIGTERM.

use clap::Parser;
use query_service::{Application, Config};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    signins_common::telemetry::init(config.log_format);
    let application = match Application::build(config).await {
        Ok(application) => application,
        Err(error) => {
            eprintln!("query-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    match application
        .run_until_stopped(signins_common::serve::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("query-service: {error}");
            ExitCode::FAILURE
        }
    }
}
