//! `tandem`: the client.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tandem::allocator::tune();
    std::process::ExitCode::from(tandem::cli::main())
}
