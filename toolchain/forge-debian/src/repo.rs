//! A local, flat apt repository made from locked .deb files, so the package installer
//! (mmdebstrap) sees exactly the locked set and nothing else, offline.

use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::Sha256Digest;

use crate::deb;

/// One .deb to put in the repository.
#[derive(Debug, Clone)]
pub struct RepoDeb {
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// Writes `dir/pool/*.deb` (hard links, or copies across file systems), `dir/Packages`
/// and `dir/Release`. The result is usable as `deb [trusted=yes] file:DIR ./`.
pub fn write(dir: &Path, debs: &[RepoDeb]) -> std::io::Result<()> {
    let pool = dir.join("pool");
    fs::create_dir_all(&pool)?;
    let mut packages = String::new();
    for d in debs {
        let mut control = deb::control(fs::File::open(&d.path)?)?;
        let name = format!(
            "{}_{}_{}.deb",
            control.get("Package").unwrap_or("unknown"),
            control.get("Version").unwrap_or("0").replace(':', "%3a"),
            control.get("Architecture").unwrap_or("all")
        );
        let dest = pool.join(&name);
        if !dest.exists() && fs::hard_link(&d.path, &dest).is_err() {
            fs::copy(&d.path, &dest)?;
        }
        control.push("Filename", &format!("./pool/{name}"));
        control.push("Size", &d.size.to_string());
        control.push("SHA256", &d.sha256.to_hex());
        packages.push_str(&control.render());
        packages.push('\n');
    }
    fs::write(dir.join("Packages"), &packages)?;
    let release = format!(
        "Origin: forge\nLabel: forge locked package set\nSuite: forge\nCodename: forge\nSHA256:\n {} {} Packages\n",
        Sha256Digest::of(packages.as_bytes()),
        packages.len()
    );
    fs::write(dir.join("Release"), release)
}
