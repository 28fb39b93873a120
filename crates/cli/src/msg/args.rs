//! The grammar of `nodus msg`.

use clap::Subcommand;

/// The messaging commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// End-to-end encrypted messages to contacts and groups
    Msg {
        #[command(subcommand)]
        command: MsgCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum MsgCommand {
    /// Print a contact code to give to someone (peer id, keys, a one-time key, your name)
    Invite,
    /// Add a contact from the code they gave you
    Add {
        code: String,
        /// What to call them (default: the name in their code)
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts
    Contacts,
    /// Send a message to a contact (by name or peer id), with files if given
    Send {
        contact: String,
        /// The message (several words are joined with spaces); may be left out with --file
        #[arg(required_unless_present = "files", num_args = 0..)]
        text: Vec<String>,
        /// A file to send with it (photo, video, document; repeat for several). The
        /// contact's node fetches it from this one, resuming if either side restarts.
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<std::path::PathBuf>,
    },
    /// Save a file that came with a message, waiting (with progress) until it is here
    Save {
        /// The file's hash, as `nodus msg history` shows it
        hash: String,
        /// Where to write it (default: its name, in the current directory)
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Show messages not read yet, and mark them read
    Inbox {
        /// Keep printing new messages (and incoming calls) as they arrive
        #[arg(long)]
        follow: bool,
        /// Show recent messages already read too
        #[arg(long)]
        all: bool,
    },
    /// Show a conversation with a contact or group, oldest first
    History { with: String },
    /// List groups
    Groups,
    /// Create and manage group chats
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group with you as owner
    Create { name: String },
    /// Add a contact to a group you own
    Add { group: String, contact: String },
    /// Remove a member; they cannot read what is sent after
    Remove { group: String, contact: String },
    /// Send a message to everyone in the group
    Send {
        group: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
}
