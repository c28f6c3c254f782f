//! The config file (`--config`): the keys users already have, in the forms the vendors
//! document. Elastic Agent's `providers.kubernetes_leaderelection` (its configuration library
//! reads a dotted key as a path, and takes its `leader_*` durations as bare seconds), and the
//! Sysdig agent's `k8s_coldstart`, `k8s_delegation_election` (a boolean) and
//! `k8s_delegated_nodes`. Unknown keys and wrong types are errors that name the full dotted key
//! and its line, so a typo is never silently ignored.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file. Every section is optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Elastic Agent's providers; only `kubernetes_leaderelection` is read.
    #[serde(default)]
    pub providers: Providers,
    /// Sysdig's cold-start throttling (`leasehold pool --release-after`); its `namespace` and
    /// `enforce_leader_election` apply to delegation too, as in the Sysdig agent.
    #[serde(default)]
    pub k8s_coldstart: ColdStart,
    /// Sysdig's delegation switch (`leasehold pool --hold`): `false` turns it off.
    pub k8s_delegation_election: Option<bool>,
    /// Sysdig's number of delegated agents (default 2).
    pub k8s_delegated_nodes: Option<usize>,
}

/// `providers:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// `providers.kubernetes_leaderelection`.
    #[serde(default)]
    pub kubernetes_leaderelection: LeaderElection,
}

/// Elastic's `providers.kubernetes_leaderelection` (`leasehold elect`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElection {
    /// `false` makes `leasehold elect` refuse to run.
    pub enabled: Option<bool>,
    /// kubeconfig path (`--kubeconfig`).
    pub kube_config: Option<PathBuf>,
    /// Client rate limits.
    pub kube_client_options: Option<ClientOptions>,
    /// The lease name (`--lease`).
    pub leader_lease: Option<String>,
    /// `--retry-period`: seconds, or a duration with a unit.
    #[serde(default, deserialize_with = "elastic_duration")]
    pub leader_retryperiod: Option<Duration>,
    /// `--lease-duration`: seconds, or a duration with a unit.
    #[serde(default, deserialize_with = "elastic_duration")]
    pub leader_leaseduration: Option<Duration>,
    /// `--renew-deadline`: seconds, or a duration with a unit.
    #[serde(default, deserialize_with = "elastic_duration")]
    pub leader_renewdeadline: Option<Duration>,
}

/// `kube_client_options`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOptions {
    /// `--qps`.
    pub qps: Option<f64>,
    /// `--burst`.
    pub burst: Option<u32>,
}

/// Sysdig's `k8s_coldstart`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    /// `false`: `pool --release-after` runs its command at once, unthrottled.
    pub enabled: Option<bool>,
    /// The pool size (default 10).
    pub max_parallel_cold_start: Option<usize>,
    /// The namespace of the leases (cold start and delegation).
    pub namespace: Option<String>,
    /// `--enforce` (cold start and delegation).
    pub enforce_leader_election: Option<bool>,
}

/// Why a config file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The parser's message: the key, what was wrong and the line and column.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config file {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        message: format!("cannot read it: {e}"),
    })?;
    parse(&text, path)
}

/// Parses config text; `path` is for messages. An empty file is an empty config.
///
/// The YAML is read into a tree that keeps each key's line, dotted keys are expanded into
/// nesting (`a.b: {c: 1}`, `a: {b.c: 1}` and `a: {b: {c: 1}}` are the same, and both forms
/// merge), and the result is decoded with the path of any failure, which names the line.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let (value, lines) = expand_text(text, path)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        // The failing key's own line, or that of the nearest section that has one.
        let line =
            std::iter::successors(Some(key.as_str()), |k| k.rsplit_once('.').map(|(a, _)| a))
                .find_map(|k| lines.get(k));
        ConfigError {
            path: path.to_owned(),
            message: match line {
                Some(line) => format!("{key} (line {line}): {}", e.inner()),
                None => e.inner().to_string(),
            },
        }
    })
}

/// The file with every dotted key expanded into nesting, as a JSON object (`{}` for an empty
/// file): what [`parse`] decodes, so a file and this rewrite of it mean the same.
pub fn expanded(text: &str, path: &Path) -> Result<serde_json::Value, ConfigError> {
    expand_text(text, path).map(|(value, _)| value)
}

/// The expanded file, and the line of every dotted key in it.
fn expand_text(
    text: &str,
    path: &Path,
) -> Result<(serde_json::Value, BTreeMap<String, usize>), ConfigError> {
    let error = |message: String| ConfigError {
        path: path.to_owned(),
        message,
    };
    let empty = || {
        (
            serde_json::Value::Object(serde_json::Map::new()),
            BTreeMap::new(),
        )
    };
    if text.trim().is_empty() {
        return Ok(empty());
    }
    let node: Node = serde_saphyr::from_str(text).map_err(|e| error(e.to_string()))?;
    let entries = match node {
        Node::Map(entries) => entries,
        // Only comments.
        Node::Value(serde_json::Value::Null) => return Ok(empty()),
        Node::Value(_) => {
            return Err(error("the file must be a mapping of keys to values".into()));
        }
    };
    let mut tree = BTreeMap::new();
    expand(entries, "", &mut tree).map_err(error)?;
    let mut lines = BTreeMap::new();
    let value = to_json(tree, "", &mut lines);
    Ok((value, lines))
}

/// A YAML node as read: mappings keep each key with its location; everything else is a value.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Value(serde_json::Value),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value::<Node>()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            items.push(item);
        }
        Ok(Node::Value(serde_json::Value::Array(items)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Value(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Value(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Value(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Value(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Value(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Value(serde_json::Value::Null))
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Value(serde_json::Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

/// A key after dotted keys were expanded, with the line that introduced it.
struct Entry {
    line: usize,
    tree: Tree,
}

enum Tree {
    Map(BTreeMap<String, Entry>),
    Value(serde_json::Value),
}

/// Expands the dotted keys of `entries` (under the dotted path `prefix`) into `into`.
fn expand(
    entries: Vec<(Spanned<String>, Node)>,
    prefix: &str,
    into: &mut BTreeMap<String, Entry>,
) -> Result<(), String> {
    for (key, node) in entries {
        let line = key.referenced.line() as usize;
        let full = join(prefix, &key.value);
        let parts: Vec<&str> = key.value.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{full} (line {line}): a key has an empty part"));
        }
        let (last, sections) = parts.split_last().unwrap_or((&"", &[]));
        let mut map = &mut *into;
        let mut at = prefix.to_owned();
        for part in sections {
            at = join(&at, part);
            let entry = map.entry((*part).to_owned()).or_insert(Entry {
                line,
                tree: Tree::Map(BTreeMap::new()),
            });
            map = match &mut entry.tree {
                Tree::Map(inner) => inner,
                Tree::Value(_) => return Err(conflict(&at, entry.line, line)),
            };
        }
        match node {
            Node::Map(children) => {
                let entry = map.entry((*last).to_owned()).or_insert(Entry {
                    line,
                    tree: Tree::Map(BTreeMap::new()),
                });
                let Tree::Map(inner) = &mut entry.tree else {
                    return Err(conflict(&full, entry.line, line));
                };
                expand(children, &full, inner)?;
            }
            Node::Value(value) => {
                if let Some(earlier) = map.get(*last) {
                    return Err(conflict(&full, earlier.line, line));
                }
                map.insert(
                    (*last).to_owned(),
                    Entry {
                        line,
                        tree: Tree::Value(value),
                    },
                );
            }
        }
    }
    Ok(())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn conflict(key: &str, first: usize, again: usize) -> String {
    format!("{key} (line {again}): already given on line {first}; give each key once")
}

/// The expanded tree as JSON for decoding, noting each dotted key's line in `lines`.
fn to_json(
    map: BTreeMap<String, Entry>,
    prefix: &str,
    lines: &mut BTreeMap<String, usize>,
) -> serde_json::Value {
    let object = map
        .into_iter()
        .map(|(key, entry)| {
            let full = join(prefix, &key);
            lines.insert(full.clone(), entry.line);
            let value = match entry.tree {
                Tree::Map(inner) => to_json(inner, &full, lines),
                Tree::Value(value) => value,
            };
            (key, value)
        })
        .collect();
    serde_json::Value::Object(object)
}

/// An Elastic `leader_*` duration: a bare number is seconds, as Elastic documents; a string
/// with a unit (`15s`, `1m30s`) is read like the flags.
fn elastic_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Seconds;
    impl Visitor<'_> for Seconds {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds or a duration such as 15s")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_secs).map_err(|_| {
                E::custom(format!("{v} seconds is negative: give a positive duration"))
            })
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| {
                E::custom(format!(
                    "{v} seconds is not a duration: give a positive number"
                ))
            })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            crate::duration::parse(v).map_err(E::custom)
        }
    }
    d.deserialize_any(Seconds).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        super::parse(text, Path::new("agent.yaml"))
    }

    /// Elastic Agent's documented `kubernetes_leaderelection` block (elastic-agent reference
    /// configuration), with the comment markers removed: the provider as one dotted key, the
    /// durations as bare seconds.
    const ELASTIC_DOCUMENTED: &str = "\
providers.kubernetes_leaderelection:
  # Enable the provider.
  enabled: true
  # Kubernetes config file path, when not running in a cluster.
  kube_config: /Users/elastic-agent/.kube/config
  # Client rate limits.
  kube_client_options:
    qps: 5
    burst: 10
  # The name of the lease used for leader election.
  leader_lease: elastic-agent-cluster-leader
  # Seconds a non-leader waits before trying to take the lease.
  leader_retryperiod: 2
  # Seconds a leader's lease lasts.
  leader_leaseduration: 15
  # Seconds the leader keeps trying to renew before it gives up.
  leader_renewdeadline: 10
";

    fn elastic_defaults() -> LeaderElection {
        LeaderElection {
            enabled: Some(true),
            kube_config: Some(PathBuf::from("/Users/elastic-agent/.kube/config")),
            kube_client_options: Some(ClientOptions {
                qps: Some(5.0),
                burst: Some(10),
            }),
            leader_lease: Some("elastic-agent-cluster-leader".into()),
            leader_retryperiod: Some(Duration::from_secs(2)),
            leader_leaseduration: Some(Duration::from_secs(15)),
            leader_renewdeadline: Some(Duration::from_secs(10)),
        }
    }

    #[test]
    fn elastics_documented_block_gives_elastics_defaults() {
        let c = parse(ELASTIC_DOCUMENTED).unwrap();
        assert_eq!(c.providers.kubernetes_leaderelection, elastic_defaults());
        assert_eq!(c.k8s_coldstart, ColdStart::default());
    }

    #[test]
    fn dotted_and_nested_keys_are_the_same_and_merge() {
        let nested = parse(
            "providers:\n  kubernetes_leaderelection:\n    leader_lease: a\n    \
             kube_client_options:\n      qps: 5\n",
        )
        .unwrap();
        for text in [
            "providers.kubernetes_leaderelection:\n  leader_lease: a\n  \
             kube_client_options.qps: 5\n",
            "providers:\n  kubernetes_leaderelection.leader_lease: a\n  \
             kubernetes_leaderelection.kube_client_options.qps: 5\n",
            "providers.kubernetes_leaderelection.leader_lease: a\n\
             providers:\n  kubernetes_leaderelection:\n    kube_client_options:\n      qps: 5\n",
        ] {
            assert_eq!(parse(text).unwrap(), nested, "{text}");
        }
    }

    #[test]
    fn a_key_given_twice_across_forms_names_both_lines() {
        let e = parse(
            "providers.kubernetes_leaderelection.leader_lease: a\n\
             providers:\n  kubernetes_leaderelection:\n    leader_lease: b\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("providers.kubernetes_leaderelection.leader_lease")
                && e.message.contains("line 4")
                && e.message.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn sysdigs_documented_keys_are_read() {
        let c = parse(
            "k8s_coldstart:\n  enabled: true\n  max_parallel_cold_start: 10\n  \
             namespace: sysdig-agent\n  enforce_leader_election: false\n\
             k8s_delegation_election: true\nk8s_delegated_nodes: 2\n",
        )
        .unwrap();
        assert_eq!(
            c.k8s_coldstart,
            ColdStart {
                enabled: Some(true),
                max_parallel_cold_start: Some(10),
                namespace: Some("sysdig-agent".into()),
                enforce_leader_election: Some(false),
            }
        );
        assert_eq!(c.k8s_delegation_election, Some(true));
        assert_eq!(c.k8s_delegated_nodes, Some(2));
        assert_eq!(
            parse("k8s_delegation_election: false\n")
                .unwrap()
                .k8s_delegation_election,
            Some(false)
        );
    }

    #[test]
    fn durations_take_seconds_or_units() {
        let c = parse(
            "providers.kubernetes_leaderelection:\n  leader_retryperiod: 1.5\n  \
             leader_leaseduration: 1m\n  leader_renewdeadline: 10s\n",
        )
        .unwrap();
        let le = &c.providers.kubernetes_leaderelection;
        assert_eq!(le.leader_retryperiod, Some(Duration::from_millis(1_500)));
        assert_eq!(le.leader_leaseduration, Some(Duration::from_secs(60)));
        assert_eq!(le.leader_renewdeadline, Some(Duration::from_secs(10)));
        let e =
            parse("providers.kubernetes_leaderelection.leader_leaseduration: -5\n").unwrap_err();
        assert!(
            e.message.contains("leader_leaseduration (line 1)") && e.message.contains("negative"),
            "{e}"
        );
        assert_eq!(
            parse("providers.kubernetes_leaderelection.leader_leaseduration: 0\n")
                .unwrap()
                .providers
                .kubernetes_leaderelection
                .leader_leaseduration,
            Some(Duration::ZERO),
            "zero is the timing error it always was, reported by the timing check"
        );
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), ConfigFile::default());
        assert_eq!(parse("# nothing\n").unwrap(), ConfigFile::default());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_full_path_and_line() {
        let e =
            parse("k8s_coldstart:\n  enabled: true\n  max_paralel_cold_start: 3\n").unwrap_err();
        assert!(
            e.message
                .contains("k8s_coldstart.max_paralel_cold_start (line 3)"),
            "{e}"
        );
        assert!(e.to_string().starts_with("config file agent.yaml: "), "{e}");
        let e = parse("providers.kubernetes_leaderelection.leader_leese: x\n").unwrap_err();
        assert!(
            e.message
                .contains("providers.kubernetes_leaderelection.leader_leese (line 1)"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = parse("k8s_coldstart:\n  max_parallel_cold_start: many\n").unwrap_err();
        assert!(
            e.message
                .contains("k8s_coldstart.max_parallel_cold_start (line 2)"),
            "{e}"
        );
        let e = parse("k8s_delegation_election:\n  enabled: true\n").unwrap_err();
        assert!(
            e.message.contains("k8s_delegation_election (line 1)"),
            "{e}"
        );
        let e =
            parse("providers.kubernetes_leaderelection.leader_leaseduration: 15x\n").unwrap_err();
        assert!(e.message.contains("(line 1)"), "{e}");
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("just text").is_err());
        assert!(
            parse("a..b: 1\n")
                .unwrap_err()
                .message
                .contains("empty part")
        );
    }
}
