//! Rendering the lockfile: the canonical text, laid out by forge through `toml_edit`, so the
//! same lockfile always renders to the same bytes.

use super::*;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

impl Lockfile {
    /// The canonical text. The same lockfile always renders to the same bytes.
    pub fn render(&self) -> String {
        let mut doc = DocumentMut::new();
        doc.decor_mut().set_prefix(HEADER);
        doc["version"] = value(i64::from(self.version));
        doc["source-date-epoch"] = value(i64::try_from(self.source_date_epoch).unwrap_or(i64::MAX));
        doc["builder"] = value(self.builder.as_str());
        if !self.tools.is_empty() {
            let mut t = Table::new();
            for (k, v) in &self.tools {
                t[k.as_str()] = value(v.as_str());
            }
            doc["tools"] = Item::Table(t);
        }

        let mut recipes = ArrayOfTables::new();
        for r in self.recipes.values() {
            let mut t = Table::new();
            t["name"] = value(r.name.as_str());
            t["version"] = value(r.version.as_str());
            t["hash"] = value(r.hash.to_hex());
            t["inputs"] = value(string_array(&r.inputs));
            if !r.tools.is_empty() {
                t["tools"] = value(string_array(&r.tools));
            }
            if let Some(l) = r.layer_sha256 {
                t["layer-sha256"] = value(l.to_hex());
            }
            if let Some(s) = r.layer_size {
                t["layer-size"] = value(i64::try_from(s).unwrap_or(i64::MAX));
            }
            if let Some(c) = r.content_sha256 {
                t["content-sha256"] = value(c.to_hex());
            }
            let mut sources = ArrayOfTables::new();
            let mut sorted: Vec<&LockedSource> = r.sources.iter().collect();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            for s in sorted {
                let mut st = Table::new();
                st["name"] = value(s.name.as_str());
                if let Some(p) = &s.path {
                    st["path"] = value(p.as_str());
                }
                if let Some(i) = &s.image {
                    st["image"] = value(i.as_str());
                }
                if !s.urls.is_empty() {
                    st["urls"] = value(string_array(&s.urls));
                }
                if let Some(d) = &s.sha256 {
                    st["sha256"] = value(d.to_hex());
                }
                if let Some(d) = &s.sha512 {
                    st["sha512"] = value(d.to_hex());
                }
                if let Some(d) = &s.digest {
                    st["digest"] = value(d.as_str());
                }
                if let Some(p) = &s.platform {
                    st["platform"] = value(p.as_str());
                }
                if let Some(m) = &s.go_module {
                    st["go-module"] = value(m.as_str());
                }
                if let Some(v) = &s.version {
                    st["version"] = value(v.as_str());
                }
                if let Some(h) = &s.h1 {
                    st["h1"] = value(h.as_str());
                }
                if !s.modules.is_empty() {
                    let mut a = toml_edit::Array::new();
                    for m in &s.modules {
                        let mut v = toml_edit::Value::from(m.as_str());
                        v.decor_mut().set_prefix("\n  ");
                        a.push_formatted(v);
                    }
                    a.set_trailing("\n");
                    a.set_trailing_comma(true);
                    st["modules"] = value(a);
                }
                sources.push(st);
            }
            if !sources.is_empty() {
                t["source"] = Item::ArrayOfTables(sources);
            }
            recipes.push(t);
        }
        if !recipes.is_empty() {
            doc["recipe"] = Item::ArrayOfTables(recipes);
        }
        let mut images = ArrayOfTables::new();
        for i in self.images.values() {
            let mut t = Table::new();
            t["name"] = value(i.name.as_str());
            t["hash"] = value(i.hash.to_hex());
            t["base-hash"] = value(i.base_hash.to_hex());
            if let Some(s) = &i.signed_by {
                t["signed-by"] = value(s.as_str());
            }
            t["suite"] = value(i.suite.as_str());
            t["architecture"] = value(i.architecture.as_str());
            t["layers"] = value(string_array(&i.layers));
            t["boot-modes"] = value(string_array(&i.boot_modes));
            t["format"] = value(i.format.as_str());
            if let Some(o) = i.output_sha256 {
                t["output-sha256"] = value(o.to_hex());
            }
            if let Some(o) = i.output_size {
                t["output-size"] = value(i64::try_from(o).unwrap_or(i64::MAX));
            }
            // One package per line, so a diff shows each upgrade.
            let mut debs = string_array(&i.debs);
            for v in debs.iter_mut() {
                v.decor_mut().set_prefix("\n  ");
            }
            debs.set_trailing("\n");
            debs.set_trailing_comma(true);
            t["debs"] = value(debs);
            images.push(t);
        }
        if !images.is_empty() {
            doc["image"] = Item::ArrayOfTables(images);
        }
        let mut debs = ArrayOfTables::new();
        for d in self.debs.values() {
            let mut t = Table::new();
            t["package"] = value(d.package.as_str());
            t["version"] = value(d.version.as_str());
            t["architecture"] = value(d.architecture.as_str());
            t["path"] = value(d.path.as_str());
            t["sha256"] = value(d.sha256.to_hex());
            t["size"] = value(i64::try_from(d.size).unwrap_or(i64::MAX));
            debs.push(t);
        }
        if !debs.is_empty() {
            doc["deb"] = Item::ArrayOfTables(debs);
        }
        let mut templates = ArrayOfTables::new();
        for tpl in self.templates.values() {
            let mut t = Table::new();
            t["image"] = value(tpl.image.as_str());
            t["zone"] = value(tpl.zone.as_str());
            t["id"] = value(tpl.id.as_str());
            t["name"] = value(tpl.name.as_str());
            t["output-sha256"] = value(tpl.output_sha256.to_hex());
            t["md5"] = value(tpl.md5.as_str());
            t["boot-mode"] = value(tpl.boot_mode.as_str());
            templates.push(t);
        }
        if !templates.is_empty() {
            doc["template"] = Item::ArrayOfTables(templates);
        }
        doc.to_string()
    }
}

fn string_array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}
