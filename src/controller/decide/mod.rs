//! The decisions of reconciliation, without I/O.
//!
//! [`decide`] (a job that exists) and [`decide_cleanup`] (a job being deleted) take the job as
//! the API server has it ([`View`]), the operator's memory of it, one [`Observation`] (the start of
//! a reconciliation, or the outcome of the last effect) and the [`Policy`], and return a [`Step`]:
//! the next status, the next memory, at most one [`Effect`], the Events and when to come back.
//! The driver (`reconcile.rs`) writes the status, publishes the Events, performs the effect and
//! feeds its outcome back as the next observation. Everything a job does is decided here, so every
//! branch is a plain test (`tests.rs`, `tests/`).
//!
//! From outside, only `effect.rs`, `memory.rs` and `conditions.rs` are imported. Inside, a file
//! imports only files above it in this list:
//! - `step.rs`: [`View`], [`Policy`], [`Step`], [`Event`], [`Next`], and the readings of status
//!   every stage shares; `schedule.rs`, `identity.rs`, `status_fields.rs`: the pure arithmetic of
//!   schedules, keys and names, and status fields.
//! - `trouble.rs`: failed calls, unusable credentials, objects not owned; `cleanup.rs`: deletion.
//! - `registry_targets.rs`: what `spec.registry` names.
//! - `end_of_run.rs`: ending a run (audit record first, final status after).
//! - `registry_plan.rs`: what a registration carries and how the Registering phase ends.
//! - `course.rs`: the course of a run from its status (submit, cancel, track, register, refresh).
//! - `records.rs`, `promotion.rs`, `track.rs`: the answers to writing records, to registering and
//!   promoting, and to the CXone calls.
//!
//! [`Effect`]: crate::controller::effect::Effect

mod cleanup;
mod course;
mod end_of_run;
pub mod identity;
mod promotion;
mod records;
mod registry_plan;
mod registry_targets;
pub mod schedule;
pub mod status_fields;
mod step;
#[cfg(test)]
mod tests;
mod track;
mod trouble;

use course::{cancelled, start};
use promotion::{promoted, registered};
use records::written;
use track::{evaluated, exported, looked_up, polled, submitted};
use trouble::credentials_problem;

pub use cleanup::decide_cleanup;
pub use step::{Event, Next, Policy, Step, View, in_flight, run_target, unknown_submission};

use super::effect::Observation;
use super::memory::JobMemory;

/// The next step of a job that exists.
pub fn decide(v: &View, m: &JobMemory, obs: Observation, p: &Policy) -> Step {
    let m = m.clone();
    match obs {
        Observation::Start => start(v, v.status, m, p),
        Observation::NoSlot(wait) => Step::new(v.status.clone(), m, Next::Requeue(wait)),
        Observation::CannotCall(problem) => credentials_problem(v, m, &problem),
        Observation::Cancelled {
            job_id,
            purpose,
            result,
        } => cancelled(v, m, p, &job_id, purpose, result),
        Observation::LookedUp { purpose, result } => looked_up(v, m, p, purpose, result),
        Observation::Submitted(result) => submitted(v, m, p, result),
        Observation::Polled(result) => polled(v, m, p, result),
        Observation::Evaluated(result) => evaluated(v, m, p, result),
        Observation::Exported(result) => exported(v, m, p, result),
        Observation::Written(result) => written(v, m, p, result),
        Observation::Registered { kind, result } => registered(v, m, p, kind, result),
        Observation::Promoted { kind, result } => promoted(v, m, p, kind, result),
    }
}
