//! `nodus bench <area>`: scenario benchmarks that run nodus and the reference tools in
//! one run and print them side by side. Never part of pass/fail.

pub mod chain;
pub mod chain_import;
pub mod chain_propagation;
pub mod msg;
pub mod net;
pub mod torrent;
