//! The coordinator's payroll: pays what its paying projects owe, through a [`Payer`].
//!
//! Each round first looks at the payments already signed: one in a block is settled as
//! paid; one that is not is sent again, the same bytes (so a payment written before a
//! `kill -9` and never sent goes out after the restart, and one sent twice is mined
//! once); one whose nonce another transaction took is owed again. Then what is owed is
//! signed, written, and only then sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::coordinator::{Coordinator, Owed};
use crate::error::ComputeError;
use crate::pay::{PayError, Payer, SharedPayer, Signed};

/// How often the payroll looks at what is owed and what was sent.
pub const PAY_EVERY: Duration = Duration::from_secs(2);

/// How paying is going, for `nodus compute status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PayrollState {
    /// The account paid from.
    pub account: String,
    pub payments_mined: u64,
    pub payments_sent: u64,
    /// Why the last round stopped short (no funds, the chain refused), if it did.
    pub last_error: Option<String>,
}

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub mined: u64,
    pub signed: u64,
}

pub(crate) async fn run(
    coordinator: Arc<Coordinator>,
    payer: SharedPayer,
    state: Arc<Mutex<PayrollState>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(PAY_EVERY) => {}
        }
        let r = round(&coordinator, payer.as_ref()).await;
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(r) => {
                s.payments_mined += r.mined;
                s.payments_sent += r.signed;
                s.last_error = None;
            }
            Err(e) => {
                tracing::debug!(target: "nodus::compute", "paying volunteers: {e}");
                s.last_error = Some(e.to_string());
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ComputeError> + Send + 'static,
) -> Result<T, ComputeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ComputeError::Stopped)?
}

/// One pass: settles or resends what was signed, then signs, writes and sends what is
/// owed.
pub async fn round(c: &Arc<Coordinator>, payer: &dyn Payer) -> Result<Round, ComputeError> {
    let mut done = Round::default();
    if !c.pays() {
        return Ok(done);
    }
    let pending = blocking({
        let c = c.clone();
        move || c.payments()
    })
    .await?;
    let mut highest = None;
    let mut reserved = 0u128;
    for (hash, p) in pending {
        let mined = match payer.mined(hash).await? {
            Some(_) => true,
            None => match payer.send(p.raw.clone()).await {
                Ok(()) | Err(PayError::Known) => {
                    highest = highest.max(Some(p.nonce));
                    reserved = reserved.saturating_add(p.cost);
                    continue;
                }
                // Mined since we looked, or lost to another transaction of the account.
                Err(PayError::NonceUsed) => payer.mined(hash).await?.is_some(),
                Err(e) => return Err(e.into()),
            },
        };
        done.mined += mined as u64;
        blocking({
            let c = c.clone();
            move || c.settle(&hash, &p, mined)
        })
        .await?;
    }
    let owed = c.owed();
    if owed.is_empty() {
        return Ok(done);
    }
    let transfers = owed.iter().map(|o| (o.to, o.wei)).collect();
    let signed = payer.sign(transfers, highest, reserved).await?;
    let pairs: Vec<(Owed, Signed)> = owed.into_iter().zip(signed).collect();
    done.signed = pairs.len() as u64;
    let raws: Vec<Vec<u8>> = pairs.iter().map(|(_, s)| s.raw.clone()).collect();
    blocking({
        let c = c.clone();
        move || c.record(&pairs)
    })
    .await?;
    for raw in raws {
        match payer.send(raw).await {
            Ok(()) | Err(PayError::Known) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}
