//! Validated paths: destinations inside an image, and relative paths inside a source or project.

use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("`{0}` must be absolute (start with `/`)")]
    NotAbsolute(String),
    #[error("`{0}` must be relative (not start with `/`)")]
    NotRelative(String),
    #[error("`{0}` contains a `..` component; paths may not climb out of their root")]
    ParentComponent(String),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error("`{0}` names the root directory itself")]
    Root(String),
}

fn components(raw: &str) -> Result<Vec<&str>, PathError> {
    if raw.contains('\0') {
        return Err(PathError::Nul(raw.to_string()));
    }
    let mut out = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::ParentComponent(raw.to_string())),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// An absolute path inside an image (`/etc/hello.conf`), normalised: no `.`, `..`, empty
/// components or trailing slash. Stored without the leading slash, which is how layer
/// archives name entries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute(raw.to_string()));
        }
        let parts = components(raw)?;
        if parts.is_empty() {
            return Err(PathError::Root(raw.to_string()));
        }
        Ok(Self(parts.join("/")))
    }

    /// From an already relative archive-style path (`etc/x`), used when walking trees.
    pub fn from_relative(rel: &str) -> Result<Self, PathError> {
        let parts = components(rel)?;
        if parts.is_empty() {
            return Err(PathError::Root(rel.to_string()));
        }
        Ok(Self(parts.join("/")))
    }

    /// The path without its leading slash, as written in a layer archive.
    pub fn relative(&self) -> &str {
        &self.0
    }

    /// `self/child`.
    pub fn join(&self, child: &str) -> Result<Self, PathError> {
        Self::from_relative(&format!("{}/{}", self.0, child))
    }

    /// The parent directory, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<Self> {
        self.0.rsplit_once('/').map(|(p, _)| Self(p.to_string()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, n)| n)
    }

    /// All ancestors from the top (`etc`, `etc/systemd`, ...), excluding `self`.
    pub fn ancestors(&self) -> Vec<Self> {
        let mut out = Vec::new();
        let mut cur = self.parent();
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for ImagePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A relative path with no `..` (a member of an unpacked source, or a file of the project).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.starts_with('/') {
            return Err(PathError::NotRelative(raw.to_string()));
        }
        let parts = components(raw)?;
        Ok(Self(parts.join("/")))
    }

    /// `""` means the root itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "." } else { &self.0 })
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Names of recipes, sources, parameters: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("a name may not be empty".into()),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return Err(format!(
                "`{name}` must start with a lowercase letter or digit"
            ));
        }
        _ => {}
    }
    if name.len() > 64 {
        return Err(format!("`{name}` is longer than 64 characters"));
    }
    if let Some(c) = chars
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{name}` contains `{c}`; names use lowercase letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_normalise() {
        let p = ImagePath::parse("/etc//systemd/./system/").unwrap();
        assert_eq!(p.relative(), "etc/systemd/system");
        assert_eq!(p.to_string(), "/etc/systemd/system");
        assert_eq!(p.file_name(), "system");
        assert_eq!(
            p.ancestors()
                .iter()
                .map(|a| a.relative())
                .collect::<Vec<_>>(),
            ["etc", "etc/systemd"]
        );
        assert!(matches!(
            ImagePath::parse("etc"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            ImagePath::parse("/a/../b"),
            Err(PathError::ParentComponent(_))
        ));
        assert!(matches!(ImagePath::parse("/"), Err(PathError::Root(_))));
    }

    #[test]
    fn rel_paths() {
        assert_eq!(RelPath::parse("./bin/x").unwrap().as_str(), "bin/x");
        assert!(RelPath::parse(".").unwrap().is_root());
        assert!(RelPath::parse("/x").is_err());
        assert!(RelPath::parse("a/../../x").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("etcd-3.5_x").is_ok());
        assert!(check_name("Etcd").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
