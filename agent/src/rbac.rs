//! Turns a 401 or 403 into what to do about it: every rule the command needs (not just the verb
//! that failed, so following the advice does not meet the next 403), and a Role and binding for
//! the subject the API server named.
//!
//! A watching pool needs more than an election: it watches all its slots with one stream, a
//! list and then a watch of the namespace's leases, which name no lease, so `resourceNames`
//! cannot grant them: its Role grants `list` and `watch` on leases in the namespace (Sysdig's
//! own Role for its agent already does). Under a Role that only names the slots, the pool still
//! works: refused the stream, it reads and watches each slot by name.

use crate::error::AgentError;
use leasehold_core::{ApiError, Verb};
use leasehold_runtime::RequestError;

/// What one command needs on leases.
#[derive(Clone, Debug)]
pub struct Needs {
    /// The namespace (`None`: every namespace, which needs a ClusterRole).
    pub namespace: Option<String>,
    /// The lease names, for `resourceNames`; empty when they are not known in advance.
    pub names: Vec<String>,
    /// Every verb the command uses.
    pub verbs: Vec<Verb>,
}

impl Needs {
    /// Holding or renewing the leases `names` (elect, pool, heartbeat, identity): read, create
    /// and write them, and watch them when `watch`.
    pub fn holding(namespace: &str, names: Vec<String>, watch: bool) -> Self {
        let mut verbs = vec![Verb::Get, Verb::Create, Verb::Update];
        if watch {
            verbs.push(Verb::Watch);
        }
        Self {
            namespace: Some(namespace.to_owned()),
            names,
            verbs,
        }
    }

    /// Holding one of the slots `names` of a watching pool: as [`Needs::holding`], plus `list`
    /// and `watch` of every lease in the namespace for the pool's one stream of its slots.
    pub fn pooling(namespace: &str, names: Vec<String>) -> Self {
        let mut needs = Self::holding(namespace, names, true);
        needs.verbs.push(Verb::List);
        needs
    }

    /// Listing leases (`get`, `heartbeat --watch`), in one namespace or all.
    pub fn listing(namespace: Option<&str>) -> Self {
        Self {
            namespace: namespace.map(str::to_owned),
            names: Vec::new(),
            verbs: vec![Verb::List],
        }
    }

    /// Deleting expired leases (`gc`): list them, then delete each.
    pub fn collecting(namespace: &str) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            names: Vec::new(),
            verbs: vec![Verb::List, Verb::Delete],
        }
    }
}

/// Who the API server says made the request, from its 403 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// `system:serviceaccount:NAMESPACE:NAME`.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// `system:anonymous`: the request carried no credentials the server accepted.
    Anonymous,
    /// Any other user name (a certificate's CN, an OIDC user, …).
    User(String),
}

impl Subject {
    /// The subject a 403 message names (`User "…" cannot …`), if it names one.
    pub fn from_message(message: &str) -> Option<Self> {
        let start = message.find("User \"")? + "User \"".len();
        let user = &message[start..start + message[start..].find('"')?];
        Some(match user.strip_prefix("system:serviceaccount:") {
            Some(rest) => {
                let (namespace, name) = rest.split_once(':')?;
                Self::ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                }
            }
            None if user == "system:anonymous" => Self::Anonymous,
            None => Self::User(user.to_owned()),
        })
    }

    /// The subject as a binding names it.
    fn binding(&self) -> Option<String> {
        match self {
            Self::ServiceAccount { namespace, name } => Some(format!(
                "- kind: ServiceAccount\n  name: {name}\n  namespace: {namespace}\n"
            )),
            Self::User(name) => Some(format!(
                "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {}\n",
                quote(name)
            )),
            Self::Anonymous => None,
        }
    }
}

/// The error for a refused request (401 or 403).
pub fn denied(error: &RequestError, needs: &Needs) -> AgentError {
    if error.kind == ApiError::Unauthorized {
        return AgentError::permission(format!(
            "the API server refused the credentials: {error}\ncheck the kubeconfig's token or \
             certificate, or the service account token mounted in the pod"
        ));
    }
    let subject = error.server_message().and_then(Subject::from_message);
    let mut message = format!("permission denied: {error}\n");
    if subject == Some(Subject::Anonymous) {
        message.push_str(
            "the request was anonymous: the API server accepted none of the credentials sent. \
             Check the kubeconfig's user, or the service account token mounted in the pod.",
        );
        return AgentError::permission(message);
    }
    let scope = match &needs.namespace {
        Some(ns) => format!("in namespace \"{ns}\""),
        None => "in every namespace".to_owned(),
    };
    let verbs: Vec<&str> = needs.verbs.iter().map(|v| v.as_str()).collect();
    message.push_str(&format!(
        "this command needs {} on leases (API group coordination.k8s.io) {scope}. ",
        verbs.join(", ")
    ));
    let binding = subject.as_ref().and_then(Subject::binding);
    match (&subject, &binding) {
        (Some(Subject::ServiceAccount { namespace, name }), Some(_)) => message.push_str(&format!(
            "Grant them all to the service account \"{name}\" in namespace \"{namespace}\", \
             the subject the API server named (kubectl apply -f):\n\n"
        )),
        (Some(Subject::User(name)), Some(_)) => message.push_str(&format!(
            "Grant them all to the user \"{name}\", the subject the API server named (or to a \
             group it belongs to) (kubectl apply -f):\n\n"
        )),
        _ => message.push_str(
            "Grant them all with this role, bound to the user, group or service account the \
             kubeconfig authenticates as (`kubectl auth whoami` names it):\n\n",
        ),
    }
    message.push_str(&manifest(needs, binding.as_deref()));
    AgentError::permission(message)
}

/// The error for a failed request: a refusal (401, 403) gets the rules `needs`; anything else
/// is told in the request's own words (the server's `Status`, or the cause).
pub fn failed(error: &RequestError, needs: &Needs) -> AgentError {
    if error.kind.is_permanent() {
        denied(error, needs)
    } else {
        AgentError::runtime(format!("cannot {error}"))
    }
}

/// A Role (ClusterRole for every namespace) with every rule of `needs`, and its binding to
/// `subject` when known.
pub fn manifest(needs: &Needs, subject: Option<&str>) -> String {
    let (kind, namespace) = match &needs.namespace {
        Some(ns) => ("Role", format!("\n  namespace: {ns}")),
        None => ("ClusterRole", String::new()),
    };
    let mut out = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: leasehold{namespace}\nrules:\n{}",
        rules(&needs.verbs, &needs.names)
    );
    if let Some(subject) = subject {
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}Binding\nmetadata:\n  \
             name: leasehold{namespace}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  \
             kind: {kind}\n  name: leasehold\nsubjects:\n{subject}"
        ));
    }
    out
}

/// The rules granting `verbs` on the leases `names` (all leases when empty). `create` and
/// `list` cannot be limited by `resourceNames` in Kubernetes, so they get a rule of their own;
/// so does a `watch` beside a `list`, which is of the namespace (a pool's stream), not of a
/// lease by name.
pub fn rules(verbs: &[Verb], names: &[String]) -> String {
    let lists = verbs.contains(&Verb::List);
    let unnamed = |v: &Verb| {
        names.is_empty() || matches!(v, Verb::Create | Verb::List) || (lists && *v == Verb::Watch)
    };
    let rule = |verbs: Vec<&Verb>, names: Option<&[String]>| {
        let mut rule =
            String::from("- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n");
        if let Some(names) = names {
            let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
            rule.push_str(&format!("  resourceNames: [{}]\n", quoted.join(", ")));
        }
        let mut verbs: Vec<&str> = verbs.iter().map(|v| v.as_str()).collect();
        verbs.sort_unstable();
        let quoted: Vec<String> = verbs.iter().map(|v| format!("\"{v}\"")).collect();
        rule.push_str(&format!("  verbs: [{}]\n", quoted.join(", ")));
        rule
    };
    let named: Vec<&Verb> = verbs.iter().filter(|v| !unnamed(v)).collect();
    let other: Vec<&Verb> = verbs.iter().filter(|v| unnamed(v)).collect();
    let mut out = String::new();
    if !named.is_empty() {
        out.push_str(&rule(named, Some(names)));
    }
    if !other.is_empty() {
        out.push_str(&rule(other, None));
    }
    out
}

/// `text` as a YAML double-quoted string.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_runtime::ServerStatus;

    fn forbidden(verb: Verb, message: &str) -> RequestError {
        RequestError::refused(
            verb,
            "leases/controller",
            ServerStatus {
                code: 403,
                reason: "Forbidden".into(),
                message: message.into(),
                ..ServerStatus::default()
            },
        )
    }

    const SA: &str = "leases.coordination.k8s.io \"controller\" is forbidden: User \
                      \"system:serviceaccount:apps:agent\" cannot update resource \"leases\" in API \
                      group \"coordination.k8s.io\" in the namespace \"apps\"";

    #[test]
    fn a_403_lists_every_rule_the_command_needs_and_binds_the_named_service_account() {
        let e = denied(
            &forbidden(Verb::Update, SA),
            &Needs::holding("apps", vec!["controller".into()], true),
        );
        assert_eq!(e.code, crate::ExitCode::Permission);
        let m = &e.message;
        assert!(
            m.starts_with("permission denied: update leases/controller: 403 Forbidden: leases"),
            "{m}"
        );
        assert!(
            m.contains("needs get, create, update, watch on leases"),
            "{m}"
        );
        assert!(
            m.contains(
                "  resourceNames: [\"controller\"]\n  verbs: [\"get\", \"update\", \"watch\"]\n"
            ),
            "{m}"
        );
        assert!(m.contains("- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"create\"]\n"), "{m}");
        assert!(
            m.contains("kind: Role\n") && m.contains("kind: RoleBinding\n"),
            "{m}"
        );
        assert!(
            m.contains("- kind: ServiceAccount\n  name: agent\n  namespace: apps\n"),
            "{m}"
        );
        assert!(
            m.contains("the service account \"agent\" in namespace \"apps\""),
            "{m}"
        );
    }

    #[test]
    fn a_pool_is_granted_list_and_watch_of_the_namespace_and_the_rest_on_its_slots() {
        let e = denied(
            &forbidden(Verb::Create, SA),
            &Needs::pooling("apps", vec!["cold-start-0".into(), "cold-start-1".into()]),
        );
        let m = &e.message;
        assert!(
            m.contains("needs get, create, update, watch, list on leases"),
            "{m}"
        );
        assert!(
            m.contains(
                "  resourceNames: [\"cold-start-0\", \"cold-start-1\"]\n  verbs: [\"get\", \"update\"]\n"
            ),
            "{m}"
        );
        assert!(
            m.contains(
                "- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"create\", \"list\", \"watch\"]\n"
            ),
            "one stream of the namespace needs list and watch without resourceNames: {m}"
        );
    }

    #[test]
    fn a_user_is_bound_as_a_user_and_every_namespace_needs_a_cluster_role() {
        let e = denied(
            &forbidden(
                Verb::List,
                "leases.coordination.k8s.io is forbidden: User \"alice\" cannot list resource \
                 \"leases\" in API group \"coordination.k8s.io\" at the cluster scope",
            ),
            &Needs::listing(None),
        );
        let m = &e.message;
        assert!(
            m.contains("kind: ClusterRole\n") && m.contains("kind: ClusterRoleBinding\n"),
            "{m}"
        );
        assert!(
            m.contains("- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: \"alice\"\n"),
            "{m}"
        );
        assert!(
            m.contains("verbs: [\"list\"]") && !m.contains("resourceNames"),
            "{m}"
        );
        assert!(m.contains("in every namespace"), "{m}");
    }

    #[test]
    fn without_a_named_subject_the_role_is_given_without_a_binding() {
        let e = denied(&forbidden(Verb::Delete, ""), &Needs::collecting("apps"));
        let m = &e.message;
        assert!(m.contains("verbs: [\"delete\", \"list\"]"), "{m}");
        assert!(
            !m.contains("RoleBinding") && m.contains("kubectl auth whoami"),
            "{m}"
        );
    }

    #[test]
    fn an_anonymous_request_is_about_credentials() {
        let e = denied(
            &forbidden(
                Verb::Get,
                "leases.coordination.k8s.io \"a\" is forbidden: User \"system:anonymous\" cannot get resource \"leases\"",
            ),
            &Needs::holding("a", vec![], false),
        );
        assert!(e.message.contains("anonymous") && !e.message.contains("kind: Role"));
    }

    #[test]
    fn a_401_is_about_credentials() {
        let e = denied(
            &RequestError::refused(
                Verb::Get,
                "leases/a",
                ServerStatus {
                    code: 401,
                    reason: "Unauthorized".into(),
                    message: "Unauthorized".into(),
                    ..ServerStatus::default()
                },
            ),
            &Needs::holding("a", vec![], false),
        );
        assert_eq!(e.code, crate::ExitCode::Permission);
        assert!(e.message.contains("401 Unauthorized") && e.message.contains("token"));
    }

    #[test]
    fn subjects_parse_from_the_servers_words() {
        assert_eq!(
            Subject::from_message(SA),
            Some(Subject::ServiceAccount {
                namespace: "apps".into(),
                name: "agent".into()
            })
        );
        assert_eq!(Subject::from_message("no user here"), None);
        assert_eq!(Subject::from_message("User \"unterminated"), None);
    }
}
