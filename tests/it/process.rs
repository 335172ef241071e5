//! The real `portcullis` binary as an operator runs it: `check` on good and bad files,
//! how the config file is chosen, its logs, an HS256 provider whose secret lives only in
//! the child's environment, and a clean exit on SIGTERM with a request in flight.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::support::keys::b64;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const SECRET_ENV: &str = "PORTCULLIS_TEST_SECRET";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with no config or log settings inherited from the test's environment.
fn portcullis() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_LOG")
        .env_remove(SECRET_ENV)
        .current_dir(manifest_dir());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config file in the temp folder, removed on drop. `label` is unique per call site.
pub(crate) struct TempConfig {
    pub(crate) path: PathBuf,
}

impl TempConfig {
    pub(crate) fn new(label: &str, body: &str) -> TempConfig {
        let path =
            std::env::temp_dir().join(format!("portcullis-it-{}-{label}.toml", std::process::id()));
        std::fs::write(&path, body).unwrap();
        TempConfig { path }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn check(config: &Path) -> Output {
    portcullis()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_shipped_configs_and_lists_providers_and_routes() {
    for file in [
        "config/portcullis.example.toml",
        "config/portcullis.toml",
        "config/edge.toml",
    ] {
        let path = manifest_dir().join(file);
        let config = portcullis::Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            !config.providers.is_empty() && !config.routes.is_empty(),
            "{file}"
        );

        let out = check(&path);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        assert!(
            stdout.starts_with(&format!("{}: ok", path.display())),
            "{stdout}"
        );
        for p in &config.providers {
            assert!(
                stdout.contains(&format!("  {}: issuer {}", p.name, p.issuer)),
                "{file}: provider {} missing from\n{stdout}",
                p.name
            );
        }
        for r in &config.routes {
            assert!(
                stdout.contains(&format!("  {}: {} -> http://", r.name, r.prefix)),
                "{file}: route {} missing from\n{stdout}",
                r.name
            );
        }
    }
}

#[test]
fn the_example_config_documents_a_required_tasks_route() {
    let config =
        portcullis::Config::load(&manifest_dir().join("config/portcullis.example.toml")).unwrap();
    let tasks = config
        .routes
        .iter()
        .find(|r| r.name.as_str() == "tasks")
        .unwrap();
    assert_eq!(tasks.prefix, "/api/tasks");
    assert_eq!(tasks.auth, portcullis::config::AuthMode::Required);
    assert_eq!(config.identity.user_id_header.as_str(), "x-user-id");
}

/// A config whose first provider carries `bad_line` (on line 7).
fn provider_with(bad_line: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[[providers]]
name = "better-auth"
issuer = "http://127.0.0.1:3000"
{bad_line}

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://127.0.0.1:8000"
"#
    )
}

#[test]
fn check_names_the_file_key_and_line_of_a_mistake() {
    let url = "jwks_url = \"http://127.0.0.1:3000/jwks\"\n";
    let cases = [
        (
            "misspelled",
            format!("audiencs = [\"x\"]\n{url}"),
            "providers[0].audiencs",
            7,
        ),
        (
            "duration",
            format!("leeway = \"5 parsecs\"\n{url}"),
            "providers[0].leeway",
            7,
        ),
        (
            "plain-http",
            "jwks_url = \"http://auth.example.com/jwks\"".to_owned(),
            "providers[0].jwks_url",
            7,
        ),
    ];
    for (label, line, key, line_no) in cases {
        let file = TempConfig::new(label, &provider_with(&line));
        let out = check(&file.path);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{label}: accepted");
        let want = format!("{}:{line_no}: {key}:", file.shown());
        assert!(stderr.contains(&want), "{label}: no `{want}` in\n{stderr}");
        assert!(out.stdout.is_empty(), "{label}: {}", text(&out.stdout));
    }
}

/// Five mistakes of different kinds; line numbers are given in the comments.
const FIVE_MISTAKES: &str = r#"[server]
listen = "127.0.0.1:0"
upstream_timeout = 30

[[providers]]
name = "better-auth"
issuer = "http://127.0.0.1:3000"
jwks_url = "http://127.0.0.1:3000/jwks"
audiencs = ["x"]
leeway = "5 parsecs"

[[routes]]
name = "no-prefix"
upstream = "http://127.0.0.1:8000"

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "ftp://127.0.0.1:8000"
"#;

#[test]
fn check_reports_every_problem_even_behind_an_unknown_key() {
    let file = TempConfig::new("five-mistakes", FIVE_MISTAKES);
    let out = check(&file.path);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "accepted:\n{}", text(&out.stdout));
    let shown = file.shown();
    assert!(
        stderr.contains(&format!("{shown}: 5 problems")),
        "not five problems:\n{stderr}"
    );
    for want in [
        format!("{shown}:3: server.upstream_timeout: expected a duration string such as \"30s\""),
        format!("{shown}:9: providers[0].audiencs: unknown field `audiencs`"),
        format!("{shown}:10: providers[0].leeway: `5 parsecs` is not a duration"),
        format!("{shown}:12: routes[0]: missing field `prefix`"),
        // The route after the one set aside keeps its number in the file.
        format!("{shown}:19: routes[1].upstream:"),
    ] {
        assert!(stderr.contains(&want), "no `{want}` in\n{stderr}");
    }
    assert!(
        !stderr.contains("$__"),
        "an internal name leaked:\n{stderr}"
    );
}

#[test]
fn check_gives_the_reason_a_config_file_cannot_be_read() {
    let missing = std::env::temp_dir().join(format!(
        "portcullis-it-{}-does-not-exist.toml",
        std::process::id()
    ));
    let out = check(&missing);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read config file {}: No such file or directory",
            missing.display()
        )),
        "{stderr}"
    );

    let out = check(&std::env::temp_dir());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Is a directory"), "{stderr}");
}

#[test]
fn check_refuses_a_prefix_with_a_trailing_slash_or_a_glob_and_says_why() {
    for (label, prefix, why) in [
        ("slash", "/api/tasks/", "ends with `/`"),
        ("star", "/api/tasks*", "holds `*`"),
        ("star-segment", "/api/*", "holds `*`"),
        ("question", "/api/task?", "holds `?`"),
        ("bracket", "/api/[a-z]", "holds `[`"),
    ] {
        let body = provider_with("jwks_url = \"http://127.0.0.1:3000/jwks\"")
            .replace("prefix = \"/api\"", &format!("prefix = \"{prefix}\""));
        let file = TempConfig::new(&format!("prefix-{label}"), &body);
        let out = check(&file.path);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{prefix}: accepted");
        let want = format!("{}:11: routes[0].prefix: `{prefix}` {why}", file.shown());
        assert!(stderr.contains(&want), "{prefix}: no `{want}` in\n{stderr}");
        assert!(
            stderr.contains(": 1 problem"),
            "{prefix}: reported twice:\n{stderr}"
        );
    }
    // The root itself ends with `/` and is fine.
    let body = provider_with("jwks_url = \"http://127.0.0.1:3000/jwks\"")
        .replace("prefix = \"/api\"", "prefix = \"/\"");
    let file = TempConfig::new("prefix-root", &body);
    let out = check(&file.path);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_config_file_comes_from_the_flag_then_portcullis_config() {
    let example = manifest_dir().join("config/portcullis.example.toml");
    let bad = TempConfig::new("env-bad", &provider_with("audiencs = []"));

    // PORTCULLIS_CONFIG is read when --config is absent.
    let out = portcullis()
        .arg("check")
        .env("PORTCULLIS_CONFIG", &bad.path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&bad.shown()),
        "{}",
        text(&out.stderr)
    );
    let out = portcullis()
        .arg("check")
        .env("PORTCULLIS_CONFIG", &example)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{}: ok", example.display())));

    // --config wins over the variable.
    let out = portcullis()
        .args(["check", "--config", "config/portcullis.example.toml"])
        .env("PORTCULLIS_CONFIG", &bad.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A relative --config resolves against the working directory.
    let out = portcullis()
        .args(["check", "--config", "portcullis.example.toml"])
        .current_dir(manifest_dir().join("config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("portcullis.example.toml: ok"));
}

/// Removes ANSI colour sequences from a text-format log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The proxy and admin addresses from the "portcullis listening" line, in either log
/// format.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("portcullis listening") {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(&line) {
        return Some((
            v["proxy_addr"].as_str()?.parse().ok()?,
            v["admin_addr"].as_str()?.parse().ok()?,
        ));
    }
    let field = |name: &str| -> Option<SocketAddr> {
        let rest = &line[line.find(name)? + name.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((field("proxy_addr=")?, field("admin_addr=")?))
}

/// The binary running `run` on a config that listens on port 0.
pub(crate) struct Running {
    pub(crate) child: tokio::process::Child,
    pub(crate) proxy: SocketAddr,
    pub(crate) admin: SocketAddr,
    stderr: JoinHandle<Vec<String>>,
    /// Every stderr line so far, while the binary runs.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts the binary and waits for its "portcullis listening" line, which carries the
    /// addresses it bound (so no port is picked in advance).
    pub(crate) async fn start(
        config: &TempConfig,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Running {
        let mut child = tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove(SECRET_ENV)
            .env("PORTCULLIS_LOG", "debug")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stderr = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut lines = BufReader::new(pipe).lines();
                let mut all = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line.clone());
                    seen.lock().unwrap().push(line.clone());
                    all.push(line);
                }
                all
            }
        });
        let addrs = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = rx.recv().await {
                if let Some(addrs) = listening_addrs(&line) {
                    return Some(addrs);
                }
            }
            None
        })
        .await
        .expect("the gateway logs its addresses in time");
        let Some((proxy, admin)) = addrs else {
            let status = child.wait().await.unwrap();
            panic!("the gateway exited ({status}): {:?}", stderr.await.unwrap());
        };
        Running {
            child,
            proxy,
            admin,
            stderr,
            seen,
        }
    }

    /// The stderr lines written so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while send(self.admin, Method::GET, "/readyz", &[], "")
            .await
            .status
            != StatusCode::OK
        {
            assert!(Instant::now() < deadline, "the gateway never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the status and every stderr line.
    async fn exit(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the gateway exits in time")
            .unwrap();
        (status, self.stderr.await.unwrap())
    }

    /// SIGTERM, then [`Running::exit`].
    pub(crate) async fn stop(self) -> (ExitStatus, Vec<String>) {
        self.sigterm();
        self.exit().await
    }
}

pub(crate) fn run_config(label: &str, body: &str) -> TempConfig {
    TempConfig::new(
        label,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             shutdown_timeout = \"10s\"\n{body}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let config = run_config(
        "sigterm",
        &format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    );
    let gw = Running::start(&config, &["run"], &[]).await;
    gw.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims("user-1"));
    let auth = format!("Bearer {token}");

    let resp = send(
        gw.proxy,
        Method::GET,
        "/api/tasks",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(upstream.last().one("x-user-id"), Some("user-1"));

    upstream.set_delay(Duration::from_secs(1));
    let proxy = gw.proxy;
    let slow = tokio::spawn(async move {
        send(
            proxy,
            Method::GET,
            "/api/slow",
            &[("authorization", &auth)],
            "",
        )
        .await
    });
    // SIGTERM only once the upstream holds the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.hits() < 2 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (proxy, admin) = (gw.proxy, gw.admin);
    gw.sigterm();

    let resp = slow.await.unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["target"], "/api/slow");
    let (status, stderr) = gw.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    for addr in [proxy, admin] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts connections after exit"
        );
    }
    // Text logs (at debug) never carry the token or the published key either.
    let sig = token.rsplit('.').next().unwrap();
    let x = key.jwk(None)["x"].as_str().unwrap().to_owned();
    for line in &stderr {
        assert!(!line.contains(sig), "the token is logged: {line}");
        assert!(!line.contains(&x), "the key is logged: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_an_access_line_and_never_the_token_or_key() {
    let key = SigningKey::ed25519("k1");
    let jwk = key.jwk(None);
    let jwks = JwksServer::start(vec![jwk.clone()]).await;
    let upstream = Upstream::start().await;
    let config = run_config(
        "json-logs",
        &format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    );
    let gw = Running::start(&config, &["--log-format", "json", "run"], &[]).await;
    gw.wait_ready().await;

    let good = key.mint(Alg::EdDSA, &claims("user-1"));
    let mut expired = claims("user-1");
    expired["exp"] = json!(now() - 3600);
    let expired = key.mint(Alg::EdDSA, &expired);
    let mut tampered = good.clone();
    tampered.insert_str(good.rfind('.').unwrap() + 1, "AAAA");
    let unknown_kid = SigningKey::ed25519_other("k9").mint(Alg::EdDSA, &claims("user-2"));
    for (token, want) in [
        (&good, StatusCode::OK),
        (&expired, StatusCode::UNAUTHORIZED),
        (&tampered, StatusCode::UNAUTHORIZED),
        (&unknown_kid, StatusCode::UNAUTHORIZED),
    ] {
        let auth = format!("Bearer {token}");
        let resp = send(
            gw.proxy,
            Method::GET,
            "/api/tasks",
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(resp.status, want);
    }
    let (status, stderr) = gw.stop().await;
    assert!(status.success(), "{stderr:#?}");

    let x = jwk["x"].as_str().unwrap();
    let mut secrets = vec![x.to_owned()];
    for t in [&good, &expired, &tampered, &unknown_kid] {
        secrets.extend(t.split('.').skip(1).map(str::to_owned));
    }
    let mut access = Vec::new();
    for line in &stderr {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "a secret is logged: {line}");
        }
        if v["target"] == "portcullis::access" {
            access.push(v);
        }
    }
    assert!(
        access.iter().any(|v| v["status"] == 200
            && v["route"] == "api"
            && v["user"] == "user-1"
            && v["path"] == "/api/tasks"),
        "no access line for the 200: {access:#?}"
    );
    assert_eq!(
        access.iter().filter(|v| v["status"] == 401).count(),
        3,
        "{access:#?}"
    );
}

const SECRET: &str = "correct horse battery staple, 32+ bytes of secret";

fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn shared_secret_config(upstream: &str) -> String {
    format!(
        r#"
[[providers]]
name = "shared"
issuer = "https://app.example"
secret_env = "{SECRET_ENV}"
audiences = ["https://app.example"]

[[routes]]
name = "api"
prefix = "/api"
upstream = "{upstream}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_secret_provider_accepts_hs256_with_its_secret_only() {
    let upstream = Upstream::start().await;
    let config = run_config("hs256", &shared_secret_config(&upstream.url()));
    // The secret is in the child's environment only, never in the test process's.
    let gw = Running::start(&config, &["run"], &[(SECRET_ENV, SECRET)]).await;
    gw.wait_ready().await;

    let mut c = claims("hs-user");
    c["iss"] = json!("https://app.example");
    c["aud"] = json!("https://app.example");
    let good = hs256(SECRET, &c);
    let wrong = hs256("another secret that is also long enough!", &c);
    let eddsa = SigningKey::ed25519("k1").mint(Alg::EdDSA, &c);
    // `alg: none` with the secret's provider as issuer.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string()),
        b64(c.to_string())
    );
    for (what, token, want) in [
        ("right secret", &good, StatusCode::OK),
        ("wrong secret", &wrong, StatusCode::UNAUTHORIZED),
        ("EdDSA", &eddsa, StatusCode::UNAUTHORIZED),
        ("alg none", &none, StatusCode::UNAUTHORIZED),
    ] {
        let auth = format!("Bearer {token}");
        let resp = send(
            gw.proxy,
            Method::GET,
            "/api/tasks",
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(resp.status, want, "{what}: {}", resp.text());
    }
    assert_eq!(upstream.hits(), 1);
    assert_eq!(upstream.last().one("x-user-id"), Some("hs-user"));

    let (status, stderr) = gw.stop().await;
    assert!(status.success(), "{stderr:#?}");
    for line in &stderr {
        assert!(!line.contains(SECRET), "the secret is logged: {line}");
        let sig = good.rsplit('.').next().unwrap();
        assert!(!line.contains(sig), "the token is logged: {line}");
    }
}

#[test]
fn check_refuses_a_short_or_missing_secret_and_names_the_variable() {
    let file = TempConfig::new(
        "hs256-check",
        &shared_secret_config("http://127.0.0.1:8000"),
    );
    let short = "only 31 bytes of secret here...";
    assert_eq!(short.len(), 31);
    let cases = [
        ("short", Some(short), "shorter than 32 bytes"),
        ("unset", None, "is not set"),
        ("empty", Some(""), "is empty"),
    ];
    for (what, value, reason) in cases {
        let mut cmd = portcullis();
        cmd.args(["check", "--config"]).arg(&file.path);
        if let Some(v) = value {
            cmd.env(SECRET_ENV, v);
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(stderr.contains(SECRET_ENV), "{what}: {stderr}");
        assert!(
            stderr.contains("providers[0].secret_env"),
            "{what}: {stderr}"
        );
        assert!(stderr.contains(reason), "{what}: {stderr}");
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            assert!(!stderr.contains(v), "{what}: the secret is printed");
        }
    }

    // With a good secret, check passes and the summary names the variable, not its value.
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&file.path)
        .env(SECRET_ENV, SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("shared secret from ${SECRET_ENV}")),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !text(&out.stderr).contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_file_and_a_broken_file_keeps_the_old_config() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let body = |up: &str| format!("{}{}", provider_toml(&jwks.url(), ""), routes_toml(up));
    let config = run_config("sighup", &body(&a.url()));
    let gw = Running::start(&config, &["run"], &[]).await;
    gw.wait_ready().await;
    let auth = format!("Bearer {}", key.mint(Alg::EdDSA, &claims("user-1")));
    let get = |path: &'static str| {
        let (proxy, auth) = (gw.proxy, auth.clone());
        async move {
            send(proxy, Method::GET, path, &[("authorization", &auth)], "")
                .await
                .status
        }
    };
    assert_eq!(get("/api/one").await, StatusCode::OK);
    assert_eq!(a.hits(), 1);

    let hup = |pid: u32| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let pid = gw.child.id().expect("running");
    // A long request is in flight on the old config...
    a.set_delay(Duration::from_millis(800));
    let slow = tokio::spawn(get("/api/slow"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.hits() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...when the route moves to upstream B: after SIGHUP, requests go there.
    let reloaded = run_config("sighup", &body(&b.url()));
    hup(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.hits() == 0 {
        assert!(Instant::now() < deadline, "SIGHUP did not move the route");
        assert_eq!(get("/api/poll").await, StatusCode::OK);
    }
    // The request that started on the old config finished there.
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert!(a.seen().iter().any(|s| s.target == "/api/slow"));
    // A broken file: refused, the process keeps running on the previous config.
    let broken = run_config(
        "sighup",
        &body(&b.url()).replace("[[routes]]", "[[routez]]"),
    );
    hup(pid);
    let m = loop {
        let m = send(gw.admin, Method::GET, "/metrics", &[], "")
            .await
            .text();
        if m.contains("portcullis_config_reloads_total{result=\"error\"} 1") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the broken reload was never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        m.contains("portcullis_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    let before = b.hits();
    assert_eq!(get("/api/after").await, StatusCode::OK);
    assert_eq!(b.hits(), before + 1);
    drop((reloaded, broken));
    let (status, stderr) = gw.stop().await;
    assert_eq!(status.code(), Some(0));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("config reload refused") && l.contains("routez")),
        "the refusal and its reason are logged: {stderr:#?}"
    );
}
