//! io_uring under `--enforce`: whether the kernel answers a watched
//! server's io_uring_setup with SIGKILL (uring.bpf.c), and under which rule.
//!
//! A ring's IORING_OP_OPENAT reaches files without the open syscalls the
//! kernel's kill programs hook, so while any open rule is enforced in the
//! kernel a watched server may not set one up. The kill is reported under
//! the first enabled rule of kind `io_uring_setup` (the default pack's
//! `io-uring-setup`); with no such rule enabled, io_uring is allowed: that
//! is how a user lets a server that needs io_uring run under `--enforce`.

use super::compile::Tables;
use crate::event::{Body, Event};
use crate::rules::{EventKind, RuleSet};

/// The value of `ms_enf_cfg.uring`: 1 + the index of the rule the kill is
/// reported under, or 0 when io_uring is allowed (no open is protected in
/// the kernel, or no `io_uring_setup` rule is enabled).
pub fn cfg_value(rules: &RuleSet, t: &Tables) -> u32 {
    if t.files.is_empty() && t.dirs.is_empty() && t.shapes.dirs.is_empty() && t.shapes.names.is_empty() {
        return 0;
    }
    rules
        .rules()
        .position(|r| r.enabled && r.kinds.contains(&EventKind::IoUringSetup))
        .map_or(0, |i| i as u32 + 1)
}

/// The alert is about an io_uring_setup the kernel killed: reported as
/// `killed` whatever the rule's own action (the kill is enforcement's, the
/// rule only names it).
pub fn is_killed_setup(alert: &Event, kernel_killed: bool) -> bool {
    kernel_killed && matches!(&alert.body, Body::Alert(a) if matches!(a.event.body, Body::IoUringSetup { .. }))
}
