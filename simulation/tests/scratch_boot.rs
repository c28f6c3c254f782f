use leasehold_core::Duration;
use leasehold_simulation::cold_start::{ColdStart, run};

#[test]
fn scratch() {
    let ns: Vec<usize> = std::env::var("NS")
        .unwrap_or("100,1000".into())
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let lags: Vec<u64> = std::env::var("LAGS")
        .unwrap_or("1,5,15".into())
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    for &n in &ns {
        for &lag in &lags {
            let seeds: Vec<u64> = std::env::var("SEEDS")
                .unwrap_or("1,2".into())
                .split(",")
                .map(|x| x.parse().unwrap())
                .collect();
            for &seed in &seeds {
                let s = ColdStart {
                    members: n,
                    boot_within: Duration::from_millis(1),
                    slots: 10,
                    hold: Some(Duration::from_millis(300)),
                    spread_percent: 0,
                    crashes: 0,
                    lagging_permille: 0,
                    server_qps: 20_000,
                    watch_lag: Duration::from_millis(lag),
                    history: 20_000,
                    seed,
                };
                match run(&s) {
                    Ok(r) => println!(
                        "N={n} lag={lag} seed={seed}: +{:.1}% req {:.2} (most {}) {:?} conflicts {}",
                        (r.makespan.as_micros() as f64 / r.ideal.as_micros() as f64 - 1.0) * 100.0,
                        r.mean_per_member(n),
                        r.most_by_one,
                        r.sent,
                        r.conflicts
                    ),
                    Err(e) => println!(
                        "N={n} lag={lag} seed={seed}: FAILED {}",
                        &e[..e.len().min(2000)]
                    ),
                }
            }
        }
    }
}
