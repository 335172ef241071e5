//! Where a request's token comes from: the route's `token_sources`, tried in order (the
//! `Authorization` header, a named cookie, Better Auth's signed session cookie). The
//! first source present is the credential; a bad one is refused, never passed over for
//! the next. Also which cookies belong to a configured family (`NAME`, `__Secure-NAME`,
//! `NAME.0`, ...), which the header rewrite uses to keep them from backends.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::{CookieConfig, RouteConfig, TokenSource};
use crate::error::{Error, TokenError};
use crate::token::{self, Profile};

/// Better Auth's prefix for cookies set over https.
const SECURE_PREFIX: &str = "__Secure-";
/// Better Auth never writes more chunks than this.
const MAX_CHUNKS: usize = 100;

/// Where the credential of a request was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie holding a bearer JWT.
    Cookie,
    /// Better Auth's session cookie.
    SessionCookie,
}

impl Source {
    /// Cookies ride along on cross-site requests: these need a CSRF check.
    pub fn is_cookie(self) -> bool {
        self != Source::Header
    }

    pub fn profile(self) -> Profile {
        match self {
            Source::Header | Source::Cookie => Profile::Bearer,
            Source::SessionCookie => Profile::Session,
        }
    }

    /// The error a refused credential from here becomes: an expired session cookie says
    /// so in its own code, so a page can renew the cookie (Better Auth's get-session) and
    /// retry once.
    pub fn refusal(self, e: Error) -> Error {
        match (self, e) {
            (Source::SessionCookie, Error::InvalidToken(TokenError::Expired)) => {
                Error::SessionExpired
            }
            (_, e) => e,
        }
    }
}

/// The token a request carries, and where it was found.
pub struct Credential<'a> {
    pub token: Cow<'a, str>,
    pub source: Source,
}

/// The route's first token source that is present in `headers`; `Ok(None)` when none
/// is. A source that is present but unreadable (a malformed `Authorization`, a cookie
/// sent twice, a chunk missing) is an error: the next source is never tried instead.
pub fn credential<'a>(
    route: &RouteConfig,
    cookies: &CookieConfig,
    headers: &'a HeaderMap,
) -> Result<Option<Credential<'a>>, Error> {
    for source in &route.token_sources {
        let found = match source {
            TokenSource::Authorization => {
                token::bearer(headers)?.map(|t| (Cow::Borrowed(t), Source::Header))
            }
            TokenSource::Cookie(name) => {
                one_cookie(headers, name)?.map(|t| (Cow::Borrowed(t), Source::Cookie))
            }
            TokenSource::SessionCookie => session_cookie(headers, &cookies.session_cookie)?
                .map(|t| (t, Source::SessionCookie)),
        };
        if let Some((token, source)) = found {
            return Ok(Some(Credential { token, source }));
        }
    }
    Ok(None)
}

/// The 401 for a request that brought no token at all: on a route that takes the
/// session cookie it names the cookie's absence, so a page knows to renew it.
pub fn missing(route: &RouteConfig) -> Error {
    if route.token_sources.contains(&TokenSource::SessionCookie) {
        Error::SessionMissing
    } else {
        Error::MissingToken
    }
}

/// Every `name=value` pair of every `Cookie` field, names and values trimmed. Split
/// byte-wise: another site's cookie with bytes outside ASCII in the same field must not
/// hide the session cookie beside it (such a pair is skipped on its own).
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let (name, value) = std::str::from_utf8(pair).ok()?.split_once('=')?;
            Some((
                name.trim_matches([' ', '\t']),
                value.trim_matches([' ', '\t']),
            ))
        })
}

/// The value of cookie `name`; empty values count as absent (what a browser holds of a
/// cookie being deleted). Sent twice with values is ambiguous: refused.
fn one_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, TokenError> {
    let mut found = None;
    for (n, v) in pairs(headers) {
        if n == name && !v.is_empty() {
            if found.is_some() {
                return Err(TokenError::Malformed);
            }
            found = Some(v);
        }
    }
    Ok(found)
}

/// Better Auth's session cookie, read as Better Auth writes it: `__Secure-NAME` when
/// the app runs on https (that form alone is read when present: a plain-http page cannot
/// set it), else `NAME`; either whole, or split into `NAME.0`, `NAME.1`, ... that join in
/// order. A chunk missing or given twice, or a whole cookie beside chunks, is refused.
fn session_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<Cow<'a, str>>, Error> {
    let secure = format!("{SECURE_PREFIX}{name}");
    let family = |base: &str| {
        pairs(headers).any(|(n, v)| !v.is_empty() && (n == base || chunk_index(n, base).is_some()))
    };
    let base = if family(&secure) {
        secure.as_str()
    } else {
        name
    };
    let whole = one_cookie(headers, base)?;
    let mut chunks: Vec<(usize, &str)> = pairs(headers)
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(n, v)| Some((chunk_index(n, base)?, v)))
        .collect();
    match (whole, chunks.is_empty()) {
        (None, true) => return Ok(None),
        (Some(t), true) => return Ok(Some(Cow::Borrowed(t))),
        (Some(_), false) => return Err(TokenError::Malformed.into()),
        (None, false) => {}
    }
    if chunks.len() > MAX_CHUNKS {
        return Err(TokenError::TooLarge.into());
    }
    chunks.sort_unstable_by_key(|&(i, _)| i);
    if chunks.iter().enumerate().any(|(want, &(i, _))| i != want) {
        return Err(TokenError::Malformed.into());
    }
    let joined: String = chunks.iter().map(|&(_, v)| v).collect();
    if joined.len() > token::MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge.into());
    }
    Ok(Some(Cow::Owned(joined)))
}

/// `n` of a chunk `BASE.n`, where `n` is written as Better Auth writes it (decimal, no
/// leading zero).
fn chunk_index(name: &str, base: &str) -> Option<usize> {
    let digits = name.strip_prefix(base)?.strip_prefix('.')?;
    if digits.is_empty()
        || digits.len() > 3
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Whether cookie `name` is `base` or one of its chunks, with or without `__Secure-`.
/// Case-insensitive and lenient about chunk numbers: it decides what is removed, and
/// removing too much is the safe side.
pub fn in_family(name: &str, base: &str) -> bool {
    let name = match name.get(..SECURE_PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(SECURE_PREFIX) => &name[SECURE_PREFIX.len()..],
        _ => name,
    };
    let Some(head) = name.get(..base.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(base) {
        return false;
    }
    match name[base.len()..].strip_prefix('.') {
        None => name.len() == base.len(),
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const NAME: &str = "better-auth.session_data";

    fn read(values: &[&str]) -> Result<Option<String>, Error> {
        session_cookie(&cookies(values), NAME).map(|t| t.map(Cow::into_owned))
    }

    #[test]
    fn whole_chunked_and_secure_session_cookies_are_read() {
        assert_eq!(
            read(&["a=1; better-auth.session_data=xyz"])
                .unwrap()
                .unwrap(),
            "xyz"
        );
        assert_eq!(
            read(&[
                "better-auth.session_data.1=cd",
                "better-auth.session_data.0=ab; b=2"
            ])
            .unwrap()
            .unwrap(),
            "abcd"
        );
        // The __Secure- form alone is read when present.
        assert_eq!(
            read(&["better-auth.session_data=plain; __Secure-better-auth.session_data=sec"])
                .unwrap()
                .unwrap(),
            "sec"
        );
        assert!(
            read(&["other=1", "better-auth.session_data="])
                .unwrap()
                .is_none()
        );
        assert!(read(&[]).unwrap().is_none());
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"n=caf\xe9; better-auth.session_data=xyz").unwrap(),
        );
        assert_eq!(session_cookie(&h, NAME).unwrap().unwrap(), "xyz");
    }

    #[test]
    fn a_missing_doubled_or_mixed_chunk_is_refused() {
        for bad in [
            &["better-auth.session_data.0=ab; better-auth.session_data.2=ef"][..],
            &["better-auth.session_data.1=cd"],
            &["better-auth.session_data.0=ab; better-auth.session_data.0=xx"],
            &["better-auth.session_data=ab; better-auth.session_data.0=xx"],
            &["better-auth.session_data=ab", "better-auth.session_data=cd"],
        ] {
            assert!(matches!(read(bad), Err(Error::InvalidToken(_))), "{bad:?}");
        }
        // Not chunks at all: leading zeros, signs, other suffixes.
        for name in [
            "better-auth.session_data.01",
            "better-auth.session_data.+1",
            "better-auth.session_datax",
        ] {
            assert!(read(&[&format!("{name}=ab")]).unwrap().is_none(), "{name}");
        }
    }

    #[test]
    fn a_family_covers_the_prefix_and_chunks_in_any_case() {
        for n in [
            "better-auth.session_token",
            "__Secure-better-auth.session_token",
            "__SECURE-Better-Auth.Session_Token",
            "better-auth.session_token.0",
            "better-auth.session_token.017",
        ] {
            assert!(in_family(n, "better-auth.session_token"), "{n}");
        }
        for n in [
            "better-auth.session_tokens",
            "better-auth.session_token.",
            "better-auth.session_token.x",
            "x-better-auth.session_token",
            "better-auth",
        ] {
            assert!(!in_family(n, "better-auth.session_token"), "{n}");
        }
    }
}
