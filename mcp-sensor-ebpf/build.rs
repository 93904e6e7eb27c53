//! Compiles bpf/*.bpf.c with clang (CO-RE, BTF) and links them into one
//! object with bpftool, so every program shares one set of maps; twice,
//! for the two kernel generations of bpf/compat.bpf.h. The agent embeds
//! both: `cargo check/clippy/test` never need root.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str =
    "install the kernel-side toolchain: apt-get install -y clang libbpf-dev bpftool";

fn main() {
    let bpf_dir = Path::new("bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=bpf");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(bpf_dir)
        .expect("read bpf/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // Two objects from the same sources (bpf/compat.bpf.h): the full one
    // for kernels with bpf_loop (5.17+), the compat one for 5.10-5.16.
    for (variant, compat) in [("mcp-sensor", "0"), ("mcp-sensor-compat", "1")] {
        let mut objects = Vec::new();
        for src in &sources {
            let stem = src.file_name().unwrap().to_string_lossy().replace(".bpf.c", "");
            let obj = out.join(format!("{stem}.{variant}.o"));
            run(
                Command::new(&clang)
                    .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror", "-D__TARGET_ARCH_x86"])
                    .arg(format!("-DMS_COMPAT={compat}"))
                    .arg("-I")
                    .arg(bpf_dir)
                    .arg("-c")
                    .arg(src)
                    .arg("-o")
                    .arg(&obj),
                &clang,
            );
            objects.push(obj);
        }
        let linked = out.join(format!("{variant}.bpf.o"));
        run(Command::new("bpftool").args(["gen", "object"]).arg(&linked).args(&objects), "bpftool");
    }
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e}; {INSTALL_HINT}");
    });
    if !status.success() {
        panic!("{what} failed ({status}): {cmd:?}");
    }
}
