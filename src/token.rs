//! The token front end: `Authorization` header -> compact JWS -> header and claims, with
//! strict types. Nothing here trusts the token; `verify` checks the signature before any
//! claim is acted upon.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::error::{Error, TokenError};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Better Auth's session-cache JWT (`jwt({ sessionCookieCache: true })`): its `typ` and
/// its fixed `aud`, which no bearer token carries.
pub const SESSION_TYP: &str = "better-auth.session-cache+jwt";
pub const SESSION_AUDIENCE: &str = "better-auth:session-cache";

/// What kind of JWT a credential must be. The two never stand in for each other: a
/// bearer token has no session `typ`, a session cookie has it and a fixed `aud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// An access token (`Authorization: Bearer`, or a cookie named as a bearer source).
    Bearer,
    /// Better Auth's signed session cookie.
    Session,
}

/// The bearer token of a request: `Ok(None)` when there is none (no `Authorization`
/// header, or another scheme); an error when the header is ambiguous or malformed.
///
/// Strict on purpose (RFC 6750 §2.1: `Bearer 1*SP b64token`): a value that starts with
/// the scheme name but does not follow that grammar (`Bearer<TAB>x`, `Bearerx`, `Bearer
/// Bearer x`, a token with a space inside) is refused rather than read as "no token",
/// because a backend that splits on any whitespace would read a token out of it that
/// the gateway never checked. The scheme name is case-insensitive (RFC 9110 §11.1).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::MultipleAuthorization);
    }
    let bytes = value.as_bytes();
    if bytes.len() < 6 || !bytes[..6].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let Some(b' ') = bytes.get(6) else {
        return Err(TokenError::Malformed.into());
    };
    let token = bytes[7..].trim_ascii_start().trim_ascii_end();
    if token.is_empty() || !is_b64token(token) {
        return Err(TokenError::Malformed.into());
    }
    Ok(Some(
        std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?,
    ))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// A structurally valid JWS whose signature has not been checked yet.
pub struct Unverified<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Claims,
    /// `base64(header) "." base64(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    /// The signature as it appears in the token (for the HS256 path).
    pub signature_b64: &'a str,
}

/// The registered claims, type-checked, plus the whole claim set for header mapping.
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub all: Map<String, Value>,
}

/// A bearer token, parsed.
pub fn parse(token: &str) -> Result<Unverified<'_>, TokenError> {
    parse_as(token, Profile::Bearer)
}

/// A token of `profile`, parsed: its `typ` must be the profile's.
pub fn parse_as(token: &str, profile: Profile) -> Result<Unverified<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Map<String, Value> = decode_json(h)?;
    // RFC 7515 §4.1.11: we implement no extension, so any `crit` is one we don't understand.
    // `b64` (RFC 7797) changes what is signed and is only valid alongside `crit`.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(TokenError::CriticalHeader);
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::from_header(a).ok_or(TokenError::UnsupportedAlg)?,
        _ => return Err(TokenError::Malformed),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    match (profile, header.get("typ")) {
        (Profile::Bearer, None) => {}
        (Profile::Bearer, Some(Value::String(t)))
            if t.eq_ignore_ascii_case("JWT")
                || t.eq_ignore_ascii_case("at+jwt")
                || t.eq_ignore_ascii_case("application/at+jwt") => {}
        // Compared as Better Auth does: exactly.
        (Profile::Session, Some(Value::String(t))) if t == SESSION_TYP => {}
        _ => return Err(TokenError::WrongType),
    }
    // `jwk`, `jku`, `x5u`, `x5c`: ignored on purpose; keys come only from configuration.

    let all: Map<String, Value> = decode_json(p)?;
    let claims = Claims::from_map(all)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    if signature.is_empty() {
        return Err(TokenError::BadSignature);
    }
    Ok(Unverified {
        alg,
        kid,
        claims,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
        signature_b64: s,
    })
}

fn decode_json(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

impl Claims {
    fn from_map(all: Map<String, Value>) -> Result<Claims, TokenError> {
        let string = |name: &'static str| match all.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::ClaimType(name)),
        };
        let number = |name: &'static str| match all.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or(TokenError::ClaimType(name)),
            Some(_) => Err(TokenError::ClaimType(name)),
        };
        let aud = match all.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(TokenError::ClaimType("aud"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(TokenError::ClaimType("aud")),
        };
        Ok(Claims {
            iss: string("iss")?,
            sub: string("sub")?,
            aud,
            exp: number("exp")?,
            nbf: number("nbf")?,
            iat: number("iat")?,
            all,
        })
    }

    /// A Better Auth session-cache payload seen as the JWT plugin's access tokens are: the
    /// `user` object's fields plus the registered claims. The session object, and `sid`
    /// (the session token itself, a credential), are left out, so nothing configured to
    /// read claims can ever copy them. Checks what Better Auth checks: `sub` is the user's
    /// id and `sid` the session's token.
    pub fn session_view(self) -> Result<Claims, TokenError> {
        let (Some(Value::Object(session)), Some(Value::Object(user))) =
            (self.all.get("session"), self.all.get("user"))
        else {
            return Err(TokenError::Malformed);
        };
        if self.sub.is_none() || user.get("id").and_then(Value::as_str) != self.sub.as_deref() {
            return Err(TokenError::InvalidSubject);
        }
        let sid = self.all.get("sid").and_then(Value::as_str);
        if sid.is_none_or(str::is_empty) || session.get("token").and_then(Value::as_str) != sid {
            return Err(TokenError::ClaimType("sid"));
        }
        let mut all = user.clone();
        for name in ["iss", "sub", "aud", "exp", "nbf", "iat"] {
            match self.all.get(name) {
                Some(v) => all.insert(name.to_owned(), v.clone()),
                None => all.remove(name),
            };
        }
        Ok(Claims { all, ..self })
    }

    /// The claim `name`: the top-level claim of exactly that name when there is one
    /// (namespaced names such as "https://example.com/roles" hold dots and slashes),
    /// otherwise, for a dotted name, the path through nested objects
    /// ("realm_access.roles" reads `roles` inside `realm_access`).
    pub fn claim(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.all.get(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let first = self.all.get(parts.next()?)?;
        parts.try_fold(first, |v, part| v.as_object()?.get(part))
    }

    /// The scopes: from `claim` when the provider names one, else from `scope`, `scp` and
    /// `scopes`. A string is space-separated; an array lists one scope per string.
    pub fn scopes(&self, claim: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        let names = match claim {
            Some(c) => vec![c],
            None => vec!["scope", "scp", "scopes"],
        };
        for name in names {
            match self.claim(name) {
                Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(items)) => {
                    out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
        }
        out
    }

    /// The roles: from `claim` when the provider names one, else from `role` and `roles`.
    /// A string may be comma-separated (as Better Auth's admin plugin writes `role`); an
    /// array lists one role per string.
    pub fn roles(&self, claim: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        let names = match claim {
            Some(c) => vec![c],
            None => vec!["role", "roles"],
        };
        for name in names {
            match self.claim(name) {
                Some(Value::String(s)) => out.extend(
                    s.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned),
                ),
                Some(Value::Array(items)) => {
                    out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn tok(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_no_token() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR abc"));
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h).unwrap(), None);
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(matches!(bearer(&h), Err(Error::MultipleAuthorization)));
    }

    /// A backend that splits `Authorization` on any whitespace would read a token out of
    /// each of these; the gateway refuses them instead of passing them on unverified.
    #[test]
    fn a_malformed_bearer_is_refused_not_read_as_no_token() {
        for bad in [
            &b"Bearer\tabc"[..],
            b"Bearerabc",
            b"Bearer",
            b"Bearer ",
            b"Bearer Bearer abc",
            b"Bearer abc def",
            b"bearer abc\tdef",
            b"Bearer a\xffb",
            b"Bearer =abc",
        ] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_bytes(bad).unwrap());
            assert!(
                matches!(bearer(&h), Err(Error::InvalidToken(TokenError::Malformed))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer  a.b-c_d~e+f/g=="),
        );
        assert_eq!(bearer(&h).unwrap(), Some("a.b-c_d~e+f/g=="));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Digest bearer abc"));
        assert_eq!(bearer(&h).unwrap(), None);
    }

    #[test]
    fn string_typed_exp_is_refused() {
        let t = tok(r#"{"alg":"EdDSA"}"#, r#"{"sub":"u","exp":"9999999999"}"#);
        assert!(matches!(parse(&t), Err(TokenError::ClaimType("exp"))));
    }

    #[test]
    fn alg_none_and_crit_are_refused() {
        let t = tok(r#"{"alg":"none"}"#, r#"{"sub":"u","exp":1}"#);
        assert!(matches!(parse(&t), Err(TokenError::UnsupportedAlg)));
        let t = tok(
            r#"{"alg":"EdDSA","crit":["exp"],"exp":1}"#,
            r#"{"sub":"u","exp":1}"#,
        );
        assert!(matches!(parse(&t), Err(TokenError::CriticalHeader)));
    }

    /// RFC 8725 §3.7: header and claims must be UTF-8 JSON.
    #[test]
    fn json_that_is_not_utf8_is_malformed() {
        let claims = URL_SAFE_NO_PAD.encode(b"{\"sub\":\"\xff\",\"exp\":1}");
        let t = format!("{}.{claims}.{}", b64(r#"{"alg":"EdDSA"}"#), b64("sig"));
        assert!(matches!(parse(&t), Err(TokenError::Malformed)));
        let header = URL_SAFE_NO_PAD.encode(b"{\"alg\":\"EdDSA\",\"kid\":\"\xc3\"}");
        let t = format!("{header}.{}.{}", b64(r#"{"sub":"u"}"#), b64("sig"));
        assert!(matches!(parse(&t), Err(TokenError::Malformed)));
    }

    /// RFC 7519 §4: a claim named twice reads as its lexically last value, never as
    /// both.
    #[test]
    fn a_claim_named_twice_reads_as_its_last_value() {
        let t = tok(
            r#"{"alg":"EdDSA"}"#,
            r#"{"sub":"alice","exp":1,"sub":"admin"}"#,
        );
        assert_eq!(parse(&t).unwrap().claims.sub.as_deref(), Some("admin"));
    }

    #[test]
    fn five_part_tokens_are_refused() {
        assert!(matches!(parse("a.b.c.d.e"), Err(TokenError::Malformed)));
    }

    #[test]
    fn scopes_and_roles_are_read_in_every_shape() {
        let t = tok(
            r#"{"alg":"EdDSA"}"#,
            r#"{"scope":"a b","scp":["c"],"role":"admin, user","roles":["x"]}"#,
        );
        let u = parse(&t).unwrap();
        assert_eq!(u.claims.scopes(None), ["a", "b", "c"]);
        assert_eq!(u.claims.roles(None), ["admin", "user", "x"]);
    }

    #[test]
    fn a_configured_claim_is_a_namespaced_name_or_a_dotted_path() {
        let t = tok(
            r#"{"alg":"EdDSA"}"#,
            r#"{"roles":["user"],"https://example.com/roles":["editor"],
                "realm_access":{"roles":["admin","auditor"]},"resource_access":{"api":{"roles":"a, b"}},
                "permissions":["read:tasks"],"o":{"rol":"owner"},"scp":"x y"}"#,
        );
        let c = parse(&t).unwrap().claims;
        assert_eq!(c.roles(Some("https://example.com/roles")), ["editor"]);
        assert_eq!(c.roles(Some("realm_access.roles")), ["admin", "auditor"]);
        assert_eq!(c.roles(Some("resource_access.api.roles")), ["a", "b"]);
        assert_eq!(c.roles(Some("o.rol")), ["owner"]);
        // The default claims are not read once another one is named.
        assert!(c.roles(Some("realm_access.missing")).is_empty());
        assert!(c.roles(Some("realm_access")).is_empty());
        assert_eq!(c.scopes(Some("permissions")), ["read:tasks"]);
        assert_eq!(c.scopes(Some("scp")), ["x", "y"]);
    }
}
