//! Turns a 401 or 403 into what to do about it: which verb on which resource is missing, and
//! the Role rule that grants it.

use crate::error::AgentError;
use leasehold_core::{ApiError, Verb};

/// The leases an agent uses in one namespace, for the rule it prints.
pub struct Needs<'a> {
    /// The namespace (`None`: every namespace, which needs a ClusterRole).
    pub namespace: Option<&'a str>,
    /// The lease names, for `resourceNames`; empty when they are not known in advance.
    pub names: &'a [String],
}

/// The error for `error` (401 or 403) on `verb`; `server_says` is the API server's message.
pub fn denied(
    verb: Verb,
    error: &ApiError,
    needs: &Needs<'_>,
    server_says: Option<&str>,
) -> AgentError {
    if *error == ApiError::Unauthorized {
        return AgentError::permission(format!(
            "the API server refused the credentials (401 Unauthorized){}: check the kubeconfig's \
             token or certificate, or the service account token mounted in the pod",
            server_says.map(|m| format!(": {m}")).unwrap_or_default()
        ));
    }
    let scope = match needs.namespace {
        Some(ns) => format!("in namespace \"{ns}\""),
        None => "in all namespaces".to_owned(),
    };
    let mut message = format!(
        "permission denied: cannot {} leases.coordination.k8s.io {scope}",
        verb.as_str()
    );
    if let Some(says) = server_says {
        message.push_str(&format!(" (the API server says: {says})"));
    }
    message.push_str(&format!(
        "\nleasehold needs the verb \"{}\" on the resource \"leases\" in API group \
         \"coordination.k8s.io\". Add this rule to the {} bound to its service account:\n\n{}",
        verb.as_str(),
        if needs.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        },
        rule(verb, needs.names)
    ));
    AgentError::permission(message)
}

/// The Role rule granting `verb` on the leases `names` (all leases when empty). `create` and
/// `list` cannot be limited by `resourceNames` in Kubernetes, so their rule names none.
pub fn rule(verb: Verb, names: &[String]) -> String {
    let by_name = !names.is_empty() && !matches!(verb, Verb::Create | Verb::List);
    let mut rule =
        String::from("- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n");
    if by_name {
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        rule.push_str(&format!("  resourceNames: [{}]\n", quoted.join(", ")));
    }
    let verbs = if by_name {
        "[\"get\", \"watch\", \"update\"]".to_owned()
    } else {
        format!("[\"{}\"]", verb.as_str())
    };
    rule.push_str(&format!("  verbs: {verbs}\n"));
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_names_the_verb_and_prints_the_rule() {
        let names = vec!["controller".to_owned()];
        let e = denied(
            Verb::Update,
            &ApiError::Forbidden,
            &Needs {
                namespace: Some("apps"),
                names: &names,
            },
            Some("User \"x\" cannot update resource \"leases\""),
        );
        assert_eq!(e.code, crate::ExitCode::Permission);
        assert!(
            e.message
                .contains("cannot update leases.coordination.k8s.io in namespace \"apps\"")
        );
        assert!(e.message.contains("the API server says: User \"x\""));
        assert!(
            e.message.contains("resourceNames: [\"controller\"]"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("verbs: [\"get\", \"watch\", \"update\"]")
        );
        assert!(e.message.contains("to the Role bound"));
    }

    #[test]
    fn create_and_list_rules_name_no_resources() {
        let names = vec!["a".to_owned()];
        let create = rule(Verb::Create, &names);
        assert!(!create.contains("resourceNames") && create.contains("verbs: [\"create\"]"));
        let e = denied(
            Verb::List,
            &ApiError::Forbidden,
            &Needs {
                namespace: None,
                names: &[],
            },
            None,
        );
        assert!(e.message.contains("ClusterRole") && e.message.contains("verbs: [\"list\"]"));
    }

    #[test]
    fn a_401_is_about_credentials() {
        let e = denied(
            Verb::Get,
            &ApiError::Unauthorized,
            &Needs {
                namespace: Some("a"),
                names: &[],
            },
            None,
        );
        assert_eq!(e.code, crate::ExitCode::Permission);
        assert!(e.message.contains("401") && e.message.contains("token"));
    }
}
