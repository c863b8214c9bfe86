//! Waking executors when jobs become claimable, instead of polling faster.
//!
//! A write transaction that makes jobs claimable (new jobs, a job approved
//! or handed back, an agent connecting to this process) marks itself with
//! [`WriteTx::mark_jobs_ready`](crate::WriteTx::mark_jobs_ready). Its
//! commit wakes this process's executors at once and, on PostgreSQL, sends
//! `NOTIFY steward_jobs` in the same transaction, so every replica
//! listening on the database wakes when (and only if) it commits. An
//! executor still polls at its idle interval for jobs that become due with
//! time (retry backoff, maintenance windows); the wake only makes new work
//! start without waiting for that poll.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// The PostgreSQL channel a commit that made jobs claimable notifies.
pub(crate) const JOBS_CHANNEL: &str = "steward_jobs";

/// The wake-up shared by a store's clones.
#[derive(Debug)]
pub(crate) struct JobsWake {
    notify: Notify,
    /// PostgreSQL: the URL the listener connects to.
    url: Option<String>,
    /// The listener task, started by the first waiter; aborted with the
    /// last clone of the store.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for JobsWake {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl JobsWake {
    pub(crate) fn new(postgres_url: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            notify: Notify::new(),
            url: postgres_url,
            listener: Mutex::new(None),
        })
    }

    /// Wakes every waiting executor of this process, and the next one to
    /// wait if none is waiting now.
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Resolves at the next wake (of this process, or on PostgreSQL of any
    /// process's commit that made jobs claimable).
    pub(crate) async fn woken(self: &Arc<Self>) {
        self.start_listener();
        self.notify.notified().await;
    }

    fn start_listener(self: &Arc<Self>) {
        let Some(url) = self.url.clone() else {
            return;
        };
        let mut listener = self.listener.lock().expect("listener lock poisoned");
        if listener.is_none() {
            *listener = Some(tokio::spawn(listen(url, Arc::downgrade(self))));
        }
    }
}

/// Listens on [`JOBS_CHANNEL`] and wakes on each notification; reconnects
/// after a lost connection (waking once then, since a notification sent
/// meanwhile is lost) until the store is gone.
async fn listen(url: String, wake: Weak<JobsWake>) {
    use sqlx::postgres::PgListener;
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(JOBS_CHANNEL).await {
                Ok(()) => loop {
                    let Some(w) = wake.upgrade() else { return };
                    w.wake();
                    drop(w);
                    match listener.try_recv().await {
                        // A notification: wake (at the top of the loop).
                        Ok(Some(_)) => {}
                        // The connection was lost and is re-established
                        // by the next call: wake, since notifications sent
                        // meanwhile are gone.
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for new jobs failed; reconnecting");
                            break;
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "LISTEN for new jobs failed; retrying"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot connect to listen for new jobs; retrying")
            }
        }
        if wake.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
