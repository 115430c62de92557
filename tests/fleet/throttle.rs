//! Throttling for a fleet on a real Valkey: three replicas together admit what one would (the
//! leases' documented tolerance), a quota is the fleet's, and Valkey killed mid-run leaves each
//! replica on its own buckets — limited, never a 5xx.

use super::*;

const API_KEY: &str = "fleet-partner-key-0123456789";

fn throttled_toml(url: &str, limits: &str, route_limits: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n\
         [shared_state]\n{}encryption_key = \"{}\"\n{limits}\n\
         [throttle.api_keys]\nkeys = [{{ name = \"partner\", key = \"{API_KEY}\" }}]\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\nthrottle = {route_limits}\n",
        shared(url),
        state_key_b64()
    )
}

async fn replicas(n: usize, toml: &str) -> Arc<Vec<Replica>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Replica::start(toml).await);
    }
    Arc::new(out)
}

/// `n` requests spread over the replicas, `concurrency` at a time; the statuses.
async fn spread(replicas: &Arc<Vec<Replica>>, n: usize, concurrency: usize) -> Vec<u16> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (replicas, next) = (replicas.clone(), next.clone());
            tokio::spawn(async move {
                let c = client();
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return out;
                    }
                    let r = &replicas[i % replicas.len()];
                    let status = c
                        .get(format!("{}/x", r.base))
                        .header("x-api-key", API_KEY)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    out.push(status);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn ok(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 200).count()
}

fn only_200_and_429(statuses: &[u16]) {
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "only 200 and 429: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_together_what_one_would() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    // Lease of one token: the fleet's count is the bucket's.
    let toml = throttled_toml(
        &valkey.url(),
        "[throttle.slow]\nrate = 5\nburst = 20\nkey = \"route\"\n",
        "[\"slow\"]",
    );
    let fleet = replicas(3, &toml).await;
    let started = Instant::now();
    let s = spread(&fleet, 60, 3).await;
    let refill = (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    only_200_and_429(&s);
    assert!(
        ok(&s) >= 20 && ok(&s) <= 20 + refill,
        "admitted {} of 60 (burst 20, {refill} refilled meanwhile)",
        ok(&s)
    );

    // Leases of 5 (100/s, burst 200): at most the burst plus the refill, at least the burst
    // less what each replica may hold unspent (4 each).
    let toml = throttled_toml(
        &valkey.url(),
        "[throttle.fast]\nrate = 100\nburst = 200\nkey = \"client_address\"\n",
        "[\"fast\"]",
    );
    let fleet = replicas(3, &toml).await;
    let started = Instant::now();
    let s = spread(&fleet, 600, 6).await;
    let refill = (100.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    only_200_and_429(&s);
    assert!(
        ok(&s) + 3 * 4 >= 200 && ok(&s) <= 200 + refill,
        "admitted {} of 600 (burst 200, {refill} refilled meanwhile)",
        ok(&s)
    );
    for r in fleet.iter() {
        assert!(
            !r.metrics()
                .contains("cognito_gate_throttle_local_decisions_total{"),
            "no replica decided alone while Valkey answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_is_the_fleets() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let toml = throttled_toml(
        &valkey.url(),
        "[throttle.daily]\nquota = 7\nperiod = \"day\"\nkey = \"api_key\"\n",
        "[\"daily\"]",
    );
    let fleet = replicas(3, &toml).await;
    let s = spread(&fleet, 30, 3).await;
    only_200_and_429(&s);
    assert_eq!(ok(&s), 7, "{s:?}");
    // A replica started later finds the quota spent.
    let late = Replica::start(&toml).await;
    let r = client()
        .get(format!("{}/x", late.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Nothing about the caller is readable in the keyspace.
    let mut conn = valkey.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| !k.contains("partner") && !k.contains(API_KEY)),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_killed_mid_run_leaves_each_replica_its_own_buckets() {
    let Some(mut valkey) = Valkey::start(false).await else {
        return;
    };
    let toml = throttled_toml(
        &valkey.url(),
        "[throttle.slow]\nrate = 2\nburst = 10\nkey = \"route\"\n",
        "[\"slow\"]",
    );
    let fleet = replicas(2, &toml).await;
    let started = Instant::now();
    let s = spread(&fleet, 30, 2).await;
    only_200_and_429(&s);
    let refill = (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (10..=10 + refill).contains(&ok(&s)),
        "the fleet's burst of 10 (+{refill}): {s:?}"
    );

    valkey.kill();
    let killed = Instant::now();
    // Each replica first honours the refusal it last had from the fleet (until the next token
    // was due: one interval, 500 ms), then decides on its own bucket.
    let local = "cognito_gate_throttle_local_decisions_total{limit=\"slow\"}";
    let mut s = Vec::new();
    while !fleet.iter().all(|r| r.metrics().contains(local)) {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the replicas never decided alone"
        );
        s.extend(spread(&fleet, 2, 2).await);
    }
    s.extend(spread(&fleet, 60, 2).await);
    only_200_and_429(&s);
    // Each replica's own bucket: full (10) on each, plus what refills meanwhile. Never
    // unlimited, never closed.
    let refill = 2 * (2.0 * killed.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        ok(&s) >= 2 && ok(&s) <= 2 * 10 + refill,
        "admitted {} of {} alone (refill {refill})",
        ok(&s),
        s.len()
    );
    for r in fleet.iter() {
        assert!(
            r.metrics()
                .contains("cognito_gate_throttle_local_decisions_total{limit=\"slow\"}"),
            "{}",
            r.metrics()
        );
    }
}
