//! Rate limits: local ones in an in-process gateway, shared ones through a real
//! `redis-server` (started on a free port, stopped by PID). The shared budget is checked
//! with three gateway processes, the way replicas run; the faults (Redis killed, Redis
//! that never answers, Redis out of memory) with an in-process gateway, whose metrics
//! and answers show what a user of it would notice.

mod faults;
mod local;
mod shared;

use std::net::SocketAddr;

use http::Method;

use crate::support::*;

/// A JWKS server, an echo upstream and the provider config that trusts the JWKS.
struct Parts {
    jwks: JwksServer,
    upstream: Upstream,
    key: SigningKey,
}

impl Parts {
    async fn start() -> Parts {
        let key = SigningKey::ed25519("k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        Parts {
            jwks,
            upstream: Upstream::start().await,
            key,
        }
    }

    fn token(&self, sub: &str) -> String {
        self.key.mint(Alg::EdDSA, &claims(sub))
    }

    fn provider(&self) -> String {
        provider_toml(&self.jwks.url(), "")
    }

    /// A route `name` at `/name` with these `rate_limits` entries.
    fn route(&self, name: &str, auth: &str, limits: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"{}\"\n\
             auth = \"{auth}\"\nrate_limits = [{limits}]\n",
            self.upstream.url()
        )
    }

    async fn gateway(&self, server: &str, tail: &str) -> TestGateway {
        let gw =
            TestGateway::start_with_server(server, &format!("{}{tail}", self.provider())).await;
        gw.wait_ready().await;
        gw
    }
}

async fn get_as(addr: SocketAddr, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    send(addr, Method::GET, path, &[("authorization", &auth)], "").await
}
