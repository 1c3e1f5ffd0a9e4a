//! The `flag-service` binary: settings, telemetry, then the [`Application`] until SIGTERM.

use clap::Parser;
use flag_service::{Application, Config};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // Held to the end: dropping it flushes the traces not yet exported.
    let _telemetry = match signins_common::telemetry::init("flag-service", config.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("flag-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    let application = match Application::build(config).await {
        Ok(application) => application,
        Err(error) => {
            eprintln!("flag-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    match application
        .run_until_stopped(signins_common::serve::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flag-service: {error}");
            ExitCode::FAILURE
        }
    }
}
