//! The command line of `flagctl` (clap derive): every sub-command, its arguments and its
//! help text. Nothing here does any work; [`super::run`] dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// flagctl — author flags for flagfn: validate flag files, see and apply their changes to
/// the DynamoDB table (conditional, audited), flip the kill switch, read the audit
/// history, and explain why a user got what they got.
///
/// Flag files: a directory with one flag per file (`<key>.json`, `<key>.yaml` or
/// `<key>.yml`), or one file holding `{"flags": [...]}` (JSON or YAML). AWS settings come
/// from the usual chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...).
///
/// Where the tables are global tables, writes go to one region only: set
/// `FLAGCTL_WRITE_REGION` (the stack output `WriteRegion`) and `apply` and `set` refuse
/// to write anywhere else.
///
/// Exit codes: 0 ok; 1 the input is wrong (every problem listed as `file: field:
/// message`); 2 a conflict (someone else changed a flag), an AWS failure, an unreachable
/// region, or a write outside the write region.
#[derive(Debug, Parser)]
#[command(name = "flagctl", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// The sub-command.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check flag files strictly, offline: every malformation and every item the function
    /// would only read leniently (an operator Python did not know or `negate` inside
    /// `targeting_rules`, an allocation sum off 1, ...) is an error; keys that differ from
    /// their file name, unknown fields and prerequisites naming flags not in the set are
    /// warnings. With `--table`, check every item of a live table the same way instead,
    /// to find the items answered leniently before anyone edits them.
    Validate {
        /// A flags directory or a single flags file.
        #[arg(required_unless_present = "table", conflicts_with = "table")]
        path: Option<PathBuf>,
        /// Check the items of this DynamoDB table instead of files (without a value:
        /// `FLAGS_TABLE`). Reads only (a consistent `Scan`).
        #[arg(long, value_name = "TABLE", num_args = 0..=1, value_parser = table_name)]
        table: Option<Option<String>>,
        /// The table `--table` reads when given without a value.
        #[arg(long = "default-table", env = "FLAGS_TABLE", hide = true, value_parser = table_name)]
        default_table: Option<String>,
    },
    /// Show what `apply` would change, flag by flag and field by field.
    Diff {
        /// A flags directory or a single flags file.
        path: PathBuf,
        /// Also show the flags `apply --prune` would delete (in the table, not in the files).
        #[arg(long)]
        prune: bool,
        /// The table to compare with.
        #[command(flatten)]
        table: TableArgs,
    },
    /// Validate the files, then write the changed flags: each write is conditional on the
    /// version it was compared with, bumps `version`, and writes its audit record in the
    /// same transaction. A concurrent change stops with exit 2 naming the flag.
    Apply {
        /// A flags directory or a single flags file.
        path: PathBuf,
        /// Show the changes and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete flags that are in the table but not in the files (audited too).
        #[arg(long)]
        prune: bool,
        /// Why: kept in every audit record this apply writes.
        #[arg(long, short = 'm', value_name = "TEXT")]
        message: Option<String>,
        /// The tables to write.
        #[command(flatten)]
        tables: AuditedTableArgs,
    },
    /// Write the table as flag files into DIR (which must be empty or absent), one
    /// `<key>.json` (or `.yaml`) per flag; `export` then `diff` shows no change.
    Export {
        /// The directory to create.
        dir: PathBuf,
        /// File format of the flags.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// The table to read.
        #[command(flatten)]
        table: TableArgs,
    },
    /// Print one flag as stored (JSON), with its version and last change.
    Get {
        /// The flag key.
        key: String,
        /// The table to read.
        #[command(flatten)]
        table: TableArgs,
    },
    /// List the flags: key, enabled, rollout, variants, version, last update.
    List {
        /// The table to read.
        #[command(flatten)]
        table: TableArgs,
    },
    /// The kill switch in one command: `flagctl set KEY enabled=false` (or
    /// `rollout_percentage=N`), conditional on the current version, audited.
    Set {
        /// The flag key.
        key: String,
        /// `enabled=true|false` and/or `rollout_percentage=N` (0–100).
        #[arg(required = true, value_name = "FIELD=VALUE")]
        assignments: Vec<String>,
        /// Why: kept in the audit record.
        #[arg(long, short = 'm', value_name = "TEXT")]
        message: Option<String>,
        /// The tables to write.
        #[command(flatten)]
        tables: AuditedTableArgs,
    },
    /// The audit records of one flag, newest first: when, who (the caller's AWS
    /// identity), version before → after, the field-level change and the message.
    History {
        /// The flag key.
        key: String,
        /// Show at most this many records.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// The audit table to read.
        #[arg(long = "audit-table", env = "FLAGS_AUDIT_TABLE", value_name = "TABLE", value_parser = table_name)]
        audit_table: String,
    },
    /// The decision path of one flag for one user: each step of the evaluation order, each
    /// clause with the attribute value it saw, the rollout bucket and threshold, the variant point and
    /// the cumulative allocations.
    Explain {
        /// The flag key.
        key: String,
        /// The user id (OFREP `targetingKey`).
        #[arg(long)]
        user: String,
        /// The evaluation context, a JSON object.
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        /// Read the flags from files (a directory or a flags file) instead of the table.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The table to read when no `--file` is given.
        #[arg(long, env = "FLAGS_TABLE", value_name = "TABLE", value_parser = table_name)]
        table: Option<String>,
        /// For a flagd flag: the `fractional` bucketing to explain, as the function's
        /// `FLAGD_FRACTIONAL` sets it (`v2` or `v3`).
        #[arg(long, env = "FLAGD_FRACTIONAL", default_value = "v2", value_parser = ["v2", "v3"])]
        fractional: String,
    },
}

impl Command {
    /// Whether the command writes to the table (`apply` without `--dry-run`, `set`).
    pub fn writes(&self) -> bool {
        matches!(self, Command::Apply { dry_run: false, .. } | Command::Set { .. })
    }
}

/// The flags table.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// The DynamoDB flags table.
    #[arg(long, env = "FLAGS_TABLE", value_name = "TABLE", value_parser = table_name)]
    pub table: String,
}

/// The flags table and its audit table.
#[derive(Debug, Args)]
pub struct AuditedTableArgs {
    /// The DynamoDB flags table.
    #[arg(long, env = "FLAGS_TABLE", value_name = "TABLE", value_parser = table_name)]
    pub table: String,
    /// The DynamoDB audit table (partition key `key`, sort key `at`).
    #[arg(long = "audit-table", env = "FLAGS_AUDIT_TABLE", value_name = "TABLE", value_parser = table_name)]
    pub audit_table: String,
    /// The change-manifest table (partition key `id`): bumped in the same transaction,
    /// so warm environments see the change within `FRESHNESS_SECONDS` even where the
    /// flags table has no stream.
    #[arg(long = "manifest-table", env = "MANIFEST_TABLE", value_name = "TABLE", value_parser = table_name)]
    pub manifest_table: Option<String>,
    /// The one region flags are written in (the stack output `WriteRegion`), where the
    /// tables are global tables: a write pointed at another region (`AWS_REGION`) is
    /// refused before any call. Unset: any region (single-region tables).
    #[arg(long = "write-region", env = "FLAGCTL_WRITE_REGION", value_name = "REGION", value_parser = region_name)]
    pub write_region: Option<String>,
}

/// File format for `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `<key>.json`, pretty-printed.
    Json,
    /// `<key>.yaml`.
    Yaml,
}

/// An AWS region name such as `us-east-1` or `ap-southeast-2`: letters, then one or more
/// `-word`s, then `-digits`.
fn region_name(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('-').collect();
    let word = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts.first().is_some_and(|p| p.len() == 2 && word(p))
        && parts[1..parts.len() - 1].iter().all(word)
        && parts.last().is_some_and(|p| !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(name.to_owned())
    } else {
        Err("a region name such as `us-east-1` or `eu-west-1`".to_owned())
    }
}

/// A DynamoDB table name: 3–255 characters of `[A-Za-z0-9_.-]` (DynamoDB's own rule),
/// checked here so a typo fails before any call.
fn table_name(name: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if (3..=255).contains(&name.len()) && name.chars().all(allowed) {
        Ok(name.to_owned())
    } else {
        Err("a DynamoDB table name is 3–255 characters of A–Z, a–z, 0–9, `_`, `-` and `.`".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_are_checked() {
        for good in ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "eu-central-2"] {
            assert_eq!(region_name(good).as_deref(), Ok(good));
        }
        for bad in ["", "us", "us-east", "US-EAST-1", "us-east-1a", "us--1", "useast-1", "us-east-123", "us east 1"] {
            assert!(region_name(bad).is_err(), "{bad:?}");
        }
    }
}
