//! One integration-test binary (one link on a 2-core machine); each module is one concern.

mod checkpoint;
mod chunks;
mod common;
mod deep;
mod diagnostics;
mod errors;
mod files;
mod init;
mod learning;
mod memory;
mod optimizer;
mod pytorch;
mod tokens;
mod versus_reference;
