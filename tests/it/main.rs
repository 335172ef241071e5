//! Integration tests: the gateway in-process on 127.0.0.1:0 between a real JWKS server
//! and a real echo upstream.

mod support;

mod access_log;
mod admin;
mod auth;
mod boundary;
mod cors;
mod discovery;
mod forwarding;
mod hardening;
mod idle;
mod jwks;
mod operations;
mod process;
mod properties;
mod protocols;
mod providers;
mod ratelimit;
mod revoke;
mod session;
mod slots;
mod trailers;
mod upstream_hop;
