//! The sandbox: a work unit's module run by wasmtime with nothing but its input.
//!
//! Determinism is what lets a quorum compare results byte for byte, so the engine is
//! configured for it: relaxed SIMD deterministic, no threads, a WASI world ([`wasi`])
//! whose only inputs are the unit's, and NaNs either canonicalised ([`Sandbox::with`])
//! or left to a CPU architecture that every replica of a unit shares ([`class`]). Fuel counts the work: a unit
//! that runs out stops with [`Failure::OutOfFuel`], and the fuel it used is the same
//! on every machine for the same module, input and engine, so it is also the credit.
//! Epochs (one tick every [`TICK`]) stop a unit at its wall-clock deadline and let a
//! volunteer pause running work while its machine is busy.

pub mod wasi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline,
};

pub use crate::job::{Failure, Job, Output};
pub use wasi::Ctx;

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(10);
/// Most bytes of wasm a project may ship.
pub const MAX_MODULE: usize = 16 << 20;
/// Most tables, and elements in them, a unit may have.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Why a module could not become a program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the wasm engine: {0}")]
    Engine(String),
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    #[error(
        "the module imports {0}, which the sandbox does not offer (only WASI preview 1: wasi_snapshot_preview1)"
    )]
    Import(String),
    #[error(
        "the module does not export {0} (build it as a WASI command: clang --target=wasm32-wasi)"
    )]
    Export(&'static str),
    #[error("the module is {0} bytes; at most {MAX_MODULE}")]
    TooLarge(usize),
}

/// What a unit may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: usize,
    /// stdout, stderr and written files together.
    pub output_bytes: usize,
    /// Wall-clock time running (paused time not counted).
    pub wall: Duration,
}

/// A finished run: its result, the fuel it used and what it wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Output, Failure>,
    pub fuel: u64,
    pub stderr: Vec<u8>,
}

/// Memory and table limits of one store; remembers a refused growth.
pub struct Limiter {
    memory: usize,
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory;
        self.refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        4
    }
    fn memories(&self) -> usize {
        1
    }
}

/// Switches a volunteer holds over the units it runs, obeyed at each epoch check.
#[derive(Debug, Default)]
pub struct Control {
    /// While set, units wait (the time is not counted against their deadline).
    pub pause: AtomicBool,
    /// Once set, units stop with [`Failure::Stopped`].
    pub stop: AtomicBool,
}

/// The wall clock of one run, in epoch ticks, and the switches it obeys.
pub struct RunClock {
    ticks: u64,
    max_ticks: u64,
    control: Option<Arc<Control>>,
    hit_deadline: bool,
    stopped: bool,
}

/// One engine for every program: its epoch ticker runs while the engine lives (held
/// by this and by every program compiled from it).
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<Ctx>>,
}

/// The engine's version: fuel counts and code are the same within one.
pub const ENGINE: &str = "wasmtime48";

/// Which volunteers return the same bytes for a unit (BOINC's homogeneous redundancy):
/// the same engine, and the same CPU architecture unless NaNs are canonicalised.
pub fn class(canonical_nans: bool) -> String {
    if canonical_nans {
        format!("any-{ENGINE}-nan")
    } else {
        format!("{}-{ENGINE}", std::env::consts::ARCH)
    }
}

impl Sandbox {
    /// A sandbox whose float results are the CPU's own: the same bytes on every machine
    /// of one architecture (NaN payloads and signs differ between x86-64 and ARM).
    pub fn new() -> Result<Sandbox, SandboxError> {
        Sandbox::with(false)
    }

    /// `canonical_nans`: every float operation's NaN result made the canonical NaN, so
    /// results agree across architectures too, at a cost: float-heavy code ran 9x
    /// slower with it on this machine's kind (Cranelift checks after every operation).
    pub fn with(canonical_nans: bool) -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(canonical_nans)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("compute-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SandboxError::Engine(e.to_string()))?;
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// Compiles a module after checking that it is a WASI command asking for nothing
    /// but WASI preview 1.
    pub fn compile(&self, wasm: &[u8]) -> Result<Program, SandboxError> {
        if wasm.len() > MAX_MODULE {
            return Err(SandboxError::TooLarge(wasm.len()));
        }
        let module =
            Module::new(&self.engine, wasm).map_err(|e| SandboxError::Invalid(format!("{e:#}")))?;
        for import in module.imports() {
            if import.module() != wasi::MODULE
                || !wasi::FUNCTIONS.contains(&import.name())
                || import.ty().func().is_none()
            {
                return Err(SandboxError::Import(format!(
                    "{}.{}",
                    import.module(),
                    import.name()
                )));
            }
        }
        let exports: Vec<_> = module.exports().map(|e| e.name().to_string()).collect();
        for needed in ["_start", "memory"] {
            if !exports.iter().any(|e| e == needed) {
                return Err(SandboxError::Export(needed));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::Import(format!("{e:#}")))?;
        Ok(Program {
            pre,
            engine: self.engine.clone(),
        })
    }
}

/// A compiled module, ready to run units.
#[derive(Clone)]
pub struct Program {
    pre: InstancePre<Ctx>,
    engine: Engine,
}

impl Program {
    /// Runs one unit to its end, obeying `control` (pause, stop) at epoch checks.
    pub fn run(&self, job: &Job, limits: &Limits, control: Option<Arc<Control>>) -> Outcome {
        let limiter = Limiter {
            memory: limits.memory_bytes,
            refused: false,
        };
        let clock = RunClock {
            ticks: 0,
            max_ticks: (limits.wall.as_millis() / TICK.as_millis()).max(1) as u64,
            control,
            hit_deadline: false,
            stopped: false,
        };
        let ctx = Ctx::new(job, limits.output_bytes, limiter, clock);
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limiter);
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut s| {
            let clock = &mut s.data_mut().clock;
            if let Some(c) = &clock.control {
                while c.pause.load(Ordering::Relaxed) && !c.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK * 5);
                }
                if c.stop.load(Ordering::Relaxed) {
                    clock.stopped = true;
                    return Ok(UpdateDeadline::Interrupt);
                }
            }
            clock.ticks += 1;
            if clock.ticks >= clock.max_ticks {
                clock.hit_deadline = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let ran = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| (e, true))
            .and_then(|instance| {
                instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| (e, true))?
                    .call(&mut store, ())
                    .map_err(|e| (e, false))
            });
        let fuel = limits.fuel - store.get_fuel().unwrap_or(0);
        let ctx = store.into_data();
        let result = match ran {
            Ok(()) => Ok(0),
            Err((e, _)) if e.downcast_ref::<wasi::Exit>().is_some() => {
                Ok(ctx.exit.unwrap_or_default())
            }
            Err((e, starting)) => Err(failure(&e, &ctx, starting)),
        };
        let stderr = ctx.stderr;
        let result = result.map(|exit_code| Output {
            exit_code,
            stdout: ctx.stdout,
            files: ctx
                .files
                .into_iter()
                .filter(|(_, (_, changed))| *changed)
                .map(|(n, (d, _))| (n, d))
                .collect(),
        });
        Outcome {
            result,
            fuel,
            stderr,
        }
    }
}

fn failure(e: &wasmtime::Error, ctx: &Ctx, starting: bool) -> Failure {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel,
        Some(Trap::Interrupt) if ctx.clock.stopped => Failure::Stopped,
        Some(Trap::Interrupt) if ctx.clock.hit_deadline => Failure::Deadline,
        _ if ctx.limiter.refused => Failure::MemoryLimit,
        Some(t) => Failure::Trap(t.to_string()),
        None if starting => Failure::Start(format!("{e:#}")),
        None => Failure::Trap(format!("{e:#}")),
    }
}
