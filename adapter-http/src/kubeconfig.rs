//! Finding the cluster the way kubectl and client-go do: `--kubeconfig`, then `KUBECONFIG`
//! (several files merged, the first to define a name wins), then `~/.kube/config`, then the
//! in-cluster service account.

use base64::Engine;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the in-cluster service account's files are.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (a proxy, or client certificates only).
    None,
    /// A bearer token.
    Token(String),
    /// A bearer token read from this file, re-read as it rotates (in-cluster, `tokenFile`).
    TokenFile(PathBuf),
    /// A client certificate and key, PEM.
    ClientCertificate {
        /// The certificate chain.
        cert_pem: Vec<u8>,
        /// The private key.
        key_pem: Vec<u8>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::TokenFile(p) => write!(f, "TokenFile({})", p.display()),
            Self::ClientCertificate { .. } => f.write_str("ClientCertificate(<redacted>)"),
        }
    }
}

/// A resolved cluster: where, whom to trust, who we are, and the default namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// The CA to verify the server against (PEM); `None`: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify`: TLS without verifying the server. Warned about.
    pub insecure_skip_tls_verify: bool,
    /// Credentials.
    pub credentials: Credentials,
    /// The context's namespace (in-cluster: the pod's).
    pub namespace: Option<String>,
    /// Where this came from, for messages.
    pub source: String,
}

/// Why no cluster could be resolved. Each message names the file and field and says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No kubeconfig found and not running in a cluster.
    NotFound,
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A kubeconfig is not valid YAML of the expected shape.
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        error: String,
    },
    /// A name refers to nothing, or a field is missing or wrong.
    Invalid {
        /// Where.
        source: String,
        /// What.
        problem: String,
    },
    /// The user authenticates with an exec plugin or auth provider.
    Unsupported {
        /// Where.
        source: String,
        /// Which mechanism.
        mechanism: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => write!(
                f,
                "no kubeconfig found (--kubeconfig, KUBECONFIG, ~/.kube/config) and not running in a cluster \
                 (KUBERNETES_SERVICE_HOST is unset): pass --kubeconfig PATH"
            ),
            Self::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Self::Parse { path, error } => {
                write!(f, "{} is not a valid kubeconfig: {error}", path.display())
            }
            Self::Invalid { source, problem } => write!(f, "{source}: {problem}"),
            Self::Unsupported { source, mechanism } => write!(
                f,
                "{source}: the user authenticates with {mechanism}, which the small HTTP transport does not \
                 support: use the kube transport (the default build), or a token or client certificate"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    exec: Option<serde::de::IgnoredAny>,
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

/// Entries remember the directory of the file that defined them: relative paths resolve there.
struct Merged {
    clusters: Vec<(String, ClusterEntry, PathBuf, PathBuf)>,
    users: Vec<(String, UserEntry, PathBuf, PathBuf)>,
    contexts: Vec<(String, ContextEntry, PathBuf)>,
    current_context: Option<(String, PathBuf)>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        error: e.to_string(),
    })
}

fn merge(paths: &[PathBuf]) -> Result<Merged, ConfigError> {
    let mut files = Vec::new();
    for path in paths {
        files.push((read(path)?, path.clone()));
    }
    merge_texts(&files)
}

fn merge_texts(files: &[(String, PathBuf)]) -> Result<Merged, ConfigError> {
    let mut m = Merged {
        clusters: Vec::new(),
        users: Vec::new(),
        contexts: Vec::new(),
        current_context: None,
    };
    for (text, path) in files {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                error: e.to_string(),
            })?
        };
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        for c in file.clusters {
            if !m.clusters.iter().any(|(n, ..)| *n == c.name) {
                m.clusters
                    .push((c.name, c.value, dir.clone(), path.clone()));
            }
        }
        for u in file.users {
            if !m.users.iter().any(|(n, ..)| *n == u.name) {
                m.users.push((u.name, u.value, dir.clone(), path.clone()));
            }
        }
        for c in file.contexts {
            if !m.contexts.iter().any(|(n, ..)| *n == c.name) {
                m.contexts.push((c.name, c.value, path.clone()));
            }
        }
        if m.current_context.is_none() {
            m.current_context = file
                .current_context
                .filter(|c| !c.is_empty())
                .map(|c| (c, path.clone()));
        }
    }
    Ok(m)
}

fn data(source: &str, field: &str, b64: &str) -> Result<Vec<u8>, ConfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| ConfigError::Invalid {
            source: source.to_owned(),
            problem: format!("{field} is not base64: {e}"),
        })
}

fn file_or_data(
    source: &str,
    dir: &Path,
    file_field: &str,
    file: &Option<String>,
    data_field: &str,
    inline: &Option<String>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    if let Some(d) = inline {
        return data(source, data_field, d).map(Some);
    }
    match file {
        Some(f) => {
            let path = dir.join(f);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| ConfigError::Invalid {
                    source: source.to_owned(),
                    problem: format!("{file_field} {}: {e}", path.display()),
                })
        }
        None => Ok(None),
    }
}

/// Resolves a kubeconfig from `paths` (merged in order) and `context` (or the current one).
pub fn from_kubeconfig(paths: &[PathBuf], context: Option<&str>) -> Result<Cluster, ConfigError> {
    let files = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    resolve_merged(merge(paths)?, files, context)
}

/// Resolves kubeconfig text as if read from `path` (relative file references resolve beside
/// it). For embedders that hold the configuration in memory, and for fuzzing the parser.
pub fn from_text(text: &str, path: &Path, context: Option<&str>) -> Result<Cluster, ConfigError> {
    let merged = merge_texts(&[(text.to_owned(), path.to_owned())])?;
    resolve_merged(merged, path.display().to_string(), context)
}

fn resolve_merged(m: Merged, files: String, context: Option<&str>) -> Result<Cluster, ConfigError> {
    let (context_name, source) = match (context, &m.current_context) {
        (Some(c), _) => (c.to_owned(), files.clone()),
        (None, Some((c, path))) => (c.clone(), path.display().to_string()),
        (None, None) => {
            return Err(ConfigError::Invalid {
                source: files,
                problem: "current-context is not set: pass --context NAME or set current-context"
                    .into(),
            });
        }
    };
    let (_, ctx, _) = m
        .contexts
        .iter()
        .find(|(n, ..)| *n == context_name)
        .ok_or_else(|| ConfigError::Invalid {
            source: source.clone(),
            problem: format!("context {context_name:?} is not defined in contexts"),
        })?;
    let cluster_name = ctx.cluster.clone().unwrap_or_default();
    let (_, cluster, dir, cluster_file) = m.clusters.iter().find(|(n, ..)| *n == cluster_name).ok_or_else(|| ConfigError::Invalid {
        source: source.clone(),
        problem: format!("context {context_name:?} names cluster {cluster_name:?}, which is not defined in clusters"),
    })?;
    let cluster_source = cluster_file.display().to_string();
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConfigError::Invalid {
            source: cluster_source.clone(),
            problem: format!(
                "cluster {cluster_name:?} has no server: set clusters[].cluster.server"
            ),
        })?;
    let ca_pem = file_or_data(
        &cluster_source,
        dir,
        "certificate-authority",
        &cluster.certificate_authority,
        "certificate-authority-data",
        &cluster.certificate_authority_data,
    )?;
    let credentials = match &ctx.user {
        None => Credentials::None,
        Some(user_name) => {
            let (_, user, dir, user_file) = m.users.iter().find(|(n, ..)| n == user_name).ok_or_else(|| ConfigError::Invalid {
                source: source.clone(),
                problem: format!("context {context_name:?} names user {user_name:?}, which is not defined in users"),
            })?;
            let user_source = user_file.display().to_string();
            if user.exec.is_some() {
                return Err(ConfigError::Unsupported {
                    source: user_source,
                    mechanism: "an exec credential plugin",
                });
            }
            if user.auth_provider.is_some() {
                return Err(ConfigError::Unsupported {
                    source: user_source,
                    mechanism: "an auth-provider",
                });
            }
            let cert = file_or_data(
                &user_source,
                dir,
                "client-certificate",
                &user.client_certificate,
                "client-certificate-data",
                &user.client_certificate_data,
            )?;
            let key = file_or_data(
                &user_source,
                dir,
                "client-key",
                &user.client_key,
                "client-key-data",
                &user.client_key_data,
            )?;
            match (&user.token, &user.token_file, cert, key) {
                (Some(t), ..) if !t.is_empty() => Credentials::Token(t.clone()),
                (_, Some(f), ..) => Credentials::TokenFile(dir.join(f)),
                (_, _, Some(cert_pem), Some(key_pem)) => {
                    Credentials::ClientCertificate { cert_pem, key_pem }
                }
                (_, _, Some(_), None) | (_, _, None, Some(_)) => {
                    return Err(ConfigError::Invalid {
                        source: user_source,
                        problem: format!(
                            "user {user_name:?} has a client certificate without its key, or a key without its certificate"
                        ),
                    });
                }
                _ => Credentials::None,
            }
        }
    };
    Ok(Cluster {
        server,
        ca_pem,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        credentials,
        namespace: ctx.namespace.clone().filter(|n| !n.is_empty()),
        source,
    })
}

/// The in-cluster configuration from `host`, `port` and the service-account directory.
pub fn in_cluster(host: &str, port: &str, dir: &Path) -> Result<Cluster, ConfigError> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let ca_path = dir.join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|e| ConfigError::Read {
        path: ca_path,
        error: e.to_string(),
    })?;
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    Ok(Cluster {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        insecure_skip_tls_verify: false,
        credentials: Credentials::TokenFile(dir.join("token")),
        namespace,
        source: "in-cluster service account".into(),
    })
}

/// Resolves like kubectl: `explicit` (a `--kubeconfig` flag), then `KUBECONFIG`, then
/// `~/.kube/config`, then in-cluster.
pub fn resolve(explicit: Option<&Path>, context: Option<&str>) -> Result<Cluster, ConfigError> {
    if let Some(path) = explicit {
        return from_kubeconfig(&[path.to_owned()], context);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| p.exists())
            .collect();
        if !paths.is_empty() {
            return from_kubeconfig(&paths, context);
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".kube").join("config");
        if path.exists() {
            return from_kubeconfig(&[path], context);
        }
    }
    match (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) {
        (Ok(host), Ok(port)) if !host.is_empty() => {
            in_cluster(&host, &port, Path::new(SERVICE_ACCOUNT_DIR))
        }
        _ => Err(ConfigError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "leasehold-kubeconfig-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const BASE: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0EK\n\
users:\n- name: u\n  user:\n    token: secret\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: team\ncurrent-context: ctx\n";

    #[test]
    fn a_token_kubeconfig_resolves_with_its_namespace() {
        let d = dir("token");
        std::fs::write(d.join("config"), BASE).unwrap();
        let c = from_kubeconfig(&[d.join("config")], None).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA\n"[..]));
        assert_eq!(c.credentials, Credentials::Token("secret".into()));
        assert_eq!(c.namespace.as_deref(), Some("team"));
        assert!(
            !format!("{c:?}").contains("secret"),
            "the token never shows in Debug"
        );
    }

    #[test]
    fn merged_files_take_the_first_definition_and_resolve_relative_paths() {
        let (a, b) = (dir("merge-a"), dir("merge-b"));
        std::fs::write(a.join("config"), "current-context: other\ncontexts:\n- name: other\n  context: {cluster: c2, user: u2}\n").unwrap();
        std::fs::write(b.join("config"), "clusters:\n- name: c2\n  cluster: {server: 'https://b:1', certificate-authority: ca.pem, insecure-skip-tls-verify: true}\nusers:\n- name: u2\n  user: {tokenFile: tok}\n- name: u2\n  user: {token: later}\n").unwrap();
        std::fs::write(b.join("ca.pem"), "CA2").unwrap();
        let c = from_kubeconfig(&[a.join("config"), b.join("config")], None).unwrap();
        assert_eq!(c.server, "https://b:1");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA2"[..]));
        assert!(c.insecure_skip_tls_verify);
        assert_eq!(c.credentials, Credentials::TokenFile(b.join("tok")));
    }

    #[test]
    fn exec_plugins_are_a_clear_error() {
        let d = dir("exec");
        std::fs::write(d.join("config"), BASE.replace("    token: secret\n", "    exec:\n      command: aws\n      apiVersion: client.authentication.k8s.io/v1\n")).unwrap();
        let e = from_kubeconfig(&[d.join("config")], None).unwrap_err();
        assert!(
            e.to_string().contains("exec credential plugin")
                && e.to_string().contains("use the kube transport"),
            "{e}"
        );
    }

    #[test]
    fn missing_names_and_bad_yaml_name_the_problem() {
        let d = dir("bad");
        std::fs::write(
            d.join("config"),
            BASE.replace("cluster: c\n", "cluster: nope\n"),
        )
        .unwrap();
        let e = from_kubeconfig(&[d.join("config")], None).unwrap_err();
        assert!(
            e.to_string()
                .contains("cluster \"nope\", which is not defined in clusters"),
            "{e}"
        );
        let e = from_kubeconfig(&[d.join("config")], Some("absent")).unwrap_err();
        assert!(
            e.to_string().contains("context \"absent\" is not defined"),
            "{e}"
        );
        std::fs::write(d.join("broken"), "clusters: [\n").unwrap();
        assert!(matches!(
            from_kubeconfig(&[d.join("broken")], None),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(
            d.join("nocert"),
            BASE.replace("    token: secret\n", "    client-certificate-data: Q0EK\n"),
        )
        .unwrap();
        assert!(
            from_kubeconfig(&[d.join("nocert")], None)
                .unwrap_err()
                .to_string()
                .contains("without its key")
        );
    }

    #[test]
    fn in_cluster_reads_the_service_account() {
        let d = dir("incluster");
        std::fs::write(d.join("ca.crt"), "CA").unwrap();
        std::fs::write(d.join("namespace"), "kube-system\n").unwrap();
        let c = in_cluster("10.0.0.1", "443", &d).unwrap();
        assert_eq!(c.server, "https://10.0.0.1:443");
        assert_eq!(c.namespace.as_deref(), Some("kube-system"));
        assert_eq!(c.credentials, Credentials::TokenFile(d.join("token")));
        assert_eq!(
            in_cluster("fd00::1", "443", &d).unwrap().server,
            "https://[fd00::1]:443"
        );
    }
}
