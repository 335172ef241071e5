//! The gateway's two body types, in one place so every module can name them without
//! reaching into another's: what it answers with (an upstream's streamed body passed
//! through untouched, or a small body of its own) and what it sends upstream (the
//! client's body as streamed, its trailers filtered).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// A response body: the upstream's, or one of the gateway's own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A request body on its way upstream.
pub type RequestBody = BoxBody<Bytes, BoxError>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A small body of the gateway's own.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
