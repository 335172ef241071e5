//! The load: workers on keep-alive connections (HTTP/1.1 and h2c), each sending a mix
//! of valid and bad requests at a steady pace, and judging every answer.
//!
//! A request's expected answer is known when it is built: a token of user `sub` signed
//! by key `kid` with expiry `exp` must be accepted (200, and the upstream saw exactly
//! `X-User-Id: sub`) or refused (401) according to the key's timeline at the issuer and
//! to `exp` plus the leeway; a bad token must get 401; a public route must reach the
//! upstream without any identity. Near a change (a key just published or just removed,
//! a token at its expiry) both answers are right, within a stated slack.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::jwks::{Jwks, Verdict};
use crate::keys::{self, Alg, SigningKey, b64};
use crate::upstream::Echo;
use crate::util::{Rng, now, unix, unix_secs};

/// The longest a request should wait: a periodic JWKS fetch in flight, then the
/// request's own unknown-kid refetch, each bounded by `fetch_timeout`; plus 1 s.
pub fn slow_bound() -> f64 {
    2.0 * crate::FETCH_TIMEOUT + 1.0
}

/// Margin around `exp + leeway` within which either answer is right (same clock on both
/// sides; this covers the time between reading it and the check).
const EXP_SLACK: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Valid,
    ValidPost,
    ForgedHeaders,
    RetiredKey,
    Expiring,
    Public,
    Expired,
    WrongAudience,
    WrongIssuer,
    NotYetValid,
    TamperedPayload,
    TamperedSignature,
    KidSwap,
    AlgNone,
    Hs256Confusion,
    UnknownKid,
    NoToken,
    Malformed,
    Cancelled,
}

/// Who a worker is. Tokens the gateway has no key for (a rotated-out key, a random
/// kid) may wait for a JWKS fetch while the issuer hangs; they come from clients of
/// their own, as they would in life, so that such a wait holds up no one else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything but the two kinds below.
    Mixed,
    /// Tokens of rotated-out keys only (users who kept an old token).
    Stale,
    /// Unknown kids only.
    Attacker,
}

impl Role {
    fn only(self) -> Option<Kind> {
        match self {
            Role::Mixed => None,
            Role::Stale => Some(Kind::RetiredKey),
            Role::Attacker => Some(Kind::UnknownKid),
        }
    }

    /// This role's share of the total rate.
    fn share(self) -> f64 {
        let w = |k: Kind| MIX.iter().find(|(x, _)| *x == k).unwrap().1 as f64 / 1000.0;
        match self.only() {
            Some(k) => w(k),
            None => 1.0 - w(Kind::RetiredKey) - w(Kind::UnknownKid),
        }
    }
}

/// The clients besides the mixed workers: each role gets one HTTP/1.1 and one h2c.
pub const COHORTS: [(Role, usize); 2] = [(Role::Stale, 2), (Role::Attacker, 2)];

/// Kinds and weights (per mille).
pub const MIX: [(Kind, u32); 19] = [
    (Kind::Valid, 475),
    (Kind::ValidPost, 60),
    (Kind::ForgedHeaders, 100),
    (Kind::RetiredKey, 60),
    (Kind::Expiring, 50),
    (Kind::Public, 30),
    (Kind::Expired, 30),
    (Kind::WrongAudience, 15),
    (Kind::WrongIssuer, 15),
    (Kind::NotYetValid, 10),
    (Kind::TamperedPayload, 30),
    (Kind::TamperedSignature, 20),
    (Kind::KidSwap, 15),
    (Kind::AlgNone, 10),
    (Kind::Hs256Confusion, 10),
    (Kind::UnknownKid, 30),
    (Kind::NoToken, 25),
    (Kind::Malformed, 10),
    (Kind::Cancelled, 5),
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid token",
            Kind::ValidPost => "valid token, POST with body",
            Kind::ForgedHeaders => "valid token + forged X-User-Id",
            Kind::RetiredKey => "token of a rotated-out key",
            Kind::Expiring => "short-lived token (across exp)",
            Kind::Public => "public route (+ forged header)",
            Kind::Expired => "expired token",
            Kind::WrongAudience => "wrong audience",
            Kind::WrongIssuer => "wrong issuer",
            Kind::NotYetValid => "nbf in the future",
            Kind::TamperedPayload => "payload swapped (other sub)",
            Kind::TamperedSignature => "signature altered",
            Kind::KidSwap => "kid of another published key",
            Kind::AlgNone => "alg none",
            Kind::Hs256Confusion => "HS256 with the public key",
            Kind::UnknownKid => "unknown kid (unpublished key)",
            Kind::NoToken => "no token",
            Kind::Malformed => "malformed Authorization",
            Kind::Cancelled => "client gives up mid-request",
        }
    }

    fn index(self) -> usize {
        MIX.iter().position(|(k, _)| *k == self).unwrap()
    }
}

/// Run-wide settings the workers need.
pub struct Settings {
    pub iss: String,
    pub aud: String,
    pub leeway: f64,
    /// Lifetime of the users' tokens; they are re-minted with a third of it left.
    pub token_ttl: i64,
    pub users: u32,
    pub workers: usize,
    pub rate: f64,
    /// How long after its removal the rotated-out key's tokens are still sent.
    pub retired_traffic: f64,
}

/// The rotating key and the keys the issuer publishes.
pub struct Ring {
    pub current: Arc<SigningKey>,
    pub generation: u64,
    /// Every key whose document entry is live now (for the kid-swap forgery).
    pub published: Vec<Arc<SigningKey>>,
}

pub struct Shared {
    pub proxy: SocketAddr,
    pub jwks: Arc<Jwks>,
    pub ring: RwLock<Ring>,
    pub stable_rsa: Arc<SigningKey>,
    pub stable_p521: Arc<SigningKey>,
    /// A key no JWKS ever publishes.
    pub stranger: Arc<SigningKey>,
    pub settings: Settings,
    pub stats: Stats,
    pub stop: AtomicBool,
    rid: AtomicU64,
    /// Tokens of rotated-out keys, as the users had them (the retired-key clients use
    /// them).
    retired: Mutex<Vec<Retired>>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proxy: SocketAddr,
        jwks: Arc<Jwks>,
        ring: Ring,
        stable_rsa: Arc<SigningKey>,
        stable_p521: Arc<SigningKey>,
        stranger: Arc<SigningKey>,
        settings: Settings,
    ) -> Shared {
        Shared {
            proxy,
            jwks,
            ring: RwLock::new(ring),
            stable_rsa,
            stable_p521,
            stranger,
            settings,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            rid: AtomicU64::new(1),
            retired: Mutex::new(Vec::new()),
        }
    }

    pub fn claims(&self, sub: &str, exp: i64) -> Value {
        let now = unix_secs();
        json!({
            "sub": sub, "iss": self.settings.iss, "aud": self.settings.aud,
            "iat": now, "exp": exp, "id": sub, "email": format!("{sub}@soak.test"),
            "name": "Soak User", "emailVerified": true,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

#[derive(Default)]
pub struct KindStats {
    pub sent: AtomicU64,
    /// The answer that had to be given.
    pub ok: AtomicU64,
    /// Near a change, where either answer is right: accepted / refused.
    pub either_accepted: AtomicU64,
    pub either_refused: AtomicU64,
    pub wrong: AtomicU64,
    /// Answers slower than [`slow_bound`].
    pub slow: AtomicU64,
    pub transport: AtomicU64,
    pub cancelled: AtomicU64,
}

pub struct Stats {
    pub kinds: Vec<KindStats>,
    pub wrong: AtomicU64,
    /// Answers slower than [`slow_bound`].
    pub slow: AtomicU64,
    pub transport: AtomicU64,
    pub completed: AtomicU64,
    /// Keep-alive connections found closed by the gateway before the next request (the
    /// request then goes on a new connection, as any client would do).
    pub closed_by_gateway: AtomicU64,
    /// Answers that said `Connection: close`.
    pub connection_close: AtomicU64,
    /// Right refusals of well-formed tokens whose key the gateway could not have yet (a
    /// key rotated in during an outage, before its first fetch).
    pub refused_key_not_fetched: AtomicU64,
    pub wrong_log: Mutex<Vec<String>>,
    pub slow_log: Mutex<Vec<String>>,
    pub transport_log: Mutex<Vec<String>>,
    /// Latencies (µs) since the sampler last took them.
    pub second: Mutex<Vec<u32>>,
    pub statuses: Mutex<BTreeMap<u16, u64>>,
    /// Every latency (µs) of the load, and those after the warm-up.
    pub lat_all: Mutex<Vec<u32>>,
    pub lat_steady: Mutex<Vec<u32>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            kinds: MIX.iter().map(|_| KindStats::default()).collect(),
            wrong: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            transport: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            closed_by_gateway: AtomicU64::new(0),
            connection_close: AtomicU64::new(0),
            refused_key_not_fetched: AtomicU64::new(0),
            wrong_log: Mutex::new(Vec::new()),
            slow_log: Mutex::new(Vec::new()),
            transport_log: Mutex::new(Vec::new()),
            second: Mutex::new(Vec::with_capacity(4096)),
            statuses: Mutex::new(BTreeMap::new()),
            lat_all: Mutex::new(Vec::new()),
            lat_steady: Mutex::new(Vec::new()),
        }
    }
}

impl Stats {
    pub fn kind(&self, k: Kind) -> &KindStats {
        &self.kinds[k.index()]
    }

    /// Counts a wrong answer; the first 50 of each kind are kept with their details.
    fn wrong(&self, kind: Kind, detail: String) {
        let of_kind = self.kind(kind).wrong.fetch_add(1, Ordering::Relaxed);
        self.wrong.fetch_add(1, Ordering::Relaxed);
        if of_kind < 50 {
            eprintln!("WRONG ANSWER: {detail}");
            self.wrong_log.lock().unwrap().push(detail);
        }
    }

    fn transport(&self, kind: Kind, detail: String) {
        self.kind(kind).transport.fetch_add(1, Ordering::Relaxed);
        let n = self.transport.fetch_add(1, Ordering::Relaxed);
        if n < 200 {
            self.transport_log.lock().unwrap().push(detail);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Connections

/// One client connection: HTTP/1.1 keep-alive or h2c with prior knowledge.
pub enum Conn {
    H1(
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        JoinHandle<()>,
    ),
    H2(
        hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        JoinHandle<()>,
    ),
}

impl Conn {
    pub async fn open(addr: SocketAddr, h2: bool) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            Ok(Conn::H2(
                send,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            ))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("h1 handshake: {e}"))?;
            Ok(Conn::H1(
                send,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            ))
        }
    }

    /// Whether the connection can take another request (the gateway may have closed it
    /// after the last answer, e.g. one that said `Connection: close`).
    async fn ready(&mut self) -> bool {
        match self {
            Conn::H1(s, _) => s.ready().await.is_ok(),
            Conn::H2(s, _) => s.ready().await.is_ok(),
        }
    }

    fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(..))
    }

    /// Sends and reads the whole answer.
    async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let resp = match self {
            Conn::H1(s, _) => s.send_request(req).await,
            Conn::H2(s, _) => s.send_request(req).await,
        }
        .map_err(|e| format!("send: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        match self {
            Conn::H1(_, j) | Conn::H2(_, j) => j.abort(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

#[derive(Clone)]
struct Tok {
    token: Arc<str>,
    sub: Arc<str>,
    kid: Arc<str>,
    exp: i64,
}

enum Expect {
    /// A well-formed token: judged by its key's timeline and its `exp`.
    Token(Tok),
    /// Must be 401.
    Refuse,
    /// A public route: 200, and the upstream sees no identity.
    Public,
}

struct Plan {
    kind: Kind,
    method: Method,
    path: String,
    auth: Option<String>,
    forged: Vec<(&'static str, String)>,
    body: Bytes,
    expect: Expect,
}

struct Retired {
    kid: Arc<str>,
    toks: Vec<Tok>,
}

pub struct Worker {
    id: usize,
    h2: bool,
    role: Role,
    rng: Rng,
    shared: Arc<Shared>,
    users: Vec<u32>,
    book: HashMap<u32, Tok>,
    expiring: Vec<Tok>,
}

impl Worker {
    pub fn new(id: usize, h2: bool, role: Role, seed: u64, shared: Arc<Shared>) -> Worker {
        let n = shared.settings.workers as u32;
        let users = (0..shared.settings.users)
            .filter(|u| u % n == id as u32 % n)
            .collect();
        Worker {
            id,
            h2,
            role,
            rng: Rng::new(seed ^ (id as u64).wrapping_mul(0x1234_5678_9ABC)),
            shared,
            users,
            book: HashMap::new(),
            expiring: Vec::new(),
        }
    }

    fn pick_kind(&mut self) -> Kind {
        if let Some(k) = self.role.only() {
            return k;
        }
        let mixed = MIX
            .iter()
            .filter(|(k, _)| !matches!(k, Kind::UnknownKid | Kind::RetiredKey));
        let total: u32 = mixed.clone().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total as u64) as u32;
        for &(k, w) in mixed {
            if r < w {
                return k;
            }
            r -= w;
        }
        Kind::Valid
    }

    fn user(&mut self) -> u32 {
        self.users[self.rng.below(self.users.len() as u64) as usize]
    }

    /// The current token of user `u`, minted anew when the user's key rotated or the
    /// token has less than a third of its life left. A token of a rotated-out key is
    /// kept for the retired-key traffic.
    fn token_of(&mut self, u: u32) -> Tok {
        let s = &self.shared;
        let key = match u % 10 {
            0..=5 => s.ring.read().unwrap().current.clone(),
            6 | 7 => s.stable_rsa.clone(),
            _ => s.stable_p521.clone(),
        };
        let now = unix_secs();
        if let Some(t) = self.book.get(&u) {
            if *t.kid == key.kid && t.exp - now > s.settings.token_ttl / 3 {
                return t.clone();
            }
            if *t.kid != key.kid {
                let old = t.clone();
                let mut retired = s.retired.lock().unwrap();
                match retired.iter_mut().find(|r| r.kid == old.kid) {
                    Some(r) if r.toks.len() < 1024 => r.toks.push(old),
                    Some(_) => {}
                    None => retired.push(Retired {
                        kid: old.kid.clone(),
                        toks: vec![old],
                    }),
                }
            }
        }
        let sub = format!("user-{u}");
        let exp = now + s.settings.token_ttl;
        let token = key.mint(key.alg(u as u64 / 10), &s.claims(&sub, exp));
        let tok = Tok {
            token: token.into(),
            sub: sub.into(),
            kid: key.kid.as_str().into(),
            exp,
        };
        self.book.insert(u, tok.clone());
        tok
    }

    /// A token of a rotated-out key, while such traffic lasts.
    fn retired_token(&mut self) -> Option<Tok> {
        let jwks = &self.shared.jwks;
        let window = self.shared.settings.retired_traffic;
        let t = now();
        let mut retired = self.shared.retired.lock().unwrap();
        retired.retain(|r| {
            jwks.timeline(&r.kid)
                .and_then(|tl| tl.removed)
                .is_none_or(|removed| t < removed + window)
        });
        if retired.is_empty() {
            return None;
        }
        let r = &retired[self.rng.below(retired.len() as u64) as usize];
        Some(r.toks[self.rng.below(r.toks.len() as u64) as usize].clone())
    }

    /// A short-lived token, used until a few seconds past its expiry.
    fn expiring_token(&mut self) -> Tok {
        let s = self.shared.clone();
        let leeway = s.settings.leeway;
        let u = unix();
        self.expiring.retain(|t| u < t.exp as f64 + leeway + 3.0);
        if self.expiring.len() < 4 {
            let sub = format!("short-{}-{}", self.id, self.rng.below(1_000_000));
            let exp = unix_secs() + 2 + self.rng.below(4) as i64;
            let key = &s.stable_rsa;
            let token = key.mint(Alg::RS256, &s.claims(&sub, exp));
            self.expiring.push(Tok {
                token: token.into(),
                sub: sub.into(),
                kid: key.kid.as_str().into(),
                exp,
            });
        }
        self.expiring[self.rng.below(self.expiring.len() as u64) as usize].clone()
    }

    fn forged_headers(&mut self) -> Vec<(&'static str, String)> {
        let v = format!("forged-{}", self.rng.below(1000));
        let mut h = vec![("x-user-id", v.clone())];
        match self.rng.below(3) {
            0 => h.push(("x_user_id", v)),
            1 => h.push(("x.user.id", v)),
            _ => h.push(("x-user-id", format!("{v}-second"))),
        }
        h
    }

    fn plan(&mut self, rid: u64) -> Option<Plan> {
        let kind = self.pick_kind();
        let s = self.shared.clone();
        let mut plan = Plan {
            kind,
            method: Method::GET,
            path: format!("/api/items/{rid}?w={}", self.id),
            auth: None,
            forged: Vec::new(),
            body: Bytes::new(),
            expect: Expect::Refuse,
        };
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        let now_s = unix_secs();
        match kind {
            Kind::Valid | Kind::ValidPost | Kind::ForgedHeaders | Kind::Cancelled => {
                let u = self.user();
                let tok = self.token_of(u);
                plan.auth = bearer(&tok.token);
                plan.expect = Expect::Token(tok);
                if kind == Kind::ValidPost {
                    plan.method = Method::POST;
                    let len = self.rng.below(8192) as usize;
                    plan.body = Bytes::from(vec![b'x'; len]);
                }
                if kind == Kind::ForgedHeaders {
                    plan.forged = self.forged_headers();
                }
                if kind == Kind::Cancelled {
                    plan.path = format!("/api/slow/{rid}");
                }
            }
            Kind::RetiredKey => {
                // Nothing to send before the first rotation.
                let tok = self.retired_token()?;
                plan.auth = bearer(&tok.token);
                plan.expect = Expect::Token(tok);
            }
            Kind::Expiring => {
                let tok = self.expiring_token();
                plan.auth = bearer(&tok.token);
                plan.expect = Expect::Token(tok);
            }
            Kind::Public => {
                plan.path = format!("/public/ping/{rid}");
                if self.rng.chance(0.5) {
                    let u = self.user();
                    plan.auth = bearer(&self.token_of(u).token);
                }
                plan.forged = self.forged_headers();
                plan.expect = Expect::Public;
            }
            Kind::Expired | Kind::WrongAudience | Kind::WrongIssuer | Kind::NotYetValid => {
                let key = s.ring.read().unwrap().current.clone();
                let sub = format!("user-{}", self.user());
                let mut claims = s.claims(&sub, now_s + 600);
                match kind {
                    Kind::Expired => {
                        let exp = now_s - 120 - self.rng.below(3600) as i64;
                        claims["exp"] = json!(exp);
                        claims["iat"] = json!(exp - 900);
                    }
                    Kind::WrongAudience => claims["aud"] = json!("https://elsewhere.example"),
                    Kind::WrongIssuer => claims["iss"] = json!("https://issuer.example"),
                    _ => claims["nbf"] = json!(now_s + 600),
                }
                plan.auth = bearer(&key.mint(key.alg(0), &claims));
            }
            Kind::TamperedPayload | Kind::TamperedSignature | Kind::KidSwap => {
                let u = self.user();
                let tok = self.token_of(u);
                let parts: Vec<&str> = tok.token.split('.').collect();
                let forged = match kind {
                    Kind::TamperedPayload => {
                        let other = format!("user-{}", self.user());
                        let mut claims = s.claims(&other, tok.exp);
                        claims["sub"] = json!(format!("{other}-x"));
                        format!("{}.{}.{}", parts[0], b64(claims.to_string()), parts[2])
                    }
                    Kind::TamperedSignature => {
                        let mut sig = parts[2].as_bytes().to_vec();
                        let i = sig.len() / 2;
                        sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
                        format!(
                            "{}.{}.{}",
                            parts[0],
                            parts[1],
                            String::from_utf8(sig).unwrap()
                        )
                    }
                    _ => {
                        let header: Value = serde_json::from_slice(
                            &base64::Engine::decode(
                                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                                parts[0],
                            )
                            .unwrap(),
                        )
                        .unwrap();
                        let others: Vec<String> = s
                            .ring
                            .read()
                            .unwrap()
                            .published
                            .iter()
                            .filter(|k| *k.kid != *tok.kid)
                            .map(|k| k.kid.clone())
                            .collect();
                        let kid = &others[self.rng.below(others.len() as u64) as usize];
                        let h = json!({"alg": header["alg"], "kid": kid});
                        format!("{}.{}.{}", b64(h.to_string()), parts[1], parts[2])
                    }
                };
                plan.auth = bearer(&forged);
            }
            Kind::AlgNone => {
                let key = s.ring.read().unwrap().current.clone();
                let sub = format!("user-{}", self.user());
                let h = json!({"alg": "none", "kid": key.kid});
                let c = s.claims(&sub, now_s + 600);
                plan.auth = bearer(&format!("{}.{}.", b64(h.to_string()), b64(c.to_string())));
            }
            Kind::Hs256Confusion => {
                let key = s.stable_rsa.clone();
                let sub = format!("user-{}", self.user());
                let h = json!({"alg": "HS256", "kid": key.kid});
                let c = s.claims(&sub, now_s + 600);
                let t = keys::mint_with_header(&h, &c, |m| keys::hs256(key.public_raw(), m));
                plan.auth = bearer(&t);
            }
            Kind::UnknownKid => {
                let sub = format!("user-{}", self.user());
                let kid = format!("unknown-{:x}", self.rng.next_u64());
                let t = s
                    .stranger
                    .mint_as(&kid, Alg::EdDSA, &s.claims(&sub, now_s + 600));
                plan.auth = bearer(&t);
            }
            Kind::NoToken => {
                if self.rng.chance(0.5) {
                    plan.forged = self.forged_headers();
                }
            }
            Kind::Malformed => {
                plan.auth = Some(
                    match self.rng.below(4) {
                        0 => "Bearer not.a.jwt",
                        1 => "Basic dXNlcjpwYXNzd29yZA==",
                        2 => "Bearer eyJhbGciOiJFZERTQSJ9.e30",
                        _ => "Bearer ",
                    }
                    .to_owned(),
                );
            }
        }
        Some(plan)
    }

    fn request(&self, plan: &Plan, rid: u64, h2: bool) -> Request<Full<Bytes>> {
        let uri = if h2 {
            format!("http://{}{}", self.shared.proxy, plan.path)
        } else {
            plan.path.clone()
        };
        let mut b = Request::builder()
            .method(plan.method.clone())
            .uri(uri)
            .header("x-soak-rid", rid.to_string());
        if !h2 {
            b = b.header("host", self.shared.proxy.to_string());
        }
        if let Some(a) = &plan.auth {
            b = b.header("authorization", a);
        }
        for (k, v) in &plan.forged {
            b = b.header(*k, v);
        }
        b.body(Full::new(plan.body.clone())).expect("valid request")
    }

    pub async fn run(mut self) {
        let s = self.shared.clone();
        let peers = match self.role {
            Role::Mixed => s.settings.workers,
            r => COHORTS.iter().find(|c| c.0 == r).unwrap().1,
        };
        let period = peers as f64 / (s.settings.rate * self.role.share());
        let mut tick = tokio::time::interval(Duration::from_secs_f64(period));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut conn: Option<Conn> = None;
        let mut churn = 200 + self.rng.below(1800);
        loop {
            tick.tick().await;
            if s.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(c) = conn.as_mut()
                && !c.ready().await
            {
                s.stats.closed_by_gateway.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            if conn.is_none() {
                match Conn::open(s.proxy, self.h2).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        s.stats
                            .transport(Kind::Valid, format!("t={:.3} {e}", now()));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().unwrap();
            let rid = s.rid.fetch_add(1, Ordering::Relaxed);
            let Some(plan) = self.plan(rid) else { continue };
            let req = self.request(&plan, rid, c.is_h2());
            let kind = plan.kind;
            s.stats.kind(kind).sent.fetch_add(1, Ordering::Relaxed);
            let (t0, t0u) = (now(), unix());
            let limit = if kind == Kind::Cancelled {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(30)
            };
            let result = tokio::time::timeout(limit, c.exchange(req)).await;
            let (t1, t1u) = (now(), unix());
            match result {
                Err(_) if kind == Kind::Cancelled => {
                    s.stats.kind(kind).cancelled.fetch_add(1, Ordering::Relaxed);
                    // An HTTP/1.1 connection with a request in flight cannot be reused;
                    // h2 resets just the stream.
                    if !c.is_h2() {
                        conn = None;
                    }
                }
                Err(_) => {
                    s.stats.transport(
                        kind,
                        format!("t={t0:.3} rid={rid} {}: no answer in 30s", kind.name()),
                    );
                    conn = None;
                }
                Ok(Err(e)) => {
                    s.stats
                        .transport(kind, format!("t={t0:.3} rid={rid} {}: {e}", kind.name()));
                    conn = None;
                }
                Ok(Ok((status, headers, body))) => {
                    let us = ((t1 - t0) * 1e6) as u32;
                    if t1 - t0 > slow_bound() {
                        s.stats.kind(kind).slow.fetch_add(1, Ordering::Relaxed);
                        if s.stats.slow.fetch_add(1, Ordering::Relaxed) < 200 {
                            let kid = match &plan.expect {
                                Expect::Token(t) => t.kid.to_string(),
                                _ => "-".into(),
                            };
                            s.stats.slow_log.lock().unwrap().push(format!(
                                "{:.3} s: kind={kind:?} rid={rid} t0={t0:.3} status={} kid={kid} issuer={}",
                                t1 - t0,
                                status.as_u16(),
                                s.jwks.mode().name()
                            ));
                        }
                    }
                    s.stats.second.lock().unwrap().push(us);
                    s.stats.completed.fetch_add(1, Ordering::Relaxed);
                    *s.stats
                        .statuses
                        .lock()
                        .unwrap()
                        .entry(status.as_u16())
                        .or_default() += 1;
                    if headers
                        .get("connection")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                    {
                        s.stats.connection_close.fetch_add(1, Ordering::Relaxed);
                    }
                    self.judge(&plan, rid, (t0, t1), (t0u, t1u), status, &headers, &body);
                }
            }
            churn -= 1;
            if churn == 0 {
                conn = None;
                churn = 200 + self.rng.below(1800);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        plan: &Plan,
        rid: u64,
        (t0, t1): (f64, f64),
        (t0u, t1u): (f64, f64),
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) {
        let s = &self.shared;
        let ks = s.stats.kind(plan.kind);
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let ctx = |why: &str| {
            format!(
                "{why}; kind={:?} rid={rid} t0={t0:.3} t1={t1:.3} status={} proto={} body={text:?} auth={:?}",
                plan.kind,
                status.as_u16(),
                if self.h2 { "h2" } else { "h1" },
                plan.auth
            )
        };
        let challenge_ok = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer"));
        // The upstream's report must be about this request, and must hold no forged or
        // alternate identity header.
        let check_echo = |want_user: Option<&str>| -> Result<(), String> {
            let e = Echo::parse(body).ok_or("200 without an echo body")?;
            if e.rid != rid.to_string() {
                return Err(format!("answer belongs to request {}", e.rid));
            }
            if e.forged != 0 || e.odd != 0 {
                return Err(format!(
                    "upstream saw client identity headers (forged={} odd={})",
                    e.forged, e.odd
                ));
            }
            if e.target != plan.path {
                return Err(format!("upstream saw target {:?}", e.target));
            }
            if e.len != plan.body.len() as i64 {
                return Err(format!("upstream saw {} body bytes", e.len));
            }
            match want_user {
                Some(u) => {
                    if e.n != 1 || e.user != u {
                        return Err(format!(
                            "upstream saw X-User-Id {:?} ({} values), expected {u:?}",
                            e.user, e.n
                        ));
                    }
                    if e.email != format!("{u}@soak.test") {
                        return Err(format!("upstream saw X-User-Email {:?}", e.email));
                    }
                }
                None => {
                    if e.n != 0 || e.email != "-" {
                        return Err(format!(
                            "public route: upstream saw X-User-Id {:?} / email {:?}",
                            e.user, e.email
                        ));
                    }
                }
            }
            Ok(())
        };
        match &plan.expect {
            Expect::Refuse => match status {
                StatusCode::UNAUTHORIZED if challenge_ok => {
                    ks.ok.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::UNAUTHORIZED => s.stats.wrong(
                    plan.kind,
                    ctx("401 without a Bearer WWW-Authenticate challenge"),
                ),
                StatusCode::OK => s.stats.wrong(plan.kind, ctx("a bad token was accepted")),
                _ => s
                    .stats
                    .wrong(plan.kind, ctx("a bad token got neither 401 nor 200")),
            },
            Expect::Public => match status {
                StatusCode::OK => match check_echo(None) {
                    Ok(()) => {
                        ks.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => s.stats.wrong(plan.kind, ctx(&why)),
                },
                _ => s
                    .stats
                    .wrong(plan.kind, ctx("public route did not answer 200")),
            },
            Expect::Token(tok) => {
                let by_key = s.jwks.verdict(&tok.kid, t0, t1);
                let limit = tok.exp as f64 + s.settings.leeway;
                let by_exp = if t1u < limit - EXP_SLACK {
                    Verdict::Accept
                } else if t0u > limit + EXP_SLACK {
                    Verdict::Refuse
                } else {
                    Verdict::Either
                };
                let verdict = match (by_key, by_exp) {
                    (Verdict::Refuse, _) | (_, Verdict::Refuse) => Verdict::Refuse,
                    (Verdict::Accept, Verdict::Accept) => Verdict::Accept,
                    _ => Verdict::Either,
                };
                let timeline = || {
                    format!(
                        " kid={} sub={} exp={} key={:?} by_key={by_key:?} by_exp={by_exp:?} t0_unix={t0u:.3}",
                        tok.kid,
                        tok.sub,
                        tok.exp,
                        s.jwks.timeline(&tok.kid)
                    )
                };
                match (status, verdict) {
                    (StatusCode::OK, Verdict::Refuse) => s.stats.wrong(
                        plan.kind,
                        ctx("accepted a token that must be refused") + &timeline(),
                    ),
                    (StatusCode::OK, v) => match check_echo(Some(&tok.sub)) {
                        Ok(()) if v == Verdict::Accept => {
                            ks.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {
                            ks.either_accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => s.stats.wrong(plan.kind, ctx(&why) + &timeline()),
                    },
                    (StatusCode::UNAUTHORIZED, _) if !challenge_ok => s.stats.wrong(
                        plan.kind,
                        ctx("401 without a Bearer WWW-Authenticate challenge"),
                    ),
                    (StatusCode::UNAUTHORIZED, Verdict::Accept) => s.stats.wrong(
                        plan.kind,
                        ctx("refused a token that must be accepted") + &timeline(),
                    ),
                    (StatusCode::UNAUTHORIZED, Verdict::Refuse) => {
                        ks.ok.fetch_add(1, Ordering::Relaxed);
                        let unfetched = s.jwks.timeline(&tok.kid).is_some_and(|tl| {
                            tl.removed.is_none() && tl.served_with.is_none_or(|w| w > t1)
                        });
                        if by_key == Verdict::Refuse && by_exp != Verdict::Refuse && unfetched {
                            s.stats
                                .refused_key_not_fetched
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    (StatusCode::UNAUTHORIZED, Verdict::Either) => {
                        ks.either_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => s.stats.wrong(
                        plan.kind,
                        ctx("a token got neither 200 nor 401") + &timeline(),
                    ),
                }
            }
        }
    }
}
