//! Every answer the real API server gave in `../shared/apiserver-fixtures/` decodes into core
//! types, and every error classifies as the core expects.

use leasehold_adapter_http::wire::{decode_lease, decode_status, decode_watch_line, server_status};
use leasehold_core::{ApiError, Holder, Verb};
use leasehold_runtime::{RequestError, WireEvent};
use serde_json::Value;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/apiserver-fixtures"
);

fn fixtures() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("fixtures beside the repository")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_lease_the_server_returned_decodes() {
    let mut leases = 0;
    for (name, f) in fixtures() {
        let body = &f["response"]["body"];
        let objects: Vec<&Value> = match body["kind"].as_str() {
            Some("Lease") => vec![body],
            Some("LeaseList") => body["items"].as_array().unwrap().iter().collect(),
            _ => continue,
        };
        for object in objects {
            let decoded = decode_lease(object.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let lease = decoded.to_core().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                lease.resource_version.as_str(),
                object["metadata"]["resourceVersion"].as_str().unwrap()
            );
            match object["spec"]["holderIdentity"].as_str() {
                Some(h) if h.len() > 253 => assert_eq!(
                    lease.record.holder,
                    Holder::Oversized { len: h.len() },
                    "{name}"
                ),
                Some(h) => assert_eq!(lease.record.holder.as_wire(), Some(h), "{name}"),
                None => assert_eq!(lease.record.holder, Holder::None, "{name}"),
            }
            leases += 1;
        }
    }
    assert!(leases >= 20, "{leases}");
}

#[test]
fn every_watch_line_decodes() {
    let mut kinds = Vec::new();
    for (name, f) in fixtures() {
        let Some(lines) = f["response"]["lines"].as_array() else {
            continue;
        };
        for line in lines {
            let decoded = decode_watch_line(line.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            kinds.push(match decoded {
                WireEvent::Changed(object) => {
                    object.to_core().unwrap_or_else(|e| panic!("{name}: {e}"));
                    "changed"
                }
                WireEvent::Deleted(object) => {
                    assert!(object.metadata.name.is_some(), "{name}: names the lease");
                    "deleted"
                }
                WireEvent::Bookmark(_) => "bookmark",
                WireEvent::InitialEventsEnd(_) => "initial events end",
                WireEvent::Gone => {
                    assert_eq!(line["object"]["reason"], "Expired", "{name}");
                    "expired"
                }
                WireEvent::Broken => "other",
            });
        }
    }
    for kind in ["changed", "deleted", "bookmark", "expired"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert!(!kinds.contains(&"other"));
}

#[test]
fn every_error_classifies_for_the_core_and_keeps_its_words() {
    let mut seen = 0;
    for (name, f) in fixtures() {
        let code = f["response"]["status"].as_u64().unwrap() as u16;
        if code < 400 {
            continue;
        }
        let body = f["response"]["body"].to_string();
        let status =
            decode_status(body.as_bytes()).unwrap_or_else(|| panic!("{name}: not a Status"));
        assert_eq!(
            status.message,
            f["response"]["body"]["message"].as_str().unwrap(),
            "{name}"
        );
        let expected = match (code, status.reason.as_str()) {
            (404, _) => ApiError::NotFound,
            (409, "AlreadyExists") => ApiError::AlreadyExists,
            (409, _) => ApiError::Conflict,
            (401, _) => ApiError::Unauthorized,
            (403, _) => ApiError::Forbidden,
            (400 | 422, _) => ApiError::Invalid,
            other => panic!("{name}: unexpected {other:?}"),
        };
        let refused = RequestError::refused(
            Verb::Get,
            "leases/x",
            server_status(code, "", body.as_bytes(), None),
        );
        assert_eq!(refused.kind, expected, "{name}");
        assert_eq!(
            refused.server_message(),
            Some(status.message.as_str()),
            "{name}: the server's own words reach the user"
        );
        assert_eq!(
            refused.to_string(),
            format!("get leases/x: {code} {}: {}", status.reason, status.message),
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 20, "{seen}");
    let throttled = server_status(429, "Too Many Requests", b"", Some("7"));
    assert_eq!(
        RequestError::refused(Verb::Get, "leases/x", throttled).kind,
        ApiError::TooManyRequests {
            retry_after: Some(leasehold_core::Duration::from_secs(7))
        }
    );
    let proxy = server_status(503, "Service Unavailable", b"<html>down</html>", None);
    assert_eq!(
        proxy.reason, "Service Unavailable",
        "the HTTP reason stands in"
    );
    assert_eq!(
        RequestError::refused(Verb::Get, "leases/x", proxy).kind,
        ApiError::Server { status: 503 }
    );
    assert!(decode_status(b"<html>bad gateway</html>").is_none());
}
