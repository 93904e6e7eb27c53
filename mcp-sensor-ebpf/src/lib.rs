//! The kernel programs of mcp-sensor, compiled from `bpf/*.bpf.c` by
//! `build.rs` and embedded here. `bpf/abi.h` is the kernel/user ABI.

/// Forces the alignment the ELF parser wants on embedded bytes.
#[repr(C, align(32))]
pub struct Aligned<Bytes: ?Sized>(pub Bytes);

static OBJECT_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/mcp-sensor.bpf.o")));
static COMPAT_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/mcp-sensor-compat.bpf.o")));

/// The linked BPF object (all programs, one set of maps), for kernels with
/// `bpf_loop` (5.17+).
pub fn object() -> &'static [u8] {
    &OBJECT_ALIGNED.0
}

/// The same programs built for kernels without `bpf_loop`,
/// `bpf_task_pt_regs` or fetching atomics (5.10-5.16): bounded loops,
/// registers found from the task's stack (bpf/compat.bpf.h).
pub fn compat_object() -> &'static [u8] {
    &COMPAT_ALIGNED.0
}

/// Path of the ABI header, for tests that check the Rust mirror against it.
pub const ABI_HEADER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/abi.h");
