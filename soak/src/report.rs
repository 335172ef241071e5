//! Sampling during the run, and the verdict after it: the checks, `soak.csv`,
//! `soak.png`, `summary.md` and `summary.json`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::gateway::{
    Gateway, LogCounts, admin_get, anyhow_lite::Result, metric_sum, parse_metrics,
};
use crate::jwks::{Jwks, Mode, Timeline};
use crate::load::{MIX, Shared};
use crate::util::{median, now, quantile, unix_secs};
use crate::{FETCH_TIMEOUT, LEEWAY, Plan, REFRESH_COOLDOWN, REFRESH_INTERVAL};

/// One second of the run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub connections_open: f64,
    pub in_flight: f64,
    pub jwks_ok: f64,
    pub jwks_error: f64,
    pub wrong: u64,
    pub issuer: &'static str,
    /// Whether the load was running.
    pub load: bool,
}

pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, pass: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            pass,
            detail: detail.into(),
        }
    }
}

/// Samples the gateway once a second until `stop`.
pub async fn sampler(
    gw: Arc<Gateway>,
    shared: Arc<Shared>,
    jwks: Arc<Jwks>,
    samples: Arc<Mutex<Vec<Sample>>>,
    load_start: f64,
    warmup: f64,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let t = now() - load_start;
        let load = !shared.stop.load(Ordering::Relaxed);
        let mut lat = std::mem::take(&mut *shared.stats.second.lock().unwrap());
        lat.sort_unstable();
        let metrics = admin_get(gw.admin, "/metrics")
            .await
            .map(|(_, text)| parse_metrics(&text))
            .unwrap_or_default();
        let m = |name: &str, label: Option<&str>| {
            if metrics.is_empty() {
                f64::NAN
            } else {
                metric_sum(&metrics, name, label)
            }
        };
        let sample = Sample {
            t,
            rss_kib: gw.rss_kib().unwrap_or(0),
            fds: gw.fds().unwrap_or(0),
            threads: gw.threads().unwrap_or(0),
            requests: lat.len() as u64,
            p50_ms: quantile(&lat, 0.50) as f64 / 1000.0,
            p99_ms: quantile(&lat, 0.99) as f64 / 1000.0,
            max_ms: lat.last().copied().unwrap_or(0) as f64 / 1000.0,
            connections_open: m("portcullis_connections_open", None),
            in_flight: m("portcullis_requests_in_flight", None),
            jwks_ok: m("portcullis_jwks_fetches_total", Some("result=\"ok\"")),
            jwks_error: m("portcullis_jwks_fetches_total", Some("result=\"error\"")),
            wrong: shared.stats.wrong.load(Ordering::Relaxed),
            issuer: jwks.mode().name(),
            load,
        };
        samples.lock().unwrap().push(sample);
        shared.stats.lat_all.lock().unwrap().extend_from_slice(&lat);
        if load && t > warmup {
            shared
                .stats
                .lat_steady
                .lock()
                .unwrap()
                .extend_from_slice(&lat);
        }
    }
}

/// What the run produced, for the verdict.
pub struct Outcome {
    pub plan: Plan,
    pub startup: Vec<Check>,
    pub samples: Vec<Sample>,
    /// Load-relative times.
    pub rotations: Vec<f64>,
    pub outages: Vec<(f64, f64, Mode)>,
    /// On the driver's clock.
    pub timelines: Vec<(String, Timeline)>,
    pub load_start: f64,
    pub load_end: f64,
    pub idle_rss: u64,
    pub idle_fds: u64,
    pub after_rss: u64,
    pub after_fds: u64,
    pub in_flight_after_load: (f64, f64),
    pub conns_after_close: (f64, f64),
    pub exit_code: Option<i32>,
    pub drain: Duration,
    pub jwks_hits: u64,
    pub jwks_docs: u64,
    pub upstream_hits: u64,
    pub final_metrics: HashMap<String, f64>,
    pub log: Arc<LogCounts>,
}

/// RSS may grow by this much from the start window to the end window.
pub fn rss_bound_kib(start_kib: f64) -> f64 {
    (16.0 * 1024.0f64).max(start_kib * 0.20)
}

/// File descriptors may differ by this much (client connections churn, the upstream
/// pool breathes).
pub fn fd_tolerance(workers: usize) -> f64 {
    8f64.max(workers as f64 / 4.0)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// YYYY-MM-DD HH:MM UTC from Unix seconds.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn issuer_mode(name: &str) -> (&'static str, Mode) {
    for m in [
        Mode::Serve,
        Mode::Unavailable,
        Mode::Refuse,
        Mode::Hang,
        Mode::Garbage,
    ] {
        if m.name() == name {
            return (m.name(), m);
        }
    }
    ("serve", Mode::Serve)
}

/// The chart title, from the figures of the summary.
fn chart_title(
    duration: f64,
    requests: u64,
    wrong: u64,
    rss: (f64, f64),
    fds: (f64, f64),
) -> String {
    format!(
        "Portcullis soak, {duration:.0} s: {requests} requests, {wrong} wrong answers, RSS {} → {}, fds {:.0} → {:.0}",
        mib(rss.0),
        mib(rss.1),
        fds.0,
        fds.1
    )
}

/// Redraws `dir/soak.png` from the files a run wrote.
pub fn replot(dir: &std::path::Path) -> Result<()> {
    let csv = std::fs::read_to_string(dir.join("soak.csv"))?;
    let mut samples = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 15 {
            continue;
        }
        let n = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
        samples.push(Sample {
            t: n(0),
            rss_kib: n(1) as u64,
            fds: n(2) as u64,
            threads: n(3) as u64,
            requests: n(4) as u64,
            p50_ms: n(5),
            p99_ms: n(6),
            max_ms: n(7),
            connections_open: n(8),
            in_flight: n(9),
            jwks_ok: n(10),
            jwks_error: n(11),
            wrong: n(12) as u64,
            issuer: issuer_mode(f[13]).0,
            load: f[14] == "1",
        });
    }
    // Outages: runs of seconds in which the issuer was not serving.
    let mut outages: Vec<(f64, f64, Mode)> = Vec::new();
    for s in &samples {
        let mode = issuer_mode(s.issuer).1;
        match outages.last_mut() {
            Some(last) if last.2 == mode && (s.t - 1.0 - last.1).abs() < 0.5 => last.1 = s.t,
            _ if mode != Mode::Serve => outages.push((s.t - 1.0, s.t, mode)),
            _ => {}
        }
    }
    let keys = std::fs::read_to_string(dir.join("keys.csv")).unwrap_or_default();
    let rotations: Vec<f64> = keys
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("rot-") && !l.starts_with("rot-1,"))
        .filter_map(|l| l.split(',').nth(1)?.parse().ok())
        .collect();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json"))?)?;
    let duration = summary["duration_s"].as_f64().unwrap_or(0.0);
    let g = |a: &str, b: &str| summary[a][b].as_f64().unwrap_or(f64::NAN);
    let title = chart_title(
        duration,
        summary["requests"].as_u64().unwrap_or(0),
        summary["wrong_answers"].as_u64().unwrap_or(0),
        (g("rss_kib", "start"), g("rss_kib", "end")),
        (g("fds", "start"), g("fds", "end")),
    );
    crate::chart::draw(
        &dir.join("soak.png"),
        &samples,
        &outages,
        &rotations,
        (duration * 0.1).max(5.0),
        duration,
        &title,
    )
    .map_err(|e| e.to_string())?;
    println!("soak: redrew {}", dir.join("soak.png").display());
    Ok(())
}

pub fn finish(shared: &Shared, jwks: &Jwks, o: Outcome) -> Result<bool> {
    let plan = &o.plan;
    let stats = &shared.stats;
    let mut checks: Vec<Check> = Vec::new();
    let load: Vec<&Sample> = o.samples.iter().filter(|s| s.load).collect();
    let window = ((plan.duration * 0.05) as usize).max(5);
    let start_win: Vec<&Sample> = load
        .iter()
        .copied()
        .filter(|s| s.t >= plan.warmup)
        .take(window)
        .collect();
    let end_win: Vec<&Sample> = load.iter().rev().take(window).copied().collect();
    let med =
        |w: &[&Sample], f: fn(&Sample) -> f64| median(&w.iter().map(|s| f(s)).collect::<Vec<_>>());
    let rss_start = med(&start_win, |s| s.rss_kib as f64);
    let rss_end = med(&end_win, |s| s.rss_kib as f64);
    let fds_start = med(&start_win, |s| s.fds as f64);
    let fds_end = med(&end_win, |s| s.fds as f64);
    let thr_start = med(&start_win, |s| s.threads as f64);
    let thr_end = med(&end_win, |s| s.threads as f64);
    let rss_peak = load.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds_peak = load.iter().map(|s| s.fds).max().unwrap_or(0);
    // Least-squares RSS slope after the warm-up, in MiB per hour (for the record).
    let steady: Vec<(f64, f64)> = load
        .iter()
        .filter(|s| s.t >= plan.warmup)
        .map(|s| (s.t, s.rss_kib as f64))
        .collect();
    let slope = {
        let n = steady.len() as f64;
        let (sx, sy) = steady
            .iter()
            .fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = steady.iter().fold((0.0, 0.0), |a, p| {
            (a.0 + (p.0 - mx) * (p.1 - my), a.1 + (p.0 - mx).powi(2))
        });
        if den > 0.0 {
            num / den * 3600.0 / 1024.0
        } else {
            0.0
        }
    };

    let mut lat = std::mem::take(&mut *stats.lat_steady.lock().unwrap());
    lat.sort_unstable();
    let p50 = quantile(&lat, 0.50) as f64 / 1000.0;
    let p99 = quantile(&lat, 0.99) as f64 / 1000.0;
    let p999 = quantile(&lat, 0.999) as f64 / 1000.0;
    let lmax = lat.last().copied().unwrap_or(0) as f64 / 1000.0;
    let worst = load
        .iter()
        .filter(|s| s.t >= plan.warmup)
        .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
    let completed = stats.completed.load(Ordering::Relaxed);
    let wrong = stats.wrong.load(Ordering::Relaxed);
    let transport = stats.transport.load(Ordering::Relaxed);
    let rate = completed as f64 / plan.duration;

    // The checks.
    checks.extend(o.startup);
    checks.push(Check::new(
        "zero wrong answers",
        wrong == 0,
        format!("{wrong} wrong of {completed} answered"),
    ));
    checks.push(Check::new(
        "zero transport errors (every request got an answer)",
        transport == 0,
        format!("{transport}"),
    ));
    checks.push(Check::new(
        "the load ran (at least 30 % of the target rate)",
        rate >= plan.rate * 0.3,
        format!("{rate:.0} req/s of {:.0} targeted", plan.rate),
    ));
    let bound = rss_bound_kib(rss_start);
    checks.push(Check::new(
        "RSS flat: end ≤ start + max(16 MiB, 20 %)",
        rss_end - rss_start <= bound,
        format!(
            "{} → {} ({:+.1} MiB, bound {})",
            mib(rss_start),
            mib(rss_end),
            (rss_end - rss_start) / 1024.0,
            mib(bound)
        ),
    ));
    let tol = fd_tolerance(plan.workers);
    checks.push(Check::new(
        format!("file descriptors flat: |end − start| ≤ {tol:.0}"),
        (fds_end - fds_start).abs() <= tol,
        format!("{fds_start:.0} → {fds_end:.0} (peak {fds_peak})"),
    ));
    let (inf, inf_t) = o.in_flight_after_load;
    checks.push(Check::new(
        "portcullis_requests_in_flight back to 0 when the load stops",
        inf == 0.0,
        format!("{inf} after {inf_t:.1} s"),
    ));
    let (co, co_t) = o.conns_after_close;
    checks.push(Check::new(
        "portcullis_connections_open back to 0 once the clients close",
        co == 0.0,
        format!("{co} after {co_t:.1} s"),
    ));
    // Key propagation: how long after the issuer could first serve a change the gateway
    // fetched it (new kids are used at once, so unknown-kid refetches pull them in).
    let prop_bound = REFRESH_INTERVAL + FETCH_TIMEOUT + 2.0;
    let mut prop_in: Vec<(String, f64)> = Vec::new();
    let mut prop_out: Vec<(String, f64)> = Vec::new();
    let mut prop_missing: Vec<String> = Vec::new();
    let end = o.load_end;
    for (kid, tl) in &o.timelines {
        if !kid.starts_with("rot-") || kid == "rot-1" {
            continue;
        }
        match tl.served_with {
            Some(s) => prop_in.push((kid.clone(), jwks.serving_time(tl.published, s))),
            None if jwks.serving_time(tl.published, end) > prop_bound => {
                prop_missing.push(format!("{kid} never fetched"))
            }
            None => {}
        }
        if let Some(removed) = tl.removed {
            match tl.served_without {
                Some(s) => prop_out.push((kid.clone(), jwks.serving_time(removed, s))),
                None if jwks.serving_time(removed, end) > prop_bound => {
                    prop_missing.push(format!("{kid} removal never fetched"))
                }
                None => {}
            }
        }
    }
    let max_of = |v: &[(String, f64)]| {
        v.iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("none".to_owned(), |(k, d)| format!("{d:.2} s ({k})"))
    };
    let worst_in = prop_in.iter().map(|p| p.1).fold(0.0, f64::max);
    let worst_out = prop_out.iter().map(|p| p.1).fold(0.0, f64::max);
    checks.push(Check::new(
        format!("rotations reach the gateway within {prop_bound:.0} s of the issuer being up"),
        worst_in <= prop_bound && worst_out <= prop_bound && prop_missing.is_empty(),
        format!(
            "{} keys in, slowest {}; {} keys out, slowest {}{}",
            prop_in.len(),
            max_of(&prop_in),
            prop_out.len(),
            max_of(&prop_out),
            if prop_missing.is_empty() {
                String::new()
            } else {
                format!("; {}", prop_missing.join(", "))
            }
        ),
    ));
    let fetch_ok = metric_sum(
        &o.final_metrics,
        "portcullis_jwks_fetches_total",
        Some("result=\"ok\""),
    );
    let fetch_err = metric_sum(
        &o.final_metrics,
        "portcullis_jwks_fetches_total",
        Some("result=\"error\""),
    );
    let run_secs = o.load_end - o.load_start + 10.0;
    let fetch_bound = run_secs * (1.0 / REFRESH_COOLDOWN + 1.0 / REFRESH_INTERVAL) * 1.1
        + o.outages.len() as f64 * 10.0
        + 20.0;
    let unknown_kid = stats
        .kind(crate::load::Kind::UnknownKid)
        .sent
        .load(Ordering::Relaxed);
    checks.push(Check::new(
        "JWKS fetches bounded by the refresh interval and the unknown-kid cooldown",
        fetch_ok + fetch_err <= fetch_bound,
        format!(
            "{:.0} fetches ({fetch_ok:.0} ok, {fetch_err:.0} failed) for {unknown_kid} unknown-kid requests; bound {fetch_bound:.0}",
            fetch_ok + fetch_err
        ),
    ));
    let errors = o.log.error.load(Ordering::Relaxed);
    let other = o.log.other.load(Ordering::Relaxed);
    checks.push(Check::new(
        "the gateway logged no ERROR line and nothing but JSON (no panic)",
        errors == 0 && other == 0,
        format!("{errors} ERROR, {other} non-JSON lines"),
    ));
    checks.push(Check::new(
        "SIGTERM: the gateway drains and exits 0",
        o.exit_code == Some(0),
        format!(
            "exit {:?} after {:.2} s",
            o.exit_code,
            o.drain.as_secs_f64()
        ),
    ));
    let pass = checks.iter().all(|c| c.pass);

    // soak.csv
    let mut csv = String::from(
        "t_s,rss_kib,fds,threads,requests,p50_ms,p99_ms,max_ms,connections_open,requests_in_flight,jwks_fetches_ok,jwks_fetches_error,wrong_answers,issuer,load\n",
    );
    for s in &o.samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{},{},{},{}",
            s.t,
            s.rss_kib,
            s.fds,
            s.threads,
            s.requests,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.connections_open,
            s.in_flight,
            s.jwks_ok,
            s.jwks_error,
            s.wrong,
            s.issuer,
            u8::from(s.load)
        );
    }
    std::fs::write(plan.out.join("soak.csv"), csv)?;
    // keys.csv: each key's timeline, in seconds since the load started.
    let rel = |t: Option<f64>| t.map_or(String::new(), |t| format!("{:.3}", t - o.load_start));
    let mut keys_csv =
        String::from("kid,published_s,first_served_with_s,removed_s,first_served_without_s\n");
    for (kid, tl) in &o.timelines {
        let _ = writeln!(
            keys_csv,
            "{kid},{},{},{},{}",
            rel(Some(tl.published)),
            rel(tl.served_with),
            rel(tl.removed),
            rel(tl.served_without)
        );
    }
    std::fs::write(plan.out.join("keys.csv"), keys_csv)?;
    for (name, log) in [
        ("wrong.log", &stats.wrong_log),
        ("slow.log", &stats.slow_log),
        ("transport.log", &stats.transport_log),
    ] {
        let lines = log.lock().unwrap();
        let path = plan.out.join(name);
        if lines.is_empty() {
            let _ = std::fs::remove_file(&path);
        } else {
            std::fs::write(&path, lines.join("\n") + "\n")?;
        }
    }

    // soak.png
    let title = chart_title(
        plan.duration,
        completed,
        wrong,
        (rss_start, rss_end),
        (fds_start, fds_end),
    );
    let chart = crate::chart::draw(
        &plan.out.join("soak.png"),
        &o.samples,
        &o.outages,
        &o.rotations,
        plan.warmup,
        plan.duration,
        &title,
    );
    if let Err(e) = &chart {
        eprintln!("soak: the chart could not be drawn: {e}");
    }

    // summary.md and summary.json
    let by_mode = |m: Mode| o.outages.iter().filter(|x| x.2 == m).count();
    let outage_text = format!(
        "{} ({} × 503, {} × refused, {} × hang, {} × not-a-JWKS; {:.0} s in all)",
        o.outages.len(),
        by_mode(Mode::Unavailable),
        by_mode(Mode::Refuse),
        by_mode(Mode::Hang),
        by_mode(Mode::Garbage),
        o.outages.iter().map(|x| x.1 - x.0).sum::<f64>()
    );
    let revision = std::env::var("SOAK_REVISION").unwrap_or_else(|_| "-".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let slow = stats.slow.load(Ordering::Relaxed);
    let slow_label = format!(
        "Answers slower than {:.0} s (2 × fetch_timeout + 1 s; not a failure)",
        crate::load::slow_bound()
    );
    let slow_text = if slow == 0 {
        "0".to_owned()
    } else {
        let by_kind: Vec<String> = MIX
            .iter()
            .filter_map(|(k, _)| {
                let n = stats.kind(*k).slow.load(Ordering::Relaxed);
                (n > 0).then(|| format!("{} × {}", n, k.name()))
            })
            .collect();
        format!("{slow}: {} (see slow.log)", by_kind.join(", "))
    };
    let rss_label = format!("RSS start → end (medians of the first/last {window} s after warm-up)");
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Portcullis soak: {:.0} s — {}\n",
        plan.duration,
        if pass { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        md,
        "Run {} on {cpus} CPUs; gateway revision `{revision}`; seed {}. \
         Produced by `scripts/soak.sh {:.0}` (see soak/README.md).\n",
        utc(unix_secs()),
        plan.seed,
        plan.duration
    );
    let _ = writeln!(
        md,
        "![RSS, file descriptors and latency over the run](soak.png)\n"
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let rows = [
        (
            "Requests answered",
            format!(
                "{completed} ({rate:.0} req/s; {} workers, {} of them h2c, + 2 clients sending rotated-out keys' tokens and 2 sending unknown kids)",
                plan.workers, plan.h2_workers
            ),
        ),
        ("Wrong answers", wrong.to_string()),
        ("Transport errors", transport.to_string()),
        (
            "Keep-alive connections the gateway closed between requests",
            format!(
                "{} ({} answers said `Connection: close`)",
                stats.closed_by_gateway.load(Ordering::Relaxed),
                stats.connection_close.load(Ordering::Relaxed)
            ),
        ),
        (
            "Cancelled by the client (by design)",
            stats
                .kind(crate::load::Kind::Cancelled)
                .cancelled
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            rss_label.as_str(),
            format!(
                "{} → {} ({:+.1} MiB; peak {}; idle before load {}; trend {slope:+.1} MiB/h)",
                mib(rss_start),
                mib(rss_end),
                (rss_end - rss_start) / 1024.0,
                mib(rss_peak as f64),
                mib(o.idle_rss as f64)
            ),
        ),
        (
            "File descriptors start → end",
            format!(
                "{fds_start:.0} → {fds_end:.0} (peak {fds_peak}; idle before load {}; after the clients closed {})",
                o.idle_fds, o.after_fds
            ),
        ),
        (
            "Threads start → end",
            format!("{thr_start:.0} → {thr_end:.0}"),
        ),
        (
            "Latency after warm-up p50 / p99 / p99.9 / max",
            format!("{p50:.2} / {p99:.2} / {p999:.2} / {lmax:.1} ms"),
        ),
        (slow_label.as_str(), slow_text.clone()),
        (
            "Worst one-second p99",
            worst.map_or("-".into(), |w| {
                format!(
                    "{:.1} ms at t = {:.0} s (issuer: {})",
                    w.p99_ms, w.t, w.issuer
                )
            }),
        ),
        (
            "Key rotations",
            format!(
                "{} (new key used at once, old key removed {:.0} s later); slowest to reach the gateway: in {}, out {}",
                o.rotations.len(),
                plan.rotate_grace,
                max_of(&prop_in),
                max_of(&prop_out)
            ),
        ),
        ("Issuer outages", outage_text.clone()),
        (
            "JWKS fetches (gateway metric)",
            format!(
                "{fetch_ok:.0} ok, {fetch_err:.0} failed; {} reached the issuer, {} key sets served",
                o.jwks_hits, o.jwks_docs
            ),
        ),
        (
            "Right refusals of a key not fetchable yet",
            stats
                .refused_key_not_fetched
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("Upstream requests", o.upstream_hits.to_string()),
        (
            "After SIGTERM",
            format!(
                "exit {:?} in {:.2} s; RSS then {}",
                o.exit_code,
                o.drain.as_secs_f64(),
                mib(o.after_rss as f64)
            ),
        ),
    ];
    for (k, v) in &rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\n## Checks\n");
    for c in &checks {
        let _ = writeln!(
            md,
            "- [{}] {} — {}",
            if c.pass { "x" } else { " " },
            c.name,
            c.detail
        );
    }
    let _ = writeln!(
        md,
        "\n## Requests by kind\n\n\"Right\" is the one answer allowed; \"either\" counts answers \
         near a change (a key just published or removed, a token at `exp` + leeway) where \
         200-as-the-right-user and 401 are both right.\n"
    );
    let _ = writeln!(
        md,
        "| kind | sent | right | either: accepted | either: refused | wrong | no answer | cancelled |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut kinds_json = Vec::new();
    for (k, _) in MIX {
        let ks = stats.kind(k);
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            k.name(),
            g(&ks.sent),
            g(&ks.ok),
            g(&ks.either_accepted),
            g(&ks.either_refused),
            g(&ks.wrong),
            g(&ks.transport),
            g(&ks.cancelled)
        );
        kinds_json.push(json!({
            "kind": k.name(), "sent": g(&ks.sent), "right": g(&ks.ok),
            "either_accepted": g(&ks.either_accepted), "either_refused": g(&ks.either_refused),
            "wrong": g(&ks.wrong), "transport": g(&ks.transport), "cancelled": g(&ks.cancelled),
        }));
    }
    let statuses = stats.statuses.lock().unwrap().clone();
    let _ = writeln!(
        md,
        "\nStatuses: {}.",
        statuses
            .iter()
            .map(|(s, n)| format!("{s} × {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        md,
        "\n## Setup\n\n\
         - Gateway: the release binary, one process, JSON logs (access log off); JWKS \
         `refresh_interval` {REFRESH_INTERVAL} s, `refresh_cooldown` {REFRESH_COOLDOWN} s, \
         `fetch_timeout` {FETCH_TIMEOUT} s, `leeway` {LEEWAY} s.\n\
         - Keys: RSA-2048 (RS256 and PS256) and P-521 (ES512) published throughout; a \
         rotating key (Ed25519, every third P-256) replaced every {:.0} s, the old one \
         removed {:.0} s later and its tokens still sent for {:.0} s after that.\n\
         - {} users; their tokens live {} s and are re-minted with a third left; \
         short-lived tokens (2–5 s) are used until 3 s past `exp` + leeway.\n\
         - Outages: {}, one every ~{:.0} s after the {:.0} s warm-up, {:.1}–{:.1} s each.\n\
         - Each client connection is closed and reopened every 200–2000 requests.",
        plan.rotate_every,
        plan.rotate_grace,
        plan.rotate_every,
        plan.users,
        plan.token_ttl,
        o.outages.len(),
        plan.outage_every,
        plan.warmup,
        plan.outage_len.0,
        plan.outage_len.1,
    );
    std::fs::write(plan.out.join("summary.md"), &md)?;
    let summary = json!({
        "pass": pass,
        "duration_s": plan.duration,
        "seed": plan.seed,
        "revision": revision,
        "workers": plan.workers,
        "h2_workers": plan.h2_workers,
        "target_rate": plan.rate,
        "requests": completed,
        "rate": rate,
        "wrong_answers": wrong,
        "slow_answers": slow,
        "slow_bound_s": crate::load::slow_bound(),
        "transport_errors": transport,
        "rss_kib": { "start": rss_start, "end": rss_end, "peak": rss_peak, "idle_before_load": o.idle_rss, "bound_growth": bound, "trend_mib_per_hour": slope },
        "fds": { "start": fds_start, "end": fds_end, "peak": fds_peak, "idle_before_load": o.idle_fds, "after_clients_closed": o.after_fds, "tolerance": tol },
        "threads": { "start": thr_start, "end": thr_end },
        "latency_ms": { "p50": p50, "p99": p99, "p999": p999, "max": lmax, "worst_second_p99": worst.map(|w| w.p99_ms) },
        "rotations": o.rotations.len(),
        "outages": o.outages.len(),
        "jwks_fetches": { "ok": fetch_ok, "error": fetch_err, "issuer_hits": o.jwks_hits, "bound": fetch_bound },
        "propagation_s": { "in_max": worst_in, "out_max": worst_out, "bound": prop_bound },
        "exit_code": o.exit_code,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "kinds": kinds_json,
        "checks": checks.iter().map(|c| json!({"name": c.name, "pass": c.pass, "detail": c.detail})).collect::<Vec<_>>(),
    });
    std::fs::write(
        plan.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;

    println!("\n{}", if pass { "soak: PASS" } else { "soak: FAIL" });
    for c in &checks {
        println!(
            "  [{}] {} — {}",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if slow > 0 {
        println!(
            "soak: note: {slow} answers took longer than {:.0} s (see slow.log)",
            crate::load::slow_bound()
        );
    }
    println!(
        "soak: {completed} requests, {wrong} wrong, RSS {} → {}, fds {fds_start:.0} → {fds_end:.0}, p99 {p99:.2} ms",
        mib(rss_start),
        mib(rss_end)
    );
    println!(
        "soak: wrote {}/{{soak.csv,soak.png,summary.md,summary.json}}",
        plan.out.display()
    );
    Ok(pass)
}
