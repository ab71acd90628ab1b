//! The bounds every spec parse stays within, in time and memory, whoever hands it the text:
//! file and fleet sizes, values per file, and how far YAML aliases may expand (the
//! "billion laughs" class, fixed for Kubernetes as CVE-2019-11253). Input beyond a bound is
//! refused with a `too-large` diagnostic before the part that would cost the memory is built.
//!
//! Callers that read files (fleetctl, watch mode, MCP spec tools, bundles) use
//! [`MAX_FILE_BYTES`] and [`MAX_TOTAL_BYTES`] to stop reading early: a 100 MB file is never
//! read whole just to be refused.

/// The largest spec file: far beyond any fleet (10,000 hosts take about 400 KiB). Its parse
/// is bounded further by [`MAX_VALUES`] (YAML) and [`MAX_KDL_NODES`] (KDL).
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The largest fleet: all spec files of one load (a folder, a revision, a bundle) together.
pub const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// The most values (scalars, lists and mappings, counting what aliases expand to) one file may
/// hold; a few hundred bytes of memory each once read and decoded.
pub const MAX_VALUES: usize = 500_000;

/// The most nodes one KDL file may have. The kdl parser keeps about 4 KiB per node (spans and
/// formatting), so this bounds a parse to ~200 MiB; a fleet of 10,000 hosts takes ~30,000.
pub const MAX_KDL_NODES: usize = 50_000;

/// The most values (node names, arguments and properties) one KDL file may have; about 1 KiB
/// each once parsed.
pub const MAX_KDL_VALUES: usize = 150_000;

/// Aliases may add this many values to a document, or as many as the document has bytes when
/// that is more: generous for anchors that share a block, fatal for exponential expansion.
pub const ALIAS_VALUES_FLOOR: usize = 100_000;

/// Aliases may copy this many bytes of scalar text, or twice the document's bytes when that is
/// more: a large scalar aliased many times costs its size each time.
pub const ALIAS_BYTES_FLOOR: usize = 4 * 1024 * 1024;

/// How many values aliases may add to a document of `len` bytes.
pub fn alias_value_budget(len: usize) -> usize {
    ALIAS_VALUES_FLOOR.max(len)
}

/// How many bytes of scalar text aliases may copy in a document of `len` bytes.
pub fn alias_byte_budget(len: usize) -> usize {
    ALIAS_BYTES_FLOOR.max(len.saturating_mul(2))
}
