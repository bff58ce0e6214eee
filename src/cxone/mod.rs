//! The CXone AI training API: wire models, the client, and its errors.

pub mod client;
pub mod error;
pub mod model;
pub mod token;

pub use client::{
    CallObserver, CancelOutcome, ClientConfig, CxoneClient, Endpoint, ResponseLimits, Target,
};
pub use error::{AuthProblem, Call, CxoneError, Transient};
pub use token::{Credentials, SecretString, TokenCache};
