use std::io::Read;
fn main() {
    let mut idx = forge_debian::index::Index::default();
    for (f, s) in [
        ("/tmp/deb/Packages-bookworm.xz", "bookworm"),
        ("/tmp/deb/Packages-updates.xz", "bookworm-updates"),
    ] {
        let mut x = String::new();
        liblzma::read::XzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_string(&mut x)
            .unwrap();
        idx.add(&x, s, "amd64").unwrap();
    }
    let req: Vec<String> = std::env::args().skip(1).collect();
    let res = forge_debian::resolve::resolve(&idx, forge_debian::resolve::Variant::Minbase, &req)
        .unwrap();
    let mut debs = Vec::new();
    for p in &res.packages {
        let file = format!("/tmp/deb/pool/{}", p.filename.rsplit('/').next().unwrap());
        println!("{} {}", p.filename, file);
        debs.push(forge_debian::repo::RepoDeb {
            path: file.into(),
            sha256: p.sha256,
            size: p.size,
        });
    }
    std::fs::write(
        "/tmp/deb/list",
        res.packages
            .iter()
            .map(|p| format!("{}\n", p.filename))
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        "/tmp/deb/names",
        res.packages
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
            .join(","),
    )
    .unwrap();
    if std::path::Path::new("/tmp/deb/pool").exists() {
        forge_debian::repo::write(
            std::path::Path::new("/tmp/deb/repo"),
            "bookworm",
            "amd64",
            &debs,
        )
        .unwrap();
    }
}
