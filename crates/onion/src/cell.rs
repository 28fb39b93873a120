//! Cells: every message between two hops of a circuit is exactly [`CELL_LEN`] bytes, so
//! what a link carries says nothing of what is inside but how many cells there are.
//!
//! ```text
//! cell        = command u8 | body [4095]
//! command     0 PADDING   body ignored
//!             1 CREATE    body = ntor CREATE (96 bytes) | zeros
//!             2 CREATED   body = ntor CREATED (64 bytes) | zeros
//!             3 RELAY     body = a relay payload under one layer per hop (see `layers`)
//!             4 DESTROY   body = reason u8 | zeros
//! relay payload (once every layer is off, at the hop it is for)
//!             = recognized u16 (0) | stream u16 | digest [8] | length u16 | command u8
//!               | data [length] | zeros to 4095 bytes
//! ```
//!
//! Integers are big-endian. `length` is at most [`RELAY_DATA`]. A cell with an unknown
//! command, a relay payload with a length past its room or an unknown relay command is
//! malformed: the hop that reads it tears the circuit down.

use crate::OnionError;

pub const CELL_LEN: usize = 4096;
pub const BODY_LEN: usize = CELL_LEN - 1;
pub const RELAY_HEADER: usize = 15;
/// The most data one relay cell carries.
pub const RELAY_DATA: usize = BODY_LEN - RELAY_HEADER;
/// Where the relay payload's digest sits.
pub const DIGEST_AT: std::ops::Range<usize> = 4..12;

pub type Body = [u8; BODY_LEN];

/// A `u8`-coded enum and its decoding; an unknown byte is malformed input.
macro_rules! byte_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $n:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $n,)+
        }

        impl TryFrom<u8> for $name {
            type Error = OnionError;
            fn try_from(b: u8) -> Result<$name, OnionError> {
                match b {
                    $($n => Ok($name::$variant),)+
                    other => Err(OnionError::Malformed(format!(concat!($what, " {}"), other))),
                }
            }
        }
    };
}

byte_enum!(Command, "cell command" {
    Padding = 0,
    Create = 1,
    Created = 2,
    Relay = 3,
    Destroy = 4,
});

/// One cell. The body is boxed: cells move between tasks, and 4 KiB on the stack per
/// move adds up.
#[derive(Clone, PartialEq, Eq)]
pub struct Cell {
    pub command: Command,
    pub body: Box<Body>,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cell({:?})", self.command)
    }
}

impl Cell {
    /// A cell whose body starts with `head`, the rest zeros. `head` longer than a body
    /// is a caller's bug.
    pub fn new(command: Command, head: &[u8]) -> Cell {
        let mut body = Box::new([0u8; BODY_LEN]);
        body[..head.len()].copy_from_slice(head);
        Cell { command, body }
    }

    pub fn relay(body: Box<Body>) -> Cell {
        Cell {
            command: Command::Relay,
            body,
        }
    }

    pub fn decode(bytes: &[u8; CELL_LEN]) -> Result<Cell, OnionError> {
        let command = Command::try_from(bytes[0])?;
        let mut body = Box::new([0u8; BODY_LEN]);
        body.copy_from_slice(&bytes[1..]);
        Ok(Cell { command, body })
    }

    pub fn encode(&self, out: &mut [u8; CELL_LEN]) {
        out[0] = self.command as u8;
        out[1..].copy_from_slice(&self.body[..]);
    }
}

byte_enum!(RelayCommand, "relay command" {
    /// Opens a stream: data is `host:port` (UTF-8). To an exit.
    Begin = 1,
    Data = 2,
    /// Closes a stream: data is a reason byte ([`EndReason`]).
    End = 3,
    /// A stream is open: data empty.
    Connected = 4,
    /// Extends the circuit: data is the next hop's peer id (length u8 | bytes) then the
    /// ntor CREATE body for it.
    Extend = 5,
    /// The circuit was extended: data is the new hop's ntor CREATED body; empty if the
    /// hop could not reach the next one.
    Extended = 6,
    /// Congestion control, on stream 0 only: [`crate::congestion::SENDME_EVERY`] more
    /// DATA cells of this circuit arrived. Data empty.
    Sendme = 7,
    /// Dropped by the hop it is for: padding inside the circuit.
    Drop = 8,
    /// To an introduction point: serve introductions for an onion service on this
    /// circuit. Data: [`crate::hs::EstablishIntro`].
    EstablishIntro = 9,
    /// The introduction point took the circuit: data empty.
    IntroEstablished = 10,
    /// To an introduction point, from a client: data [`crate::hs::Introduce`].
    Introduce1 = 11,
    /// From the introduction point to the service, the same data.
    Introduce2 = 12,
    /// To the client: its introduction was passed on (data `[0]`) or not (`[1]`).
    IntroduceAck = 13,
    /// To a rendezvous point, from a client: data is a 20-byte cookie.
    EstablishRendezvous = 14,
    /// The rendezvous point holds the cookie: data empty.
    RendezvousEstablished = 15,
    /// To the rendezvous point, from the service: cookie (20) | ntor CREATED (64).
    Rendezvous1 = 16,
    /// From the rendezvous point to the client: the service's ntor CREATED (64). From
    /// here on the point joins the two circuits.
    Rendezvous2 = 17,
    /// Opens a stream to a peer of the overlay, at the last hop (any relay, not only an
    /// exit): data is the peer id (length u8 | bytes) then the stream protocol (UTF-8),
    /// which must be one the relay opens for circuits. Answered as BEGIN is.
    BeginOverlay = 18,
    /// To the last hop: send back this many DROP cells (u32, at most
    /// [`crate::bandwidth::PROBE_CELLS`]) as fast as you carry traffic; once per circuit.
    BandwidthTest = 19,
    /// Flow control of one stream: stop sending DATA on it ([`crate::stream`]). Data
    /// empty.
    Xoff = 20,
    /// Flow control of one stream: go on sending DATA on it. Data empty.
    Xon = 21,
});

/// Why a stream ended, carried in END.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    Done = 1,
    /// The exit's policy does not allow that destination.
    ExitPolicy = 2,
    /// The destination refused or could not be reached.
    ConnectFailed = 3,
    /// The name did not resolve.
    ResolveFailed = 4,
    Misc = 5,
}

impl EndReason {
    pub fn from_byte(b: u8) -> EndReason {
        match b {
            1 => EndReason::Done,
            2 => EndReason::ExitPolicy,
            3 => EndReason::ConnectFailed,
            4 => EndReason::ResolveFailed,
            _ => EndReason::Misc,
        }
    }
}

/// A relay message, as its originator writes it and its destination hop reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMsg {
    pub command: RelayCommand,
    pub stream: u16,
    pub data: Vec<u8>,
}

impl RelayMsg {
    pub fn new(command: RelayCommand, stream: u16, data: impl Into<Vec<u8>>) -> RelayMsg {
        RelayMsg {
            command,
            stream,
            data: data.into(),
        }
    }

    /// The payload with its digest field zero (the layer fills it in). Data longer than
    /// [`RELAY_DATA`] is refused.
    pub fn encode(&self) -> Result<Box<Body>, OnionError> {
        if self.data.len() > RELAY_DATA {
            return Err(OnionError::Malformed(format!(
                "{} bytes of relay data, {RELAY_DATA} at most",
                self.data.len()
            )));
        }
        let mut body = Box::new([0u8; BODY_LEN]);
        body[2..4].copy_from_slice(&self.stream.to_be_bytes());
        body[12..14].copy_from_slice(&(self.data.len() as u16).to_be_bytes());
        body[14] = self.command as u8;
        body[RELAY_HEADER..RELAY_HEADER + self.data.len()].copy_from_slice(&self.data);
        Ok(body)
    }

    /// Reads a payload whose layers are all off and whose digest was checked.
    pub fn decode(body: &Body) -> Result<RelayMsg, OnionError> {
        if body[0..2] != [0, 0] {
            return Err(OnionError::Malformed("relay payload not recognized".into()));
        }
        let len = u16::from_be_bytes([body[12], body[13]]) as usize;
        if len > RELAY_DATA {
            return Err(OnionError::Malformed(format!(
                "relay length {len}, {RELAY_DATA} at most"
            )));
        }
        Ok(RelayMsg {
            command: RelayCommand::try_from(body[14])?,
            stream: u16::from_be_bytes([body[2], body[3]]),
            data: body[RELAY_HEADER..RELAY_HEADER + len].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cells_and_relay_messages_round_trip() {
        let c = Cell::new(Command::Create, &[9u8; 96]);
        let mut bytes = [0u8; CELL_LEN];
        c.encode(&mut bytes);
        assert_eq!(Cell::decode(&bytes).unwrap(), c);
        let m = RelayMsg::new(RelayCommand::Begin, 7, b"example.org:80".to_vec());
        assert_eq!(RelayMsg::decode(&m.encode().unwrap()).unwrap(), m);
        let full = RelayMsg::new(RelayCommand::Data, 1, vec![3u8; RELAY_DATA]);
        assert_eq!(RelayMsg::decode(&full.encode().unwrap()).unwrap(), full);
        assert!(
            RelayMsg::new(RelayCommand::Data, 1, vec![0u8; RELAY_DATA + 1])
                .encode()
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), CELL_LEN)) {
            let bytes: [u8; CELL_LEN] = bytes.try_into().unwrap();
            if let Ok(cell) = Cell::decode(&bytes) {
                let mut again = [0u8; CELL_LEN];
                cell.encode(&mut again);
                prop_assert_eq!(again, bytes);
                if let Ok(m) = RelayMsg::decode(&cell.body) {
                    prop_assert!(m.data.len() <= RELAY_DATA);
                    let back = RelayMsg::decode(&m.encode().unwrap()).unwrap();
                    prop_assert_eq!(back, m);
                }
            }
        }
    }
}
