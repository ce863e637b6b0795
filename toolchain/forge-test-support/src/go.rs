//! The machine's Go module proxy, for tests that fetch real modules.

/// The first proxy URL of `go env GOPROXY`: the machine's configuration (tests never write
/// a proxy host). Panics with what to do when Go or a proxy is missing.
pub fn proxy() -> String {
    let out = match std::process::Command::new("go")
        .args(["env", "GOPROXY"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            panic!("`go env GOPROXY`: {e}; tests read the Go module proxy from Go's configuration")
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text
        .split([',', '|'])
        .map(str::trim)
        .find(|p| p.starts_with("http"))
    {
        Some(p) => p.trim_end_matches('/').to_string(),
        None => panic!("no proxy URL in GOPROXY={text}"),
    }
}
