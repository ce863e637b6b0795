//! The `build` step: a program run in the sandbox of [`crate::sandbox`], made of the
//! recipe's tools, and what it wrote to `$out` added to the layer.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use forge_archive::Limits;
use forge_layer::Node;
use forge_schema::paths::ImagePath;
use forge_schema::recipe::{Owner, Run, Step, Unpack};

use super::{Assembly, Materialised, io_err, location};
use crate::BuildError;
use crate::plan::closure;
use crate::sandbox::{self, Failure, Sandbox};

impl Assembly<'_> {
    /// A build step's program and arguments, and its extra environment, rendered if the
    /// step is a template.
    #[allow(clippy::type_complexity)]
    pub(super) fn invocation(
        &self,
        step: &Step,
        run: &Run,
        env: &BTreeMap<String, String>,
        template: bool,
    ) -> Result<(Vec<String>, Vec<(String, String)>), BuildError> {
        let text = |s: &str| {
            if template {
                self.cx.render(step, s)
            } else {
                Ok(s.to_string())
            }
        };
        let argv = match run {
            Run::Command(args) => args.iter().map(|a| text(a)).collect::<Result<_, _>>()?,
            Run::Script(script) => vec!["/bin/sh".into(), "-eu".into(), "-c".into(), text(script)?],
        };
        let env = env
            .iter()
            .map(|(k, v)| Ok((k.clone(), text(v)?)))
            .collect::<Result<_, BuildError>>()?;
        Ok((argv, env))
    }

    /// A `build` step: the program run in a sandbox made of the recipe's tools, and what
    /// it wrote to `$out` added under `path` (modes normalised like a `tree` step).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_step(
        &mut self,
        step: &Step,
        origin: &str,
        path: &ImagePath,
        argv: &[String],
        extra_env: &[(String, String)],
        sources: &[String],
        owner: &Owner,
    ) -> Result<(), BuildError> {
        let r = self.cx.resolved;
        let recipe = r.recipe.name.clone();
        let work = self.cx.work.join(format!("build-step{}", self.step_no));
        let root = work.join("root");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let mut layers = Vec::new();
        for t in closure(self.plan, &r.recipe.tools) {
            let hash = self.plan.recipes[&t].hash;
            let rec = self.cx.store.output(&hash)?.ok_or_else(|| {
                BuildError::Internal(format!("tool `{t}` of recipe `{recipe}` is not built"))
            })?;
            layers.push((self.cx.store.blob_path(&rec.layer_sha256), Unpack::TarZst));
        }
        forge_archive::unpack_layers(
            &layers,
            &root,
            &Limits::default(),
            &format!("the tools of recipe `{recipe}`"),
        )?;
        let mut mounts = Vec::new();
        for name in sources {
            let host = match self.cx.materialise(step, name)? {
                Materialised::File(p) | Materialised::Tree(p) => p.clone(),
            };
            mounts.push((host, name.clone()));
        }
        let sb = Sandbox::prepare(&work, root, &mounts).map_err(io_err(&work))?;
        let program = argv.first().map_or("", String::as_str);
        if sb.find(program).is_none() {
            let host = sandbox::on_host(program).map_or_else(String::new, |p| {
                format!(
                    "; the host has `{}`, but a build never sees the host's programs",
                    p.display()
                )
            });
            return Err(BuildError::ToolMissing {
                recipe,
                location: location(r, step),
                program: program.to_string(),
                detail: format!(
                    "which holds only the files of the recipe's tools ({}){host}",
                    r.recipe.tools.join(", ")
                ),
            });
        }
        let mut env: Vec<(String, String)> = [
            ("PATH", sb.path_var()),
            ("HOME", format!("{}/home", sandbox::BUILD)),
            ("TMPDIR", format!("{}/tmp", sandbox::BUILD)),
            ("TZ", "UTC".into()),
            ("LC_ALL", "C.UTF-8".into()),
            ("LANG", "C.UTF-8".into()),
            ("SOURCE_DATE_EPOCH", self.plan.source_date_epoch.to_string()),
            ("USER", "forge".into()),
            ("LOGNAME", "forge".into()),
            ("out", sandbox::OUT.into()),
            ("src", sandbox::SRC.into()),
            ("FORGE_BUILD_JOBS", self.jobs.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra_env.iter().cloned());
        let log = work.join("log");
        let result = sb.run(argv, &env, &log);
        let kept = if log.exists() {
            Some(self.cx.store.keep_log(&r.hash, self.step_no, &log)?)
        } else {
            None
        };
        // Go's module cache and friends leave read-only directories behind; the work
        // directory must stay removable by the user who runs forge.
        make_writable(&sb.scratch);
        match result {
            Ok(()) => {}
            Err(Failure::NoSandbox(source)) => return Err(BuildError::NoSandbox { source }),
            Err(Failure::Io(source)) => return Err(BuildError::Io { path: log, source }),
            Err(Failure::Exit { status, code, tail }) => {
                let hint = if code == Some(127) {
                    format!(
                        "\nhint: status 127 means a command was not found; the sandbox holds only the files of the tools ({}): add the recipe that installs it to `tools`",
                        r.recipe.tools.join(", ")
                    )
                } else if sandbox::network_hint(&tail) {
                    "\nhint: the sandbox has no network; what a build needs comes in as a source (a `go` source for Go modules)".to_string()
                } else {
                    String::new()
                };
                return Err(BuildError::StepFailed(Box::new(crate::StepFailure {
                    recipe,
                    location: location(r, step),
                    status,
                    tail: tail.iter().map(|l| format!("  | {l}\n")).collect(),
                    log: kept.unwrap_or(log),
                    hint,
                })));
            }
        }
        let empty = fs::read_dir(&sb.out)
            .map_err(io_err(&sb.out))?
            .next()
            .is_none();
        if empty {
            return Err(self.error(
                step,
                format!(
                    "the build step wrote nothing to `$out` ({}); what it writes there becomes the layer under `{path}`",
                    sandbox::OUT
                ),
            ));
        }
        self.insert(path, Node::dir(0o755, owner.uid, owner.gid), origin)?;
        self.tree
            .add_host_tree(&sb.out, Some(path), owner.uid, owner.gid, origin)
            .map_err(|e| BuildError::Layer { recipe, source: e })
    }
}

/// Gives the owner full permission on every directory under `dir` (best effort), so the
/// work directory can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(m) = fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let mode = m.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}
