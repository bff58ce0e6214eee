//! The CXone AI training API (the contract: `docs/cxone-api.md`): wire models, the client and
//! its errors, and the rules on where and how fast the operator may call it (endpoint
//! resolution, allowlist, shared rate limiter). Arrows point one way: `client` uses all the
//! others; `endpoint` uses `model`; the rest import nothing of this folder.
//!
//! - `model.rs`: the wire types, shared with the simulator (imports serde only).
//! - `endpoint.rs`: where a job's API lives, from a region or URLs (pure).
//! - `error.rs`: the classified [`CxoneError`] and `Retry-After` (imports `crate::text`).
//! - `token.rs`: the shared token cache and the secret types (no I/O).
//! - `limits.rs`: the endpoint allowlist and the shared rate limiter (no I/O).
//! - `client.rs`: [`CxoneClient`], the calls themselves (imports `crate::http` for clients,
//!   timeouts, body caps, capped reads and transport failures).

pub mod client;
pub mod endpoint;
pub mod error;
pub mod limits;
pub mod model;
pub mod token;

pub use client::{
    CallObserver, CancelOutcome, ClientConfig, CxoneClient, Endpoint, ResponseLimits, Target,
};
pub use error::{AuthProblem, Call, CxoneError, Transient};
pub use limits::{CxoneRateLimiter, EndpointAllowlist};
pub use token::{Credentials, SecretString, TokenCache};
