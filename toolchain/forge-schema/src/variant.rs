//! Variants: overlays on a project that swap some recipes for others, and leave some
//! layers out of images, without touching the project's own definitions.
//!
//! A variant `NAME` lives in `variants/NAME/`: `variant.toml` (below) and `recipes/`,
//! whose recipes replace the project's recipes of the same name. A variant has its own
//! lockfile, `variants/NAME/lockfile.toml`. The platform's test variant (`local`) builds
//! the four images from artifacts a machine without the upstream release hosts can get
//! (OpenBao from PyPI, etcd from Debian), so CI can build and boot them; the real images'
//! definitions carry no test concerns.
//!
//! ```toml
//! description = "Built from artifacts CI can obtain"
//!
//! [image.vault]
//! without = ["vault-plugins-exoscale"]   # layers this variant leaves out, with a reason
//! reason = "the Exoscale plugins are only published on GitHub"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostics, SourceFile};
use crate::paths::check_name;

/// Directory of variants at the project root.
pub const VARIANTS_DIR: &str = "variants";
/// A variant's definition file inside its directory.
pub const VARIANT_FILE: &str = "variant.toml";

/// A parsed variant.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub description: String,
    /// Changes to images, by image name.
    pub images: BTreeMap<String, ImageChange>,
    pub file: SourceFile,
}

/// What a variant changes in one image.
#[derive(Debug, Clone)]
pub struct ImageChange {
    /// Layers left out (names of recipes the image lists).
    pub without: Vec<(String, Range<usize>)>,
    pub reason: String,
    pub span: Range<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVariant {
    description: String,
    #[serde(default)]
    image: BTreeMap<Spanned<String>, Spanned<RawImageChange>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImageChange {
    #[serde(default)]
    without: Vec<Spanned<String>>,
    #[serde(default)]
    reason: Option<String>,
}

impl Variant {
    pub fn parse(file: &SourceFile, name: &str) -> Result<Self, Diagnostics> {
        let raw: RawVariant = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut errors = Vec::new();
        let mut images = BTreeMap::new();
        for (image, change) in raw.image {
            if let Err(e) = check_name(image.get_ref()) {
                errors.push(file.error(image.span(), format!("invalid image name: {e}")));
            }
            let span = change.span();
            let change = change.into_inner();
            if !change.without.is_empty() && change.reason.is_none() {
                errors.push(
                    file.error(span.clone(), "leaving layers out needs a `reason`")
                        .with_help("say why the variant cannot have them, e.g. `reason = \"only published on GitHub\"`"),
                );
            }
            images.insert(
                image.get_ref().clone(),
                ImageChange {
                    without: change
                        .without
                        .iter()
                        .map(|w| (w.get_ref().clone(), w.span()))
                        .collect(),
                    reason: change.reason.unwrap_or_default(),
                    span,
                },
            );
        }
        if !errors.is_empty() {
            return Err(Diagnostics::from(errors));
        }
        Ok(Self {
            name: name.to_string(),
            description: raw.description,
            images,
            file: file.clone(),
        })
    }
}
