//! `instream-peer`: see [`instream_agent::program`].

fn main() -> std::process::ExitCode {
    instream_agent::program::main()
}
