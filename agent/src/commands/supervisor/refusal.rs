//! When a failed request means leases cannot be used here, and what to tell the user.

use super::Plan;
use crate::error::AgentError;
use crate::rbac;
use leasehold_core::{ApiError, Verb};

/// The error to report for a refusal: the missing namespace or Lease API for a create answered
/// 404, else the RBAC rule that grants what was denied.
pub(super) fn explain(
    verb: Verb,
    error: &ApiError,
    plan: &Plan,
    server_says: Option<&str>,
) -> AgentError {
    if *error == ApiError::NotFound {
        return AgentError::runtime(format!(
            "cannot create leases in namespace \"{}\": the API server answered 404{}. The namespace \
             may not exist, or the cluster does not serve coordination.k8s.io/v1 Leases \
             (Kubernetes 1.14 or later)",
            plan.namespace,
            server_says.map(|m| format!(" ({m})")).unwrap_or_default()
        ));
    }
    rbac::denied(
        verb,
        error,
        &rbac::Needs {
            namespace: Some(&plan.namespace),
            names: &plan.leases,
        },
        server_says,
    )
}

/// Whether a failed request means leases cannot be used here: 401 or 403 on any verb (the
/// credentials or the Role), or a create answered 404 (no such namespace, or no Lease API). A
/// read answered 404 only means the lease does not exist yet.
pub fn is_refusal(verb: Verb, error: &ApiError) -> bool {
    error.is_permanent() || (verb == Verb::Create && *error == ApiError::NotFound)
}
