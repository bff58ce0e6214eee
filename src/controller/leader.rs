//! Leader election on a Lease, and the fence that stops a leader which can no longer prove it
//! holds the Lease.
//!
//! The lease manager reports leadership changes, but when a renewal fails (the API server
//! unreachable, a conflict it cannot resolve) it only logs and retries while still reporting
//! "leader": meanwhile the Lease expires and another replica takes over. So the leader also reads
//! the Lease itself every grace period and exits when it is held by someone else, was not renewed
//! within its duration, or cannot be read for a whole duration: two replicas never reconcile
//! together for longer than that.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tracing::{error, info, warn};

use super::server::Readiness;

/// What leader election needs.
pub struct Election<'a> {
    pub client: kube::Client,
    pub namespace: String,
    pub name: &'a str,
    pub identity: String,
    pub lease_seconds: u64,
}

/// Waits until this replica leads (`Ok(false)`: asked to stop first). While it leads, a task
/// exits the process as soon as leadership is lost or cannot be proven.
pub async fn lead(
    e: Election<'_>,
    readiness: &Readiness,
    stopped: impl Future<Output = ()>,
) -> anyhow::Result<bool> {
    let grace = e.lease_seconds.div_ceil(3).max(1);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(e.client.clone(), e.name)
        .with_namespace(&e.namespace)
        .with_identity(&e.identity)
        .with_duration(e.lease_seconds)
        .with_grace(grace)
        .build()
        .await
        .context("cannot set up leader election")?;
    // Dropping the task's handle detaches it: it renews for as long as a receiver lives.
    let (mut leader, _renewals) = manager.watch().await;
    // A standby replica is ready: it can take over.
    readiness.set(true);
    info!(lease = %e.name, namespace = %e.namespace, identity = %e.identity, "waiting for leadership");
    let mut stop = Box::pin(stopped);
    while !*leader.borrow_and_update() {
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped");
                }
            }
            _ = &mut stop => return Ok(false),
        }
    }
    info!(identity = %e.identity, "became leader");
    readiness.set(false);
    tokio::spawn(async move {
        while leader.changed().await.is_ok() {
            if !*leader.borrow() {
                error!("lost leadership; exiting so another replica takes over");
                std::process::exit(1);
            }
        }
    });
    let api: Api<Lease> = Api::namespaced(e.client, &e.namespace);
    tokio::spawn(fence(
        api,
        e.name.to_string(),
        e.identity,
        e.lease_seconds,
        grace,
    ));
    Ok(true)
}

/// Reads the Lease every `grace` seconds and exits the process once leadership is not proven.
async fn fence(api: Api<Lease>, name: String, identity: String, duration: u64, grace: u64) {
    let mut last_proof = Timestamp::now();
    loop {
        tokio::time::sleep(Duration::from_secs(grace)).await;
        let now = Timestamp::now();
        let verdict = match api.get_opt(&name).await {
            Ok(lease) => {
                let spec = lease.and_then(|l| l.spec);
                let holder = spec.as_ref().and_then(|s| s.holder_identity.clone());
                let renewed = spec.and_then(|s| s.renew_time).map(|t| t.0);
                lease_verdict(holder.as_deref(), renewed, duration, &identity, now)
            }
            Err(err) => {
                warn!(error = %err, "cannot read the leader election Lease");
                unproven_for(last_proof, duration, now)
            }
        };
        match verdict {
            Ok(()) => last_proof = now,
            Err(why) => {
                error!(reason = %why, "leadership is not proven; exiting so another replica takes over");
                std::process::exit(1);
            }
        }
    }
}

/// Whether the Lease as read proves that `identity` still leads at `now`.
pub fn lease_verdict(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: u64,
    identity: &str,
    now: Timestamp,
) -> Result<(), String> {
    match holder {
        Some(h) if h == identity => {}
        Some(h) => return Err(format!("the Lease is held by {h:?}")),
        None => return Err("the Lease has no holder".into()),
    }
    let Some(renewed) = renewed else {
        return Err("the Lease has no renewTime".into());
    };
    let age = now.as_second() - renewed.as_second();
    if age > duration as i64 {
        return Err(format!(
            "the Lease was last renewed {age} s ago, longer than its {duration} s"
        ));
    }
    Ok(())
}

/// The Lease could not be read: fine for less than a lease duration since the last proof.
pub fn unproven_for(last_proof: Timestamp, duration: u64, now: Timestamp) -> Result<(), String> {
    let age = now.as_second() - last_proof.as_second();
    if age > duration as i64 {
        return Err(format!("the Lease could not be read for {age} s"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_lease_held_and_renewed_proves_leadership() {
        assert_eq!(
            lease_verdict(Some("me"), Some(t(0)), 15, "me", t(10)),
            Ok(())
        );
    }

    #[test]
    fn a_lease_taken_by_another_replica_stops_this_one() {
        let e = lease_verdict(Some("other"), Some(t(9)), 15, "me", t(10)).unwrap_err();
        assert!(e.contains("\"other\""), "{e}");
        assert!(lease_verdict(None, Some(t(9)), 15, "me", t(10)).is_err());
    }

    #[test]
    fn a_lease_not_renewed_within_its_duration_stops_the_leader() {
        // The lease manager failed to renew (and still says "leader").
        let e = lease_verdict(Some("me"), Some(t(0)), 15, "me", t(16)).unwrap_err();
        assert!(e.contains("16 s ago"), "{e}");
        assert!(lease_verdict(Some("me"), None, 15, "me", t(16)).is_err());
    }

    #[test]
    fn an_unreadable_lease_stops_the_leader_after_one_duration() {
        assert_eq!(unproven_for(t(0), 15, t(15)), Ok(()));
        assert!(unproven_for(t(0), 15, t(16)).is_err());
    }
}
