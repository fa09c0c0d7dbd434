//! Exit codes, decided in one place (docs/architecture.md): 0 ok, 1 a check
//! failed, 2 usage (including a bad variant file), 3 the environment (Docker
//! unreachable, a port or subnet taken, files that cannot be written).

use std::process::ExitCode;

/// Why the command failed, as far as the exit code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A check failed (`verify`).
    CheckFailed = 1,
    /// The command line or an input file is wrong.
    Usage = 2,
    /// The machine is not ready (Docker, ports, subnet, file system).
    Environment = 3,
}

/// An error that carries its exit code; anything else in the chain is shown as context.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code.
    pub kind: Kind,
    /// What is wrong and what to do.
    pub message: String,
}

/// A usage error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        kind: Kind::Usage,
        message: message.into(),
    }
    .into()
}

/// A failed check (exit 1).
pub fn check_failed(message: impl Into<String>) -> anyhow::Error {
    Failure {
        kind: Kind::CheckFailed,
        message: message.into(),
    }
    .into()
}

/// An environment error.
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    Failure {
        kind: Kind::Environment,
        message: message.into(),
    }
    .into()
}

/// The exit code of an error: the first [`Failure`] or known typed error in its chain.
pub fn code_of(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return ExitCode::from(f.kind as u8);
        }
        if cause.is::<crate::variant::VariantError>()
            || cause.is::<crate::plan::PlanError>()
            || matches!(
                cause.downcast_ref::<crate::render::RenderError>(),
                Some(crate::render::RenderError::NotALabDir { .. })
            )
        {
            return ExitCode::from(Kind::Usage as u8);
        }
        if let Some(e) = cause.downcast_ref::<crate::runtime::RuntimeError>() {
            return ExitCode::from(match e {
                crate::runtime::RuntimeError::NotReady(_) => Kind::CheckFailed,
                crate::runtime::RuntimeError::NoLogs(_) => Kind::Usage,
                crate::runtime::RuntimeError::NotALabDir(_) => Kind::Usage,
                _ => Kind::Environment,
            } as u8);
        }
        // A lab server that cannot be reached or does not answer as it should.
        if cause.is::<std::io::Error>() || cause.is::<crate::client::ClientError>() {
            return ExitCode::from(Kind::Environment as u8);
        }
    }
    ExitCode::from(Kind::CheckFailed as u8)
}
