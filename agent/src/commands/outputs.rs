//! What every long-running command shows, started the same way: the shared status, the status
//! file, the HTTP endpoints, and the metered transport that keeps them current.

use crate::cli::OutputArgs;
use crate::error::AgentError;
use crate::status::Shared;
use crate::transport::{AnyTransport, Metered};
use leasehold_core::Identity;
use std::sync::Arc;
use std::time::Duration;

/// The running outputs of one command; the endpoints stop when this is dropped.
pub struct Outputs {
    /// The shared status.
    pub shared: Arc<Shared>,
    /// The transport, reporting every request to `shared`.
    pub transport: Arc<Metered>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Outputs {
    /// Writes the first status file and starts the endpoints, for `identity` on `name` (a lease,
    /// or a pool's prefix). `/healthz` fails after `healthz_after` without a renewal.
    pub async fn start(
        name: &str,
        identity: &Identity,
        output: &OutputArgs,
        healthz_after: Duration,
        transport: AnyTransport,
    ) -> Result<Self, AgentError> {
        let shared = Arc::new(Shared::new(
            name,
            identity.as_str(),
            output.status_file.clone(),
            healthz_after,
        ));
        shared
            .write_initial()
            .map_err(|e| AgentError::usage(format!("--status-file: cannot write it: {e}")))?;
        let server = match output.listen {
            Some(addr) => Some(crate::server::serve(addr, shared.clone()).await?),
            None => None,
        };
        let transport = Arc::new(Metered {
            inner: transport,
            shared: shared.clone(),
        });
        Ok(Self {
            shared,
            transport,
            server,
        })
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}
