//! The Portcullis soak test. It runs the release binary as a child process between an
//! issuer (a JWKS endpoint) and an echo backend it controls, sends mixed load for the
//! requested time while rotating keys and taking the issuer down, judges every answer,
//! samples the gateway's RSS, file descriptors and latency every second, and writes
//! `soak.csv`, `soak.png`, `summary.md` and `summary.json`. It exits 1 when a check
//! fails, 2 when it could not run. See soak/README.md.

mod chart;
mod gateway;
mod jwks;
mod keys;
mod load;
mod report;
mod upstream;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use gateway::{Gateway, admin_get, anyhow_lite::Result, metric_sum, parse_metrics};
use jwks::{Jwks, Mode};
use keys::SigningKey;
use load::{Conn, Ring, Role, Settings, Shared, Worker};
use report::{Check, Sample};
use upstream::{Echo, Upstream};
use util::{Rng, now, unix_secs};

/// The gateway's JWKS settings for the run (short, so that a 60 s run sees many
/// refreshes, cooldowns and rotations).
pub const REFRESH_INTERVAL: f64 = 2.0;
pub const REFRESH_COOLDOWN: f64 = 1.0;
pub const FETCH_TIMEOUT: f64 = 2.0;
pub const LEEWAY: f64 = 2.0;

/// Everything a run is shaped by.
#[derive(Clone, Debug)]
pub struct Plan {
    pub duration: f64,
    pub workers: usize,
    pub h2_workers: usize,
    pub rate: f64,
    pub users: u32,
    pub seed: u64,
    pub warmup: f64,
    pub rotate_every: f64,
    pub rotate_grace: f64,
    pub outage_every: f64,
    pub outage_len: (f64, f64),
    pub token_ttl: i64,
    pub gateway: PathBuf,
    pub out: PathBuf,
    pub keys: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--duration SECONDS] [--workers N] [--rate REQ_PER_S] [--users N]\n\
         \x20           [--seed N] [--gateway PATH] [--out DIR] [--keys DIR]\n\
         \x20      soak --replot DIR   (redraw DIR/soak.png from a run's soak.csv)"
    );
    std::process::exit(2)
}

fn parse_args() -> Plan {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut duration = 1800.0;
    let mut workers = None;
    let mut rate = None;
    let mut users = None;
    let mut seed = None;
    let mut gateway = here.join("../target/release/portcullis");
    let mut out = here.join("out");
    let mut keys = here.join("../tests/fixtures/keys");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--duration" => duration = val().parse().unwrap_or_else(|_| usage()),
            "--workers" => workers = Some(val().parse().unwrap_or_else(|_| usage())),
            "--rate" => rate = Some(val().parse().unwrap_or_else(|_| usage())),
            "--users" => users = Some(val().parse().unwrap_or_else(|_| usage())),
            "--seed" => seed = Some(val().parse().unwrap_or_else(|_| usage())),
            "--gateway" => gateway = PathBuf::from(val()),
            "--out" => out = PathBuf::from(val()),
            "--keys" => keys = PathBuf::from(val()),
            "--replot" => {
                // Redraw DIR/soak.png from DIR/soak.csv, DIR/keys.csv, DIR/summary.json.
                let dir = PathBuf::from(val());
                match report::replot(&dir) {
                    Ok(()) => std::process::exit(0),
                    Err(e) => {
                        eprintln!("soak: cannot replot {}: {e}", dir.display());
                        std::process::exit(2)
                    }
                }
            }
            _ => usage(),
        }
    }
    if duration < 20.0 {
        eprintln!("soak: --duration must be at least 20 seconds");
        std::process::exit(2);
    }
    // Short runs (CI) are moderate and rotate/fail often; long runs carry more load and
    // space events out.
    let short = duration <= 300.0;
    let workers: usize = workers.unwrap_or(if short { 12 } else { 32 });
    Plan {
        duration,
        workers,
        h2_workers: workers / 4,
        rate: rate.unwrap_or(if short { 400.0 } else { 1500.0 }),
        users: users.unwrap_or(if short { 600 } else { 5000 }),
        seed: seed.unwrap_or_else(|| unix_secs() as u64),
        warmup: (duration * 0.1).max(5.0),
        rotate_every: if short { 10.0 } else { 40.0 },
        rotate_grace: if short { 5.0 } else { 15.0 },
        outage_every: if short { 12.0 } else { 60.0 },
        outage_len: if short { (2.5, 5.0) } else { (3.0, 10.0) },
        token_ttl: if short {
            20
        } else {
            (duration as i64 / 20).clamp(20, 600)
        },
        gateway,
        out,
        keys,
    }
}

fn config_toml(iss: &str, jwks_url: &str, upstream: &str) -> String {
    let d = |s: f64| format!("\"{}ms\"", (s * 1000.0) as u64);
    format!(
        r#"# Written by the soak driver.
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream_timeout = "10s"
shutdown_timeout = "10s"

[[providers]]
name = "better-auth"
issuer = "{iss}"
jwks_url = "{jwks_url}"
audiences = ["{iss}"]
leeway = {leeway}
refresh_interval = {refresh}
refresh_cooldown = {cooldown}
fetch_timeout = {fetch}

[[routes]]
name = "api"
prefix = "/api"
upstream = "{upstream}"
auth = "required"

[[routes]]
name = "public"
prefix = "/public"
upstream = "{upstream}"
auth = "public"

[identity]
user_id_header = "X-User-Id"
claim_headers = {{ email = "X-User-Email" }}
"#,
        leeway = d(LEEWAY),
        refresh = d(REFRESH_INTERVAL),
        cooldown = d(REFRESH_COOLDOWN),
        fetch = d(FETCH_TIMEOUT),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let plan = parse_args();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("soak: cannot install signal handlers");
        return ExitCode::from(2);
    };
    // Interrupted, the run is dropped; so is the gateway's process handle, which kills it.
    tokio::select! {
        result = run(plan) => match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("soak: cannot run: {e}");
                ExitCode::from(2)
            }
        },
        _ = term.recv() => {
            eprintln!("soak: interrupted");
            ExitCode::from(2)
        }
        _ = int.recv() => {
            eprintln!("soak: interrupted");
            ExitCode::from(2)
        }
    }
}

/// One request outside the load (start-up and spot checks).
async fn probe(
    proxy: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Option<(StatusCode, http::HeaderMap, Bytes)> {
    let mut c = Conn::open(proxy, false).await.ok()?;
    let mut b = Request::get(path).header("host", proxy.to_string());
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b
        .header("x-soak-rid", "0")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let fut = async {
        match &mut c {
            Conn::H1(s, _) => {
                let r = s.send_request(req).await.ok()?;
                let (p, body) = r.into_parts();
                Some((p.status, p.headers, body.collect().await.ok()?.to_bytes()))
            }
            Conn::H2(..) => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

async fn run(plan: Plan) -> Result<bool> {
    std::fs::create_dir_all(&plan.out).map_err(|e| format!("{}: {e}", plan.out.display()))?;
    if !plan.gateway.exists() {
        return Err(format!(
            "no gateway binary at {} (cargo build --release --locked)",
            plan.gateway.display()
        )
        .into());
    }
    let mut rng = Rng::new(plan.seed);
    println!(
        "soak: {}s of load, {} workers ({} h2c) + 2 retired-key and 2 unknown-kid clients, {} req/s target, {} users, seed {}",
        plan.duration, plan.workers, plan.h2_workers, plan.rate, plan.users, plan.seed
    );

    // Keys: two long-lived fixture keys, a first rotating key, and a stranger.
    let stable_rsa = Arc::new(SigningKey::fixture_rsa(&plan.keys, "stable-rsa"));
    let stable_p521 = Arc::new(SigningKey::fixture_p521(&plan.keys, "stable-p521"));
    let stranger = Arc::new(SigningKey::fixture_ed25519(
        &plan.keys,
        "ed25519-other.pem",
        "stranger",
    ));
    let first = Arc::new(SigningKey::generate_ed25519("rot-1"));
    let published = vec![stable_rsa.clone(), stable_p521.clone(), first.clone()];

    // The issuer starts down: the gateway must come up anyway and say it is not ready.
    let upstream = Upstream::start().await;
    let jwks = Arc::new(
        Jwks::start(
            published.iter().map(|k| (k.kid.clone(), k.jwk())).collect(),
            Mode::Unavailable,
            Duration::from_secs_f64(FETCH_TIMEOUT * 2.0),
        )
        .await,
    );
    let iss = format!("http://{}", jwks.addr);
    let config_path = plan.out.join("portcullis.toml");
    std::fs::write(
        &config_path,
        config_toml(&iss, &format!("{iss}/api/auth/jwks"), &upstream.url()),
    )?;
    let gw = Gateway::start(&plan.gateway, &config_path, &plan.out.join("gateway.log")).await?;
    println!(
        "soak: gateway pid {} proxy {} admin {}",
        gw.pid, gw.proxy, gw.admin
    );

    let settings = Settings {
        iss: iss.clone(),
        aud: iss.clone(),
        leeway: LEEWAY,
        token_ttl: plan.token_ttl,
        users: plan.users,
        workers: plan.workers,
        rate: plan.rate,
        retired_traffic: plan.rotate_every,
    };
    let shared = Arc::new(Shared::new(
        gw.proxy,
        jwks.clone(),
        Ring {
            current: first.clone(),
            generation: 1,
            published,
        },
        stable_rsa.clone(),
        stable_p521.clone(),
        stranger.clone(),
        settings,
    ));

    // Start-up: before the first key set, a valid token gets 503, a missing one 401.
    let mut startup: Vec<Check> = Vec::new();
    let probe_token = stable_rsa.mint(
        keys::Alg::RS256,
        &shared.claims("user-probe", unix_secs() + 600),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = admin_get(gw.admin, "/readyz").await.map(|r| r.0);
    startup.push(Check::new(
        "/readyz is 503 while the issuer is down at start",
        ready == Some(StatusCode::SERVICE_UNAVAILABLE),
        format!("{ready:?}"),
    ));
    let r = probe(gw.proxy, "/api/probe", Some(&probe_token)).await;
    startup.push(Check::new(
        "a valid token gets 503 + Retry-After before the first key set",
        r.as_ref().is_some_and(|(s, h, _)| {
            *s == StatusCode::SERVICE_UNAVAILABLE && h.contains_key("retry-after")
        }),
        format!("{:?}", r.as_ref().map(|x| x.0)),
    ));
    let r = probe(gw.proxy, "/api/probe", None).await;
    startup.push(Check::new(
        "no token gets 401 before the first key set",
        r.as_ref()
            .is_some_and(|(s, ..)| *s == StatusCode::UNAUTHORIZED),
        format!("{:?}", r.as_ref().map(|x| x.0)),
    ));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    jwks.set_mode(Mode::Serve).await;
    let up_at = now();
    let ready_after = loop {
        if admin_get(gw.admin, "/readyz").await.map(|r| r.0) == Some(StatusCode::OK) {
            break Some(now() - up_at);
        }
        if now() - up_at > 20.0 {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    startup.push(Check::new(
        "ready within 5 s of the issuer coming up",
        ready_after.is_some_and(|t| t < 5.0),
        format!("{ready_after:.2?} s"),
    ));
    let Some(_) = ready_after else {
        let _ = gw.terminate(Duration::from_secs(5)).await;
        return Err("the gateway never became ready".into());
    };
    let r = probe(gw.proxy, "/api/probe", Some(&probe_token)).await;
    startup.push(Check::new(
        "the valid token passes once ready, as its user",
        r.as_ref().is_some_and(|(s, _, b)| {
            *s == StatusCode::OK
                && Echo::parse(b).is_some_and(|e| e.user == "user-probe" && e.n == 1)
        }),
        format!("{:?}", r.as_ref().map(|x| x.0)),
    ));
    let idle_rss = gw.rss_kib().unwrap_or(0);
    let idle_fds = gw.fds().unwrap_or(0);

    // The load, the sampler, the rotations and the outages.
    let load_start = now();
    let load_end = load_start + plan.duration;
    let gw = Arc::new(gw);
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let rotations: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sampler_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(report::sampler(
        gw.clone(),
        shared.clone(),
        jwks.clone(),
        samples.clone(),
        load_start,
        plan.warmup,
        sampler_stop.clone(),
    ));
    let mut workers = Vec::new();
    let mut roles: Vec<(Role, bool)> = (0..plan.workers)
        .map(|i| (Role::Mixed, i < plan.h2_workers))
        .collect();
    for (role, n) in load::COHORTS {
        roles.extend((0..n).map(|i| (role, i % 2 == 1)));
    }
    for (i, (role, h2)) in roles.into_iter().enumerate() {
        workers.push(tokio::spawn(
            Worker::new(i, h2, role, plan.seed, shared.clone()).run(),
        ));
    }
    let rotator = tokio::spawn(rotate(
        shared.clone(),
        jwks.clone(),
        plan.clone(),
        rotations.clone(),
        load_end,
    ));
    let outages = tokio::spawn(outages(
        jwks.clone(),
        plan.clone(),
        Rng::new(rng.next_u64()),
        load_start,
        load_end,
    ));
    let mut last_report = now();
    while now() < load_end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if now() - last_report >= 30.0 || plan.duration <= 120.0 && now() - last_report >= 10.0 {
            last_report = now();
            let s = &shared.stats;
            let last = samples.lock().unwrap().last().cloned();
            println!(
                "soak: t={:>5.0}s requests={} wrong={} transport_errors={} rss={} KiB fds={} issuer={}",
                now() - load_start,
                s.completed.load(Ordering::Relaxed),
                s.wrong.load(Ordering::Relaxed),
                s.transport.load(Ordering::Relaxed),
                last.as_ref().map_or(0, |x| x.rss_kib),
                last.as_ref().map_or(0, |x| x.fds),
                jwks.mode().name(),
            );
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    rotator.abort();
    let _ = outages.await;
    jwks.set_mode(Mode::Serve).await;
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(40), w).await;
    }
    let stopped_at = now();

    // After the load: nothing in flight, and every client connection accounted closed.
    let settle = |name: &'static str| {
        let admin = gw.admin;
        async move {
            let deadline = now() + 10.0;
            loop {
                let v = match admin_get(admin, "/metrics").await {
                    Some((_, text)) => metric_sum(&parse_metrics(&text), name, None),
                    None => f64::NAN,
                };
                if v == 0.0 || now() > deadline {
                    return (v, now() - stopped_at);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (in_flight, in_flight_after) = settle("portcullis_requests_in_flight").await;
    let (conns_open, conns_after) = settle("portcullis_connections_open").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler_stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let final_metrics = admin_get(gw.admin, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    std::fs::write(plan.out.join("metrics-final.txt"), &final_metrics)?;
    let after_fds = gw.fds().unwrap_or(0);
    let after_rss = gw.rss_kib().unwrap_or(0);
    let log = gw.log.clone();
    let gw = Arc::try_unwrap(gw).map_err(|_| "gateway still shared")?;
    let (exit, drain) = gw.terminate(Duration::from_secs(20)).await;
    // Let the log reader see the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let outcome = report::Outcome {
        plan: plan.clone(),
        startup,
        samples: samples.lock().unwrap().clone(),
        rotations: rotations
            .lock()
            .unwrap()
            .iter()
            .map(|t| t - load_start)
            .collect(),
        outages: jwks
            .outages()
            .into_iter()
            .filter(|o| o.0 >= load_start)
            .map(|(s, e, m)| (s - load_start, e.unwrap_or(stopped_at) - load_start, m))
            .collect(),
        timelines: jwks.timelines(),
        load_start,
        load_end,
        idle_rss,
        idle_fds,
        after_rss,
        after_fds,
        in_flight_after_load: (in_flight, in_flight_after),
        conns_after_close: (conns_open, conns_after),
        exit_code: exit,
        drain,
        jwks_hits: jwks.hits(),
        jwks_docs: jwks.docs_served(),
        upstream_hits: upstream.hits(),
        final_metrics: parse_metrics(&final_metrics),
        log,
    };
    report::finish(&shared, &jwks, outcome)
}

/// Every `rotate_every`: a new key is published and used at once; the previous one is
/// removed from the document `rotate_grace` later.
async fn rotate(
    shared: Arc<Shared>,
    jwks: Arc<Jwks>,
    plan: Plan,
    rotations: Arc<Mutex<Vec<f64>>>,
    load_end: f64,
) {
    let mut generation = 1u64;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(plan.rotate_every)).await;
        if now() > load_end - plan.rotate_grace {
            return;
        }
        generation += 1;
        let kid = format!("rot-{generation}");
        // Mostly Ed25519 (Better Auth's default), every third one P-256.
        let key = Arc::new(if generation.is_multiple_of(3) {
            SigningKey::generate_p256(&kid)
        } else {
            SigningKey::generate_ed25519(&kid)
        });
        jwks.publish(&kid, key.jwk());
        let old = {
            let mut ring = shared.ring.write().unwrap();
            ring.published.push(key.clone());
            ring.generation = generation;
            std::mem::replace(&mut ring.current, key)
        };
        rotations.lock().unwrap().push(now());
        let (jwks, shared, grace) = (jwks.clone(), shared.clone(), plan.rotate_grace);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(grace)).await;
            jwks.remove(&old.kid);
            shared
                .ring
                .write()
                .unwrap()
                .published
                .retain(|k| k.kid != old.kid);
        });
    }
}

/// The issuer goes down every `outage_every` (± 40 %) for a few seconds, in turn
/// answering 503, refusing connections, hanging past the fetch timeout, and serving a
/// page that is not a JWKS. None in the warm-up nor in the last seconds of the load.
async fn outages(jwks: Arc<Jwks>, plan: Plan, mut rng: Rng, load_start: f64, load_end: f64) {
    let modes = [Mode::Unavailable, Mode::Refuse, Mode::Hang, Mode::Garbage];
    let mut next = load_start + plan.warmup + rng.range(2.0, plan.outage_every / 2.0);
    let mut i = 0;
    loop {
        let len = rng.range(plan.outage_len.0, plan.outage_len.1);
        if next + len > load_end - 8.0 {
            return;
        }
        let wait = next - now();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        jwks.set_mode(modes[i % modes.len()]).await;
        tokio::time::sleep(Duration::from_secs_f64(len)).await;
        jwks.set_mode(Mode::Serve).await;
        i += 1;
        next = now() + plan.outage_every * rng.range(0.6, 1.4);
    }
}
