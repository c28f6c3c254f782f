//! `leasehold sim`: the simulated API server, for tests and demos (not Kubernetes).

use crate::cli::SimArgs;
use crate::error::AgentError;
use crate::shutdown::Signals;
use leasehold_fake_apiserver::{Sim, SimConfig};

pub async fn run(args: SimArgs, signals: &mut Signals) -> Result<i32, AgentError> {
    let mut config = SimConfig {
        listen: args.listen,
        tls: !args.plain_http,
        ..SimConfig::default()
    };
    for ns in args.namespaces {
        if !config.namespaces.contains(&ns) {
            config.namespaces.push(ns);
        }
    }
    let sim = Sim::start(config).await.map_err(|e| {
        AgentError::usage(format!(
            "--listen {}: cannot start the sim: {e}",
            args.listen
        ))
    })?;
    println!(
        "leasehold sim: a simulated API server for Leases (for tests and demos, not Kubernetes) at {}",
        sim.url()
    );
    if let Some(path) = &args.kubeconfig_out {
        let text = sim.kubeconfig("admin", "default").unwrap_or_default();
        // Whole or not at all, as a script may read it as soon as it exists; its owner's alone,
        // as kubectl writes a kubeconfig, since it carries a token.
        crate::atomic_write::write(path, text, 0o600).map_err(|e| {
            AgentError::usage(format!(
                "--kubeconfig-out {}: cannot write it: {e}",
                path.display()
            ))
        })?;
        println!(
            "kubeconfig for its admin user: {p}\n  try: leasehold --kubeconfig {p} get leases\n       kubectl --kubeconfig {p} get leases",
            p = path.display()
        );
    }
    println!("Ctrl-C stops it.");
    signals.recv().await;
    sim.stop().await;
    Ok(0)
}
