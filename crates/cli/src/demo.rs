//! `nodus demo`: a local network on loopback, narrated: the overlay's steps, then each
//! service's (in the order of `services!` in main.rs), then a summary table. Exits 0 only if every step
//! worked.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, anyhow};
use nodus_testnet::Testnet;

use crate::node::demo::DEMO_NODES;
use crate::ui::progress::{Steps, ms, spinner};
use crate::ui::table;

/// Runs the demo. A watcher node joins the network first: every step, and what each
/// node does during it, is narrated on its dashboard. With `open`, that dashboard is
/// offered first (its login link printed, and opened if the desktop can) and the
/// network stays up at the end until Ctrl-C, so what happened can be looked at.
pub async fn run(open: bool) -> Result<ExitCode> {
    // The narration is the output; logs only when asked for (NODUS_LOG=debug, say).
    if let Ok(filter) = std::env::var("NODUS_LOG") {
        crate::ui::process::init_logging(&filter);
    }
    let dir = tempfile::tempdir()?;
    println!(
        "nodus demo: a local network of {DEMO_NODES} nodes on loopback (127.0.1.1 .. 127.0.{DEMO_NODES}.1), data in {}",
        dir.path().display()
    );
    let mut steps = Steps::default();
    let started = Instant::now();
    let pb = spinner("starting nodes");
    let net = Testnet::start(DEMO_NODES, dir.path()).await;
    pb.finish_and_clear();
    let mut net = match net {
        Ok(n) => n,
        Err(e) => return Err(anyhow!("could not start the local network: {e}")),
    };
    println!(
        "ok   started {DEMO_NODES} nodes in {}",
        ms(started.elapsed())
    );

    let watcher = net
        .start_watcher()
        .await
        .map_err(|e| anyhow!("could not start the watcher node: {e}"))?;
    watcher
        .narration()
        .set_title(&format!("nodus demo: {DEMO_NODES} nodes on loopback"));
    steps.narration = Some(watcher.narration().clone());
    if open {
        let api = nodus_node::client::ApiClient::from_data_dir(&watcher.data_dir)?;
        let url = api.dashboard_url();
        println!(
            "watch every step on the watcher node's dashboard (the link holds its API token): {url}"
        );
        if let Err(e) = crate::node::open_in_browser(&url) {
            println!("     {e}");
        }
    }

    // Ctrl-C stops the demo between or during steps: the network is shut down and
    // the summary shows what ran.
    let interrupted = tokio::select! {
        _ = async {
            crate::demo_steps(&mut net, &mut steps).await;
            // Last: it draws what the others did.
            crate::node::demo::dashboard_step(&net, &mut steps).await;
        } => false,
        r = crate::ui::process::stop_signal() => {
            r?;
            println!("\ninterrupted: stopping the network");
            true
        }
    };

    if open && !interrupted {
        println!("\nthe network stays up for the dashboard: Ctrl-C ends it");
        crate::ui::process::stop_signal().await?;
    }

    let t = Instant::now();
    net.shutdown().await;
    tracing::debug!("shutdown took {:?}", t.elapsed());
    println!();
    let steps = steps.done;
    let rows: Vec<Vec<String>> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                s.what.to_string(),
                if s.ok { "ok" } else { "FAILED" }.to_string(),
                s.figure.clone(),
            ]
        })
        .collect();
    table(&["#", "capability", "result", "measured"], &rows);
    let failed = steps.iter().filter(|s| !s.ok).count();
    println!(
        "\n{} of {} shown working in {:.1} s{}",
        steps.len() - failed,
        steps.len(),
        started.elapsed().as_secs_f64(),
        if interrupted {
            ", then interrupted"
        } else {
            ""
        }
    );
    Ok(if interrupted {
        // As a shell reports a command stopped by SIGINT.
        ExitCode::from(130)
    } else if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
