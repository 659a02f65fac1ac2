//! `tandem-agent`: the far side of a sync. Serves one root over stdin/stdout with the
//! tandem protocol; started by the client (over a pipe or SSH), never by hand.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tandem::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::ExitCode::from(tandem::wire::agent::main_with_args(&args))
}
