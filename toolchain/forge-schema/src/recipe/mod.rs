//! Recipes: the TOML format (raw, with spans) and the validated, normalised model.
//!
//! A recipe describes one layer: its fixed-output sources, the recipes it builds on, typed
//! parameters, and declarative steps. Parsing is two-stage (like ripgrep's low/high args):
//! serde reads a raw document that keeps every span, then [`Recipe::parse`] checks it and
//! produces the normalised model with every default made explicit, so two recipes that mean
//! the same thing are the same value (and hash the same, see [`crate::hash`]).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::{SourceFile, TomlError};
use crate::digest::{Integrity, Sha256Digest};
use crate::oci::{ImageRef, Platform};
use crate::paths::{ImagePath, RelPath, check_name};

mod parse;
mod source;
mod step;

use parse::{env_name_ok, unit_name_ok, url_file_name};
use source::check_source;
use step::check_step;

/// How a source is unpacked before steps read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unpack {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.xz")]
    TarXz,
    #[serde(rename = "tar.zst")]
    TarZst,
    #[serde(rename = "tar.bz2")]
    TarBz2,
    #[serde(rename = "zip")]
    Zip,
    #[serde(rename = "deb")]
    Deb,
}

impl Unpack {
    pub fn as_str(self) -> &'static str {
        match self {
            Unpack::None => "none",
            Unpack::Tar => "tar",
            Unpack::TarGz => "tar.gz",
            Unpack::TarXz => "tar.xz",
            Unpack::TarZst => "tar.zst",
            Unpack::TarBz2 => "tar.bz2",
            Unpack::Zip => "zip",
            Unpack::Deb => "deb",
        }
    }

    /// Whether the source becomes a directory tree.
    pub fn is_archive(self) -> bool {
        self != Unpack::None
    }
}

/// Type of a recipe parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    /// A list of strings.
    List,
}

/// A parameter value, checked against its declared type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Integer(i64),
    Boolean(bool),
    List(Vec<String>),
}

impl ParamValue {
    /// Checks a TOML value against a type.
    pub fn from_toml(ty: ParamType, value: &toml::Value) -> Result<Self, String> {
        match (ty, value) {
            (ParamType::String, toml::Value::String(s)) => Ok(Self::String(s.clone())),
            (ParamType::Integer, toml::Value::Integer(i)) => Ok(Self::Integer(*i)),
            (ParamType::Boolean, toml::Value::Boolean(b)) => Ok(Self::Boolean(*b)),
            (ParamType::List, toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "a `list` parameter holds strings, found {}",
                        other.type_str()
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Self::List),
            (ty, other) => Err(format!(
                "expected a value of type `{}`, found {}",
                ty.name(),
                other.type_str()
            )),
        }
    }
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::List => "list",
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parameter {
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub description: String,
}

/// Where a source's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// Fetched from the first URL that serves bytes with this hash (SHA-256 or SHA-512).
    Url {
        urls: Vec<String>,
        integrity: Integrity,
    },
    /// A file or directory of the project, hashed when the recipe is resolved.
    /// An optional `sha256` pins its content like a URL source.
    Path {
        path: RelPath,
        sha256: Option<Sha256Digest>,
    },
    /// The file system of a container image, pinned by the digest of its manifest (or
    /// index), fetched from the registry (or a mirror) and verified blob by blob.
    Oci(OciSource),
    /// One Go module version from the module proxy, pinned by its go.sum `h1:` hash,
    /// unpacked without its `module@version/` prefix.
    GoModule(GoModuleSource),
    /// Every module a go.sum of the project pins (its `h1:` lines), served to build steps
    /// as a module proxy tree (`GOPROXY=file:///src/NAME`). The go.sum is hashed like a
    /// path source.
    GoSum { path: RelPath },
}

/// A `go-module` source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoModuleSource {
    pub path: String,
    pub version: String,
    /// `h1:<base64>`, as go.sum writes it.
    pub h1: String,
}

/// An `image` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    pub image: ImageRef,
    /// Other places serving the same repository, tried in order after `image`.
    pub mirrors: Vec<ImageRef>,
    /// Digest of the manifest or index (`sha256:...` in the recipe).
    pub digest: Sha256Digest,
    /// Which manifest of an index to use.
    pub platform: Platform,
}

/// A fixed-output input of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub unpack: Unpack,
    pub strip_components: u32,
    /// Name looked up in source directories (`--source-dir`); defaults to the URL's last
    /// path segment or the path's file name.
    pub file_name: String,
    pub span: Range<usize>,
}

impl Source {
    /// Whether steps may name members of it: an unpacked archive, an image's file system,
    /// or a path source (which may be a directory).
    pub fn may_have_members(&self) -> bool {
        self.unpack.is_archive()
            || matches!(
                self.kind,
                SourceKind::Path { .. } | SourceKind::Oci(_) | SourceKind::GoSum { .. }
            )
    }
}

/// Numeric owner of an entry in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The bytes of a file step: inline or a member of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Inline(String),
    Source {
        source: String,
        /// `None` for a source that is not unpacked (the file itself).
        member: Option<RelPath>,
    },
}

/// One declarative step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    File {
        path: ImagePath,
        content: Content,
        /// `None`: 0644 for inline content; for a source file, 0755 if it is executable
        /// there, else 0644.
        mode: Option<u32>,
        owner: Owner,
    },
    Tree {
        path: ImagePath,
        source: String,
        member: RelPath,
        owner: Owner,
        /// Patterns of files (relative to the tree, `*` within one name) made executable:
        /// for sources that carry no modes, such as Go module zips.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        executable: Vec<String>,
    },
    Mkdir {
        path: ImagePath,
        mode: u32,
        owner: Owner,
    },
    Symlink {
        path: ImagePath,
        target: String,
    },
    Template {
        path: ImagePath,
        template: Content,
        mode: u32,
        owner: Owner,
    },
    Unit {
        name: String,
        content: Content,
        template: bool,
        enable: bool,
        wanted_by: Vec<String>,
    },
    User {
        name: String,
        uid: Option<u32>,
        description: Option<String>,
        home: Option<String>,
        shell: Option<String>,
        groups: Vec<String>,
    },
    Group {
        name: String,
        gid: Option<u32>,
    },
    EnvFile {
        path: ImagePath,
        vars: BTreeMap<String, String>,
        mode: u32,
    },
    /// A program run in the build sandbox (docs/recipes.md, "Build steps"): what it writes
    /// to `$out` becomes the layer's tree under `path`.
    Build {
        path: ImagePath,
        run: Run,
        /// Sources mounted read-only at `/src/NAME`, in the order given.
        sources: Vec<String>,
        /// Extra environment; never one of [`SANDBOX_ENV`].
        env: BTreeMap<String, String>,
        /// Whether the command's arguments, the script and the env values are templates.
        template: bool,
        owner: Owner,
    },
}

/// What a `build` step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Run {
    /// A program and its arguments, the program found on the sandbox's `PATH`.
    Command(Vec<String>),
    /// A script run by the sandbox's `/bin/sh -eu`.
    Script(String),
}

/// Variables the sandbox sets itself, so a recipe cannot make a build depend on them.
pub const SANDBOX_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "TZ",
    "LC_ALL",
    "LANG",
    "SOURCE_DATE_EPOCH",
    "USER",
    "LOGNAME",
    "out",
    "src",
    "FORGE_BUILD_JOBS",
];

/// A step with the span of its table, for errors found while building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub span: Range<usize>,
}

/// Where systemd units of a layer go, and where enable symlinks point.
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// Where `user`/`group` steps write their sysusers.d entries.
pub const SYSUSERS_DIR: &str = "/usr/lib/sysusers.d";

/// A validated, normalised recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Names of input recipes, sorted and without duplicates.
    pub inputs: Vec<String>,
    /// Recipes whose layers make the root of the build sandbox (build steps only; an image
    /// that takes this recipe does not take its tools). Sorted, without duplicates.
    pub tools: Vec<String>,
    pub parameters: BTreeMap<String, Parameter>,
    pub sources: Vec<Source>,
    pub steps: Vec<Step>,
    /// The file it was read from, for diagnostics found later (build errors, cycles).
    pub file: SourceFile,
    /// Span of each input name, for "unknown recipe" and cycle errors.
    pub input_spans: BTreeMap<String, Range<usize>>,
    /// Span of each tool name, likewise.
    pub tool_spans: BTreeMap<String, Range<usize>>,
}

impl Recipe {
    /// The recipes this one needs built first: its inputs and its tools.
    pub fn build_deps(&self) -> impl Iterator<Item = &String> {
        self.inputs
            .iter()
            .chain(self.tools.iter().filter(|t| !self.inputs.contains(t)))
    }

    /// The span naming dependency `name` (an input or a tool).
    pub fn dep_span(&self, name: &str) -> Option<Range<usize>> {
        self.input_spans
            .get(name)
            .or_else(|| self.tool_spans.get(name))
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------
// Raw document

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRecipe {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    parameters: BTreeMap<Spanned<String>, Spanned<RawParameter>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawParameter {
    #[serde(rename = "type")]
    ty: ParamType,
    #[serde(default)]
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    name: Spanned<String>,
    #[serde(default)]
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    sha512: Option<Spanned<String>>,
    #[serde(default)]
    image: Option<Spanned<String>>,
    #[serde(default)]
    mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    digest: Option<Spanned<String>>,
    #[serde(default)]
    platform: Option<Spanned<String>>,
    #[serde(default)]
    unpack: Option<Spanned<Unpack>>,
    #[serde(default)]
    strip_components: Option<Spanned<u32>>,
    #[serde(default)]
    file_name: Option<Spanned<String>>,
    #[serde(default)]
    go_module: Option<Spanned<String>>,
    #[serde(default)]
    go_sum: Option<Spanned<String>>,
    #[serde(default)]
    version: Option<Spanned<String>>,
    #[serde(default)]
    h1: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StepKind {
    File,
    Tree,
    Mkdir,
    Symlink,
    Template,
    Unit,
    User,
    Group,
    EnvFile,
    Build,
}

impl StepKind {
    fn name(self) -> &'static str {
        match self {
            StepKind::File => "file",
            StepKind::Tree => "tree",
            StepKind::Mkdir => "mkdir",
            StepKind::Symlink => "symlink",
            StepKind::Template => "template",
            StepKind::Unit => "unit",
            StepKind::User => "user",
            StepKind::Group => "group",
            StepKind::EnvFile => "env-file",
            StepKind::Build => "build",
        }
    }

    /// Fields a step of this kind accepts (besides `kind`).
    fn fields(self) -> &'static [&'static str] {
        match self {
            StepKind::File | StepKind::Template => {
                &["path", "from", "member", "content", "mode", "uid", "gid"]
            }
            StepKind::Tree => &["path", "from", "member", "uid", "gid", "executable"],
            StepKind::Mkdir => &["path", "mode", "uid", "gid"],
            StepKind::Symlink => &["path", "target"],
            StepKind::Unit => &[
                "name",
                "from",
                "member",
                "content",
                "template",
                "enable",
                "wanted-by",
            ],
            StepKind::User => &["name", "uid", "description", "home", "shell", "groups"],
            StepKind::Group => &["name", "gid"],
            StepKind::EnvFile => &["path", "vars", "mode"],
            StepKind::Build => &[
                "path", "command", "script", "sources", "env", "template", "uid", "gid",
            ],
        }
    }
}

/// Every key any step may have; which ones a kind accepts is checked after parsing, so an
/// error can name the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStep {
    kind: Spanned<StepKind>,
    path: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    member: Option<Spanned<String>>,
    content: Option<Spanned<String>>,
    mode: Option<Spanned<toml::Value>>,
    uid: Option<Spanned<u32>>,
    gid: Option<Spanned<u32>>,
    target: Option<Spanned<String>>,
    template: Option<Spanned<bool>>,
    enable: Option<Spanned<bool>>,
    wanted_by: Option<Spanned<Vec<Spanned<String>>>>,
    vars: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    description: Option<Spanned<String>>,
    home: Option<Spanned<String>>,
    shell: Option<Spanned<String>>,
    groups: Option<Spanned<Vec<Spanned<String>>>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    script: Option<Spanned<String>>,
    sources: Option<Spanned<Vec<Spanned<String>>>>,
    env: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    executable: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawStep {
    /// The keys present, with their spans.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        fn s<T>(
            name: &'static str,
            v: &Option<Spanned<T>>,
        ) -> Option<(&'static str, Range<usize>)> {
            v.as_ref().map(|v| (name, v.span()))
        }
        [
            s("path", &self.path),
            s("name", &self.name),
            s("from", &self.from),
            s("member", &self.member),
            s("content", &self.content),
            s("mode", &self.mode),
            s("uid", &self.uid),
            s("gid", &self.gid),
            s("target", &self.target),
            s("template", &self.template),
            s("enable", &self.enable),
            s("wanted-by", &self.wanted_by),
            s("vars", &self.vars),
            s("description", &self.description),
            s("home", &self.home),
            s("shell", &self.shell),
            s("groups", &self.groups),
            s("command", &self.command),
            s("script", &self.script),
            s("sources", &self.sources),
            s("env", &self.env),
            s("executable", &self.executable),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Validation

struct Checker<'a> {
    file: &'a SourceFile,
    errors: Vec<TomlError>,
}

impl Checker<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.errors.push(self.file.error(span, msg));
    }

    fn err_help(&mut self, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        self.errors.push(self.file.error(span, msg).with_help(help));
    }

    fn name(&mut self, what: &str, v: &Spanned<String>) -> String {
        if let Err(e) = check_name(v.get_ref()) {
            self.err(v.span(), format!("invalid {what} name: {e}"));
        }
        v.get_ref().clone()
    }

    fn image_path(&mut self, v: &Spanned<String>) -> Option<ImagePath> {
        match ImagePath::parse(v.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err_help(
                    v.span(),
                    format!("invalid destination path: {e}"),
                    "destinations are absolute paths inside the image, such as `/etc/hello.conf`",
                );
                None
            }
        }
    }

    fn rel_path(&mut self, what: &str, v: &Spanned<String>) -> Option<RelPath> {
        match RelPath::parse(v.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(v.span(), format!("invalid {what}: {e}"));
                None
            }
        }
    }

    fn mode(&mut self, v: &Option<Spanned<toml::Value>>, default: u32) -> u32 {
        let Some(v) = v else { return default };
        match v.get_ref() {
            toml::Value::String(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                match u32::from_str_radix(digits, 8) {
                    Ok(m) if m <= 0o7777 && !digits.is_empty() => m,
                    _ => {
                        self.err_help(
                            v.span(),
                            format!("`{s}` is not a file mode"),
                            "write modes as octal digits in a string, e.g. `mode = \"0755\"`",
                        );
                        default
                    }
                }
            }
            toml::Value::Integer(i) => {
                self.err_help(
                    v.span(),
                    format!("mode `{i}` is an integer; forge cannot tell if it was meant as octal"),
                    format!("write it as a string of octal digits, e.g. `mode = \"{i:04}\"`"),
                );
                default
            }
            other => {
                self.err(
                    v.span(),
                    format!(
                        "a mode is a string of octal digits, found {}",
                        other.type_str()
                    ),
                );
                default
            }
        }
    }
}

#[cfg(test)]
mod tests;
