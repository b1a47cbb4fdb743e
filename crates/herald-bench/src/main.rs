//! The `herald-bench` binary: see the library documentation and
//! `herald-bench --help`.

fn main() -> std::process::ExitCode {
    herald_bench::cli::main()
}
