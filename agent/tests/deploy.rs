//! The manifests in deploy/: every document is a valid Kubernetes object (decoded into
//! k8s-openapi's types and re-encoded without losing a field, so a misspelt or misplaced key
//! fails), every leasehold command line in them parses, the Role names exactly the leases those
//! command lines use, and the Dockerfile copies what scripts/build-static builds.

use clap::Parser;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use leasehold::cli::{Cli, Command};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Each YAML document of `file` as JSON.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy().join(file)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Decodes `doc` as `T` and checks that encoding it again gives back every field.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &again, doc,
        "{file}: a field was not understood (misspelt or misplaced?)"
    );
    typed
}

struct Objects {
    roles: Vec<Role>,
    containers: Vec<Container>,
}

fn objects() -> Objects {
    let mut objects = Objects {
        roles: Vec::new(),
        containers: Vec::new(),
    };
    let mut files = 0;
    for entry in std::fs::read_dir(deploy()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        files += 1;
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        for doc in documents(&file) {
            match doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: a document without kind"))
            {
                "Namespace" => drop(roundtrip::<Namespace>(&file, &doc)),
                "ServiceAccount" => drop(roundtrip::<ServiceAccount>(&file, &doc)),
                "Role" => objects.roles.push(roundtrip::<Role>(&file, &doc)),
                "RoleBinding" => drop(roundtrip::<RoleBinding>(&file, &doc)),
                "Deployment" => {
                    let d = roundtrip::<Deployment>(&file, &doc);
                    let pod = d.spec.template.spec.unwrap();
                    objects.containers.extend(pod.containers);
                }
                "DaemonSet" => {
                    let d = roundtrip::<DaemonSet>(&file, &doc);
                    let pod = d.spec.template.spec.unwrap();
                    objects.containers.extend(pod.containers);
                    objects
                        .containers
                        .extend(pod.init_containers.unwrap_or_default());
                }
                other => panic!("{file}: unexpected kind {other}"),
            }
        }
    }
    assert_eq!(files, 3, "rbac.yaml, deployment.yaml, daemonset.yaml");
    objects
}

#[test]
fn every_manifest_is_a_valid_object_and_every_command_line_parses() {
    let objects = objects();
    let mut used = BTreeSet::new();
    let mut commands = 0;
    for container in &objects.containers {
        let argv = container.command.clone().unwrap_or_default();
        if argv.first().map(String::as_str) != Some("/leasehold") {
            continue;
        }
        commands += 1;
        let cli = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("container {}: {e}", container.name));
        match cli.command {
            Command::Elect(args) => {
                used.insert(args.lease.expect("--lease"));
            }
            Command::Pool(args) => {
                let prefix = args.prefix.expect("--prefix");
                for i in 0..args.size.expect("--size") {
                    used.insert(format!("{prefix}-{i}"));
                }
            }
            Command::Heartbeat(args) => {
                assert_eq!(args.place.namespace.as_deref(), Some("leasehold-heartbeat"));
            }
            _ => panic!("container {}: not an agent command", container.name),
        }
    }
    assert_eq!(commands, 4, "elect, cold start, delegation, heartbeat");

    let role = objects
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("leasehold-leases"))
        .expect("the leases Role");
    let rules = role.rules.as_ref().unwrap();
    let named: BTreeSet<String> = rules
        .iter()
        .flat_map(|r| r.resource_names.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        named, used,
        "the Role names exactly the leases the commands use"
    );
    for rule in rules {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_owned()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        match &rule.resource_names {
            None => assert_eq!(verbs, BTreeSet::from(["create"]), "only create is unnamed"),
            Some(_) => assert_eq!(verbs, BTreeSet::from(["get", "update", "watch"])),
        }
    }
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
