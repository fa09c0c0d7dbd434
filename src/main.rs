//! `labctl`: the CLI on the user's machine and the program in every lab
//! container (`serve-dns`, `serve-mail`). A tiny main: parse, dispatch,
//! map errors to exit codes in one place.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use labctl::{cli, commands, exit};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code_of(&error)
        }
    }
}
