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

/// Component of the generated repository.
pub const COMPONENT: &str = "main";

/// Writes `dir/pool/*.deb` (hard links, or copies across file systems) and the index
/// `dir/dists/SUITE/{Release,main/binary-ARCH/Packages}`. The result is usable as
/// `deb [trusted=yes] copy:DIR SUITE main`. It carries the real suite's name because
/// installers decide things by it (mmdebstrap selects `Essential: yes` packages of the
/// named suite, and sets up merged /usr by release). (A flat repository would be simpler, but
/// installers that look for `Essential: yes` through apt's index targets skip flat ones.)
pub fn write(dir: &Path, suite: &str, arch: &str, debs: &[RepoDeb]) -> std::io::Result<()> {
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
        control.push("Filename", &format!("pool/{name}"));
        control.push("Size", &d.size.to_string());
        control.push("SHA256", &d.sha256.to_hex());
        packages.push_str(&control.render());
        packages.push('\n');
    }
    let dists = dir.join("dists").join(suite);
    let index = format!("{COMPONENT}/binary-{arch}/Packages");
    fs::create_dir_all(dists.join(format!("{COMPONENT}/binary-{arch}")))?;
    fs::write(dists.join(&index), &packages)?;
    let release = format!(
        "Origin: forge\nLabel: forge locked package set\nSuite: {suite}\nCodename: {suite}\nArchitectures: {arch}\nComponents: {COMPONENT}\nSHA256:\n {} {} {index}\n",
        Sha256Digest::of(packages.as_bytes()),
        packages.len()
    );
    fs::write(dists.join("Release"), release)
}
