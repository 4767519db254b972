//! The `ferrocat` command-line tool: parses the command line and runs one subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocat: cannot start the async runtime: {e}");
            return ExitCode::from(ferrocat::cli::Exit::OsErr as u8);
        }
    };
    runtime.block_on(ferrocat::cli::run_with(
        std::env::args_os(),
        Box::new(std::io::stdout()),
    ))
}
