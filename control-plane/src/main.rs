//! `warden` binary: the command line (`cli/`, one module per verb, `anyhow` at this
//! edge) over the `warden` library. Wiring only; every command lives in its own module.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
