//! What the build verbs share: which recipes and images a command line selects, and the
//! lockfile changes a build or lock hands to the project.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use forge_build::engine;
use forge_build::plan::Plan;
use forge_image::run::ImagesResult;
use forge_project::{Definitions, LockChanges};

/// What a command line selected: recipes and images.
#[derive(Debug, Default)]
pub struct Selection {
    pub recipes: Vec<String>,
    pub images: Vec<String>,
}

/// `NAME`, `recipe:NAME`, `image:NAME`, `images`; nothing selects everything.
pub fn select(plan: &Plan, defs: &Definitions, specs: &[String]) -> Result<Selection> {
    if specs.is_empty() {
        return Ok(Selection {
            recipes: plan.order.clone(),
            images: defs.images.keys().cloned().collect(),
        });
    }
    let mut sel = Selection::default();
    let image = |name: &str, sel: &mut Selection| -> Result<()> {
        if !defs.images.contains_key(name) {
            let hint =
                forge_schema::diag::did_you_mean(name, defs.images.keys().map(String::as_str))
                    .map(|b| format!("; did you mean `image:{b}`?"))
                    .unwrap_or_default();
            bail!("no image named `{name}` in images/{hint}");
        }
        if !sel.images.iter().any(|i| i == name) {
            sel.images.push(name.to_string());
        }
        Ok(())
    };
    for spec in specs {
        match spec.split_once(':') {
            _ if spec == "images" => {
                for name in defs.images.keys() {
                    image(name, &mut sel)?;
                }
            }
            Some(("image", name)) => image(name, &mut sel)?,
            None if !plan.recipes.contains_key(spec.as_str())
                && defs.images.contains_key(spec.as_str()) =>
            {
                image(spec, &mut sel)?;
            }
            _ => {
                let name = plan.target(spec)?;
                if !sel.recipes.contains(&name) {
                    sel.recipes.push(name);
                }
            }
        }
    }
    Ok(sel)
}

/// The lockfile changes of a build or lock: the plan's header and recipes (with the
/// layers built now) and the image stage's entries. With `update`, recipes outside it
/// keep their entries (`forge lock --update`).
pub fn lock_changes(
    plan: &Plan,
    defs: &Definitions,
    recipes: &[engine::Outcome],
    images: Option<&ImagesResult>,
    update: Option<&[String]>,
) -> LockChanges {
    let built: BTreeMap<String, forge_store::OutputRecord> = recipes
        .iter()
        .chain(images.iter().flat_map(|i| i.recipe_outcomes.iter()))
        .map(|o| (o.name.clone(), o.record.clone()))
        .collect();
    let empty = ImagesResult::default();
    LockChanges {
        header: Some(plan.header()),
        recipes: Some(plan.recipes_section(&built, update)),
        images: Some(
            images
                .unwrap_or(&empty)
                .section(defs.images.keys().cloned()),
        ),
        templates: Vec::new(),
    }
}
