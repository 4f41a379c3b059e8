//! Puts the guest linker script on the link search path of every crate that depends on this one,
//! so a guest program's own build script only has to add `-Tframeshift-guest.ld`.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(error) = fs::copy("link.ld", out.join("frameshift-guest.ld")) {
        panic!("cannot copy link.ld to OUT_DIR: {error}");
    }
    println!("cargo:rustc-link-search={}", out.display());
}
