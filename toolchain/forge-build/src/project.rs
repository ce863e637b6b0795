//! A forge project on disk: a directory with `recipes/` (later also `images/`,
//! `manifests/`, `platform.toml`) and `lockfile.toml`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::image::Image;
use forge_schema::lockfile::{LOCKFILE_NAME, Lockfile};
use forge_schema::recipe::Recipe;
use forge_schema::{Diagnostics, SourceFile};

use crate::BuildError;

/// The directory that marks a project root.
pub const RECIPES_DIR: &str = "recipes";
/// Image definitions.
pub const IMAGES_DIR: &str = "images";

/// A loaded project: every recipe parsed and validated, and the lockfile if there is one.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub recipes: BTreeMap<String, Recipe>,
    pub images: BTreeMap<String, Image>,
    pub lockfile: Option<Lockfile>,
}

/// `*.toml` files of a directory, sorted (none if it does not exist).
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BuildError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads a file as a [`SourceFile`] named `DIR/FILE` and returns it with its stem.
fn source_file(dir_name: &str, path: &Path) -> Result<(SourceFile, String), BuildError> {
    let text = fs::read_to_string(path).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let display = format!(
        "{dir_name}/{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((SourceFile::new(display, text), stem))
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
        let mut recipes = BTreeMap::new();
        let mut images = BTreeMap::new();
        let mut errors = Vec::new();
        for path in toml_files(&root.join(RECIPES_DIR))? {
            let (file, stem) = source_file(RECIPES_DIR, &path)?;
            match Recipe::parse(&file, &stem) {
                Ok(r) => {
                    recipes.insert(r.name.clone(), r);
                }
                Err(d) => errors.extend(d.errors),
            }
        }
        for path in toml_files(&root.join(IMAGES_DIR))? {
            let (file, stem) = source_file(IMAGES_DIR, &path)?;
            match Image::parse(&file, &stem) {
                Ok(i) => {
                    images.insert(i.name.clone(), i);
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
            images,
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
