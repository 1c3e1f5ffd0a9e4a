//! Prints a signed token for grpcurl and demos: HS256 with the shared secret, or RS256/ES256
//! with a PEM private key. With `--print-jwks` it prints instead the JWKS holding the public
//! half of `--key-file`, for the verifying service's `--jwt-jwks-file`.

use clap::Parser;
use signins_common::auth::{SigningKey, TokenMinter};
use std::path::PathBuf;
use std::process::ExitCode;

/// Print a bearer token for flag-service and query-service.
#[derive(Debug, Parser)]
#[command(name = "signins-token", version)]
struct Args {
    /// The shared secret both services were started with (HS256).
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "key_file"
    )]
    secret: Option<String>,
    /// Sign with this PEM private key instead (EC P-256 → ES256, RSA → RS256).
    #[arg(long, conflicts_with = "secret")]
    key_file: Option<PathBuf>,
    /// The `kid` to put in the header; default: the key's RFC 7638 thumbprint.
    #[arg(long, requires = "key_file")]
    key_id: Option<String>,
    /// Print `{"keys":[<public JWK of --key-file>]}` instead of a token.
    #[arg(long, requires = "key_file")]
    print_jwks: bool,
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
    match run(args) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("signins-token: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    let minter = match (&args.key_file, &args.secret) {
        (Some(path), _) => {
            let key = SigningKey::load(path, args.key_id.as_deref()).map_err(|e| e.to_string())?;
            if args.print_jwks {
                let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
                return serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string());
            }
            TokenMinter::with_key(&key, &args.issuer, &args.audience)
        }
        (None, Some(secret)) => TokenMinter::hs256(secret, &args.issuer, &args.audience),
        (None, None) => return Err("give --secret (or AUTH_JWT_SECRET) or --key-file".into()),
    };
    minter
        .mint_claims(&args.subject, args.tenant, args.roles, args.ttl)
        .map_err(|e| e.to_string())
}
