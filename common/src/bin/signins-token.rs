//! Prints a signed development token (HS256 with the shared secret), for grpcurl and demos.

use clap::Parser;
use signins_common::auth::TokenMinter;
use std::process::ExitCode;

/// Print an HS256 bearer token for flag-service and query-service.
#[derive(Debug, Parser)]
#[command(name = "signins-token", version)]
struct Args {
    /// The shared secret both services were started with.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, env = "AUTH_JWT_ISSUER", default_value = "signins")]
    issuer: String,
    #[arg(long, env = "AUTH_JWT_AUDIENCE", default_value = "signins")]
    audience: String,
    /// The token's subject: a user's object id or a service name.
    #[arg(long, default_value = "demo")]
    subject: String,
    /// The tenant id (`tid`), if the caller belongs to one.
    #[arg(long)]
    tenant: Option<String>,
    /// A role to grant, e.g. GlobalReader, HelpdeskAdministrator, SignInLogs.Write (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Lifetime, e.g. 12h.
    #[arg(long, default_value = "12h", value_parser = signins_common::duration::parse_duration)]
    ttl: std::time::Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let minter = TokenMinter::hs256(&args.secret, &args.issuer, &args.audience);
    match minter.mint_claims(&args.subject, args.tenant, args.roles, args.ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("signins-token: {error}");
            ExitCode::FAILURE
        }
    }
}
