//! Reading the capabilities of the real plugin components.

use std::collections::BTreeSet;

use steward_contract::imports::{ImportsError, Inspector, inspect};

fn component(name: &str) -> Vec<u8> {
    std::fs::read(steward_tests::component(name)).expect("read a built component")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn first_party_plugins_import_what_they_use() {
    // Each plugin's requestable imports, and nothing always-granted
    // (log, config, clock, state) or shared (types).
    for (plugin, expected, wit) in [
        ("steward-plugin-patching", set(&["packages"]), "0.2.0"),
        ("steward-plugin-antivirus", set(&["antivirus"]), "0.2.0"),
        ("steward-plugin-account-unlock", set(&["accounts"]), "0.2.0"),
        (
            "steward-plugin-backup-check",
            set(&["backups", "tickets"]),
            "0.2.0",
        ),
        ("guest-trivial", set(&[]), "0.2.0"),
        // Built against the released 0.1.0 WIT: read as such.
        ("guest-legacy-v0-1", set(&["packages"]), "0.1.0"),
    ] {
        let imports = inspect(&component(plugin)).unwrap();
        assert_eq!(imports.wit, format!("steward:plugin@{wit}"), "{plugin}");
        assert_eq!(imports.capabilities, expected, "{plugin}");
    }
}

#[test]
fn feeding_in_any_chunk_size_gives_the_same_answer() {
    let bytes = component("steward-plugin-account-unlock");
    let whole = inspect(&bytes).unwrap();
    for size in [1usize, 7, 100, 4096, 65536] {
        let mut inspector = Inspector::new();
        for chunk in bytes.chunks(size) {
            inspector.feed(chunk).unwrap();
        }
        assert_eq!(inspector.finish().unwrap(), whole, "chunks of {size}");
    }
}

#[test]
fn truncated_or_altered_components_are_refused() {
    let bytes = component("steward-plugin-patching");
    let truncated = &bytes[..bytes.len() / 2];
    assert!(matches!(
        inspect(truncated),
        Err(ImportsError::Malformed(_))
    ));
    let mut not_wasm = bytes.clone();
    not_wasm[0] = b'X';
    assert!(matches!(inspect(&not_wasm), Err(ImportsError::NotWasm(_))));
    let mut trailing = bytes;
    trailing.extend_from_slice(b"\x00\x05junk");
    assert!(inspect(&trailing).is_err());
}
