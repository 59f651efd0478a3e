//! Egress without the host: a network namespace per sandbox whose only way out is a userspace
//! network stack (`slirp4netns`) that refuses the host's loopback, with routes inside the
//! namespace that make private, link-local and the host's own addresses unreachable unless an
//! operator allows them.
//!
//! How a sandbox's traffic leaves: bubblewrap gives the sandbox a network namespace with only
//! `lo`; [`attach`] starts `slirp4netns`, which puts a tap device (`tap0`, address 10.0.2.100)
//! into it and turns every connection the sandbox makes into an ordinary socket of its own on
//! the host. Before the sandbox's command may run, [`attach`] adds routes inside the namespace:
//! every blocked network is an `unreachable` route, so a connection there fails at once with
//! "no route to host" instead of hanging; an allowed network inside a blocked one gets a more
//! specific route through the link. The sandbox has no capabilities in its namespace, so it
//! cannot change them.
//!
//! What this stops:
//! - the host's loopback (PostgreSQL, Redis and the like on 127.0.0.1): `127.0.0.1` inside is
//!   the sandbox's own loopback, and the link's host alias 10.0.2.2 is refused twice, by
//!   `slirp4netns --disable-host-loopback` and by an unreachable route (it stays the gateway);
//! - the rest of the link's own network 10.0.2.0/24, except the DNS forwarder 10.0.2.3;
//! - "this network" 0/8, the private ranges 10/8, 172.16/12 and 192.168/16, CGNAT 100.64/10,
//!   loopback 127/8, link-local 169.254/16 (the cloud metadata service at 169.254.169.254),
//!   IETF protocol assignments 192.0.0/24, multicast 224/4 and the reserved 240/4 with the
//!   broadcast address (slirp forwards neither multicast nor broadcast in any case);
//! - every IPv4 address of the host's own interfaces (say 192.0.2.2 on eth0, which would reach
//!   anything listening on 0.0.0.0), read when the policy is made and again at every attach,
//!   so that addresses the host gains later are covered too;
//! - IPv6 altogether: slirp runs without IPv6 and IPv6 is switched off on the tap device, so
//!   neither the host's IPv6 addresses nor ULA or link-local ones can be reached.
//!
//! What it does not stop:
//! - It is address-based. A DNS answer that points at a private or host address is not
//!   filtered, but connecting to it fails on the routes like any other address; a name is
//!   only as good as the address it resolves to.
//! - DNS itself: queries to 10.0.2.3, port 53 only, go to the host's resolver, wherever that
//!   is (a resolver on the host's loopback, such as 127.0.0.53, included). That is the one
//!   service of the host a sandbox can talk to.
//! - Other machines on the host's own network when their addresses are not in a blocked range
//!   (a host on a public subnet, or on a documentation range as here): only the host's own
//!   addresses are blocked, not its neighbours.
//! - Anything on the internet, and what an allowed network holds: an allow entry makes its
//!   whole network reachable, the host's own address included when the entry covers it.
//!
//! An allow entry is a CIDR (`10.1.0.0/16`), an address (`10.1.2.3`) or a host name, resolved
//! once when the policy is made (a name that later resolves elsewhere is not followed). IPv6
//! entries, entries inside 127/8 (loopback inside the sandbox is its own) and entries inside
//! the link's 10.0.2.0/24 are refused, since no route could make them reachable.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The `resolv.conf` a sandbox with egress sees: the userspace stack's DNS forwarder.
pub const RESOLV_CONF: &str = "nameserver 10.0.2.3\n";

/// The device slirp4netns creates inside the namespace.
const TAP: &str = "tap0";
/// The link's host alias: the gateway, and (without `--disable-host-loopback`) the host's
/// loopback.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The sandbox's own address on the link (the one slirp4netns recommends).
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The link's MTU, slirp4netns's largest: fewer, larger packets through the userspace stack.
const MTU: u32 = 65520;
/// The link's DNS forwarder, the address [`RESOLV_CONF`] names.
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// slirp4netns's own network (its default `--cidr`).
const LINK: Net = Net::from_parts(Ipv4Addr::new(10, 0, 2, 0), 24);
/// How long slirp4netns may take to bring the link up; it takes milliseconds when the machine
/// is idle, so this only bounds a stuck start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Networks no sandbox reaches unless an allow entry covers them.
const BLOCKED: &[Net] = &[
    Net::from_parts(Ipv4Addr::new(0, 0, 0, 0), 8),
    Net::from_parts(Ipv4Addr::new(10, 0, 0, 0), 8),
    Net::from_parts(Ipv4Addr::new(100, 64, 0, 0), 10),
    Net::from_parts(Ipv4Addr::new(127, 0, 0, 0), 8),
    Net::from_parts(Ipv4Addr::new(169, 254, 0, 0), 16),
    Net::from_parts(Ipv4Addr::new(172, 16, 0, 0), 12),
    Net::from_parts(Ipv4Addr::new(192, 0, 0, 0), 24),
    Net::from_parts(Ipv4Addr::new(192, 168, 0, 0), 16),
    Net::from_parts(Ipv4Addr::new(224, 0, 0, 0), 4),
    Net::from_parts(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// An IPv4 network: an address with its host bits cleared, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Net {
    /// The network of `addr` with `prefix` bits, host bits cleared; `None` for a prefix over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Net> {
        (prefix <= 32).then(|| Net::from_parts(addr, prefix))
    }

    /// A single address (a /32).
    pub fn host(addr: Ipv4Addr) -> Net {
        Net::from_parts(addr, 32)
    }

    const fn from_parts(addr: Ipv4Addr, prefix: u8) -> Net {
        let bits = addr.to_bits() & Net::mask(prefix);
        Net { addr: Ipv4Addr::from_bits(bits), prefix }
    }

    const fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `other` lies wholly inside this network (a network contains itself).
    pub fn contains(&self, other: Net) -> bool {
        other.prefix >= self.prefix && other.addr.to_bits() & Net::mask(self.prefix) == self.addr.to_bits()
    }

    /// Whether `ip` lies inside this network.
    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        self.contains(Net::host(ip))
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Net {
    type Err = String;

    /// `a.b.c.d/len` or a bare `a.b.c.d` (a /32).
    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => {
                (addr, prefix.parse::<u8>().map_err(|_| format!("{s:?}: the prefix length is not a number"))?)
            }
            None => (s, 32),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 address or network"))?;
        Net::new(addr, prefix).ok_or_else(|| format!("{s:?}: an IPv4 prefix is at most 32"))
    }
}

/// Which destinations a sandbox with egress may reach.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    allow: Vec<Net>,
    host_addresses: Vec<Ipv4Addr>,
}

impl EgressPolicy {
    /// The default policy plus the operator's `--tool-egress-allow` entries (CIDRs, addresses or
    /// host names, resolved once here). Empty entries are ignored, so that an empty list from
    /// the environment means none.
    pub fn new(allow: &[String]) -> Result<EgressPolicy, String> {
        let mut nets = Vec::new();
        for entry in allow.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            for net in parse_allow(entry)? {
                if Net::from_parts(Ipv4Addr::LOCALHOST, 8).contains(net) {
                    return Err(format!(
                        "{entry:?} is loopback: inside a sandbox that is its own, and the host's loopback is never \
                         reachable; bind the service to another address and allow that"
                    ));
                }
                if LINK.contains(net) {
                    return Err(format!("{entry:?} is inside {LINK}, the sandbox link's own network"));
                }
                nets.push(net);
            }
        }
        nets.sort();
        nets.dedup();
        let host_addresses = host_ipv4_addresses().map_err(|e| format!("could not list the host's addresses: {e}"))?;
        Ok(EgressPolicy { allow: nets, host_addresses })
    }

    /// The networks allowed although they fall into a blocked range.
    pub fn allowed(&self) -> &[Net] {
        &self.allow
    }

    /// The host's own IPv4 addresses (loopback aside) found when the policy was made.
    pub fn host_addresses(&self) -> &[Ipv4Addr] {
        &self.host_addresses
    }

    /// Whether a sandbox may reach `ip` when `blocked` are the networks with unreachable routes.
    #[cfg(test)]
    fn reachable(&self, blocked: &[Net], ip: Ipv4Addr) -> bool {
        !blocked.iter().any(|b| b.contains_ip(ip)) || self.allow.iter().any(|a| a.contains_ip(ip))
    }

    /// The networks that get an unreachable route, given the host's current addresses: the
    /// blocked ranges and the host's addresses, less what an allow entry covers wholly.
    fn blocked(&self, host_now: &[Ipv4Addr]) -> Vec<Net> {
        let mut blocked: Vec<Net> = BLOCKED.to_vec();
        for ip in self.host_addresses.iter().chain(host_now) {
            let net = Net::host(*ip);
            // The link's addresses inside are slirp's, not the host's, whatever the host uses.
            if !ip.is_loopback() && !LINK.contains(net) && !blocked.contains(&net) {
                blocked.push(net);
            }
        }
        blocked.retain(|b| !self.allow.iter().any(|a| a.contains(*b)));
        blocked
    }

    /// The `ip -batch` commands that bring the link up and make the namespace's routes follow
    /// the policy.
    fn route_script(&self, host_now: &[Ipv4Addr]) -> String {
        use std::fmt::Write;
        let blocked = self.blocked(host_now);
        let mut script = String::new();
        let _ = writeln!(script, "link set dev {TAP} mtu {MTU} up");
        let _ = writeln!(script, "addr add {GUEST}/{} dev {TAP}", LINK.prefix);
        let _ = writeln!(script, "route add default via {GATEWAY} dev {TAP}");
        for net in &blocked {
            let _ = writeln!(script, "route add unreachable {net}");
        }
        for net in &self.allow {
            if blocked.iter().any(|b| b.contains(*net)) {
                let _ = writeln!(script, "route add {net} via {GATEWAY} dev {TAP}");
            }
        }
        // The link's own network: all of it unreachable but the DNS forwarder. The halves are
        // more specific than the kernel's /24 route of the link, which stays for the gateway.
        let half = LINK.prefix + 1;
        let upper = Ipv4Addr::from_bits(LINK.addr.to_bits() | 1 << (32 - u32::from(half)));
        let _ = writeln!(script, "route add unreachable {}", Net::from_parts(LINK.addr, half));
        let _ = writeln!(script, "route add unreachable {}", Net::from_parts(upper, half));
        let _ = writeln!(script, "route add {} dev {TAP}", Net::host(DNS));
        script
    }
}

/// The networks one allow entry stands for.
fn parse_allow(entry: &str) -> Result<Vec<Net>, String> {
    let address = entry.split('/').next().unwrap_or_default();
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!("{entry:?} is IPv6, which sandboxes are not offered"));
    }
    // Host names have a letter somewhere; what has none is meant as an address or network.
    if entry.contains('/') || !entry.chars().any(|c| c.is_ascii_alphabetic()) {
        return Ok(vec![entry.parse::<Net>()?]);
    }
    let resolved = (entry, 0u16).to_socket_addrs().map_err(|e| format!("{entry:?} does not resolve: {e}"))?;
    let nets: Vec<Net> = resolved
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(Net::host(ip)),
            IpAddr::V6(_) => None,
        })
        .collect();
    if nets.is_empty() {
        return Err(format!("{entry:?} has no IPv4 address, and sandboxes are offered IPv4 only"));
    }
    Ok(nets)
}

/// The IPv4 addresses of the host's interfaces, loopback aside.
fn host_ipv4_addresses() -> io::Result<Vec<Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family says its type.
            let family = unsafe { (*entry.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found.push(ip);
                }
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found.sort();
    found.dedup();
    Ok(found)
}

/// A running link between one sandbox's network namespace and the outside; dropping it ends
/// the link.
#[derive(Debug)]
pub struct EgressLink {
    child: Option<Child>,
    /// Our end of slirp4netns's `--exit-fd`: when it closes (this link dropped, or the server
    /// gone however it died), slirp4netns exits.
    _exit: OwnedFd,
    pid: Option<u32>,
}

impl EgressLink {
    /// The host pid of the slirp4netns process carrying the link.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl Drop for EgressLink {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = child.start_kill();
        // Reaped at once where a runtime is at hand; otherwise the kill on drop and tokio's
        // orphan reaping see to it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

/// Where the programs the link needs are; the server's `PATH` may lack the `sbin` directories.
struct Programs {
    slirp4netns: PathBuf,
    ip: PathBuf,
}

/// Found once; a program that is missing is looked for again next time, so that installing it
/// needs no restart.
fn programs() -> io::Result<&'static Programs> {
    static PROGRAMS: OnceLock<Programs> = OnceLock::new();
    if let Some(programs) = PROGRAMS.get() {
        return Ok(programs);
    }
    let missing = |name: &str| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} is not installed; sandboxes with egress need slirp4netns and ip (iproute2)"),
        )
    };
    let slirp4netns = find_program("slirp4netns").ok_or_else(|| missing("slirp4netns"))?;
    let ip = find_program("ip").ok_or_else(|| missing("ip"))?;
    Ok(PROGRAMS.get_or_init(|| Programs { slirp4netns, ip }))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Connects the network namespace of host process `pid` (the sandbox's first process) to the
/// outside under `policy`. `in_user_namespace` says whether the sandbox has a user namespace
/// of its own (the server runs unprivileged), which the link must join as well.
///
/// When this returns, the routes are in place; the sandbox's command must not run before.
pub async fn attach(policy: &EgressPolicy, pid: u32, in_user_namespace: bool) -> io::Result<EgressLink> {
    let started = Instant::now();
    let programs = programs()?;
    let script = policy.route_script(&host_ipv4_addresses()?);
    // Opened once and handed to both slirp4netns and `ip`, so that the routes go into the very
    // namespace the link serves.
    let namespace = |kind: &str| {
        File::open(format!("/proc/{pid}/ns/{kind}"))
            .map_err(|e| io::Error::new(e.kind(), format!("the sandbox's process {pid} is gone: {e}")))
    };
    let net_ns = namespace("net")?;
    // The user namespace to join is the one that owns the network namespace, which is not
    // always the process's own: bubblewrap may nest a second one inside it for the sandbox.
    let user_ns = if in_user_namespace { Some(owner(&net_ns)?) } else { None };

    // Should the routes fail, dropping the link ends slirp4netns again.
    let link = start_slirp(&programs.slirp4netns, pid, &net_ns, user_ns.as_ref()).await?;
    configure(&programs.ip, &script, &net_ns, user_ns.as_ref()).await?;
    tracing::debug!(pid, elapsed_us = started.elapsed().as_micros() as u64, "egress link up");
    Ok(link)
}

/// The user namespace that owns the namespace `ns`.
fn owner(ns: &File) -> io::Result<File> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_USERNS) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("could not find the sandbox's user namespace: {e}")));
    }
    // SAFETY: a fresh descriptor (close-on-exec, as the kernel makes it) owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Starts slirp4netns for the network namespace `net_ns` of the sandbox process `pid`
/// (joining `user_ns` first, when the namespace belongs to a user namespace of the sandbox's)
/// and waits until its link is up.
async fn start_slirp(
    program: &std::path::Path,
    pid: u32,
    net_ns: &File,
    user_ns: Option<&File>,
) -> io::Result<EgressLink> {
    let (ready_ours, ready_theirs) = pipe()?;
    let (exit_theirs, exit_ours) = pipe()?;
    let mut cmd = Command::new(program);
    // Without `--configure`: the link is configured by `configure`, as slirp4netns would
    // also bring the namespace's loopback up, racing bubblewrap, which is still setting it up
    // (and fails when it finds it done).
    cmd.arg(format!("--mtu={MTU}")).args(["--disable-host-loopback", "--enable-seccomp"]);
    cmd.arg(format!("--ready-fd={}", ready_theirs.as_raw_fd()));
    cmd.arg(format!("--exit-fd={}", exit_theirs.as_raw_fd()));
    // The namespaces are handed over as descriptors: the user namespace is known only as the
    // network namespace's owner, with no path of its own.
    let mut pass = vec![ready_theirs.as_raw_fd(), exit_theirs.as_raw_fd(), net_ns.as_raw_fd()];
    if let Some(user_ns) = user_ns {
        pass.push(user_ns.as_raw_fd());
        cmd.arg(format!("--userns-path=/proc/self/fd/{}", user_ns.as_raw_fd()));
    } else {
        // Its own mount namespace and no capabilities once the tap is open. slirp4netns 1.2
        // fails to start with this and a user namespace to join, so only when root.
        cmd.arg("--enable-sandbox");
    }
    cmd.args(["--netns-type=path", &format!("/proc/self/fd/{}", net_ns.as_raw_fd()), TAP]);
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    // SAFETY: only fcntl between fork and exec; the descriptors are open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &pass {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("could not start {}: {e}", program.display())))?;
    drop(ready_theirs);
    drop(exit_theirs);
    let stderr = child.stderr.take();
    let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_ours)?;
    let mut byte = [0u8; 1];
    let failure = match tokio::time::timeout(READY_TIMEOUT, ready.read(&mut byte)).await {
        Ok(Ok(n)) if n > 0 => None,
        Ok(Ok(_)) => Some("exited before the link was up".to_owned()),
        Ok(Err(e)) => Some(format!("could not be waited for: {e}")),
        Err(_) => Some(format!("did not bring the link up within {READY_TIMEOUT:?}")),
    };
    if let Some(what) = failure {
        let _ = child.start_kill();
        let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        let mut said = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_end(&mut said)).await;
        }
        let status = match status {
            Ok(Ok(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        return Err(io::Error::other(format!("slirp4netns {what}{status}: {}", String::from_utf8_lossy(&said).trim())));
    }
    if let Some(stderr) = stderr {
        // What it says later (warnings) is kept in the log; the pipe must not fill up.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(pid, "slirp4netns: {line}");
            }
        });
    }
    let slirp_pid = child.id();
    Ok(EgressLink { child: Some(child), _exit: exit_ours, pid: slirp_pid })
}

/// Runs `ip -batch` with `script` inside the namespace, and switches IPv6 off on the link.
async fn configure(program: &std::path::Path, script: &str, net_ns: &File, user_ns: Option<&File>) -> io::Result<()> {
    let net_fd = net_ns.as_raw_fd();
    let user_fd = user_ns.map(|f| f.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(["-batch", "-"]);
    cmd.env_clear().stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    // SAFETY: only system calls (setns, open, write, close, capget, capset, prctl) between fork
    // and exec, on descriptors open in the parent, a static path and stack values. A forked
    // child is single-threaded, as joining a user namespace requires.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = user_fd {
                // Joining gives every capability in the namespace, which owns the network
                // namespace; but our uid need not be root there (nor mapped yet: the sandbox
                // writes its map concurrently), and exec drops the capabilities of a non-root
                // uid. CAP_NET_ADMIN, all `ip` needs, is kept across it as an ambient one.
                if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                    return Err(io::Error::last_os_error());
                }
                keep_net_admin_across_exec()?;
            }
            if libc::setns(net_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Network sysctls are those of the namespace the opener is in.
            let fd =
                libc::open(c"/proc/sys/net/ipv6/conf/tap0/disable_ipv6".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                let error = io::Error::last_os_error();
                // A kernel without IPv6 has nothing to switch off.
                return if error.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(error) };
            }
            let written = libc::write(fd, b"1".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(io::Error::other("could not switch IPv6 off on the sandbox's link"));
            }
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("could not configure the sandbox's routes: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "could not set the sandbox's routes ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Makes CAP_NET_ADMIN, which the process has, an ambient capability, so that it survives
/// exec. Only system calls: it runs between fork and exec.
fn keep_net_admin_across_exec() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget and capset with a version 3 header and the two data words it takes.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        data[0].inheritable |= 1 << CAP_NET_ADMIN;
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN as libc::c_ulong, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], host: &[[u8; 4]]) -> EgressPolicy {
        let mut policy = EgressPolicy::new(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        policy.host_addresses = host.iter().map(|a| Ipv4Addr::from(*a)).collect();
        policy
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: Net = "10.1.2.3/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.1.0.0/16");
        assert!(net.contains("10.1.200.0/24".parse().unwrap()));
        assert!(!net.contains("10.0.0.0/8".parse().unwrap()));
        assert_eq!("8.8.8.8".parse::<Net>().unwrap().to_string(), "8.8.8.8/32");
        assert_eq!("0.0.0.0/0".parse::<Net>().unwrap().to_string(), "0.0.0.0/0");
        assert!("0.0.0.0/0".parse::<Net>().unwrap().contains_ip(Ipv4Addr::new(1, 2, 3, 4)));
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("10.0.0/8".parse::<Net>().is_err());
    }

    #[test]
    fn entries_that_no_route_could_open_are_refused() {
        for (bad, why) in [
            ("127.0.0.1", "loopback"),
            ("127.0.0.0/8", "loopback"),
            ("localhost", "loopback"),
            ("10.0.2.2", "link's own network"),
            ("10.0.2.0/24", "link's own network"),
            ("fd00::1", "IPv6"),
            ("fd00::/8", "IPv6"),
            ("10.0.0.0/40", "at most 32"),
            ("10.0.0/8", "not an IPv4 address"),
            ("10.0.0.1/x", "not a number"),
        ] {
            let error = EgressPolicy::new(&[bad.to_owned()]).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(EgressPolicy::new(&["".to_owned(), " ".to_owned()]).unwrap().allowed().is_empty());
    }

    #[test]
    fn the_route_script_blocks_ranges_and_host_addresses_and_opens_allowed_holes() {
        let p = policy(&[], &[[192, 0, 2, 2]]);
        let script = p.route_script(&[Ipv4Addr::new(203, 0, 113, 9)]);
        for line in [
            "link set dev tap0 mtu 65520 up",
            "addr add 10.0.2.100/24 dev tap0",
            "route add default via 10.0.2.2 dev tap0",
            "route add unreachable 10.0.0.0/8",
            "route add unreachable 169.254.0.0/16",
            "route add unreachable 192.0.2.2/32",
            "route add unreachable 203.0.113.9/32",
            "route add unreachable 10.0.2.0/25",
            "route add unreachable 10.0.2.128/25",
            "route add 10.0.2.3/32 dev tap0",
        ] {
            assert!(script.lines().any(|l| l == line), "{line} missing from\n{script}");
        }
        assert_eq!(script.matches("via").count(), 1, "only the default route: {script}");

        let p = policy(&["10.1.0.0/16", "192.0.2.2/32", "172.16.0.0/12"], &[[192, 0, 2, 2]]);
        let script = p.route_script(&[]);
        assert!(script.lines().any(|l| l == "route add 10.1.0.0/16 via 10.0.2.2 dev tap0"), "{script}");
        assert!(!script.contains("192.0.2.2"), "{script}");
        assert!(!script.contains("172.16.0.0"), "an allow entry equal to a range removes it: {script}");
        let blocked = p.blocked(&[]);
        assert!(p.reachable(&blocked, Ipv4Addr::new(10, 1, 9, 9)));
        assert!(!p.reachable(&blocked, Ipv4Addr::new(10, 2, 0, 1)));
        assert!(p.reachable(&blocked, Ipv4Addr::new(192, 0, 2, 2)));
        assert!(!p.reachable(&blocked, Ipv4Addr::new(169, 254, 169, 254)));
        assert!(p.reachable(&blocked, Ipv4Addr::new(1, 1, 1, 1)));
    }
}
