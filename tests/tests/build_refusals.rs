//! Systems the build must refuse, with the Microkit tool's own message.

use frameshift_tests::scenario;

const PPC_TO_LOWER_PRIORITY: &str = "Error: PPCs must be to protection domains of strictly higher priorities; channel with PPC exists from pd client (priority: 100) to pd server (priority: 50)";

#[test]
fn the_parser_refuses_a_ppc_to_a_lower_priority_pd() {
    let system = scenario::system_path("ppc_lower_priority");
    match frameshift_build::sdf::parse_file(&system, &[]) {
        Ok(_) => panic!("{} was accepted", system.display()),
        Err(error) => assert_eq!(error.to_string(), PPC_TO_LOWER_PRIORITY),
    }
}

#[test]
fn the_image_build_refuses_a_ppc_to_a_lower_priority_pd() {
    let system = scenario::system_path("ppc_lower_priority");
    match scenario::build_image(&system, "ppc_lower_priority") {
        Ok(image) => panic!("{} was built into {}", system.display(), image.display()),
        Err(error) => assert!(
            error.contains(PPC_TO_LOWER_PRIORITY),
            "refused for another reason: {error}"
        ),
    }
}

#[test]
fn every_scenario_system_is_valid() {
    for name in [
        "hello",
        "pingpong",
        "ppc",
        "isolation",
        "preemption",
        "panic",
        "wild",
    ] {
        let system = scenario::system_path(name);
        if let Err(error) = frameshift_build::sdf::parse_file(&system, &[]) {
            panic!("{}: {error}", system.display());
        }
    }
    // The default system prefills its guests' RAM with a built guest image, so it is parsed
    // with the firmware's programs directory on the search path, as `cargo xtask run` does.
    let system = frameshift_xtask::firmware::workspace_root().join("system.xml");
    let firmware = scenario::firmware().unwrap_or_else(|error| panic!("firmware: {error}"));
    let paths = frameshift_xtask::tasks::search_paths(&system, &firmware.programs_dir);
    if let Err(error) = frameshift_build::sdf::parse_file(&system, &paths) {
        panic!("{}: {error}", system.display());
    }
}
