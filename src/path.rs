//! Request path normalization. The path is read once, the way the most lenient backend
//! would read it (`%2e%2e` is `..`, `..;x` is `..`, `//` is `/`), and that one canonical
//! form is both what routes are matched on and what the upstream receives, so the
//! gateway and the backend can never disagree about which resource was asked for.

use std::fmt;

/// Paths longer than this, as received or once normalized, are refused.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// A canonical path: starts with `/`, no empty, `.` or `..` segments, every byte outside
/// the RFC 3986 `pchar` set percent-encoded, unreserved characters never encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    text: String,
    has_params: bool,
}

impl NormalizedPath {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether some segment carries `;` parameters, which backends disagree about
    /// (Tomcat and Spring drop them, most others keep them as part of the segment).
    pub fn has_params(&self) -> bool {
        self.has_params
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("the path is too long")]
    TooLong,
    #[error("a backslash is not allowed in the path")]
    Backslash,
    #[error("an encoded /, \\ or control character is not allowed in the path")]
    EncodedSeparator,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("double percent-encoding is not allowed in the path")]
    DoubleEncoded,
}

/// Normalizes the path part of a request target (no query).
pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    if is_canonical(raw) {
        return Ok(NormalizedPath {
            text: raw.to_owned(),
            has_params: raw.contains(';'),
        });
    }
    normalize_segments(raw, rest)
}

/// Whether an absolute path is already its own normal form, as nearly every request's
/// is: only `pchar`s between single slashes (nothing to decode or encode, nothing to
/// collapse) and no dot segment. The segment-by-segment walk would return it unchanged.
fn is_canonical(raw: &str) -> bool {
    let mut segments = raw.as_bytes()[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        // Only the last segment may be empty: the path ends with `/` (or is `/`).
        if seg.is_empty() && segments.peek().is_some() {
            return false;
        }
        if !seg.iter().all(|&b| is_pchar(b)) {
            return false;
        }
        let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
        if name == b"." || name == b".." {
            return false;
        }
    }
    true
}

/// The normal form of any absolute path: each segment decoded, dot segments resolved,
/// re-encoded.
fn normalize_segments(raw: &str, rest: &str) -> Result<NormalizedPath, PathError> {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut trailing_slash = false;
    for raw_seg in rest.split('/') {
        if raw_seg.is_empty() {
            // `//` collapses; a final empty segment means the path ended with `/`.
            trailing_slash = true;
            continue;
        }
        let decoded = decode(raw_seg.as_bytes())?;
        let name = match decoded.iter().position(|&b| b == b';') {
            Some(i) => &decoded[..i],
            None => &decoded[..],
        };
        match name {
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            _ => {
                segments.push(decoded);
                trailing_slash = false;
            }
        }
    }

    // Only segments that survived count: `/x;p/../api` has no parameters left.
    let has_params = segments.iter().any(|s| s.contains(&b';'));
    let mut text = String::with_capacity(raw.len());
    for seg in &segments {
        text.push('/');
        encode_into(seg, &mut text);
    }
    if text.is_empty() || trailing_slash {
        text.push('/');
    }
    // Encoding can triple a byte (`>` is `%3E`): the canonical form must fit the limit
    // too, or the path sent upstream would be one the gateway itself refuses.
    if text.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    Ok(NormalizedPath { text, has_params })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(seg: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                seg.get(i + 1).copied().and_then(hex),
                seg.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let d = (h << 4) | l;
            if d == b'/' || d == b'\\' || d.is_ascii_control() {
                return Err(PathError::EncodedSeparator);
            }
            out.push(d);
            i += 3;
        } else {
            if b.is_ascii_control() {
                return Err(PathError::EncodedSeparator);
            }
            out.push(b);
            i += 1;
        }
    }
    // A `%` that still introduces an escape after one decoding pass would be read as
    // something else by a backend that decodes twice.
    if out
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
    {
        return Err(PathError::DoubleEncoded);
    }
    Ok(out)
}

/// RFC 3986 `pchar`: unreserved / sub-delims / ":" / "@" stay as they are.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn encode_into(seg: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in seg {
        if is_pchar(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s).unwrap().as_str().to_owned()
    }

    #[test]
    fn dot_segments_resolve_and_clamp_at_root() {
        assert_eq!(n("/public/../api/tasks"), "/api/tasks");
        assert_eq!(n("/a/./b/"), "/a/b/");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn encoded_dots_and_matrix_dots_are_dot_segments() {
        assert_eq!(n("/public/%2e%2e/api/tasks"), "/api/tasks");
        assert_eq!(n("/public/%2E./api"), "/api");
        assert_eq!(n("/public/..;x/api/tasks"), "/api/tasks");
        assert_eq!(n("/public/.;x/api"), "/public/api");
    }

    #[test]
    fn slashes_collapse() {
        assert_eq!(n("//api///tasks"), "/api/tasks");
        assert_eq!(n("/api/tasks//"), "/api/tasks/");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_canonical() {
        assert_eq!(n("/api/%74asks"), "/api/tasks");
        assert_eq!(n("/a%20b/%3f"), "/a%20b/%3F");
        assert_eq!(n("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn dangerous_encodings_are_refused() {
        assert_eq!(normalize("/api%2Ftasks"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/api%2ftasks"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/api%5Ctasks"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/api%00"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/api\\tasks"), Err(PathError::Backslash));
        assert_eq!(normalize("/api%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/api%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a/%252e%252e/x"), Err(PathError::DoubleEncoded));
        assert_eq!(normalize("api"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normalization_is_idempotent_on_samples() {
        for p in [
            "/a/../b/./c//d/",
            "/%41%2e/x",
            "/a;b/c",
            "/x/..;y/z",
            "/caf%c3%a9/%7e",
        ] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
        }
    }

    #[test]
    fn params_are_flagged() {
        assert!(normalize("/api;x/tasks").unwrap().has_params());
        assert!(!normalize("/api/..;x/tasks").unwrap().has_params());
    }

    /// Found by the `path_route` fuzz target: a path within the limit whose encoded form
    /// was not, so normalizing the normalized path failed.
    #[test]
    fn a_path_whose_canonical_form_is_too_long_is_refused() {
        let raw = format!("/{}", ">".repeat(MAX_PATH_LEN / 2));
        assert!(raw.len() <= MAX_PATH_LEN);
        assert_eq!(normalize(&raw), Err(PathError::TooLong));
        let fits = format!("/{}", ">".repeat((MAX_PATH_LEN - 1) / 3));
        let once = normalize(&fits).unwrap();
        assert_eq!(once.as_str().len(), 1 + 3 * ((MAX_PATH_LEN - 1) / 3));
        assert_eq!(normalize(once.as_str()).unwrap(), once);
    }

    proptest::proptest! {
        /// A path taken as already normal comes out exactly as the full walk makes it.
        #[test]
        fn the_canonical_shortcut_agrees_with_the_full_walk(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "/", "a", "B", ".", "..", ";", "x;p", "%2e", "%41", "~", "//", "-_", ">", "é",
                ]),
                0..10,
            )
        ) {
            let raw = format!("/{}", parts.concat());
            let full = normalize_segments(&raw, &raw[1..]);
            proptest::prop_assert_eq!(normalize(&raw), full.clone());
            if is_canonical(&raw) {
                let full = full.unwrap();
                proptest::prop_assert_eq!(full.as_str(), raw.as_str());
            }
        }
    }

    /// Found by the `path_route` fuzz target: the flag outlived the segment that set it,
    /// so normalizing twice gave two different results.
    #[test]
    fn params_of_a_segment_removed_by_dotdot_are_not_flagged() {
        for p in ["/x;p/../api/tasks", "/.././;./../api/tasks"] {
            let once = normalize(p).unwrap();
            assert_eq!(once.as_str(), "/api/tasks", "{p}");
            assert!(!once.has_params(), "{p}");
            assert_eq!(normalize(once.as_str()).unwrap(), once, "{p}");
        }
    }
}
