//! `flagctl`, the safe write path for flags: validate flag files strictly, diff them
//! against the table, apply them with conditional writes and an audit record in the same
//! transaction, flip the kill switch, read the audit history, and explain a decision.
//!
//! The binary (`src/bin/flagctl.rs`) only parses the command line and calls [`run`].
//! One file per concern:
//!
//! - [`cli`] — the command line (clap derive) and its help.
//! - `files` — reading flag files (JSON or YAML; a directory or one `{"flags": [...]}`
//!   file) and writing an export.
//! - `validate` — the strict checks of the write path (the flag compiler, plus §1.1
//!   oddities as errors, plus set-wide checks) and the warnings.
//! - `diff` — field-level differences, numbers compared by exact value.
//! - `table` — the DynamoDB adapter: scan, get, conditional transactional writes with
//!   their audit records, history queries. `AttributeValue` never leaves it.
//! - `audit` — the audit record and the caller's identity (STS `GetCallerIdentity`).
//! - `commands` — each sub-command, gluing the above; `explain` — the decision path.

pub mod cli;

mod audit;
mod commands;
mod diff;
mod explain;
mod files;
mod table;
mod validate;

pub use cli::Cli;

use std::fmt;

/// One problem with the input, reported as `file: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a file (with `[i]` for the i-th flag of a `{"flags": [...]}` file).
    pub file: String,
    /// Which field (a path such as `variants[1].allocation`), or `-` for the whole flag.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// A problem with `field` of the flag in `file`.
    pub fn new(file: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { file: file.into(), field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.message)
    }
}

/// Why a command failed; [`CtlError::exit_code`] is what the process exits with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The input is wrong (files, arguments): exit 1, every problem listed.
    #[error("{}", lines(.0))]
    Input(Vec<Problem>),
    /// Flags changed in the table since they were read: exit 2.
    #[error(
        "conflict: {} changed in the table since it was read (someone else wrote it); nothing was written for {}. \
         Run `flagctl diff` again, then re-apply.{}",
        flags.join(", "), if flags.len() == 1 { "it" } else { "them" }, written_note(written)
    )]
    Conflict {
        /// The flags whose condition failed.
        flags: Vec<String>,
        /// Flags written by earlier transactions of the same command.
        written: Vec<String>,
    },
    /// An AWS call failed: exit 2.
    #[error("AWS {operation} failed: {message}. Check the table names, the region, credentials and the network, then retry.{}", written_note(written))]
    Aws {
        /// The operation (`Scan`, `TransactWriteItems`, ...).
        operation: &'static str,
        /// The SDK's full error context.
        message: String,
        /// Flags written by earlier transactions of the same command.
        written: Vec<String>,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CtlError {
    /// 1 for wrong input, 2 for a conflict or an AWS failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Input(_) => 1,
            CtlError::Conflict { .. } | CtlError::Aws { .. } => 2,
        }
    }

    /// One problem, as an input error.
    pub(crate) fn input(file: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        CtlError::Input(vec![Problem::new(file, field, message)])
    }

    /// An AWS SDK failure, described by its chain of causes (the SDK's own `Display`
    /// says only "service error"; its `DisplayErrorContext` adds a page of debug output).
    pub(crate) fn aws<E>(operation: &'static str, err: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        CtlError::Aws { operation, message: causes(&err), written: Vec::new(), source: Box::new(err) }
    }
}

/// `error: cause: cause…`, each distinct message once.
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn lines(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

fn written_note(written: &[String]) -> String {
    if written.is_empty() {
        String::new()
    } else {
        format!(" Already written before this failure: {}.", written.join(", "))
    }
}

/// Runs one command, printing its output on stdout and any error on stderr; returns the
/// process exit code (0 ok, 1 wrong input, 2 conflict or AWS failure).
pub async fn run(cli: Cli) -> u8 {
    match commands::dispatch(cli.command).await {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("{err}");
            err.exit_code()
        }
    }
}
