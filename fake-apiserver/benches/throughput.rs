//! Lease updates per second the sim serves on one core: the server runs on a single-threaded
//! runtime in its own thread, the load (64 clients, each renewing its own lease with the
//! resourceVersion from its last answer) on another. Prints a table; each figure is the median
//! of 5 runs of 3 s with the spread.
//!
//! `cargo bench -p leasehold-fake-apiserver --bench throughput`

use leasehold_fake_apiserver::{Sim, SimConfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(3);
const RUNS: usize = 5;

fn client(sim_ca: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS);
    if let Some(pem) = sim_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder.build().unwrap()
}

/// One run: updates per second.
async fn run(url: &str, token: &str, ca: Option<&str>, round: usize) -> f64 {
    let client = client(ca);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (client, done, url, token) = (client.clone(), done.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let name = format!("bench-{round}-{i}");
                let mut body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                    "spec": {"holderIdentity": format!("client-{i}"), "leaseDurationSeconds": 15}});
                let created: Value = client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap().json().await.unwrap();
                let mut rv = created["metadata"]["resourceVersion"].clone();
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    n += 1;
                    body["metadata"]["resourceVersion"] = rv;
                    body["spec"]["renewTime"] = json!(format!("2026-11-22T05:00:00.{:06}Z", n % 1_000_000));
                    let r = client.put(format!("{url}/{name}")).bearer_auth(&token).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let stored: Value = r.json().await.unwrap();
                    rv = stored["metadata"]["resourceVersion"].clone();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn measure(tls: bool) -> Vec<f64> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sim = Sim::start(SimConfig {
                tls,
                ..SimConfig::default()
            })
            .await
            .unwrap();
            tx.send((
                sim.url(),
                sim.token("admin").unwrap().to_owned(),
                sim.ca_pem().map(str::to_owned),
            ))
            .unwrap();
            let _ = stop_rx.await;
            sim.stop().await;
        });
    });
    let (url, token, ca) = rx.recv().unwrap();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let leases = format!("{url}/apis/coordination.k8s.io/v1/namespaces/default/leases");
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|round| load.block_on(run(&leases, &token, ca.as_deref(), round)))
        .collect();
    let _ = stop_tx.send(());
    server.join().unwrap();
    rates.sort_by(f64::total_cmp);
    rates
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "| transport | updates/s (median of {RUNS} × {}s) | min – max |",
        RUN.as_secs()
    );
    println!("|---|---|---|");
    for (label, tls) in [("HTTPS", true), ("HTTP", false)] {
        let rates = measure(tls);
        println!(
            "| {label} | {:.0} | {:.0} – {:.0} |",
            rates[RUNS / 2],
            rates[0],
            rates[RUNS - 1]
        );
    }
}
