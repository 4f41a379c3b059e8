//! The smallest PD: prints one line and returns to the event loop; with nothing else to do the
//! system goes idle and the hypervisor halts with status 0 (hello.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, pd_name, Handler};

struct Hello;

impl Handler for Hello {}

fn init() -> Hello {
    debug_println!("hello from {}", pd_name());
    Hello
}

frameshift_pd::protection_domain!(init);
