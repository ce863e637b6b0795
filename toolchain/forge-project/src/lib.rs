//! The forge project: where it is (`-C`, the root), what it defines (recipes and images,
//! read only when a command needs them), what it deploys (platform.toml) and what it pins
//! (the lockfile, of which this crate is the only writer).
//!
//! A [`Project`] starts [`Unlocked`]; [`Project::locked`] turns it into a
//! [`Project<Locked>`] once its lockfile is known to exist, and the stages that need pins
//! take only that. Changes to the lockfile come as [`lock::LockChanges`], one section per
//! producer, and are merged and written in one place ([`Project::write_lockfile`]).

pub mod definitions;
mod error;
pub mod lock;
mod project;

pub use definitions::{Definitions, IMAGES_DIR, RECIPES_DIR, variant_names};
pub use error::ProjectError;
pub use lock::{Header, ImagesSection, LockChanges, RecipesSection, TemplateChange};
pub use project::{
    ImageOutput, LockState, Locked, Project, ProjectOptions, ROOT_MARKERS, Unlocked, Written,
};
