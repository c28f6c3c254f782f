//! Bearer tokens mapped to users, and RBAC-style rules: verbs × resources × namespaces ×
//! optional resourceNames, as a Role grants them.

/// One rule: what a user may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Verbs (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`), or `*`.
    pub verbs: Vec<String>,
    /// Resources (`leases`, `namespaces`, …), or `*`.
    pub resources: Vec<String>,
    /// Namespaces the rule applies in, or `*` for all (and for cluster-scope requests).
    pub namespaces: Vec<String>,
    /// When not empty, only these object names (as a Role's `resourceNames`; a create, which
    /// has no name yet, is then not allowed).
    pub resource_names: Vec<String>,
}

impl Rule {
    /// A rule from string slices.
    pub fn new(
        verbs: &[&str],
        resources: &[&str],
        namespaces: &[&str],
        resource_names: &[&str],
    ) -> Self {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            verbs: own(verbs),
            resources: own(resources),
            namespaces: own(namespaces),
            resource_names: own(resource_names),
        }
    }

    fn allows(&self, verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        any(&self.verbs, verb)
            && any(&self.resources, resource)
            && match ns {
                Some(ns) => any(&self.namespaces, ns),
                None => self.namespaces.iter().any(|n| n == "*"),
            }
            && (self.resource_names.is_empty()
                || name.is_some_and(|n| self.resource_names.iter().any(|r| r == n)))
    }
}

/// A user: a name, its bearer token and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name in 403 messages.
    pub name: String,
    /// Its bearer token.
    pub token: String,
    /// What it may do.
    pub rules: Vec<Rule>,
    /// Whether it may use the sim's admin endpoint (`/_sim/…`).
    pub admin: bool,
}

impl User {
    /// A user that may do everything, including the admin endpoint.
    pub fn admin(name: &str, token: &str) -> Self {
        Self {
            name: name.into(),
            token: token.into(),
            rules: vec![Rule::new(&["*"], &["*"], &["*"], &[])],
            admin: true,
        }
    }

    /// A user with these rules.
    pub fn with_rules(name: &str, token: &str, rules: Vec<Rule>) -> Self {
        Self {
            name: name.into(),
            token: token.into(),
            rules,
            admin: false,
        }
    }

    /// Whether any rule allows the request.
    pub fn allows(&self, verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> bool {
        self.rules
            .iter()
            .any(|r| r.allows(verb, resource, ns, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_restrict_to_named_objects_and_forbid_create() {
        let u = User::with_rules(
            "agent",
            "t",
            vec![Rule::new(
                &["get", "update", "create"],
                &["leases"],
                &["kube-system"],
                &["my-lease"],
            )],
        );
        assert!(u.allows("update", "leases", Some("kube-system"), Some("my-lease")));
        assert!(!u.allows("update", "leases", Some("kube-system"), Some("other")));
        assert!(!u.allows("create", "leases", Some("kube-system"), None));
        assert!(!u.allows("get", "leases", Some("default"), Some("my-lease")));
        assert!(!u.allows("list", "leases", None, None));
    }
}
