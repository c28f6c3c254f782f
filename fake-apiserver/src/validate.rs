//! Decoding and validating a Lease body as the API server does: 400 for what cannot be decoded
//! (bad JSON, wrong kind, wrong types, MicroTime without exactly six fractional digits), 422 for
//! decoded objects that break a rule (name, duration, transitions).

use crate::status::{self, ApiStatus, Cause};
use serde_json::{Map, Value};

/// Go's layout for `metav1.MicroTime`: the server insists on exactly six fractional digits.
const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Parses a request body into a JSON object, refusing what the server refuses.
pub fn decode(body: &[u8]) -> Result<Map<String, Value>, ApiStatus> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let head: String = String::from_utf8_lossy(body).chars().take(30).collect();
        status::bad_request(format!(
            "the object provided is unrecognized (must be of type Lease): couldn't get version/kind; \
             json parse error: {} ({head} ...)",
            go_json_error(&e)
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(status::bad_request(format!(
            "the object provided is unrecognized (must be of type Lease): couldn't get version/kind; \
             json parse error: json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \
             \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            json_type(&other)
        ))),
    }
}

fn go_json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".into()
    } else {
        e.to_string()
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `kind`/`apiVersion` (a missing one is filled in, as the server does for the URL's
/// type) and the types of `metadata` and `spec` fields. Unknown spec fields are refused when
/// `strict` (`fieldValidation=Strict`, kubectl's default) and dropped otherwise.
pub fn check_types(obj: &mut Map<String, Value>, strict: bool) -> Result<(), ApiStatus> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("coordination.k8s.io/v1")
        .to_owned();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Lease")
        .to_owned();
    let version = api_version.rsplit('/').next().unwrap_or("v1").to_owned();
    if kind != "Lease" || api_version != "coordination.k8s.io/v1" {
        return Err(status::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a Lease: no kind \"{kind}\" is registered \
             for version \"{api_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        )));
    }
    obj.insert("apiVersion".into(), Value::from("coordination.k8s.io/v1"));
    obj.insert("kind".into(), Value::from("Lease"));
    let cannot = |detail: String| {
        status::bad_request(format!(
            "Lease in version \"v1\" cannot be handled as a Lease: {detail}"
        ))
    };
    let unmarshal = |found: &Value, field: &str, go: &str| {
        cannot(format!(
            "json: cannot unmarshal {} into Go struct field {field} of type {go}",
            json_type(found)
        ))
    };
    match obj.get("metadata") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => return Err(unmarshal(other, "Lease.metadata", "v1.ObjectMeta")),
    }
    if let Some(Value::Object(meta)) = obj.get("metadata") {
        for key in ["name", "namespace", "generateName", "resourceVersion"] {
            match meta.get(key) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(unmarshal(
                        other,
                        &format!("ObjectMeta.metadata.{key}"),
                        "string",
                    ));
                }
            }
        }
        for key in ["labels", "annotations"] {
            match meta.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
                Some(other) => {
                    return Err(unmarshal(
                        other,
                        &format!("ObjectMeta.metadata.{key}"),
                        "map[string]string",
                    ));
                }
            }
        }
    }
    let spec = match obj.get_mut("spec") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(spec)) => spec,
        Some(other) => return Err(unmarshal(other, "Lease.spec", "v1.LeaseSpec")),
    };
    for (key, value) in spec.iter() {
        let field = format!("LeaseSpec.spec.{key}");
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("holderIdentity" | "strategy" | "preferredHolder", Value::String(_)) => {}
            ("leaseDurationSeconds" | "leaseTransitions", Value::Number(n))
                if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {}
            ("leaseDurationSeconds" | "leaseTransitions", other) => {
                return Err(unmarshal(other, &field, "int32"));
            }
            ("acquireTime" | "renewTime", Value::String(s)) => {
                parse_micro_time(s).map_err(|detail| {
                    cannot(format!(
                        "parsing time \"{s}\" as \"{MICRO_LAYOUT}\": {detail}"
                    ))
                })?;
            }
            ("acquireTime" | "renewTime", other) => {
                return Err(unmarshal(other, &field, "v1.MicroTime"));
            }
            ("holderIdentity" | "strategy" | "preferredHolder", other) => {
                return Err(unmarshal(other, &field, "string"));
            }
            _ => {}
        }
    }
    let known = |k: &str| {
        matches!(
            k,
            "holderIdentity"
                | "leaseDurationSeconds"
                | "acquireTime"
                | "renewTime"
                | "leaseTransitions"
                | "strategy"
                | "preferredHolder"
        )
    };
    if strict {
        if let Some(unknown) = spec.keys().find(|k| !known(k)) {
            return Err(cannot(format!(
                "strict decoding error: unknown field \"spec.{unknown}\""
            )));
        }
    }
    // Otherwise unknown spec fields are dropped, as the server prunes them.
    spec.retain(|k, _| known(k));
    Ok(())
}

/// Checks a MicroTime against Go's layout element by element, reporting the first mismatch the
/// way Go's `time.Parse` does ("cannot parse \"Z\" as \".000000\"").
pub fn parse_micro_time(value: &str) -> Result<time::OffsetDateTime, String> {
    let elements: [(&str, usize); 12] = [
        ("2006", 4),
        ("-", 0),
        ("01", 2),
        ("-", 0),
        ("02", 2),
        ("T", 0),
        ("15", 2),
        (":", 0),
        ("04", 2),
        (":", 0),
        ("05", 2),
        (".000000", 6),
    ];
    let mut rest = value;
    for (element, digits) in elements {
        let ok = if digits == 0 {
            rest.strip_prefix(element).inspect(|r| rest = r).is_some()
        } else {
            let (want_dot, n) = if element.starts_with('.') {
                (true, digits)
            } else {
                (false, digits)
            };
            let body = if want_dot {
                rest.strip_prefix('.')
            } else {
                Some(rest)
            };
            match body {
                Some(b)
                    if b.len() >= n
                        && b.as_bytes()[..n].iter().all(u8::is_ascii_digit)
                        && !(want_dot && b.as_bytes().get(n).is_some_and(u8::is_ascii_digit)) =>
                {
                    rest = &b[n..];
                    true
                }
                _ => false,
            }
        };
        if !ok {
            return Err(format!("cannot parse \"{rest}\" as \"{element}\""));
        }
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && [1, 2, 4, 5]
                .iter()
                .all(|&i| rest.as_bytes()[i].is_ascii_digit()));
    if !zone_ok {
        return Err(format!("cannot parse \"{rest}\" as \"Z07:00\""));
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// The rules a decoded Lease must meet (422 when not).
pub fn check_object(name: &str, obj: &Map<String, Value>) -> Result<(), ApiStatus> {
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause {
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else if !is_dns_subdomain(name) {
        causes.push(Cause {
            field: "metadata.name".into(),
            message: format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
                 '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for \
                 validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        });
    }
    if let Some(Value::Object(spec)) = obj.get("spec") {
        if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64) {
            if d <= 0 {
                causes.push(Cause {
                    field: "spec.leaseDurationSeconds".into(),
                    message: format!("Invalid value: {d}: must be greater than 0"),
                });
            }
        }
        if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64) {
            if t < 0 {
                causes.push(Cause {
                    field: "spec.leaseTransitions".into(),
                    message: format!("Invalid value: {t}: must be greater than or equal to 0"),
                });
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(status::invalid(name, causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_needs_exactly_six_fractional_digits() {
        assert!(parse_micro_time("2026-11-22T05:00:00.123456Z").is_ok());
        assert!(parse_micro_time("2026-11-22T05:00:00.123456+02:00").is_ok());
        assert_eq!(
            parse_micro_time("2026-11-22T05:00:00Z").unwrap_err(),
            "cannot parse \"Z\" as \".000000\""
        );
        assert_eq!(
            parse_micro_time("yesterday").unwrap_err(),
            "cannot parse \"yesterday\" as \"2006\""
        );
        assert!(parse_micro_time("2026-11-22T05:00:00.1234567Z").is_err());
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        assert!(is_dns_subdomain("kube-scheduler"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("Bad_Name"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }
}
