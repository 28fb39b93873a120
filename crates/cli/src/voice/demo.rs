//! The voice rows of `nodus demo`.

use nodus_testnet::Testnet;

use crate::ui::progress::Step;

pub async fn steps(_net: &mut Testnet, _steps: &mut Vec<Step>) {}
