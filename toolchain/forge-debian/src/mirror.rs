//! Which Debian mirror to use: `--debian-mirror` / `FORGE_DEBIAN_MIRROR`, else the mirror
//! the host's apt is configured with. forge never writes a mirror host name of its own.

use std::fs;
use std::path::Path;

use crate::control;

/// One `deb` source of the host's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// Reads `sources.list`, `sources.list.d/*.list` and `sources.list.d/*.sources` under
/// `etc_apt` (normally `/etc/apt`), in apt's order.
pub fn host_sources(etc_apt: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    if let Ok(text) = fs::read_to_string(etc_apt.join("sources.list")) {
        out.extend(parse_list(&text));
    }
    let dir = etc_apt.join("sources.list.d");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_list(&text)),
            Some("sources") => out.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    out
}

fn parse_list(text: &str) -> Vec<AptSource> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let rest = l.strip_prefix("deb ")?.trim();
            // Skip an options block: deb [arch=amd64 signed-by=...] URI suite comp...
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(AptSource {
                uri,
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

fn parse_deb822(text: &str) -> Vec<AptSource> {
    let Ok(paragraphs) = control::parse(text) else {
        return Vec::new();
    };
    let words = |v: Option<&str>| -> Vec<String> {
        v.unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    paragraphs
        .iter()
        .filter(|p| words(p.get("Types")).iter().any(|t| t == "deb"))
        .filter(|p| p.get("Enabled").is_none_or(|e| e != "no"))
        .flat_map(|p| {
            let suites = words(p.get("Suites"));
            let components = words(p.get("Components"));
            words(p.get("URIs")).into_iter().map(move |uri| AptSource {
                uri,
                suites: suites.clone(),
                components: components.clone(),
            })
        })
        .collect()
}

/// The archive root URL for `suite`: the first host source that lists it (without a
/// trailing slash).
pub fn mirror_for(sources: &[AptSource], suite: &str) -> Option<String> {
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        fs::write(
            dir.path().join("sources.list"),
            "# comment\ndeb [arch=amd64] http://mirror.example/debian-security bookworm-security main\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/\nSuites: bookworm\n",
        )
        .unwrap();
        let s = host_sources(dir.path());
        assert_eq!(s.len(), 2);
        assert_eq!(
            mirror_for(&s, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_for(&s, "bookworm-security").as_deref(),
            Some("http://mirror.example/debian-security")
        );
        assert_eq!(mirror_for(&s, "trixie"), None);
    }
}
