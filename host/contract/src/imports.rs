//! What a component really imports, read from its bytes.
//!
//! The registry does not trust a manifest's `capabilities`: it reads the
//! component's top-level imports and exports with `wasmparser` and compares.
//! Only the top level counts. A component's nested core modules and
//! components are skipped unparsed: they can only reach the host through
//! the top-level imports, which is what the host links and grants.
//!
//! Steward interfaces are named `steward:plugin/<interface>@<version>`.
//! Requestable [capabilities](Capability) are the ones a grant must allow;
//! always-granted ones and `types` are available to every plugin and are
//! not listed in a manifest. Every Steward import and export must name the
//! same package version, and a plugin exports `steward:plugin/plugin`.
//! Every other import is [classified](classify) exactly as a host
//! classifies it when it loads the module: sandboxed WASI 0.2 passes, the
//! network and anything else is refused here already.
//!
//! Parsing is incremental ([`Inspector`]): the server feeds the upload to
//! it chunk by chunk as the bytes arrive, so a module is never held in
//! memory whole. Memory use is bounded by the largest top-level section
//! that is not a nested module or component (type, import and export
//! sections, a few KiB for a plugin).

use std::collections::BTreeSet;

use wasmparser::{Chunk, Encoding, Parser, Payload};

use crate::capability::Capability;

/// The WIT package of the Steward plugin interfaces.
pub const WIT_PACKAGE: &str = "steward:plugin";

/// The newest version of [`WIT_PACKAGE`]: what the SDK builds against and
/// new capabilities appear in.
pub const WIT_VERSION: &str = "0.2.0";

/// Every version of [`WIT_PACKAGE`] this build's hosts run, oldest first.
/// A plugin names one of them in all its Steward imports and its export;
/// hosts link each version's interfaces side by side, so a plugin built
/// for 0.1.0 runs unchanged next to one built for 0.2.0.
pub const WIT_VERSIONS: [&str; 2] = ["0.1.0", WIT_VERSION];

/// Whether hosts of this build run plugins of `steward:plugin@<version>`.
pub fn supported_version(version: &str) -> bool {
    WIT_VERSIONS.contains(&version)
}

/// The shared type definitions: neither a capability nor an export.
pub const TYPES_INTERFACE: &str = "types";

/// The world a plugin exports (`steward:plugin/plugin@<version>`).
pub const PLUGIN_EXPORT: &str = "plugin";

/// What one import of a component is, by its name. The one classification
/// of imports: the registry's publish check, `steward plugin publish` and
/// the host's load all use it, so a module one accepts the others accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportClass<'a> {
    /// `steward:plugin/<capability>@<version>`.
    Capability(Capability, &'a str),
    /// `steward:plugin/types@<version>`.
    Types(&'a str),
    /// A sandboxed WASI 0.2 interface (cli, io, clocks, random,
    /// filesystem): the host provides it with no directories, environment
    /// or network.
    Wasi,
    /// `wasi:sockets` 0.2: linked so components whose toolchain imports it
    /// by default (componentize-py) load, but every operation is denied at
    /// run time: no TCP, no UDP, no name lookup. Shown by `plugin inspect`
    /// as imported and denied.
    WasiDenied,
}

/// An import no host will link, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the component imports `{import}`, {reason}")]
pub struct RefusedImport {
    /// The import's full name.
    pub import: String,
    /// Why it is refused, as the end of a sentence.
    pub reason: String,
}

/// Classifies one import by its name; see [`ImportClass`].
///
/// # Errors
///
/// An import no host links: a `steward:plugin` interface that does not
/// exist, `wasi:http` (and `wasi:sockets` of another version than 0.2),
/// another WASI package or version, or anything else.
pub fn classify(name: &str) -> Result<ImportClass<'_>, RefusedImport> {
    let refuse = |reason: String| RefusedImport {
        import: name.to_string(),
        reason,
    };
    if let Some((interface, version)) = steward_interface(name) {
        if interface == TYPES_INTERFACE {
            return Ok(ImportClass::Types(version));
        }
        return match interface.parse::<Capability>() {
            Ok(c) if c.in_version(version) || !supported_version(version) => {
                Ok(ImportClass::Capability(c, version))
            }
            Ok(c) => Err(refuse(format!(
                "but `{c}` is an interface of `{WIT_PACKAGE}@{}` and later, not of {version}",
                c.since()
            ))),
            Err(_) => Err(refuse(format!(
                "which is not an interface of `{WIT_PACKAGE}`"
            ))),
        };
    }
    if let Some(rest) = name.strip_prefix("wasi:") {
        let package = rest.split('/').next().unwrap_or_default();
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or_default();
        return match package {
            "sockets" if version.starts_with("0.2.") => Ok(ImportClass::WasiDenied),
            "sockets" | "http" => Err(refuse(
                "but plugins have no network access; reach other systems through capabilities"
                    .into(),
            )),
            "cli" | "io" | "clocks" | "random" | "filesystem" if version.starts_with("0.2.") => {
                Ok(ImportClass::Wasi)
            }
            _ => Err(refuse(
                "but hosts provide only a sandboxed WASI 0.2 subset (cli, io, clocks, random, filesystem with no directories)".into(),
            )),
        };
    }
    Err(refuse(format!(
        "which is not part of `{WIT_PACKAGE}`; plugins may import only Steward capabilities and sandboxed WASI"
    )))
}

/// What a component needs from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imports {
    /// `steward:plugin@<version>`: the WIT package version of every Steward
    /// interface the component imports and exports.
    pub wit: String,
    /// The requestable capabilities it imports (`packages`, …).
    pub capabilities: BTreeSet<String>,
}

/// Why a component's imports cannot be read or are not a plugin's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportsError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The component's structure cannot be parsed.
    #[error("the component cannot be parsed: {0}")]
    Malformed(String),
    /// It imports a `steward:plugin` interface that does not exist.
    #[error("the component imports `{0}`, which is not an interface of `{WIT_PACKAGE}`")]
    UnknownInterface(String),
    /// It imports something no host links (the network, other WASI
    /// packages, foreign interfaces).
    #[error(transparent)]
    Refused(RefusedImport),
    /// Its Steward imports and exports name different package versions.
    #[error("the component mixes versions of `{WIT_PACKAGE}`: {}", .0.join(", "))]
    MixedVersions(Vec<String>),
    /// It does not export `steward:plugin/plugin`.
    #[error(
        "the component does not export `{WIT_PACKAGE}/{PLUGIN_EXPORT}`, so it is not a Steward plugin (its exports: {0})"
    )]
    NotAPlugin(String),
}

/// Reads the imports of a whole component in memory.
///
/// # Errors
///
/// See [`ImportsError`].
pub fn inspect(bytes: &[u8]) -> Result<Imports, ImportsError> {
    let mut inspector = Inspector::new();
    inspector.feed(bytes)?;
    inspector.finish()
}

/// The top-level import and export names of a whole component in memory,
/// read with `wasmparser` (nested module bodies skipped), unjudged.
///
/// # Errors
///
/// Bytes that are not a component or do not parse.
pub fn names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), ImportsError> {
    let mut inspector = Inspector::new();
    inspector.feed(bytes)?;
    inspector.finish_names()
}

/// Reads a component's imports from its bytes as they arrive.
///
/// Call [`feed`](Inspector::feed) with each chunk in order, then
/// [`finish`](Inspector::finish). The first error is final: later calls
/// return it again.
#[derive(Debug)]
pub struct Inspector {
    parser: Parser,
    /// Bytes received and not yet parsed (at most one section).
    buf: Vec<u8>,
    /// Bytes of a nested module or component still to skip.
    skip: u64,
    imports: Vec<String>,
    exports: Vec<String>,
    failed: Option<ImportsError>,
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

impl Inspector {
    /// An inspector at the start of a component.
    pub fn new() -> Self {
        Self {
            parser: Parser::new(0),
            buf: Vec::new(),
            skip: 0,
            imports: Vec::new(),
            exports: Vec::new(),
            failed: None,
        }
    }

    /// Takes the next chunk of the component's bytes.
    ///
    /// # Errors
    ///
    /// The component is malformed or not a component; see [`ImportsError`].
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ImportsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.skip > 0 && self.buf.is_empty() {
            // Skipping a nested module: drop its bytes without copying.
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            chunk = &chunk[n..];
            self.skip -= n as u64;
        }
        self.buf.extend_from_slice(chunk);
        self.pump(false)
            .inspect_err(|e| self.failed = Some(e.clone()))
    }

    /// Ends the input and reports what the component imports.
    ///
    /// # Errors
    ///
    /// The component is truncated, malformed, not a component, or not a
    /// Steward plugin; see [`ImportsError`].
    pub fn finish(self) -> Result<Imports, ImportsError> {
        let (imports, exports) = self.finish_names()?;
        analyse(&imports, &exports)
    }

    /// The component's top-level import and export names, unjudged.
    ///
    /// # Errors
    ///
    /// Bytes that are not a component or do not parse.
    pub fn finish_names(mut self) -> Result<(Vec<String>, Vec<String>), ImportsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.skip > 0 {
            return Err(ImportsError::Malformed(
                "the input ends inside a nested module or component".into(),
            ));
        }
        self.pump(true)?;
        Ok((self.imports, self.exports))
    }

    /// Parses as many whole payloads as the buffer holds. With `eof`, the
    /// buffer is the rest of the input and parsing runs to the end.
    fn pump(&mut self, eof: bool) -> Result<(), ImportsError> {
        let mut start = 0usize;
        let result = loop {
            if self.skip > 0 {
                let available = self.buf.len() - start;
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(available);
                start += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    break Ok(());
                }
            }
            let (consumed, payload) = match self.parser.parse(&self.buf[start..], eof) {
                Ok(Chunk::NeedMoreData(_)) => break Ok(()),
                Ok(Chunk::Parsed { consumed, payload }) => (consumed, payload),
                Err(e) => break Err(parse_error(&e)),
            };
            let step = match payload {
                Payload::Version { encoding, .. } => match encoding {
                    Encoding::Component => Ok(Step::Continue),
                    Encoding::Module => Err(ImportsError::CoreModule),
                },
                Payload::ComponentImportSection(reader) => reader
                    .into_iter()
                    .map(|import| import.map(|i| i.name.name.to_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|names| {
                        self.imports.extend(names);
                        Step::Continue
                    })
                    .map_err(|e| parse_error(&e)),
                Payload::ComponentExportSection(reader) => reader
                    .into_iter()
                    .map(|export| export.map(|e| e.name.name.to_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|names| {
                        self.exports.extend(names);
                        Step::Continue
                    })
                    .map_err(|e| parse_error(&e)),
                Payload::ModuleSection {
                    unchecked_range, ..
                }
                | Payload::ComponentSection {
                    unchecked_range, ..
                } => Ok(Step::Skip(unchecked_range.len() as u64)),
                Payload::End(_) => Ok(Step::End),
                _ => Ok(Step::Continue),
            };
            start += consumed;
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::Skip(n)) => self.skip = n,
                Ok(Step::End) => {
                    if start < self.buf.len() {
                        break Err(ImportsError::Malformed(
                            "unexpected bytes after the end of the component".into(),
                        ));
                    }
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..start);
        result
    }
}

/// What to do after a payload.
enum Step {
    Continue,
    /// Drop this many bytes: a nested module or component.
    Skip(u64),
    End,
}

fn parse_error(e: &wasmparser::BinaryReaderError) -> ImportsError {
    let message = e.message().to_string();
    if e.offset() < 8 {
        ImportsError::NotWasm(message)
    } else {
        ImportsError::Malformed(format!("{message} (at byte {})", e.offset()))
    }
}

/// `(interface, version)` of a `steward:plugin/<interface>@<version>` name.
fn steward_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn analyse(imports: &[String], exports: &[String]) -> Result<Imports, ImportsError> {
    let mut versions = BTreeSet::new();
    let mut capabilities = BTreeSet::new();
    for name in imports {
        match classify(name) {
            Ok(ImportClass::Capability(capability, version)) => {
                versions.insert(version.to_owned());
                if !capability.always_granted() {
                    capabilities.insert(capability.name().to_owned());
                }
            }
            Ok(ImportClass::Types(version)) => {
                versions.insert(version.to_owned());
            }
            Ok(ImportClass::Wasi | ImportClass::WasiDenied) => {}
            Err(_) if steward_interface(name).is_some() => {
                return Err(ImportsError::UnknownInterface(name.clone()));
            }
            Err(refused) => return Err(ImportsError::Refused(refused)),
        }
    }
    let mut exports_plugin = false;
    for name in exports {
        if let Some((interface, version)) = steward_interface(name) {
            versions.insert(version.to_owned());
            exports_plugin |= interface == PLUGIN_EXPORT;
        }
    }
    if !exports_plugin {
        return Err(ImportsError::NotAPlugin(if exports.is_empty() {
            "none".into()
        } else {
            exports.join(", ")
        }));
    }
    if versions.len() > 1 {
        return Err(ImportsError::MixedVersions(
            versions
                .into_iter()
                .map(|v| format!("{WIT_PACKAGE}@{v}"))
                .collect(),
        ));
    }
    let version = versions.into_iter().next().unwrap_or_default();
    if semver::Version::parse(&version).is_err() {
        return Err(ImportsError::Malformed(format!(
            "the Steward interfaces carry the version `{version}`, which is not a semver version"
        )));
    }
    Ok(Imports {
        wit: format!("{WIT_PACKAGE}@{version}"),
        capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requestable_imports_become_capabilities() {
        let imports = analyse(
            &names(&[
                "steward:plugin/types@0.1.0",
                "steward:plugin/log@0.1.0",
                "steward:plugin/packages@0.1.0",
                "steward:plugin/tickets@0.1.0",
                "wasi:io/streams@0.2.6",
            ]),
            &names(&["steward:plugin/plugin@0.1.0"]),
        )
        .unwrap();
        assert_eq!(imports.wit, "steward:plugin@0.1.0");
        assert_eq!(
            imports.capabilities,
            ["packages".to_string(), "tickets".to_string()].into()
        );
    }

    #[test]
    fn unknown_interfaces_mixed_versions_and_non_plugins_are_refused() {
        let export = names(&["steward:plugin/plugin@0.1.0"]);
        assert!(matches!(
            analyse(&names(&["steward:plugin/network@0.1.0"]), &export),
            Err(ImportsError::UnknownInterface(_))
        ));
        assert!(matches!(
            analyse(&names(&["steward:plugin/log@0.2.0"]), &export),
            Err(ImportsError::MixedVersions(_))
        ));
        assert!(matches!(
            analyse(&names(&["steward:plugin/log@0.1.0"]), &[]),
            Err(ImportsError::NotAPlugin(_))
        ));
    }

    #[test]
    fn imports_no_host_links_are_refused_at_publish_as_at_load() {
        let export = names(&["steward:plugin/plugin@0.1.0"]);
        for (import, says) in [
            ("wasi:sockets/tcp@0.3.0", "no network access"),
            ("wasi:http/outgoing-handler@0.2.0", "no network access"),
            ("wasi:keyvalue/store@0.2.0", "sandboxed WASI 0.2 subset"),
            ("wasi:io/streams@0.3.0", "sandboxed WASI 0.2 subset"),
            ("acme:evil/exfiltrate@1.0.0", "not part of `steward:plugin`"),
        ] {
            match analyse(&names(&[import]), &export) {
                Err(ImportsError::Refused(r)) => {
                    assert_eq!(r.import, import);
                    assert!(r.to_string().contains(says), "{r}");
                }
                other => panic!("{import}: {other:?}"),
            }
        }
        // The sandboxed subset passes, and so does `wasi:sockets` 0.2,
        // which hosts link with every operation denied.
        assert_eq!(
            classify("wasi:sockets/network@0.2.9"),
            Ok(ImportClass::WasiDenied)
        );
        let imports = analyse(
            &names(&[
                "wasi:io/streams@0.2.6",
                "wasi:cli/stderr@0.2.6",
                "wasi:sockets/tcp@0.2.0",
            ]),
            &export,
        )
        .unwrap();
        assert!(imports.capabilities.is_empty());
    }

    #[test]
    fn non_wasm_and_core_modules_are_refused() {
        assert!(matches!(
            inspect(b"hello world, not wasm"),
            Err(ImportsError::NotWasm(_))
        ));
        assert!(matches!(
            inspect(b""),
            Err(ImportsError::NotWasm(_)) | Err(ImportsError::Malformed(_))
        ));
        // The smallest core module: magic and version 1.
        assert_eq!(inspect(b"\0asm\x01\0\0\0"), Err(ImportsError::CoreModule));
    }

    #[test]
    fn a_truncated_component_is_malformed() {
        // Component header, then a custom section claiming 100 bytes.
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[0, 100, 1, b'x']);
        assert!(matches!(inspect(&bytes), Err(ImportsError::Malformed(_))));
    }
}
