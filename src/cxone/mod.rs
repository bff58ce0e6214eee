//! The CXone AI training API: wire models and the client.

pub mod model;
