//! Draining on shutdown: the connections being served, and the one signal that asks each to
//! finish its request in flight and close.
//!
//! hyper-util's `GracefulShutdown` watches plain HTTP/1 connections only; a connection served
//! with upgrades (what a protocol switch such as WebSocket needs) is not one, so the proxy
//! keeps this small equivalent: a watch channel whose receivers are the connections.

use tokio::sync::watch;

/// The drain signal and the connections watching it.
#[derive(Clone, Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::Sender::new(false),
        }
    }
}

/// One connection's end of the signal; dropping it marks the connection done.
#[derive(Debug)]
pub struct Watch(watch::Receiver<bool>);

impl Watch {
    /// Resolves once draining has begun (at once if it already has).
    pub async fn draining(&mut self) {
        // An error means the Drain is gone: drain as well.
        let _ = self.0.wait_for(|&d| d).await;
    }
}

impl Drain {
    /// A new signal, not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection.
    pub fn watch(&self) -> Watch {
        Watch(self.tx.subscribe())
    }

    /// Connections still being served.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Raises the signal and waits until every connection is done.
    pub async fn shutdown(&self) {
        self.tx.send_replace(true);
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_signals_every_watcher_and_waits_for_them() {
        let drain = Drain::new();
        let mut early = drain.watch();
        let task = tokio::spawn(async move {
            early.draining().await;
            // Still "serving" for a moment after the signal.
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(early);
        });
        assert_eq!(drain.count(), 1);
        drain.shutdown().await;
        assert_eq!(drain.count(), 0);
        task.await.unwrap();
        // A connection registered after the signal sees it at once.
        let mut late = drain.watch();
        tokio::time::timeout(Duration::from_secs(5), late.draining())
            .await
            .expect("already draining");
    }
}
