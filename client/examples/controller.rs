//! A kube-rs controller that reconciles only while it leads: run several copies, and exactly one
//! reconciles at a time; stop the leader (Ctrl-C) and another takes over in milliseconds.
//!
//! It reconciles the Leases of its namespace (every cluster has them, so the example needs no
//! CRD), logging each one with the term's epoch.
//!
//! `cargo run -p leasehold-client --example controller -- [KUBECONFIG] [--for SECONDS]`
//!
//! Without a kubeconfig it finds the cluster as kube-rs does (`KUBECONFIG`, `~/.kube/config`,
//! in-cluster). `--for` stops it after that long, and it then exits 0 only if it reconciled.

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::{Controller, controller::Action, watcher};
use leasehold_client::ElectionBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the reconciler shares: the term it runs in, and how many objects it reconciled.
struct Context {
    epoch: u32,
    reconciled: Arc<AtomicU64>,
}

async fn reconcile(lease: Arc<Lease>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    println!(
        "term {}: reconciled lease {} (holder {holder:?})",
        ctx.epoch,
        lease.metadata.name.as_deref().unwrap_or("?")
    );
    ctx.reconciled.fetch_add(1, Ordering::Relaxed);
    Ok(Action::requeue(Duration::from_secs(60)))
}

fn error_policy(_: Arc<Lease>, error: &kube::Error, _: Arc<Context>) -> Action {
    eprintln!("reconcile failed: {error}");
    Action::requeue(Duration::from_secs(5))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run_for = match args.iter().position(|a| a == "--for") {
        Some(i) => Some(Duration::from_secs(
            args.get(i + 1)
                .ok_or("--for needs a number of seconds")?
                .parse()?,
        )),
        None => None,
    };
    let kubeconfig = args.first().filter(|a| !a.starts_with("--"));
    let connected =
        leasehold_adapter_kube::client(kubeconfig.map(std::path::Path::new), None).await?;
    let election = ElectionBuilder::new("example-controller")
        .start_kube(connected.client.clone(), &connected.namespace)?;
    let reconciled = Arc::new(AtomicU64::new(0));
    let leases = Api::<Lease>::namespaced(connected.client.clone(), &connected.namespace);
    let leading = election.run_while_leading(|term| {
        let (leases, reconciled) = (leases.clone(), reconciled.clone());
        async move {
            println!("leading, term {}: reconciling", term.epoch());
            let context = Arc::new(Context {
                epoch: term.epoch(),
                reconciled,
            });
            let controller = Controller::new(leases, watcher::Config::default())
                .run(reconcile, error_policy, context)
                .for_each(|_| async {});
            tokio::select! {
                () = controller => {}
                () = term.cancelled() => println!("term {} ends: stopped reconciling", term.epoch()),
            }
        }
    });
    let stop = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        () = leading => {}
        () = stop => {}
    }
    election.shutdown().await;
    println!("released the lease");
    let count = reconciled.load(Ordering::Relaxed);
    if run_for.is_some() && count == 0 {
        return Err("nothing was reconciled".into());
    }
    Ok(())
}
