//! The route table: longest prefix wins, matched on whole path segments of the
//! normalized path (so `/api/tasks` never matches `/api/tasksX`). The query string never
//! takes part.

use std::ops::Deref;
use std::sync::Arc;

use http::Method;

use crate::config::RouteConfig;
use crate::path::NormalizedPath;
use crate::upstream::{Slots, UpstreamClient};

/// A configured route with the client that reaches its upstream and that upstream's
/// slots (shared with every route to the same upstream).
pub struct Route {
    pub config: RouteConfig,
    pub client: UpstreamClient,
    pub slots: Arc<Slots>,
}

impl Deref for Route {
    type Target = RouteConfig;

    fn deref(&self) -> &RouteConfig {
        &self.config
    }
}

/// What matching a path produced.
pub enum Match<'a> {
    Route(&'a Arc<Route>),
    NoRoute,
    /// The path reads as two different routes depending on whether the backend drops
    /// `;` parameters or matches paths case-insensitively (Express by default, ASP.NET,
    /// IIS); neither reading can be trusted.
    Ambiguous,
}

pub struct RouteTable {
    /// Sorted by prefix depth, deepest first, so the first hit is the longest prefix.
    routes: Vec<(Vec<String>, Arc<Route>)>,
    /// Some prefix has an ASCII capital, so even an all-lowercase path needs the
    /// case-folded reading.
    cased: bool,
}

impl RouteTable {
    /// `upstream_for` gives each route the client that reaches its upstream and that
    /// upstream's slots.
    pub fn new(
        routes: &[RouteConfig],
        mut upstream_for: impl FnMut(&RouteConfig) -> (UpstreamClient, Arc<Slots>),
    ) -> RouteTable {
        let mut routes: Vec<(Vec<String>, Arc<Route>)> = routes
            .iter()
            .map(|r| {
                let segs = r
                    .prefix
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let (client, slots) = upstream_for(r);
                let route = Route {
                    config: r.clone(),
                    client: client.bound_to(&r.upstream),
                    slots,
                };
                (segs, Arc::new(route))
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let cased = routes.iter().any(|(segs, _)| {
            segs.iter()
                .any(|s| s.bytes().any(|b| b.is_ascii_uppercase()))
        });
        RouteTable { routes, cased }
    }

    /// A table that only matches paths, for fuzz targets and property tests outside the
    /// crate: its HTTPS clients trust no certificate and it is never used to forward.
    #[doc(hidden)]
    pub fn for_matching(routes: &[RouteConfig]) -> RouteTable {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let slots = Arc::new(Slots::new(1, Arc::new(crate::metrics::Metrics::new())));
        RouteTable::new(routes, |r| {
            (crate::upstream::client(&r.upstream, &tls), slots.clone())
        })
    }

    /// The route of a path. Routes match case-sensitively, but a backend may not: a path
    /// that selects another route when `;` parameters are dropped or ASCII case is folded
    /// is refused, so `/API/admin` can never reach an admin handler through `/`.
    pub fn route(&self, path: &NormalizedPath) -> Match<'_> {
        let p = path.as_str();
        let strict = self.find(p, false, false);
        let params = path.has_params();
        let fold = self.cased || p.bytes().any(|b| b.is_ascii_uppercase());
        for (drop_params, fold_case) in [(true, false), (false, true), (true, true)] {
            if (drop_params && !params) || (fold_case && !fold) {
                continue;
            }
            let same = match (strict, self.find(p, drop_params, fold_case)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Match::Ambiguous;
            }
        }
        match strict {
            Some(r) => Match::Route(r),
            None => Match::NoRoute,
        }
    }

    fn find(&self, path: &str, drop_params: bool, fold_case: bool) -> Option<&Arc<Route>> {
        'routes: for (prefix, route) in &self.routes {
            let mut segs = path.split('/').filter(|s| !s.is_empty());
            for want in prefix {
                let Some(seg) = segs.next() else {
                    continue 'routes;
                };
                let seg = if drop_params {
                    seg.split(';').next().unwrap_or(seg)
                } else {
                    seg
                };
                let hit = if fold_case {
                    seg.eq_ignore_ascii_case(want)
                } else {
                    seg == want
                };
                if !hit {
                    continue 'routes;
                }
            }
            return Some(route);
        }
        None
    }
}

/// Headers some frameworks (Rails, Laravel, Express's method-override, ASP.NET) read as
/// the real method of a POST.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether a route lets this method through, including any method a method-override
/// header asks the backend to use instead.
pub fn allows(route: &RouteConfig, method: &Method, headers: &http::HeaderMap) -> bool {
    let Some(allowed) = &route.methods else {
        return true;
    };
    allowed.contains(method)
        && METHOD_OVERRIDES.iter().all(|name| {
            headers.get_all(*name).iter().all(|v| {
                Method::from_bytes(v.as_bytes()).is_ok_and(|m| {
                    allowed
                        .iter()
                        .any(|a| a.as_str().eq_ignore_ascii_case(m.as_str()))
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::path::normalize;

    fn table() -> RouteTable {
        let cfg = Config::from_toml(
            r#"
            [[providers]]
            name = "p"
            issuer = "http://127.0.0.1:3000"
            jwks_url = "http://127.0.0.1:3000/jwks"
            [[routes]]
            name = "root"
            prefix = "/"
            upstream = "http://127.0.0.1:1"
            auth = "public"
            [[routes]]
            name = "api"
            prefix = "/api"
            upstream = "http://127.0.0.1:1"
            [[routes]]
            name = "tasks"
            prefix = "/api/tasks"
            upstream = "http://127.0.0.1:1"
            "#,
            "test.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        RouteTable::for_matching(&cfg.routes)
    }

    fn name(t: &RouteTable, p: &str) -> String {
        match t.route(&normalize(p).unwrap()) {
            Match::Route(r) => r.name.to_string(),
            Match::NoRoute => "none".into(),
            Match::Ambiguous => "ambiguous".into(),
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table();
        assert_eq!(name(&t, "/api/tasks/1"), "tasks");
        assert_eq!(name(&t, "/api/tasks"), "tasks");
        assert_eq!(name(&t, "/api/tasksX"), "api");
        assert_eq!(name(&t, "/api"), "api");
        assert_eq!(name(&t, "/apix"), "root");
        assert_eq!(name(&t, "/"), "root");
    }

    #[test]
    fn matrix_parameters_that_change_the_route_are_ambiguous() {
        let t = table();
        assert_eq!(name(&t, "/api;x/tasks"), "ambiguous");
        assert_eq!(name(&t, "/api/tasks;x"), "ambiguous");
        assert_eq!(name(&t, "/api/tasks/1;v=2"), "tasks");
    }

    #[test]
    fn a_path_that_case_folds_into_another_route_is_ambiguous() {
        let t = table();
        assert_eq!(name(&t, "/API/tasks"), "ambiguous");
        assert_eq!(name(&t, "/api/Tasks/1"), "ambiguous");
        assert_eq!(name(&t, "/Api;x/TASKS"), "ambiguous");
        // Case outside the prefixes changes nothing.
        assert_eq!(name(&t, "/api/tasks/AbC"), "tasks");
        assert_eq!(name(&t, "/Static/Logo.PNG"), "root");
    }
}
