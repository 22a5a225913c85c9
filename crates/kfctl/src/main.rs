use std::process::ExitCode;

fn main() -> ExitCode {
    kfctl::cli::main()
}
