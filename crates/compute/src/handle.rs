//! The cloneable API the node's routes, the CLI and tests use.

use std::sync::Arc;
use std::time::Duration;

use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use crate::coordinator::{Coordinator, NewProject, ProjectStatus, UnitResult, now_ms};
use crate::error::ComputeError;
use crate::inputs::Inputs;
use crate::sandbox::Sandbox;
use crate::store::{Donation, ProjectState};
use crate::unit::Policy;
use crate::volunteer::{Volunteer, VolunteerStatus, machine_cores};

/// What the compute service tells the node's event stream.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComputeEvent {
    ProjectCreated {
        project: String,
        name: String,
        units: u32,
    },
    UnitsAccepted {
        project: String,
        units: Vec<u32>,
    },
    ResultInvalid {
        project: String,
        unit: u32,
        volunteer: String,
    },
    ProjectFinished {
        project: String,
    },
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub projects: Gauge,
    pub units_run: Counter,
    pub fuel: Counter,
    pub reported: Counter,
    pub accepted: Counter,
    pub invalid: Counter,
    pub garbage: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "projects_active",
            "Projects this node coordinates that have work left",
            self.projects.clone(),
        );
        r.register(
            "units_run",
            "Work units this volunteer ran",
            self.units_run.clone(),
        );
        r.register(
            "fuel",
            "Fuel this volunteer's units used",
            self.fuel.clone(),
        );
        r.register(
            "results_reported",
            "Results this volunteer reported and had acknowledged",
            self.reported.clone(),
        );
        r.register(
            "units_accepted",
            "Units of this node's projects accepted by quorum",
            self.accepted.clone(),
        );
        r.register(
            "results_invalid",
            "Results to this node's projects that the quorum rejected",
            self.invalid.clone(),
        );
        r.register(
            "bad_messages",
            "Compute messages from peers that did not decode or broke a limit",
            self.garbage.clone(),
        );
    }
}

/// A project as a person submits it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub name: String,
    /// The module, hex.
    pub module: String,
    pub inputs: Inputs,
    /// Arguments after each unit's own.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_quorum")]
    pub quorum: u32,
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default = "default_output")]
    pub output_bytes: u32,
    /// Adaptive replication: trusted volunteers get units alone, audited at random.
    #[serde(default = "default_true")]
    pub adaptive: bool,
    /// Canonicalise NaNs so volunteers of any CPU architecture agree (slower float
    /// code); otherwise a unit's replicas all go to one architecture.
    #[serde(default)]
    pub canonical_nans: bool,
    /// Pay for valid results on the chain: wei per billion fuel of credit, decimal (a
    /// string: it passes 2^53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_wei_per_gfuel: Option<String>,
}

fn default_quorum() -> u32 {
    2
}
fn default_deadline() -> u64 {
    600
}
/// About 40 s of the Lennard-Jones kernel on this machine's kind (it burns about 25
/// billion fuel a second: fuel counts wasm operators, and most cost the CPU little).
fn default_fuel() -> u64 {
    1_000_000_000_000
}
fn default_memory() -> u32 {
    256
}
fn default_output() -> u32 {
    1 << 20
}
fn default_true() -> bool {
    true
}

/// Most units a project may ask a quorum of, and most bytes of output per unit.
pub const MAX_QUORUM: u32 = 10;
pub const MAX_OUTPUT: u32 = 16 << 20;

pub(crate) struct Inner {
    pub coordinator: Arc<Coordinator>,
    pub volunteer: Arc<Volunteer>,
    pub sandbox: Sandbox,
    pub net: NetworkHandle,
    pub events: broadcast::Sender<ComputeEvent>,
    pub metrics: Metrics,
    /// Wakes the announcer: a project was made or changed.
    pub announce: Notify,
    pub max_memory_mb: u32,
    pub payer: Option<crate::pay::SharedPayer>,
    pub payroll: Arc<std::sync::Mutex<crate::payroll::PayrollState>>,
}

#[derive(Clone)]
pub struct ComputeHandle {
    pub(crate) inner: Arc<Inner>,
}

impl ComputeHandle {
    /// Creates a project from a submission; returns its id.
    pub async fn submit(&self, s: Submission) -> Result<String, ComputeError> {
        let bad = ComputeError::BadRequest;
        if s.name.is_empty() || s.name.len() > crate::wire::MAX_NAME {
            return Err(bad(format!(
                "a project needs a name of 1 to {} bytes",
                crate::wire::MAX_NAME
            )));
        }
        if s.quorum == 0 || s.quorum > MAX_QUORUM {
            return Err(bad(format!("--quorum must be 1 to {MAX_QUORUM}")));
        }
        if s.deadline_secs == 0 || s.deadline_secs > 30 * 86_400 {
            return Err(bad("--deadline must be between 1 s and 30 days".into()));
        }
        if s.memory_mb == 0 || s.memory_mb > 4096 {
            return Err(bad("--max-memory must be 1 to 4096 MiB".into()));
        }
        if s.output_bytes > MAX_OUTPUT {
            return Err(bad(format!(
                "a unit's output may be at most {MAX_OUTPUT} bytes"
            )));
        }
        if s.fuel == 0 {
            return Err(bad("--fuel must be above 0".into()));
        }
        let rate = match &s.pay_wei_per_gfuel {
            None => 0,
            Some(r) => r.parse::<u128>().map_err(|_| {
                bad(format!(
                    "pay {r:?}: give wei per billion fuel as a whole number (the CLI's --pay takes ether)"
                ))
            })?,
        };
        if rate > 0 && self.inner.payer.is_none() {
            return Err(bad(
                "paying volunteers needs the chain service: set [chain] enabled = true in config.toml and restart"
                    .into(),
            ));
        }
        let wasm = hex::decode(&s.module)
            .map_err(|_| bad("the module must be hex (the CLI sends the file's bytes)".into()))?;
        let jobs = s.inputs.jobs(&s.args).map_err(|e| bad(e.to_string()))?;
        let sandbox = self.inner.sandbox.clone();
        let w = wasm.clone();
        tokio::task::spawn_blocking(move || sandbox.compile(&w))
            .await
            .map_err(|_| ComputeError::Stopped)??;
        let policy = Policy {
            min_quorum: s.quorum,
            max_error_results: (s.quorum + 1).max(3),
            max_total_results: (s.quorum * 4).max(s.quorum + 4),
            delay_bound_ms: s.deadline_secs * 1000,
            trust_after: if s.adaptive && s.quorum > 1 { 10 } else { 0 },
            audit_per_mille: 100,
        };
        let units = jobs.len() as u32;
        let name = s.name.clone();
        let c = self.inner.coordinator.clone();
        let id = tokio::task::spawn_blocking(move || {
            c.create(
                NewProject {
                    name: s.name,
                    wasm,
                    jobs,
                    policy,
                    fuel: s.fuel,
                    memory_mb: s.memory_mb,
                    output_bytes: s.output_bytes,
                    canonical_nans: s.canonical_nans,
                    rate,
                },
                now_ms(),
            )
        })
        .await
        .map_err(|_| ComputeError::Stopped)??;
        let id = hex::encode(id);
        let _ = self.inner.events.send(ComputeEvent::ProjectCreated {
            project: id.clone(),
            name,
            units,
        });
        self.inner.metrics.projects.inc();
        self.inner.announce.notify_one();
        Ok(id)
    }

    pub fn projects(&self) -> Vec<ProjectStatus> {
        let c = &self.inner.coordinator;
        c.ids()
            .iter()
            .filter_map(|id| c.status(id))
            .map(|s| self.with_payroll(s))
            .collect()
    }

    pub fn status(&self, id: &str) -> Result<ProjectStatus, ComputeError> {
        let c = &self.inner.coordinator;
        let id = c.find(id)?;
        c.status(&id)
            .map(|s| self.with_payroll(s))
            .ok_or_else(|| ComputeError::NoSuchProject(hex::encode(id)))
    }

    fn with_payroll(&self, mut s: ProjectStatus) -> ProjectStatus {
        if let Some(p) = &mut s.pay {
            let state = self.payroll();
            p.account = Some(state.account).filter(|a| !a.is_empty());
            p.note = state.last_error;
        }
        s
    }

    /// How paying volunteers is going.
    pub fn payroll(&self) -> crate::payroll::PayrollState {
        self.inner
            .payroll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Accepted outputs from unit `from` on, at most `limit`; and where to go on.
    pub async fn results(
        &self,
        id: &str,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<UnitResult>, Option<u32>), ComputeError> {
        let c = self.inner.coordinator.clone();
        let id = c.find(id)?;
        tokio::task::spawn_blocking(move || c.results(&id, from, limit))
            .await
            .map_err(|_| ComputeError::Stopped)?
    }

    /// One unit's state on its coordinator: its replicas, their results and verdicts.
    pub fn unit(&self, id: &str, unit: u32) -> Result<crate::unit::Unit, ComputeError> {
        let c = &self.inner.coordinator;
        let id = c.find(id)?;
        c.unit(&id, unit)
            .ok_or_else(|| ComputeError::BadRequest(format!("no unit {unit} in this project")))
    }

    pub fn cancel(&self, id: &str) -> Result<bool, ComputeError> {
        let c = &self.inner.coordinator;
        let id = c.find(id)?;
        let done = c.cancel(&id)?;
        if done {
            self.inner.metrics.projects.dec();
        }
        Ok(done)
    }

    pub fn volunteer_status(&self) -> Result<VolunteerStatus, ComputeError> {
        self.inner.volunteer.status()
    }

    /// Switches donating on or off; what is not given keeps its value.
    pub fn set_volunteer(
        &self,
        on: bool,
        cores: Option<u32>,
        max_memory_mb: Option<u32>,
        idle_only: Option<bool>,
    ) -> Result<VolunteerStatus, ComputeError> {
        let mut d: Donation = self.inner.volunteer.donation();
        if let Some(c) = cores {
            if c > machine_cores() {
                return Err(ComputeError::BadRequest(format!(
                    "--cores {c}: this machine has {}",
                    machine_cores()
                )));
            }
            d.cores = c;
        }
        if let Some(m) = max_memory_mb {
            if m == 0 {
                return Err(ComputeError::BadRequest(
                    "--max-memory must be above 0".into(),
                ));
            }
            d.max_memory_mb = m;
        }
        if let Some(i) = idle_only {
            d.idle_only = i;
        }
        d.on = on;
        self.inner.volunteer.set_donation(d)?;
        self.volunteer_status()
    }

    /// Waits until a project is no longer active (finished or cancelled).
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<ProjectStatus, ComputeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.status(id)?;
            if s.state != ProjectState::Active || tokio::time::Instant::now() >= deadline {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    pub fn peer_id(&self) -> nodus_net::PeerId {
        self.inner.net.local_peer_id()
    }

    pub fn max_memory_mb(&self) -> u32 {
        self.inner.max_memory_mb
    }
}
