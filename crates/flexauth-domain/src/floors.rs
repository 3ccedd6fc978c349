//! The floors check, shared by the tests of the domain and of the server (the server's test
//! includes this file): the top-level modules of a crate stand on floors, lowest first, and a
//! module may name (`crate::<module>`) only modules on lower floors, so the files form layers
//! with no import loop.

use std::path::{Path, PathBuf};

/// Every `crate::<module>` a source file names in code (doc comments may link anywhere),
/// grouped imports included: `crate::{session::X, account::{A, B}}` names `session` and
/// `account`, over as many lines as rustfmt spreads it.
pub fn named_modules(source: &str) -> Vec<String> {
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
        // The first name of each item of the group, at its outermost level.
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

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// Every `crate::<module>` named by a file under `root` (a crate's `src`) that is on the
/// file's own floor or above, as `file names crate::module`; the modules in `unplaced` (the
/// crate root, shared errors) are not checked.
///
/// # Panics
/// When a module is on no floor, or fewer than `at_least` files were read.
#[allow(clippy::panic)]
pub fn upward_imports(root: &Path, floors: &[&[&str]], unplaced: &[&str], at_least: usize) -> Vec<String> {
    let floor = |module: &str| floors.iter().position(|floor| floor.contains(&module));
    let mut files = Vec::new();
    sources(root, &mut files);
    assert!(files.len() >= at_least, "only {} files under {}", files.len(), root.display());
    let mut upward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        let Some(module) = relative.components().next().and_then(|part| part.as_os_str().to_str()) else {
            continue;
        };
        let module = module.trim_end_matches(".rs");
        if unplaced.contains(&module) {
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
    upward
}

#[test]
fn grouped_imports_name_each_of_their_modules() {
    let source =
        "use crate::{\n    session::Session,\n    account::{Account, EmailAddress},\n};\nuse crate::audit::AuditKind;";
    assert_eq!(named_modules(source), ["session", "account", "audit"]);
}
