//! A forge project on disk: a directory with `recipes/` (later also `images/`,
//! `manifests/`, `platform.toml`) and `lockfile.toml`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::lockfile::{LOCKFILE_NAME, Lockfile};
use forge_schema::recipe::Recipe;
use forge_schema::{Diagnostics, SourceFile};

use crate::BuildError;

/// The directory that marks a project root.
pub const RECIPES_DIR: &str = "recipes";

/// A loaded project: every recipe parsed and validated, and the lockfile if there is one.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub recipes: BTreeMap<String, Recipe>,
    pub lockfile: Option<Lockfile>,
}

impl Project {
    /// The nearest ancestor of `start` (itself included) that holds `recipes/`.
    pub fn discover(start: &Path) -> Result<PathBuf, BuildError> {
        let start = fs::canonicalize(start).map_err(|e| BuildError::Io {
            path: start.to_path_buf(),
            source: e,
        })?;
        let mut cur = Some(start.as_path());
        while let Some(dir) = cur {
            if dir.join(RECIPES_DIR).is_dir() {
                return Ok(dir.to_path_buf());
            }
            cur = dir.parent();
        }
        Err(BuildError::NoProject { start })
    }

    /// Loads the project at `root`. Every recipe file is read, and all their problems are
    /// reported together.
    pub fn load(root: &Path) -> Result<Self, BuildError> {
        let dir = root.join(RECIPES_DIR);
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|source| BuildError::Io {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        paths.sort();
        let mut recipes = BTreeMap::new();
        let mut errors = Vec::new();
        for path in paths {
            let text = fs::read_to_string(&path).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            let display = format!(
                "{RECIPES_DIR}/{}",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match Recipe::parse(&SourceFile::new(display, text), &stem) {
                Ok(r) => {
                    recipes.insert(r.name.clone(), r);
                }
                Err(d) => errors.extend(d.errors),
            }
        }
        if !errors.is_empty() {
            return Err(BuildError::Diagnostics(Diagnostics::from(errors)));
        }
        let lockfile = read_lockfile(&root.join(LOCKFILE_NAME))?;
        Ok(Self {
            root: root.to_path_buf(),
            recipes,
            lockfile,
        })
    }

    pub fn lockfile_path(&self) -> PathBuf {
        self.root.join(LOCKFILE_NAME)
    }
}

/// Reads and parses a lockfile; `None` if it does not exist.
pub fn read_lockfile(path: &Path) -> Result<Option<Lockfile>, BuildError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let file = SourceFile::new(LOCKFILE_NAME, text);
            Ok(Some(
                Lockfile::parse(&file).map_err(BuildError::Diagnostics)?,
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BuildError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
