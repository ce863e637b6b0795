//! The contract between the platform's images and the deploy stages
//! (`forge_schema::contract`): every path, unit and port the deploy code relies on is
//! provided by the recipes of the image it runs on. Read from the recipes themselves, so
//! a recipe that renames a unit or moves a file fails here, not on a cloud instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use forge_project::Definitions;
use forge_schema::contract::{etcd, vault};
use forge_schema::recipe::{Action, Content, Recipe};

/// The recipes of `image`, from the repository's definitions.
fn layers(image: &str) -> Vec<Recipe> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let defs = Definitions::load(repo, None).unwrap();
    let img = &defs.images[image];
    img.layers.iter().map(|l| defs.recipes[l].clone()).collect()
}

/// Every file the recipes write, with its inline text (empty for files from sources).
fn files(recipes: &[Recipe]) -> Vec<(String, String)> {
    let text = |c: &Content| match c {
        Content::Inline(t) => t.clone(),
        Content::Source { .. } => String::new(),
    };
    recipes
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter_map(|s| match &s.action {
            Action::File { path, content, .. } => Some((path.to_string(), text(content))),
            Action::Template { path, template, .. } => Some((path.to_string(), text(template))),
            Action::EnvFile { path, vars, .. } => Some((
                path.to_string(),
                vars.iter()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect::<String>(),
            )),
            _ => None,
        })
        .collect()
}

fn dirs(recipes: &[Recipe]) -> Vec<String> {
    recipes
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter_map(|s| match &s.action {
            Action::Mkdir { path, .. } => Some(path.to_string()),
            _ => None,
        })
        .collect()
}

fn units(recipes: &[Recipe]) -> Vec<String> {
    recipes
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter_map(|s| match &s.action {
            Action::Unit { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn normal(p: &str) -> String {
    format!("/{}", p.trim_start_matches('/'))
}

/// The text of `path` among `files` (of `image`'s recipes); a test failure if none writes it.
fn file_of<'a>(files: &'a [(String, String)], image: &str, path: &str) -> &'a str {
    files
        .iter()
        .find(|(p, _)| normal(p) == path)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("no recipe of the {image} image writes {path}"))
}

#[test]
fn the_vault_image_provides_what_the_deploy_stages_use() {
    let recipes = layers("vault");
    let files = files(&recipes);
    let file = |path: &str| file_of(&files, "vault", path);
    let units = units(&recipes);
    for unit in [vault::SERVER_UNIT, vault::AGENT_UNIT] {
        assert!(units.iter().any(|u| u == unit), "no unit {unit}: {units:?}");
    }
    let dirs: Vec<String> = dirs(&recipes).iter().map(|d| normal(d)).collect();
    for dir in [vault::TLS_DIR, vault::AGENT_CONF_DIR] {
        assert!(
            dirs.iter().any(|d| d == dir),
            "no directory {dir}: {dirs:?}"
        );
    }
    // The user-data fills in these files; together they hold every placeholder, and
    // each holds at least one.
    let mut seen = Vec::new();
    for path in vault::PLACEHOLDER_FILES {
        let text = file(path);
        let here: Vec<&str> = vault::PLACEHOLDERS
            .iter()
            .copied()
            .filter(|p| text.contains(p))
            .collect();
        assert!(!here.is_empty(), "{path} holds no placeholder");
        seen.extend(here);
    }
    for p in vault::PLACEHOLDERS {
        assert!(seen.contains(p), "no file holds {p}");
    }
    // The server serves the API and the cluster on the contract's ports, with the TLS
    // files forge writes.
    let server = file("/etc/vault/server-conf.d/vault.hcl");
    assert!(
        server.contains(&format!(":{}\"", vault::API_PORT)),
        "{server}"
    );
    assert!(
        server.contains(&format!(":{}\"", vault::CLUSTER_PORT)),
        "{server}"
    );
    for f in [vault::CA_FILE, vault::CERT_FILE, vault::KEY_FILE] {
        let path = format!("{}/{f}", vault::TLS_DIR);
        assert!(server.contains(&path), "the server does not read {path}");
    }
    // The agent logs in with the ids the user-data writes.
    let agent = file("/etc/vault/agent-conf.d/vault.hcl");
    for f in [vault::AGENT_ROLE_ID, vault::AGENT_INSTANCE_ID] {
        assert!(agent.contains(f), "the agent does not read {f}: {agent}");
    }
}

#[test]
fn the_etcd_image_provides_what_the_deploy_stages_use() {
    let recipes = layers("etcd");
    let files = files(&recipes);
    let file = |path: &str| file_of(&files, "etcd", path);
    let units = units(&recipes);
    for unit in [etcd::UNIT, etcd::AGENT_UNIT] {
        assert!(units.iter().any(|u| u == unit), "no unit {unit}: {units:?}");
    }
    let dirs: Vec<String> = dirs(&recipes).iter().map(|d| normal(d)).collect();
    assert!(dirs.iter().any(|d| d == etcd::TLS_DIR), "{dirs:?}");
    // Each file holds exactly the placeholders the contract says, so the user-data
    // fills in every one and no other.
    for (path, placeholders) in etcd::PLACEHOLDERS {
        let text = file(path);
        for p in *placeholders {
            assert!(text.contains(p), "{path} does not hold {p}");
        }
    }
    // The agent logs in with the ids the user-data writes and trusts the CA it writes.
    let agent = file(etcd::AGENT_CONFIG);
    for f in [etcd::AGENT_ROLE_ID, etcd::AGENT_INSTANCE_ID, etcd::VAULT_CA] {
        assert!(agent.contains(f), "the agent does not read {f}: {agent}");
    }
    for f in ["ca.pem", "server.pem", "server.key"] {
        let path = format!("{}/{f}", etcd::TLS_DIR);
        assert!(agent.contains(&path), "the agent does not render {path}");
    }
    // The launcher and the wait helper are there; the health endpoint listens on the
    // contract's port and path; etcd serves the contract's ports.
    file(etcd::INIT);
    file(etcd::WAIT_HTTP);
    let nginx = file("/etc/nginx/sites-available/default");
    assert!(
        nginx.contains(&format!("listen {} ", etcd::HEALTH_PORT)),
        "{nginx}"
    );
    assert!(
        nginx.contains(&format!("location = {}", etcd::HEALTH_PATH)),
        "{nginx}"
    );
    let env = file("/etc/etcd/base-environment");
    for port in [etcd::CLIENT_PORT, etcd::PEER_PORT] {
        assert!(env.contains(&format!(":{port}")), "{env}");
    }
}
