//! The kube-rs transport from a kubeconfig file, as the conformance suite and the benchmark
//! make it.

use leasehold_adapter_kube::{KubeTransport, client, transport};
use std::path::Path;
use std::time::Duration;

/// The transport for `kubeconfig`'s context and namespace, each request bounded by `timeout`.
pub async fn connect(kubeconfig: &Path, timeout: Duration) -> KubeTransport {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connected = client(Some(kubeconfig), None)
        .await
        .expect("kube-rs accepts the kubeconfig");
    transport(&connected, &connected.namespace, timeout)
}
