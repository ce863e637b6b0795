//! Checking a `[[source]]` table: where it comes from, what pins it, how it unpacks.

use super::*;
use std::ops::Range;

use toml::Spanned;

use crate::digest::{Integrity, Sha256Digest};
use crate::oci::{ImageRef, Platform};

pub(super) fn check_source(c: &mut Checker<'_>, s: &Spanned<RawSource>) -> Option<Source> {
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
        r.go_module.as_ref().map(|g| ("go-module", g.span())),
        r.go_sum.as_ref().map(|g| ("go-sum", g.span())),
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
    if let Some(module) = &r.go_module {
        return check_go_module(c, r, name, module, span);
    }
    if let Some(sum) = &r.go_sum {
        return check_go_sum(c, r, name, sum, span);
    }
    for (key, span) in [
        ("version", r.version.as_ref().map(|d| d.span())),
        ("h1", r.h1.as_ref().map(|d| d.span())),
    ] {
        if let Some(span) = span {
            misplaced(c, key, span, "this source; it is for `go-module` sources");
        }
    }
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
        (None, SourceKind::GoModule(_) | SourceKind::GoSum { .. }) => name.clone(),
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

/// A `go-module` source: module path, `version` and `h1` required; nothing that belongs to
/// another kind. It unpacks as a zip without the `module@version/` directory.
fn check_go_module(
    c: &mut Checker<'_>,
    r: &RawSource,
    name: String,
    module: &Spanned<String>,
    span: Range<usize>,
) -> Option<Source> {
    refuse(
        c,
        r,
        &[
            "sha256",
            "sha512",
            "unpack",
            "strip-components",
            "file-name",
            "digest",
            "platform",
            "mirrors",
        ],
        &format!(
            "a `go-module` source (source `{name}`): its `h1` pins it and it is unpacked as the module"
        ),
    );
    let path = module.get_ref();
    let path_ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && path
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-._~/".contains(ch));
    if !path_ok {
        c.err(module.span(), format!("`{path}` is not a Go module path"));
    }
    let Some(version) = &r.version else {
        c.err_help(
            span,
            format!("go-module source `{name}` has no `version`"),
            "give the module version, e.g. `version = \"v1.5.2\"`",
        );
        return None;
    };
    if !version.get_ref().starts_with('v') || version.get_ref().contains(['/', ' ']) {
        c.err(
            version.span(),
            format!(
                "`{}` is not a Go module version (`v1.2.3`)",
                version.get_ref()
            ),
        );
    }
    let Some(h1) = &r.h1 else {
        c.err_help(
            span,
            format!("go-module source `{name}` has no `h1`"),
            "pin it as go.sum does: `h1 = \"h1:...\"` (the module's line in go.sum, or `go mod download -json MODULE@VERSION`)",
        );
        return None;
    };
    let h1_ok = h1.get_ref().strip_prefix("h1:").is_some_and(|b| {
        b.len() == 44
            && b.ends_with('=')
            && b.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "+/=".contains(ch))
    });
    if !h1_ok {
        c.err_help(
            h1.span(),
            format!("`{}` is not an `h1:` hash", h1.get_ref()),
            "an h1 hash is `h1:` and 44 characters of base64, as in go.sum",
        );
        return None;
    }
    let strip = u32::try_from(path.split('/').count()).unwrap_or(u32::MAX);
    Some(Source {
        kind: SourceKind::GoModule(GoModuleSource {
            path: path.clone(),
            version: version.get_ref().clone(),
            h1: h1.get_ref().clone(),
        }),
        unpack: Unpack::Zip,
        strip_components: strip,
        file_name: name.clone(),
        name,
        span,
    })
}

/// A `go-sum` source: the path of a go.sum in the project, and nothing else.
fn check_go_sum(
    c: &mut Checker<'_>,
    r: &RawSource,
    name: String,
    sum: &Spanned<String>,
    span: Range<usize>,
) -> Option<Source> {
    refuse(
        c,
        r,
        &[
            "sha256",
            "sha512",
            "unpack",
            "strip-components",
            "file-name",
            "version",
            "h1",
            "digest",
            "platform",
            "mirrors",
        ],
        &format!("a `go-sum` source (source `{name}`): the go.sum pins every module"),
    );
    let path = c.rel_path("go.sum path", sum)?;
    if !path.as_str().ends_with("go.sum") {
        c.err_help(
            sum.span(),
            format!("`{}` is not a go.sum file", path.as_str()),
            "give the path of the go.sum beside the go.mod, e.g. `go-sum = \"go/kubernetes/go.sum\"`",
        );
        return None;
    }
    Some(Source {
        kind: SourceKind::GoSum { path },
        unpack: Unpack::None,
        strip_components: 0,
        file_name: "go.sum".into(),
        name,
        span,
    })
}

/// An error for each of `keys` the source has: they do not apply to `what`.
fn refuse(c: &mut Checker<'_>, r: &RawSource, keys: &[&str], what: &str) {
    let spans = [
        ("sha256", r.sha256.as_ref().map(|d| d.span())),
        ("sha512", r.sha512.as_ref().map(|d| d.span())),
        ("unpack", r.unpack.as_ref().map(|d| d.span())),
        (
            "strip-components",
            r.strip_components.as_ref().map(|d| d.span()),
        ),
        ("file-name", r.file_name.as_ref().map(|d| d.span())),
        ("version", r.version.as_ref().map(|d| d.span())),
        ("h1", r.h1.as_ref().map(|d| d.span())),
        ("digest", r.digest.as_ref().map(|d| d.span())),
        ("platform", r.platform.as_ref().map(|d| d.span())),
        ("mirrors", r.mirrors.as_ref().map(|d| d.span())),
    ];
    for (key, span) in spans {
        if let Some(span) = span.filter(|_| keys.contains(&key)) {
            c.err(span, format!("`{key}` does not apply to {what}"));
        }
    }
}
