//! The core's one error type and the one place it becomes a gRPC status.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// Over a rate limit: try again after this many seconds.
    #[error("submit rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

pub type CoreResult<T> = Result<T, CoreError>;

/// The status metadata entry that says when a rate-limited call may retry.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
}

impl From<CoreError> for Status {
    fn from(err: CoreError) -> Self {
        let code = match &err {
            CoreError::InvalidArgument(_) => Code::InvalidArgument,
            CoreError::Unauthenticated(_) => Code::Unauthenticated,
            CoreError::NotFound(_) => Code::NotFound,
            CoreError::AlreadyExists(_) => Code::AlreadyExists,
            CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoreError::ResourceExhausted(_) => Code::ResourceExhausted,
            CoreError::RateLimited(secs) => {
                let mut status = Status::resource_exhausted(err.to_string());
                if let Ok(value) = secs.to_string().parse() {
                    status.metadata_mut().insert(RETRY_AFTER_METADATA, value);
                }
                return status;
            }
            CoreError::Unavailable(_) => Code::Unavailable,
            CoreError::Database(e) => {
                // The detail stays in the log; clients get no SQL.
                tracing::error!(error = %e, "database error");
                return match e {
                    sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                        Status::unavailable("database unavailable")
                    }
                    _ => Status::internal("internal error"),
                };
            }
        };
        Status::new(code, err.to_string())
    }
}
