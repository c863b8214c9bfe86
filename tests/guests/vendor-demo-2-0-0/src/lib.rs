//! `vendor-demo` 2.0.0: see `tests/guest-src/vendor_demo.rs`.

const VERSION: &str = "2.0.0";
const FILES_TICKETS: bool = true;

include!("../../../guest-src/vendor_demo.rs");
