//! Progress on stderr, and the narrated steps of `nodus demo`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};

/// How long one demo step may wait for the network; a step as a whole gets twice this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A spinner on stderr (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// One demo step's outcome, for the summary table.
pub struct Step {
    pub what: &'static str,
    pub ok: bool,
    pub figure: String,
}

/// The demo's steps so far, and the narration they are also told to (the watcher
/// node's dashboard), if any.
#[derive(Default)]
pub struct Steps {
    pub done: Vec<Step>,
    pub narration: Option<nodus_node::narration::Narration>,
}

/// Runs one narrated step; a failure is recorded, not fatal, so the summary shows all.
pub async fn step<F>(steps: &mut Steps, what: &'static str, fut: F)
where
    F: Future<Output = Result<String>>,
{
    step_with(steps, what, async { fut.await.map(|f| ((), f)) }).await;
}

/// [`step`] for a step whose result later steps build on: that result, if it worked.
pub async fn step_with<T, F>(steps: &mut Steps, what: &'static str, fut: F) -> Option<T>
where
    F: Future<Output = Result<(T, String)>>,
{
    let pb = spinner(what);
    let narrated = steps
        .narration
        .as_ref()
        .and_then(|n| Some((n, n.begin(what)?)));
    let t = Instant::now();
    let r = tokio::time::timeout(STEP_TIMEOUT * 2, fut)
        .await
        .unwrap_or_else(|_| Err(anyhow!("timed out")));
    pb.finish_and_clear();
    let (value, figure) = match r {
        Ok((v, f)) => (Some(v), f),
        Err(e) => (None, format!("FAILED: {e:#}")),
    };
    let ok = value.is_some();
    println!(
        "{} {what}: {figure} [{:.1} s]",
        if ok { "ok  " } else { "FAIL" },
        t.elapsed().as_secs_f64()
    );
    if let Some((n, index)) = narrated {
        n.finish(index, ok, &figure);
    }
    steps.done.push(Step { what, ok, figure });
    value
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
