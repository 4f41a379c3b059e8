#![cfg_attr(target_os = "none", no_std, no_main)]
fn main(_guest: &frameshift_guest::Guest) {}
frameshift_guest::guest_main!(main, devices = []);
