//! Comparing two layers, for `forge build --check`: the first entry that differs and how.

use std::fmt;
use std::io::{self, Read};

use forge_schema::{Hasher, Sha256Digest};

/// One entry as read back from a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<String>,
    pub content: Sha256Digest,
}

/// Which attribute of an entry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    Content,
    Mode,
    Mtime,
    Owner,
    Kind,
    LinkTarget,
    /// The entry exists only in the first layer.
    OnlyInFirst,
    /// The entry exists only in the second layer.
    OnlyInSecond,
    /// Entries are the same but the archive bytes differ (order, headers, compression).
    Encoding,
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attribute::Content => "content",
            Attribute::Mode => "mode",
            Attribute::Mtime => "mtime",
            Attribute::Owner => "owner",
            Attribute::Kind => "type",
            Attribute::LinkTarget => "link target",
            Attribute::OnlyInFirst => "missing from the rebuilt layer",
            Attribute::OnlyInSecond => "only in the rebuilt layer",
            Attribute::Encoding => "archive encoding",
        })
    }
}

/// The first difference between two layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub attribute: Attribute,
    pub first: String,
    pub second: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`/{}` differs in {}",
            self.path.trim_end_matches('/'),
            self.attribute
        )?;
        if !self.first.is_empty() || !self.second.is_empty() {
            write!(f, ": {} vs {}", self.first, self.second)?;
        }
        Ok(())
    }
}

/// Reads every entry of a `.tar.zst` layer.
pub fn read_layer(reader: impl Read) -> io::Result<Vec<Entry>> {
    let decoder = zstd::stream::read::Decoder::new(reader)?;
    let mut archive = tar::Archive::new(decoder);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let h = entry.header();
        let kind = format!("{:?}", h.entry_type());
        let mode = h.mode()?;
        let uid = h.uid()?;
        let gid = h.gid()?;
        let mtime = h.mtime()?;
        let size = entry.size();
        let mut hasher = Hasher::new();
        io::copy(&mut entry, &mut hasher)?;
        out.push(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            link,
            content: hasher.finish(),
        });
    }
    Ok(out)
}

/// The first difference between two entry lists, in path order.
pub fn first_difference(a: &[Entry], b: &[Entry]) -> Option<Difference> {
    let mut ia = a.iter().peekable();
    let mut ib = b.iter().peekable();
    loop {
        match (ia.peek(), ib.peek()) {
            (None, None) => return None,
            (Some(x), None) => return Some(only(x, Attribute::OnlyInFirst)),
            (None, Some(y)) => return Some(only(y, Attribute::OnlyInSecond)),
            (Some(x), Some(y)) if x.path < y.path => return Some(only(x, Attribute::OnlyInFirst)),
            (Some(x), Some(y)) if x.path > y.path => return Some(only(y, Attribute::OnlyInSecond)),
            (Some(x), Some(y)) => {
                if let Some(d) = compare(x, y) {
                    return Some(d);
                }
                ia.next();
                ib.next();
            }
        }
    }
}

fn only(e: &Entry, attribute: Attribute) -> Difference {
    Difference {
        path: e.path.clone(),
        attribute,
        first: String::new(),
        second: String::new(),
    }
}

fn compare(x: &Entry, y: &Entry) -> Option<Difference> {
    let d = |attribute, first: String, second: String| {
        Some(Difference {
            path: x.path.clone(),
            attribute,
            first,
            second,
        })
    };
    if x.kind != y.kind {
        return d(Attribute::Kind, x.kind.clone(), y.kind.clone());
    }
    if x.content != y.content || x.size != y.size {
        return d(
            Attribute::Content,
            format!("sha256 {} ({} bytes)", x.content, x.size),
            format!("sha256 {} ({} bytes)", y.content, y.size),
        );
    }
    if x.link != y.link {
        return d(
            Attribute::LinkTarget,
            x.link.clone().unwrap_or_default(),
            y.link.clone().unwrap_or_default(),
        );
    }
    if x.mode != y.mode {
        return d(
            Attribute::Mode,
            format!("{:04o}", x.mode),
            format!("{:04o}", y.mode),
        );
    }
    if x.mtime != y.mtime {
        return d(Attribute::Mtime, x.mtime.to_string(), y.mtime.to_string());
    }
    if (x.uid, x.gid) != (y.uid, y.gid) {
        return d(
            Attribute::Owner,
            format!("{}:{}", x.uid, x.gid),
            format!("{}:{}", y.uid, y.gid),
        );
    }
    None
}

/// Compares two layers; when their entries are equal but the bytes are not, reports the
/// encoding.
pub fn diff_layers(a: impl Read, b: impl Read) -> io::Result<Option<Difference>> {
    // Compare by normalised path in sorted order, whatever order the archives use.
    let normalise = |mut v: Vec<Entry>| {
        for e in &mut v {
            let trimmed = e
                .path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            e.path = trimmed;
        }
        v.sort_by(|x, y| x.path.cmp(&y.path));
        v
    };
    let ea = normalise(read_layer(a)?);
    let eb = normalise(read_layer(b)?);
    Ok(first_difference(&ea, &eb).or_else(|| {
        Some(Difference {
            path: String::new(),
            attribute: Attribute::Encoding,
            first: String::new(),
            second: String::new(),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileData, Kind, LayerTree, Node};
    use forge_schema::paths::ImagePath;

    fn layer(mode: u32, content: &[u8], mtime: u64) -> Vec<u8> {
        let mut t = LayerTree::new();
        t.insert(
            &ImagePath::parse("/etc/a").unwrap(),
            Node {
                kind: Kind::File(FileData::Inline(content.into())),
                mode,
                uid: 0,
                gid: 0,
            },
            "t",
        )
        .unwrap();
        let mut out = Vec::new();
        t.pack(&mut out, mtime, 1).unwrap();
        out
    }

    #[test]
    fn names_first_difference() {
        let base = layer(0o644, b"x", 1);
        let d = diff_layers(&base[..], &layer(0o600, b"x", 1)[..])
            .unwrap()
            .unwrap();
        assert_eq!((d.path.as_str(), d.attribute), ("etc/a", Attribute::Mode));
        assert_eq!(d.to_string(), "`/etc/a` differs in mode: 0644 vs 0600");
        let d = diff_layers(&base[..], &layer(0o644, b"y", 1)[..])
            .unwrap()
            .unwrap();
        assert_eq!(d.attribute, Attribute::Content);
        let d = diff_layers(&base[..], &layer(0o644, b"x", 2)[..])
            .unwrap()
            .unwrap();
        // The implicit parent `etc/` comes first and differs in mtime too.
        assert_eq!((d.path.as_str(), d.attribute), ("etc", Attribute::Mtime));
    }
}
