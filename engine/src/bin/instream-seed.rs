//! `instream-seed`: see [`instream_engine::programs::seed`].

fn main() -> std::process::ExitCode {
    instream_engine::programs::seed::main()
}
