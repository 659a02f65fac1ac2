//! `tandem-agent`: the far side of a sync. It will serve one root over stdin/stdout with
//! the tandem protocol; for now it only reports its version.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("-V") => {
            println!("tandem-agent {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("tandem-agent: the protocol server is not built yet; run 'tandem' instead");
            std::process::ExitCode::from(128)
        }
    }
}
