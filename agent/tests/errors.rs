//! What a user reads when the cluster cannot be reached or refuses: the cause (a refused port,
//! a certificate the cluster's CA did not sign) or the API server's own words, through the real
//! binary and both transports.

mod support;

use support::World;

/// `admin`'s kubeconfig with `from` replaced by `to`, written next to it.
fn edited(w: &World, name: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&w.admin).unwrap();
    assert!(text.contains(from), "{from} is in the kubeconfig");
    let path = w.path(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

fn stderr_of(w: &World, kubeconfig: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = w.run_as(kubeconfig, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_against_a_dead_port_names_the_refused_address() {
    let w = World::start("errors-refused").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dead = edited(
        &w,
        "dead",
        &w.sim.url(),
        &format!("https://127.0.0.1:{port}"),
    );
    for transport in ["http", "kube"] {
        let (code, stderr) = stderr_of(&w, &dead, &["--transport", transport, "get", "leases"]);
        assert_eq!(code, Some(1), "{transport}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot list leases: connection refused at 127.0.0.1:{port}: nothing listens \
                 there; check the server URL and that the API server is up"
            )),
            "{transport}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_clusters_ca_did_not_sign_is_named_as_such() {
    let w = World::start("errors-ca").await;
    let other = World::start("errors-ca-other").await;
    let ca = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
            .unwrap()
            .to_owned()
    };
    let wrong = edited(&w, "wrong-ca", &ca(&w.admin), &ca(&other.admin));
    for transport in ["http", "kube"] {
        let (code, stderr) = stderr_of(&w, &wrong, &["--transport", transport, "get", "leases"]);
        assert_eq!(code, Some(1), "{transport}: {stderr}");
        assert!(
            stderr.contains(
                "cannot list leases: TLS: the API server's certificate is not signed by the \
                 cluster's CA (unknown issuer): check certificate-authority(-data) in the \
                 kubeconfig"
            ),
            "{transport}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_list_everywhere_prints_the_servers_words_and_a_cluster_role() {
    let w = World::start("errors-403").await;
    // The elector's Role grants its lease in `default` only.
    let (code, stderr) = stderr_of(&w, &w.elector, &["get", "leases", "-A"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "permission denied: list leases: 403 Forbidden: leases.coordination.k8s.io is \
             forbidden: User \"elector\" cannot list resource \"leases\" in API group \
             \"coordination.k8s.io\" at the cluster scope"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kind: ClusterRole\n") && stderr.contains("kind: ClusterRoleBinding\n"),
        "{stderr}"
    );
    assert!(stderr.contains("  verbs: [\"list\"]\n"), "{stderr}");
}
