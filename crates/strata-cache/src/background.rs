//! Background tasks of a cache with a Redis tier: the invalidation publisher and
//! subscriber, and the probe that closes the circuit when Redis answers again.
//! Each holds only a weak handle and stops when the last [`crate::Cache`] is dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::cache::{Inner, WeakInner};
use crate::invalidation::{InvalidationMessage, MessageItem};

/// Largest number of invalidations in one message.
const MAX_BATCH: usize = 1000;

pub(crate) async fn spawn(inner: &Arc<Inner>, rx: mpsc::UnboundedReceiver<MessageItem>) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(publisher(weak.clone(), rx));
    tokio::spawn(probe(weak.clone(), inner.shutdown.subscribe()));
    let (ready_tx, mut ready_rx) = watch::channel(false);
    tokio::spawn(subscriber(weak, inner.shutdown.subscribe(), ready_tx));
    // Wait briefly for the first subscription so that an instance that has just been
    // built does not miss messages sent right after; never fail the build over it.
    if inner.l2.as_ref().is_some_and(|l2| l2.is_up()) {
        let _ = tokio::time::timeout(Duration::from_secs(2), ready_rx.wait_for(|r| *r)).await;
    }
}

/// Sends queued invalidations, everything queued at that moment in one message:
/// batching comes from load itself, adding no delay when idle. A message that fails
/// to go out is kept and retried with backoff: peers whose subscription stayed up would
/// otherwise keep stale L1 copies. The backlog is bounded by collapsing it.
async fn publisher(weak: WeakInner, mut rx: mpsc::UnboundedReceiver<MessageItem>) {
    let mut backlog: Vec<MessageItem> = Vec::new();
    let mut backoff = Duration::from_millis(20);
    loop {
        if backlog.is_empty() {
            match rx.recv().await {
                Some(first) => backlog.push(first),
                None => return,
            }
        }
        while let Ok(i) = rx.try_recv() {
            backlog.push(i);
        }
        let Some(inner) = weak.upgrade() else { return };
        if backlog.len() > MAX_BACKLOG {
            let before = backlog.len();
            backlog = collapse(backlog);
            // The collapsed items stand for the dropped ones in the outstanding count.
            inner
                .publish_outstanding
                .fetch_sub((before - backlog.len()) as u64, Ordering::AcqRel);
        }
        let Some(l2) = &inner.l2 else { return };
        let mut failed = false;
        while !backlog.is_empty() {
            let n = backlog.len().min(MAX_BATCH);
            let items: Vec<MessageItem> = backlog[..n].to_vec();
            let payload = InvalidationMessage {
                v: 1,
                origin: inner.instance_id.clone(),
                items,
            }
            .to_bytes();
            match l2.publish(&l2.options().channel, &payload).await {
                Ok(()) => {
                    inner.messages_published.fetch_add(1, Ordering::Relaxed);
                    backlog.drain(..n);
                    inner
                        .publish_outstanding
                        .fetch_sub(n as u64, Ordering::AcqRel);
                }
                Err(e) => {
                    tracing::debug!(error = %e, pending = backlog.len(), "invalidation message not published; will retry");
                    failed = true;
                    break;
                }
            }
        }
        drop(inner);
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        } else {
            backoff = Duration::from_millis(20);
        }
    }
}

/// Most invalidations kept for retry before the backlog is collapsed.
const MAX_BACKLOG: usize = 10_000;

/// Replaces a backlog by one whole-namespace invalidation per namespace in it: a
/// superset of what it asked for, in bounded size.
fn collapse(backlog: Vec<MessageItem>) -> Vec<MessageItem> {
    let mut names: Vec<String> = backlog
        .into_iter()
        .map(|i| i.invalidation.namespace)
        .collect();
    names.sort_unstable();
    names.dedup();
    tracing::warn!(
        namespaces = names.len(),
        "invalidation backlog collapsed to whole namespaces"
    );
    names
        .into_iter()
        .map(|ns| MessageItem {
            invalidation: crate::Invalidation::namespace(&ns),
            resolved: Vec::new(),
        })
        .collect()
}

/// Keeps a subscription to the invalidation channel, flushing coherent namespaces
/// whenever it may have missed messages.
async fn subscriber(
    weak: WeakInner,
    mut shutdown: watch::Receiver<()>,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut subscribed_before = false;
    loop {
        let Some((clients, channel)) = weak.upgrade().and_then(|i| {
            i.l2.as_ref()
                .map(|l2| (l2.pubsub_clients(), l2.options().channel.clone()))
        }) else {
            return;
        };
        for client in clients {
            let conn =
                tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await;
            let Ok(Ok(mut pubsub)) = conn else { continue };
            if tokio::time::timeout(Duration::from_secs(1), pubsub.subscribe(&channel))
                .await
                .is_err()
            {
                continue;
            }
            if subscribed_before {
                if let Some(inner) = weak.upgrade() {
                    inner.flush_coherent();
                }
            }
            subscribed_before = true;
            backoff = Duration::from_millis(50);
            let _ = ready.send(true);
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(m) => {
                            let Some(inner) = weak.upgrade() else { return };
                            handle(&inner, m.get_payload_bytes());
                        }
                        None => break,
                    },
                    _ = shutdown.changed() => return,
                }
            }
            tracing::warn!("invalidation subscription dropped; flushing coherent namespaces");
            if let Some(inner) = weak.upgrade() {
                inner.flush_coherent();
            }
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Applies a message from the channel. Garbage is logged and dropped.
fn handle(inner: &Inner, payload: &[u8]) {
    if let Err(e) = inner.apply_message(payload) {
        tracing::warn!(error = %e, "invalidation message ignored");
    }
}

/// Watches Redis: while the circuit is open, tries to reconnect; when Redis answers,
/// flushes what may be stale, replays what Redis missed, and closes the circuit.
/// While closed, pings now and then so a Redis that died without traffic is noticed.
async fn probe(weak: WeakInner, mut shutdown: watch::Receiver<()>) {
    let interval = match weak
        .upgrade()
        .and_then(|i| i.l2.as_ref().map(|l| l.options().probe_interval))
    {
        Some(i) => i,
        None => return,
    };
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        ticks = ticks.wrapping_add(1);
        let Some(inner) = weak.upgrade() else { return };
        let Some(l2) = &inner.l2 else { return };
        if l2.circuit.is_open() {
            if l2.probe().await {
                // Order matters: flush before reads may use L2 again, replay after.
                inner.flush_coherent();
                l2.circuit.close();
                inner.replay_pending().await;
                tracing::info!("redis is back; circuit closed");
            }
        } else if ticks.is_multiple_of(4) {
            let _ = l2.ping().await;
        }
    }
}
