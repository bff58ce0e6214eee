//! The CXone AI training API (the contract: `docs/cxone-api.md`): wire models, the client and
//! its errors, and the rules on where and how fast the operator may call it (endpoint
//! resolution, allowlist, shared rate limiter).

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
