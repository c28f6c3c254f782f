//! The HTTP transport from a kubeconfig file, as the conformance suite and the benchmark make
//! it.

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use std::path::Path;
use std::time::Duration;

/// The transport for `kubeconfig`'s context and namespace, each request bounded by `timeout`.
pub async fn connect(kubeconfig: &Path, timeout: Duration) -> HttpTransport {
    let cluster = from_kubeconfig(&[kubeconfig.to_owned()], None).expect("the kubeconfig resolves");
    let namespace = cluster
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    leasehold_adapter_http::connect(&HttpConfig {
        cluster,
        namespace,
        request_timeout: timeout,
        rate_limit: None,
    })
    .expect("transport")
}
