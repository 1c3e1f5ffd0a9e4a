//! query-service's one error type and its one mapping to gRPC status codes. Internal causes are
//! logged here and never sent to the client.

use signins_common::db::DbError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed; `field` is its JSON path, e.g. `signIns[1].userId`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The `$filter` does not parse or type-check; the message carries the position.
    #[error("filter: {0}")]
    InvalidFilter(String),
    /// The caller may not read this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No such sign-in in the caller's scope.
    #[error("sign-in {0} not found")]
    NotFound(String),
    /// The query ran longer than the statement timeout.
    #[error("query took too long; narrow the filter")]
    QueryTimeout,
    /// The RPC is not implemented yet.
    #[error("{0}")]
    Unimplemented(&'static str),
    /// The database cannot be reached.
    #[error("database unavailable")]
    Unavailable(#[source] DbError),
    /// A bug or an unexpected database failure.
    #[error("internal error")]
    Internal(#[source] DbError),
}

impl QueryError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        QueryError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<DbError> for QueryError {
    fn from(error: DbError) -> Self {
        if let DbError::Statement(cause) = &error {
            if cause.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
                return QueryError::QueryTimeout;
            }
        }
        if error.is_unavailable() {
            QueryError::Unavailable(error)
        } else {
            QueryError::Internal(error)
        }
    }
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for QueryError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::from(error).into()
    }
}

impl From<QueryError> for Status {
    fn from(error: QueryError) -> Self {
        // Exhaustive on purpose: a new variant must choose its code here.
        match &error {
            QueryError::InvalidArgument { .. } | QueryError::InvalidFilter(_) => {
                Status::new(Code::InvalidArgument, error.to_string())
            }
            QueryError::PermissionDenied(_) => {
                Status::new(Code::PermissionDenied, error.to_string())
            }
            QueryError::NotFound(_) => Status::new(Code::NotFound, error.to_string()),
            QueryError::QueryTimeout => Status::new(Code::DeadlineExceeded, error.to_string()),
            QueryError::Unimplemented(_) => Status::new(Code::Unimplemented, error.to_string()),
            QueryError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Status::new(Code::Unavailable, "database unavailable; retry later")
            }
            QueryError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?std::error::Error::source(cause), "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
