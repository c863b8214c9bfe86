//! What a Python plugin imports, and the WIT world it is built against.
//!
//! componentize-py makes a component import every interface of the world
//! it is given, used or not, and a component's imports are its capability
//! request. So a Python plugin is not built against `plugin-component`
//! (which imports every capability) but against a world of its own that
//! imports what its sources import from `wit_world.imports` — as a Rust
//! plugin imports what it calls. `steward plugin build` and the tests build
//! the same way through these two functions.

use std::collections::BTreeSet;

use crate::capability::Capability;
use crate::imports::{WIT_PACKAGE, WIT_VERSION};

/// The capabilities a Python source imports from `wit_world.imports`
/// (`from wit_world.imports import accounts, tickets`,
/// `import wit_world.imports.backups`), always-granted ones included.
pub fn python_imports(source: &str) -> BTreeSet<Capability> {
    let mut found = BTreeSet::new();
    let mut add = |name: &str| {
        if let Ok(c) = name.trim().parse::<Capability>() {
            found.insert(c);
        }
    };
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("from wit_world.imports import") {
            // One line, or a parenthesised list over several.
            let mut names = rest.to_string();
            if names.contains('(') && !names.contains(')') {
                for more in lines.by_ref() {
                    names.push(' ');
                    names.push_str(more);
                    if more.contains(')') {
                        break;
                    }
                }
            }
            for part in names.replace(['(', ')', '\\'], " ").split(',') {
                // `accounts as acc`
                if let Some(name) = part.split_whitespace().next() {
                    add(name);
                }
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("wit_world.imports.") {
            let after = &rest[at + "wit_world.imports.".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            add(&name);
            rest = after;
        }
    }
    found
}

/// A world importing the always-granted interfaces and `capabilities`, and
/// exporting the plugin interface, of the newest `steward:plugin`; its
/// package is `local:plugin`, with `steward:plugin` expected in `deps/`.
pub fn world(capabilities: &BTreeSet<Capability>) -> String {
    let mut text = String::from(
        "// Written by steward from the plugin's imports; do not edit.\npackage local:plugin;\n\nworld plugin {\n",
    );
    for c in Capability::ALL {
        if c.always_granted() || capabilities.contains(&c) {
            text.push_str(&format!(
                "    import {WIT_PACKAGE}/{}@{WIT_VERSION};\n",
                c.name()
            ));
        }
    }
    text.push_str(&format!(
        "    export {WIT_PACKAGE}/plugin@{WIT_VERSION};\n}}\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_imports_are_read_from_the_sources() {
        let source = "import steward_sdk as s\nfrom wit_world.imports import accounts, tickets as t\nfrom wit_world.imports import (\n    backups,\n    nonsense,\n)\nx = wit_world.imports.packages.updates()\n";
        let found: Vec<&str> = python_imports(source).iter().map(|c| c.name()).collect();
        assert_eq!(found, ["packages", "accounts", "tickets", "backups"]);
        assert!(python_imports("print('hello')").is_empty());
    }

    #[test]
    fn the_world_imports_only_what_is_asked_for() {
        let w = world(&[Capability::Accounts].into_iter().collect());
        assert!(w.contains("import steward:plugin/accounts@0.2.0;"));
        assert!(w.contains("import steward:plugin/log@0.2.0;"));
        assert!(!w.contains("tickets"));
        assert!(w.contains("export steward:plugin/plugin@0.2.0;"));
    }
}
