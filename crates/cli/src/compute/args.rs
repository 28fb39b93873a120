//! The grammar of `nodus compute`.

use std::path::PathBuf;

use clap::Subcommand;

/// The compute commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Volunteer computing: donate cores to projects, or run a project on volunteers' cores
    Compute {
        #[command(subcommand)]
        command: ComputeCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ComputeCommand {
    /// Donate this machine's cores to the projects on the network, or stop
    Volunteer {
        #[command(subcommand)]
        command: VolunteerCommand,
    },
    /// Create a project from a WASI module (wasm32-wasi command) and its inputs; prints its id
    Submit {
        /// The module: `clang --target=wasm32-wasi -O2 job.c -o job.wasm`
        module: PathBuf,
        /// One unit per file of a directory, per line of a file, or per integer of a
        /// range A..B (B not included)
        #[arg(long)]
        inputs: String,
        /// Arguments given to every unit after its own (repeat, or quote several)
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Independent volunteers that must return the same output
        #[arg(long, default_value_t = 2)]
        quorum: u32,
        /// How long a volunteer has for a unit before it goes to another (90s, 10m, 2h)
        #[arg(long, default_value = "10m")]
        deadline: String,
        /// The project's name (the module's file name when left out)
        #[arg(long)]
        name: Option<String>,
        /// Fuel a unit may burn: wasm operators executed, the same count on every machine
        /// (the Lennard-Jones example burns about 25 billion a second here)
        #[arg(long, default_value_t = 1_000_000_000_000)]
        fuel: u64,
        /// Memory a unit may use, MiB
        #[arg(long = "max-memory", default_value_t = 256)]
        max_memory: u32,
        /// Give every unit to a full quorum, even for volunteers trusted by their record
        #[arg(long)]
        no_adaptive: bool,
        /// Canonicalise NaNs so that volunteers of every CPU architecture agree (float
        /// code runs slower); without it, a unit's replicas go to one architecture
        #[arg(long)]
        canonical_nans: bool,
        /// Pay each valid result on the chain: ether per billion fuel of credit (e.g.
        /// 0.01), from this node's compute account (`nodus compute status` shows it)
        #[arg(long)]
        pay: Option<String>,
    },
    /// The projects this node coordinates
    List,
    /// A project's progress, invalid and late results, and each volunteer's credit
    Status {
        project: String,
        /// Keep a live progress bar until the project is finished
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Write the accepted outputs: <unit>.out (stdout) and <unit>/<file> for files
    Results {
        project: String,
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Stop handing out a project's units (what was accepted stays)
    Cancel { project: String },
}

#[derive(Subcommand, Debug)]
pub enum VolunteerCommand {
    /// Start donating (remembered across restarts)
    On {
        /// Cores to use (all when left out)
        #[arg(long)]
        cores: Option<u32>,
        /// Memory one unit may use, MiB; projects that need more are skipped
        #[arg(long = "max-memory")]
        max_memory: Option<u32>,
        /// Run at the lowest priority and pause while other programs keep the cores busy
        #[arg(long)]
        idle_only: bool,
    },
    /// Stop donating (units running now finish and are reported)
    Off,
    /// What runs now, and the credit earned per project
    Status,
}
