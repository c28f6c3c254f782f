//! Runs the sim until Ctrl-C, writing a kubeconfig: `cargo run -p leasehold-fake-apiserver --example serve -- PATH`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig".into());
    let sim = leasehold_fake_apiserver::Sim::start(leasehold_fake_apiserver::SimConfig::default())
        .await?;
    std::fs::write(
        &path,
        sim.kubeconfig("admin", "default").expect("admin user"),
    )?;
    println!(
        "leasehold-fake-apiserver (a simulated API server for tests and demos) on {}; kubeconfig: {path}",
        sim.url()
    );
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
