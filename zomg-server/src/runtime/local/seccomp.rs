//! The seccomp filter of every box process: the system calls that reach past the box.
//!
//! Boxes run as root without user namespaces, and most of what could reach the host is
//! already closed by the capability set (`bundle::capabilities`: no SYS_ADMIN, SYS_MODULE,
//! DAC_READ_SEARCH, ...). What remains are the calls that need no capability but are not
//! namespaced, or that open the kernel's largest attack surfaces to any process:
//! - **user namespaces** (`clone`/`unshare` with `CLONE_NEWUSER`): any process may create
//!   one and holds every capability inside it — mounts, netfilter and the other interfaces
//!   behind most container escapes. `clone3` passes its flags in memory, which a filter
//!   cannot read, so it fails with `ENOSYS` and the C library falls back to `clone` (as
//!   under Docker's default profile). `setns` goes too: without a user namespace of its own
//!   a box has nothing to join;
//! - **kernel keyrings** (`keyctl`, `add_key`, `request_key`): keyrings are keyed by uid, not
//!   by namespace, so root in a box would share root's user keyring with the host and with
//!   every other box;
//! - **host-wide kernel state and attack surface**: the kernel log (`syslog`), `io_uring`,
//!   `userfaultfd`, `perf_event_open`, `bpf`;
//! - as a second fence behind the dropped capabilities: module loading, kexec, handle-based
//!   opens, mounts (old and new API), swap, reboot, accounting, quotas and setting the clock.
//!
//! Everything else is allowed: a box should feel like a whole machine (package managers,
//! `strace`, `ping`, compilers, databases). A denied call fails with `EPERM` (`ENOSYS` for
//! `clone3`), which programs handle as "not allowed here". The rules are listed for every
//! ABI the CPU runs (x86-64, i386 and x32 on x86-64), so a 32-bit program cannot take a
//! different path around them.

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// `CLONE_NEWUSER` from `<linux/sched.h>`.
pub(crate) const CLONE_NEWUSER: u64 = 0x1000_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Denied outright: see the module docs for why each group.
const DENIED: &[&str] = &[
    // Namespaces.
    "setns",
    // Kernel keyrings.
    "keyctl",
    "add_key",
    "request_key",
    // Host-wide kernel state and attack surface.
    "syslog",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "bpf",
    // Behind dropped capabilities already.
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "name_to_handle_at",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
];

/// The ABIs whose system calls the filter covers on this build's CPU.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The filter for a box's `config.json` (`linux.seccomp`).
pub(crate) fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let deny = |names: &[&str], errno: u32| {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno)
            .build()
    };
    // clone(flags, ...) and unshare(flags) take the flags first on every ABI listed above.
    let new_user_ns = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NEWUSER)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()?;
    let syscalls: Vec<LinuxSyscall> = vec![
        deny(DENIED, EPERM)?,
        deny(&["clone3"], ENOSYS)?,
        LinuxSyscallBuilder::default()
            .names(vec!["clone".to_string(), "unshare".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(EPERM)
            .args(vec![new_user_ns])
            .build()?,
    ];
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_allows_by_default_and_denies_the_listed_calls() {
        let json = serde_json::to_value(profile().expect("profile")).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let rules = json["syscalls"].as_array().expect("rules");
        let rule_for = |name: &str| {
            rules
                .iter()
                .find(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
                .unwrap_or_else(|| panic!("no rule for {name}"))
        };
        for name in ["keyctl", "io_uring_setup", "setns", "mount", "bpf"] {
            let rule = rule_for(name);
            assert_eq!(rule["action"], "SCMP_ACT_ERRNO", "{name}");
            assert_eq!(rule["errnoRet"], EPERM, "{name}");
            assert!(
                rule.get("args").is_none(),
                "{name} is denied whatever its arguments"
            );
        }
        assert_eq!(rule_for("clone3")["errnoRet"], ENOSYS);
        let clone = rule_for("clone");
        assert_eq!(clone, rule_for("unshare"));
        assert_eq!(
            clone["args"],
            serde_json::json!([{
                "index": 0,
                "value": CLONE_NEWUSER,
                "valueTwo": CLONE_NEWUSER,
                "op": "SCMP_CMP_MASKED_EQ"
            }])
        );
        for allowed in ["ptrace", "chroot", "socket", "clone"] {
            // `clone` appears only with its argument condition: plain forks stay allowed.
            let unconditional = rules.iter().any(|r| {
                r.get("args").is_none()
                    && r["names"].as_array().unwrap().iter().any(|n| n == allowed)
            });
            assert!(!unconditional, "{allowed} must stay allowed");
        }
    }
}
