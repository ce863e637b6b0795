//! Directories as content: the deterministic tar encoding of a host directory, which is
//! how directory path sources are hashed and stored.

use std::path::Path;

use forge_schema::{Hasher, Sha256Digest};

use crate::{LayerError, LayerTree};

/// The tree of a host directory: entries sorted, times zero, owners zero, modes normalised
/// (see [`LayerTree::add_host_tree`]).
pub fn directory_tree(dir: &Path) -> Result<LayerTree, LayerError> {
    let mut tree = LayerTree::new();
    tree.add_host_tree(dir, None, 0, 0, "directory source")?;
    Ok(tree)
}

/// SHA-256 of a directory's deterministic tar encoding.
pub fn directory_digest(dir: &Path) -> Result<Sha256Digest, LayerError> {
    let (sha, _, _) = directory_tree(dir)?.write_tar(&mut Hasher::new(), 0)?;
    Ok(sha)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_digest_depends_on_content_and_exec_bits_not_on_times_or_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir(a.path().join("d")).unwrap();
        std::fs::write(a.path().join("d/x"), b"x").unwrap();
        std::fs::write(a.path().join("y"), b"y").unwrap();
        // The same tree, made in the other order, with other modes of the same kind.
        std::fs::write(b.path().join("y"), b"y").unwrap();
        std::fs::create_dir(b.path().join("d")).unwrap();
        std::fs::write(b.path().join("d/x"), b"x").unwrap();
        std::fs::set_permissions(b.path().join("y"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let da = directory_digest(a.path()).unwrap();
        assert_eq!(da, directory_digest(b.path()).unwrap());
        std::fs::set_permissions(b.path().join("y"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        assert_ne!(
            da,
            directory_digest(b.path()).unwrap(),
            "an exec bit is content"
        );
        std::fs::write(b.path().join("d/x"), b"z").unwrap();
        assert_ne!(da, directory_digest(b.path()).unwrap());
    }
}
