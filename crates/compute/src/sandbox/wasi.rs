//! WASI preview 1 over memory: the only world a work unit sees.
//!
//! A unit gets its arguments, stdin, and in-memory input files (in one preopened
//! directory, `/`); it gives back stdout, stderr and the files it created or changed.
//! There is no environment, no clock (`clock_time_get` answers `ENOTCAPABLE`), no
//! socket, no host file, no directory tree, and `random_get` returns bytes of a ChaCha20
//! stream seeded by the unit, so every honest volunteer computes the same bytes.
//!
//! Why not `wasmtime-wasi`: its preview 1 sits on the component model and async
//! (minutes more to build), it reads files from a host directory, and its clocks and
//! random numbers are the host's. Here everything a unit can observe is part of its
//! input, which is what a quorum of byte-identical results needs.
//!
//! Every function checks the guest's pointers against its memory and answers `EFAULT`
//! instead of trapping; what a guest can make the host allocate is bounded by the
//! output budget (writes) and its own memory (reads).

use std::collections::BTreeMap;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use wasmtime::{Caller, Extern, Linker};

use super::SandboxError;

/// The import module name of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// Errnos of WASI preview 1 that this host answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    Badf = 8,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Ilseq = 25,
    Inval = 28,
    Isdir = 31,
    Mfile = 33,
    Nametoolong = 37,
    Noent = 44,
    Nosys = 52,
    Notdir = 54,
    Notsup = 58,
    Spipe = 70,
    Notcapable = 76,
}

type R<T = ()> = Result<T, Errno>;

const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const OFLAGS_CREAT: i32 = 1;
const OFLAGS_DIRECTORY: i32 = 2;
const OFLAGS_EXCL: i32 = 4;
const OFLAGS_TRUNC: i32 = 8;
const FDFLAGS_APPEND: i32 = 1;
/// `fd_read` and `fd_write` rights: the only ones that change what a file fd may do.
const RIGHT_FD_READ: i64 = 1 << 1;
const RIGHT_FD_WRITE: i64 = 1 << 6;
const ROOT_FD: u32 = 3;
/// Most open descriptors a unit may hold.
const MAX_FDS: usize = 64;
/// Most files a unit may have (inputs included).
const MAX_FILES: usize = 256;
const MAX_NAME: usize = 255;
/// Most iovecs one call may pass (as Linux's IOV_MAX).
const MAX_IOVS: u32 = 1024;

/// What a unit's files and streams are, while it runs.
pub struct Ctx {
    pub(crate) args: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    stdin_pos: usize,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Files by name; `true` when the unit created or changed it (what it gives back).
    pub(crate) files: BTreeMap<String, (Vec<u8>, bool)>,
    fds: BTreeMap<u32, Fd>,
    rng: ChaCha20Rng,
    /// Bytes of stdout, stderr and file contents the unit may still add.
    budget: usize,
    pub(crate) exit: Option<u32>,
    pub(crate) limiter: super::Limiter,
    pub(crate) clock: super::RunClock,
}

enum Fd {
    Stdin,
    Stdout,
    Stderr,
    Root,
    File {
        name: String,
        pos: u64,
        read: bool,
        write: bool,
        append: bool,
    },
}

impl Ctx {
    pub(crate) fn new(
        job: &super::Job,
        budget: usize,
        limiter: super::Limiter,
        clock: super::RunClock,
    ) -> Ctx {
        use rand::SeedableRng;
        let mut args = vec![b"unit".to_vec()];
        args.extend(job.args.iter().map(|a| a.as_bytes().to_vec()));
        let files = job
            .files
            .iter()
            .map(|(n, d)| (n.clone(), (d.clone(), false)))
            .collect();
        let fds = BTreeMap::from([
            (0, Fd::Stdin),
            (1, Fd::Stdout),
            (2, Fd::Stderr),
            (ROOT_FD, Fd::Root),
        ]);
        Ctx {
            args,
            stdin: job.stdin.clone(),
            stdin_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            files,
            fds,
            rng: ChaCha20Rng::from_seed(job.seed),
            budget,
            exit: None,
            limiter,
            clock,
        }
    }

    fn spend(&mut self, n: usize) -> R {
        self.budget = self.budget.checked_sub(n).ok_or(Errno::Fbig)?;
        Ok(())
    }

    fn free_fd(&self) -> R<u32> {
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::Mfile);
        }
        (ROOT_FD + 1..)
            .find(|fd| !self.fds.contains_key(fd))
            .ok_or(Errno::Mfile)
    }
}

/// The proc_exit of a unit: unwinds the guest, carrying its status.
#[derive(Debug)]
pub struct Exit(pub u32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn code(r: R) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

fn split<'a>(c: &'a mut Caller<'_, Ctx>) -> R<(&'a mut [u8], &'a mut Ctx)> {
    let mem = c
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or(Errno::Fault)?;
    Ok(mem.data_and_store_mut(c))
}

fn slice(mem: &[u8], ptr: i32, len: u32) -> R<&[u8]> {
    let start = ptr as u32 as usize;
    mem.get(start..start.checked_add(len as usize).ok_or(Errno::Fault)?)
        .ok_or(Errno::Fault)
}

fn slice_mut(mem: &mut [u8], ptr: i32, len: usize) -> R<&mut [u8]> {
    let start = ptr as u32 as usize;
    mem.get_mut(start..start.checked_add(len).ok_or(Errno::Fault)?)
        .ok_or(Errno::Fault)
}

fn put_u32(mem: &mut [u8], ptr: i32, v: u32) -> R {
    slice_mut(mem, ptr, 4)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u64(mem: &mut [u8], ptr: i32, v: u64) -> R {
    slice_mut(mem, ptr, 8)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn get_u32(mem: &[u8], ptr: i32) -> R<u32> {
    let b = slice(mem, ptr, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The (pointer, length) pairs of an iovec array, checked against memory.
fn iovecs(mem: &[u8], iovs: i32, n: i32) -> R<Vec<(i32, u32)>> {
    let n = n as u32;
    if n > MAX_IOVS {
        return Err(Errno::Inval);
    }
    (0..n)
        .map(|i| {
            let at = (iovs as u32).checked_add(i * 8).ok_or(Errno::Fault)? as i32;
            let ptr = get_u32(mem, at)? as i32;
            let len = get_u32(mem, at.wrapping_add(4))?;
            slice(mem, ptr, len)?;
            Ok((ptr, len))
        })
        .collect()
}

fn path(mem: &[u8], ptr: i32, len: i32) -> R<&str> {
    let len = len as u32;
    if len as usize > MAX_NAME * 4 {
        return Err(Errno::Nametoolong);
    }
    std::str::from_utf8(slice(mem, ptr, len)?).map_err(|_| Errno::Ilseq)
}

/// A path relative to the one directory, as a file name: `None` for the directory
/// itself. No `..`, no absolute paths, no empty components.
fn file_name(p: &str) -> R<Option<String>> {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") || p.starts_with('/') {
        return Err(Errno::Notcapable);
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let name = parts.join("/");
    if name.len() > MAX_NAME {
        return Err(Errno::Nametoolong);
    }
    Ok(Some(name))
}

fn fd_read_into(ctx: &mut Ctx, fd: i32, at: Option<u64>, dst: &mut [u8]) -> R<usize> {
    match ctx.fds.get_mut(&(fd as u32)).ok_or(Errno::Badf)? {
        Fd::Stdin => {
            if at.is_some() {
                return Err(Errno::Spipe);
            }
            let rest = &ctx.stdin[ctx.stdin_pos.min(ctx.stdin.len())..];
            let n = rest.len().min(dst.len());
            dst[..n].copy_from_slice(&rest[..n]);
            ctx.stdin_pos += n;
            Ok(n)
        }
        Fd::File {
            name, pos, read, ..
        } => {
            if !*read {
                return Err(Errno::Badf);
            }
            let data = &ctx.files.get(name.as_str()).ok_or(Errno::Badf)?.0;
            let from = at.unwrap_or(*pos).min(data.len() as u64) as usize;
            let n = (data.len() - from).min(dst.len());
            dst[..n].copy_from_slice(&data[from..from + n]);
            if at.is_none() {
                *pos = (from + n) as u64;
            }
            Ok(n)
        }
        Fd::Root => Err(Errno::Isdir),
        Fd::Stdout | Fd::Stderr => Err(Errno::Badf),
    }
}

fn fd_write_from(ctx: &mut Ctx, fd: i32, at: Option<u64>, src: &[u8]) -> R<usize> {
    let fd = fd as u32;
    match ctx.fds.get(&fd).ok_or(Errno::Badf)? {
        Fd::Stdout | Fd::Stderr if at.is_some() => Err(Errno::Spipe),
        Fd::Stdout => {
            ctx.spend(src.len())?;
            ctx.stdout.extend_from_slice(src);
            Ok(src.len())
        }
        Fd::Stderr => {
            ctx.spend(src.len())?;
            ctx.stderr.extend_from_slice(src);
            Ok(src.len())
        }
        Fd::File { write: false, .. } | Fd::Stdin => Err(Errno::Badf),
        Fd::Root => Err(Errno::Isdir),
        Fd::File {
            name, pos, append, ..
        } => {
            let (name, pos, append) = (name.clone(), *pos, *append);
            let len = ctx.files.get(&name).ok_or(Errno::Badf)?.0.len() as u64;
            let start = match (at, append) {
                (Some(off), _) => off,
                (None, true) => len,
                (None, false) => pos,
            };
            let end = start.checked_add(src.len() as u64).ok_or(Errno::Fbig)?;
            ctx.spend(end.saturating_sub(len) as usize)?;
            let (data, changed) = ctx.files.get_mut(&name).ok_or(Errno::Badf)?;
            if end as usize > data.len() {
                data.resize(end as usize, 0);
            }
            data[start as usize..end as usize].copy_from_slice(src);
            *changed = true;
            if at.is_none()
                && let Some(Fd::File { pos, .. }) = ctx.fds.get_mut(&fd)
            {
                *pos = end;
            }
            Ok(src.len())
        }
    }
}

fn read_iovs(c: &mut Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> R {
    let (mem, ctx) = split(c)?;
    let mut total = 0usize;
    for (ptr, len) in iovecs(mem, iovs, n)? {
        let dst = slice_mut(mem, ptr, len as usize)?;
        let got = fd_read_into(ctx, fd, at.map(|a| a + total as u64), dst)?;
        total += got;
        if got < len as usize {
            break;
        }
    }
    put_u32(mem, out, total as u32)
}

fn write_iovs(c: &mut Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> R {
    let (mem, ctx) = split(c)?;
    let mut total = 0usize;
    for (ptr, len) in iovecs(mem, iovs, n)? {
        let src = slice(mem, ptr, len)?;
        total += fd_write_from(ctx, fd, at.map(|a| a + total as u64), src)?;
    }
    put_u32(mem, out, total as u32)
}

fn fdstat(ctx: &Ctx, fd: i32) -> R<(u8, u16)> {
    Ok(match ctx.fds.get(&(fd as u32)).ok_or(Errno::Badf)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr => (FILETYPE_CHARACTER_DEVICE, 0),
        Fd::Root => (FILETYPE_DIRECTORY, 0),
        Fd::File { append, .. } => (FILETYPE_REGULAR_FILE, *append as u16),
    })
}

fn filestat(mem: &mut [u8], at: i32, filetype: u8, size: u64, ino: u64) -> R {
    let b = slice_mut(mem, at, 64)?;
    b.fill(0);
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16] = filetype;
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    b[32..40].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// A stable inode number for a file: its place in name order, from 1 (0 is the directory).
fn ino(ctx: &Ctx, name: &str) -> u64 {
    ctx.files.keys().take_while(|k| k.as_str() < name).count() as u64 + 1
}

#[allow(clippy::too_many_arguments)]
fn path_open(
    c: &mut Caller<'_, Ctx>,
    dirfd: i32,
    p: i32,
    plen: i32,
    oflags: i32,
    rights: i64,
    fdflags: i32,
    out: i32,
) -> R {
    let (mem, ctx) = split(c)?;
    if !matches!(ctx.fds.get(&(dirfd as u32)), Some(Fd::Root)) {
        return Err(Errno::Badf);
    }
    let Some(name) = file_name(path(mem, p, plen)?)? else {
        if oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 {
            return Err(Errno::Isdir);
        }
        let fd = ctx.free_fd()?;
        ctx.fds.insert(fd, Fd::Root);
        return put_u32(mem, out, fd);
    };
    if oflags & OFLAGS_DIRECTORY != 0 {
        return Err(if ctx.files.contains_key(&name) {
            Errno::Notdir
        } else {
            Errno::Noent
        });
    }
    let exists = ctx.files.contains_key(&name);
    if exists && oflags & OFLAGS_CREAT != 0 && oflags & OFLAGS_EXCL != 0 {
        return Err(Errno::Exist);
    }
    let fd = ctx.free_fd()?;
    if !exists {
        if oflags & OFLAGS_CREAT == 0 {
            return Err(Errno::Noent);
        }
        if ctx.files.len() >= MAX_FILES {
            return Err(Errno::Mfile);
        }
        ctx.files.insert(name.clone(), (Vec::new(), true));
    } else if oflags & OFLAGS_TRUNC != 0 {
        let (data, changed) = ctx.files.get_mut(&name).ok_or(Errno::Noent)?;
        data.clear();
        *changed = true;
    }
    // wasi-libc asks for the rights its open(2) flags imply: O_RDONLY has fd_read,
    // O_WRONLY fd_write, O_RDWR both.
    let write = rights & RIGHT_FD_WRITE != 0;
    let read = rights & RIGHT_FD_READ != 0 || !write;
    ctx.fds.insert(
        fd,
        Fd::File {
            name,
            pos: 0,
            read,
            write,
            append: fdflags & FDFLAGS_APPEND != 0,
        },
    );
    put_u32(mem, out, fd)
}

fn readdir(c: &mut Caller<'_, Ctx>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32) -> R {
    let (mem, ctx) = split(c)?;
    if !matches!(ctx.fds.get(&(fd as u32)), Some(Fd::Root)) {
        return Err(Errno::Notdir);
    }
    let mut entries: Vec<(u64, u8, Vec<u8>)> = vec![
        (0, FILETYPE_DIRECTORY, b".".to_vec()),
        (0, FILETYPE_DIRECTORY, b"..".to_vec()),
    ];
    entries.extend(
        ctx.files
            .keys()
            .enumerate()
            .map(|(i, n)| (i as u64 + 1, FILETYPE_REGULAR_FILE, n.as_bytes().to_vec())),
    );
    let mut bytes = Vec::new();
    for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(cookie.max(0) as usize) {
        bytes.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        bytes.extend_from_slice(&ino.to_le_bytes());
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&[kind, 0, 0, 0]);
        bytes.extend_from_slice(&name);
        if bytes.len() >= len as u32 as usize {
            break;
        }
    }
    let n = bytes.len().min(len as u32 as usize);
    slice_mut(mem, buf, n)?.copy_from_slice(&bytes[..n]);
    put_u32(mem, out, n as u32)
}

/// Every function of WASI preview 1, by name, so that a module importing anything
/// else is refused when it is compiled.
pub const FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// Adds every function of [`FUNCTIONS`] to `linker`.
pub fn add_to_linker(linker: &mut Linker<Ctx>) -> Result<(), SandboxError> {
    let l = linker;
    let e = |e: wasmtime::Error| SandboxError::Engine(e.to_string());
    l.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Caller<'_, Ctx>, argc: i32, size: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                let bytes: usize = ctx.args.iter().map(|a| a.len() + 1).sum();
                put_u32(mem, argc, ctx.args.len() as u32)?;
                put_u32(mem, size, bytes as u32)
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "args_get",
        |mut c: Caller<'_, Ctx>, argv: i32, buf: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                let mut at = buf as u32;
                for (i, a) in ctx.args.iter().enumerate() {
                    put_u32(mem, argv.wrapping_add(4 * i as i32), at)?;
                    let dst = slice_mut(mem, at as i32, a.len() + 1)?;
                    dst[..a.len()].copy_from_slice(a);
                    dst[a.len()] = 0;
                    at = at.checked_add(a.len() as u32 + 1).ok_or(Errno::Fault)?;
                }
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Caller<'_, Ctx>, n: i32, size: i32| {
            code((|| {
                let (mem, _) = split(&mut c)?;
                put_u32(mem, n, 0)?;
                put_u32(mem, size, 0)
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "environ_get",
        |_: Caller<'_, Ctx>, _: i32, _: i32| 0,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "clock_res_get",
        |_: Caller<'_, Ctx>, _: i32, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "clock_time_get",
        |_: Caller<'_, Ctx>, _: i32, _: i64, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_advise",
        |c: Caller<'_, Ctx>, fd: i32, _: i64, _: i64, _: i32| {
            code(
                c.data()
                    .fds
                    .get(&(fd as u32))
                    .map(|_| ())
                    .ok_or(Errno::Badf),
            )
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_allocate",
        |_: Caller<'_, Ctx>, _: i32, _: i64, _: i64| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(MODULE, "fd_close", |mut c: Caller<'_, Ctx>, fd: i32| {
        code(
            c.data_mut()
                .fds
                .remove(&(fd as u32))
                .map(|_| ())
                .ok_or(Errno::Badf),
        )
    })
    .map_err(e)?;
    for name in ["fd_datasync", "fd_sync"] {
        l.func_wrap(MODULE, name, |c: Caller<'_, Ctx>, fd: i32| {
            code(
                c.data()
                    .fds
                    .get(&(fd as u32))
                    .map(|_| ())
                    .ok_or(Errno::Badf),
            )
        })
        .map_err(e)?;
    }
    l.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                let (kind, flags) = fdstat(ctx, fd)?;
                let b = slice_mut(mem, out, 24)?;
                b.fill(0);
                b[0] = kind;
                b[2..4].copy_from_slice(&flags.to_le_bytes());
                b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_set_flags",
        |mut c: Caller<'_, Ctx>, fd: i32, flags: i32| {
            code(match c.data_mut().fds.get_mut(&(fd as u32)) {
                Some(Fd::File { append, .. }) => {
                    *append = flags & FDFLAGS_APPEND != 0;
                    Ok(())
                }
                Some(_) => Err(Errno::Notsup),
                None => Err(Errno::Badf),
            })
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_set_rights",
        |_: Caller<'_, Ctx>, _: i32, _: i64, _: i64| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                match ctx.fds.get(&(fd as u32)).ok_or(Errno::Badf)? {
                    Fd::File { name, .. } => {
                        let size = ctx.files.get(name).map_or(0, |f| f.0.len() as u64);
                        filestat(mem, out, FILETYPE_REGULAR_FILE, size, ino(ctx, name))
                    }
                    Fd::Root => filestat(mem, out, FILETYPE_DIRECTORY, 0, 0),
                    _ => filestat(mem, out, FILETYPE_CHARACTER_DEVICE, 0, 0),
                }
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        |mut c: Caller<'_, Ctx>, fd: i32, size: i64| {
            code((|| {
                let ctx = c.data_mut();
                let Some(Fd::File {
                    name, write: true, ..
                }) = ctx.fds.get(&(fd as u32))
                else {
                    return Err(Errno::Badf);
                };
                let name = name.clone();
                let len = ctx.files.get(&name).ok_or(Errno::Badf)?.0.len() as u64;
                let size = size as u64;
                ctx.spend(size.saturating_sub(len) as usize)?;
                let (data, changed) = ctx.files.get_mut(&name).ok_or(Errno::Badf)?;
                data.resize(size as usize, 0);
                *changed = true;
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_filestat_set_times",
        |_: Caller<'_, Ctx>, _: i32, _: i64, _: i64, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_pread",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            code(read_iovs(&mut c, fd, iovs, n, Some(off as u64), out))
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            code(write_iovs(&mut c, fd, iovs, n, Some(off as u64), out))
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32| {
            code(read_iovs(&mut c, fd, iovs, n, None, out))
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32| {
            code(write_iovs(&mut c, fd, iovs, n, None, out))
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_prestat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code((|| {
                if fd as u32 != ROOT_FD {
                    return Err(Errno::Badf);
                }
                let (mem, _) = split(&mut c)?;
                put_u32(mem, out, 0)?;
                put_u32(mem, out.wrapping_add(4), 1)
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |mut c: Caller<'_, Ctx>, fd: i32, p: i32, len: i32| {
            code((|| {
                if fd as u32 != ROOT_FD {
                    return Err(Errno::Badf);
                }
                if len < 1 {
                    return Err(Errno::Nametoolong);
                }
                let (mem, _) = split(&mut c)?;
                slice_mut(mem, p, 1)?.copy_from_slice(b"/");
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_readdir",
        |mut c: Caller<'_, Ctx>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| {
            code(readdir(&mut c, fd, buf, len, cookie, out))
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_renumber",
        |mut c: Caller<'_, Ctx>, from: i32, to: i32| {
            code((|| {
                let ctx = c.data_mut();
                if !ctx.fds.contains_key(&(to as u32)) {
                    return Err(Errno::Badf);
                }
                let fd = ctx.fds.remove(&(from as u32)).ok_or(Errno::Badf)?;
                ctx.fds.insert(to as u32, fd);
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_seek",
        |mut c: Caller<'_, Ctx>, fd: i32, off: i64, whence: i32, out: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                let Some(Fd::File { name, pos, .. }) = ctx.fds.get_mut(&(fd as u32)) else {
                    return Err(match ctx.fds.get(&(fd as u32)) {
                        None => Errno::Badf,
                        Some(Fd::Root) => Errno::Isdir,
                        Some(_) => Errno::Spipe,
                    });
                };
                let len = ctx.files.get(name.as_str()).map_or(0, |f| f.0.len()) as i64;
                let base = match whence {
                    0 => 0,
                    1 => *pos as i64,
                    2 => len,
                    _ => return Err(Errno::Inval),
                };
                let new = base
                    .checked_add(off)
                    .filter(|n| *n >= 0)
                    .ok_or(Errno::Inval)?;
                *pos = new as u64;
                put_u64(mem, out, new as u64)
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "fd_tell",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                match ctx.fds.get(&(fd as u32)).ok_or(Errno::Badf)? {
                    Fd::File { pos, .. } => put_u64(mem, out, *pos),
                    _ => Err(Errno::Spipe),
                }
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_filestat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, _: i32, p: i32, plen: i32, out: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                if !matches!(ctx.fds.get(&(fd as u32)), Some(Fd::Root)) {
                    return Err(Errno::Badf);
                }
                match file_name(path(mem, p, plen)?)? {
                    None => filestat(mem, out, FILETYPE_DIRECTORY, 0, 0),
                    Some(name) => {
                        let size = ctx.files.get(&name).ok_or(Errno::Noent)?.0.len() as u64;
                        filestat(mem, out, FILETYPE_REGULAR_FILE, size, ino(ctx, &name))
                    }
                }
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_open",
        |mut c: Caller<'_, Ctx>,
         fd: i32,
         _dirflags: i32,
         p: i32,
         plen: i32,
         oflags: i32,
         rights: i64,
         _inheriting: i64,
         fdflags: i32,
         out: i32| { code(path_open(&mut c, fd, p, plen, oflags, rights, fdflags, out)) },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_unlink_file",
        |mut c: Caller<'_, Ctx>, fd: i32, p: i32, plen: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                if !matches!(ctx.fds.get(&(fd as u32)), Some(Fd::Root)) {
                    return Err(Errno::Badf);
                }
                let name = file_name(path(mem, p, plen)?)?.ok_or(Errno::Isdir)?;
                ctx.files.remove(&name).map(|_| ()).ok_or(Errno::Noent)
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_rename",
        |mut c: Caller<'_, Ctx>, fd: i32, p: i32, plen: i32, to_fd: i32, q: i32, qlen: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                for d in [fd, to_fd] {
                    if !matches!(ctx.fds.get(&(d as u32)), Some(Fd::Root)) {
                        return Err(Errno::Badf);
                    }
                }
                let from = file_name(path(mem, p, plen)?)?.ok_or(Errno::Isdir)?;
                let to = file_name(path(mem, q, qlen)?)?.ok_or(Errno::Isdir)?;
                let (data, _) = ctx.files.remove(&from).ok_or(Errno::Noent)?;
                ctx.files.insert(to.clone(), (data, true));
                for f in ctx.fds.values_mut() {
                    if let Fd::File { name, .. } = f
                        && *name == from
                    {
                        *name = to.clone();
                    }
                }
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_create_directory",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_remove_directory",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_filestat_set_times",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| {
            Errno::Notcapable as i32
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_link",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            Errno::Notsup as i32
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_readlink",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| Errno::Inval as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "path_symlink",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i32| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "poll_oneoff",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32| Errno::Notsup as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "proc_exit",
        |mut c: Caller<'_, Ctx>, status: i32| -> wasmtime::Result<()> {
            c.data_mut().exit = Some(status as u32);
            Err(wasmtime::Error::new(Exit(status as u32)))
        },
    )
    .map_err(e)?;
    l.func_wrap(MODULE, "proc_raise", |_: Caller<'_, Ctx>, _: i32| {
        Errno::Notsup as i32
    })
    .map_err(e)?;
    l.func_wrap(MODULE, "sched_yield", |_: Caller<'_, Ctx>| 0)
        .map_err(e)?;
    l.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, Ctx>, buf: i32, len: i32| {
            code((|| {
                let (mem, ctx) = split(&mut c)?;
                let dst = slice_mut(mem, buf, len as u32 as usize)?;
                ctx.rng.fill_bytes(dst);
                Ok(())
            })())
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "sock_accept",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "sock_recv",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            Errno::Notcapable as i32
        },
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "sock_send",
        |_: Caller<'_, Ctx>, _: i32, _: i32, _: i32, _: i32, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    l.func_wrap(
        MODULE,
        "sock_shutdown",
        |_: Caller<'_, Ctx>, _: i32, _: i32| Errno::Notcapable as i32,
    )
    .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_the_one_directory() {
        assert_eq!(file_name("a.txt"), Ok(Some("a.txt".into())));
        assert_eq!(file_name("./a.txt"), Ok(Some("a.txt".into())));
        assert_eq!(file_name("out//r.txt"), Ok(Some("out/r.txt".into())));
        assert_eq!(file_name("."), Ok(None));
        assert_eq!(file_name(""), Ok(None));
        assert_eq!(file_name("../etc/passwd"), Err(Errno::Notcapable));
        assert_eq!(file_name("a/../../b"), Err(Errno::Notcapable));
        assert_eq!(file_name("/etc/passwd"), Err(Errno::Notcapable));
        assert_eq!(file_name(&"x".repeat(300)), Err(Errno::Nametoolong));
    }
}
