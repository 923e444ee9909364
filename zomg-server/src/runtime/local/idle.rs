//! The idle helper: the long-lived child that tini supervises as pid 1's only direct child.
//!
//! tini needs a child to run and exits when that child exits, so a box needs one process that
//! never ends on its own and depends on nothing inside the box's root (a base may lack
//! `sleep`, or even a shell). We generate it: a freestanding static ELF of ~150 bytes that
//! blocks every signal and then sleeps forever. It is written once into the state dir and
//! bind-mounted read-only at [`IDLE_IN_BOX`].
//!
//! Blocking signals matters for `stop`: the runtime sends SIGTERM to every process in the box
//! (`runc kill --all`), tini forwards it to this child, and the child must survive so that
//! tini — and with it the pid namespace — stays up while the user's processes shut down
//! within the grace period. SIGKILL (not blockable) still ends it, and killing tini ends the
//! whole box.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Where the helper appears inside a box (on the fresh `/run` tmpfs).
pub(crate) const IDLE_IN_BOX: &str = "/run/zomg/zomg-idle";

/// The helper's process name (`comm`), used to tell it apart from user processes.
pub(crate) const IDLE_COMM: &str = "zomg-idle";

/// Machine code for x86_64: `rt_sigprocmask(SIG_BLOCK, &!0, NULL, 8); loop { pause() }`.
///
/// ```text
/// 6a ff                 push   $-1           ; the all-ones sigset, on the stack
/// 48 89 e6              mov    %rsp,%rsi
/// 31 ff                 xor    %edi,%edi     ; SIG_BLOCK
/// 31 d2                 xor    %edx,%edx     ; no old set
/// 41 ba 08 00 00 00     mov    $8,%r10d      ; sizeof(sigset_t)
/// b8 0e 00 00 00        mov    $14,%eax      ; rt_sigprocmask
/// 0f 05                 syscall
/// b8 22 00 00 00   1:   mov    $34,%eax      ; pause
/// 0f 05                 syscall
/// eb f7                 jmp    1b
/// ```
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x6a, 0xff, 0x48, 0x89, 0xe6, 0x31, 0xff, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8,
    0x0e, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7,
];
#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 0x3e; // EM_X86_64

/// Machine code for aarch64 (no `pause` syscall there, so `ppoll(NULL, 0, NULL, NULL)`):
///
/// ```text
/// d2800000   mov  x0, #0              ; SIG_BLOCK
/// 92800002   mov  x2, #-1
/// f81f0fe2   str  x2, [sp, #-16]!     ; the all-ones sigset, on the stack
/// 910003e1   mov  x1, sp
/// d2800002   mov  x2, #0              ; no old set
/// d2800103   mov  x3, #8              ; sizeof(sigset_t)
/// d28010e8   mov  x8, #135            ; rt_sigprocmask
/// d4000001   svc  #0
/// d2800000 1: mov x0, #0 ... x4 = 0   ; ppoll(NULL, 0, NULL, NULL, 0)
/// d2800928   mov  x8, #73
/// d4000001   svc  #0
/// 17fffff9   b    1b
/// ```
///
/// Checked with `aarch64-linux-gnu-objdump -D -b binary -m aarch64` and run under
/// `qemu-aarch64`: it survives SIGTERM, dies on SIGKILL and uses no CPU.
#[cfg(target_arch = "aarch64")]
const CODE_WORDS: [u32; 16] = [
    0xd280_0000,
    0x9280_0002,
    0xf81f_0fe2,
    0x9100_03e1,
    0xd280_0002,
    0xd280_0103,
    0xd280_10e8,
    0xd400_0001,
    0xd280_0000,
    0xd280_0001,
    0xd280_0002,
    0xd280_0003,
    0xd280_0004,
    0xd280_0928,
    0xd400_0001,
    0x17ff_fff9,
];
#[cfg(target_arch = "aarch64")]
const MACHINE: u16 = 0xb7; // EM_AARCH64

#[cfg(target_arch = "x86_64")]
fn code() -> Vec<u8> {
    CODE.to_vec()
}

#[cfg(target_arch = "aarch64")]
fn code() -> Vec<u8> {
    CODE_WORDS.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The complete ELF image: one ELF header, one PT_LOAD program header (R+X), then the code.
pub(crate) fn image() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const EHSIZE: u16 = 64;
    const PHSIZE: u16 = 56;
    let code = code();
    let file_size = u64::from(EHSIZE) + u64::from(PHSIZE) + code.len() as u64;
    let entry = BASE + u64::from(EHSIZE) + u64::from(PHSIZE);

    let mut elf = Vec::with_capacity(file_size as usize);
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV, padding.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&MACHINE.to_le_bytes()); // e_machine
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry
    elf.extend_from_slice(&u64::from(EHSIZE).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&EHSIZE.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&PHSIZE.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    // Program header: PT_LOAD, PF_R | PF_X, the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&file_size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&code);
    elf
}

/// Writes the helper to `path` (mode 0555) unless an identical file is already there.
pub(crate) fn install(path: &Path) -> io::Result<()> {
    let image = image();
    if std::fs::read(path).is_ok_and(|existing| existing == image) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &image)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_a_small_static_elf() {
        let image = image();
        assert_eq!(&image[..4], b"\x7fELF");
        assert!(
            image.len() < 256,
            "idle helper grew to {} bytes",
            image.len()
        );
    }

    #[test]
    fn helper_blocks_term_and_dies_on_kill() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("zomg-idle");
        install(&path).expect("install idle helper");
        // Installing twice keeps the same file.
        install(&path).expect("reinstall idle helper");
        let mut child = std::process::Command::new(&path)
            .spawn()
            .expect("run idle helper");
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .expect("SigBlk line")
            .trim()
            .to_string();
        assert_ne!(blocked, "0000000000000000", "idle helper blocks no signals");
        // SIGTERM is blocked: the helper keeps running.
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).expect("pid"),
            rustix::process::Signal::TERM,
        )
        .expect("send TERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "idle helper died on TERM"
        );
        child.kill().expect("send KILL");
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
}
