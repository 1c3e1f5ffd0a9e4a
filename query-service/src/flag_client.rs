//! query-service's client of flag-service: one CheckFlags call per batch of sign-ins, each
//! asked at the event's own time, with query-service's own short-lived credential and a short
//! deadline so a slow flag-service never holds up ingestion; over TLS for an https:// URL.
//! Each call is a client span whose trace context travels in the request's `traceparent`, so
//! flag-service's work shows in the trace of the RecordSignIns call that needed it.

use crate::domain::sign_in::{FlagCheck, SignIn};
use signins_common::auth::ServiceCredential;
use signins_common::rpc_telemetry::client;
use signins_proto::flag::v1 as pb;
use signins_proto::flag::v1::flag_service_client::FlagServiceClient;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::Instrument;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum FlagCheckError {
    #[error("invalid flag-service URL: {0}")]
    InvalidUrl(String),
    #[error("TLS towards flag-service is not usable: {0}")]
    Tls(String),
    #[error("cannot sign query-service's credential: {0}")]
    Credential(String),
    #[error("flag-service answered {code:?}: {message}")]
    Call { code: tonic::Code, message: String },
    #[error("flag-service answered {got} results for {sent} checks")]
    Mismatch { sent: usize, got: usize },
}

#[derive(Debug, Clone)]
pub struct FlagChecker {
    client: FlagServiceClient<Channel>,
    credential: ServiceCredential,
    deadline: Duration,
}

impl FlagChecker {
    /// Connects lazily: query-service starts, and records sign-ins, while flag-service is down.
    /// `tls` is required for an https:// URL (see `signins_common::tls::FlagServiceTlsArgs`).
    pub fn new(
        url: &str,
        credential: ServiceCredential,
        deadline: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Self, FlagCheckError> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|error| FlagCheckError::InvalidUrl(error.to_string()))?
            .connect_timeout(deadline)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| FlagCheckError::Tls(signins_common::tls::error_chain(&error)))?;
        }
        Ok(Self {
            client: FlagServiceClient::new(endpoint.connect_lazy()),
            credential,
            deadline,
        })
    }

    /// The flag of each sign-in at its own `createdDateTime`, in order. Sign-ins without a
    /// browser id cannot match a flag key and are answered without asking.
    pub async fn check(&self, sign_ins: &[SignIn]) -> Result<Vec<FlagCheck>, FlagCheckError> {
        let mut asked = Vec::new();
        let mut checks = Vec::new();
        for (index, sign_in) in sign_ins.iter().enumerate() {
            if let Some((device_id, browser_id)) = sign_in.flag_client() {
                asked.push(index);
                checks.push(pb::FlagCheck {
                    tenant_id: sign_in.tenant_id.to_string(),
                    user_id: sign_in.user_id.to_string(),
                    client: Some(pb::Client {
                        device_id: device_id.to_owned(),
                        browser_id: browser_id.to_owned(),
                    }),
                    at: Some(prost_types::Timestamp {
                        seconds: sign_in.created_at.timestamp(),
                        nanos: i32::try_from(sign_in.created_at.timestamp_subsec_nanos())
                            .unwrap_or(0),
                    }),
                });
            }
        }
        let mut flags = vec![FlagCheck::NotFlagged; sign_ins.len()];
        if checks.is_empty() {
            return Ok(flags);
        }
        let sent = checks.len();
        let mut request = tonic::Request::new(pb::CheckFlagsRequest { checks });
        request.set_timeout(self.deadline);
        let bearer = self
            .credential
            .bearer()
            .map_err(|error| FlagCheckError::Credential(error.to_string()))?;
        let value = bearer
            .parse()
            .map_err(|_| FlagCheckError::Credential("token is not a valid header".into()))?;
        request.metadata_mut().insert("authorization", value);
        let span = client::span("signins.flag.v1.FlagService", "CheckFlags");
        client::inject(&span, request.metadata_mut());
        let mut flag_service = self.client.clone();
        let answer = tokio::time::timeout(self.deadline, flag_service.check_flags(request))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("deadline passed")));
        client::record_status(
            &span,
            answer
                .as_ref()
                .map_or_else(tonic::Status::code, |_| tonic::Code::Ok),
        );
        drop(span);
        let response = answer
            .map_err(|status| FlagCheckError::Call {
                code: status.code(),
                message: status.message().to_owned(),
            })?
            .into_inner();
        if response.results.len() != sent {
            return Err(FlagCheckError::Mismatch {
                sent,
                got: response.results.len(),
            });
        }
        for (index, result) in asked.into_iter().zip(response.results) {
            if result.flagged {
                // A malformed id from flag-service would be a bug there; treat it as "ask again".
                flags[index] = match Uuid::parse_str(&result.flag_session_id) {
                    Ok(id) => FlagCheck::Flagged(id),
                    Err(_) => FlagCheck::Pending,
                };
            }
        }
        Ok(flags)
    }
}
