//! flag-service's one error type and its one mapping to gRPC status codes. Internal causes are
//! logged here with their chain and never sent to the client.

use chrono::{DateTime, Utc};
use signins_common::db::DbError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// The request is malformed; `field` is its JSON path, e.g. `checks[3].userId`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The caller's token does not allow this request (e.g. another tenant).
    #[error("{0}")]
    PermissionDenied(String),
    /// The user started too many new flag sessions in the last hour.
    #[error(
        "too many flag sessions enabled for this user: at most {limit} per hour; retry after {retry_at}"
    )]
    RateLimited {
        limit: u32,
        retry_at: DateTime<Utc>,
        retry_after_seconds: i64,
    },
    /// The database cannot be reached.
    #[error("database unavailable")]
    Unavailable(#[source] DbError),
    /// A bug or an unexpected database failure.
    #[error("internal error")]
    Internal(#[source] DbError),
    /// The database answered something its statement cannot produce.
    #[error("internal error: {0}")]
    Unexpected(&'static str),
}

impl FlagError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FlagError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<DbError> for FlagError {
    fn from(error: DbError) -> Self {
        if error.is_unavailable() {
            FlagError::Unavailable(error)
        } else {
            FlagError::Internal(error)
        }
    }
}

impl From<tokio_postgres::Error> for FlagError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for FlagError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::from(error).into()
    }
}

impl From<FlagError> for Status {
    fn from(error: FlagError) -> Self {
        // Exhaustive on purpose: a new variant must choose its code here.
        match &error {
            FlagError::InvalidArgument { .. } => {
                Status::new(Code::InvalidArgument, error.to_string())
            }
            FlagError::PermissionDenied(_) => {
                Status::new(Code::PermissionDenied, error.to_string())
            }
            FlagError::RateLimited {
                retry_after_seconds,
                ..
            } => {
                let mut status = Status::new(Code::ResourceExhausted, error.to_string());
                if let Ok(value) = retry_after_seconds.to_string().parse() {
                    status.metadata_mut().insert("retry-after", value);
                }
                status
            }
            FlagError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Status::new(Code::Unavailable, "database unavailable; retry later")
            }
            FlagError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?std::error::Error::source(cause), "internal error");
                Status::new(Code::Internal, "internal error")
            }
            FlagError::Unexpected(what) => {
                tracing::error!(what, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
