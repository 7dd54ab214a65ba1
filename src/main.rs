//! gatehouse binary: everything lives in the library (`gatehouse::cli`).

fn main() {
    std::process::exit(gatehouse::cli::main());
}
