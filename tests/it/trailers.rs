//! Trailer fields are headers that arrive after the body; a client must not be able to
//! smuggle an identity header in through them.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn identity_headers_in_request_trailers_never_reach_the_upstream() {
    let f = Fixture::start().await;
    let token = f.token("bob");
    let mut stream = tokio::net::TcpStream::connect(f.gw.addr).await.unwrap();
    let req = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X-User-Id, X-Checksum\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n0\r\nX-User-Id: alice\r\nx_user_id: alice\r\nX-Checksum: 42\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    let seen = f.upstream.last();
    assert_eq!(seen.body_len, 5);
    // Trailers do flow (so the check below is not vacuous)...
    assert!(
        seen.trailers
            .iter()
            .any(|(n, v)| n == "x-checksum" && v == "42"),
        "{:?}",
        seen.trailers
    );
    assert_eq!(seen.one("x-user-id"), Some("bob"));
    // ...but never an identity header, in any spelling.
    for (name, value) in &seen.trailers {
        let folded = name.to_ascii_lowercase().replace(['_', '.'], "-");
        assert_ne!(
            folded, "x-user-id",
            "a trailer {name}: {value} reached the upstream"
        );
    }
}
