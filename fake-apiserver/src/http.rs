//! Routing and handlers: discovery, namespaces, leases (CRUD, list, watch), the admin
//! endpoint, and the order every API request goes through (faults, authentication,
//! authorisation, handler, counting).

use crate::auth::User;
use crate::faults::{Counters, FaultState, Faults, Verdict};
use crate::selector::Selector;
use crate::status::{self, ApiStatus};
use crate::store::{Change, Store, event_line};
use crate::validate;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

const GROUP: &str = "coordination.k8s.io";

/// State shared by every connection.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub users: Vec<User>,
    pub faults: FaultState,
    pub counters: Counters,
    /// Every `User-Agent` an API request carried, so tests can see what reaches a server.
    pub user_agents: Mutex<std::collections::BTreeSet<String>>,
    pub bookmark_interval: Duration,
    pub max_watch: Duration,
    pub watch_list: crate::WatchList,
}

impl Shared {
    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Returned to hyper to close the connection without an answer (an injected drop).
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn full(status: u16, body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    full(
        status,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        "application/json",
    )
}

fn status_response(s: &ApiStatus) -> Response<Body> {
    let mut r = json_response(s.code, &s.body);
    if let Some(after) = s.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    r
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Version,
    Discovery(Value),
    Namespaces,
    Namespace(String),
    Leases(Option<String>),
    Lease(String, String),
    /// `/openapi/v3` and the coordination.k8s.io/v1 document: enough for kubectl to see that
    /// the server validates fields itself (`fieldValidation`), so `kubectl apply` works.
    OpenApi(Value),
    /// Another resource of the core group or any group: only authorisation is answered.
    Other {
        group: String,
        resource: String,
        ns: Option<String>,
        name: Option<String>,
    },
    Unknown,
}

fn route(path: &str) -> Target {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => Target::Version,
        ["api"] => Target::Discovery(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["api", "v1"] => Target::Discovery(
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["create", "get", "list"], "shortNames": ["ns"]}]}),
        ),
        ["apis"] => Target::Discovery(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_json()]}),
        ),
        ["apis", GROUP] => Target::Discovery({
            let mut g = group_json();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        }),
        ["apis", GROUP, "v1"] => Target::Discovery(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1", "resources": [
            {"name": "leases", "singularName": "lease", "namespaced": true, "kind": "Lease", "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], "storageVersionHash": "gqkMMb/YqFM="}]}),
        ),
        ["openapi", "v3"] => Target::OpenApi(json!({"paths": {"apis/coordination.k8s.io/v1": {
            "serverRelativeURL": "/openapi/v3/apis/coordination.k8s.io/v1?hash=leasehold-fake-apiserver"}}})),
        ["openapi", "v3", "apis", GROUP, "v1"] => Target::OpenApi(openapi_v3()),
        ["api", "v1", "namespaces"] => Target::Namespaces,
        ["api", "v1", "namespaces", ns] => Target::Namespace((*ns).into()),
        ["apis", GROUP, "v1", "leases"] => Target::Leases(None),
        ["apis", GROUP, "v1", "namespaces", ns, "leases"] => Target::Leases(Some((*ns).into())),
        ["apis", GROUP, "v1", "namespaces", ns, "leases", name] => {
            Target::Lease((*ns).into(), (*name).into())
        }
        ["api", "v1", "namespaces", ns, resource, rest @ ..] if rest.len() <= 1 => Target::Other {
            group: String::new(),
            resource: (*resource).into(),
            ns: Some((*ns).into()),
            name: rest.first().map(|n| (*n).into()),
        },
        ["api", "v1", resource, rest @ ..] if rest.len() <= 1 => Target::Other {
            group: String::new(),
            resource: (*resource).into(),
            ns: None,
            name: rest.first().map(|n| (*n).into()),
        },
        [
            "apis",
            group,
            _version,
            "namespaces",
            ns,
            resource,
            rest @ ..,
        ] if rest.len() <= 1 => Target::Other {
            group: (*group).into(),
            resource: (*resource).into(),
            ns: Some((*ns).into()),
            name: rest.first().map(|n| (*n).into()),
        },
        _ => Target::Unknown,
    }
}

fn openapi_v3() -> Value {
    let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let gvk = json!({"group": GROUP, "version": "v1", "kind": "Lease"});
    let op = |action: &str| {
        json!({"parameters": [field_validation.clone()], "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk.clone(),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.k8s.api.coordination.v1.Lease"}}}}}})
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (leasehold-fake-apiserver)", "version": "v1.36.2"},
        "paths": {
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases": {"post": op("post")},
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}": {"put": op("put"), "patch": op("patch")},
        },
        "components": {"schemas": {"io.k8s.api.coordination.v1.Lease": {
            "type": "object",
            "x-kubernetes-group-version-kind": [gvk],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}, "spec": {"type": "object"}},
        }}},
    })
}

fn group_json() -> Value {
    json!({"name": GROUP, "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
           "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}})
}

fn version_json() -> Value {
    json!({"major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36", "minCompatibilityMajor": "1",
           "minCompatibilityMinor": "35", "gitVersion": "v1.36.2-leasehold-fake-apiserver", "gitCommit": "0000000000000000000000000000000000000000",
           "gitTreeState": "clean", "buildDate": "2026-11-22T00:00:00Z", "goVersion": "n/a (leasehold-fake-apiserver)", "compiler": "rustc",
           "platform": "linux/amd64"})
}

/// The RBAC verb of a request.
fn verb(method: &Method, target: &Target, watch: bool) -> &'static str {
    let collection = matches!(
        target,
        Target::Leases(_) | Target::Namespaces | Target::Other { name: None, .. }
    );
    match *method {
        Method::GET if collection && watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Serves one request.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/livez") {
        return Ok(full(
            200,
            Bytes::from_static(b"ok"),
            "text/plain; charset=utf-8",
        ));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let user = token.and_then(|t| shared.users.iter().find(|u| u.token == t).cloned());
    if let Some(rest) = path.strip_prefix("/_sim/") {
        return Ok(match user {
            Some(u) if u.admin => admin(&shared, req, rest).await,
            Some(_) => status_response(&status::forbidden("", "use", "_sim", "", None, None)),
            None => status_response(&status::unauthorized()),
        });
    }
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        shared
            .user_agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent.to_owned());
    }
    let target = route(&path);
    let q = query(&req);
    let watching = q.get("watch").is_some_and(|w| w == "1" || w == "true");
    let verb = verb(req.method(), &target, watching);
    let resource = match &target {
        Target::Version => "version",
        Target::Discovery(_) | Target::OpenApi(_) => "discovery",
        Target::Namespaces | Target::Namespace(_) => "namespaces",
        Target::Leases(_) | Target::Lease(..) => "leases",
        Target::Other { resource, .. } => resource.as_str(),
        Target::Unknown => "unknown",
    }
    .to_owned();
    let response = match shared.faults.admit().await {
        Verdict::Drop => {
            shared.counters.add(verb, &resource, 0);
            return Err(Dropped);
        }
        Verdict::Error => status_response(&status::internal_error()),
        Verdict::Throttle(after) => status_response(&status::too_many_requests(after)),
        Verdict::Serve => match user {
            None => status_response(&status::unauthorized()),
            Some(user) => match authorize(&user, verb, &target, selected_name(verb, &q)) {
                Err(denied) => status_response(&denied),
                Ok(()) => handle(&shared, req, target, verb, q).await,
            },
        },
    };
    shared
        .counters
        .add(verb, &resource, response.status().as_u16());
    Ok(response)
}

/// The object a list or watch is limited to by `fieldSelector=metadata.name=…`: the real API
/// server authorizes such a request against `resourceNames` as if it named the object.
fn selected_name<'q>(verb: &str, q: &'q HashMap<String, String>) -> Option<&'q str> {
    if verb != "list" && verb != "watch" {
        return None;
    }
    let selector = q.get("fieldSelector")?;
    let name = selector
        .strip_prefix("metadata.name=")
        .or_else(|| selector.strip_prefix("metadata.name=="))?;
    (!name.contains(',')).then_some(name)
}

fn authorize(
    user: &User,
    verb: &str,
    target: &Target,
    selected: Option<&str>,
) -> Result<(), ApiStatus> {
    let (group, resource, ns, name) = match target {
        Target::Version | Target::Discovery(_) | Target::OpenApi(_) | Target::Unknown => {
            return Ok(());
        }
        Target::Namespaces => ("", "namespaces", None, None),
        Target::Namespace(n) => ("", "namespaces", None, Some(n.as_str())),
        Target::Leases(ns) => (GROUP, "leases", ns.as_deref(), selected),
        Target::Lease(ns, name) => (GROUP, "leases", Some(ns.as_str()), Some(name.as_str())),
        Target::Other {
            group,
            resource,
            ns,
            name,
        } => (
            group.as_str(),
            resource.as_str(),
            ns.as_deref(),
            name.as_deref(),
        ),
    };
    if user.allows(verb, resource, ns, name) {
        Ok(())
    } else {
        Err(status::forbidden(
            &user.name, verb, resource, group, name, ns,
        ))
    }
}

async fn body_bytes(req: Request<Incoming>) -> Result<Bytes, ApiStatus> {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| status::bad_request(format!("reading the request body: {e}")))
}

async fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    target: Target,
    verb: &str,
    q: HashMap<String, String>,
) -> Response<Body> {
    // kubectl asks for a server-side Table to print columns; `-o yaml` asks for the object.
    let table = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    let result = match (target, verb) {
        (Target::Version, "get") => Ok((200, version_json())),
        (Target::Discovery(v) | Target::OpenApi(v), "get" | "list") => Ok((200, v)),
        (Target::Namespaces, "list") => {
            let items: Vec<Value> = shared
                .store()
                .namespaces()
                .map(|n| namespace_json(n))
                .collect();
            Ok((
                200,
                json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items}),
            ))
        }
        (Target::Namespaces, "create") => create_namespace(shared, req).await,
        (Target::Namespace(ns), "get") => {
            if shared.store().has_namespace(&ns) {
                Ok((200, namespace_json(&ns)))
            } else {
                Err(status::namespace_not_found(&ns))
            }
        }
        (Target::Leases(ns), "list") => list(shared, ns.as_deref(), &q).map(|(code, v)| {
            if table {
                (
                    code,
                    as_table(
                        v["items"].as_array().map_or(&[][..], Vec::as_slice),
                        Some(&v["metadata"]),
                    ),
                )
            } else {
                (code, v)
            }
        }),
        (Target::Leases(ns), "watch") => return watch(shared, ns, &q),
        (Target::Leases(Some(ns)), "create") => create(shared, &ns, req, strict(&q)).await,
        (Target::Lease(ns, name), "get") => shared.store().get(&ns, &name).map(|v| {
            if table {
                (200, as_table(&[v], None))
            } else {
                (200, v)
            }
        }),
        (Target::Lease(ns, name), "update") => update(shared, &ns, &name, req, strict(&q)).await,
        (Target::Lease(ns, name), "patch") => patch(shared, &ns, &name, req).await,
        (Target::Lease(ns, name), "delete") => delete(shared, &ns, &name, req).await,
        (Target::Other { .. } | Target::Unknown, _) => Err(status::no_route()),
        _ => Err(status::method_not_allowed()),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(s) => status_response(&s),
    }
}

/// A `meta.k8s.io/v1` Table of leases with the columns the real server prints: Name, Holder, Age.
fn as_table(leases: &[Value], list_meta: Option<&Value>) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<Value> = leases
        .iter()
        .map(|l| {
            let age = l["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                .map_or_else(|| "<unknown>".to_owned(), |t| human_age(now - t));
            let mut meta = l["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": [l["metadata"]["name"], l["spec"]["holderIdentity"].as_str().unwrap_or(""), age],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    let column = |name: &str, format: &str, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0});
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.cloned().unwrap_or_else(|| json!({})),
        "columnDefinitions": [
            column("Name", "name", "Name must be unique within a namespace."),
            column("Holder", "", "holderIdentity contains the identity of the holder of a current lease."),
            column("Age", "", "CreationTimestamp is a timestamp representing the server time when this object was created."),
        ],
        "rows": rows,
    })
}

/// kubectl's short ages: 45s, 3m12s, 5h, 12d.
fn human_age(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn namespace_json(ns: &str) -> Value {
    json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

async fn create_namespace(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
) -> Result<(u16, Value), ApiStatus> {
    let body = validate::decode(&body_bytes(req).await?)?;
    let name = body
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return Err(status::bad_request("namespace name is required".into()));
    }
    if shared.store().add_namespace(&name) {
        Ok((201, namespace_json(&name)))
    } else {
        Err(status::namespace_exists(&name))
    }
}

type Handled = Result<(u16, Value), ApiStatus>;

fn continue_token(key: &(String, String)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!([key.0, key.1])).unwrap_or_default())
}

fn parse_continue(token: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    serde_json::from_slice::<(String, String)>(&bytes).ok()
}

fn list(shared: &Arc<Shared>, ns: Option<&str>, q: &HashMap<String, String>) -> Handled {
    let selector = Selector::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    )
    .map_err(status::bad_request)?;
    let start = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_continue(c).ok_or_else(|| {
            status::bad_request("continue key is not valid: illegal base64 data".into())
        })?),
        None => None,
    };
    let limit = q.get("limit").and_then(|l| l.parse().ok());
    let store = shared.store();
    let (items, next, remaining) = store.list(ns, &selector, start, limit);
    let mut metadata = json!({"resourceVersion": store.resource_version().to_string()});
    if let Some(key) = next {
        metadata["continue"] = json!(continue_token(&key));
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok((
        200,
        json!({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1", "metadata": metadata, "items": items}),
    ))
}

fn check_namespace(obj: &serde_json::Map<String, Value>, ns: &str) -> Result<(), ApiStatus> {
    match obj
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(given) if !given.is_empty() && given != ns => Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn strict(q: &HashMap<String, String>) -> bool {
    q.get("fieldValidation").is_some_and(|v| v == "Strict")
}

async fn create(shared: &Arc<Shared>, ns: &str, req: Request<Incoming>, strict: bool) -> Handled {
    let mut obj = validate::decode(&body_bytes(req).await?)?;
    validate::check_types(&mut obj, strict)?;
    check_namespace(&obj, ns)?;
    shared.store().create(ns, obj).map(|v| (201, v))
}

async fn update(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    req: Request<Incoming>,
    strict: bool,
) -> Handled {
    let mut obj = validate::decode(&body_bytes(req).await?)?;
    validate::check_types(&mut obj, strict)?;
    check_namespace(&obj, ns)?;
    shared
        .store()
        .update(ns, name, obj)
        .map(|(v, created)| (if created { 201 } else { 200 }, v))
}

async fn patch(shared: &Arc<Shared>, ns: &str, name: &str, req: Request<Incoming>) -> Handled {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ct = ct.split(';').next().unwrap_or("").trim().to_owned();
    if ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json" {
        return Err(status::unsupported_media_type(&ct));
    }
    let patch = Value::Object(validate::decode(&body_bytes(req).await?)?);
    shared.store().patch(ns, name, &patch).map(|v| (200, v))
}

async fn delete(shared: &Arc<Shared>, ns: &str, name: &str, req: Request<Incoming>) -> Handled {
    let body = body_bytes(req).await?;
    let precondition = if body.is_empty() {
        None
    } else {
        let options = validate::decode(&body)?;
        options
            .get("preconditions")
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    shared
        .store()
        .delete(ns, name, precondition.as_deref())
        .map(|v| (200, v))
}

/// Opens a watch: replays history (or initial state), then streams changes, bookmarks, and
/// ends on timeout, a cut, a lagging reader or the client going away.
fn watch(shared: &Arc<Shared>, ns: Option<String>, q: &HashMap<String, String>) -> Response<Body> {
    let selector = match Selector::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    ) {
        Ok(s) => s,
        Err(e) => return status_response(&status::bad_request(e)),
    };
    let from = match q.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return status_response(&status::bad_request(format!(
                    "invalid resource version: \"{v}\""
                )));
            }
        },
    };
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let initial_events = match initial_events(shared, q) {
        Ok(initial) => initial,
        Err(refused) => return status_response(&refused),
    };
    // With `sendInitialEvents`, the stream starts from the current state (whatever version it
    // is no older than), with its objects as initial events or without them.
    let (from, skip_state) = match initial_events {
        Some(send) => (None, !send),
        None => (from, false),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(shared.max_watch, |t| {
            Duration::from_secs(t).min(shared.max_watch)
        });
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let started = {
        let store = shared.store();
        let now_rv = store.resource_version();
        store
            .watch(ns.as_deref(), &selector, from)
            .map(|(replay, rx)| (replay, rx, now_rv))
    };
    let mut cut = shared.faults.watch_epoch.subscribe();
    cut.borrow_and_update();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let send = |bytes: Bytes| tx.send(Ok(Frame::data(bytes)));
        let (replay, mut changes, now_rv) = match started {
            Ok(s) => s,
            Err(old) => {
                let _ = send(event_line(
                    "ERROR",
                    &status::expired(old.requested, old.oldest),
                ))
                .await;
                return;
            }
        };
        let mut seen = from
            .unwrap_or(now_rv)
            .max(replay.iter().map(|c| c.rv).max().unwrap_or(0));
        for c in replay.iter().filter(|_| !skip_state) {
            if send(c.event_line()).await.is_err() {
                return;
            }
        }
        let bookmark_object = |rv: u64| json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "spec": {}});
        let bookmark = |rv: u64| event_line("BOOKMARK", &bookmark_object(rv));
        // The end of the initial events is a bookmark: sent only to a watch that takes both.
        if initial_events == Some(true) && bookmarks {
            let mut end = bookmark_object(seen);
            end["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if send(event_line("BOOKMARK", &end)).await.is_err() {
                return;
            }
        }
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(c) => {
                        if c.rv <= seen { continue; }
                        seen = c.rv;
                        if deliverable(&c, ns.as_deref(), &selector) && send(c.event_line()).await.is_err() {
                            return;
                        }
                    }
                    // A reader that fell behind is cut: it re-watches from its last version.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if send(bookmark(seen)).await.is_err() { return; }
                }
                _ = &mut end => {
                    if bookmarks { let _ = send(bookmark(seen)).await; }
                    return;
                }
                _ = cut.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// What a watch asks of its initial events (`sendInitialEvents`: `None` when it does not say),
/// or why it is refused: the option the API server requires beside it, and its `WatchList`
/// feature being on. A server without the feature refuses `resourceVersionMatch` on a watch,
/// too.
fn initial_events(shared: &Shared, q: &HashMap<String, String>) -> Result<Option<bool>, ApiStatus> {
    if shared.watch_list == crate::WatchList::Ignores {
        return Ok(None);
    }
    let send = q.get("sendInitialEvents").map(String::as_str);
    let matching = q.get("resourceVersionMatch").filter(|m| !m.is_empty());
    let Some(send) = send else {
        return match matching {
            Some(_) => Err(status::forbidden_list_option(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )),
            None => Ok(None),
        };
    };
    if shared.watch_list == crate::WatchList::Refuses {
        return Err(status::forbidden_list_option(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ));
    }
    if matching.map(String::as_str) != Some("NotOlderThan") {
        return Err(status::forbidden_list_option(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    Ok(Some(send == "true" || send == "1"))
}

fn deliverable(c: &Change, ns: Option<&str>, selector: &Selector) -> bool {
    c.visible(ns, selector)
}

async fn admin(shared: &Arc<Shared>, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let method = req.method().clone();
    let q = query(&req);
    let ok = || json_response(200, &json!({"ok": true}));
    match (method, rest) {
        (Method::GET, "faults") => json_response(
            200,
            &serde_json::to_value(shared.faults.get()).unwrap_or_default(),
        ),
        (Method::PUT, "faults") => match body_bytes(req)
            .await
            .map(|b| serde_json::from_slice::<Faults>(&b))
        {
            Ok(Ok(f)) => {
                shared.faults.set(f);
                ok()
            }
            Ok(Err(e)) => status_response(&status::bad_request(format!("faults: {e}"))),
            Err(s) => status_response(&s),
        },
        (Method::POST, "pause") => {
            shared.faults.paused.send_replace(true);
            ok()
        }
        (Method::POST, "resume") => {
            shared.faults.paused.send_replace(false);
            ok()
        }
        (Method::POST, "cut-watches") => {
            shared.faults.watch_epoch.send_modify(|e| *e += 1);
            ok()
        }
        (Method::POST, "restart") => {
            crate::restart(shared, q.get("keep-data").is_none_or(|k| k != "false"));
            ok()
        }
        (Method::GET, "counters") => json_response(
            200,
            &serde_json::to_value(shared.counters.snapshot()).unwrap_or_default(),
        ),
        (Method::DELETE, "counters") => {
            shared.counters.reset();
            ok()
        }
        _ => status_response(&status::no_route()),
    }
}
