//! Reading `.deb` files: the control paragraph, and single files of the data archive.

use std::io::{self, Read, Seek};

use crate::control::{self, Paragraph};

/// Opens the member `prefix.tar[.gz|.xz|.zst]` of a .deb as a tar stream.
fn member<'a, R: Read + Seek + 'a>(
    ar: &'a mut ar::Archive<R>,
    prefix: &str,
) -> io::Result<Option<Box<dyn Read + 'a>>> {
    let mut found = None;
    let mut index = 0;
    while let Some(entry) = ar.next_entry() {
        let entry = entry?;
        let id = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        if let Some(ext) = id.strip_prefix(prefix)
            && matches!(ext, ".tar" | ".tar.gz" | ".tar.xz" | ".tar.zst")
        {
            found = Some((index, ext.to_string()));
            break;
        }
        index += 1;
    }
    let Some((index, ext)) = found else {
        return Ok(None);
    };
    let entry = ar.jump_to_entry(index)?;
    let reader: Box<dyn Read + 'a> = match ext.as_str() {
        ".tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
        ".tar.xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(entry)),
        ".tar.zst" => Box::new(zstd::stream::read::Decoder::new(entry)?),
        _ => Box::new(entry),
    };
    Ok(Some(reader))
}

/// The `control` paragraph of a .deb.
pub fn control(deb: impl Read + Seek) -> io::Result<Paragraph> {
    let mut ar = ar::Archive::new(deb);
    let tar = member(&mut ar, "control")?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no control.tar member"))?;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "control" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            return control::parse(&text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                .into_iter()
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty control file"));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no control file in control.tar",
    ))
}

/// The content of one regular file of the data archive (`path` without leading `./`).
pub fn data_file(deb: impl Read + Seek, path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut ar = ar::Archive::new(deb);
    let Some(tar) = member(&mut ar, "data")? else {
        return Ok(None);
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let p = entry.path()?.to_string_lossy().into_owned();
        if p.trim_start_matches("./") == path && entry.header().entry_type().is_file() {
            let mut out = Vec::new();
            entry.read_to_end(&mut out)?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}
