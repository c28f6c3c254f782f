//! kubectl against the sim: `get leases -A`, `get lease X -o yaml`, `apply -f`, `delete`.
//! kubectl is installed on these machines; where it is not, the test says so and checks nothing.

mod support;

use leasehold_fake_apiserver::SimConfig;
use std::process::Command;

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_applies_and_deletes_leases() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: kubectl is not installed, so the kubectl compatibility test checks nothing"
        );
        return;
    }
    let sim = support::start(SimConfig::default()).await;
    let dir = std::env::temp_dir().join(format!(
        "leasehold-fake-apiserver-kubectl-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("admin", "default").unwrap()).unwrap();
    let manifest = dir.join("lease.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: from-kubectl\n  namespace: fixtures\n\
         spec:\n  holderIdentity: node-a\n  leaseDurationSeconds: 40\n  renewTime: \"2026-11-22T05:00:00.000000Z\"\n",
    )
    .unwrap();

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: bad\n  namespace: fixtures\nspec:\n  bogus: 1\n").unwrap();
    let kc = kubeconfig.clone();
    let m = manifest.clone();
    let results = tokio::task::spawn_blocking(move || {
        let apply = kubectl(&kc, &["apply", "-f", m.to_str().unwrap()]);
        let reapply = kubectl(&kc, &["apply", "-f", m.to_str().unwrap()]);
        let all = kubectl(&kc, &["get", "leases", "-A"]);
        let yaml = kubectl(
            &kc,
            &[
                "get",
                "lease",
                "from-kubectl",
                "-n",
                "fixtures",
                "-o",
                "yaml",
            ],
        );
        let delete = kubectl(&kc, &["delete", "lease", "from-kubectl", "-n", "fixtures"]);
        let strict = kubectl(&kc, &["apply", "-f", bad.to_str().unwrap()]);
        let gone = kubectl(&kc, &["get", "lease", "from-kubectl", "-n", "fixtures"]);
        (apply, reapply, all, yaml, delete, gone, strict)
    })
    .await
    .unwrap();
    let (apply, reapply, all, yaml, delete, gone, strict) = results;
    let audit = support::client(&sim)
        .get(format!("{}/_sim/counters", sim.url()))
        .bearer_auth(support::ADMIN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let count = |verb: &str| {
        audit["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[0][0] == verb && r[0][1] == "leases")
            .map(|r| r[1].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        count("create") >= 1 && count("delete") == 1,
        "kubectl's calls reached the lease API: {audit}"
    );
    assert!(
        !strict.0
            && strict
                .1
                .contains("strict decoding error: unknown field \"spec.bogus\""),
        "{}",
        strict.1
    );
    assert!(
        apply.0
            && apply
                .1
                .contains("lease.coordination.k8s.io/from-kubectl created"),
        "{}",
        apply.1
    );
    assert!(
        reapply.0 && reapply.1.contains("from-kubectl unchanged"),
        "{}",
        reapply.1
    );
    let header = all.1.lines().next().unwrap_or("");
    assert!(
        all.0
            && header
                .split_whitespace()
                .eq(["NAMESPACE", "NAME", "HOLDER", "AGE"]),
        "{}",
        all.1
    );
    assert!(
        all.1.lines().any(|l| l.split_whitespace().take(3).eq([
            "fixtures",
            "from-kubectl",
            "node-a"
        ])),
        "{}",
        all.1
    );
    assert!(
        yaml.0
            && yaml.1.contains("holderIdentity: node-a")
            && yaml.1.contains("leaseDurationSeconds: 40"),
        "{}",
        yaml.1
    );
    assert!(delete.0 && delete.1.contains("deleted"), "{}", delete.1);
    assert!(!gone.0 && gone.1.contains("NotFound"), "{}", gone.1);
    assert!(sim.lease("fixtures", "from-kubectl").is_none());
    std::fs::remove_dir_all(&dir).ok();
    sim.stop().await;
}
