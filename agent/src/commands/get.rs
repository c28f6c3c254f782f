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
use std::cmp::Ordering;
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
    leases.sort_by(|a, b| {
        a.namespace
            .cmp(&b.namespace)
            .then_with(|| natural(&a.name, &b.name))
    });
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
    /// The pool member that reserved the next term (the annotation `leasehold.io/next-holder`).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_holder: Option<String>,
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
            next_holder: match &r.next_holder {
                Holder::None => None,
                other => Some(other.to_string()),
            },
            expires: l.lease.record.expires_at().map(rfc3339),
            creation_timestamp: l.created.map(rfc3339),
            labels: l.labels.clone(),
        }
    }
}

/// The table: kubectl's columns first, as kubectl prints them (NAME, HOLDER, empty when the
/// lease has none, AGE), so that what Sysdig documents for `kubectl get leases` reads the same
/// here; then leasehold's own.
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

/// kubectl's AGE: how long ago the object was created, `<invalid>` when its creation is more
/// than a second ahead of the local clock (kubectl's `TranslateTimestampSince`).
fn age(now: MicroTime, created: MicroTime) -> String {
    let delta = now
        .as_unix_micros()
        .saturating_sub(created.as_unix_micros());
    match delta / 1_000_000 {
        ..-1 => "<invalid>".to_owned(),
        _ => short(Duration::from_micros(delta.max(0).unsigned_abs())),
    }
}

/// kubectl's short durations (apimachinery's `HumanDuration`): two or three significant
/// figures, `45s`, `2m10s`, `15m`, `3h`, `3h5m`, `30h`, `5d`, `5d3h`, `40d`, `2y10d`, `9y`.
fn short(d: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    /// `whole` units and, unless zero, the `part` after them.
    fn two(whole: u64, unit: &str, part: u64, part_unit: &str) -> String {
        match part {
            0 => format!("{whole}{unit}"),
            _ => format!("{whole}{unit}{part}{part_unit}"),
        }
    }
    let s = d.as_secs();
    // The bounds: 2 and 10 minutes, 3, 8 and 48 hours, 8 days, 2 and 8 years of 365 days.
    match s {
        0..120 => format!("{s}s"),
        120..600 => two(s / MINUTE, "m", s % MINUTE, "s"),
        600..10_800 => format!("{}m", s / MINUTE),
        10_800..28_800 => two(s / HOUR, "h", s % HOUR / MINUTE, "m"),
        28_800..172_800 => format!("{}h", s / HOUR),
        172_800..691_200 => two(s / DAY, "d", s % DAY / HOUR, "h"),
        691_200..63_072_000 => format!("{}d", s / DAY),
        63_072_000..252_288_000 => two(s / YEAR, "y", s % YEAR / DAY, "d"),
        _ => format!("{}y", s / YEAR),
    }
}

/// Names in natural order: runs of digits compare as numbers, so a pool's `cold-start-2` comes
/// before `cold-start-10`; names that compare equal so (`slot-01`, `slot-1`) keep their plain
/// order.
fn natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (n, rest_x) = digits(x);
                let (m, rest_y) = digits(y);
                let by_value = n.len().cmp(&m.len()).then_with(|| n.cmp(m));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (x, y) = (rest_x, rest_y);
            }
            (Some(c), Some(d)) if c != d => return c.cmp(d),
            _ => (x, y) = (&x[1..], &y[1..]),
        }
    }
}

/// The leading run of digits of `s` without its leading zeros, and what follows the run.
fn digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    let (run, rest) = s.split_at(end);
    let zeros = run.iter().take_while(|c| **c == b'0').count();
    (&run[zeros..], rest)
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
                    next_holder: Holder::None,
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
    fn ages_read_as_kubectl_prints_them() {
        let cases: [(u64, &str); 22] = [
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (130, "2m10s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3_600, "3h"),
            (3 * 3_600 + 5 * 60 + 59, "3h5m"),
            (8 * 3_600, "8h"),
            (47 * 3_600 + 3_599, "47h"),
            (2 * 86_400, "2d"),
            (5 * 86_400 + 3 * 3_600, "5d3h"),
            (8 * 86_400 - 1, "7d23h"),
            (8 * 86_400, "8d"),
            (729 * 86_400, "729d"),
            (730 * 86_400, "2y"),
            (740 * 86_400, "2y10d"),
            (8 * 365 * 86_400 - 1, "7y364d"),
            (8 * 365 * 86_400, "8y"),
            (30 * 365 * 86_400, "30y"),
        ];
        for (secs, shown) in cases {
            assert_eq!(short(Duration::from_secs(secs)), shown, "{secs} s");
        }
        let now = MicroTime::from_unix_micros(1_000 * 1_000_000);
        let at = |micros: i64| MicroTime::from_unix_micros(1_000 * 1_000_000 + micros);
        assert_eq!(age(now, at(-130_000_000)), "2m10s");
        assert_eq!(
            age(now, at(1_999_999)),
            "0s",
            "created up to 2 s ahead: the clocks disagree a little"
        );
        assert_eq!(age(now, at(2_000_000)), "<invalid>");
        assert_eq!(
            age(now, MicroTime::from_unix_micros(i64::MIN)),
            short(Duration::from_micros(i64::MAX.unsigned_abs())),
            "saturates, no overflow"
        );
    }

    #[test]
    fn names_sort_in_natural_order() {
        let mut names = [
            "cold-start-10",
            "cold-start-2",
            "cold-start-1",
            "controller",
            "cold-start-0",
            "cold-start-11",
            "a-01",
            "a-1",
            "a-001b",
            "a-1a",
        ];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(
            names,
            [
                "a-01",
                "a-1",
                "a-1a",
                "a-001b",
                "cold-start-0",
                "cold-start-1",
                "cold-start-2",
                "cold-start-10",
                "cold-start-11",
                "controller",
            ]
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
