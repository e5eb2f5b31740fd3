//! `instream-peer`: see [`instream_engine::programs::peer`].

fn main() -> std::process::ExitCode {
    instream_engine::programs::peer::main()
}
