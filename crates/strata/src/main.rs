//! `strata`: see `strata --help`.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
