//! What only the HTTP transport does, against the fake API server over HTTPS: token rotation,
//! TLS verification and its opt-out, labels kept through a write, client certificates.

use leasehold_adapter_http::kubeconfig::{Cluster, Credentials};
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_conformance as conformance;
use leasehold_conformance::{record, request};
use leasehold_core::{ApiError, Operation};
use leasehold_fake_apiserver::{Sim, SimConfig};
use leasehold_runtime::{Cause, Transport};
use std::time::Duration;

async fn sim() -> Sim {
    conformance::start_sim(SimConfig::default()).await
}

fn cluster(sim: &Sim, credentials: Credentials) -> Cluster {
    Cluster {
        server: sim.url(),
        ca_pem: sim.ca_pem().map(|p| p.as_bytes().to_vec()),
        insecure_skip_tls_verify: false,
        credentials,
        namespace: None,
        source: "test".into(),
    }
}

fn transport(cluster: Cluster, rate_limit: Option<(f64, u32)>) -> HttpTransport {
    leasehold_adapter_http::connect(&HttpConfig {
        cluster,
        namespace: "default".into(),
        request_timeout: Duration::from_secs(5),
        rate_limit,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_is_read_again() {
    let sim = sim().await;
    let path = std::env::temp_dir().join(format!("leasehold-token-{}", std::process::id()));
    std::fs::write(&path, "stale-token\n").unwrap();
    let t = transport(cluster(&sim, Credentials::TokenFile(path.clone())), None);
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Unauthorized)
    );
    // Rotation writes a new file; a different length also changes what a coarse mtime misses.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, "admin-token\n").unwrap();
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::NotFound)
    );
    std::fs::remove_file(&path).ok();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_unless_the_kubeconfig_says_otherwise() {
    let sim = sim().await;
    let mut untrusted = cluster(&sim, Credentials::Token("admin-token".into()));
    untrusted.ca_pem = None;
    let failed = transport(untrusted.clone(), None)
        .call(request("l", Operation::Get))
        .await
        .expect_err("the public roots do not know the sim's CA");
    assert_eq!(failed.cause, Some(Cause::UnknownCa));
    untrusted.insecure_skip_tls_verify = true;
    assert_eq!(
        transport(untrusted, None)
            .call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::NotFound)
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_keeps_labels_it_did_not_set() {
    let sim = sim().await;
    let t = transport(
        cluster(&sim, Credentials::Token("admin-token".into())),
        None,
    );
    let created = t
        .call(request("labelled", Operation::Create(record("a"))))
        .await
        .unwrap();
    // Someone else labels the lease; our next write (after a read) must keep the label.
    let client_rv = created.resource_version.clone();
    let http = reqwest_patch(&sim).await;
    assert_eq!(http, 200);
    let read = t.call(request("labelled", Operation::Get)).await.unwrap();
    assert_ne!(read.resource_version, client_rv);
    t.call(request(
        "labelled",
        Operation::Update {
            resource_version: read.resource_version,
            record: record("b"),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        sim.lease("default", "labelled").unwrap()["metadata"]["labels"]["team"],
        "edge"
    );
    sim.stop().await;
}

/// Another client (kubectl, say) adds a label with a full update.
async fn reqwest_patch(sim: &Sim) -> u16 {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut stored = sim.lease("default", "labelled").unwrap();
    stored["metadata"]["labels"] = serde_json::json!({"team": "edge"});
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(sim.ca_pem().unwrap().as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    client
        .put(format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/default/leases/labelled",
            sim.url()
        ))
        .bearer_auth("admin-token")
        .header("content-type", "application/json")
        .body(stored.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_client_certificate_kubeconfig_builds_a_transport() {
    use base64::Engine;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["agent".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let config = format!(
        "clusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1'}}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        b64(cert.pem()),
        b64(key.serialize_pem())
    );
    let path = std::env::temp_dir().join(format!("leasehold-client-cert-{}", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let cluster = leasehold_adapter_http::kubeconfig::from_kubeconfig(&[path], None).unwrap();
    assert!(matches!(
        cluster.credentials,
        Credentials::ClientCertificate { .. }
    ));
    assert!(
        !format!("{:?}", cluster.credentials).contains("PRIVATE"),
        "the key never shows in Debug"
    );
    let built = leasehold_adapter_http::connect(&HttpConfig {
        cluster: cluster.clone(),
        namespace: "d".into(),
        request_timeout: Duration::from_secs(1),
        rate_limit: None,
    });
    assert!(built.is_ok(), "{:?}", built.err());
    let mut broken = cluster;
    broken.credentials = Credentials::ClientCertificate {
        cert_pem: b"not pem".to_vec(),
        key_pem: b"not pem".to_vec(),
    };
    let err = leasehold_adapter_http::connect(&HttpConfig {
        cluster: broken,
        namespace: "d".into(),
        request_timeout: Duration::from_secs(1),
        rate_limit: None,
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with("client-certificate/client-key"),
        "{err}"
    );
}
