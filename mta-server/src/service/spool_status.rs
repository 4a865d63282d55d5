//! What a caller is told when the spool cannot do what it asked: "full" and "try again"
//! told apart from a spool that cannot open, the storage details kept in the log.

use tonic::Status;

use crate::spool::SpoolError;

impl From<SpoolError> for Status {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Full { .. } => Status::resource_exhausted(e.to_string()),
            SpoolError::DiskFull(_) => {
                tracing::error!(error = %e, "spool failure");
                Status::resource_exhausted("the spool's disk is full: nothing was stored; try again later")
            }
            SpoolError::Closed | SpoolError::Recovering => Status::unavailable(e.to_string()),
            // A failed commit stored nothing, and the writer reopens the file before the
            // next one: a retry may well succeed.
            SpoolError::Storage(_) => {
                tracing::error!(error = %e, "spool failure");
                Status::unavailable("the spool could not store or read this right now: nothing was stored; try again")
            }
            SpoolError::Open { .. } => {
                tracing::error!(error = %e, "spool failure");
                Status::internal("the spool cannot store or read messages")
            }
        }
    }
}
