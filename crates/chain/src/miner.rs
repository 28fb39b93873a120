//! Sealing: the nonce search over a template, on threads of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alloy_primitives::B64;

use crate::chain::{Sealed, Template};
use crate::pow;
use crate::store::ChainBlock;

/// Searches for a seal with `threads` threads at `rate` hashes per second in all
/// (0 = unlimited). Returns None when `stop` is set first. Adds hashes tried to `hashes`.
pub fn seal(
    template: Template,
    threads: usize,
    rate: u64,
    stop: &AtomicBool,
    hashes: &AtomicU64,
) -> Option<ChainBlock> {
    seal_own(template, threads, rate, stop, hashes).map(|s| s.block)
}

/// [`seal`], keeping the template's execution results for [`crate::chain::Chain::commit_own`].
pub fn seal_own(
    template: Template,
    threads: usize,
    rate: u64,
    stop: &AtomicBool,
    hashes: &AtomicU64,
) -> Option<Sealed> {
    let seal = pow::seal_hash(&template.header);
    let threads = threads.max(1) as u64;
    let start: u64 = rand::random();
    let found = Arc::new(std::sync::Mutex::new(None));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..threads {
            let found = found.clone();
            let done = &done;
            let seal = &seal;
            let target = template.target;
            s.spawn(move || {
                let both = StopEither(stop, done);
                let (hit, tried) = pow::search_until(
                    seal,
                    target,
                    start.wrapping_add(i),
                    threads,
                    rate / threads,
                    &both,
                );
                hashes.fetch_add(tried, Ordering::Relaxed);
                if let Some(hit) = hit {
                    done.store(true, Ordering::Relaxed);
                    if let Ok(mut f) = found.lock() {
                        f.get_or_insert(hit);
                    }
                }
            });
        }
    });
    let hit = found.lock().ok()?.take();
    let (nonce, work) = hit?;
    let mut header = template.header;
    header.nonce = B64::from(nonce.to_be_bytes());
    header.mix_hash = work;
    Some(Sealed {
        block: ChainBlock {
            header,
            body: template.body,
        },
        receipts: template.receipts,
        diff: template.diff,
    })
}

/// Stops when either flag is set.
pub struct StopEither<'a>(pub &'a AtomicBool, pub &'a AtomicBool);

impl pow::Stop for StopEither<'_> {
    fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) || self.1.load(Ordering::Relaxed)
    }
}
