//! `tandem`: the client.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(tandem::cli::main())
}
