//! When a failed request means leases cannot be used here, and what to tell the user.

use super::{Plan, Watches};
use crate::error::AgentError;
use crate::rbac;
use leasehold_core::{ApiError, Verb};
use leasehold_runtime::RequestError;

/// The error to report for a refusal: the missing namespace or Lease API for a create answered
/// 404, else every RBAC rule the command needs. `failure` is the refused request in the
/// transport's words (the server's `Status`, the subject it names).
pub(super) fn explain(
    verb: Verb,
    error: &ApiError,
    failure: Option<&RequestError>,
    plan: &Plan,
) -> AgentError {
    match failure {
        _ if *error == ApiError::NotFound => AgentError::runtime(format!(
            "cannot create leases in namespace \"{}\": the API server answered 404{}. The \
             namespace may not exist, or the cluster does not serve coordination.k8s.io/v1 \
             Leases (Kubernetes 1.14 or later)",
            plan.namespace,
            failure
                .and_then(RequestError::server_message)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )),
        Some(failure) => {
            let (namespace, leases) = (&plan.namespace, plan.leases.clone());
            let needs = match plan.watches {
                Watches::Namespace => rbac::Needs::pooling(namespace, leases),
                Watches::ByName => rbac::Needs::holding(namespace, leases, true),
                Watches::Nothing => rbac::Needs::holding(namespace, leases, false),
            };
            rbac::denied(failure, &needs)
        }
        None => AgentError::permission(format!(
            "permission denied: {verb} leases in namespace \"{}\" ({error:?})",
            plan.namespace
        )),
    }
}

/// Whether a failed request means leases cannot be used here: 401 or 403 on any verb (the
/// credentials or the Role), or a create answered 404 (no such namespace, or no Lease API). A
/// read answered 404 only means the lease does not exist yet.
pub fn is_refusal(verb: Verb, error: &ApiError) -> bool {
    error.is_permanent() || (verb == Verb::Create && *error == ApiError::NotFound)
}
