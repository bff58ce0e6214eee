//! Kubernetes Events of the operator (`events.k8s.io/v1`), each created once and forgotten.
//!
//! kube-runtime's `Recorder` keeps every Event it published for six minutes (to count repeats
//! into a series), and drops old ones only when it publishes again: after a busy hour the last
//! thousands of Events stay in the process for good. The decisions already publish a persisting
//! problem once (`JobMemory::last_warning`), so there is nothing to aggregate and nothing here
//! is kept.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// The longest name of an object of the API server (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Publishes Events as one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
}

/// One Event to publish about `regarding`.
pub struct Note<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    /// At most 1024 bytes (the API server's limit); the caller cuts it.
    pub note: &'a str,
}

impl Publisher {
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
        }
    }

    pub async fn publish(
        &self,
        note: &Note<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let event = Event {
            action: Some(note.action.to_string()),
            reason: Some(note.reason.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(note.note.to_string()),
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(event_name(
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond(),
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_string()),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }
}

/// `<object name>.<time in hex>`, within the API server's 253 characters: a long object name is
/// cut, and the cut never ends in `.` or `-` (a name's parts must end in a letter or digit).
fn event_name(object: &str, nanos: i128) -> String {
    let suffix = format!(".{:x}", nanos.max(0));
    let room = MAX_NAME - suffix.len();
    let mut end = object.len().min(room);
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = object[..end].trim_end_matches(['.', '-']);
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_and_end_their_parts_in_a_letter_or_digit() {
        assert_eq!(event_name("billing", 255), "billing.ff");
        let now = 1_800_000_000_000_000_000i128;
        for object in [
            "a".repeat(253),
            format!("{}.{}", "a".repeat(235), "b".repeat(17)),
            format!("{}-{}", "a".repeat(235), "b".repeat(17)),
        ] {
            let name = event_name(&object, now);
            assert!(name.len() <= MAX_NAME, "{} chars", name.len());
            assert!(!name.contains(".."), "{name}");
            assert!(!name.contains("-."), "{name}");
            assert!(name.starts_with("aaa"), "{name}");
        }
    }
}
