//! `cargo xtask build`: build the firmware and write a system's boot image and report to out/.

use std::path::Path;

use super::{build_system, default_out_dir, default_system_path, TaskResult};
use crate::firmware;
use crate::install;

/// Builds the image for `system` (default: `system.xml` at the workspace root) into `out`
/// (default: `out/` at the workspace root).
pub fn build(system: Option<&Path>, out: Option<&Path>) -> TaskResult {
    install::ensure_targets()?;
    let firmware = firmware::build(&firmware::workspace_root())?;
    let system = system.map_or_else(default_system_path, Path::to_owned);
    let out = out.map_or_else(default_out_dir, Path::to_owned);
    let built = build_system(&system, &firmware, &out)?;
    println!("image:  {}", built.image.display());
    println!("report: {}", built.report.display());
    Ok(0)
}
