//! The sandbox against hostile and ordinary modules: loops stopped by fuel and by the
//! deadline, memory bombs held at the limit, no clock, host file, socket or
//! environment, and the same bytes and fuel from two engines. Modules are WAT, or C
//! built by clang for wasm32-wasi (`scripts/test` installs it).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nodus_compute::sandbox::{Control, Failure, Job, Limits, Sandbox, SandboxError};

fn limits() -> Limits {
    Limits {
        fuel: 10_000_000_000,
        memory_bytes: 16 << 20,
        output_bytes: 1 << 20,
        wall: Duration::from_secs(60),
    }
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid wat")
}

/// Builds a C file of `tests/c` or `examples/compute` for wasm32-wasi.
pub fn clang(src: &Path) -> Vec<u8> {
    let out = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    let status = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-s"])
        .arg(src)
        .arg("-o")
        .arg(out.path())
        .status()
        .expect("clang is not installed: scripts/test installs clang, lld, wasi-libc and libclang-rt-14-dev-wasm32");
    assert!(status.success(), "clang could not build {}", src.display());
    std::fs::read(out.path()).unwrap()
}

fn example(name: &str) -> Vec<u8> {
    clang(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/compute")
            .join(name),
    )
}

const LOOP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

#[test]
fn a_loop_forever_runs_out_of_fuel() {
    let p = Sandbox::new().unwrap().compile(&wat(LOOP)).unwrap();
    let o = p.run(
        &Job::default(),
        &Limits {
            fuel: 5_000_000,
            ..limits()
        },
        None,
    );
    assert_eq!(o.result, Err(Failure::OutOfFuel));
    assert!(o.fuel >= 5_000_000, "{}", o.fuel);
}

#[test]
fn a_loop_with_fuel_to_spare_is_stopped_at_its_deadline() {
    let p = Sandbox::new().unwrap().compile(&wat(LOOP)).unwrap();
    let o = p.run(
        &Job::default(),
        &Limits {
            fuel: u64::MAX / 2,
            wall: Duration::from_millis(200),
            ..limits()
        },
        None,
    );
    assert_eq!(o.result, Err(Failure::Deadline));
    assert!(!Failure::Deadline.deterministic());
}

#[test]
fn a_paused_unit_waits_and_then_finishes() {
    let p = Sandbox::new().unwrap().compile(&wat(LOOP)).unwrap();
    let control = Arc::new(Control::default());
    control.pause.store(true, Ordering::Relaxed);
    let (p2, c2) = (p.clone(), control.clone());
    let t = std::thread::spawn(move || {
        p2.run(
            &Job::default(),
            &Limits {
                fuel: 200_000_000,
                ..limits()
            },
            Some(c2),
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "a paused unit kept running");
    control.pause.store(false, Ordering::Relaxed);
    assert_eq!(t.join().unwrap().result, Err(Failure::OutOfFuel));
    // A stop ends a unit, paused or not.
    control.pause.store(true, Ordering::Relaxed);
    let (p2, c2) = (p.clone(), control.clone());
    let t = std::thread::spawn(move || {
        p2.run(
            &Job::default(),
            &Limits {
                fuel: u64::MAX / 2,
                ..limits()
            },
            Some(c2),
        )
    });
    control.stop.store(true, Ordering::Relaxed);
    assert_eq!(t.join().unwrap().result, Err(Failure::Stopped));
}

#[test]
fn a_memory_bomb_is_held_at_the_limit() {
    // Grows by a page until refused, then prints how many pages it got.
    let bomb = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $n i32)
        (block $done (loop $more
          (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br $more)))
        (i32.store (i32.const 0) (local.get $n))
        (i32.store (i32.const 8) (i32.const 0))
        (i32.store (i32.const 12) (i32.const 4))
        (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"#;
    let p = Sandbox::new().unwrap().compile(&wat(bomb)).unwrap();
    let o = p.run(&Job::default(), &limits(), None);
    let out = o.result.unwrap();
    let pages = u32::from_le_bytes(out.stdout[..4].try_into().unwrap());
    assert_eq!(
        (pages + 1) as usize * 65536,
        16 << 20,
        "grew to {pages} more pages"
    );
    // One that traps when refused fails as over the limit.
    let trap = r#"(module
      (memory (export "memory") 1)
      (func (export "_start")
        (loop $more
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
          (br $more))))"#;
    let o =
        Sandbox::new()
            .unwrap()
            .compile(&wat(trap))
            .unwrap()
            .run(&Job::default(), &limits(), None);
    assert_eq!(o.result, Err(Failure::MemoryLimit));
    // Asking for it all at the start.
    let big = r#"(module (memory (export "memory") 4096) (func (export "_start")))"#;
    let o =
        Sandbox::new()
            .unwrap()
            .compile(&wat(big))
            .unwrap()
            .run(&Job::default(), &limits(), None);
    assert_eq!(o.result, Err(Failure::MemoryLimit));
}

#[test]
fn modules_asking_for_more_than_wasi_are_refused() {
    let s = Sandbox::new().unwrap();
    let env = r#"(module (import "env" "system" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"#;
    assert!(matches!(s.compile(&wat(env)), Err(SandboxError::Import(i)) if i == "env.system"));
    let unknown = r#"(module (import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"#;
    assert!(matches!(
        s.compile(&wat(unknown)),
        Err(SandboxError::Import(_))
    ));
    let wrong_type = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"#;
    assert!(matches!(
        s.compile(&wat(wrong_type)),
        Err(SandboxError::Import(_))
    ));
    let no_start = r#"(module (memory (export "memory") 1))"#;
    assert!(matches!(
        s.compile(&wat(no_start)),
        Err(SandboxError::Export("_start"))
    ));
    assert!(matches!(
        s.compile(b"not wasm"),
        Err(SandboxError::Invalid(_))
    ));
}

#[test]
fn a_unit_reaches_its_input_and_nothing_else() {
    let p = Sandbox::new()
        .unwrap()
        .compile(&clang(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/world.c"),
        ))
        .unwrap();
    let job = Job {
        args: vec!["seven".into()],
        stdin: b"hello\n".to_vec(),
        files: vec![("in.txt".into(), b"abc".to_vec())],
        seed: [7; 32],
    };
    let o = p.run(&job, &limits(), None);
    let out = o.result.expect("it ran");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.exit_code, 3, "{text}");
    assert!(text.contains("argc 2 argv1 seven"), "{text}");
    assert!(text.contains("stdin hello"), "{text}");
    assert!(text.contains("copied"), "{text}");
    // ENOTCAPABLE is 76 in WASI; wasi-libc's time() gives 0 without a clock.
    assert!(text.contains("clock -1 errno 76"), "{text}");
    assert!(text.contains("time 0"), "{text}");
    assert!(text.contains("host file refused"), "{text}");
    assert!(text.contains("parent refused"), "{text}");
    assert!(text.contains("env none"), "{text}");
    assert!(text.contains("socket -1 errno 76"), "{text}");
    // Only what it wrote comes back.
    assert_eq!(out.files, vec![("out.txt".to_string(), b"ABC".to_vec())]);
}

#[test]
fn the_same_unit_gives_the_same_bytes_and_fuel_on_two_engines() {
    let wasm = example("pi.c");
    let job = |seed| Job {
        args: vec!["200000".into()],
        seed,
        ..Job::default()
    };
    let a = Sandbox::new()
        .unwrap()
        .compile(&wasm)
        .unwrap()
        .run(&job([1; 32]), &limits(), None);
    let b = Sandbox::new()
        .unwrap()
        .compile(&wasm)
        .unwrap()
        .run(&job([1; 32]), &limits(), None);
    assert!(a.result.is_ok(), "{:?}", a.result);
    assert_eq!(a, b);
    let c = Sandbox::new()
        .unwrap()
        .compile(&wasm)
        .unwrap()
        .run(&job([2; 32]), &limits(), None);
    assert_ne!(a.result, c.result, "another seed draws other points");
    // The estimate is pi's.
    let text = String::from_utf8(a.result.unwrap().stdout).unwrap();
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        (4.0 * f[0] / f[1] - std::f64::consts::PI).abs() < 0.02,
        "{text}"
    );
}

#[test]
fn the_kernels_match_their_native_builds() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("primes.c", vec!["7", "20000"]),
        ("lj.c", vec!["5", "13", "3000"]),
    ] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/compute")
            .join(name);
        let bin = dir.path().join(name.trim_end_matches(".c"));
        let gcc = std::process::Command::new("gcc")
            .args(["-O2"])
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .arg("-lm")
            .status()
            .unwrap();
        assert!(gcc.success());
        let native = std::process::Command::new(&bin)
            .args(&args)
            .output()
            .unwrap();
        let job = Job {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Job::default()
        };
        let o = Sandbox::new()
            .unwrap()
            .compile(&example(name))
            .unwrap()
            .run(&job, &limits(), None);
        assert_eq!(o.result.unwrap().stdout, native.stdout, "{name}");
    }
}

#[test]
fn output_past_the_budget_is_refused() {
    // Writes 1 KiB to stdout over and over; the budget is 4 KiB.
    let spam = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $e i32)
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 1024))
        (loop $more
          (local.set $e (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (br_if $more (i32.eqz (local.get $e))))
        (call $exit (local.get $e))))"#;
    let o = Sandbox::new().unwrap().compile(&wat(spam)).unwrap().run(
        &Job::default(),
        &Limits {
            output_bytes: 4096,
            ..limits()
        },
        None,
    );
    let out = o.result.unwrap();
    assert_eq!(out.stdout.len(), 4096);
    assert_eq!(out.exit_code, 22, "EFBIG");
}

#[test]
fn canonical_nans_make_a_nan_the_same_bits_everywhere() {
    // Writes the bits of 0.0/0.0 to stdout.
    let nan = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (f64.store (i32.const 0) (f64.div (f64.const 0) (f64.const 0)))
        (i32.store (i32.const 16) (i32.const 0))
        (i32.store (i32.const 20) (i32.const 8))
        (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#;
    let bits = |canonical| {
        let o = Sandbox::with(canonical)
            .unwrap()
            .compile(&wat(nan))
            .unwrap()
            .run(&Job::default(), &limits(), None);
        u64::from_le_bytes(o.result.unwrap().stdout.try_into().unwrap())
    };
    assert_eq!(bits(true), 0x7ff8_0000_0000_0000);
    assert!(f64::from_bits(bits(false)).is_nan());
    assert_ne!(
        nodus_compute::sandbox::class(true),
        nodus_compute::sandbox::class(false)
    );
}
