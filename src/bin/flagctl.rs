//! `flagctl`: the command-line tool for authoring flags (see `flagctl --help` and the
//! docs/flagctl.md). Thin on purpose: the work is in `flagfn::ctl`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flagfn::ctl::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FLAGCTL_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    // One thread is plenty for a command-line tool waiting on a few calls.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(runtime.block_on(flagfn::ctl::run(cli)))
}
