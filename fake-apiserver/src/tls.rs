//! A generated certificate authority and server certificate for loopback, and the kubeconfig
//! that trusts them.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// The CA and the server's TLS configuration.
pub struct Tls {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// The server configuration (HTTP/1.1 over TLS 1.2/1.3).
    pub config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Generates a CA and a certificate for `localhost`, `127.0.0.1` and `::1` signed by it.
    pub fn generate() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "leasehold-fake-apiserver CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "leasehold-fake-apiserver");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec()), ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            config: Arc::new(config),
        })
    }
}

/// A kubeconfig for `server` as `user` with `token`, trusting `ca_pem` (or plain HTTP when
/// `None`), with `namespace` as the context's default.
pub fn kubeconfig(
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
    namespace: &str,
) -> String {
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: leasehold-fake-apiserver\n  cluster:\n    server: {server}\n{ca}\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: leasehold-fake-apiserver\n  context:\n    cluster: leasehold-fake-apiserver\n    user: {user}\n    namespace: {namespace}\n\
         current-context: leasehold-fake-apiserver\n"
    )
}
