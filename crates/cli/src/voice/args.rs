//! The grammar of `nodus call`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The voice commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Voice calls with contacts: `nodus call <contact>` rings them; answer, reject,
    /// hangup, list, history
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Call {
        #[command(subcommand)]
        action: Option<CallCommand>,
        /// Who to call: a contact's name or peer id
        #[arg(required = true)]
        contact: Option<String>,
        #[command(flatten)]
        media: MediaArgs,
        #[command(flatten)]
        follow: FollowArgs,
    },
}

/// What a call says and does with what it hears.
#[derive(Args, Debug, Default, Clone)]
pub struct MediaArgs {
    /// Say this WAV file (16 kHz mono) instead of what the microphone hears
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write what is heard to this WAV file when the call ends
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Use the machine's default microphone and speaker (ALSA; PulseAudio and PipeWire
    /// through their ALSA plugins)
    #[arg(long)]
    pub device: bool,
}

#[derive(Args, Debug, Default, Clone)]
pub struct FollowArgs {
    /// Hang up this many seconds after the call is answered
    #[arg(long = "for", value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Return once the call is placed (or answered) instead of following it
    #[arg(long)]
    pub detach: bool,
}

#[derive(Subcommand, Debug)]
pub enum CallCommand {
    /// Answer the call ringing here (the only one, or the one named)
    Answer {
        /// The call's id, as `nodus call list` shows it
        call: Option<String>,
        #[command(flatten)]
        media: MediaArgs,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Turn down the call ringing here
    Reject { call: Option<String> },
    /// End the call in progress (or stop ours from ringing)
    Hangup { call: Option<String> },
    /// Calls ringing or in progress
    List,
    /// Past calls, newest first, with duration and quality
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// This node as a voice relay: its address and the calls it carries
    Relay,
}
