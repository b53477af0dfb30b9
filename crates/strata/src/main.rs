//! `strata`: see `strata --help`.

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`strata report … | head`) as Unix tools do,
    // instead of Rust's default of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    strata::cli::main()
}
