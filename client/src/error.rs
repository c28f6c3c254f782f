//! Why an election or a pool could not be set up: the field at fault and the fix.

use leasehold_core::{PoolError, TextError, TimingError};
use std::fmt;

/// A setting that cannot be used. Nothing was sent to the API server.
///
/// ```no_run
/// # async fn f(transport: leasehold_adapter_http::HttpTransport) {
/// use leasehold_client::{BuildError, ElectionBuilder};
/// match ElectionBuilder::new("Not A Lease Name").start(transport) {
///     Err(BuildError::Lease(e)) => eprintln!("the lease name: {e}"),
///     Err(e) => eprintln!("{e}"),
///     Ok(_election) => {}
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The lease name (or a pool's prefix) is not a valid Lease name.
    Lease(TextError),
    /// The identity cannot be written as `holderIdentity`.
    Identity(TextError),
    /// The timing breaks client-go's rules.
    Timing(TimingError),
    /// The grace period does not fit between the retry period and the renew deadline.
    Grace(TimingError),
    /// The pool's size or slot names.
    Pool(PoolError),
    /// The transport could not be built.
    Transport(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lease(e) => write!(f, "lease name: {e}: give a DNS-1123 subdomain"),
            Self::Identity(e) => write!(f, "identity: {e}: give one of 1 to 253 bytes"),
            Self::Timing(e) => write!(f, "timing: {e}"),
            Self::Grace(e) => write!(f, "grace: {e}"),
            Self::Pool(e) => write!(f, "pool: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}
