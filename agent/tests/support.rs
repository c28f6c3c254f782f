//! Runs the real `leasehold` binary against the simulated API server over HTTPS.

#![allow(dead_code)]

use leasehold_fake_apiserver::{Rule, Sim, SimConfig, User};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A sim with an admin and a user that may only read leases.
pub struct World {
    pub sim: Sim,
    pub dir: PathBuf,
    pub admin: PathBuf,
    pub reader: PathBuf,
    /// May create leases and get, watch and update the lease `controller` only.
    pub elector: PathBuf,
    /// May create, get, list and watch leases, but never update one: it can take a free lease
    /// and never renew it.
    pub no_update: PathBuf,
}

impl World {
    pub async fn start(name: &str) -> Self {
        let mut config = SimConfig::default();
        // Where the Sysdig agent's documented config puts its leases.
        config.namespaces.push("sysdig-agent".into());
        config.users.push(User::with_rules(
            "reader",
            "reader-token",
            vec![Rule::new(
                &["get", "list", "watch"],
                &["leases"],
                &["*"],
                &[],
            )],
        ));
        // Exactly what deploy/overlays/elect/rbac.yaml grants for the lease "controller".
        config.users.push(User::with_rules(
            "elector",
            "elector-token",
            vec![
                Rule::new(&["create"], &["leases"], &["default"], &[]),
                Rule::new(
                    &["get", "watch", "update"],
                    &["leases"],
                    &["default"],
                    &["controller"],
                ),
            ],
        ));
        config.users.push(User::with_rules(
            "no-update",
            "no-update-token",
            vec![Rule::new(
                &["create", "get", "list", "watch"],
                &["leases"],
                &["default"],
                &[],
            )],
        ));
        let sim = Sim::start(config).await.expect("sim starts");
        let dir = std::env::temp_dir().join(format!("leasehold-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let admin = dir.join("admin.kubeconfig");
        std::fs::write(&admin, sim.kubeconfig("admin", "default").unwrap()).unwrap();
        let reader = dir.join("reader.kubeconfig");
        std::fs::write(&reader, sim.kubeconfig("reader", "default").unwrap()).unwrap();
        let elector = dir.join("elector.kubeconfig");
        std::fs::write(&elector, sim.kubeconfig("elector", "default").unwrap()).unwrap();
        let no_update = dir.join("no-update.kubeconfig");
        std::fs::write(&no_update, sim.kubeconfig("no-update", "default").unwrap()).unwrap();
        Self {
            sim,
            dir,
            admin,
            reader,
            elector,
            no_update,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts `leasehold --kubeconfig <admin> ARGS…`, logs into `<dir>/<log>.log`.
    pub fn spawn(&self, log: &str, args: &[&str]) -> Agent {
        self.spawn_as(&self.admin, log, args)
    }

    pub fn spawn_as(&self, kubeconfig: &Path, log: &str, args: &[&str]) -> Agent {
        let log_path = self.path(&format!("{log}.log"));
        let out_path = self.path(&format!("{log}.out"));
        let child = command(kubeconfig, args)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("the binary starts");
        Agent {
            child,
            log: log_path,
            out: out_path,
        }
    }

    /// Runs `leasehold --kubeconfig <kubeconfig> ARGS…` to completion.
    pub fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
        command(kubeconfig, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("the binary runs")
    }

    pub fn lease(&self, name: &str) -> Option<serde_json::Value> {
        self.sim.lease("default", name)
    }

    /// Deletes the lease `name` through the API, as `kubectl delete lease` would.
    pub async fn delete_lease(&self, name: &str) {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(pem) = self.sim.ca_pem() {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).expect("CA parses"))
                .expect("CA added");
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
        let response = builder
            .build()
            .expect("client builds")
            .delete(format!(
                "{}/apis/coordination.k8s.io/v1/namespaces/default/leases/{name}",
                self.sim.url()
            ))
            .bearer_auth(self.sim.token("admin").expect("an admin token"))
            .send()
            .await
            .expect("the sim answers");
        assert_eq!(response.status().as_u16(), 200, "delete {name}");
    }

    pub fn holder(&self, name: &str) -> Option<String> {
        self.lease(name)?["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }
}

fn command(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env_remove("KUBECONFIG")
        .env_remove("LEASEHOLD_CONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// A running agent.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl Agent {
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    pub fn terminate(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    /// Waits for the exit, at most `within`.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "the agent did not exit within {within:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn out_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 5 ms until it holds; fails with `what` after `within`.
pub async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// The value of `key=` in a status file.
pub fn status(path: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// A GET on the agent's endpoint: status and body.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A free loopback port.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A shell script for a child command that records its work: every 50 ms it appends
/// `TAG NANOSECONDS` to `log`, where TAG names this very child (identity, epoch and pid), so the
/// log is the ground truth of which child worked when. `extra` runs first (in the same shell,
/// with `$T` the tag and `$LOG` the log): start escaping processes there.
pub fn worker(log: &Path, extra: &str) -> String {
    format!(
        "LOG='{log}'; T=\"$LEASEHOLD_IDENTITY/$LEASEHOLD_EPOCH/$$\"; export T LOG; {extra}\n\
         while :; do echo \"$T $(date +%s%N)\" >> \"$LOG\"; sleep 0.05; done",
        log = log.display()
    )
}

/// A loop like the worker's, as a script for `sh -c '…'` started from it: it appends under the
/// tag `$T+NAME` (`$T` inherited), and writes its pid to `NAME.pid` beside the log.
pub fn escapee(name: &str) -> String {
    format!(
        "echo $$ > \"$LOG.{name}.pid\"; while :; do echo \"$T+{name} $(date +%s%N)\" >> \"$LOG\"; sleep 0.05; done"
    )
}

/// One child's work in a worker log: its tag and its first and last write (ns since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub tag: String,
    pub first: u128,
    pub last: u128,
    pub writes: usize,
}

/// The intervals of a worker log, by first write. Lines of an escaped process (`TAG+NAME`) count
/// as their child's work.
pub fn intervals(log: &Path) -> Vec<Interval> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_tag: Vec<Interval> = Vec::new();
    for line in text.lines() {
        let Some((tag, at)) = line.split_once(' ') else {
            continue;
        };
        let Ok(at) = at.trim().parse::<u128>() else {
            continue;
        };
        let tag = tag.split('+').next().unwrap_or(tag).to_owned();
        match by_tag.iter_mut().find(|i| i.tag == tag) {
            Some(i) => {
                i.first = i.first.min(at);
                i.last = i.last.max(at);
                i.writes += 1;
            }
            None => by_tag.push(Interval {
                tag,
                first: at,
                last: at,
                writes: 1,
            }),
        }
    }
    by_tag.sort_by_key(|i| i.first);
    by_tag
}

/// Asserts that no two children of a worker log ever worked at the same time, and returns the
/// gaps between one child's last write and the next one's first.
pub fn assert_never_two_workers(log: &Path) -> Vec<Duration> {
    let all = intervals(log);
    all.windows(2)
        .map(|pair| {
            assert!(
                pair[0].last < pair[1].first,
                "two children worked at once: {} until {}, {} from {} ({} ms of overlap); all: {all:?}",
                pair[0].tag,
                pair[0].last,
                pair[1].tag,
                pair[1].first,
                (pair[0].last - pair[1].first) / 1_000_000
            );
            Duration::from_nanos((pair[1].first - pair[0].last) as u64)
        })
        .collect()
}

/// Whether a process with this pid runs: it exists and is not a zombie (a process killed after
/// its parent died is reaped by whatever adopted it, which is not always prompt).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Whether any process of the process group `pgid` runs (zombies aside).
pub fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .any(|(state, group)| group == pgid && state != 'Z')
}

/// The state and process group of `pid`, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// The pid a child wrote to `path`, once it has.
pub fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
