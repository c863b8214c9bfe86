//! `vendor-demo` 1.1.0: see `tests/guest-src/vendor_demo.rs`.

const VERSION: &str = "1.1.0";
const FILES_TICKETS: bool = false;

include!("../../../guest-src/vendor_demo.rs");
