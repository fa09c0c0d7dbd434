//! labctl as a library: variants, plan, PKI, rendering, runtimes, verify.
//! The binary (`main.rs`) is a thin shell over [`commands::run`].
//!
//! The flow of a lab: variant -> plan -> rendered files -> runtime -> verify.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod client;
pub mod commands;
pub mod exit;
pub mod lab;
pub mod naming;
pub mod pki;
pub mod plan;
pub mod process;
pub mod render;
pub mod runtime;
pub mod target;
pub mod variant;
pub mod verify;
