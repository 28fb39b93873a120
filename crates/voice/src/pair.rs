//! Two ends of a call in one process, for tests and the benchmark: A says `said`, B
//! records, for as long as the speech lasts and `tail` more; both summaries come back.

use std::sync::Arc;
use std::time::Duration;

use crate::VoiceError;
use crate::codec::SampleRate;
use crate::media::Keys;
use crate::session::{Recording, Samples, Session, Setup, Summary};

/// What B heard, and A's and B's summaries.
pub struct Talked {
    pub heard: Vec<i16>,
    pub a: Summary,
    pub b: Summary,
}

/// Runs the call at 16 kHz; `during` runs once the call is half way (to kill a relay,
/// say).
pub async fn talk(
    a: Arc<Session>,
    b: Arc<Session>,
    said: Vec<i16>,
    bitrate: i32,
    tail: Duration,
    during: impl std::future::Future<Output = ()>,
) -> Result<Talked, VoiceError> {
    talk_at(a, b, said, SampleRate::WIDEBAND, bitrate, tail, during).await
}

/// [`talk`] with both ends at `rate` (`said` and what is heard are at it).
pub async fn talk_at(
    a: Arc<Session>,
    b: Arc<Session>,
    said: Vec<i16>,
    rate: SampleRate,
    bitrate: i32,
    tail: Duration,
    during: impl std::future::Future<Output = ()>,
) -> Result<Talked, VoiceError> {
    let length = Duration::from_millis(said.len() as u64 * 1000 / rate.hz() as u64);
    let (ab, ba) = (Keys::random(), Keys::random());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let heard = Recording::default();
    let setup = |send: &Keys, receive: &Keys| Setup {
        send: send.clone(),
        receive: receive.clone(),
        bitrate,
        rate,
    };
    let ta = {
        let (a, s, setup) = (a.clone(), stopped.clone(), setup(&ab, &ba));
        tokio::spawn(async move {
            a.run(setup, Samples::new(said), Recording::default(), s)
                .await
        })
    };
    let tb = {
        let (b, s, rec, setup) = (b.clone(), stopped, heard.clone(), setup(&ba, &ab));
        tokio::spawn(async move { b.run(setup, Samples::new(vec![]), rec, s).await })
    };
    tokio::time::sleep(length / 2).await;
    during.await;
    tokio::time::sleep(length / 2 + tail).await;
    let _ = stop.send(true);
    let a = ta.await.map_err(|e| VoiceError::Rtp(e.to_string()))??;
    let b = tb.await.map_err(|e| VoiceError::Rtp(e.to_string()))??;
    let heard = heard.0.lock().expect("recording").clone();
    Ok(Talked { heard, a, b })
}
