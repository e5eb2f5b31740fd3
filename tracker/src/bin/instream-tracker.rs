//! `instream-tracker`: see [`instream_tracker::program`].

fn main() -> std::process::ExitCode {
    instream_tracker::program::main()
}
