//! `nodus bench compute`: what volunteer computing costs and gains, in one run.
//! - Tiny units per second end to end: a project of units that do next to nothing,
//!   each run by two volunteers and accepted by quorum; submit to the last acceptance.
//!   The anchor is a published figure: one BOINC server handles about 8.8 million tasks
//!   a day, about 100 a second.
//! - Speedup of a real kernel (Lennard-Jones cluster relaxation, `examples/compute/lj.c`)
//!   with 1, 2 and 4 volunteer nodes of one core each, against one.
//! - The sandbox against the same C program compiled natively (gcc -O2), run by run on
//!   the same inputs; and once more with NaNs canonicalised (`--canonical-nans`).
//!
//! The aims (issue 19): at least 1,000 tiny units a second, the sandbox at most 1.5x native.
//! The C kernel needs clang's wasm32-wasi target and gcc (`scripts/test` installs them);
//! without them the kernel rows use the primes module written in wasm text and the
//! native row is skipped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nodus_compute::sandbox::{Job, Limits, Sandbox};
use nodus_compute::{ComputeHandle, Inputs, Submission, examples};
use nodus_testnet::Testnet;
use serde_json::json;

use crate::ui::progress::spinner;
use crate::ui::{self, table};

/// `nodus bench compute` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Volunteer computing: tiny work units per second end to end, a real kernel's
    /// speedup on 1..4 volunteers, the sandbox beside native code
    Compute {
        /// Tiny units in the overhead run
        #[arg(long, default_value_t = 5_000)]
        tiny: u64,
        /// Units of the kernel in the speedup runs
        #[arg(long, default_value_t = 16)]
        kernel_units: u64,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Compute { tiny, kernel_units } = self;
        run(tiny.max(10), kernel_units.max(4), json).await
    }
}

const VOLUNTEERS: usize = 4;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compute")
}

/// The kernel: lj.c for wasm32-wasi and natively, if the compilers are here.
struct Kernel {
    name: &'static str,
    wasm: Vec<u8>,
    native: Option<PathBuf>,
    /// Arguments after the unit's number.
    args: Vec<String>,
}

fn build_kernel(dir: &Path) -> Result<Kernel> {
    let src = examples_dir().join("lj.c");
    let wasm = dir.join("lj.wasm");
    let native = dir.join("lj");
    let clang = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-s"])
        .arg(&src)
        .arg("-o")
        .arg(&wasm)
        .output();
    // 38 atoms (LJ38), every one of 150,000 FIRE steps (no early stop): about half a
    // second of work natively here.
    let args = vec!["38".to_string(), "150000".to_string(), "0".to_string()];
    if !matches!(&clang, Ok(o) if o.status.success()) {
        return Ok(Kernel {
            name: "primes (wasm text; no clang wasm32-wasi here)",
            wasm: examples::primes(),
            native: None,
            args: vec!["2000000".into()],
        });
    }
    let gcc = std::process::Command::new("gcc")
        .args(["-O2"])
        .arg(&src)
        .arg("-o")
        .arg(&native)
        .arg("-lm")
        .output();
    Ok(Kernel {
        name: "Lennard-Jones LJ38 relaxation (lj.c)",
        wasm: std::fs::read(&wasm).context("reading the compiled lj.wasm")?,
        native: matches!(&gcc, Ok(o) if o.status.success()).then_some(native),
        args,
    })
}

fn handle(net: &Testnet, k: usize) -> Result<ComputeHandle> {
    net.node(k)
        .service::<ComputeHandle>()
        .cloned()
        .ok_or_else(|| anyhow!("node {k} runs no compute service"))
}

/// Submits a project and waits for it; returns the time from submit to the end.
async fn project(
    net: &Testnet,
    volunteers: usize,
    wasm: &[u8],
    units: u64,
    args: Vec<String>,
    quorum: u32,
) -> Result<Duration> {
    for k in 1..=VOLUNTEERS {
        handle(net, k)?.set_volunteer(k <= volunteers, Some(1), None, None)?;
    }
    let c = handle(net, 0)?;
    let t = Instant::now();
    let id = c
        .submit(Submission {
            name: format!("bench-{volunteers}-{units}"),
            module: hex::encode(wasm),
            inputs: Inputs::Range { from: 0, to: units },
            args,
            quorum,
            deadline_secs: 600,
            fuel: u64::MAX / 4,
            memory_mb: 64,
            output_bytes: 4096,
            adaptive: false,
            canonical_nans: false,
            pay_wei_per_gfuel: None,
        })
        .await?;
    let s = c.wait_finished(&id, Duration::from_secs(1800)).await?;
    let took = t.elapsed();
    if s.done as u64 != units {
        bail!("{} of {units} units accepted ({} failed)", s.done, s.failed);
    }
    Ok(took)
}

/// Seconds of the best of `n` runs of `f`.
fn best<F: FnMut() -> Result<()>>(n: usize, mut f: F) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

async fn run(tiny: u64, kernel_units: u64, json: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let kernel = build_kernel(dir.path())?;
    let pb = spinner(&format!("starting {} nodes", VOLUNTEERS + 1));
    let net = Testnet::start(VOLUNTEERS + 1, &dir.path().join("net")).await?;
    net.wait_connected(VOLUNTEERS, Duration::from_secs(60)).await?;
    pb.finish_and_clear();

    let pb = spinner(&format!("{tiny} tiny units, quorum 2, on two volunteers"));
    let tiny_secs = project(&net, 2, &examples::primes(), tiny, vec!["1".into()], 2)
        .await?
        .as_secs_f64();
    pb.finish_and_clear();
    let tiny_rate = tiny as f64 / tiny_secs;

    let mut speedup = Vec::new();
    for n in [1, 2, 4] {
        let pb = spinner(&format!("{kernel_units} units of {} on {n} volunteers", kernel.name));
        let t = project(&net, n, &kernel.wasm, kernel_units, kernel.args.clone(), 1).await?;
        pb.finish_and_clear();
        speedup.push((n, t.as_secs_f64()));
    }
    net.shutdown().await;

    let pb = spinner("the kernel in the sandbox and natively");
    let sandbox = Sandbox::new()?;
    let program = sandbox.compile(&kernel.wasm)?;
    let job = Job {
        args: std::iter::once("1".to_string())
            .chain(kernel.args.iter().cloned())
            .collect(),
        ..Job::default()
    };
    let limits = Limits {
        fuel: u64::MAX / 4,
        memory_bytes: 64 << 20,
        output_bytes: 4096,
        wall: Duration::from_secs(600),
    };
    let mut wasm_out = Vec::new();
    let wasm_secs = best(3, || {
        let o = program.run(&job, &limits, None);
        wasm_out = o.result.map_err(|e| anyhow!("the kernel failed: {e}"))?.stdout;
        Ok(())
    })?;
    let canonical = Sandbox::with(true)?.compile(&kernel.wasm)?;
    let canonical_secs = best(1, || {
        let o = canonical.run(&job, &limits, None);
        if o.result.map_err(|e| anyhow!("the kernel failed: {e}"))?.stdout != wasm_out {
            bail!("canonical NaNs changed the kernel's output");
        }
        Ok(())
    })?;
    let native_secs = match &kernel.native {
        Some(bin) => Some(best(3, || {
            let o = std::process::Command::new(bin).args(&job.args[..]).output()?;
            if o.stdout != wasm_out {
                bail!(
                    "native and sandboxed outputs differ: {:?} and {:?}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&wasm_out)
                );
            }
            Ok(())
        })?),
        None => None,
    };
    pb.finish_and_clear();

    let one = speedup[0].1;
    if json {
        ui::json(&json!({
            "tiny_units_per_sec": tiny_rate,
            "kernel": kernel.name,
            "kernel_secs": speedup.iter().map(|(n, t)| json!({"volunteers": n, "secs": t})).collect::<Vec<_>>(),
            "sandbox_secs": wasm_secs,
            "sandbox_canonical_nans_secs": canonical_secs,
            "native_secs": native_secs,
            "cores": nodus_compute::volunteer::machine_cores(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "nodus bench compute ({} cores here; kernel: {})\n",
        nodus_compute::volunteer::machine_cores(),
        kernel.name
    );
    let mut rows = vec![vec![
        format!("tiny units/s end to end (quorum 2, {tiny} units)"),
        format!("{tiny_rate:.0}"),
        "~100 (BOINC server, published)".into(),
        format!("{:.1}x", tiny_rate / 100.0),
        "at least 1,000".into(),
    ]];
    for (n, t) in &speedup {
        rows.push(vec![
            format!("kernel, {kernel_units} units on {n} volunteer(s)"),
            format!("{t:.2} s"),
            format!("{one:.2} s on 1"),
            format!("speedup {:.2}", one / t),
            format!("up to {} (cores here)", nodus_compute::volunteer::machine_cores().min(*n as u32)),
        ]);
    }
    rows.push(vec![
        "kernel, one unit, sandbox vs native".into(),
        format!("{wasm_secs:.3} s"),
        native_secs.map_or("no gcc/clang here".into(), |n| format!("{n:.3} s (gcc -O2)")),
        native_secs.map_or("-".into(), |n| format!("{:.2}x", wasm_secs / n)),
        "at most 1.5x".into(),
    ]);
    rows.push(vec![
        "the same, NaNs canonicalised (--canonical-nans)".into(),
        format!("{canonical_secs:.3} s"),
        native_secs.map_or("-".into(), |n| format!("{n:.3} s (gcc -O2)")),
        native_secs.map_or("-".into(), |n| format!("{:.2}x", canonical_secs / n)),
        "- (opt-in: any architecture in one quorum)".into(),
    ]);
    table(&["row", "nodus", "reference", "ratio", "aim"], &rows);
    Ok(ExitCode::SUCCESS)
}
