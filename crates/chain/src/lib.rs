//! placeholder
pub mod asert;
pub mod state;
