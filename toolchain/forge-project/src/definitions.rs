//! What a project defines: its recipes (`recipes/*.toml`) and images (`images/*.toml`),
//! with a variant (`variants/NAME/`) loaded over them. Every file is read and all their
//! problems are reported together.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::image::Image;
use forge_schema::recipe::Recipe;
use forge_schema::variant::{VARIANT_FILE, VARIANTS_DIR, Variant};
use forge_schema::{Diagnostics, SourceFile, TomlError, diag::did_you_mean};

use crate::ProjectError;

/// The directory of recipe definitions; it also marks a project root.
pub const RECIPES_DIR: &str = "recipes";
/// The directory of image definitions.
pub const IMAGES_DIR: &str = "images";

/// The recipes and images of a project, with its variant applied.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub recipes: BTreeMap<String, Recipe>,
    pub images: BTreeMap<String, Image>,
    /// The variant loaded over the project, if any.
    pub variant: Option<Variant>,
}

/// `*.toml` files of a directory, sorted (none if it does not exist).
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ProjectError::io(dir, source)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads a file as a [`SourceFile`] named `DIR/FILE` and returns it with its stem.
fn source_file(dir_name: &str, path: &Path) -> Result<(SourceFile, String), ProjectError> {
    let text = fs::read_to_string(path).map_err(|source| ProjectError::io(path, source))?;
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

impl Definitions {
    /// Loads the recipes and images at `root`, with variant `variant` over them.
    pub fn load(root: &Path, variant: Option<&str>) -> Result<Self, ProjectError> {
        let mut defs = Self::load_base(root)?;
        if let Some(name) = variant {
            defs.apply_variant(root, name)?;
        }
        Ok(defs)
    }

    fn load_base(root: &Path) -> Result<Self, ProjectError> {
        let mut defs = Definitions::default();
        let mut errors = Vec::new();
        for path in toml_files(&root.join(RECIPES_DIR))? {
            let (file, stem) = source_file(RECIPES_DIR, &path)?;
            match Recipe::parse(&file, &stem) {
                Ok(r) => {
                    defs.recipes.insert(r.name.clone(), r);
                }
                Err(d) => errors.extend(d.errors),
            }
        }
        for path in toml_files(&root.join(IMAGES_DIR))? {
            let (file, stem) = source_file(IMAGES_DIR, &path)?;
            match Image::parse(&file, &stem) {
                Ok(i) => {
                    defs.images.insert(i.name.clone(), i);
                }
                Err(d) => errors.extend(d.errors),
            }
        }
        diagnostics(errors)?;
        Ok(defs)
    }

    /// The variant's recipes replace the project's recipes of the same name, and its
    /// image changes apply.
    fn apply_variant(&mut self, root: &Path, name: &str) -> Result<(), ProjectError> {
        let dir = root.join(VARIANTS_DIR).join(name);
        let file_path = dir.join(VARIANT_FILE);
        let (file, _) = source_file(&format!("{VARIANTS_DIR}/{name}"), &file_path)?;
        let variant = Variant::parse(&file, name).map_err(ProjectError::Diagnostics)?;
        let mut errors = Vec::new();
        let recipes_dir = format!("{VARIANTS_DIR}/{name}/{RECIPES_DIR}");
        for path in toml_files(&dir.join(RECIPES_DIR))? {
            let (file, stem) = source_file(&recipes_dir, &path)?;
            match Recipe::parse(&file, &stem) {
                Ok(r) if self.recipes.contains_key(&r.name) => {
                    self.recipes.insert(r.name.clone(), r);
                }
                Ok(r) => {
                    let hint = did_you_mean(&r.name, self.recipes.keys().map(String::as_str))
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
            let names: Vec<String> = self.images.keys().cloned().collect();
            let Some(img) = self.images.get_mut(image) else {
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
                let Some(r) = self.recipes.get(kept) else {
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
        diagnostics(errors)?;
        self.variant = Some(variant);
        Ok(())
    }
}

fn diagnostics(errors: Vec<TomlError>) -> Result<(), ProjectError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ProjectError::Diagnostics(Diagnostics::from(errors)))
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

/// Errors unless `variants/NAME/variant.toml` exists, with a "did you mean".
pub(crate) fn check_variant(root: &Path, name: &str) -> Result<(), ProjectError> {
    if root
        .join(VARIANTS_DIR)
        .join(name)
        .join(VARIANT_FILE)
        .is_file()
    {
        return Ok(());
    }
    let known = variant_names(root);
    let hint = did_you_mean(name, known.iter().map(String::as_str))
        .map(|b| format!("; did you mean `{b}`?"))
        .unwrap_or_default();
    Err(ProjectError::UnknownVariant {
        name: name.to_string(),
        message: format!(
            "no variant named `{name}` (no `{VARIANTS_DIR}/{name}/{VARIANT_FILE}`){hint}{}",
            if known.is_empty() {
                String::new()
            } else {
                format!("\nvariants of this project: {}", known.join(", "))
            }
        ),
    })
}
