//! The mining loop: take a template from the actor, search for a seal on blocking
//! threads, hand a found block back. A template is dropped when the head changes (the
//! actor sets the stop flag) or after a few seconds, to pick up new transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::handle::{ChainHandle, Input};

/// How long one template is worked on before it is rebuilt with newer transactions.
const TEMPLATE_LIFETIME: Duration = Duration::from_secs(2);

pub(super) fn spawn(
    handle: ChainHandle,
    stop: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut settings = handle.mining.subscribe();
        let hashes = Arc::new(AtomicU64::new(0));
        let mut window = (Instant::now(), 0u64);
        loop {
            let m = settings.borrow_and_update().clone();
            handle.miner_idle.store(!m.enabled, Ordering::Release);
            if !m.enabled {
                handle.hash_rate.store(0, Ordering::Relaxed);
                tokio::select! {
                    _ = super::stopped(&mut shutdown) => return,
                    r = settings.changed() => if r.is_err() { return },
                }
                continue;
            }
            let (reply, rx) = oneshot::channel();
            if handle
                .tx
                .send(Input::Template {
                    coinbase: m.coinbase,
                    reply,
                })
                .await
                .is_err()
            {
                return;
            }
            let Ok(Some(template)) = rx.await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            // Stop this search on a new head, on shutdown, on a settings change, or when
            // the template is old.
            let search_stop = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (stop, search_stop) = (stop.clone(), search_stop.clone());
                let mut shutdown = shutdown.clone();
                let mut settings = settings.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::sleep(TEMPLATE_LIFETIME);
                    tokio::pin!(deadline);
                    let mut poll = tokio::time::interval(Duration::from_millis(20));
                    loop {
                        tokio::select! {
                            _ = &mut deadline => break,
                            _ = super::stopped(&mut shutdown) => break,
                            _ = settings.changed() => break,
                            _ = poll.tick() => if stop.load(Ordering::Relaxed) { break },
                        }
                    }
                    search_stop.store(true, Ordering::Relaxed);
                })
            };
            let (threads, rate, counter) = (m.threads, m.max_hashes_per_sec, hashes.clone());
            let sealed = tokio::task::spawn_blocking(move || {
                crate::miner::seal_own(template, threads, rate, &search_stop, &counter)
            })
            .await
            .ok()
            .flatten();
            watcher.abort();
            let elapsed = window.0.elapsed();
            if elapsed >= Duration::from_secs(1) {
                let total = hashes.load(Ordering::Relaxed);
                handle.hash_rate.store(
                    ((total - window.1) as f64 / elapsed.as_secs_f64()) as u64,
                    Ordering::Relaxed,
                );
                window = (Instant::now(), total);
            }
            if let Some(block) = sealed
                && handle.tx.send(Input::Mined(Box::new(block))).await.is_err()
            {
                return;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}
