//! Passes the EL2 kernel's linker script to the `frameshift-hypervisor` binary (and nothing else:
//! host builds and tests of the library are untouched).

fn main() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/arch/aarch64/kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_arch == "aarch64" && target_os == "none" {
        println!(
            "cargo:rustc-link-arg-bin=frameshift-hypervisor=-T{}",
            script.display()
        );
    }
}
