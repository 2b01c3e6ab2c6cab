//! Integration tests: one binary, a module per area. Servers bind 127.0.0.1:0; nothing
//! leaves the machine.

#![allow(clippy::unwrap_used)]

mod alerts;
#[cfg(feature = "ballista-cluster")]
mod ballista;
mod cli;
mod commands;
mod console;
mod emulator_api;
mod faults;
mod fixtures_shape;
mod foundation;
mod keys;
mod mapping;
mod oauth;
mod official_client;
mod outputs;
mod resume;
mod schedule;
mod serve;
mod stores;
mod support;
mod sync;
