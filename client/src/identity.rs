//! Who this process is in the lease, unless told.

use leasehold_core::Identity;

/// This machine's hostname.
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// An identity unique to this process: `POD_NAME` (else the hostname), `_` and a random UUID,
/// new at each start, as the API server's identity leases are. Two processes on one host, or a
/// process and its own restart, then never share an identity: a lease naming it would look
/// like theirs to both, and the work of one could overlap the other's.
///
/// ```
/// let me = leasehold_client::unique_identity();
/// assert_ne!(me, leasehold_client::unique_identity());
/// ```
pub fn unique_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(hostname);
    format!("{base}_{}", uuid::Uuid::new_v4())
}

/// A seed for the machine's jitter: different in every process and at every start.
pub(crate) fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// The identity given, or [`unique_identity`], checked.
pub(crate) fn identity(given: Option<&str>) -> Result<Identity, crate::BuildError> {
    let text = given.map_or_else(unique_identity, str::to_owned);
    Identity::new(&text).map_err(crate::BuildError::Identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_identity_differs_at_every_start() {
        let (a, b) = (unique_identity(), unique_identity());
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
        assert!(
            a.rsplit_once('_').is_some_and(|(_, uuid)| uuid.len() == 36),
            "{a}"
        );
        assert!(identity(Some("")).is_err(), "an empty identity is refused");
        assert_eq!(identity(Some("pod-a")).unwrap().as_str(), "pod-a");
    }
}
