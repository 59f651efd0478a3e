//! The seccomp filter every sandbox runs under.
//!
//! A deny-list after Docker's default profile: everything a program without capabilities
//! ordinarily does (CPython, uv, pytest, a shell and coreutils, and `setpriv` leaving root) is
//! allowed, and the calls that only widen the kernel's attack surface or reach beyond the
//! sandbox are refused with `EPERM`:
//!
//! - inspecting or steering other processes: `ptrace`, `process_vm_readv`/`writev`, `kcmp`,
//!   `pidfd_getfd`, `process_madvise`;
//! - kernel subsystems that have been a steady source of privilege escalations: `bpf`,
//!   `perf_event_open`, `userfaultfd`, `fanotify_init`, the key store (`keyctl`, `add_key`,
//!   `request_key`) and `io_uring`;
//! - namespaces and mounts: `unshare`, `setns`, `clone` with any `CLONE_NEW*` flag, `mount`,
//!   `umount2`, `pivot_root`, `chroot` and the new mount API (`open_tree`, `move_mount`,
//!   `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr`);
//! - administering the machine: modules, `kexec`, `reboot`, swap, `acct`, quotas, `syslog`,
//!   the clocks, host and domain names, `vhangup`, file handles (`open_by_handle_at`,
//!   `name_to_handle_at`), `lookup_dcookie`, raw port I/O and obsolete calls;
//! - `personality` except the values Docker allows (Linux, 32-bit uname, their combination
//!   and the query), since the others turn off address space randomisation and the like;
//! - `ioctl` `TIOCSTI` and `TIOCLINUX`, which push input into a terminal;
//! - `socket` of the `AF_VSOCK` family, which reaches the hypervisor around the network
//!   namespace.
//!
//! `clone3` fails with `ENOSYS` instead: its flags are in memory, out of a filter's reach, and
//! `ENOSYS` is what makes glibc fall back to `clone`, whose flags the filter does read.
//!
//! A system call of a foreign ABI kills the process: i386's `int 0x80` on x86_64 and AArch32 on
//! aarch64 (they have numbers of their own, which the rules above do not name), and x86_64's
//! x32 calls, which report the native architecture but number their calls from `0x40000000`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

/// The compiled filter as bubblewrap reads it from `--seccomp FD`: an array of
/// `struct sock_filter` in native byte order.
///
/// Compiled on first use and shared after; an error means this build has no filter (an
/// unsupported architecture), and no sandbox should start.
pub fn program() -> std::io::Result<&'static [u8]> {
    static PROGRAM: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| compile().map(|program| to_bytes(&program)))
        .as_deref()
        .map_err(|e| std::io::Error::other(format!("no seccomp filter: {e}")))
}

/// Calls refused whatever their arguments, on every supported architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_fanotify_init,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_vhangup,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_nfsservctl,
];

#[cfg(target_arch = "x86_64")]
mod arch {
    /// The architecture seccompiler compiles for.
    pub const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    /// `AUDIT_ARCH_X86_64`: `EM_X86_64`, 64-bit, little-endian.
    pub const AUDIT: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// x32 calls come with the native `AUDIT` value; only their numbers tell them apart.
    pub const FOREIGN_NUMBERS_FROM: Option<u32> = Some(0x4000_0000);
    /// Calls only this architecture has: raw port I/O and obsolete interfaces.
    pub const DENIED: &[libc::c_long] =
        &[libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib, libc::SYS_ustat, libc::SYS_sysfs, libc::SYS__sysctl];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// The architecture seccompiler compiles for.
    pub const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    /// `AUDIT_ARCH_AARCH64`: `EM_AARCH64`, 64-bit, little-endian.
    pub const AUDIT: u32 = 183 | 0x8000_0000 | 0x4000_0000;
    /// AArch32 calls carry an `AUDIT` value of their own; no number range to watch.
    pub const FOREIGN_NUMBERS_FROM: Option<u32> = None;
    /// The obsolete calls x86_64 refuses do not exist here.
    pub const DENIED: &[libc::c_long] = &[];
}

/// The `CLONE_NEW*` flags `clone` accepts (`CLONE_NEWTIME` shares its bit with the exit signal
/// there and only `unshare` and `clone3` take it; both are refused whole).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The `personality` values left allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff`, which only reads the current one.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const PERSONAS: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn compile() -> Result<BpfProgram, String> {
    Err(format!("sandboxes have no seccomp filter for {}", std::env::consts::ARCH))
}

/// The whole program: the hand-written prelude, then seccompiler's rules.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn compile() -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules().map_err(|e| e.to_string())?, allow(), refuse(), arch::TARGET)
        .map_err(|e| e.to_string())?;
    let rules: BpfProgram = filter.try_into().map_err(|e: BackendError| e.to_string())?;
    let mut program = prelude();
    program.extend(rules);
    // BPF_MAXINSNS: the kernel refuses longer programs.
    if program.len() > 4096 {
        return Err(format!("the seccomp filter has {} instructions, more than the kernel takes", program.len()));
    }
    Ok(program)
}

fn allow() -> SeccompAction {
    SeccompAction::Allow
}

fn refuse() -> SeccompAction {
    SeccompAction::Errno(libc::EPERM as u32)
}

/// What seccompiler cannot say: it has one action for every rule (`EPERM` here, while
/// `clone3` needs `ENOSYS`) and compares call numbers only for equality (x32 is a range). So
/// these few instructions come first: the architecture check (seccompiler's own repeats it
/// after, harmlessly), the foreign number range, and `clone3`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn prelude() -> BpfProgram {
    // Offsets into `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let load = |offset| insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0);
    let ret = |action| insn(libc::BPF_RET | libc::BPF_K, action, 0, 0);
    // Jumps are relative: 0 falls through to the next instruction (the `ret`), 1 skips it.
    let skip_unless = |op, value| insn(libc::BPF_JMP | op | libc::BPF_K, value, 0, 1);
    let mut program = vec![
        load(ARCH),
        insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, arch::AUDIT, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
    ];
    if let Some(first) = arch::FOREIGN_NUMBERS_FROM {
        program.push(skip_unless(libc::BPF_JGE, first));
        program.push(ret(libc::SECCOMP_RET_KILL_PROCESS));
    }
    program.push(skip_unless(libc::BPF_JEQ, libc::SYS_clone3 as u32));
    program.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    program
}

fn insn(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    // BPF opcodes are 16 bits; libc spells them as u32.
    sock_filter { code: code as u16, jt, jf, k }
}

/// The rules seccompiler compiles: a call matching any of a number's rules is refused; a number
/// with no rules is refused whatever its arguments.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().chain(arch::DENIED).map(|nr| (*nr, Vec::new())).collect();

    // The flags are `clone`'s first argument on both architectures, and the kernel reads only
    // their low 32 bits. Rules are alternatives: one per flag refuses a call with any of them.
    let clone = NAMESPACE_FLAGS
        .iter()
        .map(|flag| rule(vec![condition(0, MaskedEq(*flag as u64), *flag as u64)?]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_clone, clone);

    // Conditions of one rule must all hold: refused when the value is none of the allowed ones.
    let personas = PERSONAS.iter().map(|value| condition(0, Ne, *value)).collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(personas)?]);

    // The request is an `unsigned int`: comparing 32 bits also catches a request with junk in
    // the upper half, which the kernel drops.
    #[allow(clippy::unnecessary_cast)] // libc's `Ioctl` is u64 with glibc but i32 with musl.
    let requests = [libc::TIOCSTI as u64, libc::TIOCLINUX as u64];
    let ioctl = requests.iter().map(|request| rule(vec![condition(1, Eq, *request)?])).collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl);

    rules.insert(libc::SYS_socket, vec![rule(vec![condition(0, Eq, libc::AF_VSOCK as u64)?])?]);
    Ok(rules)
}

/// A condition on the low 32 bits of argument `arg`: every argument filtered here is a C `int`
/// or `unsigned int` (or, for `clone`, read as one by the kernel).
fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(conditions)
}

/// `struct sock_filter` as the kernel lays it out: u16 code, u8 jt, u8 jf, u32 k.
fn to_bytes(program: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for insn in program {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    bytes
}
