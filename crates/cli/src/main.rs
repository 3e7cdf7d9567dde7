//! The `nodeimg` command; see `nodeimg --help`.

mod cache;
mod cli;
mod generate;
mod progress;
mod sbom;
mod sign;

fn main() -> std::process::ExitCode {
    cli::main_with(std::env::args_os())
}
