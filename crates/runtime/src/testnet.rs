//! Test support: a stand-in for "the internet" that sandboxes with egress can be tested
//! against without leaving the machine.
//!
//! [`Internet::start`] starts a TCP server in a network namespace of its own, joined to the
//! host by a veth pair with addresses from 198.18.0.0/15, the range set aside for benchmarking:
//! neither private nor anybody's real service, so the egress policy treats it like any internet
//! address. The server answers every connection with one fixed line. The namespace is the
//! server process's own (not one of `ip netns`'s named ones, whose shared `/run/netns` mount
//! races when several are made at once), so it and the veth pair vanish with the server: when
//! the value is dropped, and also when the test process dies, since the server exits when its
//! standard input closes. It needs root and `ip` (iproute2).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// /30 networks in 198.18.0.0/15.
const SLOTS: u32 = 1 << 15;
const BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);

/// The server: exits when its stdin closes, prints its port, then answers every connection with
/// its first argument.
const SERVER: &str = r#"
import os, socket, sys, threading
def watch():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
server = socket.create_server(("0.0.0.0", 0), backlog=128)
print(server.getsockname()[1], flush=True)
line = (sys.argv[1] + "\n").encode()
while True:
    conn, _ = server.accept()
    try:
        conn.sendall(line)
    except OSError:
        pass
    conn.close()
"#;

/// A network namespace standing for the internet, with a TCP server in it; removed when
/// dropped.
#[derive(Debug)]
pub struct Internet {
    name: String,
    server: Child,
    /// Held open: the server exits when it closes.
    _lifeline: Option<ChildStdin>,
    host_device: String,
    slot: u32,
    inside: Ipv4Addr,
    port: u16,
    greeting: String,
}

impl Internet {
    /// Starts the server in its namespace and links the namespace to the host.
    pub fn start() -> io::Result<Internet> {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let name = format!("ts-inet-{pid}-{n}");
        let greeting = format!("hello from {name}");
        let python = if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let mut cmd = Command::new(python);
        cmd.args(["-c", SERVER, &greeting]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: only unshare between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut server = cmd.spawn()?;
        let lifeline = server.stdin.take();
        let mut first = String::new();
        if let Some(stdout) = server.stdout.take() {
            BufReader::new(stdout).read_line(&mut first)?;
        }
        let Ok(port) = first.trim().parse::<u16>() else {
            let _ = server.kill();
            let mut said = String::new();
            if let Some(mut stderr) = server.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            let _ = server.wait();
            return Err(io::Error::other(format!("the test network's server did not start: {said}")));
        };
        let mut net = Internet {
            name,
            server,
            _lifeline: lifeline,
            host_device: String::new(),
            slot: 0,
            inside: Ipv4Addr::UNSPECIFIED,
            port,
            greeting,
        };

        // Device names are the slots' lock: creating the pair fails while another test (in
        // this process or another) holds the slot.
        let server_pid = net.server.id().to_string();
        let start = pid.wrapping_mul(97).wrapping_add(n.wrapping_mul(7919)) % SLOTS;
        for step in 0..256 {
            let slot = (start + step) % SLOTS;
            let (host_device, inner_device) = (format!("tsh{slot}"), format!("tsn{slot}"));
            match ip(&[
                "link",
                "add",
                &host_device,
                "type",
                "veth",
                "peer",
                "name",
                &inner_device,
                "netns",
                &server_pid,
            ]) {
                Ok(()) => {
                    net.host_device = host_device;
                    net.slot = slot;
                    break;
                }
                Err(e) if e.to_string().contains("exists") => continue,
                Err(e) => return Err(e),
            }
        }
        if net.host_device.is_empty() {
            return Err(io::Error::other("no free 198.18.0.0/15 slot for a test network"));
        }
        let base = BASE.to_bits() + net.slot * 4;
        let host = Ipv4Addr::from_bits(base + 1);
        net.inside = Ipv4Addr::from_bits(base + 2);
        let (host_device, inner_device) = (&net.host_device, format!("tsn{}", net.slot));
        ip_batch(None, &format!("addr add {host}/30 dev {host_device}\nlink set {host_device} up\n"))?;
        ip_batch(
            Some(net.server.id()),
            &format!("link set lo up\naddr add {}/30 dev {inner_device}\nlink set {inner_device} up\n", net.inside),
        )?;
        Ok(net)
    }

    /// Where the server answers, seen from the host (and from a sandbox with egress).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.inside, self.port))
    }

    /// The line the server sends on every connection (without its newline).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// A name for this test network (`ts-inet-<test pid>-<n>`), unique among live ones.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host pid of the server, whose network namespace this is (for `nsenter -t PID -n`).
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    /// The host's end of the veth pair.
    pub fn host_device(&self) -> &str {
        &self.host_device
    }

    /// Makes the server answer at a private address too (in 10.251.0.0/16, one per test
    /// network), routed from the host into the namespace, for tests of what the egress policy
    /// blocks and allows; returns that address with the server's port.
    pub fn private_addr(&self) -> io::Result<SocketAddr> {
        let private = Ipv4Addr::new(10, 251, (self.slot >> 8) as u8, (self.slot & 0xff) as u8);
        ip_batch(Some(self.server.id()), &format!("addr replace {private}/32 dev lo\n"))?;
        ip_batch(None, &format!("route replace {private}/32 via {} dev {}\n", self.inside, self.host_device))?;
        Ok(SocketAddr::from((private, self.port)))
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        // The pair (and the private address's route) would go with the namespace, but the
        // kernel tears namespaces down in the background: deleting it here makes it prompt.
        if !self.host_device.is_empty() {
            let _ = ip(&["link", "del", &self.host_device]);
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn ip_program() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

/// Runs `ip` with `args`; its stderr is the error.
fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new(ip_program()).args(args).stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Runs `script` with `ip -batch`, in the network namespace of process `netns` if given.
fn ip_batch(netns: Option<u32>, script: &str) -> io::Result<()> {
    let mut cmd = Command::new(ip_program());
    cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let namespace = netns.map(|pid| File::open(format!("/proc/{pid}/ns/net"))).transpose()?;
    if let Some(fd) = namespace.as_ref().map(|f| f.as_raw_fd()) {
        // SAFETY: only setns between fork and exec, on a descriptor open in the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip -batch {script:?}: {}", String::from_utf8_lossy(&output.stderr).trim())))
    }
}
