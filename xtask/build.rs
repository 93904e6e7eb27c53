//! Compiles bpf/hooks.bpf.c (`cargo xtask bench --hooks`) with clang, CO-RE
//! and BTF, against the sensor's vmlinux.h and libbpf's headers, as
//! mcp-sensor-ebpf/build.rs does for the sensor.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=bpf");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror", "-D__TARGET_ARCH_x86"])
        .args(["-I", "../mcp-sensor-ebpf/bpf", "-c", "bpf/hooks.bpf.c", "-o"])
        .arg(out.join("hooks.bpf.o"));
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {clang}: {e}; install the kernel-side toolchain: apt-get install -y clang libbpf-dev")
    });
    assert!(status.success(), "{clang} failed ({status}): {cmd:?}");
}
