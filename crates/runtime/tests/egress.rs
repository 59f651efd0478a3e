//! Sandboxes with egress against the real bubblewrap and slirp4netns: the internet (a test
//! network namespace standing for it) is reachable, the host is not, unless allowed.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toolsmith_runtime::egress::{self, EgressPolicy};
use toolsmith_runtime::testnet::Internet;
use toolsmith_runtime::{Limits, Network, Sandbox};

const PYTHON: &str = "/usr/bin/python3";

/// Connects to each `host:port` argument and prints one JSON line per target: whether it
/// connected, the first line the other side sent (or the error) and how long it took.
const PROBE: &str = r#"
import json, socket, sys, time
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    start = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=3) as conn:
            conn.settimeout(3)
            try:
                line = conn.recv(200).decode(errors="replace").strip()
            except OSError:
                line = ""
        result = {"ok": True, "line": line}
    except OSError as e:
        result = {"ok": False, "line": repr(e)}
    result["target"] = target
    result["secs"] = time.monotonic() - start
    print(json.dumps(result), flush=True)
"#;

fn quick() -> Limits {
    Limits { timeout: Duration::from_secs(30), ..Limits::default() }
}

fn egress(allow: &[String]) -> Network {
    Network::Egress(Arc::new(EgressPolicy::new(allow).unwrap()))
}

#[derive(Debug)]
struct Probe {
    ok: bool,
    line: String,
    secs: f64,
}

/// Runs the probe in a sandbox with `network`; one result per target.
async fn probe(network: Network, targets: &[String]) -> HashMap<String, Probe> {
    let mut argv = vec![PYTHON.to_owned(), "-c".to_owned(), PROBE.to_owned()];
    argv.extend(targets.iter().cloned());
    let outcome = Sandbox::new().network(network).limits(quick()).run(&argv).await.unwrap();
    assert!(outcome.success(), "{}", outcome.tail(4000));
    let results: HashMap<String, Probe> = String::from_utf8_lossy(&outcome.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let probe = Probe {
                ok: v["ok"].as_bool().unwrap(),
                line: v["line"].as_str().unwrap().to_owned(),
                secs: v["secs"].as_f64().unwrap(),
            };
            (v["target"].as_str().unwrap().to_owned(), probe)
        })
        .collect();
    assert_eq!(results.len(), targets.len(), "{}", outcome.tail(4000));
    results
}

/// A listener on `addr` that answers every connection with `line`, for the rest of the test.
fn listener(addr: &str, line: &'static str) -> u16 {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(format!("{line}\n").as_bytes());
        }
    });
    port
}

/// One of the host's own non-loopback addresses, other than the test networks' ends.
fn host_address() -> Option<Ipv4Addr> {
    let test_networks: egress::Net = "198.18.0.0/15".parse().unwrap();
    EgressPolicy::new(&[]).unwrap().host_addresses().iter().copied().find(|ip| !test_networks.contains_ip(*ip))
}

fn assert_unreachable(results: &HashMap<String, Probe>, target: &str) {
    let probe = &results[target];
    assert!(!probe.ok, "{target} was reachable: {probe:?}");
    // Refused or unroutable at once, not left to time out.
    assert!(probe.secs < 1.0, "{target} took {:.2}s to fail: {probe:?}", probe.secs);
}

#[tokio::test]
async fn the_hosts_loopback_link_local_and_own_addresses_are_out_of_reach() {
    let internet = Internet::start().unwrap();
    let loopback = listener("127.0.0.1:0", "host loopback");
    let any = listener("0.0.0.0:0", "host any address");
    let host = host_address();
    let mut blocked = vec![
        format!("127.0.0.1:{loopback}"),
        format!("10.0.2.2:{loopback}"),
        format!("10.0.2.3:{loopback}"),
        format!("10.0.2.9:{loopback}"),
        "127.0.0.1:5432".to_owned(),
        "10.0.2.2:5432".to_owned(),
        "169.254.169.254:80".to_owned(),
        "10.1.2.3:53".to_owned(),
        "192.168.1.1:80".to_owned(),
        "172.16.0.1:80".to_owned(),
        "100.64.0.1:80".to_owned(),
        "0.0.0.0:80".to_owned(),
    ];
    if let Some(host) = host {
        blocked.push(format!("{host}:{any}"));
        blocked.push(format!("{host}:5432"));
    } else {
        eprintln!("the host has no address besides loopback: its own address is not tried");
    }
    let internet_target = internet.addr().to_string();
    let mut targets = blocked.clone();
    targets.push(internet_target.clone());

    let results = probe(egress(&[]), &targets).await;
    for target in &blocked {
        assert_unreachable(&results, target);
    }
    // The link works: the same sandbox reaches the internet.
    assert!(results[&internet_target].ok, "{:?}", results[&internet_target]);
    assert_eq!(results[&internet_target].line, internet.greeting());

    // The listeners are there to be reached: with the host's network a sandbox gets to them.
    let mut open = vec![format!("127.0.0.1:{loopback}")];
    if let Some(host) = host {
        open.push(format!("{host}:{any}"));
    }
    let results = probe(Network::Host, &open).await;
    assert!(results.values().all(|p| p.ok), "{results:?}");
}

#[tokio::test]
async fn with_network_off_nothing_is_reachable() {
    let internet = Internet::start().unwrap();
    let loopback = listener("127.0.0.1:0", "host loopback");
    let any = listener("0.0.0.0:0", "host any address");
    let mut targets =
        vec![internet.addr().to_string(), format!("127.0.0.1:{loopback}"), format!("10.0.2.2:{loopback}")];
    if let Some(host) = host_address() {
        targets.push(format!("{host}:{any}"));
    }
    let results = probe(Network::Off, &targets).await;
    for target in &targets {
        assert_unreachable(&results, target);
    }
}

#[tokio::test]
async fn an_allow_entry_opens_the_host_address_or_a_private_network() {
    let internet = Internet::start().unwrap();
    let private = internet.private_addr().unwrap();
    let IpAddr::V4(private_ip) = private.ip() else { unreachable!() };
    let any = listener("0.0.0.0:0", "host any address");
    let host = host_address();
    let mut opened = vec![private.to_string()];
    if let Some(host) = host {
        opened.push(format!("{host}:{any}"));
    }
    // Elsewhere in the private range the allow entry sits in, and the host's loopback, stay shut.
    let still_blocked =
        vec![format!("10.252.0.1:{}", private.port()), format!("10.0.2.2:{any}"), "169.254.169.254:80".to_owned()];
    let mut targets = opened.clone();
    targets.extend(still_blocked.iter().cloned());

    // From the host the private address answers: the test network routes it.
    let mut conn = std::net::TcpStream::connect_timeout(&private, Duration::from_secs(3)).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut conn), &mut line).unwrap();
    assert_eq!(line.trim(), internet.greeting());

    let closed = probe(egress(&[]), &targets).await;
    for target in &targets {
        assert_unreachable(&closed, target);
    }

    let private_net = egress::Net::new(private_ip, 24).unwrap().to_string();
    let mut allow = vec![private_net];
    if let Some(host) = host {
        allow.push(format!("{host}/32"));
    }
    let open = probe(egress(&allow), &targets).await;
    for target in &opened {
        assert!(open[target].ok, "{target} with {allow:?}: {:?}", open[target]);
    }
    assert_eq!(open[&private.to_string()].line, internet.greeting());
    if let Some(host) = host {
        assert_eq!(open[&format!("{host}:{any}")].line, "host any address");
    }
    for target in &still_blocked {
        assert_unreachable(&open, target);
    }
}

#[tokio::test]
async fn code_in_the_sandbox_cannot_change_its_routes() {
    let any = listener("0.0.0.0:0", "host any address");
    let Some(host) = host_address() else {
        eprintln!("the host has no address besides loopback: nothing to open up");
        return;
    };
    let ip = ["/usr/sbin/ip", "/usr/bin/ip"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap();
    // Remove the routes and put a way around them in place; then try the host.
    let script = format!(
        "{ip} route flush table main; {ip} route del unreachable {host}/32; \
         {ip} route add {host}/32 via 10.0.2.2 dev tap0; {ip} link set tap0 down; \
         {PYTHON} -c '{PROBE}' {host}:{any}"
    );
    let outcome = Sandbox::new().network(egress(&[])).limits(quick()).run(&["/bin/sh", "-c", &script]).await.unwrap();
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert_eq!(stderr.matches("Operation not permitted").count(), 4, "{stderr}");
    let out = String::from_utf8_lossy(&outcome.stdout);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["ok"], false, "{result}");
}

/// Looks `example.com` up with the system's resolver and, given a server address, asks that
/// server directly and reads `/etc/resolv.conf`; prints what came of it as JSON.
const LOOKUP: &str = r#"
import json, socket, struct, sys
out = {}
answered = {socket.EAI_NONAME: "no such name", getattr(socket, "EAI_NODATA", socket.EAI_NONAME): "no such name"}
try:
    socket.getaddrinfo("example.com", 80, proto=socket.IPPROTO_TCP)
    out["lookup"] = "resolved"
except socket.gaierror as e:
    out["lookup"] = answered.get(e.errno, "no answer")
if len(sys.argv) > 1:
    out["resolv.conf"] = open("/etc/resolv.conf").read()
    query = struct.pack(">HHHHHH", 0x5A5A, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    sock.sendto(query, (sys.argv[1], 53))
    try:
        reply = sock.recv(4096)
        out["direct"] = reply[:2] == query[:2] and reply[2] & 0x80 != 0
    except OSError:
        out["direct"] = False
print(json.dumps(out))
"#;

#[tokio::test]
async fn names_resolve_through_the_links_dns_forwarder() {
    let outcome =
        Sandbox::new().network(egress(&[])).limits(quick()).run(&[PYTHON, "-c", LOOKUP, "10.0.2.3"]).await.unwrap();
    assert!(outcome.success(), "{}", outcome.tail(4000));
    let inside: serde_json::Value = serde_json::from_slice(&outcome.stdout).unwrap();
    assert_eq!(inside["resolv.conf"], egress::RESOLV_CONF);
    // The same lookup on the host itself, through the host's own resolver.
    let output = tokio::process::Command::new(PYTHON).args(["-c", LOOKUP]).output().await.unwrap();
    let host: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    if host["lookup"] == "no answer" {
        eprintln!("the host's resolver does not answer: DNS through the link is not tried");
        return;
    }
    // Whatever the host's resolver says, the sandbox hears too: an address, or that there is
    // no such name.
    assert_eq!(inside["direct"], true, "{inside}");
    assert_eq!(inside["lookup"], host["lookup"], "inside: {inside}, host: {host}");
}

#[tokio::test]
async fn the_link_ends_with_the_sandbox() {
    let spawned =
        Sandbox::new().network(egress(&[])).spawn(&[PYTHON, "-c", "import time; time.sleep(60)"]).await.unwrap();
    let pid = spawned.egress.as_ref().and_then(|link| link.pid()).expect("a sandbox with egress has a link");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "slirp4netns");
    drop(spawned);
    let started = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(started.elapsed() < Duration::from_secs(5), "slirp4netns {pid} outlived its sandbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host's namespace identity, to tell when a child has left it.
fn net_namespace(pid: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
}

#[tokio::test]
async fn attach_sets_the_routes_before_returning_and_quickly() {
    let policy = EgressPolicy::new(&[]).unwrap();
    let mut timings = Vec::new();
    for _ in 0..5 {
        let mut child = std::process::Command::new("unshare").args(["--net", "sleep", "30"]).spawn().unwrap();
        let pid = child.id();
        let started = Instant::now();
        while net_namespace(&pid.to_string()) == net_namespace("self") {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let link = egress::attach(&policy, pid, false).await.unwrap();
        timings.push(started.elapsed());
        let routes = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "ip", "route", "show"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        for expected in ["default via 10.0.2.2 dev tap0", "unreachable 10.0.0.0/8", "unreachable 169.254.0.0/16"] {
            assert!(routes.contains(expected), "{expected} missing from\n{routes}");
        }
        if let Some(host) = host_address() {
            assert!(routes.contains(&format!("unreachable {host}")), "{routes}");
        }
        let v6 = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "ip", "-6", "addr", "show", "dev", "tap0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&v6.stdout).trim().is_empty(), "IPv6 on the link: {v6:?}");
        drop(link);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    timings.sort();
    eprintln!("attach took {timings:?}");
    // Sandbox start waits for it; a start that takes noticeably long is a regression.
    assert!(timings[timings.len() / 2] < Duration::from_millis(500), "{timings:?}");
}

#[tokio::test]
async fn a_namespace_that_is_gone_is_an_error_that_says_so() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let error = egress::attach(&EgressPolicy::new(&[]).unwrap(), pid, false).await.unwrap_err();
    assert!(error.to_string().contains(&format!("process {pid} is gone")), "{error}");
}

#[test]
fn the_test_network_removes_itself() {
    let internet = Internet::start().unwrap();
    let (addr, device, pid) = (internet.addr(), internet.host_device().to_owned(), internet.pid());
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut conn), &mut line).unwrap();
    assert_eq!(line.trim(), internet.greeting());
    drop(internet);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the server outlived its network");
    let link = std::process::Command::new("ip").args(["link", "show", "dev", &device]).output().unwrap();
    assert!(!link.status.success(), "{device} outlived its network");
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}
