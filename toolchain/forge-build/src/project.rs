//! A forge project on disk: a directory with `recipes/` (later also `images/`,
//! `manifests/`, `platform.toml`) and `lockfile.toml`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::image::Image;
use forge_schema::lockfile::{LOCKFILE_NAME, Lockfile};
use forge_schema::recipe::Recipe;
use forge_schema::variant::{VARIANT_FILE, VARIANTS_DIR, Variant};
use forge_schema::{Diagnostics, SourceFile, diag::did_you_mean};

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
    /// The variant loaded over the project, if any.
    pub variant: Option<Variant>,
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
            variant: None,
        })
    }

    /// Loads the project at `root` with variant `name` over it: the variant's recipes
    /// replace the project's recipes of the same name, its image changes apply, and its
    /// own lockfile is used.
    pub fn load_variant(root: &Path, name: &str) -> Result<Self, BuildError> {
        let mut project = Self::load(root)?;
        let dir = root.join(VARIANTS_DIR).join(name);
        let file_path = dir.join(VARIANT_FILE);
        if !file_path.is_file() {
            let known = variant_names(root);
            let hint = did_you_mean(name, known.iter().map(String::as_str))
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            return Err(BuildError::Target(format!(
                "no variant named `{name}` (no `{VARIANTS_DIR}/{name}/{VARIANT_FILE}`){hint}{}",
                if known.is_empty() {
                    String::new()
                } else {
                    format!("\nvariants of this project: {}", known.join(", "))
                }
            )));
        }
        let (file, _) = source_file(&format!("{VARIANTS_DIR}/{name}"), &file_path)?;
        let variant = Variant::parse(&file, name).map_err(BuildError::Diagnostics)?;
        let mut errors = Vec::new();
        let recipes_dir = format!("{VARIANTS_DIR}/{name}/{RECIPES_DIR}");
        for path in toml_files(&dir.join(RECIPES_DIR))? {
            let (file, stem) = source_file(&recipes_dir, &path)?;
            match Recipe::parse(&file, &stem) {
                Ok(r) if project.recipes.contains_key(&r.name) => {
                    project.recipes.insert(r.name.clone(), r);
                }
                Ok(r) => {
                    let hint = did_you_mean(&r.name, project.recipes.keys().map(String::as_str))
                        .map(|b| format!("did you mean `{b}`?"))
                        .unwrap_or_else(|| {
                            "a variant's recipes replace the project's recipes of the same name"
                                .into()
                        });
                    errors.push(
                        file.error(
                            0..0,
                            format!(
                                "variant recipe `{}` replaces no recipe of the project",
                                r.name
                            ),
                        )
                        .with_help(hint),
                    );
                }
                Err(d) => errors.extend(d.errors),
            }
        }
        for (image, change) in &variant.images {
            let names: Vec<String> = project.images.keys().cloned().collect();
            let Some(img) = project.images.get_mut(image) else {
                let mut e = variant.file.error(
                    change.span.clone(),
                    format!("variant changes image `{image}`, which the project does not have"),
                );
                if let Some(b) = did_you_mean(image, names.iter().map(String::as_str)) {
                    e = e.with_help(format!("did you mean `{b}`?"));
                }
                errors.push(e);
                continue;
            };
            for (layer, span) in &change.without {
                if !img.layers.contains(layer) {
                    let mut e = variant.file.error(
                        span.clone(),
                        format!("image `{image}` has no layer `{layer}` to leave out"),
                    );
                    if let Some(b) = did_you_mean(layer, img.layers.iter().map(String::as_str)) {
                        e = e.with_help(format!("did you mean `{b}`?"));
                    }
                    errors.push(e);
                }
            }
            img.layers
                .retain(|l| !change.without.iter().any(|(w, _)| w == l));
            img.layer_spans
                .retain(|(l, _)| !change.without.iter().any(|(w, _)| w == l));
            // A layer kept in the image must not need a layer the variant leaves out
            // (the image would take it back in as an input).
            for kept in &img.layers {
                let Some(r) = project.recipes.get(kept) else {
                    continue;
                };
                for (w, span) in &change.without {
                    if r.inputs.contains(w) {
                        errors.push(variant.file.error(
                            span.clone(),
                            format!("layer `{w}` of image `{image}` is an input of `{kept}`, which the image keeps"),
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(BuildError::Diagnostics(Diagnostics::from(errors)));
        }
        project.lockfile = read_lockfile(&dir.join(LOCKFILE_NAME))?;
        project.variant = Some(variant);
        Ok(project)
    }

    pub fn lockfile_path(&self) -> PathBuf {
        match &self.variant {
            Some(v) => self
                .root
                .join(VARIANTS_DIR)
                .join(&v.name)
                .join(LOCKFILE_NAME),
            None => self.root.join(LOCKFILE_NAME),
        }
    }

    /// The lockfile's path relative to the project root, for messages
    /// (`lockfile.toml`, or `variants/NAME/lockfile.toml`).
    pub fn lockfile_display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{VARIANTS_DIR}/{}/{LOCKFILE_NAME}", v.name),
            None => LOCKFILE_NAME.to_string(),
        }
    }
}

/// Names of the project's variants (directories of `variants/` with a `variant.toml`).
pub fn variant_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join(VARIANTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(VARIANT_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
