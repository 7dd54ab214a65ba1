//! gatehouse binary: everything lives in the library (`gatehouse::cli`).

/// mimalloc: fewer instructions per allocation than glibc's malloc on the
/// ~70 allocations of each proxied request (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(gatehouse::cli::main());
}
