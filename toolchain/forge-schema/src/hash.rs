//! Recipe hashes: input addressing, like a Nix derivation's output path.
//!
//! The hash is SHA-256 over a canonical encoding of the *normalised* recipe (never its TOML
//! text), the content hashes of its sources, the hashes of its input recipes, the resolved
//! parameter values, the build's SOURCE_DATE_EPOCH and a builder version tag. The encoding
//! is JSON produced by serde from the model types: struct fields in declaration order,
//! maps sorted, no whitespace, strings escaped by serde_json's fixed rules. Spans, file
//! names, comments, key order and layout never reach it.
//!
//! What is deliberately left out: source URLs and `file-name` (mirrors can change without
//! changing the bytes, which the sha256 already fixes, as in Nix fixed-output derivations)
//! and where a path source lives on disk (only its content counts).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::{Integrity, Sha256Digest, Sha512Digest};
use crate::oci::Platform;
use crate::recipe::{Action, GoModuleSource, ParamValue, Parameter, Recipe, SourceKind, Unpack};

/// Version tag of the layer builder. Bump it whenever a change to forge changes the bytes of
/// any layer built from the same recipe: every recipe hash changes with it, so stale outputs
/// are never reused.
pub const BUILDER_VERSION: &str = "forge-layer-builder/2";

/// Tag of this encoding, so a future change of encoding can never collide with this one.
const ENCODING: &str = "forge-recipe-hash/1";

/// Everything besides the recipe itself that its hash depends on.
#[derive(Debug, Clone)]
pub struct HashInputs<'a> {
    pub builder: &'a str,
    pub source_date_epoch: u64,
    pub parameters: &'a BTreeMap<String, ParamValue>,
    /// Content hash of every path source, by source name (URL sources carry their own).
    pub path_sources: &'a BTreeMap<String, Sha256Digest>,
    /// Recipe hash of every input and every tool, by recipe name.
    pub inputs: &'a BTreeMap<String, Sha256Digest>,
}

#[derive(Serialize)]
struct SourceView<'a> {
    name: &'a str,
    sha256: Option<Sha256Digest>,
    /// Only for sources pinned by SHA-512 (absent otherwise, so the encoding of every
    /// other recipe is unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    sha512: Option<Sha512Digest>,
    /// Only for image sources: manifest digest and platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<(Sha256Digest, &'a Platform)>,
    /// Only for Go module sources: path, version and `h1:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    go: Option<&'a GoModuleSource>,
    unpack: Unpack,
    strip_components: u32,
}

#[derive(Serialize)]
struct View<'a> {
    encoding: &'static str,
    builder: &'a str,
    source_date_epoch: u64,
    name: &'a str,
    version: &'a str,
    description: &'a str,
    parameters: &'a BTreeMap<String, Parameter>,
    values: &'a BTreeMap<String, ParamValue>,
    sources: Vec<SourceView<'a>>,
    inputs: Vec<(&'a str, Option<Sha256Digest>)>,
    /// Only for recipes with tools (absent otherwise, so the encoding of every other
    /// recipe is unchanged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<(&'a str, Option<Sha256Digest>)>,
    steps: Vec<&'a Action>,
}

/// The canonical bytes that are hashed. Exposed for tests and `--explain`-style debugging.
pub fn canonical_encoding(recipe: &Recipe, ctx: &HashInputs<'_>) -> Vec<u8> {
    let view = View {
        encoding: ENCODING,
        builder: ctx.builder,
        source_date_epoch: ctx.source_date_epoch,
        name: &recipe.name,
        version: &recipe.version,
        description: &recipe.description,
        parameters: &recipe.parameters,
        values: ctx.parameters,
        sources: recipe
            .sources
            .iter()
            .map(|s| SourceView {
                name: &s.name,
                sha256: match &s.kind {
                    SourceKind::Url { integrity, .. } => integrity.sha256(),
                    SourceKind::Path { .. } | SourceKind::GoSum { .. } => {
                        ctx.path_sources.get(&s.name).copied()
                    }
                    SourceKind::Oci(_) | SourceKind::GoModule(_) => None,
                },
                sha512: match &s.kind {
                    SourceKind::Url {
                        integrity: Integrity::Sha512(d),
                        ..
                    } => Some(*d),
                    _ => None,
                },
                image: match &s.kind {
                    SourceKind::Oci(o) => Some((o.digest, &o.platform)),
                    _ => None,
                },
                go: match &s.kind {
                    SourceKind::GoModule(g) => Some(g),
                    _ => None,
                },
                unpack: s.unpack,
                strip_components: s.strip_components,
            })
            .collect(),
        inputs: recipe
            .inputs
            .iter()
            .map(|i| (i.as_str(), ctx.inputs.get(i).copied()))
            .collect(),
        tools: recipe
            .tools
            .iter()
            .map(|t| (t.as_str(), ctx.inputs.get(t).copied()))
            .collect(),
        steps: recipe.steps.iter().map(|s| &s.action).collect(),
    };
    // Serialising these plain structs into a Vec cannot fail: no maps with non-string keys,
    // no custom serialisers that error.
    serde_json::to_vec(&view).unwrap_or_default()
}

/// The recipe hash.
pub fn recipe_hash(recipe: &Recipe, ctx: &HashInputs<'_>) -> Sha256Digest {
    Sha256Digest::of(&canonical_encoding(recipe, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;

    fn hash_of(text: &str) -> Sha256Digest {
        let r = Recipe::parse(&SourceFile::new("r.toml", text), "r").unwrap();
        let params = r.resolve_parameters(&BTreeMap::new()).unwrap();
        let sources = r
            .sources
            .iter()
            .map(|s| (s.name.clone(), Sha256Digest::of(s.name.as_bytes())))
            .collect();
        let inputs = BTreeMap::new();
        recipe_hash(
            &r,
            &HashInputs {
                builder: BUILDER_VERSION,
                source_date_epoch: 1,
                parameters: &params,
                path_sources: &sources,
                inputs: &inputs,
            },
        )
    }

    #[test]
    fn defaults_and_formatting_do_not_matter() {
        let a =
            hash_of("name = \"r\"\nversion = \"1\"\n[[step]]\nkind = \"mkdir\"\npath = \"/x\"\n");
        let b = hash_of(
            "# comment\nversion=\"1\"   \nname = 'r'\n\n[[step]]\npath = \"/x/\"\nmode = \"0755\"\nkind = \"mkdir\"\n",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn urls_do_not_matter_but_hashes_do() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let a = hash_of(&format!(
            "name = \"r\"\nversion = \"1\"\n[[source]]\nname = \"s\"\nurls = [\"https://a/x\"]\nsha256 = \"{sha}\"\n"
        ));
        let b = hash_of(&format!(
            "name = \"r\"\nversion = \"1\"\n[[source]]\nname = \"s\"\nurls = [\"https://b/y\", \"https://c/z\"]\nsha256 = \"{sha}\"\n"
        ));
        assert_eq!(a, b);
        let c = hash_of(&format!(
            "name = \"r\"\nversion = \"1\"\n[[source]]\nname = \"s\"\nurls = [\"https://a/x\"]\nsha256 = \"{sha}\"\nunpack = \"tar\"\n"
        ));
        assert_ne!(a, c);
        let other = "ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let d = hash_of(&format!(
            "name = \"r\"\nversion = \"1\"\n[[source]]\nname = \"s\"\nurls = [\"https://a/x\"]\nsha256 = \"{other}\"\n"
        ));
        assert_ne!(a, d);
    }
}
