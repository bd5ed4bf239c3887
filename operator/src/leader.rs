//! Leader election with a `coordination.k8s.io/v1` Lease, so that several replicas can run
//! and exactly one publishes the ConfigMap and writes statuses.
//!
//! ```text
//!  every retry period:  GET lease ─ 404 ──────────────────────────> POST (holder = me)
//!                                ├ holder = me ─────────────────────> PUT renewTime = now
//!                                ├ other holder, renewTime + duration > now ──> follower
//!                                └ other holder expired / none ─────> PUT holder = me,
//!                                                                     leaseTransitions + 1
//!  every PUT carries the resourceVersion read by the GET: a 409 Conflict means another
//!  replica won the race, and we stay a follower.
//! ```
//!
//! Entry points: [`LeaderElector::try_acquire_or_renew`] (one round, `now` injected for
//! tests) and [`LeaderElector::run`] (the loop, publishing leadership on a watch channel).
//! A leader whose renewals fail keeps leading until `renew_deadline` has passed since its
//! last successful renewal, then steps down (client-go's rule).

use crate::{Error, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// Timing and identity of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal (15 s, as client-go).
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down (10 s).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew (2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with client-go's default timings.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Acquires and renews the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// An elector on `cfg.namespace/cfg.name`.
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One election round at time `now`; true when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool> {
        let me = self.cfg.identity.as_str();
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.to_string()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    tracing::info!(identity = me, lease = %self.cfg.name, "created the Lease; leading");
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(me) {
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(self.duration_secs());
        } else {
            let duration = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(self.duration_secs()),
            ));
            let expires = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0 + duration);
            if holder.is_some() && expires.is_some_and(|t| t > now) {
                return Ok(false);
            }
            spec.holder_identity = Some(me.to_string());
            spec.lease_duration_seconds = Some(self.duration_secs());
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            tracing::info!(identity = me, previous = ?holder, "taking over the expired Lease");
        }
        // The resourceVersion from the GET stays in metadata: the PUT fails with 409 if
        // anyone wrote the Lease in between.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up (on shutdown) so another replica takes over without waiting for it
    /// to expire.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(Error::Leader(e.to_string())),
        }
    }

    /// Runs election rounds forever, sending `true` on `leader_tx` while leading.
    pub async fn run(&self, leader_tx: watch::Sender<bool>) {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(self.cfg.retry_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let leading = match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    last_renewed.is_some_and(|t| t.elapsed() < self.cfg.renew_deadline)
                }
            };
            if !leading {
                last_renewed = None;
            }
            leader_tx.send_if_modified(|v| {
                if *v != leading {
                    tracing::info!(identity = %self.cfg.identity, leading, "leadership changed");
                    *v = leading;
                    true
                } else {
                    false
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ApiServerVerifier, timeout_after_1s};
    use http::{Method, StatusCode};

    const PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/portico-system/leases/portico-operator";
    const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/portico-system/leases";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn elector(client: kube::Client) -> LeaderElector {
        LeaderElector::new(
            client,
            LeaseConfig::new("portico-operator", "portico-system", "pod-a"),
        )
    }

    fn held_by(holder: &str, renewed: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("portico-operator".into()),
                namespace: Some("portico-system".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(at("2025-01-01T00:00:00Z"))),
                renew_time: Some(MicroTime(at(renewed))),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_with_us_as_holder() {
        let (client, verifier) = ApiServerVerifier::new();
        let server = verifier.run(|mut s| async move {
            s.expect(Method::GET, PATH, "").await.not_found();
            let (body, reply) = s
                .expect(Method::POST, COLLECTION, "?")
                .await
                .json_body()
                .await;
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(body["spec"]["leaseTransitions"], 0);
            reply.ok(&body);
            s
        });
        timeout_after_1s(async {
            let now = at("2025-01-01T00:00:10Z");
            assert!(elector(client).try_acquire_or_renew(now).await.unwrap());
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_replica_makes_us_a_follower_without_writing() {
        let (client, verifier) = ApiServerVerifier::new();
        let lease = held_by("pod-b", "2025-01-01T00:00:05Z");
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, PATH, "").await.ok(&lease);
            s
        });
        timeout_after_1s(async {
            let now = at("2025-01-01T00:00:10Z");
            assert!(!elector(client).try_acquire_or_renew(now).await.unwrap());
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_guarded_by_its_resource_version() {
        let (client, verifier) = ApiServerVerifier::new();
        let lease = held_by("pod-b", "2025-01-01T00:00:05Z");
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, PATH, "").await.ok(&lease);
            let (body, reply) = s.expect(Method::PUT, PATH, "?").await.json_body().await;
            assert_eq!(body["metadata"]["resourceVersion"], "42");
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            assert_eq!(body["spec"]["renewTime"], "2025-01-01T00:00:30.000000Z");
            reply.ok(&body);
            s
        });
        timeout_after_1s(async {
            // 25 s after the last renewal of a 15 s lease.
            let now = at("2025-01-01T00:00:30Z");
            assert!(elector(client).try_acquire_or_renew(now).await.unwrap());
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn our_lease_is_renewed_and_a_conflict_makes_us_a_follower() {
        let (client, verifier) = ApiServerVerifier::new();
        let lease = held_by("pod-a", "2025-01-01T00:00:05Z");
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, PATH, "").await.ok(&lease);
            let (body, reply) = s.expect(Method::PUT, PATH, "?").await.json_body().await;
            assert_eq!(body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(
                body["spec"]["leaseTransitions"], 3,
                "a renewal is no transition"
            );
            assert_eq!(body["spec"]["renewTime"], "2025-01-01T00:00:07.000000Z");
            reply.ok(&body);
            // Second round: someone wrote the Lease between our GET and PUT.
            s.expect(Method::GET, PATH, "").await.ok(&lease);
            let (_, reply) = s.expect(Method::PUT, PATH, "?").await.json_body().await;
            reply.status(StatusCode::CONFLICT, "Conflict");
            s
        });
        timeout_after_1s(async {
            let e = elector(client);
            assert!(
                e.try_acquire_or_renew(at("2025-01-01T00:00:07Z"))
                    .await
                    .unwrap()
            );
            assert!(
                !e.try_acquire_or_renew(at("2025-01-01T00:00:09Z"))
                    .await
                    .unwrap()
            );
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn release_clears_the_holder_only_when_it_is_us() {
        let (client, verifier) = ApiServerVerifier::new();
        let ours = held_by("pod-a", "2025-01-01T00:00:05Z");
        let theirs = held_by("pod-b", "2025-01-01T00:00:05Z");
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, PATH, "").await.ok(&ours);
            let (body, reply) = s.expect(Method::PUT, PATH, "?").await.json_body().await;
            assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
            reply.ok(&body);
            s.expect(Method::GET, PATH, "").await.ok(&theirs);
            s
        });
        timeout_after_1s(async {
            let e = elector(client);
            e.release().await.unwrap();
            e.release().await.unwrap();
        })
        .await;
        server.finish().await;
    }
}
