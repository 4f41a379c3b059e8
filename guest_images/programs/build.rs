//! Links every guest with the runtime's linker script (which frameshift-guest's build script puts
//! on the link search path). Host builds (a `cargo check` on x86-64) link nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tframeshift-guest.ld");
    }
}
