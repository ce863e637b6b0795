//! The `forge` binary; everything lives in the library so tests can reach it.

fn main() -> std::process::ExitCode {
    forge::run()
}
