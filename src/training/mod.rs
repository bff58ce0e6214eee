//! The training domain: datasets, the rules that decide whether a dataset may be submitted,
//! payload building and dataset digests. Pure: no I/O, no async.

pub mod dataset;
pub mod iso639;
pub mod payload;
pub mod validation;

pub use dataset::{DataFormat, Dataset, LoadError, Origin, parse_utterances};
pub use payload::{DatasetDigest, build_payload};
pub use validation::{
    Check, CheckOutcome, Rejected, Validated, ValidationReport, ValidationRules, Violation,
    validate, validate_request,
};
