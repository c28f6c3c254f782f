//! `leasehold get leases`: the `kubectl get leases` view, plus when each lease expires (from
//! its record) and how often it changed hands.

use super::identity::{APISERVER_LABEL, COMPONENT_LABEL, HOSTNAME_LABEL};
use super::runner;
use crate::cli::{GetArgs, GetOutput, Global};
use crate::error::AgentError;
use crate::rbac;
use leasehold_core::{Holder, MicroTime};
use leasehold_runtime::{ListedLease, Transport};
use serde::Serialize;
use std::time::Duration;

pub async fn run(global: &Global, args: GetArgs) -> Result<i32, AgentError> {
    if !matches!(
        args.resource.as_str(),
        "leases" | "lease" | "leases.coordination.k8s.io" | "lease.coordination.k8s.io"
    ) {
        return Err(AgentError::usage(format!(
            "leasehold get {}: only leases can be shown (leasehold get leases)",
            args.resource
        )));
    }
    let connection = runner::connect_once(global, args.namespace.clone()).await?;
    let namespace = (!args.all_namespaces).then_some(connection.namespace.as_str());
    let mut leases = match connection
        .transport
        .list(namespace, args.selector.as_deref())
        .await
    {
        Ok(leases) => leases,
        Err(error) => return Err(rbac::failed(&error, &rbac::Needs::listing(namespace))),
    };
    leases.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let now = wall_now();
    match args.output {
        Some(GetOutput::Json) => {
            let rows: Vec<Row> = leases.iter().map(Row::from).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        Some(GetOutput::Yaml) => {
            let rows: Vec<Row> = leases.iter().map(Row::from).collect();
            print!("{}", serde_saphyr::to_string(&rows).unwrap_or_default());
        }
        Some(GetOutput::Wide) => {
            print!("{}", table(&leases, now, args.all_namespaces, true));
            print!("{}", identities(&leases, now));
        }
        None if leases.is_empty() => match namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        },
        None => {
            print!("{}", table(&leases, now, args.all_namespaces, false));
            print!("{}", identities(&leases, now));
        }
    }
    Ok(0)
}

/// A lease as `-o json` and `-o yaml` print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    namespace: String,
    name: String,
    holder_identity: Option<String>,
    lease_duration_seconds: Option<u64>,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    lease_transitions: Option<u32>,
    /// `renewTime + leaseDurationSeconds`, by the holder's clock.
    expires: Option<String>,
    creation_timestamp: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
}

impl From<&ListedLease> for Row {
    fn from(l: &ListedLease) -> Self {
        let r = &l.lease.record;
        Self {
            namespace: l.namespace.clone(),
            name: l.name.clone(),
            holder_identity: r
                .holder
                .as_wire()
                .map(str::to_owned)
                .or_else(|| match r.holder {
                    Holder::Oversized { .. } => Some(r.holder.to_string()),
                    _ => None,
                }),
            lease_duration_seconds: r.lease_duration.map(|d| d.as_secs()),
            acquire_time: r.acquire_time.map(rfc3339),
            renew_time: r.renew_time.map(rfc3339),
            lease_transitions: r.lease_transitions,
            expires: l.lease.record.expires_at().map(rfc3339),
            creation_timestamp: l.created.map(rfc3339),
            labels: l.labels.clone(),
        }
    }
}

fn table(leases: &[ListedLease], now: MicroTime, with_namespace: bool, wide: bool) -> String {
    let mut header = vec!["NAME", "HOLDER", "AGE", "EXPIRES", "TRANSITIONS"];
    if wide {
        header.extend(["RENEWED", "DURATION", "ACQUIRED"]);
    }
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for l in leases {
        let r = &l.lease.record;
        let holder = match &r.holder {
            Holder::None => String::new(),
            h => h.to_string(),
        };
        let expires = match (&r.holder, l.lease.record.expires_at()) {
            (Holder::None, _) | (_, None) => "<none>".to_owned(),
            (_, Some(at)) => relative(now, at),
        };
        let mut row = vec![
            l.name.clone(),
            holder,
            l.created.map_or("<unknown>".into(), |c| age(now, c)),
            expires,
            r.lease_transitions
                .map_or("<none>".into(), |t| t.to_string()),
        ];
        if wide {
            row.push(r.renew_time.map_or("<none>".into(), |t| relative(now, t)));
            row.push(
                r.lease_duration
                    .map_or("<none>".into(), |d| format!("{}s", d.as_secs())),
            );
            row.push(r.acquire_time.map_or("<none>".into(), |t| relative(now, t)));
        }
        if with_namespace {
            row.insert(0, l.namespace.clone());
        }
        rows.push(row);
    }
    aligned(&rows)
}

/// `rows` as kubectl prints them: each column as wide as its widest cell, three spaces apart.
fn aligned<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref()[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The identity leases among `leases` (`leasehold identity`'s, and the API servers' own),
/// grouped by component, each ALIVE or EXPIRED by its record; empty when there are none.
fn identities(leases: &[ListedLease], now: MicroTime) -> String {
    let mut rows: Vec<(String, &ListedLease)> = leases
        .iter()
        .filter_map(|l| {
            let component = l
                .labels
                .get(COMPONENT_LABEL)
                .or_else(|| l.labels.get(APISERVER_LABEL))?;
            Some((component.clone(), l))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_by(|a, b| (&a.0, &a.1.namespace, &a.1.name).cmp(&(&b.0, &b.1.namespace, &b.1.name)));
    let mut out = String::from("\nIDENTITY LEASES\n");
    let mut cells: Vec<[String; 5]> = vec![[
        "COMPONENT".into(),
        "HOSTNAME".into(),
        "HOLDER".into(),
        "STATUS".into(),
        "EXPIRES".into(),
    ]];
    for (component, l) in &rows {
        let alive = l
            .lease
            .record
            .expires_at()
            .is_some_and(|at| at.as_unix_micros() > now.as_unix_micros());
        cells.push([
            component.clone(),
            l.labels
                .get(HOSTNAME_LABEL)
                .cloned()
                .unwrap_or_else(|| "<none>".into()),
            l.lease.record.holder.to_string(),
            if alive { "ALIVE" } else { "EXPIRED" }.into(),
            l.lease
                .record
                .expires_at()
                .map_or("<none>".into(), |at| relative(now, at)),
        ]);
    }
    out.push_str(&aligned(&cells));
    let mut components: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
    components.dedup();
    for component in components {
        let of: Vec<_> = rows.iter().filter(|(c, _)| c == component).collect();
        let alive = of
            .iter()
            .filter(|(_, l)| {
                l.lease
                    .record
                    .expires_at()
                    .is_some_and(|at| at.as_unix_micros() > now.as_unix_micros())
            })
            .count();
        out.push_str(&format!(
            "{component}: {alive} alive, {} expired\n",
            of.len() - alive
        ));
    }
    out
}

/// `in 12s` or `3m ago`, against the local wall clock (for display only).
fn relative(now: MicroTime, at: MicroTime) -> String {
    let delta = at.as_unix_micros() - now.as_unix_micros();
    let text = short(Duration::from_micros(delta.unsigned_abs()));
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// kubectl's AGE: how long ago the object was created.
fn age(now: MicroTime, created: MicroTime) -> String {
    let delta = now
        .as_unix_micros()
        .saturating_sub(created.as_unix_micros())
        .max(0);
    short(Duration::from_micros(delta.unsigned_abs()))
}

/// kubectl's short durations: `45s`, `12m`, `5h`, `3d`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

fn wall_now() -> MicroTime {
    leasehold_runtime::Clock::wall()
}

/// `t` as RFC 3339, for people reading a record.
pub(super) fn rfc3339(t: MicroTime) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_unix_micros()) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::{Identity, Lease, LeaseRecord, ResourceVersion};

    fn listed(name: &str, holder: Option<&str>, renew_s: i64, created_s: i64) -> ListedLease {
        ListedLease {
            namespace: "default".into(),
            name: name.into(),
            created: Some(MicroTime::from_unix_micros(created_s * 1_000_000)),
            labels: Default::default(),
            lease: Lease {
                resource_version: ResourceVersion::new("1").unwrap(),
                record: LeaseRecord {
                    holder: holder
                        .map_or(Holder::None, |h| Holder::Named(Identity::new(h).unwrap())),
                    lease_duration: Some(leasehold_core::Duration::from_secs(15)),
                    acquire_time: Some(MicroTime::from_unix_micros(renew_s * 1_000_000)),
                    renew_time: Some(MicroTime::from_unix_micros(renew_s * 1_000_000)),
                    lease_transitions: Some(3),
                },
            },
        }
    }

    #[test]
    fn absurd_records_from_the_server_are_shown_as_they_are_without_a_panic() {
        // A renewTime a century ahead (a holder's clock gone wrong), a duration that saturates
        // the core's clock, and one from before the epoch: the view shows them; the core never
        // compares them with a local clock.
        let now = MicroTime::from_unix_micros(1_000 * 1_000_000);
        let mut future = listed("future", Some("pod-a"), 4_000_000_000, 0);
        future.lease.record.lease_duration = Some(leasehold_core::Duration::MAX);
        let past = listed("past", Some("pod-b"), -62_000_000_000, i64::MIN / 1_000_000);
        let text = table(&[future.clone(), past], now, false, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("future") && lines[1].contains(" in "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("past") && lines[2].contains(" ago"),
            "{text}"
        );
        assert!(Row::from(&future).expires.is_some());
    }

    #[test]
    fn the_table_shows_holder_age_expiry_and_transitions() {
        let now = MicroTime::from_unix_micros(1_000 * 1_000_000);
        let leases = [
            listed("controller", Some("pod-a"), 995, 1_000 - 1_200),
            listed("old", Some("pod-b"), 900, 1_000 - 90_000),
            listed("free", None, 990, 1_000 - 30),
        ];
        let text = table(&leases, now, false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "HOLDER", "AGE", "EXPIRES", "TRANSITIONS"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["controller", "pod-a", "20m", "in", "10s", "3"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["old", "pod-b", "25h", "85s", "ago", "3"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["free", "30s", "<none>", "3"]
        );
        let wide = table(&leases[..1], now, true, true);
        assert!(wide.starts_with("NAMESPACE"), "{wide}");
        assert!(
            wide.contains("RENEWED") && wide.contains("5s ago") && wide.contains("15s"),
            "{wide}"
        );
    }

    #[test]
    fn identity_leases_are_grouped_by_component_alive_or_expired() {
        let now = MicroTime::from_unix_micros(10_000 * 1_000_000);
        let mut alive = listed("indexer-1", Some("pod-a_u1"), 9_990, 0);
        alive.labels = [
            (COMPONENT_LABEL.into(), "indexer".into()),
            (HOSTNAME_LABEL.into(), "node-1".into()),
        ]
        .into();
        let mut dead = listed("indexer-2", Some("pod-b_u2"), 5_000, 0);
        dead.labels = [
            (COMPONENT_LABEL.into(), "indexer".into()),
            (HOSTNAME_LABEL.into(), "node-2".into()),
        ]
        .into();
        let mut api = listed("apiserver-x", Some("apiserver-x_u3"), 9_999, 0);
        api.labels = [(APISERVER_LABEL.into(), "kube-apiserver".into())].into();
        let plain = listed("controller", Some("pod-c"), 9_999, 0);
        let text = identities(&[dead, plain, alive, api], now);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[1], ["IDENTITY", "LEASES"]);
        assert_eq!(
            lines[2],
            ["COMPONENT", "HOSTNAME", "HOLDER", "STATUS", "EXPIRES"]
        );
        assert_eq!(lines[3][..4], ["indexer", "node-1", "pod-a_u1", "ALIVE"]);
        assert_eq!(lines[4][..4], ["indexer", "node-2", "pod-b_u2", "EXPIRED"]);
        assert_eq!(
            lines[5][..4],
            ["kube-apiserver", "<none>", "apiserver-x_u3", "ALIVE"]
        );
        assert_eq!(lines[6], ["indexer:", "1", "alive,", "1", "expired"]);
        assert_eq!(lines[7], ["kube-apiserver:", "1", "alive,", "0", "expired"]);
        assert_eq!(
            identities(&[listed("c", None, 0, 0)], now),
            "",
            "no identity leases, no section"
        );
    }

    #[test]
    fn rows_carry_the_record_and_its_expiry() {
        let row = Row::from(&listed("controller", Some("pod-a"), 1_000, 0));
        assert_eq!(row.holder_identity.as_deref(), Some("pod-a"));
        assert_eq!(row.expires.as_deref(), Some("1970-01-01T00:16:55Z"));
        assert_eq!(row.lease_transitions, Some(3));
    }
}
