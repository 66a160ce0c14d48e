//! `facegate`: the command-line tool (embeddings, model bundles, benchmarks,
//! evaluation, the daemon client). The commands live in `facegate::cli`.

fn main() -> std::process::ExitCode {
    facegate::cli::main()
}
