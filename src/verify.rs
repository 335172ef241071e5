//! Token verification: the token's `iss` picks the provider, the provider's keys (and only
//! its keys) check the signature, then the claims are checked with strict types. A token
//! that passed is cached by a hash of its full text until its `exp`, so a token seen
//! again costs a hash and a lookup; a cached entry dies early if its key leaves the JWKS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use http::{HeaderName, HeaderValue};
use moka::sync::Cache;
use serde_json::Value;

use crate::alg::Alg;
use crate::config::{Config, IdentityConfig, KeySource, ProviderConfig};
use crate::error::{Error, TokenError};
use crate::jwks::{Key, KeySet, KeyStore, Refetch};
use crate::metrics::Metrics;
use crate::revoke::Marks;
use crate::token::{self, Claims, Profile, Unverified};

/// Longest `sub` accepted; it becomes a header value the backend filters by.
const MAX_SUBJECT_LEN: usize = 255;
/// Longest claim value copied into a header.
const MAX_CLAIM_HEADER_LEN: usize = 4096;

/// A token the gateway refused, and the provider it was checked against when it got
/// that far (it labels the metric).
#[derive(Debug)]
pub struct Refusal {
    pub provider: Option<usize>,
    pub error: Error,
}

/// Who the request is from, as the gateway verified it.
#[derive(Debug)]
pub struct Identity {
    pub provider: usize,
    pub user_id: HeaderValue,
    pub claim_headers: Vec<(HeaderName, HeaderValue)>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// What a revocation may name (`iat`, `jti`, session), checked on every request.
    pub marks: Marks,
    /// `(claim, value)` of each claim a rate limit counts by (`key = "claim:NAME"`).
    pub limit_claims: Vec<(String, String)>,
    /// The JWKS key that verified the token (`None` for a shared secret).
    key: Option<Arc<Key>>,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    valid_until: f64,
}

impl Identity {
    pub fn user_id(&self) -> &str {
        self.user_id.to_str().unwrap_or("-")
    }
}

pub enum ProviderKeys {
    Jwks(Arc<KeyStore>),
    /// `jwks_file` or inline `jwks`: fixed until the next reload.
    Static(Arc<KeySet>),
    Secret(jsonwebtoken::DecodingKey),
}

pub struct Provider {
    pub config: ProviderConfig,
    pub keys: ProviderKeys,
}

impl Provider {
    pub fn is_ready(&self) -> bool {
        match &self.keys {
            ProviderKeys::Jwks(store) => store.is_ready(),
            ProviderKeys::Static(_) | ProviderKeys::Secret(_) => true,
        }
    }
}

pub struct Authenticator {
    providers: Vec<Provider>,
    by_issuer: HashMap<String, usize>,
    cache: Option<Cache<[u8; 32], Arc<Identity>>>,
    identity: IdentityConfig,
    limit_claims: Vec<String>,
    metrics: Arc<Metrics>,
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Identity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        id: &Arc<Identity>,
        _: Instant,
    ) -> Option<Duration> {
        let left = id.valid_until - unix_now();
        Some(Duration::from_secs_f64(left.clamp(0.0, 86_400.0)))
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Authenticator {
    /// Builds the providers of `config`; every JWKS provider fetches through `client`.
    ///
    /// On a reload, `previous` hands over its key stores: a provider whose JWKS settings
    /// did not change keeps its store (keys, refresh schedule, cooldown) as it is; one
    /// whose key location (`jwks_url`, discovery document) stayed the same starts from the
    /// old keys.
    pub fn new(
        config: &Config,
        client: &reqwest::Client,
        metrics: &Arc<Metrics>,
        previous: Option<&Authenticator>,
    ) -> Authenticator {
        let old_stores: Vec<&Arc<KeyStore>> = previous
            .map(|a| {
                a.providers
                    .iter()
                    .filter_map(|p| match &p.keys {
                        ProviderKeys::Jwks(s) => Some(s),
                        ProviderKeys::Static(_) | ProviderKeys::Secret(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut providers = Vec::with_capacity(config.providers.len());
        let mut by_issuer = HashMap::new();
        for (i, p) in config.providers.iter().enumerate() {
            let keys = match &p.keys {
                KeySource::Jwks(j) => {
                    let same = old_stores.iter().find(|s| {
                        s.provider() == &p.name
                            && s.config() == j
                            && s.algorithms() == p.algorithms.as_slice()
                    });
                    let store = match same {
                        Some(s) => Arc::clone(s),
                        None => {
                            let seed = old_stores
                                .iter()
                                .find(|s| s.config().location == j.location)
                                .and_then(|s| s.seed());
                            Arc::new(KeyStore::new(
                                &p.name,
                                j.clone(),
                                p.algorithms.clone(),
                                client.clone(),
                                metrics.clone(),
                                seed,
                            ))
                        }
                    };
                    ProviderKeys::Jwks(store)
                }
                KeySource::Static(k) => ProviderKeys::Static(k.set.clone()),
                KeySource::Secret(s) => {
                    ProviderKeys::Secret(jsonwebtoken::DecodingKey::from_secret(&s.bytes))
                }
            };
            by_issuer.insert(p.issuer.clone(), i);
            providers.push(Provider {
                config: p.clone(),
                keys,
            });
        }
        let cache = (config.server.token_cache_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(config.server.token_cache_entries)
                .expire_after(UntilExpiry)
                .build()
        });
        Authenticator {
            providers,
            by_issuer,
            cache,
            identity: config.identity.clone(),
            limit_claims: crate::limit::claims(config),
            metrics: metrics.clone(),
        }
    }

    /// Every JWKS key store in use.
    pub fn key_stores(&self) -> impl Iterator<Item = &Arc<KeyStore>> {
        self.providers.iter().filter_map(|p| match &p.keys {
            ProviderKeys::Jwks(s) => Some(s),
            ProviderKeys::Static(_) | ProviderKeys::Secret(_) => None,
        })
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Verifies `token` as a JWT of `profile` and returns who it speaks for. Counts
    /// nothing: the pipeline counts each request's outcome once.
    pub async fn authenticate(
        &self,
        token: &str,
        profile: Profile,
    ) -> Result<Arc<Identity>, Refusal> {
        let refused = |provider, error: Error| Refusal { provider, error };
        if token.len() > token::MAX_TOKEN_LEN {
            return Err(refused(None, TokenError::TooLarge.into()));
        }
        // The profile is part of the key: a token verified as a session cookie is never
        // found in the cache as a bearer token, nor the reverse.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&[profile as u8]);
        ctx.update(token.as_bytes());
        let hash: [u8; 32] = ctx
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(cache) = &self.cache {
            let hit = cache.get(&hash);
            self.metrics.token_cache(hit.is_some());
            if let Some(id) = hit {
                if self.still_valid(&id) {
                    return Ok(id);
                }
                cache.invalidate(&hash);
            }
        }
        let t = token::parse_as(token, profile).map_err(|e| refused(None, e.into()))?;
        let index = self.provider_for(&t).map_err(|e| refused(None, e.into()))?;
        let id = Arc::new(
            self.verify(index, t, profile)
                .await
                .map_err(|e| refused(Some(index), e))?,
        );
        if let Some(cache) = &self.cache {
            cache.insert(hash, id.clone());
        }
        Ok(id)
    }

    /// The provider a token's `iss` selects.
    fn provider_for(&self, t: &Unverified<'_>) -> Result<usize, TokenError> {
        let iss = t.claims.iss.as_deref().ok_or(TokenError::MissingIssuer)?;
        self.by_issuer
            .get(iss)
            .copied()
            .ok_or(TokenError::UnknownIssuer)
    }

    fn still_valid(&self, id: &Identity) -> bool {
        if unix_now() > id.valid_until {
            return false;
        }
        match (&self.providers[id.provider].keys, &id.key) {
            (ProviderKeys::Jwks(store), Some(key)) => {
                store.keys().is_some_and(|set| set.contains(key))
            }
            (ProviderKeys::Static(set), Some(key)) => set.contains(key),
            (ProviderKeys::Secret(_), None) => true,
            _ => false,
        }
    }

    async fn verify(
        &self,
        index: usize,
        mut t: Unverified<'_>,
        profile: Profile,
    ) -> Result<Identity, Error> {
        let provider = &self.providers[index];
        if !provider.config.algorithms.contains(&t.alg) {
            return Err(TokenError::AlgNotAllowed.into());
        }
        // Cheap claim checks first: an expired token never costs a signature check, and
        // never makes the gateway fetch keys for its `kid`.
        let valid_until = check_claims(&t.claims, &provider.config, profile)?;
        let mut cookie_session = None;
        if profile == Profile::Session {
            // Without its session's id, a cookie could not be revoked by session: refused.
            let id = session_id(&t.claims).ok_or(TokenError::ClaimType("session.id"))?;
            cookie_session = Some(id);
            t.claims = t.claims.session_view()?;
        }
        let user_id = subject_header(&t.claims)?;

        let key = match &provider.keys {
            ProviderKeys::Secret(secret) => {
                if t.alg != Alg::HS256 {
                    return Err(TokenError::AlgNotAllowed.into());
                }
                let ok = jsonwebtoken::crypto::verify(
                    t.signature_b64,
                    t.signing_input,
                    secret,
                    jsonwebtoken::Algorithm::HS256,
                )
                .unwrap_or(false);
                if !ok {
                    return Err(TokenError::BadSignature.into());
                }
                None
            }
            ProviderKeys::Jwks(store) => {
                let key = find_key(store, &provider.config.name, t.alg, t.kid.as_deref()).await?;
                check_signature(&key, &t)?;
                Some(key)
            }
            ProviderKeys::Static(set) => {
                let key = match t.kid.as_deref() {
                    Some(kid) => set.get(kid).ok_or(TokenError::UnknownKid)?,
                    None => set.sole_for(t.alg).ok_or(TokenError::MissingKid)?,
                };
                check_signature(key, &t)?;
                Some(key.clone())
            }
        };

        let mut marks = Marks::of(&t.claims, provider.config.session_claim.as_deref());
        if let Some(id) = cookie_session {
            marks.session = Some(id);
        }
        Ok(Identity {
            provider: index,
            user_id,
            claim_headers: self.claim_headers(&t.claims),
            scopes: t.claims.scopes(provider.config.scopes_claim.as_deref()),
            roles: t.claims.roles(provider.config.roles_claim.as_deref()),
            marks,
            limit_claims: crate::limit::claim_values(&self.limit_claims, &t.claims.all),
            key,
            valid_until,
        })
    }

    fn claim_headers(&self, claims: &Claims) -> Vec<(HeaderName, HeaderValue)> {
        self.identity
            .claim_headers
            .iter()
            .filter_map(|(claim, header)| {
                let v = claims.all.get(claim).and_then(claim_header_value)?;
                Some((header.clone(), v))
            })
            .collect()
    }
}

/// The id of the session a Better Auth session cookie belongs to (`session.id`): what a
/// revocation by session names, as the `session_claim` of the app's JWTs does. The
/// cookie's own `sid` is the session's token, a credential, and is never read as one.
fn session_id(claims: &Claims) -> Option<Box<str>> {
    let id = claims.all.get("session")?.get("id")?.as_str()?;
    (!id.is_empty()).then(|| Box::from(id))
}

async fn find_key(
    store: &KeyStore,
    provider: &str,
    alg: Alg,
    kid: Option<&str>,
) -> Result<Arc<Key>, Error> {
    let set = store.keys().ok_or_else(|| Error::KeysUnavailable {
        provider: provider.to_owned(),
        stale: store.is_stale(),
    })?;
    let Some(kid) = kid else {
        return set
            .sole_for(alg)
            .cloned()
            .ok_or(TokenError::MissingKid.into());
    };
    if let Some(k) = set.get(kid) {
        return Ok(k.clone());
    }
    // Maybe the issuer rotated and this is the first token signed by the new key.
    let fresh: Arc<KeySet> = match store.refetch_for_unknown_kid().await {
        Refetch::Fresh(set) => set,
        Refetch::Skipped => return Err(TokenError::UnknownKid.into()),
    };
    fresh.get(kid).cloned().ok_or(TokenError::UnknownKid.into())
}

fn check_signature(key: &Key, t: &Unverified<'_>) -> Result<(), TokenError> {
    if !key.supports(t.alg) {
        return Err(TokenError::KeyMismatch);
    }
    if !key.verify(t.alg, t.signing_input, &t.signature) {
        return Err(TokenError::BadSignature);
    }
    Ok(())
}

/// Checks `exp` (required), `nbf`, `iat` and `aud`; returns `exp` + leeway. A session
/// cookie's `aud` is Better Auth's fixed one; a bearer token's is the provider's, and
/// never the session one (even where the provider checks no audience).
fn check_claims(c: &Claims, p: &ProviderConfig, profile: Profile) -> Result<f64, TokenError> {
    let now = unix_now();
    let leeway = p.leeway.as_secs_f64();
    let exp = c.exp.ok_or(TokenError::MissingExpiry)?;
    if now > exp + leeway {
        return Err(TokenError::Expired);
    }
    if c.nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(TokenError::NotYetValid);
    }
    if c.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    let audience_ok = match profile {
        Profile::Session => c.aud.iter().any(|a| a == token::SESSION_AUDIENCE),
        Profile::Bearer => {
            !c.aud.iter().any(|a| a == token::SESSION_AUDIENCE)
                && (p.audiences.is_empty() || c.aud.iter().any(|a| p.audiences.contains(a)))
        }
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    Ok(exp + leeway)
}

/// `sub` becomes the user id header verbatim, so it must be a short, non-empty run of
/// visible ASCII: no spaces, no control characters, nothing a backend could read two ways.
fn subject_header(c: &Claims) -> Result<HeaderValue, TokenError> {
    let sub = c.sub.as_deref().ok_or(TokenError::InvalidSubject)?;
    if sub.is_empty() || sub.len() > MAX_SUBJECT_LEN || !sub.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::InvalidSubject);
    }
    HeaderValue::from_str(sub).map_err(|_| TokenError::InvalidSubject)
}

/// A claim rendered as a header value. Strings, numbers and booleans as text, arrays of
/// them comma-joined; objects and nulls are left out. Bytes outside printable ASCII,
/// and `%` itself, are percent-encoded (UTF-8), so a claim can never inject a header.
fn claim_header_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect();
            parts?.join(",")
        }
        Value::Null | Value::Object(_) => return None,
    };
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_CLAIM_HEADER_LEN {
        return None;
    }
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_cannot_inject_headers() {
        let v = claim_header_value(&Value::String("a\r\nX-User-Id: b".into())).unwrap();
        assert_eq!(v, "a%0D%0AX-User-Id: b");
        let v = claim_header_value(&Value::String("José 100%".into())).unwrap();
        assert_eq!(v, "Jos%C3%A9 100%25");
        assert_eq!(
            claim_header_value(&serde_json::json!(["a", 1, true])).unwrap(),
            "a,1,true"
        );
        assert!(claim_header_value(&serde_json::json!({"a": 1})).is_none());
    }
}
