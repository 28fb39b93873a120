//! The machine's sound devices through cpal (ALSA; PulseAudio and PipeWire through their
//! ALSA plugins).

use crate::VoiceError;
use crate::session::{Sink, Source};

pub fn check() -> Result<(), VoiceError> {
    Err(VoiceError::Device("not yet".into()))
}

pub struct Input;
pub struct Output;

impl Source for Input {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        None
    }
}

impl Sink for Output {
    fn play(&mut self, _frame: &[i16]) {}
}

pub fn input() -> Result<Input, VoiceError> {
    check().map(|_| Input)
}

pub fn output() -> Result<Output, VoiceError> {
    check().map(|_| Output)
}
