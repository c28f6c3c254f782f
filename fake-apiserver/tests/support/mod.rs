//! Helpers shared by the sim's tests: a started sim with the fixture users, and an HTTPS client
//! that trusts its CA.

use leasehold_fake_apiserver::{Rule, Sim, SimConfig, User};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN: &str = "admin-token";
pub const READONLY: &str = "readonly-token";
pub const LIMITED: &str = "limited-token";

/// The users the fixtures were recorded with: admin, a read-only user on leases in `fixtures`,
/// and a user with lease access only.
pub fn users() -> Vec<User> {
    vec![
        User::admin("admin", ADMIN),
        User::with_rules(
            "lease-readonly",
            READONLY,
            vec![Rule::new(
                &["get", "list", "watch"],
                &["leases"],
                &["fixtures"],
                &[],
            )],
        ),
        User::with_rules(
            "lease-limited",
            LIMITED,
            vec![Rule::new(&["*"], &["leases"], &["fixtures"], &[])],
        ),
    ]
}

pub async fn start(config: SimConfig) -> Sim {
    Sim::start(SimConfig {
        users: users(),
        namespaces: vec!["default".into(), "fixtures".into()],
        bookmark_interval: Duration::from_millis(200),
        ..config
    })
    .await
    .expect("sim starts")
}

pub fn client(sim: &Sim) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(20));
    if let Some(pem) = sim.ca_pem() {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).expect("CA parses"))
            .expect("CA added");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth();
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder.build().expect("client builds")
}
