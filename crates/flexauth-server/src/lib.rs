//! flexauth's server: reads the configuration, builds the adapters, and serves the `/v1`
//! HTTP API with actix-web. It holds no business rule: handlers parse HTTP into domain types,
//! call one domain service method, and map the result (errors in exactly one place,
//! [`error::ApiError`]). It is the only crate that knows about HTTP.

pub mod admin;
pub mod auth;
pub mod body_deadline;
pub mod browser;
pub mod client;
pub mod config;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod request_id;
pub mod routes;
pub mod services;
pub mod startup;
pub mod state;
pub mod system;
pub mod worker;

/// The floors of the server, lowest first, as the domain has them: a module may name a module
/// on a lower floor, never one on its own floor or above, so the files form layers with no
/// import loop.
#[cfg(test)]
mod floors {
    const FLOORS: &[&[&str]] = &[
        &["system", "client", "body_deadline", "request_id", "browser"],
        &["config", "connections"],
        &["error"],
        &["metrics"],
        &["state", "worker"],
        &["auth", "middleware"],
        &["routes", "services"],
        &["startup"],
        &["admin"],
    ];

    fn floor(module: &str) -> Option<usize> {
        FLOORS.iter().position(|floor| floor.contains(&module))
    }

    /// Every `crate::<module>` a file names in code, grouped imports included.
    fn named_modules(source: &str) -> Vec<String> {
        let code: String =
            source.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let identifier = |text: &str| -> String {
            text.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        };
        let mut named = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let Some(group) = rest.strip_prefix('{') else {
                named.push(identifier(rest));
                continue;
            };
            let (mut depth, mut item_start) = (1, true);
            for (index, character) in group.char_indices() {
                if item_start && !character.is_whitespace() {
                    item_start = false;
                    if depth == 1 {
                        named.push(identifier(&group[index..]));
                    }
                }
                match character {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    _ => {}
                }
            }
        }
        named.retain(|name| !name.is_empty());
        named
    }

    #[test]
    fn every_file_names_only_modules_on_lower_floors() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 30, "{files:?}");
        let mut upward = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&root).unwrap_or(&file);
            let Some(module) = relative.components().next().and_then(|part| part.as_os_str().to_str()) else {
                continue;
            };
            let module = module.trim_end_matches(".rs");
            if module == "lib" || module == "main" {
                continue;
            }
            let own = floor(module).unwrap_or_else(|| panic!("{module} is on no floor: add it to FLOORS"));
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for named in named_modules(&source) {
                if let Some(theirs) = floor(&named).filter(|_| named != module) {
                    if theirs >= own {
                        upward.push(format!("{} names crate::{named}", relative.display()));
                    }
                }
            }
        }
        upward.sort();
        upward.dedup();
        assert!(upward.is_empty(), "imports that do not point down: {upward:#?}");
    }
}
