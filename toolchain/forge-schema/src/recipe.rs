//! Recipes: the TOML format (raw, with spans) and the validated, normalised model.
//!
//! A recipe describes one layer: its fixed-output sources, the recipes it builds on, typed
//! parameters, and declarative steps. Parsing is two-stage (like ripgrep's low/high args):
//! serde reads a raw document that keeps every span, then [`Recipe::parse`] checks it and
//! produces the normalised model with every default made explicit, so two recipes that mean
//! the same thing are the same value (and hash the same, see [`crate::hash`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::{Diagnostics, SourceFile, TomlError, did_you_mean};
use crate::digest::{Integrity, Sha256Digest};
use crate::oci::{ImageRef, Platform};
use crate::paths::{ImagePath, RelPath, check_name};

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
            || matches!(self.kind, SourceKind::Path { .. } | SourceKind::Oci(_))
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
}

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
    pub parameters: BTreeMap<String, Parameter>,
    pub sources: Vec<Source>,
    pub steps: Vec<Step>,
    /// The file it was read from, for diagnostics found later (build errors, cycles).
    pub file: SourceFile,
    /// Span of each input name, for "unknown recipe" and cycle errors.
    pub input_spans: BTreeMap<String, Range<usize>>,
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
        }
    }

    /// Fields a step of this kind accepts (besides `kind`).
    fn fields(self) -> &'static [&'static str] {
        match self {
            StepKind::File | StepKind::Template => {
                &["path", "from", "member", "content", "mode", "uid", "gid"]
            }
            StepKind::Tree => &["path", "from", "member", "uid", "gid"],
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

fn unit_name_ok(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".slice",
        ".scope",
        ".swap",
        ".device",
    ];
    SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':' | '\\'))
}

fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Last path segment of a URL, without query or fragment.
fn url_file_name(url: &str) -> Option<String> {
    let no_query = url.split(['?', '#']).next()?;
    let path = no_query
        .split_once("://")
        .map_or(no_query, |(_, rest)| rest);
    let (_, path) = path.split_once('/')?;
    let last = path.rsplit('/').next()?;
    (!last.is_empty()).then(|| last.to_string())
}

impl Recipe {
    /// Parses and validates a recipe file. `stem` is the file name without `.toml`; the
    /// recipe's `name` must match it so `forge build NAME` finds `recipes/NAME.toml`.
    pub fn parse(file: &SourceFile, stem: &str) -> Result<Recipe, Diagnostics> {
        let raw: RawRecipe = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut c = Checker {
            file,
            errors: Vec::new(),
        };

        let name = c.name("recipe", &raw.name);
        if name != stem {
            c.err_help(
                raw.name.span(),
                format!("recipe `{name}` is in a file named `{stem}.toml`"),
                format!("rename the file to `recipes/{name}.toml` or set `name = \"{stem}\"`"),
            );
        }
        let version = raw.version.get_ref().trim().to_string();
        if version.is_empty() {
            c.err(raw.version.span(), "`version` may not be empty");
        }

        let mut input_spans = BTreeMap::new();
        for input in &raw.inputs {
            let n = c.name("input recipe", input);
            if n == name {
                c.err(
                    input.span(),
                    format!("recipe `{name}` lists itself as an input"),
                );
            }
            input_spans.insert(n, input.span());
        }

        let mut parameters = BTreeMap::new();
        for (pname, p) in &raw.parameters {
            let n = c.name("parameter", pname);
            let p_ref = p.get_ref();
            let default = match &p_ref.default {
                None => None,
                Some(d) => match ParamValue::from_toml(p_ref.ty, d.get_ref()) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        c.err(d.span(), format!("default of parameter `{n}`: {e}"));
                        None
                    }
                },
            };
            parameters.insert(
                n,
                Parameter {
                    ty: p_ref.ty,
                    default,
                    description: p_ref.description.clone().unwrap_or_default(),
                },
            );
        }

        let mut sources = Vec::new();
        let mut source_names = BTreeSet::new();
        for s in &raw.source {
            if let Some(src) = check_source(&mut c, s) {
                if !source_names.insert(src.name.clone()) {
                    c.err(
                        s.get_ref().name.span(),
                        format!("two sources are named `{}`", src.name),
                    );
                }
                sources.push(src);
            }
        }

        let mut steps = Vec::new();
        for st in &raw.step {
            if let Some(step) = check_step(&mut c, st, &sources) {
                steps.push(step);
            }
        }

        if !c.errors.is_empty() {
            return Err(c.errors.into());
        }
        Ok(Recipe {
            name,
            version,
            description: raw.description.unwrap_or_default().trim().to_string(),
            inputs: input_spans.keys().cloned().collect(),
            parameters,
            sources,
            steps,
            file: file.clone(),
            input_spans,
        })
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Parameter values: declared defaults, replaced by `overrides`. Every parameter must end
    /// up with a value of its type.
    pub fn resolve_parameters(
        &self,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<BTreeMap<String, ParamValue>, String> {
        for key in overrides.keys() {
            if !self.parameters.contains_key(key) {
                let hint = did_you_mean(key, self.parameters.keys().map(String::as_str))
                    .map(|b| format!(" (did you mean `{b}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "recipe `{}` has no parameter `{key}`{hint}",
                    self.name
                ));
            }
        }
        let mut out = BTreeMap::new();
        for (name, p) in &self.parameters {
            let value = match overrides.get(name) {
                Some(v) => ParamValue::from_toml(p.ty, v)
                    .map_err(|e| format!("parameter `{name}` of recipe `{}`: {e}", self.name))?,
                None => p.default.clone().ok_or_else(|| {
                    format!(
                        "parameter `{name}` of recipe `{}` has no default and no value was given",
                        self.name
                    )
                })?,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}

fn check_source(c: &mut Checker<'_>, s: &Spanned<RawSource>) -> Option<Source> {
    let span = s.span();
    let r = s.get_ref();
    let name = c.name("source", &r.name);
    let sha256 = r.sha256.as_ref().and_then(|h| match h.get_ref().parse() {
        Ok(d) => Some(d),
        Err(e) => {
            c.err_help(
                h.span(),
                format!("invalid sha256: {e}"),
                "compute it with `forge hash FILE`",
            );
            None
        }
    });
    let unpack = r.unpack.as_ref().map_or(Unpack::None, |u| *u.get_ref());
    let strip_components = r.strip_components.as_ref().map_or(0, |s| *s.get_ref());
    if let Some(sc) = &r.strip_components
        && !unpack.is_archive()
        && *sc.get_ref() > 0
    {
        c.err(
            sc.span(),
            "`strip-components` needs an archive (`unpack` = tar, tar.gz, zip, deb, ...)",
        );
    }
    let sha512 =
        r.sha512.as_ref().and_then(
            |h| match h.get_ref().parse::<crate::digest::Sha512Digest>() {
                Ok(d) => Some(d),
                Err(e) => {
                    c.err_help(
                        h.span(),
                        format!("invalid sha512: {e}"),
                        "copy it from the upstream checksum file (hex or `sha512-<base64>`)",
                    );
                    None
                }
            },
        );
    let given: Vec<(&str, Range<usize>)> = [
        r.urls.as_ref().map(|u| ("urls", u.span())),
        r.path.as_ref().map(|p| ("path", p.span())),
        r.image.as_ref().map(|i| ("image", i.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        c.err(
            given[1].1.clone(),
            format!(
                "source `{name}` has both `{}` and `{}`; give one",
                given[0].0, given[1].0
            ),
        );
        return None;
    }
    // Keys that belong to another kind of source.
    let misplaced = |c: &mut Checker<'_>, key: &str, span: Range<usize>, kind: &str| {
        c.err(
            span,
            format!("`{key}` does not apply to {kind} (source `{name}`)"),
        );
    };
    if r.image.is_none() {
        for (key, span) in [
            ("digest", r.digest.as_ref().map(|d| d.span())),
            ("platform", r.platform.as_ref().map(|d| d.span())),
            ("mirrors", r.mirrors.as_ref().map(|d| d.span())),
        ] {
            if let Some(span) = span {
                misplaced(
                    c,
                    key,
                    span,
                    "a `urls` or `path` source; it is for `image` sources",
                );
            }
        }
    }
    let kind = match (&r.urls, &r.path, &r.image) {
        (None, None, None) => {
            c.err_help(
                span,
                format!("source `{name}` has neither `urls`, `path` nor `image`"),
                "add `urls = [\"https://...\"]` with a `sha256`, `path = \"files/...\"`, \
                 or `image = \"registry/repository:tag\"` with a `digest`",
            );
            return None;
        }
        (Some(urls), _, _) => {
            if urls.get_ref().is_empty() && r.file_name.is_none() {
                c.err_help(
                    urls.span(),
                    format!("source `{name}` has an empty `urls` list"),
                    "give a URL, or `file-name` for a file only source directories provide \
                     (--source-dir, FORGE_SOURCE_DIRS)",
                );
            }
            for u in urls.get_ref() {
                let ok = ["https://", "http://", "file://", "debian:pool/"]
                    .iter()
                    .any(|p| u.get_ref().starts_with(p));
                if !ok {
                    c.err_help(
                        u.span(),
                        format!("`{}` is not an http(s) or file URL", u.get_ref()),
                        "use https://, http://, file://, or debian:pool/... for a file of the \
                         Debian archive (served by the configured mirror)",
                    );
                }
            }
            if let (Some(_), Some(h)) = (&r.sha256, &r.sha512) {
                c.err_help(
                    h.span(),
                    format!("source `{name}` has both `sha256` and `sha512`"),
                    "pin it with one hash: the one upstream publishes",
                );
                return None;
            }
            let integrity = match (sha256, sha512) {
                (Some(d), _) => Integrity::Sha256(d),
                (None, Some(d)) => Integrity::Sha512(d),
                (None, None) => {
                    if r.sha256.is_none() && r.sha512.is_none() {
                        c.err_help(
                            span,
                            format!("source `{name}` has `urls` but no `sha256`"),
                            "URL sources are fixed-output: pin the content with `sha256 = \"...\"` \
                             (`forge hash FILE` prints it) or `sha512` when upstream publishes only that",
                        );
                    }
                    return None;
                }
            };
            SourceKind::Url {
                urls: urls.get_ref().iter().map(|u| u.get_ref().clone()).collect(),
                integrity,
            }
        }
        (None, Some(p), _) => {
            if let Some(h) = &r.sha512 {
                misplaced(
                    c,
                    "sha512",
                    h.span(),
                    "a path source (pin it with `sha256`)",
                );
            }
            let path = c.rel_path("source path", p)?;
            if path.is_root() {
                c.err(p.span(), "a path source cannot be the whole project");
                return None;
            }
            SourceKind::Path { path, sha256 }
        }
        (None, None, Some(img)) => {
            for (key, span) in [
                ("sha256", r.sha256.as_ref().map(|d| d.span())),
                ("sha512", r.sha512.as_ref().map(|d| d.span())),
                ("unpack", r.unpack.as_ref().map(|d| d.span())),
                (
                    "strip-components",
                    r.strip_components.as_ref().map(|d| d.span()),
                ),
            ] {
                if let Some(span) = span {
                    misplaced(
                        c,
                        key,
                        span,
                        "an `image` source (its `digest` pins it; its layers are unpacked in order)",
                    );
                }
            }
            let parse_ref =
                |c: &mut Checker<'_>, v: &Spanned<String>| match ImageRef::parse(v.get_ref()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        c.err(v.span(), e);
                        None
                    }
                };
            let image = parse_ref(c, img);
            let mirrors: Vec<Option<ImageRef>> = r
                .mirrors
                .as_ref()
                .map(|m| m.get_ref().iter().map(|v| parse_ref(c, v)).collect())
                .unwrap_or_default();
            let digest = match &r.digest {
                None => {
                    c.err_help(
                        img.span(),
                        format!("image source `{name}` has no `digest`"),
                        "pin the image: `digest = \"sha256:...\"` (the manifest or index digest \
                         the registry reports for the tag)",
                    );
                    None
                }
                Some(d) => match d
                    .get_ref()
                    .strip_prefix("sha256:")
                    .map(str::parse::<Sha256Digest>)
                {
                    Some(Ok(d)) => Some(d),
                    Some(Err(e)) => {
                        c.err(d.span(), format!("invalid digest: {e}"));
                        None
                    }
                    None => {
                        c.err_help(
                            d.span(),
                            format!("`{}` is not a digest", d.get_ref()),
                            "write it as `sha256:` followed by 64 hex digits",
                        );
                        None
                    }
                },
            };
            let platform = match &r.platform {
                None => Some(Platform::default()),
                Some(p) => match Platform::parse(p.get_ref()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        c.err(p.span(), e);
                        None
                    }
                },
            };
            let (Some(image), Some(digest), Some(platform)) = (image, digest, platform) else {
                return None;
            };
            let mirrors: Option<Vec<ImageRef>> = mirrors.into_iter().collect();
            SourceKind::Oci(OciSource {
                image,
                mirrors: mirrors?,
                digest,
                platform,
            })
        }
    };
    let file_name = match (&r.file_name, &kind) {
        (Some(f), _) => {
            let v = f.get_ref();
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                c.err(f.span(), format!("`{v}` is not a file name"));
            }
            v.clone()
        }
        (None, SourceKind::Url { urls, .. }) => urls
            .first()
            .and_then(|u| url_file_name(u))
            .unwrap_or_else(|| name.clone()),
        (None, SourceKind::Path { path, .. }) => path
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or(&name)
            .to_string(),
        (None, SourceKind::Oci(o)) => o
            .image
            .repository
            .rsplit('/')
            .next()
            .unwrap_or(&name)
            .to_string(),
    };
    Some(Source {
        name,
        kind,
        unpack,
        strip_components,
        file_name,
        span,
    })
}

fn check_step(c: &mut Checker<'_>, st: &Spanned<RawStep>, sources: &[Source]) -> Option<Step> {
    let span = st.span();
    let r = st.get_ref();
    let kind = *r.kind.get_ref();
    let allowed = kind.fields();
    let mut ok = true;
    for (field, fspan) in r.present() {
        if !allowed.contains(&field) {
            ok = false;
            let list = allowed.join("`, `");
            c.err_help(
                fspan,
                format!("`{field}` is not a field of a `{}` step", kind.name()),
                match did_you_mean(field, allowed.iter().copied()) {
                    Some(b) => format!(
                        "did you mean `{b}`? A `{}` step takes `{list}`",
                        kind.name()
                    ),
                    None => format!("a `{}` step takes `{list}`", kind.name()),
                },
            );
        }
    }
    if !ok {
        return None;
    }

    macro_rules! need {
        ($field:ident, $key:literal) => {
            match &r.$field {
                Some(v) => v,
                None => {
                    c.err(
                        span.clone(),
                        format!("a `{}` step needs `{}`", kind.name(), $key),
                    );
                    return None;
                }
            }
        };
    }

    let owner = Owner {
        uid: r.uid.as_ref().map_or(0, |v| *v.get_ref()),
        gid: r.gid.as_ref().map_or(0, |v| *v.get_ref()),
    };

    // `from` names a source of this recipe; `member` a path inside an unpacked source.
    let source_ref = |c: &mut Checker<'_>, need_tree: bool| -> Option<(String, Option<RelPath>)> {
        let from = r.from.as_ref()?;
        let Some(src) = sources.iter().find(|s| &s.name == from.get_ref()) else {
            let hint = did_you_mean(from.get_ref(), sources.iter().map(|s| s.name.as_str()));
            let msg = format!("no source named `{}` in this recipe", from.get_ref());
            match hint {
                Some(b) => c.err_help(from.span(), msg, format!("did you mean `{b}`?")),
                None => c.err(from.span(), msg),
            }
            return None;
        };
        let member = match &r.member {
            Some(m) => {
                let p = c.rel_path("member", m)?;
                if !src.may_have_members() {
                    c.err_help(
                        m.span(),
                        format!(
                            "source `{}` is not unpacked, so it has no members",
                            src.name
                        ),
                        "set `unpack` on the source, or drop `member` to use the file itself",
                    );
                    return None;
                }
                Some(p)
            }
            None => None,
        };
        if need_tree && !src.may_have_members() {
            c.err_help(
                from.span(),
                format!(
                    "a `tree` step needs a directory, and source `{}` is a single file",
                    src.name
                ),
                "set `unpack` on the source, or use a `file` step",
            );
            return None;
        }
        Some((src.name.clone(), member))
    };

    let content = |c: &mut Checker<'_>| -> Option<Content> {
        match (&r.content, &r.from) {
            (Some(_), Some(f)) => {
                c.err(
                    f.span(),
                    format!(
                        "a `{}` step takes `content` or `from`, not both",
                        kind.name()
                    ),
                );
                None
            }
            (Some(text), None) => {
                if let Some(m) = &r.member {
                    c.err(m.span(), "`member` only goes with `from`");
                    return None;
                }
                Some(Content::Inline(text.get_ref().clone()))
            }
            (None, Some(_)) => {
                let (source, member) = source_ref(c, false)?;
                Some(Content::Source { source, member })
            }
            (None, None) => {
                c.err(
                    span.clone(),
                    format!("a `{}` step needs `content` or `from`", kind.name()),
                );
                None
            }
        }
    };

    let action = match kind {
        StepKind::File => {
            let path = c.image_path(need!(path, "path"));
            let content = content(c);
            let mode = r.mode.as_ref().map(|_| c.mode(&r.mode, 0o644));
            Action::File {
                path: path?,
                content: content?,
                mode,
                owner,
            }
        }
        StepKind::Template => {
            let path = c.image_path(need!(path, "path"));
            let template = content(c);
            Action::Template {
                path: path?,
                template: template?,
                mode: c.mode(&r.mode, 0o644),
                owner,
            }
        }
        StepKind::Tree => {
            let path = c.image_path(need!(path, "path"));
            need!(from, "from");
            let (source, member) = source_ref(c, true)?;
            Action::Tree {
                path: path?,
                source,
                member: member.unwrap_or(RelPath::parse(".").ok()?),
                owner,
            }
        }
        StepKind::Mkdir => Action::Mkdir {
            path: c.image_path(need!(path, "path"))?,
            mode: c.mode(&r.mode, 0o755),
            owner,
        },
        StepKind::Symlink => {
            let path = c.image_path(need!(path, "path"));
            let target = need!(target, "target");
            if target.get_ref().is_empty() || target.get_ref().contains('\0') {
                c.err(
                    target.span(),
                    "a symlink target may not be empty or contain NUL",
                );
                return None;
            }
            Action::Symlink {
                path: path?,
                target: target.get_ref().clone(),
            }
        }
        StepKind::Unit => {
            let name = need!(name, "name");
            if !unit_name_ok(name.get_ref()) {
                c.err_help(
                    name.span(),
                    format!("`{}` is not a systemd unit name", name.get_ref()),
                    "unit names end in a unit type, e.g. `hello.service` or `backup.timer`",
                );
            }
            let wanted_by: Vec<String> = r
                .wanted_by
                .as_ref()
                .map(|w| w.get_ref().iter().map(|t| t.get_ref().clone()).collect())
                .unwrap_or_default();
            if let Some(w) = &r.wanted_by {
                for t in w.get_ref() {
                    if !unit_name_ok(t.get_ref()) {
                        c.err(
                            t.span(),
                            format!("`{}` is not a systemd unit name", t.get_ref()),
                        );
                    }
                }
            }
            let content = content(c)?;
            Action::Unit {
                name: name.get_ref().clone(),
                content,
                template: r.template.as_ref().is_some_and(|t| *t.get_ref()),
                enable: r.enable.as_ref().is_some_and(|t| *t.get_ref()),
                wanted_by,
            }
        }
        StepKind::User => {
            let name = need!(name, "name");
            let n = name.get_ref();
            if !sysusers_name_ok(n) {
                c.err(name.span(), format!("`{n}` is not a valid user name"));
            }
            for (what, v) in [
                ("description", &r.description),
                ("home", &r.home),
                ("shell", &r.shell),
            ] {
                if let Some(v) = v
                    && (v.get_ref().contains(['"', '\n']) || v.get_ref().is_empty())
                {
                    c.err(
                        v.span(),
                        format!("`{what}` may not be empty or contain `\"` or a newline"),
                    );
                }
            }
            let mut groups = Vec::new();
            if let Some(g) = &r.groups {
                for grp in g.get_ref() {
                    if !sysusers_name_ok(grp.get_ref()) {
                        c.err(
                            grp.span(),
                            format!("`{}` is not a valid group name", grp.get_ref()),
                        );
                    }
                    groups.push(grp.get_ref().clone());
                }
            }
            Action::User {
                name: n.clone(),
                uid: r.uid.as_ref().map(|u| *u.get_ref()),
                description: r.description.as_ref().map(|v| v.get_ref().clone()),
                home: r.home.as_ref().map(|v| v.get_ref().clone()),
                shell: r.shell.as_ref().map(|v| v.get_ref().clone()),
                groups,
            }
        }
        StepKind::Group => {
            let name = need!(name, "name");
            if !sysusers_name_ok(name.get_ref()) {
                c.err(
                    name.span(),
                    format!("`{}` is not a valid group name", name.get_ref()),
                );
            }
            Action::Group {
                name: name.get_ref().clone(),
                gid: r.gid.as_ref().map(|g| *g.get_ref()),
            }
        }
        StepKind::EnvFile => {
            let path = c.image_path(need!(path, "path"));
            let vars_raw = need!(vars, "vars");
            let mut vars = BTreeMap::new();
            for (k, v) in vars_raw.get_ref() {
                if !env_name_ok(k.get_ref()) {
                    c.err(
                        k.span(),
                        format!("`{}` is not an environment variable name", k.get_ref()),
                    );
                }
                if v.get_ref().contains('\n') {
                    c.err(v.span(), "environment values may not contain newlines");
                }
                vars.insert(k.get_ref().clone(), v.get_ref().clone());
            }
            Action::EnvFile {
                path: path?,
                vars,
                mode: c.mode(&r.mode, 0o644),
            }
        }
    };
    Some(Step { action, span })
}

fn sysusers_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 31
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe, Diagnostics> {
        Recipe::parse(&SourceFile::new("recipes/hello.toml", text), "hello")
    }

    const GOOD: &str = r#"
name = "hello"
version = "1.0"
description = "says hello"
inputs = ["base"]

[parameters.greeting]
type = "string"
default = "hi"

[[source]]
name = "text"
path = "files/hello.txt"

[[source]]
name = "tool"
urls = ["https://example.org/dl/tool-1.0.tar.gz?x=1"]
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
unpack = "tar.gz"
strip-components = 1

[[step]]
kind = "file"
path = "/usr/share/hello/hello.txt"
from = "text"

[[step]]
kind = "tree"
path = "/opt/tool"
from = "tool"
member = "bin"

[[step]]
kind = "unit"
name = "hello.service"
content = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
enable = true

[[step]]
kind = "mkdir"
path = "/var/lib/hello/"
mode = "0750"
"#;

    #[test]
    fn parses_and_normalises() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.name, "hello");
        assert_eq!(r.inputs, ["base"]);
        assert_eq!(r.sources[1].file_name, "tool-1.0.tar.gz");
        assert_eq!(r.sources[0].file_name, "hello.txt");
        assert_eq!(r.steps.len(), 4);
        match &r.steps[0].action {
            Action::File { mode, path, .. } => {
                assert_eq!(*mode, None);
                assert_eq!(path.relative(), "usr/share/hello/hello.txt");
            }
            other => panic!("{other:?}"),
        }
        match &r.steps[3].action {
            Action::Mkdir { mode, path, .. } => {
                assert_eq!(*mode, 0o750);
                assert_eq!(path.relative(), "var/lib/hello");
            }
            other => panic!("{other:?}"),
        }
    }

    fn first_error(text: &str) -> TomlError {
        parse(text).unwrap_err().errors.remove(0)
    }

    #[test]
    fn unknown_top_level_key_suggests() {
        let e = first_error("name = \"hello\"\nversoin = \"1\"\n");
        assert!(e.message.contains("unknown field `versoin`"), "{e}");
        assert_eq!((e.line, e.col), (2, 1));
        assert_eq!(e.help.as_deref(), Some("did you mean `version`?"));
    }

    #[test]
    fn wrong_field_for_kind() {
        let e = first_error(
            "name = \"hello\"\nversion = \"1\"\n[[step]]\nkind = \"file\"\npath = \"/x\"\ncontent = \"\"\ntarget = \"y\"\n",
        );
        assert!(
            e.message
                .contains("`target` is not a field of a `file` step"),
            "{e}"
        );
        assert_eq!((e.line, e.col), (7, 10));
    }

    #[test]
    fn integer_mode_is_refused() {
        let e = first_error(
            "name = \"hello\"\nversion = \"1\"\n[[step]]\nkind = \"mkdir\"\npath = \"/x\"\nmode = 755\n",
        );
        assert!(e.message.contains("integer"), "{e}");
        assert_eq!(
            e.help.as_deref(),
            Some("write it as a string of octal digits, e.g. `mode = \"0755\"`")
        );
    }

    #[test]
    fn url_source_needs_sha() {
        let e = first_error(
            "name = \"hello\"\nversion = \"1\"\n[[source]]\nname = \"x\"\nurls = [\"https://a/b\"]\n",
        );
        assert!(e.message.contains("no `sha256`"), "{e}");
    }

    #[test]
    fn unknown_source_reference() {
        let e = first_error(
            "name = \"hello\"\nversion = \"1\"\n[[source]]\nname = \"text\"\npath = \"a\"\n[[step]]\nkind = \"file\"\npath = \"/x\"\nfrom = \"txt\"\n",
        );
        assert!(e.message.contains("no source named `txt`"), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean `text`?"));
    }

    #[test]
    fn name_must_match_file() {
        let e = Recipe::parse(
            &SourceFile::new("recipes/x.toml", "name = \"y\"\nversion = \"1\"\n"),
            "x",
        )
        .unwrap_err();
        assert!(e.errors[0].message.contains("in a file named `x.toml`"));
    }

    #[test]
    fn parameters_resolve() {
        let r = parse(GOOD).unwrap();
        let v = r.resolve_parameters(&BTreeMap::new()).unwrap();
        assert_eq!(v["greeting"], ParamValue::String("hi".into()));
        let mut o = BTreeMap::new();
        o.insert("greting".to_string(), toml::Value::String("x".into()));
        assert!(
            r.resolve_parameters(&o)
                .unwrap_err()
                .contains("did you mean `greeting`")
        );
        let mut o = BTreeMap::new();
        o.insert("greeting".to_string(), toml::Value::Integer(1));
        assert!(
            r.resolve_parameters(&o)
                .unwrap_err()
                .contains("expected a value of type `string`")
        );
    }

    #[test]
    fn url_file_names() {
        assert_eq!(
            url_file_name("https://a/b/c.tgz?x#y").as_deref(),
            Some("c.tgz")
        );
        assert_eq!(url_file_name("https://a/"), None);
        assert_eq!(url_file_name("https://a"), None);
    }
}
