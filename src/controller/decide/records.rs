//! The answer to writing the run's records (its audit ConfigMap, its artifact Secret): the next
//! record, the final status, or the object in the way.

use std::sync::Arc;

use super::course::start;
use super::end_of_run::{artifacts_status, final_status, refresh_before};
use super::schedule;
use super::step::{Next, Policy, Step, View};
use super::trouble::not_owned;
use crate::controller::conditions::Reason;
use crate::controller::effect::Effect;
use crate::controller::memory::{EndRecording, JobMemory, RecordStage};
use crate::cxone::model::ExportResponse;

pub(super) fn written(v: &View, mut m: JobMemory, p: &Policy, result: Result<(), String>) -> Step {
    if let Err(problem) = result {
        m.recording_end = None;
        m.refreshing = None;
        return not_owned(v, m, p, &problem);
    }
    if let Some(export) = m.refreshing.take() {
        return artifacts_refreshed(v, m, &export);
    }
    let Some(recording) = m.recording_end.take() else {
        return start(v, v.status, m, p);
    };
    let secret = v
        .spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.clone());
    if let (RecordStage::Report, Some(name), Some(export)) =
        (recording.stage, secret, &recording.export)
    {
        let export = export.clone();
        m.recording_end = Some(Arc::new(EndRecording {
            stage: RecordStage::ArtifactSecret,
            ..(*recording).clone()
        }));
        return Step::new(v.status.clone(), m, Next::AwaitChange)
            .effect(Effect::WriteArtifactSecret { name, export });
    }
    final_status(v, m, &recording)
}

pub(super) fn artifacts_refreshed(v: &View, m: JobMemory, export: &ExportResponse) -> Step {
    let mut next = v.status.clone();
    next.artifacts = Some(artifacts_status(v.spec, export));
    let wait = schedule::refresh_wait(refresh_before(v.spec), export.expires_at, v.now);
    Step::new(next, m, Next::Requeue(wait)).event(
        false,
        Reason::ArtifactsRefreshed,
        "Export",
        format!(
            "artifact URLs refreshed; they expire at {}",
            export.expires_at
        ),
    )
}
