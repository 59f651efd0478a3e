//! The seccomp filter, through the real sandbox: the calls it refuses fail inside, and the
//! everyday work of Python tools (threads, subprocesses, forks, sockets) still runs.
//!
//! Each probe is built, where it can be, so that the kernel would answer it with something other
//! than `EPERM` were the filter missing (success, a bad descriptor, a bad address, an invalid
//! flag): `EPERM` then can only have come from the filter. Only `pivot_root`, `move_mount` and
//! `fsmount` check the caller's capabilities before anything else and say `EPERM` either way.

use std::collections::BTreeMap;
use std::time::Duration;

use toolsmith_runtime::sandbox::running_as_root;
use toolsmith_runtime::{Limits, Outcome, Sandbox};

fn quick() -> Limits {
    Limits { timeout: Duration::from_secs(20), ..Limits::default() }
}

async fn python(script: &str) -> Outcome {
    Sandbox::new().limits(quick()).run(&["/usr/bin/python3", "-c", script]).await.unwrap()
}

/// Runs `script` and reads the JSON object it prints last.
async fn python_json(script: &str) -> BTreeMap<String, serde_json::Value> {
    let outcome = python(script).await;
    assert!(outcome.success(), "{}", outcome.tail(4000));
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The numbers of the calls probed, as a Python dict literal, from the target's own table.
fn syscall_numbers() -> String {
    let mut numbers = vec![
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("kcmp", libc::SYS_kcmp),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("process_madvise", libc::SYS_process_madvise),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("open_tree", libc::SYS_open_tree),
        ("move_mount", libc::SYS_move_mount),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("kexec_load", libc::SYS_kexec_load),
        ("init_module", libc::SYS_init_module),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("quotactl_fd", libc::SYS_quotactl_fd),
        ("nfsservctl", libc::SYS_nfsservctl),
        ("personality", libc::SYS_personality),
        ("ioctl", libc::SYS_ioctl),
        ("socket", libc::SYS_socket),
        ("clone", libc::SYS_clone),
        ("clone3", libc::SYS_clone3),
    ];
    #[cfg(target_arch = "x86_64")]
    numbers.extend([("iopl", libc::SYS_iopl), ("ioperm", libc::SYS_ioperm), ("sysfs", libc::SYS_sysfs)]);
    let entries: Vec<String> = numbers.iter().map(|(name, nr)| format!("'{name}': {nr}")).collect();
    format!("{{{}}}", entries.join(", "))
}

/// Calls each probe through `syscall(2)` and prints `{name: errno}` (0 when it succeeded).
const PROBE: &str = r#"
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
parent = os.getpid()
r, w = os.pipe()
CLONE_THREAD, SIGCHLD = 0x10000, 17
NAMESPACES = {"newns": 0x20000, "newcgroup": 0x2000000, "newuts": 0x4000000, "newipc": 0x8000000,
              "newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000}

def arg(a):
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return ctypes.c_long(a) if isinstance(a, int) else a

def call(name, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *[arg(a) for a in args])
    if os.getpid() != parent:
        os._exit(0)  # a clone that should not have happened, running on in the child
    if ret > 0 and name == "clone":
        os.waitpid(ret, 0)
    return ctypes.get_errno() if ret == -1 else 0

me = os.getpid()
PROBES = {
    "clone(CLONE_NEWUSER)": ("clone", NAMESPACES["newuser"] | SIGCHLD, 0, 0, 0, 0),
    "ptrace(PTRACE_TRACEME)": ("ptrace", 0, 0, 0, 0),
    "process_vm_readv": ("process_vm_readv", me, 0, 0, 0, 0, 0),
    "process_vm_writev": ("process_vm_writev", me, 0, 0, 0, 0, 0),
    "kcmp": ("kcmp", me, me, 0, 0, 0),
    "pidfd_getfd": ("pidfd_getfd", -1, 0, 0),
    "process_madvise": ("process_madvise", -1, 0, 0, 0, 0),
    "bpf": ("bpf", -1, 0, 0),
    "perf_event_open": ("perf_event_open", 0, 0, -1, -1, 0),
    "userfaultfd": ("userfaultfd", 1),
    "keyctl": ("keyctl", -1, 0, 0, 0, 0),
    "add_key": ("add_key", 0, 0, 0, 0, 0),
    "request_key": ("request_key", 0, 0, 0, 0),
    "io_uring_setup": ("io_uring_setup", 0, 0),
    "io_uring_enter": ("io_uring_enter", -1, 0, 0, 0, 0, 0),
    "io_uring_register": ("io_uring_register", -1, 0, 0, 0),
    "setns": ("setns", -1, 0),
    "mount": ("mount", 0, 0, 0, 0, 0),
    "umount2": ("umount2", b"/tmp", 0x7fffffff),
    "pivot_root": ("pivot_root", b"/tmp", b"/tmp"),
    "open_tree": ("open_tree", -1, 0, 0),
    "move_mount": ("move_mount", -1, 0, -1, 0, 0),
    "fsconfig": ("fsconfig", -1, 0, 0, 0, 0),
    "fsmount": ("fsmount", -1, 0, 0),
    "mount_setattr": ("mount_setattr", -1, 0, 0, 0, 0),
    "kexec_load": ("kexec_load", 0, 0, 0, 0),
    "init_module": ("init_module", 0, 0, 0),
    "settimeofday": ("settimeofday", 1, 0),
    "clock_settime": ("clock_settime", -1, 0),
    "clock_adjtime": ("clock_adjtime", -1, 0),
    "adjtimex": ("adjtimex", 0),
    "name_to_handle_at": ("name_to_handle_at", -100, b"/", 0, 0, 0),
    "lookup_dcookie": ("lookup_dcookie", 0, 0, 0),
    "quotactl_fd": ("quotactl_fd", -1, 0, 0, 0),
    "nfsservctl": ("nfsservctl", 0, 0, 0),
    "personality(ADDR_NO_RANDOMIZE)": ("personality", 0x0040000),
    "ioctl(TIOCSTI)": ("ioctl", r, 0x5412, b"x"),
    "ioctl(TIOCSTI, upper bits set)": ("ioctl", r, ctypes.c_ulong(0x1_0000_5412), b"x"),
    "ioctl(TIOCLINUX)": ("ioctl", r, 0x541C, b"x"),
    "socket(AF_VSOCK)": ("socket", 40, 1, 0),
    "clone3": ("clone3", 0, 0),
    "iopl": ("iopl", 0),
    "ioperm": ("ioperm", 0, 0, 0),
    "sysfs": ("sysfs", -1),
}
for flag, value in NAMESPACES.items():
    # Without CLONE_SIGHAND the kernel would refuse CLONE_THREAD with EINVAL: no child either way.
    PROBES[f"clone(CLONE_{flag.upper()} | CLONE_THREAD)"] = ("clone", value | CLONE_THREAD, 0, 0, 0, 0)
# Last: without the filter they would move the process into a new user namespace.
PROBES["unshare(CLONE_NEWUSER)"] = ("unshare", NAMESPACES["newuser"])
PROBES["unshare(0)"] = ("unshare", 0)
# Allowed calls, through the same path: the filter looks at arguments, not just numbers.
PROBES["allowed: personality(query)"] = ("personality", 0xffffffff)
PROBES["allowed: clone(CLONE_THREAD)"] = ("clone", CLONE_THREAD, 0, 0, 0, 0)
PROBES["allowed: ioctl(FIONREAD)"] = ("ioctl", r, 0x541B, ctypes.byref(ctypes.c_int()))
PROBES["allowed: socket(AF_UNIX)"] = ("socket", 1, 1, 0)

print(json.dumps({label: call(*probe) for label, probe in PROBES.items() if probe[0] in NR}))
"#;

#[tokio::test]
async fn dangerous_calls_are_refused() {
    let script = format!("NR = {}\n{PROBE}", syscall_numbers());
    let errnos = python_json(&script).await;
    let errno =
        |label: &str| errnos.get(label).and_then(|v| v.as_i64()).unwrap_or_else(|| panic!("no {label}: {errnos:?}"));

    let mut refused = 0;
    for label in errnos.keys().filter(|l| !l.starts_with("allowed:") && *l != "clone3") {
        assert_eq!(errno(label), i64::from(libc::EPERM), "{label} is refused with EPERM: {errnos:?}");
        refused += 1;
    }
    assert!(refused >= 45, "every probe ran: {errnos:?}");
    // ENOSYS makes glibc fall back to clone, whose flags the filter can read.
    assert_eq!(errno("clone3"), i64::from(libc::ENOSYS), "{errnos:?}");

    assert_eq!(errno("allowed: personality(query)"), 0, "{errnos:?}");
    assert_eq!(errno("allowed: ioctl(FIONREAD)"), 0, "{errnos:?}");
    assert_eq!(errno("allowed: socket(AF_UNIX)"), 0, "{errnos:?}");
    // Reaches the kernel, which wants CLONE_SIGHAND with CLONE_THREAD.
    assert_eq!(errno("allowed: clone(CLONE_THREAD)"), i64::from(libc::EINVAL), "{errnos:?}");
}

#[tokio::test]
async fn ordinary_python_work_runs_under_the_filter() {
    let script = r#"
import json, multiprocessing, os, socket, subprocess, threading

results = {}
with open("/proc/self/status") as status:
    results["seccomp"] = [l.split()[1] for l in status if l.startswith("Seccomp:")][0]
results["uid"] = os.getuid()

seen = []
threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
results["threads"] = sorted(seen)

results["subprocess"] = subprocess.run(["sh", "-c", "echo hi"], capture_output=True, text=True).stdout
results["coreutils"] = subprocess.run(["ls", "/usr"], capture_output=True, text=True).returncode

pid = os.fork()
if pid == 0:
    os._exit(7)
results["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

a, b = socket.socketpair()
a.sendall(b"ping")
results["socketpair"] = b.recv(4).decode()

def square(x):
    return x * x

with multiprocessing.get_context("fork").Pool(2) as pool:
    results["multiprocessing"] = pool.map(square, [1, 2, 3])

print(json.dumps(results))
"#;
    let results = python_json(script).await;
    assert_eq!(results["seccomp"], "2", "the filter is in force: {results:?}");
    if running_as_root() {
        // setpriv switched to nobody under the filter: setresuid, setgroups, capset, prctl pass.
        assert_eq!(results["uid"], 65534, "{results:?}");
    }
    assert_eq!(results["threads"], serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(results["subprocess"], "hi\n");
    assert_eq!(results["coreutils"], 0);
    assert_eq!(results["fork"], 7);
    assert_eq!(results["socketpair"], "ping");
    assert_eq!(results["multiprocessing"], serde_json::json!([1, 4, 9]));
}

/// Makes a raw call in a child process and prints how the child ended (a negative return code
/// is the signal that killed it).
#[cfg(target_arch = "x86_64")]
const FOREIGN_CALL: &str = r#"
import subprocess, sys
CHILD = {
    # getpid through the x32 ABI: the native call number with bit 30 set.
    "x32": "import ctypes; ctypes.CDLL(None).syscall(ctypes.c_long(0x40000000 | 39))",
    # getpid (20 on i386) through int 0x80: mov eax, 20; int 0x80; ret.
    "i386": '''
import ctypes, mmap
m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3]))
ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()
''',
}[sys.argv[1]]
print(subprocess.run([sys.executable, "-c", CHILD]).returncode)
"#;

#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn calls_through_a_foreign_abi_kill_the_process() {
    let sigsys = -libc::SIGSYS;
    for abi in ["x32", "i386"] {
        // Without the filter an x32 call answers ENOSYS on kernels built without x32, and an
        // i386 call works on kernels with ia32 emulation: only the filter makes either SIGSYS.
        let host = std::process::Command::new("/usr/bin/python3").args(["-c", FOREIGN_CALL, abi]).output().unwrap();
        let host_code: i32 = String::from_utf8_lossy(&host.stdout).trim().parse().unwrap();
        if abi == "i386" && host_code != 0 {
            eprintln!("this kernel runs no i386 calls (child ended with {host_code}); skipped");
            continue;
        }
        assert_eq!(host_code, 0, "{abi} outside the sandbox");

        let outcome = Sandbox::new().limits(quick()).run(&["/usr/bin/python3", "-c", FOREIGN_CALL, abi]).await.unwrap();
        assert!(outcome.success(), "{}", outcome.tail(2000));
        let code: i32 = String::from_utf8_lossy(&outcome.stdout).trim().parse().unwrap();
        assert_eq!(code, sigsys, "a {abi} call is killed by the filter");
    }
}
