//! The engine target: see `fuzz/src/engine.rs` for the script and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_fuzz::engine::{run, Script};

fuzz_target!(|s: Script| run(&s));
