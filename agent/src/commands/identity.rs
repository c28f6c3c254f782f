//! `leasehold identity`: the API server identity pattern for any fleet. Each instance keeps a
//! long lease named from its component and a hash of its hostname, labelled so a selector finds
//! them all (`leasehold gc` deletes the ones that expired long ago).

use super::runner::{Session, Setup, seed};
use crate::cli::{Global, IdentityArgs};
use crate::cluster;
use crate::duration::to_core;
use crate::error::AgentError;
use crate::shutdown::Signals;
use leasehold_core::{Heartbeat, HeartbeatConfig, Identity, LeaseName};
use leasehold_runtime::{CreateMetadata, OwnerReference};
use std::collections::BTreeMap;

/// The label every identity lease carries: its component.
pub const COMPONENT_LABEL: &str = "leasehold.io/component";
/// The label the API server's own identity leases carry.
pub const APISERVER_LABEL: &str = "apiserver.kubernetes.io/identity";
/// The hostname label (the one Kubernetes uses on nodes and API server identity leases).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

pub async fn run(
    global: &Global,
    args: IdentityArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let hostname = args.hostname.clone().unwrap_or_else(cluster::hostname);
    let name = lease_name(&args.component, &hostname)?;
    let lease =
        LeaseName::new(&name).map_err(|e| AgentError::usage(format!("lease name {name}: {e}")))?;
    // The host given names the instance too: a holder naming another host would mislead.
    let instance = cluster::identity(args.place.identity.as_deref().or(args.hostname.as_deref()))?;
    let holder = holder(instance.as_str());
    let mut labels = BTreeMap::from([
        (COMPONENT_LABEL.to_owned(), args.component.clone()),
        (HOSTNAME_LABEL.to_owned(), label_value(&hostname)),
    ]);
    for pair in &args.labels {
        let (key, value) = parse_label(pair)?;
        labels.insert(key, value);
    }
    let owner = match (std::env::var("POD_NAME"), std::env::var("POD_UID")) {
        (Ok(name), Ok(uid)) if !name.is_empty() && !uid.is_empty() => Some(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name,
            uid,
        }),
        _ => None,
    };
    let machine = Heartbeat::new(
        HeartbeatConfig {
            lease,
            identity: holder.clone(),
            lease_duration: to_core(args.lease_duration),
            renew_interval: Some(to_core(args.renew_interval)),
        },
        seed(),
    )
    .map_err(|e| AgentError::usage(format!("--lease-duration / --renew-interval: {e}")))?;
    let session = Session::start(Setup {
        global,
        config: &config,
        namespace: args.place.namespace.clone(),
        request_timeout: machine.request_timeout(),
        create_metadata: CreateMetadata {
            labels,
            owner: owner.clone(),
        },
        name: &name,
        identity: &holder,
        output: &args.output,
        healthz_after: to_core(args.lease_duration),
    })
    .await?;
    tracing::info!(
        lease = %name,
        component = %args.component,
        hostname = %hostname,
        holder = %holder.as_str(),
        owner = ?owner.as_ref().map(|o| &o.name),
        "publishing the identity lease"
    );
    super::heartbeat::renew(&session, machine, name, signals).await
}

/// `COMPONENT-<32 hex digits>`: the first 128 bits of SHA-256 of the hostname, so the name is
/// the same on every restart on one host, differs between hosts, and is a valid DNS-1123 name
/// (at most 63 + 1 + 32 characters) whatever the hostname is.
pub fn lease_name(component: &str, hostname: &str) -> Result<String, AgentError> {
    if !crate::dns_label::is_dns_label(component) {
        return Err(AgentError::usage(format!(
            "--component \"{component}\": a component is at most 63 lower-case letters, digits and \
             '-', starting and ending with a letter or digit (it is also a label value)"
        )));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, hostname.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{component}-{hex}"))
}

/// `ID_<uuid>`: this run of this instance (the API server writes `<id>_<uuid>` too), shortened
/// to fit the 253-character holder.
fn holder(instance: &str) -> Identity {
    let uuid = uuid::Uuid::new_v4();
    let id: String = instance.chars().take(253 - 37).collect();
    Identity::new(&format!("{id}_{uuid}")).unwrap_or_else(|_| {
        Identity::new(&uuid.to_string()).unwrap_or_else(|_| unreachable!("a uuid is 36 bytes"))
    })
}

/// A hostname as a label value: at most 63 of `[a-z0-9._-]`, starting and ending with a letter
/// or digit (a very long or odd hostname is shortened; the lease name hashes the full one).
pub fn label_value(hostname: &str) -> String {
    let cleaned: String = hostname
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown".into()
    } else {
        trimmed.to_owned()
    }
}

fn parse_label(pair: &str) -> Result<(String, String), AgentError> {
    let bad = |why: &str| AgentError::usage(format!("--label \"{pair}\": {why}; write KEY=VALUE"));
    let (key, value) = pair.split_once('=').ok_or_else(|| bad("no '='"))?;
    let key_ok = !key.is_empty()
        && key.len() <= 253 + 1 + 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !key_ok {
        return Err(bad("the key is not a label key"));
    }
    if value.len() > 63
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad(
            "the value is at most 63 letters, digits, '-', '_' and '.'",
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_valid_for_awkward_hostnames() {
        let long = format!("{}.example.com", "node".repeat(70));
        for host in [
            "node-1",
            "NODE-1.Example.COM",
            "a.b.c",
            long.as_str(),
            "",
            "ünïcode host",
        ] {
            let name = lease_name("indexer", host).unwrap();
            assert_eq!(name, lease_name("indexer", host).unwrap(), "stable");
            assert!(LeaseName::new(&name).is_ok(), "{name}");
            assert_eq!(name.len(), "indexer-".len() + 32);
            let value = label_value(host);
            assert!(value.len() <= 63 && !value.is_empty(), "{value}");
            assert!(value.starts_with(|c: char| c.is_ascii_alphanumeric()));
            assert!(value.ends_with(|c: char| c.is_ascii_alphanumeric()));
        }
        assert_ne!(
            lease_name("indexer", "node-1").unwrap(),
            lease_name("indexer", "node-2").unwrap()
        );
        assert_ne!(
            lease_name("indexer", "Node-1").unwrap(),
            lease_name("indexer", "node-1").unwrap(),
            "the hostname is hashed exactly as given"
        );
        assert_eq!(label_value("NODE-1.Example.COM"), "node-1.example.com");
        let e = lease_name("My_Component", "h").unwrap_err();
        assert!(e.message.starts_with("--component"), "{e}");
    }

    #[test]
    fn the_holder_is_the_instance_and_a_fresh_uuid() {
        let a = holder("pod-a");
        let b = holder("pod-a");
        assert!(a.as_str().starts_with("pod-a_") && a.as_str().len() == "pod-a_".len() + 36);
        assert_ne!(a, b, "a new uuid per start");
        assert!(holder(&"x".repeat(300)).as_str().len() <= 253);
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_label("team=search").unwrap(),
            ("team".into(), "search".into())
        );
        assert_eq!(
            parse_label("example.com/tier=a.b").unwrap().0,
            "example.com/tier"
        );
        assert!(
            parse_label("nope")
                .unwrap_err()
                .message
                .contains("KEY=VALUE")
        );
        assert!(parse_label("k=has space").is_err());
    }
}
