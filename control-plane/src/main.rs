//! `warden` binary: parses the command line and hands off to `warden::cli`.
//! Wiring only; every command lives in its own module under `cli/`.

use std::process::ExitCode;

fn main() -> ExitCode {
    warden::cli::main()
}
