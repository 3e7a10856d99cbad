//! The `allmende` binary: a thin shell over [`allmende::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match allmende::cli::run(allmende::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("allmende: {err:#}");
            ExitCode::FAILURE
        }
    }
}
