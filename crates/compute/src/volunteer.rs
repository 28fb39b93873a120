//! A volunteer: finds projects, fetches their modules, runs units on donated cores and
//! reports what it computed.
//!
//! - Projects come from gossip announcements (the announcer, who signed the message, is
//!   the coordinator) and from the coordinators providing [`wire::PROVIDER_KEY`] in the
//!   DHT. A module runs only if its sha256 is the announced one.
//! - Units run on worker threads, as many as the donated cores; the scheduler keeps
//!   about half a second of work per core queued, measured per project.
//! - A finished unit is written to `compute.redb` before it is reported, and deleted
//!   when the coordinator acknowledged it: a volunteer killed with finished work
//!   reports it when it comes back.
//! - Idle-only: workers run at the lowest priority and hold running units (at their next
//!   epoch check) while other programs keep the machine's cores busy.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nodus_net::{NetworkHandle, PeerId};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};

use crate::error::ComputeError;
use crate::sandbox::{Control, Failure, Limits, Program, Sandbox};
use crate::store::{self, Donation, FINISHED, Finished, JOINED, Joined, Store};
use crate::wire::{self, Announce, Assignment, ProjectId, Reply, Request, Returned};

/// How long a request to a coordinator may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most projects a volunteer keeps track of, and most from one coordinator: anyone can
/// announce projects, so what announcements make a volunteer hold is bounded.
const MAX_KNOWN: usize = 1024;
const MAX_PER_COORDINATOR: usize = 16;
/// Most compiled modules kept.
const MAX_PROGRAMS: usize = 16;
/// How often an idle volunteer looks for coordinators in the DHT.
const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// Work kept queued per core, in time.
const QUEUE_PER_CORE: Duration = Duration::from_millis(500);

#[derive(Clone)]
struct Known {
    coordinator: PeerId,
    announce: Announce,
    finished: bool,
    /// Not asked again before this (no work, or a failed request).
    quiet_until: Option<Instant>,
    /// Mean wall time of one unit here, seconds.
    unit_secs: Option<f64>,
}

struct Task {
    project: ProjectId,
    coordinator: PeerId,
    assignment: Assignment,
    program: Program,
    limits: Limits,
}

struct Done {
    project: ProjectId,
    coordinator: PeerId,
    returned: Returned,
    secs: f64,
}

/// What `nodus compute volunteer status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolunteerStatus {
    pub on: bool,
    pub cores: u32,
    pub max_memory_mb: u32,
    pub idle_only: bool,
    pub paused: bool,
    pub running: Vec<RunningUnit>,
    /// Units taken from coordinators and waiting for a core.
    pub queued: u32,
    pub projects: Vec<JoinedProject>,
    pub units_run: u64,
    pub unreported: u64,
    /// The first [`SHOWN_UNREPORTED`] of them: which units of which project.
    #[serde(default)]
    pub unreported_units: Vec<UnreportedUnit>,
    /// Where projects that pay send this volunteer's pay (an account on the chain).
    pub payout: Option<String>,
}

/// Unreported units listed in the status at most.
pub const SHOWN_UNREPORTED: usize = 100;

/// A finished unit not acknowledged by its coordinator yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreportedUnit {
    pub project: String,
    pub unit: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningUnit {
    pub project: String,
    pub name: String,
    pub unit: u32,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinedProject {
    pub project: String,
    pub name: String,
    pub coordinator: String,
    pub credit: u64,
    pub reported: u64,
    pub finished: bool,
}

pub struct Volunteer {
    store: Arc<Store>,
    sandbox: Sandbox,
    /// For projects that canonicalise NaNs; made when the first one comes.
    canonical: std::sync::OnceLock<Sandbox>,
    net: NetworkHandle,
    donation: watch::Sender<Donation>,
    known: Mutex<HashMap<ProjectId, Known>>,
    /// Compiled modules by (sha256, NaNs canonicalised).
    programs: Mutex<HashMap<([u8; 32], bool), Program>>,
    running: Mutex<BTreeMap<u64, (ProjectId, String, u32, Instant)>>,
    sessions: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<Option<libp2p::Stream>>>>>,
    control: Arc<Control>,
    /// Units queued or running.
    inflight: AtomicU32,
    units_run: AtomicU64,
    faulty: bool,
    payout: Option<crate::pay::Address>,
    wake: Notify,
    pub(crate) metrics: crate::handle::Metrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Volunteer {
    pub(crate) fn new(
        store: Arc<Store>,
        sandbox: Sandbox,
        net: NetworkHandle,
        donation: Donation,
        faulty: bool,
        payout: Option<crate::pay::Address>,
        metrics: crate::handle::Metrics,
    ) -> Arc<Volunteer> {
        Arc::new(Volunteer {
            store,
            sandbox,
            canonical: std::sync::OnceLock::new(),
            net,
            donation: watch::channel(donation).0,
            known: Mutex::new(HashMap::new()),
            programs: Mutex::new(HashMap::new()),
            running: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
            control: Arc::new(Control::default()),
            inflight: AtomicU32::new(0),
            units_run: AtomicU64::new(0),
            faulty,
            payout,
            wake: Notify::new(),
            metrics,
        })
    }

    pub fn donation(&self) -> Donation {
        *self.donation.borrow()
    }

    /// Changes what is donated; remembered across restarts.
    pub fn set_donation(&self, d: Donation) -> Result<(), ComputeError> {
        self.store.set_donation(&d)?;
        self.donation.send_replace(d);
        self.wake.notify_one();
        Ok(())
    }

    /// Learns of a project (from gossip or a coordinator's list).
    pub(crate) fn learn(&self, coordinator: PeerId, a: Announce) {
        let mut known = lock(&self.known);
        if let Some(k) = known.get_mut(&a.project) {
            if k.coordinator == coordinator {
                k.announce = a;
                if k.announce.open > 0 {
                    k.finished = false;
                }
            }
        } else if room_for(&mut known, coordinator) {
            known.insert(
                a.project,
                Known {
                    coordinator,
                    finished: a.open == 0,
                    announce: a,
                    quiet_until: None,
                    unit_secs: None,
                },
            );
        }
        drop(known);
        self.wake.notify_one();
    }

    pub fn status(&self) -> Result<VolunteerStatus, ComputeError> {
        let d = self.donation();
        let now = Instant::now();
        let known = lock(&self.known).clone();
        let running: Vec<RunningUnit> = lock(&self.running)
            .values()
            .map(|(p, name, unit, at)| RunningUnit {
                project: hex::encode(p),
                name: name.clone(),
                unit: *unit,
                secs: now.duration_since(*at).as_secs_f64(),
            })
            .collect();
        let tx = self
            .store
            .db
            .begin_read()
            .map_err(store::StoreError::from)?;
        let joined = tx.open_table(JOINED).map_err(store::StoreError::from)?;
        let mut projects = Vec::new();
        for e in joined.iter().map_err(store::StoreError::from)? {
            let (_, v) = e.map_err(store::StoreError::from)?;
            let j: Joined = store::decode(v.value(), "joined")?;
            let finished = j.finished || known.get(&j.announce.project).is_some_and(|k| k.finished);
            projects.push(JoinedProject {
                project: hex::encode(j.announce.project),
                name: j.announce.name.clone(),
                coordinator: PeerId::from_bytes(&j.coordinator)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                credit: j.credit,
                reported: j.reported,
                finished,
            });
        }
        let finished = tx.open_table(FINISHED).map_err(store::StoreError::from)?;
        let unreported = finished.len().map_err(store::StoreError::from)?;
        let mut unreported_units = Vec::new();
        for e in finished
            .iter()
            .map_err(store::StoreError::from)?
            .take(SHOWN_UNREPORTED)
        {
            let (k, _) = e.map_err(store::StoreError::from)?;
            let (project, unit, _) = k.value();
            unreported_units.push(UnreportedUnit {
                project: hex::encode(project),
                unit,
            });
        }
        Ok(VolunteerStatus {
            on: d.on,
            cores: d.cores,
            max_memory_mb: d.max_memory_mb,
            idle_only: d.idle_only,
            paused: self.control.pause.load(Ordering::Relaxed),
            queued: self
                .inflight
                .load(Ordering::Relaxed)
                .saturating_sub(running.len() as u32),
            running,
            projects,
            units_run: self.units_run.load(Ordering::Relaxed),
            unreported,
            unreported_units,
            payout: self.payout.as_ref().map(crate::pay::show),
        })
    }

    /// One request to a coordinator on the stream kept open to it.
    async fn request(&self, peer: PeerId, req: &Request) -> Result<Reply, ComputeError> {
        let session = lock(&self.sessions).entry(peer).or_default().clone();
        let mut stream = session.lock().await;
        for attempt in 0..2 {
            if stream.is_none() {
                let s = self
                    .net
                    .open_stream(peer, wire::PROTOCOL)
                    .await
                    .map_err(|e| ComputeError::Net(e.to_string()))?;
                *stream = Some(s);
            }
            let s = stream.as_mut().expect("opened above");
            let exchange = async {
                wire::write(s, req).await?;
                wire::read_raw(s).await
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(Ok(raw)) => {
                    return wire::decode_reply(&raw).map_err(|e| {
                        self.net.report_misbehaviour(peer, format!("compute: {e}"));
                        self.metrics.garbage.inc();
                        *stream = None;
                        ComputeError::Peer(e.to_string())
                    });
                }
                Ok(Err(e)) if attempt == 0 => {
                    tracing::debug!(target: "nodus::compute", %peer, "a stream to a coordinator broke ({e}); opening another");
                    *stream = None;
                }
                Ok(Err(e)) => {
                    *stream = None;
                    return Err(ComputeError::Peer(e.to_string()));
                }
                Err(_) => {
                    *stream = None;
                    return Err(ComputeError::Peer("no answer in time".into()));
                }
            }
        }
        Err(ComputeError::Peer("no answer".into()))
    }

    /// The compiled module of a project, fetched and checked if need be.
    async fn program(&self, k: &Known) -> Result<Program, ComputeError> {
        let hash = k.announce.module;
        let nans = k.announce.canonical_nans;
        if let Some(p) = lock(&self.programs).get(&(hash, nans)) {
            return Ok(p.clone());
        }
        let wasm = match self.store.module(&hash)? {
            Some(w) => w,
            None => {
                let reply = self
                    .request(
                        k.coordinator,
                        &Request::Module {
                            project: k.announce.project,
                        },
                    )
                    .await?;
                let Reply::Module { wasm } = reply else {
                    return Err(ComputeError::Peer("no module in the answer".into()));
                };
                if wire::module_hash(&wasm) != hash {
                    self.net.report_misbehaviour(
                        k.coordinator,
                        "compute: a module that is not the one announced",
                    );
                    self.metrics.garbage.inc();
                    return Err(ComputeError::Peer(
                        "the module's hash is not the one announced; not running it".into(),
                    ));
                }
                self.store.put_module(&hash, &wasm)?;
                wasm
            }
        };
        let sandbox = if nans {
            match self.canonical.get() {
                Some(s) => s.clone(),
                None => {
                    let s = Sandbox::with(true)?;
                    self.canonical.get_or_init(|| s).clone()
                }
            }
        } else {
            self.sandbox.clone()
        };
        let program = tokio::task::spawn_blocking(move || sandbox.compile(&wasm))
            .await
            .map_err(|_| ComputeError::Stopped)??;
        let mut programs = lock(&self.programs);
        if programs.len() >= MAX_PROGRAMS {
            programs.clear();
        }
        programs.insert((hash, nans), program.clone());
        Ok(program)
    }

    /// The next project to ask for work, round robin from `after`.
    fn next_project(&self, after: Option<ProjectId>, memory_mb: u32) -> Option<Known> {
        let now = Instant::now();
        let known = lock(&self.known);
        let mut ids: Vec<&ProjectId> = known
            .iter()
            .filter(|(_, k)| {
                !k.finished
                    && k.announce.memory_mb <= memory_mb
                    && k.quiet_until.is_none_or(|t| t <= now)
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let at = after
            .and_then(|a| ids.iter().position(|id| **id > a))
            .unwrap_or(0);
        ids.get(at).map(|id| known[*id].clone())
    }

    fn quiet(&self, project: &ProjectId, for_: Duration, finished: bool) {
        if let Some(k) = lock(&self.known).get_mut(project) {
            k.quiet_until = Some(Instant::now() + for_);
            k.finished |= finished;
        }
    }

    fn target_queue(&self, project: &ProjectId, cores: u32) -> u32 {
        let secs = lock(&self.known)
            .get(project)
            .and_then(|k| k.unit_secs)
            .unwrap_or(QUEUE_PER_CORE.as_secs_f64());
        let per_core = (QUEUE_PER_CORE.as_secs_f64() / secs.max(1e-6)).clamp(1.0, 64.0);
        ((per_core * cores as f64) as u32).clamp(cores, wire::MAX_BATCH as u32)
    }
}

/// Whether one more project of `coordinator` may be tracked; finished projects are
/// forgotten first when the table is full.
fn room_for(known: &mut HashMap<ProjectId, Known>, coordinator: PeerId) -> bool {
    if known.len() >= MAX_KNOWN {
        known.retain(|_, k| !k.finished);
    }
    known.len() < MAX_KNOWN
        && known
            .values()
            .filter(|k| k.coordinator == coordinator)
            .count()
            < MAX_PER_COORDINATOR
}

/// Cores this machine has.
pub fn machine_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Starts the volunteer's tasks and threads; they end on `shutdown`.
pub(crate) fn spawn(
    v: Arc<Volunteer>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let workers = machine_cores();
    let (task_tx, task_rx) = std::sync::mpsc::sync_channel::<Task>(wire::MAX_BATCH * 2);
    let task_rx = Arc::new(Mutex::new(task_rx));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let allowed = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..workers {
        let rx = task_rx.clone();
        let done = done_tx.clone();
        let v = Arc::downgrade(&v);
        let allowed = allowed.clone();
        let stop = stop.clone();
        threads.extend(
            std::thread::Builder::new()
                .name(format!("compute-{i}"))
                .spawn(move || worker(i, v, rx, done, allowed, stop)),
        );
    }
    drop(done_tx);
    {
        let v = Arc::downgrade(&v);
        let stop = stop.clone();
        threads.extend(
            std::thread::Builder::new()
                .name("compute-idle".into())
                .spawn(move || idle_monitor(v, stop)),
        );
    }
    let mut tasks = vec![
        tokio::spawn(schedule(v.clone(), task_tx, allowed, shutdown.clone())),
        tokio::spawn(report(v.clone(), done_rx, shutdown.clone())),
        tokio::spawn(listen(v.clone(), shutdown.clone())),
        tokio::spawn(discover(v.clone(), shutdown.clone())),
    ];
    // The threads hold the store: the service has stopped only when they have ended
    // (a unit running is stopped at its next epoch check).
    let mut s = shutdown;
    tasks.push(tokio::spawn(async move {
        let _ = s.wait_for(|s| *s).await;
        stop.store(true, Ordering::Relaxed);
        v.control.stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }));
    tasks
}

/// Runs queued units. It holds the volunteer only while it runs one, and ends when the
/// queue's sender is gone (the service stopped, or its tasks were aborted).
fn worker(
    index: u32,
    weak: std::sync::Weak<Volunteer>,
    rx: Arc<Mutex<std::sync::mpsc::Receiver<Task>>>,
    done: mpsc::UnboundedSender<Done>,
    allowed: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) {
    let mut nice = 0;
    while !stop.load(Ordering::Relaxed) && weak.strong_count() > 0 {
        if index >= allowed.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let task = match lock(&rx).recv_timeout(Duration::from_millis(100)) {
            Ok(t) => t,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(_) => break,
        };
        let Some(v) = weak.upgrade() else {
            break;
        };
        let want = if v.donation().idle_only { 19 } else { 0 };
        if want != nice {
            set_nice(want);
            nice = want;
        }
        let key = v.units_run.fetch_add(1, Ordering::Relaxed);
        lock(&v.running).insert(
            key,
            (
                task.project,
                lock(&v.known)
                    .get(&task.project)
                    .map(|k| k.announce.name.clone())
                    .unwrap_or_default(),
                task.assignment.unit,
                Instant::now(),
            ),
        );
        let started = Instant::now();
        let outcome = task
            .program
            .run(&task.assignment.job, &task.limits, Some(v.control.clone()));
        let secs = started.elapsed().as_secs_f64();
        lock(&v.running).remove(&key);
        if outcome.result == Err(Failure::Stopped) {
            // Not a result: the coordinator hands the unit out again after its deadline.
            break;
        }
        v.metrics.units_run.inc();
        v.metrics.fuel.inc_by(outcome.fuel);
        let mut result = outcome.result;
        if v.faulty
            && let Ok(out) = &mut result
        {
            out.stdout.extend_from_slice(b" (faulty)");
        }
        let d = Done {
            project: task.project,
            coordinator: task.coordinator,
            returned: Returned {
                unit: task.assignment.unit,
                replica: task.assignment.replica,
                fuel: outcome.fuel,
                result,
            },
            secs,
        };
        v.inflight.fetch_sub(1, Ordering::Relaxed);
        v.wake.notify_one();
        if done.send(d).is_err() {
            break;
        }
    }
}

fn set_nice(n: i32) {
    // SAFETY: plain syscalls on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, n);
    }
}

/// Asks coordinators for work while cores are free, and queues it for the workers.
async fn schedule(
    v: Arc<Volunteer>,
    tasks: std::sync::mpsc::SyncSender<Task>,
    allowed: Arc<AtomicU32>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut donation = v.donation.subscribe();
    let mut last: Option<ProjectId> = None;
    loop {
        let d = *donation.borrow_and_update();
        let cores = if d.cores == 0 {
            machine_cores()
        } else {
            d.cores.min(machine_cores())
        };
        allowed.store(if d.on { cores } else { 0 }, Ordering::Relaxed);
        let mut asked = false;
        if d.on
            && let Some(k) = v.next_project(last, d.max_memory_mb)
        {
            let target = v.target_queue(&k.announce.project, cores);
            let inflight = v.inflight.load(Ordering::Relaxed);
            if inflight < target.div_ceil(2).max(cores) || inflight == 0 {
                asked = true;
                last = Some(k.announce.project);
                if let Err(e) = fetch(&v, &k, target - inflight.min(target), &tasks).await {
                    tracing::debug!(target: "nodus::compute", project = %hex::encode(k.announce.project), "no work from {}: {e}", k.coordinator);
                    v.quiet(&k.announce.project, Duration::from_secs(5), false);
                }
            }
        }
        if asked && v.inflight.load(Ordering::Relaxed) < cores {
            // Free cores: ask the next project at once.
            if v.next_project(last, d.max_memory_mb).is_some() {
                tokio::task::yield_now().await;
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = v.wake.notified() => {}
            _ = donation.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn fetch(
    v: &Arc<Volunteer>,
    k: &Known,
    max: u32,
    tasks: &std::sync::mpsc::SyncSender<Task>,
) -> Result<(), ComputeError> {
    let project = k.announce.project;
    let program = v.program(k).await?;
    let reply = v
        .request(
            k.coordinator,
            &Request::Work {
                project,
                max: max.clamp(1, wire::MAX_BATCH as u32) as u16,
                class: crate::sandbox::class(k.announce.canonical_nans),
                payout: v.payout,
            },
        )
        .await?;
    match reply {
        Reply::Units { units, credit } => {
            joined(v, k, Some(credit), 0)?;
            if units.is_empty() {
                v.quiet(&project, Duration::from_secs(1), false);
            }
            let limits = Limits {
                fuel: k.announce.fuel,
                memory_bytes: (k.announce.memory_mb as usize) << 20,
                output_bytes: k.announce.output_bytes as usize,
                wall: Duration::from_secs(k.announce.deadline_secs.max(1) as u64),
            };
            for assignment in units {
                v.inflight.fetch_add(1, Ordering::Relaxed);
                let task = Task {
                    project,
                    coordinator: k.coordinator,
                    assignment,
                    program: program.clone(),
                    limits,
                };
                let tasks = tasks.clone();
                // The queue holds at most two batches; wait for room off the runtime.
                let sent = tokio::task::spawn_blocking(move || tasks.send(task).is_ok()).await;
                if !matches!(sent, Ok(true)) {
                    return Err(ComputeError::Stopped);
                }
            }
            Ok(())
        }
        Reply::NoWork { finished, credit } => {
            joined(v, k, Some(credit), 0)?;
            v.quiet(&project, Duration::from_secs(1), finished);
            Ok(())
        }
        Reply::Refused(r) => {
            v.quiet(
                &project,
                Duration::from_secs(5),
                r == wire::Refusal::UnknownProject,
            );
            Err(ComputeError::Peer(r.to_string()))
        }
        _ => Err(ComputeError::Peer(
            "an answer that does not fit the request".into(),
        )),
    }
}

/// Records a project this volunteer works for: its credit as last reported.
fn joined(
    v: &Volunteer,
    k: &Known,
    credit: Option<u64>,
    reported: u64,
) -> Result<(), ComputeError> {
    let id = k.announce.project;
    let tx = v.store.db.begin_write().map_err(store::StoreError::from)?;
    {
        let mut t = tx.open_table(JOINED).map_err(store::StoreError::from)?;
        let old: Option<Joined> = t
            .get(&id[..])
            .map_err(store::StoreError::from)?
            .map(|g| store::decode(g.value(), "joined"))
            .transpose()?;
        let row = match old {
            Some(mut j) => {
                if let Some(c) = credit {
                    j.credit = c;
                }
                j.reported += reported;
                j.announce = k.announce.clone();
                j.finished = k.finished;
                j
            }
            None => Joined {
                coordinator: k.coordinator.to_bytes(),
                announce: k.announce.clone(),
                credit: credit.unwrap_or(0),
                reported,
                finished: k.finished,
            },
        };
        t.insert(&id[..], &store::encode(&row)[..])
            .map_err(store::StoreError::from)?;
    }
    tx.commit().map_err(store::StoreError::from)?;
    Ok(())
}

/// Writes finished units down, reports them, and forgets them once acknowledged.
async fn report(
    v: Arc<Volunteer>,
    mut done: mpsc::UnboundedReceiver<Done>,
    mut shutdown: watch::Receiver<bool>,
) {
    // What a previous run finished but could not report.
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            d = done.recv() => match d {
                Some(d) => batch.push(d),
                None => break,
            },
            _ = retry.tick() => {}
        }
        while batch.len() < wire::MAX_BATCH
            && let Ok(d) = done.try_recv()
        {
            batch.push(d);
        }
        if !batch.is_empty() {
            for d in &batch {
                if let Some(k) = lock(&v.known).get_mut(&d.project) {
                    k.unit_secs = Some(match k.unit_secs {
                        Some(s) => 0.8 * s + 0.2 * d.secs,
                        None => d.secs,
                    });
                }
            }
            let rows: Vec<((ProjectId, u32, u32), Finished)> = batch
                .into_iter()
                .map(|d| {
                    (
                        (d.project, d.returned.unit, d.returned.replica),
                        Finished {
                            coordinator: d.coordinator.to_bytes(),
                            returned: d.returned,
                        },
                    )
                })
                .collect();
            let store = v.store.clone();
            let written = tokio::task::spawn_blocking(move || write_finished(&store, &rows)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(target: "nodus::compute", "could not write finished units down");
            }
        }
        if let Err(e) = send_finished(&v).await {
            tracing::debug!(target: "nodus::compute", "reporting results: {e}");
        }
    }
}

fn write_finished(
    store: &Store,
    rows: &[((ProjectId, u32, u32), Finished)],
) -> Result<(), store::StoreError> {
    let tx = store.db.begin_write()?;
    {
        let mut t = tx.open_table(FINISHED)?;
        for ((p, u, r), f) in rows {
            t.insert((&p[..], *u, *r), &store::encode(f)[..])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Reports every finished unit on disk, grouped by project.
async fn send_finished(v: &Arc<Volunteer>) -> Result<(), ComputeError> {
    let store = v.store.clone();
    let pending = tokio::task::spawn_blocking(move || -> Result<_, store::StoreError> {
        let tx = store.db.begin_read()?;
        let t = tx.open_table(FINISHED)?;
        let mut by: BTreeMap<(Vec<u8>, ProjectId), Vec<Returned>> = BTreeMap::new();
        for e in t.iter()? {
            let (k, val) = e?;
            let (p, _, _) = k.value();
            let Ok(project) = ProjectId::try_from(p) else {
                continue;
            };
            let f: Finished = store::decode(val.value(), "finished")?;
            let list = by.entry((f.coordinator, project)).or_default();
            if list.len() < wire::MAX_BATCH {
                list.push(f.returned);
            }
        }
        Ok(by)
    })
    .await
    .map_err(|_| ComputeError::Stopped)??;
    for ((coordinator, project), results) in pending {
        let Ok(peer) = PeerId::from_bytes(&coordinator) else {
            continue;
        };
        let keys: Vec<(u32, u32)> = results.iter().map(|r| (r.unit, r.replica)).collect();
        let n = results.len() as u64;
        let reply = v.request(peer, &Request::Submit { project, results }).await;
        let credit = match reply {
            Ok(Reply::Accepted { credit }) => Some(credit),
            // The coordinator no longer has the project: nothing will take these.
            Ok(Reply::Refused(wire::Refusal::UnknownProject)) => None,
            Ok(other) => {
                return Err(ComputeError::Peer(format!(
                    "a submit was answered with {other:?}"
                )));
            }
            Err(e) => return Err(e),
        };
        v.metrics.reported.inc_by(n);
        let store = v.store.clone();
        tokio::task::spawn_blocking(move || -> Result<(), store::StoreError> {
            let tx = store.db.begin_write()?;
            {
                let mut t = tx.open_table(FINISHED)?;
                for (u, r) in keys {
                    t.remove((&project[..], u, r))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|_| ComputeError::Stopped)??;
        let k = lock(&v.known).get(&project).cloned();
        if let Some(k) = k {
            joined(v, &k, credit, n)?;
        }
    }
    Ok(())
}

/// Learns projects from the gossip topic.
async fn listen(v: Arc<Volunteer>, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut rx) = v.net.subscribe(wire::TOPIC).await else {
        return;
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let Some(source) = msg.source.as_deref().and_then(|s| s.parse::<PeerId>().ok()) else {
            continue;
        };
        match wire::decode_announce(&msg.data) {
            Ok(a) => v.learn(source, a),
            Err(e) => {
                v.metrics.garbage.inc();
                v.net
                    .report_misbehaviour(source, format!("compute announcement: {e}"));
            }
        }
    }
}

/// Asks the coordinators found in the DHT for their projects: at start, when donating
/// is switched on, and every [`DISCOVER_EVERY`] while donating with nothing to do
/// (gossip announcements may not reach a volunteer that joined the topic late).
async fn discover(v: Arc<Volunteer>, mut shutdown: watch::Receiver<bool>) {
    let mut donation = v.donation.subscribe();
    loop {
        let d = *donation.borrow_and_update();
        let idle = v.next_project(None, d.max_memory_mb).is_none();
        if d.on && idle {
            let found = v
                .net
                .providers(wire::PROVIDER_KEY.to_vec())
                .await
                .unwrap_or_default();
            let me = v.net.local_peer_id();
            let asks = found.into_iter().filter(|p| *p != me).map(|p| {
                let v = v.clone();
                async move { (p, v.request(p, &Request::Projects).await) }
            });
            let mut asks = futures::stream::iter(asks).buffer_unordered(8);
            while let Some((p, reply)) = asks.next().await {
                if let Ok(Reply::Projects(list)) = reply {
                    for a in list {
                        v.learn(p, a);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = donation.changed() => {}
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    }
}

/// Busy share of the machine's cores taken by other programs, from two readings of
/// (all busy jiffies, all jiffies, this process's jiffies).
pub fn others_busy(before: (u64, u64, u64), now: (u64, u64, u64)) -> f64 {
    let busy = now.0.saturating_sub(before.0);
    let total = now.1.saturating_sub(before.1);
    let mine = now.2.saturating_sub(before.2);
    if total == 0 {
        return 0.0;
    }
    busy.saturating_sub(mine) as f64 / total as f64
}

fn read_jiffies() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if cpu.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let total: u64 = cpu[..8].iter().sum();
    let busy = total - cpu[3] - cpu[4];
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &me[me.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let mine = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((busy, total, mine))
}

/// Sets the pause switch while idle-only donation meets a busy machine.
fn idle_monitor(weak: std::sync::Weak<Volunteer>, stop: Arc<AtomicBool>) {
    let mut before = read_jiffies();
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if !ticks.is_multiple_of(10) {
            continue;
        }
        let now = read_jiffies();
        let busy = match (before, now) {
            (Some(b), Some(n)) => others_busy(b, n),
            _ => 0.0,
        };
        before = now;
        let Some(v) = weak.upgrade() else {
            break;
        };
        let pause = v.donation().idle_only && busy > 0.5;
        if v.control.pause.swap(pause, Ordering::Relaxed) != pause {
            tracing::info!(target: "nodus::compute", "{} donated work: other programs use {:.0}% of the cores", if pause { "pausing" } else { "resuming" }, busy * 100.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(coordinator: PeerId, finished: bool) -> Known {
        Known {
            coordinator,
            announce: Announce {
                project: [0; 16],
                name: "p".into(),
                module: [0; 32],
                module_len: 0,
                fuel: 1,
                memory_mb: 1,
                output_bytes: 1,
                deadline_secs: 1,
                units: 1,
                open: 1,
                canonical_nans: false,
            },
            finished,
            quiet_until: None,
            unit_secs: None,
        }
    }

    #[test]
    fn announcements_fill_the_table_only_so_far() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut table = HashMap::new();
        for i in 0..MAX_PER_COORDINATOR as u32 {
            assert!(room_for(&mut table, a));
            let mut id = [0; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            table.insert(id, known(a, false));
        }
        assert!(
            !room_for(&mut table, a),
            "one coordinator is held to its share"
        );
        assert!(room_for(&mut table, b));
        // Full of live projects from many coordinators: nothing more; finished ones make room.
        let mut table: HashMap<ProjectId, Known> = (0..MAX_KNOWN as u32)
            .map(|i| {
                let mut id = [0; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (id, known(PeerId::random(), i % 2 == 0))
            })
            .collect();
        assert!(room_for(&mut table, b));
        assert_eq!(table.len(), MAX_KNOWN / 2);
        for (i, k) in table.values_mut().enumerate() {
            k.finished = i < 1;
        }
        let mut full = table.clone();
        for i in 0..(MAX_KNOWN / 2) as u32 {
            let mut id = [1; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            full.insert(id, known(PeerId::random(), false));
        }
        assert_eq!(full.len(), MAX_KNOWN);
        assert!(room_for(&mut full, b));
        assert_eq!(full.len(), MAX_KNOWN - 1);
    }

    #[test]
    fn only_other_programs_count_as_busy() {
        // 400 jiffies passed on all cores; 300 busy, 250 of them ours.
        let b = others_busy((1000, 4000, 100), (1300, 4400, 350));
        assert!((b - 0.125).abs() < 1e-9, "{b}");
        assert_eq!(others_busy((1, 1, 1), (1, 1, 1)), 0.0);
        assert!(read_jiffies().is_some());
    }
}
