//! The `nodeimg` command; see `nodeimg --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main_with(std::env::args_os())
}
