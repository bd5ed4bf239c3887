//! Kubernetes Events (events.k8s.io/v1) on status condition transitions.
//!
//! Entry points: [`transitions`] (pure: which conditions flipped) and [`EventSink::publish`].
//! An Event is emitted when a condition appears or its status or reason changes; it is a
//! `Warning` when the new status is `False`. The note names the field at fault (the
//! condition message does). A failed Event is logged, never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use portico_crds::api::Condition;

/// Publishes Events as `portico-operator`.
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
}

impl EventSink {
    /// A sink whose events name `instance` (the pod name) as reporting instance.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes `events` about `reference`; failures are logged and skipped.
    pub async fn publish(&self, reference: &ObjectReference, events: &[Event]) {
        for ev in events {
            if let Err(e) = self.recorder.publish(ev, reference).await {
                tracing::warn!(
                    error = %e,
                    object = ?reference.name,
                    reason = %ev.reason,
                    "could not publish an Event"
                );
            }
        }
    }
}

/// The Events for conditions in `new` that are absent from `old` or changed status or reason.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Event> {
    new.iter()
        .filter(|c| {
            !old.iter()
                .any(|o| o.type_ == c.type_ && o.status == c.status && o.reason == c.reason)
        })
        .map(|c| Event {
            type_: if c.status == "False" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: c.reason.clone(),
            // The API server refuses notes over 1 kB.
            note: Some(truncate(
                &format!("{}={}: {}", c.type_, c.status, c.message),
                1000,
            )),
            action: c.type_.clone(),
            secondary: None,
        })
        .collect()
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `...`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(t: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: status.into(),
            reason: reason.into(),
            message: "spec.resources[0].path: bad".into(),
            last_transition_time: "2024-01-01T00:00:00Z".into(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn only_flipped_conditions_become_events_and_false_is_a_warning() {
        let old = vec![
            cond("Accepted", "True", "Accepted"),
            cond("Ready", "True", "Published"),
        ];
        let new = vec![
            cond("Accepted", "False", "InvalidPath"),
            cond("Ready", "True", "Published"),
        ];
        let evs = transitions(&old, &new);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].type_, EventType::Warning);
        assert_eq!(evs[0].reason, "InvalidPath");
        assert_eq!(
            evs[0].note.as_deref(),
            Some("Accepted=False: spec.resources[0].path: bad")
        );
        assert!(transitions(&new, &new).is_empty());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééééé", 6), "é...");
    }
}
