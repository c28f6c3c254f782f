//! The manifests in deploy/, as `kubectl kustomize` renders each overlay offline: every document
//! is a valid Kubernetes object (decoded into k8s-openapi's types and re-encoded without losing
//! a field, so a misspelt or misplaced key fails), every leasehold command line in them parses,
//! each overlay's Role names exactly the leases its command lines use, images of the agent
//! itself carry the tag the image build produces, and the Dockerfile copies what
//! scripts/build-static builds.

use clap::Parser;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use leasehold::cli::{Cli, Command};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

const OVERLAYS: [&str; 3] = ["elect", "node-agent", "heartbeat"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Each document `kubectl kustomize` renders for `overlay`, as JSON.
fn render(overlay: &str) -> Vec<Value> {
    let dir = deploy().join("overlays").join(overlay);
    let out = Process::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl runs (it renders the kustomize overlays offline)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{overlay}: {e}"))
}

/// Decodes `doc` as `T` and checks that encoding it again gives back every field.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &again, doc,
        "{what}: a field was not understood (misspelt or misplaced?)"
    );
    typed
}

#[derive(Default)]
struct Objects {
    roles: Vec<Role>,
    containers: Vec<Container>,
    namespaces: BTreeSet<String>,
}

fn objects(overlay: &str) -> Objects {
    let mut objects = Objects::default();
    for doc in render(overlay) {
        match doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{overlay}: a document without kind"))
        {
            "Namespace" => {
                let ns = roundtrip::<Namespace>(overlay, &doc);
                objects.namespaces.extend(ns.metadata.name);
            }
            "ServiceAccount" => drop(roundtrip::<ServiceAccount>(overlay, &doc)),
            "Role" => objects.roles.push(roundtrip::<Role>(overlay, &doc)),
            "RoleBinding" => drop(roundtrip::<RoleBinding>(overlay, &doc)),
            "Deployment" => {
                let d = roundtrip::<Deployment>(overlay, &doc);
                objects
                    .containers
                    .extend(d.spec.template.spec.unwrap().containers);
            }
            "DaemonSet" => {
                let d = roundtrip::<DaemonSet>(overlay, &doc);
                let pod = d.spec.template.spec.unwrap();
                objects.containers.extend(pod.containers);
                objects
                    .containers
                    .extend(pod.init_containers.unwrap_or_default());
            }
            other => panic!("{overlay}: unexpected kind {other}"),
        }
    }
    objects
}

/// The leases (or, for heartbeats, the namespace) each agent command line uses, how many
/// commands there are, and whether one is a pool that watches (a stream of the namespace's
/// leases); checks that each parses with the real CLI.
fn leases_used(overlay: &str, containers: &[Container]) -> (BTreeSet<String>, usize, bool) {
    let mut used = BTreeSet::new();
    let mut commands = 0;
    let mut streams = false;
    for container in containers {
        let argv = container.command.clone().unwrap_or_default();
        if argv.first().map(String::as_str) != Some("/leasehold") {
            continue;
        }
        commands += 1;
        let cli = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{overlay}, container {}: {e}", container.name));
        match cli.command {
            Command::Elect(args) => {
                used.insert(args.lease.expect("--lease"));
            }
            Command::Pool(args) => {
                streams |= !args.timing.poll;
                let prefix = args.prefix.expect("--prefix");
                for i in 0..args.size.expect("--size") {
                    used.insert(format!("{prefix}-{i}"));
                }
            }
            Command::Heartbeat(args) => {
                assert_eq!(args.place.namespace.as_deref(), Some("leasehold-heartbeat"));
            }
            _ => panic!(
                "{overlay}, container {}: not an agent command",
                container.name
            ),
        }
    }
    (used, commands, streams)
}

#[test]
fn every_overlay_renders_valid_objects_whose_commands_parse_and_whose_roles_fit() {
    let version = env!("CARGO_PKG_VERSION");
    let mut commands_seen = Vec::new();
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        assert!(objects.namespaces.contains("leasehold"), "{overlay}");
        let (used, commands, streams) = leases_used(overlay, &objects.containers);
        commands_seen.push((overlay, commands));
        for container in &objects.containers {
            let image = container.image.as_deref().unwrap_or_default();
            if image.starts_with("leasehold") {
                assert_eq!(image, format!("leasehold:{version}"), "{overlay}");
            }
        }
        for role in &objects.roles {
            let rules = role.rules.as_ref().unwrap();
            for rule in rules {
                assert_eq!(
                    rule.api_groups.as_deref(),
                    Some(&["coordination.k8s.io".to_owned()][..])
                );
                assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
            }
            if role.metadata.namespace.as_deref() == Some("leasehold-heartbeat") {
                // Node names are not known in advance: a namespace of its own, leases only.
                let verbs: BTreeSet<&str> = rules
                    .iter()
                    .flat_map(|r| r.verbs.iter().map(String::as_str))
                    .collect();
                assert_eq!(verbs, BTreeSet::from(["create", "get", "update"]));
                continue;
            }
            let named: BTreeSet<String> = rules
                .iter()
                .flat_map(|r| r.resource_names.clone().unwrap_or_default())
                .collect();
            assert_eq!(
                named, used,
                "{overlay}: the Role names exactly the leases the commands use"
            );
            // A pool's one stream lists and watches the namespace: no name can limit it.
            let (unnamed, named) = if streams {
                (vec!["create", "list", "watch"], vec!["get", "update"])
            } else {
                (vec!["create"], vec!["get", "update", "watch"])
            };
            for rule in rules {
                let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
                match &rule.resource_names {
                    None => assert_eq!(verbs, BTreeSet::from_iter(unnamed.clone()), "{overlay}"),
                    Some(_) => assert_eq!(verbs, BTreeSet::from_iter(named.clone()), "{overlay}"),
                }
            }
        }
        assert_eq!(objects.roles.len(), 1, "{overlay}: one Role");
    }
    assert_eq!(
        commands_seen,
        [("elect", 1), ("node-agent", 2), ("heartbeat", 1)],
        "elect; cold start and delegation; heartbeat"
    );
}

#[test]
fn the_dockerfile_copies_the_static_build_onto_scratch() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-static"),
    )
    .unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(instructions[0], "FROM scratch");
    let copy = instructions
        .iter()
        .find(|l| l.starts_with("COPY "))
        .unwrap();
    let source = copy.split_whitespace().nth(1).unwrap();
    assert_eq!(source, "target/x86_64-unknown-linux-musl/minsize/leasehold");
    assert!(
        script.contains("target=x86_64-unknown-linux-musl") && script.contains("--profile minsize")
    );
    assert!(
        instructions.iter().any(|l| l.starts_with("USER 65532")),
        "not root"
    );
}
