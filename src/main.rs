//! `labctl`: the CLI on the user's machine and the program in every lab
//! container (`serve-dns`, `serve-mail`). A tiny main: parse, dispatch,
//! map errors to exit codes in one place.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use labctl::{cli, commands, exit, process};

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    let cli = cli::Cli::parse();
    match process::block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code_of(&error)
        }
    }
}

/// `labctl trace | head`: when the reader of stdout goes away, stop like
/// `cat` or `grep` do instead of printing a panic. Rust ignores SIGPIPE, so
/// `println!` panics with a broken pipe error; this hook turns exactly that
/// panic into a quiet exit and leaves every other panic to the default hook.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // EPIPE is errno 32 on Linux, the one platform labctl runs on.
        if message.starts_with("failed printing to stdout") && message.ends_with("(os error 32)") {
            std::process::exit(0);
        }
        default(info);
    }));
}
