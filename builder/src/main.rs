//! The `nodeimg` command; see `nodeimg --help`.

fn main() -> std::process::ExitCode {
    nodeimg::cli::main_with(std::env::args_os())
}
