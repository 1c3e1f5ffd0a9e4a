//! TLS for both services: the certificate a service presents (`--tls-cert`, `--tls-key`),
//! optionally the CA its clients' certificates must chain to (`--tls-client-ca`, mutual TLS),
//! and the client side query-service uses towards flag-service (`--flag-service-ca`).
//!
//! Files are read and checked when the service is built, so a wrong path or a certificate that
//! does not match its key stops start-up with a sentence, not the first connection.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// tonic (rustls) refused the certificate, key or CA.
    #[error("{what} are not usable: {reason}")]
    Unusable { what: &'static str, reason: String },
    #[error("{flag} {path} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{0} is set but {1} is not: give both")]
    Incomplete(&'static str, &'static str),
    /// A CA or client certificate for a plain-text URL: it would silently not be used.
    #[error("{flag} is set but --flag-service-url {url} is not https://")]
    NotHttps { flag: &'static str, url: String },
}

/// TLS settings of a server, on the command line of both services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain this service presents; with --tls-key, the service speaks TLS only.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: PEM CA that every client's certificate must chain to; clients without one
    /// are refused during the handshake.
    #[arg(long, env = "TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// TLS with the given certificate and key files.
    pub fn files(cert: &Path, key: &Path) -> Self {
        Self {
            tls_cert: Some(cert.to_owned()),
            tls_key: Some(key.to_owned()),
            tls_client_ca: None,
        }
    }

    /// The server's TLS configuration, `None` for plain text; checked by building it once.
    pub fn server_config(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => {
                return match self.tls_client_ca {
                    Some(_) => Err(TlsError::Incomplete("--tls-client-ca", "--tls-cert")),
                    None => Ok(None),
                };
            }
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(TlsError::Incomplete("--tls-cert", "--tls-key")),
            (None, Some(_)) => return Err(TlsError::Incomplete("--tls-key", "--tls-cert")),
        };
        let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.tls_client_ca {
            config = config.client_ca_root(Certificate::from_pem(read_ca("--tls-client-ca", ca)?));
        }
        // tonic parses the PEM only when the server is assembled; doing that here moves a bad
        // certificate or a key that does not match it to start-up.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|error| TlsError::Unusable {
                what: "--tls-cert and --tls-key",
                reason: error_chain(&error),
            })?;
        Ok(Some(config))
    }
}

/// TLS settings of query-service's connection to flag-service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FlagServiceTlsArgs {
    /// PEM CA that flag-service's certificate must chain to (for an https:// --flag-service-url);
    /// without it the system's trusted roots are used.
    #[arg(long, env = "FLAG_SERVICE_CA")]
    pub flag_service_ca: Option<PathBuf>,
    /// Mutual TLS: PEM certificate query-service presents to flag-service.
    #[arg(
        long,
        env = "FLAG_SERVICE_CLIENT_CERT",
        requires = "flag_service_client_key"
    )]
    pub flag_service_client_cert: Option<PathBuf>,
    /// Mutual TLS: PEM private key of --flag-service-client-cert.
    #[arg(
        long,
        env = "FLAG_SERVICE_CLIENT_KEY",
        requires = "flag_service_client_cert"
    )]
    pub flag_service_client_key: Option<PathBuf>,
}

impl FlagServiceTlsArgs {
    /// The client TLS configuration for `url`: `None` for http://, the CA (or the system's
    /// roots) for https://.
    pub fn client_config(&self, url: &str) -> Result<Option<ClientTlsConfig>, TlsError> {
        let https = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if !https {
            let flag = if self.flag_service_ca.is_some() {
                Some("--flag-service-ca")
            } else if self.flag_service_client_cert.is_some() {
                Some("--flag-service-client-cert")
            } else {
                None
            };
            return match flag {
                Some(flag) => Err(TlsError::NotHttps {
                    flag,
                    url: url.to_owned(),
                }),
                None => Ok(None),
            };
        }
        let mut config = ClientTlsConfig::new();
        config = match &self.flag_service_ca {
            Some(ca) => {
                config.ca_certificate(Certificate::from_pem(read_ca("--flag-service-ca", ca)?))
            }
            None => config.with_native_roots(),
        };
        match (
            &self.flag_service_client_cert,
            &self.flag_service_client_key,
        ) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("--flag-service-client-cert", cert)?,
                    read("--flag-service-client-key", key)?,
                ));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(TlsError::Incomplete(
                    "--flag-service-client-cert",
                    "--flag-service-client-key",
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete(
                    "--flag-service-client-key",
                    "--flag-service-client-cert",
                ));
            }
        }
        Ok(Some(config))
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// A CA file with no certificate in it would be accepted by rustls as "trust nothing", and
/// every handshake would fail later with a vaguer error; refuse it at start-up instead.
fn read_ca(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(flag, path)?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

/// tonic's transport errors keep the useful part (which PEM item failed) in their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_needs_no_files() {
        assert!(TlsArgs::default().server_config().unwrap().is_none());
        assert!(
            FlagServiceTlsArgs::default()
                .client_config("http://127.0.0.1:50051")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_ca_for_a_plain_text_url_is_refused() {
        let args = FlagServiceTlsArgs {
            flag_service_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        let refused = args.client_config("http://flag-service:50051").unwrap_err();
        assert!(refused.to_string().contains("https://"), "{refused}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path =
            std::env::temp_dir().join(format!("signins-empty-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, "not a certificate").unwrap();
        let args = FlagServiceTlsArgs {
            flag_service_ca: Some(path.clone()),
            ..Default::default()
        };
        let refused = args
            .client_config("https://flag-service:50051")
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(refused, TlsError::NoCertificate { .. }),
            "{refused}"
        );
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let args = TlsArgs::files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        );
        let refused = args.server_config().unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("--tls-cert /nonexistent/cert.pem"),
            "{refused}"
        );
    }
}
