//! The Lease API's JSON, as far as leasehold reads and writes it, and its translation to and from
//! the core's types. Decoding never panics: a bad answer is a [`DecodeError`] naming the field.

use leasehold_core::{
    Holder, Lease, LeaseRecord, MicroTime, NEXT_HOLDER_ANNOTATION, ResourceVersion,
};
use leasehold_runtime::{CreateMetadata, INITIAL_EVENTS_END, ListedLease, ServerStatus, WireEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// An answer that could not be turned into core types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The JSON field at fault (`spec.renewTime`, `metadata.resourceVersion`, …), or `body`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot decode the API server's answer: {}: {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for DecodeError {}

fn bad(field: &str, problem: impl fmt::Display) -> DecodeError {
    DecodeError {
        field: field.to_owned(),
        problem: problem.to_string(),
    }
}

/// `metadata`, with the fields a write must echo back kept as they were read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `resourceVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Everything else (`uid`, `labels`, `annotations`, `ownerReferences`, …), echoed on update
    /// so a write never strips what another client set.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `spec` of a Lease.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    /// `holderIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// `leaseDurationSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// `acquireTime` (MicroTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// `renewTime` (MicroTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// `leaseTransitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
    /// Fields leasehold does not interpret (`strategy`, `preferredHolder`), kept on update.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A `coordination.k8s.io/v1` Lease object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseObject {
    /// `apiVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// A `LeaseList`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LeaseList {
    /// `metadata` (`resourceVersion`, `continue`).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `items`.
    #[serde(default)]
    pub items: Vec<LeaseObject>,
}

/// A `Status` error body: the server's own words, kept for logs and RBAC messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// HTTP status it describes.
    #[serde(default)]
    pub code: u16,
    /// `NotFound`, `Conflict`, `AlreadyExists`, `Forbidden`, `Expired`, …
    #[serde(default)]
    pub reason: String,
    /// The human message.
    #[serde(default)]
    pub message: String,
    /// `details`.
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

/// `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Field errors of a 422.
    #[serde(default)]
    pub causes: Vec<StatusCause>,
    /// Server's advice for a 429.
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

/// One field error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusCause {
    /// `spec.leaseDurationSeconds`, …
    #[serde(default)]
    pub field: String,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
}

/// Formats wall time as a Kubernetes MicroTime: RFC 3339, UTC, exactly six fractional digits
/// (the server refuses anything else with 400).
pub fn format_micro_time(t: MicroTime) -> String {
    let micros = t.as_unix_micros();
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    match time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&format).ok())
    {
        Some(date) => format!("{date}.{frac:06}Z"),
        // Out of the calendar's range: only a broken wall clock gets here.
        None => "1970-01-01T00:00:00.000000Z".to_owned(),
    }
}

/// Parses a MicroTime (or any RFC 3339 time another writer left) into microseconds.
pub fn parse_micro_time(field: &str, text: &str) -> Result<MicroTime, DecodeError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(field, format_args!("{text:?} is not an RFC 3339 time: {e}")))?;
    let micros = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros)
        .map(MicroTime::from_unix_micros)
        .map_err(|_| bad(field, "time out of range"))
}

impl LeaseObject {
    /// The lease as the core sees it.
    pub fn to_core(&self) -> Result<Lease, DecodeError> {
        let rv = self
            .metadata
            .resource_version
            .as_deref()
            .ok_or_else(|| bad("metadata.resourceVersion", "missing"))?;
        let resource_version =
            ResourceVersion::new(rv).map_err(|e| bad("metadata.resourceVersion", e))?;
        let spec = &self.spec;
        let lease_duration = LeaseRecord::lease_duration_from_wire(spec.lease_duration_seconds);
        let lease_transitions =
            match spec.lease_transitions {
                None => None,
                Some(t) => Some(u32::try_from(t).map_err(|_| {
                    bad("spec.leaseTransitions", format_args!("{t} is not a count"))
                })?),
            };
        let time = |field: &str, t: &Option<String>| {
            t.as_deref().map(|s| parse_micro_time(field, s)).transpose()
        };
        Ok(Lease {
            resource_version,
            record: LeaseRecord {
                holder: Holder::from_wire(spec.holder_identity.as_deref()),
                lease_duration,
                acquire_time: time("spec.acquireTime", &spec.acquire_time)?,
                renew_time: time("spec.renewTime", &spec.renew_time)?,
                lease_transitions,
                next_holder: Holder::from_wire(self.annotation(NEXT_HOLDER_ANNOTATION)),
            },
        })
    }

    /// The annotation `key`, when it is a string.
    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .other
            .get("annotations")?
            .as_object()?
            .get(key)?
            .as_str()
    }

    /// Sets the reservation annotation as `next` says: removed for none, written for a name,
    /// and left as read for a name too long to have been kept.
    fn set_next_holder(&mut self, next: &Holder) {
        let value = match next {
            Holder::None => None,
            Holder::Named(id) => Some(Value::String(id.as_str().to_owned())),
            _ => return,
        };
        let annotations = self.metadata.other.entry("annotations");
        match value {
            Some(value) => {
                let map = annotations.or_insert_with(|| Value::Object(Map::new()));
                if !map.is_object() {
                    *map = Value::Object(Map::new());
                }
                if let Some(map) = map.as_object_mut() {
                    map.insert(NEXT_HOLDER_ANNOTATION.to_owned(), value);
                }
            }
            None => {
                if let serde_json::map::Entry::Occupied(mut e) = annotations {
                    if let Some(map) = e.get_mut().as_object_mut() {
                        map.remove(NEXT_HOLDER_ANNOTATION);
                        if map.is_empty() {
                            e.remove();
                        }
                    }
                }
            }
        }
    }

    /// A new object with `metadata`'s labels and owner, for a create.
    pub fn with_metadata(metadata: &CreateMetadata) -> Self {
        let mut object = Self::default();
        if !metadata.labels.is_empty() {
            let labels = metadata
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            object
                .metadata
                .other
                .insert("labels".into(), Value::Object(labels));
        }
        if let Some(owner) = &metadata.owner {
            object.metadata.other.insert(
                "ownerReferences".into(),
                serde_json::json!([{
                    "apiVersion": owner.api_version,
                    "kind": owner.kind,
                    "name": owner.name,
                    "uid": owner.uid,
                }]),
            );
        }
        object
    }

    /// The lease as a list shows it.
    pub fn to_listed(&self) -> Result<ListedLease, DecodeError> {
        let meta = &self.metadata;
        Ok(ListedLease {
            namespace: meta
                .namespace
                .clone()
                .ok_or_else(|| bad("metadata.namespace", "missing"))?,
            name: meta
                .name
                .clone()
                .ok_or_else(|| bad("metadata.name", "missing"))?,
            created: meta
                .other
                .get("creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| parse_micro_time("metadata.creationTimestamp", t).ok()),
            labels: meta
                .other
                .get("labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default(),
            lease: self.to_core()?,
        })
    }

    /// The object to write for `record`: this object (as last read, or a fresh one) with its
    /// spec replaced, carrying `resource_version` for optimistic concurrency.
    pub fn for_write(
        &self,
        name: &str,
        resource_version: Option<&str>,
        record: &LeaseRecord,
    ) -> LeaseObject {
        let mut object = self.clone();
        object.api_version = Some("coordination.k8s.io/v1".into());
        object.kind = Some("Lease".into());
        object.metadata.name = Some(name.to_owned());
        object.metadata.resource_version = resource_version.map(str::to_owned);
        object.spec = LeaseSpec {
            holder_identity: record.holder.as_wire().map(str::to_owned),
            lease_duration_seconds: record.lease_duration.map(|d| d.as_secs() as i64),
            acquire_time: record.acquire_time.map(format_micro_time),
            renew_time: record.renew_time.map(format_micro_time),
            lease_transitions: record.lease_transitions.map(i64::from),
            other: std::mem::take(&mut object.spec.other),
        };
        object.set_next_holder(&record.next_holder);
        object
    }
}

/// Decodes a Lease from a response body.
pub fn decode_lease(body: &[u8]) -> Result<LeaseObject, DecodeError> {
    let object: LeaseObject = serde_json::from_slice(body).map_err(|e| bad("body", e))?;
    match object.kind.as_deref() {
        None | Some("Lease") => Ok(object),
        Some(other) => Err(bad("kind", format_args!("expected Lease, got {other}"))),
    }
}

/// Decodes a `Status` body; `None` when the body is not one (a proxy's HTML page, say).
pub fn decode_status(body: &[u8]) -> Option<Status> {
    let value: Value = serde_json::from_slice(body).ok()?;
    (value.get("kind").and_then(Value::as_str) == Some("Status"))
        .then(|| serde_json::from_value(value).ok())
        .flatten()
}

/// The API server's refusal in its own words: the `Status` body when it sent one (a proxy's
/// HTML page is not one: then the HTTP reason stands), and the one Retry-After rule.
pub fn server_status(
    code: u16,
    http_reason: &str,
    body: &[u8],
    retry_after: Option<&str>,
) -> ServerStatus {
    let Some(status) = decode_status(body) else {
        return ServerStatus::new(code, http_reason, "").with_retry_after(retry_after, None);
    };
    let reason = match status.reason.as_str() {
        "" => http_reason,
        reason => reason,
    };
    let details = status.details.as_ref();
    ServerStatus::new(code, reason, status.message.as_str())
        .with_causes(
            details
                .into_iter()
                .flat_map(|d| &d.causes)
                .map(|c| (c.field.clone(), c.message.clone())),
        )
        .with_retry_after(retry_after, details.and_then(|d| d.retry_after_seconds))
}

#[derive(Deserialize)]
struct RawLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: Value,
}

/// Decodes one line of a watch stream.
pub fn decode_watch_line(line: &[u8]) -> Result<WireEvent<LeaseObject>, DecodeError> {
    let raw: RawLine = serde_json::from_slice(line).map_err(|e| bad("watch event", e))?;
    let object =
        || serde_json::from_value::<LeaseObject>(raw.object.clone()).map_err(|e| bad("object", e));
    match raw.kind.as_str() {
        "ADDED" | "MODIFIED" => {
            let object = object()?;
            object.to_core()?;
            Ok(WireEvent::Changed(object))
        }
        "DELETED" => Ok(WireEvent::Deleted(object()?)),
        "BOOKMARK" => {
            let object = object()?;
            let rv = object
                .metadata
                .resource_version
                .as_deref()
                .ok_or_else(|| bad("object.metadata.resourceVersion", "missing in BOOKMARK"))?;
            let rv =
                ResourceVersion::new(rv).map_err(|e| bad("object.metadata.resourceVersion", e))?;
            Ok(if object.annotation(INITIAL_EVENTS_END) == Some("true") {
                WireEvent::InitialEventsEnd(rv)
            } else {
                WireEvent::Bookmark(rv)
            })
        }
        "ERROR" => {
            let status: Status =
                serde_json::from_value(raw.object).map_err(|e| bad("object", e))?;
            Ok(if status.code == 410 {
                WireEvent::Gone
            } else {
                WireEvent::Broken
            })
        }
        other => Err(bad(
            "type",
            format_args!("unknown watch event type {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::Duration;

    #[test]
    fn an_absurd_lease_duration_from_the_server_saturates() {
        let lease = decode_lease(
            br#"{"metadata":{"resourceVersion":"5"},"spec":{"holderIdentity":"b","leaseDurationSeconds":90000000000000}}"#,
        )
        .unwrap()
        .to_core()
        .unwrap();
        assert_eq!(lease.record.lease_duration, Some(Duration::MAX));
    }

    #[test]
    fn micro_times_are_written_with_exactly_six_digits() {
        let t = MicroTime::from_unix_micros(1_795_323_600_123_456);
        assert_eq!(format_micro_time(t), "2026-11-22T05:00:00.123456Z");
        assert_eq!(
            format_micro_time(MicroTime::from_unix_micros(1_795_323_600_000_001)),
            "2026-11-22T05:00:00.000001Z"
        );
        assert_eq!(
            parse_micro_time("t", "2026-11-22T05:00:00.123456Z").unwrap(),
            t
        );
        assert_eq!(
            parse_micro_time("t", "2026-11-22T07:00:00.123456+02:00").unwrap(),
            t
        );
        assert_eq!(
            parse_micro_time("t", "2026-11-22T05:00:00Z")
                .unwrap()
                .as_unix_micros(),
            1_795_323_600_000_000
        );
        let e = parse_micro_time("spec.renewTime", "yesterday").unwrap_err();
        assert_eq!(e.field, "spec.renewTime");
    }

    #[test]
    fn bad_fields_are_named() {
        let e = decode_lease(br#"{"kind":"Lease","metadata":{"resourceVersion":"5"},"spec":{"leaseTransitions":-1}}"#).unwrap().to_core().unwrap_err();
        assert_eq!(e.field, "spec.leaseTransitions");
        let e = decode_lease(br#"{"kind":"Lease","metadata":{},"spec":{}}"#)
            .unwrap()
            .to_core()
            .unwrap_err();
        assert_eq!(e.field, "metadata.resourceVersion");
        assert_eq!(
            decode_lease(br#"{"kind":"ConfigMap"}"#).unwrap_err().field,
            "kind"
        );
        assert_eq!(decode_lease(b"{\"kind\":").unwrap_err().field, "body");
        let e = decode_lease(
            br#"{"metadata":{"resourceVersion":"5"},"spec":{"leaseDurationSeconds":"15"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.problem.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_write_keeps_metadata_and_unknown_spec_fields() {
        let read = decode_lease(br#"{"kind":"Lease","metadata":{"name":"l","resourceVersion":"9","uid":"u","labels":{"a":"b"},"ownerReferences":[{"kind":"Pod"}]},"spec":{"holderIdentity":"x","strategy":"OldestEmulationVersion"}}"#).unwrap();
        let record = LeaseRecord {
            holder: Holder::from_wire(Some("me")),
            lease_duration: Some(Duration::from_secs(15)),
            acquire_time: Some(MicroTime::from_unix_micros(0)),
            renew_time: Some(MicroTime::from_unix_micros(1)),
            lease_transitions: Some(4),
            next_holder: Holder::None,
        };
        let out = serde_json::to_value(read.for_write("l", Some("9"), &record)).unwrap();
        assert_eq!(out["metadata"]["labels"]["a"], "b");
        assert_eq!(out["metadata"]["ownerReferences"][0]["kind"], "Pod");
        assert_eq!(out["metadata"]["resourceVersion"], "9");
        assert_eq!(out["spec"]["strategy"], "OldestEmulationVersion");
        assert_eq!(out["spec"]["holderIdentity"], "me");
        assert_eq!(out["spec"]["renewTime"], "1970-01-01T00:00:00.000001Z");
        assert_eq!(out["spec"]["leaseTransitions"], 4);
        assert_eq!(out["kind"], "Lease");
    }

    #[test]
    fn a_release_writes_an_empty_holder() {
        let record = LeaseRecord {
            holder: Holder::None,
            lease_duration: Some(Duration::from_secs(1)),
            ..LeaseRecord::EMPTY
        };
        let out = serde_json::to_value(LeaseObject::default().for_write("l", Some("3"), &record))
            .unwrap();
        assert_eq!(out["spec"]["holderIdentity"], "");
        assert_eq!(out["spec"]["leaseDurationSeconds"], 1);
    }
}
