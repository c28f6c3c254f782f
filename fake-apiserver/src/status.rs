//! `Status` bodies in the exact shapes the real API server sends (see
//! `../shared/apiserver-fixtures/`), so clients decode the sim's errors as they would a cluster's.

use serde_json::{Value, json};

/// An error answer: HTTP status and `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiStatus {
    /// HTTP status code.
    pub code: u16,
    /// The `Status` object.
    pub body: Value,
    /// `Retry-After` seconds, for 429.
    pub retry_after: Option<u64>,
}

const GROUP: &str = "coordination.k8s.io";

fn failure(code: u16, reason: &str, message: String, details: Option<Value>) -> ApiStatus {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body["code"] = json!(code);
    ApiStatus {
        code,
        body,
        retry_after: None,
    }
}

fn lease_details(name: &str) -> Value {
    json!({"name": name, "group": GROUP, "kind": "leases"})
}

/// 404 for a lease.
pub fn not_found(name: &str) -> ApiStatus {
    failure(
        404,
        "NotFound",
        format!("leases.{GROUP} \"{name}\" not found"),
        Some(lease_details(name)),
    )
}

/// 404 for a namespace.
pub fn namespace_not_found(ns: &str) -> ApiStatus {
    failure(
        404,
        "NotFound",
        format!("namespaces \"{ns}\" not found"),
        Some(json!({"name": ns, "kind": "namespaces"})),
    )
}

/// 404 for a path the sim does not serve.
pub fn no_route() -> ApiStatus {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
        Some(json!({})),
    )
}

/// 409 AlreadyExists for a lease.
pub fn already_exists(name: &str) -> ApiStatus {
    failure(
        409,
        "AlreadyExists",
        format!("leases.{GROUP} \"{name}\" already exists"),
        Some(lease_details(name)),
    )
}

/// 409 AlreadyExists for a namespace.
pub fn namespace_exists(ns: &str) -> ApiStatus {
    failure(
        409,
        "AlreadyExists",
        format!("namespaces \"{ns}\" already exists"),
        Some(json!({"name": ns, "kind": "namespaces"})),
    )
}

/// 409 Conflict: a stale resourceVersion on update.
pub fn conflict(name: &str) -> ApiStatus {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on leases.{GROUP} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again"
        ),
        Some(lease_details(name)),
    )
}

/// 409 Conflict: a delete precondition that does not hold.
pub fn precondition_failed(name: &str, wanted: &str, stored: u64) -> ApiStatus {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on Lease.{GROUP} \"{name}\": the ResourceVersion in the precondition \
             ({wanted}) does not match the ResourceVersion in record ({stored}). The object might have been modified"
        ),
        Some(json!({"name": name, "group": GROUP, "kind": "Lease"})),
    )
}

/// A field error for a 422.
pub struct Cause {
    /// `spec.leaseDurationSeconds`, …
    pub field: String,
    /// "Invalid value: -5: must be greater than 0"
    pub message: String,
}

/// 422 Invalid from object validation (`Lease.coordination.k8s.io "x" is invalid: …`).
pub fn invalid(name: &str, causes: Vec<Cause>) -> ApiStatus {
    invalid_as(name, "Lease", &format!("Lease.{GROUP}"), causes)
}

/// 422 Invalid from the update path (`leases.coordination.k8s.io "x" is invalid: …`).
pub fn invalid_update(name: &str, causes: Vec<Cause>) -> ApiStatus {
    invalid_as(name, "leases", &format!("leases.{GROUP}"), causes)
}

fn invalid_as(name: &str, kind: &str, qualified: &str, causes: Vec<Cause>) -> ApiStatus {
    let summary = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>();
    let summary = if summary.len() == 1 {
        summary[0].clone()
    } else {
        format!("[{}]", summary.join(", "))
    };
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({"reason": "FieldValueInvalid", "message": c.message, "field": c.field}))
        .collect();
    failure(
        422,
        "Invalid",
        format!("{qualified} \"{name}\" is invalid: {summary}"),
        Some(json!({"name": name, "group": GROUP, "kind": kind, "causes": causes})),
    )
}

/// 422 Invalid for a watch's query that the server refuses (`ListOptions.meta.k8s.io "" is
/// invalid: …`): a field forbidden by the options beside it, or by a feature gate that is off.
pub fn forbidden_list_option(field: &str, message: &str) -> ApiStatus {
    failure(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: Forbidden: {message}"),
        Some(json!({
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [{"reason": "FieldValueForbidden", "message": format!("Forbidden: {message}"), "field": field}],
        })),
    )
}

/// 400 BadRequest.
pub fn bad_request(message: String) -> ApiStatus {
    failure(400, "BadRequest", message, None)
}

/// 401.
pub fn unauthorized() -> ApiStatus {
    failure(401, "Unauthorized", "Unauthorized".into(), None)
}

/// 403 for `verb` on `resource` (in `group`), naming the user and scope like the RBAC authorizer.
pub fn forbidden(
    user: &str,
    verb: &str,
    resource: &str,
    group: &str,
    name: Option<&str>,
    ns: Option<&str>,
) -> ApiStatus {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    let subject = match name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let mut details = json!({"kind": resource});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(n) = name {
        let mut d = json!({"name": n});
        d.as_object_mut()
            .expect("object")
            .extend(details.as_object().expect("object").clone());
        details = d;
    }
    failure(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
        ),
        Some(details),
    )
}

/// 405 for a verb the path does not take.
pub fn method_not_allowed() -> ApiStatus {
    failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource".into(),
        Some(json!({})),
    )
}

/// 415 for a patch type the sim does not implement.
pub fn unsupported_media_type(ct: &str) -> ApiStatus {
    failure(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct})"
        ),
        None,
    )
}

/// 429, injected.
pub fn too_many_requests(retry_after: u64) -> ApiStatus {
    let mut s = failure(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.".into(),
        Some(json!({"retryAfterSeconds": retry_after})),
    );
    s.retry_after = Some(retry_after);
    s
}

/// 500, injected.
pub fn internal_error() -> ApiStatus {
    failure(
        500,
        "InternalError",
        "Internal error occurred: injected by leasehold-fake-apiserver".into(),
        Some(json!({"causes": [{"message": "injected by leasehold-fake-apiserver"}]})),
    )
}

/// 410 Expired, sent as a watch `ERROR` event.
pub fn expired(requested: u64, oldest: u64) -> Value {
    failure(
        410,
        "Expired",
        format!("too old resource version: {requested} ({oldest})"),
        None,
    )
    .body
}

/// `Status` Success for a delete.
pub fn deleted(name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": GROUP, "kind": "leases", "uid": uid},
    })
}
