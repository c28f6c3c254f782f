//! Field and label selectors, the subset used with Leases.

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` and `fieldSelector` pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Label>,
    /// (field, value, equal?): `metadata.name` and `metadata.namespace` only.
    fields: Vec<(String, String, bool)>,
}

impl Selector {
    /// Parses both selectors; an error names the bad term.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let mut s = Selector::default();
        if let Some(l) = labels.filter(|l| !l.is_empty()) {
            for term in split_terms(l) {
                s.labels.push(parse_label(term.trim())?);
            }
        }
        if let Some(f) = fields.filter(|f| !f.is_empty()) {
            for term in f.split(',') {
                let (key, value, eq) = if let Some((k, v)) = term.split_once("!=") {
                    (k, v, false)
                } else if let Some((k, v)) = term.split_once("==") {
                    (k, v, true)
                } else if let Some((k, v)) = term.split_once('=') {
                    (k, v, true)
                } else {
                    return Err(format!("invalid field selector: '{term}'"));
                };
                let key = key.trim();
                if key != "metadata.name" && key != "metadata.namespace" {
                    return Err(format!("field label not supported: {key}"));
                }
                s.fields.push((key.to_owned(), value.trim().to_owned(), eq));
            }
        }
        Ok(s)
    }

    /// Whether an object with this name, namespace and labels matches.
    pub fn matches(
        &self,
        name: &str,
        namespace: &str,
        labels: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        let label = |k: &str| labels.get(k).and_then(|v| v.as_str());
        self.fields.iter().all(|(k, v, eq)| {
            let actual = if k == "metadata.name" {
                name
            } else {
                namespace
            };
            (actual == v) == *eq
        }) && self.labels.iter().all(|l| match l {
            Label::Eq(k, v) => label(k) == Some(v.as_str()),
            Label::NotEq(k, v) => label(k) != Some(v.as_str()),
            Label::In(k, vs) => label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Label::NotIn(k, vs) => label(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Label::Exists(k) => label(k).is_some(),
            Label::NotExists(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_label(term: &str) -> Result<Label, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'));
        inner
            .map(|i| i.split(',').map(|v| v.trim().to_owned()).collect())
            .ok_or_else(|| format!("unable to parse requirement: {term}"))
    };
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Label::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Label::Eq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Label::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Label::In(k.trim().into(), set(rest)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Label::NotExists(k.trim().into()));
    }
    if !term.is_empty() && !term.contains([' ', '(', ')']) {
        return Ok(Label::Exists(term.into()));
    }
    Err(format!("unable to parse requirement: {term}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors_match_like_the_api_server() {
        let labels = json!({"app": "agent", "tier": "edge"});
        let labels = labels.as_object().unwrap();
        let s = |l: &str, f: &str| Selector::parse(Some(l), Some(f)).unwrap();
        assert!(s("app=agent", "").matches("x", "ns", labels));
        assert!(s("app in (agent,web),!gone", "metadata.name=x").matches("x", "ns", labels));
        assert!(!s("tier notin (edge)", "").matches("x", "ns", labels));
        assert!(!s("", "metadata.name!=x").matches("x", "ns", labels));
        assert!(s("tier", "metadata.namespace==ns").matches("x", "ns", labels));
        assert!(Selector::parse(None, Some("spec.holderIdentity=a")).is_err());
    }
}
