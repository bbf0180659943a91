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

use aws_sdk_dynamodb::error::SdkError;

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
    /// The region could not be reached (no connection, or no answer within the
    /// timeouts): exit 2. Says only that, never the SDK's or a proxy's error text.
    #[error("{}", unreachable_message(region, operation, why, *writing, written))]
    Unreachable {
        /// The region the call went to (`AWS_REGION`).
        region: String,
        /// The operation that failed (`Scan`, `TransactWriteItems`, ...).
        operation: &'static str,
        /// What happened, in flagctl's words.
        why: &'static str,
        /// Whether the command was going to write (`apply`, `set`).
        writing: bool,
        /// Flags written by earlier transactions of the same command.
        written: Vec<String>,
        /// The SDK error, for `source()` only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A write command pointed at a region other than the write region: exit 2, before
    /// any call.
    #[error(
        "flags are written in {home} only (FLAGCTL_WRITE_REGION), and this is {here}: writes refused; nothing was \
         written. Global tables settle writes made in two regions by last writer wins, so flagctl's conditional \
         writes are only safe in one; run it again with AWS_REGION={home}."
    )]
    WrongRegion {
        /// The region flagctl was pointed at (`AWS_REGION`; `none` when unset).
        here: String,
        /// The write region.
        home: String,
    },
}

impl CtlError {
    /// 1 for wrong input, 2 for a conflict, an AWS failure, an unreachable or wrong region.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Input(_) => 1,
            CtlError::Conflict { .. }
            | CtlError::Aws { .. }
            | CtlError::Unreachable { .. }
            | CtlError::WrongRegion { .. } => 2,
        }
    }

    /// A failure of a call to `region`: [`CtlError::Unreachable`] when the request
    /// never got an answer (no connection, or the timeouts ran out), else
    /// [`CtlError::aws`].
    pub(crate) fn call<E, R>(operation: &'static str, region: &str, err: SdkError<E, R>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match unanswered(&err) {
            Some(why) => CtlError::Unreachable {
                region: region.to_owned(),
                operation,
                why,
                writing: false,
                written: Vec::new(),
                source: Box::new(err),
            },
            None => CtlError::aws(operation, err),
        }
    }

    /// The same error, said of a command that writes (`writing`) or only reads.
    fn in_command(self, writes: bool) -> Self {
        match self {
            CtlError::Unreachable { region, operation, why, written, source, .. } => {
                CtlError::Unreachable { region, operation, why, writing: writes, written, source }
            }
            other => other,
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

/// Why a call got no answer, if it got none: the connection failed or timed out, or an
/// attempt or the whole call ran out of time. `None` for everything else (the service
/// answered, even with an error).
fn unanswered<E, R>(err: &SdkError<E, R>) -> Option<&'static str> {
    match err {
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Some("no connection within the timeout"),
        SdkError::DispatchFailure(failure) if failure.is_io() => Some("connection failed"),
        SdkError::TimeoutError(_) => Some("no answer within the timeout"),
        _ => None,
    }
}

fn unreachable_message(region: &str, operation: &str, why: &str, writing: bool, written: &[String]) -> String {
    let head = format!("region {region} unreachable ({why}, {operation})");
    let serving = "flags keep serving from replicas and caches";
    if !writing {
        return format!("{head}: nothing was read; {serving}. Check the region and the network, then retry.");
    }
    let unsure = operation == "TransactWriteItems";
    let outcome = match (unsure, written.is_empty()) {
        (false, true) => "writes refused; nothing was written".to_owned(),
        (false, false) => format!("writes refused; written before the failure: {}", written.join(", ")),
        (true, _) => format!(
            "writes refused; the last transaction may or may not have been written{} (run `flagctl diff` once the \
             region answers)",
            if written.is_empty() { String::new() } else { format!(", and before it: {}", written.join(", ")) }
        ),
    };
    format!("{head}: {outcome}; {serving}. Check the region and the network, then retry.")
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
/// process exit code (0 ok, 1 wrong input, 2 conflict, AWS failure, unreachable or
/// wrong region).
pub async fn run(cli: Cli) -> u8 {
    let writes = cli.command.writes();
    match commands::dispatch(cli.command).await.map_err(|e| e.in_command(writes)) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("{err}");
            err.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an unreachable region's message promises, by command and by where it failed:
    /// "nothing was written" only when no transaction had been sent.
    #[test]
    fn an_unreachable_region_says_what_was_and_was_not_written() {
        let keys = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases = [
            (
                "Scan",
                false,
                keys(&[]),
                "region us-east-1 unreachable (connection failed, Scan): nothing was read; flags keep serving from \
                 replicas and caches. Check the region and the network, then retry.",
            ),
            (
                "GetItem",
                true,
                keys(&[]),
                "region us-east-1 unreachable (connection failed, GetItem): writes refused; nothing was written; \
                 flags keep serving from replicas and caches. Check the region and the network, then retry.",
            ),
            (
                "GetItem (change manifest)",
                true,
                keys(&["a", "b"]),
                "region us-east-1 unreachable (connection failed, GetItem (change manifest)): writes refused; \
                 written before the failure: a, b; flags keep serving from replicas and caches. Check the region \
                 and the network, then retry.",
            ),
            (
                "TransactWriteItems",
                true,
                keys(&["a"]),
                "region us-east-1 unreachable (connection failed, TransactWriteItems): writes refused; the last \
                 transaction may or may not have been written, and before it: a (run `flagctl diff` once the \
                 region answers); flags keep serving from replicas and caches. Check the region and the network, \
                 then retry.",
            ),
        ];
        for (operation, writing, written, expected) in cases {
            let err = CtlError::Unreachable {
                region: "us-east-1".into(),
                operation,
                why: "connection failed",
                writing,
                written,
                source: "refused".into(),
            };
            assert_eq!(err.to_string(), expected);
            assert_eq!(err.exit_code(), 2);
        }
    }
}
