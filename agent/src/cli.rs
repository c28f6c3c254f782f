//! The command line: subcommands and flags. Flags override the config file (`--config`), which
//! overrides the defaults (client-go's 15 s / 10 s / 2 s).

use crate::duration;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Coordinate processes through Kubernetes Leases: leader election, lease pools, heartbeats.
#[derive(Debug, Parser)]
#[command(
    name = "leasehold",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// YAML config file with Elastic's and Sysdig's keys (see README); flags override it.
    #[arg(long, global = true, env = "LEASEHOLD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Which transport talks to the API server (default: kube when built in, else http).
    #[arg(long, global = true, value_enum)]
    pub transport: Option<TransportKind>,
    /// Client-side rate limit, requests per second (client-go: 5).
    #[arg(long, global = true)]
    pub qps: Option<f64>,
    /// Client-side burst above --qps (client-go: 10).
    #[arg(long, global = true)]
    pub burst: Option<u32>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Least severe level logged: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info", env = "LEASEHOLD_LOG")]
    pub log_level: tracing::Level,
}

/// The transports the agent can be built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// kube-rs (`kube`, `k8s-openapi`): supports every kubeconfig auth method, exec plugins too.
    Kube,
    /// The raw REST client (reqwest + rustls): the smallest static binary.
    Http,
}

impl TransportKind {
    /// The name `--transport` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kube => "kube",
            Self::Http => "http",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Leader election on one Lease; optionally runs COMMAND only while leading.
    Elect(ElectArgs),
    /// k-of-n leases PREFIX-0..N-1: throttle a cold start, or hold one of N delegations.
    Pool(PoolArgs),
    /// Renew a node-style lease on an interval, or report leases that stopped being renewed.
    Heartbeat(HeartbeatArgs),
    /// Publish and renew this instance's identity lease (the API server identity pattern).
    Identity(IdentityArgs),
    /// Delete leases matching a selector that expired long ago, each guarded by its
    /// resourceVersion.
    Gc(GcArgs),
    /// Show leases like `kubectl get leases`, with EXPIRES and TRANSITIONS.
    Get(GetArgs),
    /// Run the fake API server (a test server for Leases, not Kubernetes; builds with the
    /// `demo` feature).
    Sim(SimArgs),
    /// Run the demo against the built-in fake API server: no cluster needed (builds with the
    /// `demo` feature).
    Demo,
    /// The fence around a child command (started by the agent itself, not by users).
    #[command(name = "__fence", hide = true)]
    Fence(FenceArgs),
}

/// Lease timing flags, each overriding the config file.
#[derive(Debug, Args, Default)]
pub struct TimingArgs {
    /// How long a lease is valid after its last renew (`leaseDurationSeconds`; default 15s).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub lease_duration: Option<Duration>,
    /// A leader that has not renewed within this steps down (default 10s).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub renew_deadline: Option<Duration>,
    /// Wait between attempts (default 2s).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub retry_period: Option<Duration>,
    /// Poll the lease on client-go's schedule instead of watching it.
    #[arg(long)]
    pub poll: bool,
}

/// Where and as whom.
#[derive(Debug, Args, Default)]
pub struct PlaceArgs {
    /// Namespace of the leases (default: POD_NAMESPACE, the service account's, the context's).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// `holderIdentity` (default: POD_NAME; else, for elect and pool, the hostname plus "_" and
    /// a random suffix, new at each start; for heartbeat and identity, the hostname).
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
}

/// How the agent shows what the lease decided.
#[derive(Debug, Args, Default)]
pub struct OutputArgs {
    /// File rewritten atomically on every change and renew: leader=, holder=, identity=, epoch=,
    /// lease=, since=, valid_until=, remaining_seconds= (past valid_until it means not leading).
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// Serve /leader, /healthz, /readyz and /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// How a child command is run and stopped.
#[derive(Debug, Args, Default)]
pub struct ChildArgs {
    /// After SIGTERM, wait this long before SIGKILL. The child is stopped by the renew deadline:
    /// SIGTERM comes this long before it, SIGKILL at it. Default: the smaller of 3s and
    /// (renew-deadline − retry-period) / 2; it must be shorter than renew-deadline − retry-period.
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub grace_period: Option<Duration>,
    /// When the child exits while leading: release the lease and exit with its code, or release
    /// and campaign again.
    #[arg(long, value_enum, default_value_t = OnChildExit::Exit)]
    pub on_child_exit: OnChildExit,
}

/// What to do when the child exits on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnChildExit {
    /// Release the lease and exit with the child's code.
    #[default]
    Exit,
    /// Release the lease, then campaign again (the child runs again when re-elected).
    Release,
}

/// `leasehold elect`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// The Lease to elect on (config: providers.kubernetes_leaderelection.leader_lease).
    #[arg(long, value_name = "NAME")]
    pub lease: Option<String>,
    /// Where and as whom.
    #[command(flatten)]
    pub place: PlaceArgs,
    /// Timing.
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Outputs.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Child process options.
    #[command(flatten)]
    pub child: ChildArgs,
    /// Exit (code 1) on losing leadership instead of campaigning again, as client-go does.
    #[arg(long)]
    pub exit_on_loss: bool,
    /// Run this only while leading, with LEASEHOLD_EPOCH, LEASEHOLD_LEASE, LEASEHOLD_IDENTITY.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `leasehold pool`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["release_after", "hold"]))]
pub struct PoolArgs {
    /// Leases are PREFIX-0..N-1 (default: cold-start with --release-after, delegation with --hold).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// N, how many may hold a slot at once (config: k8s_coldstart.max_parallel_cold_start,
    /// default 10; k8s_delegated_nodes, default 2).
    #[arg(long, value_name = "N")]
    pub size: Option<usize>,
    /// Where and as whom.
    #[command(flatten)]
    pub place: PlaceArgs,
    /// Timing.
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Cold start: take a slot, run COMMAND, release when it exits, exit with its code. Takes
    /// every argument after it, so put it last.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "COMMAND")]
    pub release_after: Option<Vec<String>>,
    /// Delegation: keep the slot until terminated (and run `-- COMMAND` while holding it).
    #[arg(long)]
    pub hold: bool,
    /// Refuse to run unthrottled when leases cannot be used (403, or no Lease API); config:
    /// enforce_leader_election.
    #[arg(long)]
    pub enforce: bool,
    /// Outputs.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Child process options (with --hold).
    #[command(flatten)]
    pub child: ChildArgs,
    /// With --hold: run this while holding a slot.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `leasehold heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// The lease to renew (default: the identity, like the kubelet's node name).
    #[arg(long, value_name = "NAME", conflicts_with = "watch")]
    pub name: Option<String>,
    /// Where and as whom.
    #[command(flatten)]
    pub place: PlaceArgs,
    /// `leaseDurationSeconds`; renewed every quarter of it.
    #[arg(long, value_parser = duration::parse, default_value = "40s", value_name = "DURATION")]
    pub lease_duration: Duration,
    /// Instead of renewing: report leases in the namespace not renewed within their duration.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: only leases matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// With --watch: how often to list the leases (default 5s; a lease that expires between two
    /// lists is listed again at its expiry).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub interval: Option<Duration>,
    /// Outputs.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `leasehold identity`.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The component (a DNS label): the lease is `COMPONENT-<hash of the hostname>` and carries
    /// the label `leasehold.io/component=COMPONENT`.
    #[arg(long, value_name = "NAME")]
    pub component: String,
    /// Where and as whom (the holder is `ID_<uuid>`, new at each start).
    #[command(flatten)]
    pub place: PlaceArgs,
    /// The host this instance runs on (default: the hostname; in a DaemonSet, the node name).
    /// Without --identity it is also the instance in the holder.
    #[arg(long, value_name = "HOST", env = "NODE_NAME")]
    pub hostname: Option<String>,
    /// `leaseDurationSeconds`.
    #[arg(long, value_parser = duration::parse, default_value = "3600s", value_name = "DURATION")]
    pub lease_duration: Duration,
    /// How often to renew.
    #[arg(long, value_parser = duration::parse, default_value = "10s", value_name = "DURATION")]
    pub renew_interval: Duration,
    /// More labels for the lease, `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Outputs.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `leasehold gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Namespace (default: as for the other subcommands).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only leases matching this label selector (required: gc never sweeps a whole namespace).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: String,
    /// Delete leases whose renewTime + leaseDurationSeconds is older than this.
    #[arg(long, value_parser = duration::parse, default_value = "1h", value_name = "DURATION")]
    pub expired_for: Duration,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `leasehold get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to get: `leases` (also `lease`, `leases.coordination.k8s.io`).
    #[arg(default_value = "leases", value_name = "RESOURCE")]
    pub resource: String,
    /// Namespace (default: as for the other subcommands).
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only leases matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Output format: a table (default), wide, json or yaml.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<GetOutput>,
}

/// `leasehold get -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    /// The table plus RENEWED, DURATION and ACQUIRED.
    Wide,
    /// The records as JSON.
    Json,
    /// The records as YAML.
    Yaml,
}

/// `leasehold __fence`: the process between the agent and its child command. It reads the
/// validity instant from its stdin (a socket to the agent) and stops the child's whole process
/// tree by it, even when the agent is paused or dead.
#[derive(Debug, Args)]
pub struct FenceArgs {
    /// Between SIGTERM and SIGKILL, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub grace_ms: u64,
    /// The first validity instant: absolute CLOCK_BOOTTIME, in microseconds.
    #[arg(long, value_name = "MICROS")]
    pub valid_until_us: u64,
    /// The child command.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `leasehold sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Write a kubeconfig for the admin user here (kubectl and leasehold use it).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub plain_http: bool,
    /// Namespaces to create besides `default` and `kube-node-lease`.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
}
