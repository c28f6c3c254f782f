//! Lease storage with one global resourceVersion counter, a bounded history of changes for
//! watches to resume from (older resourceVersions get 410 Gone), and a broadcast of new changes.

use crate::selector::Selector;
use crate::status::{self, ApiStatus, Cause};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// What happened to a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

impl ChangeKind {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as delivered to watches.
#[derive(Debug)]
pub struct Change {
    /// The resourceVersion it produced.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The lease's namespace.
    pub namespace: String,
    /// The lease's name.
    pub name: String,
    /// The object after the change (for a delete, the last state with the delete's rv).
    pub object: Value,
    /// The watch event's line, serialized once for every stream that delivers it (as the
    /// real API server's watch cache does): a thousand streams would otherwise each serialize
    /// it, and the fan-out, not the clients, would set how far the streams lag.
    line: OnceLock<Bytes>,
}

impl Change {
    /// Whether a watch in `namespace` (all when `None`) with `selector` sees this change.
    pub fn visible(&self, namespace: Option<&str>, selector: &Selector) -> bool {
        namespace.is_none_or(|ns| ns == self.namespace)
            && selector.matches(&self.name, &self.namespace, labels_of(&self.object))
    }

    /// The watch event's line: `{"type": …, "object": …}` and a newline.
    pub fn event_line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.kind.as_str(), &self.object))
            .clone()
    }
}

/// One watch event's line: `{"type": kind, "object": object}` and a newline.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn labels_of(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object["metadata"]["labels"]
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// A started watch: the changes to replay, and the receiver of the ones after.
pub type WatchStart = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// Why a watch cannot start.
#[derive(Debug)]
pub struct TooOld {
    /// The resourceVersion asked for.
    pub requested: u64,
    /// The oldest one still resumable.
    pub oldest: u64,
}

/// The stored leases and namespaces.
pub struct Store {
    rv: u64,
    namespaces: BTreeSet<String>,
    leases: BTreeMap<(String, String), Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Watches may resume from any resourceVersion at or after this one.
    compacted: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

impl Store {
    /// An empty store with these namespaces, keeping `history_limit` changes for watches.
    pub fn new(namespaces: &[String], history_limit: usize) -> Self {
        Self {
            rv: 1,
            namespaces: namespaces.iter().cloned().collect(),
            leases: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 1,
            changes: broadcast::channel(4096).0,
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Forgets every lease (a restart that loses data). resourceVersions keep increasing, and
    /// every watch must re-list: the history is compacted to now.
    pub fn wipe(&mut self) {
        self.leases.clear();
        self.history.clear();
        // A new resourceVersion marks the loss: watches from any older one get 410 and re-list,
        // and a re-list's version is resumable.
        self.rv += 1;
        self.compacted = self.rv;
    }

    /// Whether the namespace exists.
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    /// Creates a namespace; false when it existed.
    pub fn add_namespace(&mut self, ns: &str) -> bool {
        self.namespaces.insert(ns.to_owned())
    }

    /// The namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &String> {
        self.namespaces.iter()
    }

    fn record(&mut self, kind: ChangeKind, ns: &str, name: &str, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            object,
            line: OnceLock::new(),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.changes.send(change);
    }

    /// GET.
    pub fn get(&self, ns: &str, name: &str) -> Result<Value, ApiStatus> {
        self.leases
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| status::not_found(name))
    }

    /// POST: `obj` is decoded and type-checked; its name may come from `generateName`.
    pub fn create(&mut self, ns: &str, mut obj: Map<String, Value>) -> Result<Value, ApiStatus> {
        if !self.has_namespace(ns) {
            return Err(status::namespace_not_found(ns));
        }
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        let mut name = meta["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty() {
            if let Some(prefix) = meta["generateName"].as_str().filter(|p| !p.is_empty()) {
                name = format!(
                    "{prefix}{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..5]
                );
            }
        }
        crate::validate::check_object(&name, &obj)?;
        let key = (ns.to_owned(), name.clone());
        if self.leases.contains_key(&key) {
            return Err(status::already_exists(&name));
        }
        self.rv += 1;
        let object = self.stored(ns, &name, obj, None);
        self.leases.insert(key, object.clone());
        self.record(ChangeKind::Added, ns, &name, object.clone());
        Ok(object)
    }

    /// Builds the stored form: server-owned metadata set, client-owned kept.
    fn stored(
        &self,
        ns: &str,
        name: &str,
        obj: Map<String, Value>,
        previous: Option<&Value>,
    ) -> Value {
        let client_meta = obj
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
        let (uid, created) = match previous {
            Some(p) => (
                p["metadata"]["uid"].clone(),
                p["metadata"]["creationTimestamp"].clone(),
            ),
            None => (
                json!(uuid::Uuid::new_v4().to_string()),
                json!(now_rfc3339()),
            ),
        };
        meta.insert("uid".into(), uid);
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        meta.insert("creationTimestamp".into(), created);
        for key in ["labels", "annotations", "ownerReferences", "finalizers"] {
            if let Some(v) = client_meta.get(key).filter(|v| !v.is_null()) {
                meta.insert(key.into(), v.clone());
            }
        }
        let spec = obj
            .get("spec")
            .filter(|s| !s.is_null())
            .cloned()
            .unwrap_or_else(|| json!({}));
        json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": meta, "spec": spec})
    }

    /// PUT: optimistic concurrency on `metadata.resourceVersion`; creates a missing lease.
    /// Returns the object and whether it was created.
    pub fn update(
        &mut self,
        ns: &str,
        name: &str,
        obj: Map<String, Value>,
    ) -> Result<(Value, bool), ApiStatus> {
        let meta = obj.get("metadata").and_then(Value::as_object);
        if let Some(body_name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) {
            if body_name != name {
                return Err(status::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let rv = meta
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let key = (ns.to_owned(), name.to_owned());
        let Some(current) = self.leases.get(&key).cloned() else {
            if !self.has_namespace(ns) {
                return Err(status::namespace_not_found(ns));
            }
            crate::validate::check_object(name, &obj)?;
            self.rv += 1;
            let object = self.stored(ns, name, obj, None);
            self.leases.insert(key, object.clone());
            self.record(ChangeKind::Added, ns, name, object.clone());
            return Ok((object, true));
        };
        if rv.is_empty() {
            return Err(status::invalid_update(
                name,
                vec![Cause {
                    field: "metadata.resourceVersion".into(),
                    message: "Invalid value: 0: must be specified for an update".into(),
                }],
            ));
        }
        if current["metadata"]["resourceVersion"].as_str() != Some(rv.as_str()) {
            return Err(status::conflict(name));
        }
        crate::validate::check_object(name, &obj)?;
        self.write(ns, name, obj, &current).map(|o| (o, false))
    }

    fn write(
        &mut self,
        ns: &str,
        name: &str,
        obj: Map<String, Value>,
        current: &Value,
    ) -> Result<Value, ApiStatus> {
        let candidate = self.stored(ns, name, obj, Some(current));
        // An update that changes nothing is not a write: the resourceVersion stays.
        let same = candidate["spec"] == current["spec"]
            && ["labels", "annotations", "ownerReferences", "finalizers"]
                .iter()
                .all(|k| candidate["metadata"][k] == current["metadata"][k]);
        if same {
            return Ok(current.clone());
        }
        self.rv += 1;
        let mut object = candidate;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.leases
            .insert((ns.to_owned(), name.to_owned()), object.clone());
        self.record(ChangeKind::Modified, ns, name, object.clone());
        Ok(object)
    }

    /// PATCH with a JSON merge patch (strategic merge is the same for a Lease, which has no
    /// lists to merge by key).
    pub fn patch(&mut self, ns: &str, name: &str, patch: &Value) -> Result<Value, ApiStatus> {
        let current = self.get(ns, name)?;
        let mut merged = current.clone();
        merge(&mut merged, patch);
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
            if current["metadata"]["resourceVersion"].as_str() != Some(rv) {
                return Err(status::conflict(name));
            }
        }
        let Value::Object(mut obj) = merged else {
            return Err(status::bad_request(
                "the patch does not produce an object".into(),
            ));
        };
        crate::validate::check_types(&mut obj, false)?;
        crate::validate::check_object(name, &obj)?;
        self.write(ns, name, obj, &current)
    }

    /// DELETE, with an optional resourceVersion precondition.
    pub fn delete(
        &mut self,
        ns: &str,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value, ApiStatus> {
        let key = (ns.to_owned(), name.to_owned());
        let current = self
            .leases
            .get(&key)
            .cloned()
            .ok_or_else(|| status::not_found(name))?;
        let stored_rv: u64 = current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if let Some(wanted) = precondition {
            if wanted != stored_rv.to_string() {
                return Err(status::precondition_failed(name, wanted, stored_rv));
            }
        }
        self.leases.remove(&key);
        self.rv += 1;
        let mut last = current.clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(ChangeKind::Deleted, ns, name, last);
        Ok(status::deleted(
            name,
            current["metadata"]["uid"].as_str().unwrap_or(""),
        ))
    }

    /// Leases in `ns` (all when `None`) matching `selector`, from after `start` (a continue
    /// token's key), at most `limit`; also returns the key to continue from and how many remain.
    pub fn list(
        &self,
        ns: Option<&str>,
        selector: &Selector,
        start: Option<(String, String)>,
        limit: Option<usize>,
    ) -> (Vec<Value>, Option<(String, String)>, usize) {
        let matching: Vec<(&(String, String), &Value)> = self
            .leases
            .iter()
            .filter(|((n, name), v)| {
                ns.is_none_or(|ns| ns == n) && selector.matches(name, n, labels_of(v))
            })
            .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
            .collect();
        let take = limit
            .filter(|&l| l > 0)
            .unwrap_or(usize::MAX)
            .min(matching.len());
        let items = matching[..take]
            .iter()
            .map(|(_, v)| {
                let mut item = (*v).clone();
                if let Some(o) = item.as_object_mut() {
                    o.remove("kind");
                    o.remove("apiVersion");
                }
                item
            })
            .collect();
        let next = (take < matching.len()).then(|| matching[take - 1].0.clone());
        (items, next, matching.len() - take)
    }

    /// Starts a watch: the changes to replay (initial ADDED events when `from` is `None`), and a
    /// receiver for the rest, taken under the same lock so nothing falls between them.
    pub fn watch(
        &self,
        ns: Option<&str>,
        selector: &Selector,
        from: Option<u64>,
    ) -> Result<WatchStart, TooOld> {
        let receiver = self.changes.subscribe();
        let replay = match from {
            None | Some(0) => self
                .leases
                .iter()
                .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                .map(|((n, name), v)| {
                    let rv = v["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    Arc::new(Change {
                        rv,
                        kind: ChangeKind::Added,
                        namespace: n.clone(),
                        name: name.clone(),
                        object: v.clone(),
                        line: OnceLock::new(),
                    })
                })
                .filter(|c| c.visible(ns, selector))
                .collect(),
            Some(rv) if rv < self.compacted => {
                return Err(TooOld {
                    requested: rv,
                    oldest: self.compacted,
                });
            }
            Some(rv) => self
                .history
                .iter()
                .filter(|c| c.rv > rv && c.visible(ns, selector))
                .cloned()
                .collect(),
        };
        Ok((replay, receiver))
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
