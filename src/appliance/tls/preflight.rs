//! Checks before asking the CA, so a missing DNS record or a closed port 80
//! is said plainly instead of spending Let's Encrypt's failed-validation
//! limit: the domain must resolve to this machine (one of its addresses, or
//! `network.public_ip` behind NAT), and nginx must serve a file from the
//! ACME webroot on port 80, first asked on 127.0.0.1 (is nginx serving it at
//! all?) and then on the address DNS gives (does that address reach us?).
//! Behind NAT the second question may fail only because the router does not
//! loop traffic back inside; that is a warning, not a refusal.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::WEBROOT;
use crate::appliance::{Lang, Root};

/// Where nginx serves the challenge files from, under the webroot.
pub const CHALLENGE_DIR: &str = ".well-known/acme-challenge";

/// How the checks reach the network; [`Network::system`] on the appliance,
/// other resolvers and ports in tests.
pub struct Network<'a> {
    /// Port the CA connects to for HTTP-01 (80 everywhere but tests).
    pub http_port: u16,
    /// Name to addresses.
    pub resolve: &'a dyn Fn(&str) -> std::io::Result<Vec<IpAddr>>,
    /// This machine's own addresses.
    pub local: Vec<IpAddr>,
    /// The public address in front of a NAT (`network.public_ip`).
    pub public_ip: Option<IpAddr>,
    pub timeout: Duration,
}

/// Where systemd-resolved lists the upstream DNS servers it uses; its stub
/// at 127.0.0.53 (named in /etc/resolv.conf) would answer from /etc/hosts.
const UPSTREAM_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The name as the CA sees it: asked of the DNS servers this machine uses,
/// with `dig`, never from /etc/hosts. The appliance's own /etc/hosts maps its
/// domain to 127.0.1.1 (as Debian does), which says nothing about the record
/// Let's Encrypt will find.
pub fn system_resolve(domain: &str) -> std::io::Result<Vec<IpAddr>> {
    let text = std::fs::read_to_string(UPSTREAM_RESOLV_CONF)
        .or_else(|_| std::fs::read_to_string("/etc/resolv.conf"))
        .unwrap_or_default();
    let servers = nameservers(&text);
    if servers.is_empty() {
        return Err(std::io::Error::other(
            "nenhum servidor DNS configurado (/etc/resolv.conf)",
        ));
    }
    dns_lookup(domain, &servers, 53)
}

/// The `nameserver` lines of a resolv.conf; systemd-resolved's own stub is
/// skipped when a real server is listed too.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    let all: Vec<IpAddr> = resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.split('%').next()?.parse().ok(),
                _ => None,
            }
        })
        .collect();
    let stub: IpAddr = Ipv4Addr::new(127, 0, 0, 53).into();
    if all.iter().any(|ip| *ip != stub) {
        all.into_iter().filter(|ip| *ip != stub).collect()
    } else {
        all
    }
}

/// A and AAAA records of `domain` from the first of `servers` that answers
/// (`dig` from bind9-dnsutils; CNAMEs are followed by the server).
pub fn dns_lookup(domain: &str, servers: &[IpAddr], port: u16) -> std::io::Result<Vec<IpAddr>> {
    if crate::command::find_program("dig").is_none() {
        return Err(std::io::Error::other(
            "o programa dig não está instalado (apt-get install bind9-dnsutils)",
        ));
    }
    let mut failures = Vec::new();
    for server in servers {
        let out = crate::command::Cmd::new("dig")
            .args(["+short", "+time=3", "+tries=2", "-p", &port.to_string()])
            .arg(format!("@{server}"))
            .args([domain, "A", domain, "AAAA"])
            .run();
        match out {
            Ok(out) => return Ok(parse_dig(&out.stdout_text())),
            Err(e) => failures.push(format!("{server}: {}", first_line(&e.to_string()))),
        }
    }
    Err(std::io::Error::other(format!(
        "nenhum servidor DNS respondeu ({})",
        failures.join("; ")
    )))
}

/// Addresses in `dig +short` output (CNAME targets and other lines skipped).
pub fn parse_dig(text: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in text.lines().filter_map(|l| l.trim().parse::<IpAddr>().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text)
}

/// This machine's addresses as `hostname -I` prints them.
pub fn parse_addresses(text: &str) -> Vec<IpAddr> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Why the CA would fail; each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The name does not resolve at all.
    NoRecord {
        domain: String,
        expected: Option<IpAddr>,
        cause: String,
    },
    /// Some address of the name is not this machine's.
    Elsewhere {
        domain: String,
        stray: Vec<IpAddr>,
        expected: Vec<IpAddr>,
    },
    /// nginx does not serve the challenge folder on 127.0.0.1.
    NotServed { port: u16, cause: String },
    /// nginx answers locally but not on the address DNS gives.
    Unreachable {
        domain: String,
        address: IpAddr,
        port: u16,
        cause: String,
    },
    /// The token file could not be written.
    Webroot { path: String, cause: String },
}

impl Problem {
    pub fn message(&self, lang: Lang) -> String {
        let list = |ips: &[IpAddr]| {
            ips.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let record = |ip: &IpAddr| if ip.is_ipv6() { "AAAA" } else { "A" };
        match (self, lang) {
            (Problem::NoRecord { domain, expected, cause }, Lang::Pt) => format!(
                "o domínio {domain} não resolve no DNS ({cause}); crie o registro {} {domain} -> {} na zona DNS do tribunal e aguarde a propagação",
                expected.as_ref().map(record).unwrap_or("A"),
                expected.map(|i| i.to_string()).unwrap_or_else(|| "o IP público desta máquina".into()),
            ),
            (Problem::NoRecord { domain, expected, cause }, Lang::En) => format!(
                "the domain {domain} does not resolve ({cause}); create the DNS record {} {domain} -> {} in the court's zone and wait for it to propagate",
                expected.as_ref().map(record).unwrap_or("A"),
                expected.map(|i| i.to_string()).unwrap_or_else(|| "this machine's public IP".into()),
            ),
            (Problem::Elsewhere { domain, stray, expected }, Lang::Pt) => format!(
                "o DNS de {domain} aponta para {}, que não é esta máquina ({}); corrija o registro {} {domain} -> {} (atrás de NAT, informe o IP público em network.public_ip)",
                list(stray),
                list(expected),
                record(&stray[0]),
                expected.iter().find(|i| i.is_ipv6() == stray[0].is_ipv6()).map(|i| i.to_string()).unwrap_or_else(|| format!("um endereço desta máquina, ou remova o registro {}", record(&stray[0]))),
            ),
            (Problem::Elsewhere { domain, stray, expected }, Lang::En) => format!(
                "DNS for {domain} points to {}, which is not this machine ({}); fix the record {} {domain} -> {} (behind NAT, give the public IP as network.public_ip)",
                list(stray),
                list(expected),
                record(&stray[0]),
                expected.iter().find(|i| i.is_ipv6() == stray[0].is_ipv6()).map(|i| i.to_string()).unwrap_or_else(|| format!("an address of this machine, or remove the {} record", record(&stray[0]))),
            ),
            (Problem::NotServed { port, cause }, Lang::Pt) => format!(
                "o nginx não serve /{CHALLENGE_DIR}/ na porta {port} desta máquina ({cause}); veja `systemctl status nginx` e o site em /etc/nginx/sites-enabled/"
            ),
            (Problem::NotServed { port, cause }, Lang::En) => format!(
                "nginx does not serve /{CHALLENGE_DIR}/ on this machine's port {port} ({cause}); see `systemctl status nginx` and the site in /etc/nginx/sites-enabled/"
            ),
            (Problem::Unreachable { domain, address, port, cause }, Lang::Pt) => format!(
                "o nginx responde localmente, mas http://{domain}/ ({address}:{port}) não chega a ele ({cause}); libere TCP {port} de entrada para {address} no firewall (ufw allow {port}/tcp e o firewall do tribunal)"
            ),
            (Problem::Unreachable { domain, address, port, cause }, Lang::En) => format!(
                "nginx answers locally but http://{domain}/ ({address}:{port}) does not reach it ({cause}); allow incoming TCP {port} to {address} in the firewall (ufw allow {port}/tcp and the court's firewall)"
            ),
            (Problem::Webroot { path, cause }, Lang::Pt) => format!(
                "não foi possível gravar o arquivo de teste em {path} ({cause}); confira se o pacote jitsi-meet-web está instalado e rode como root"
            ),
            (Problem::Webroot { path, cause }, Lang::En) => format!(
                "could not write the test file in {path} ({cause}); check that jitsi-meet-web is installed and run as root"
            ),
        }
    }
}

/// Runs the checks; `Ok` carries warnings worth logging.
pub fn check(root: &Root, domain: &str, net: &Network) -> Result<Vec<String>, Problem> {
    let mut warnings = Vec::new();

    // DNS: every address of the name must be ours.
    let mut expected: Vec<IpAddr> = net.public_ip.into_iter().collect();
    for ip in &net.local {
        if !expected.contains(ip) {
            expected.push(*ip);
        }
    }
    let resolved = match (net.resolve)(domain) {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => {
            return Err(Problem::NoRecord {
                domain: domain.to_owned(),
                expected: expected.first().copied(),
                cause: "nenhum endereço".into(),
            })
        }
        Err(e) => {
            return Err(Problem::NoRecord {
                domain: domain.to_owned(),
                expected: expected.first().copied(),
                cause: e.to_string(),
            })
        }
    };
    if expected.is_empty() {
        warnings.push(format!(
            "não sei os endereços desta máquina; não comparei o DNS de {domain} ({resolved:?})"
        ));
    } else {
        let stray: Vec<IpAddr> = resolved
            .iter()
            .filter(|ip| !expected.contains(ip))
            .copied()
            .collect();
        if !stray.is_empty() {
            return Err(Problem::Elsewhere {
                domain: domain.to_owned(),
                stray,
                expected,
            });
        }
    }

    // Port 80: a token in the webroot, fetched as the CA would.
    let token = random_token();
    let relative = format!("{WEBROOT}/{CHALLENGE_DIR}/balcao-preflight-{token}");
    let webroot_error = |e: crate::appliance::root::FileError| Problem::Webroot {
        path: root.path(&relative).display().to_string(),
        cause: e.to_string(),
    };
    root.write_atomic(&relative, token.as_bytes(), 0o644)
        .map_err(webroot_error)?;
    let url_path = format!("/{CHALLENGE_DIR}/balcao-preflight-{token}");
    let result = (|| {
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), net.http_port);
        fetch(local, domain, &url_path, &token, net.timeout).map_err(|cause| {
            Problem::NotServed {
                port: net.http_port,
                cause,
            }
        })?;
        for address in &resolved {
            let target = SocketAddr::new(*address, net.http_port);
            if let Err(cause) = fetch(target, domain, &url_path, &token, net.timeout) {
                let ours = net.local.contains(address);
                if ours {
                    return Err(Problem::Unreachable {
                        domain: domain.to_owned(),
                        address: *address,
                        port: net.http_port,
                        cause,
                    });
                }
                // Behind NAT the router may not loop traffic back in.
                warnings.push(format!(
                    "não consegui confirmar de dentro que {address}:{} chega aqui ({cause}); se o roteador não faz hairpin isso é normal, mas confira o encaminhamento (NAT) TCP {} de {address} para esta máquina",
                    net.http_port, net.http_port
                ));
            }
        }
        Ok(())
    })();
    let _ = root.remove(&relative);
    result.map(|()| warnings)
}

/// GETs `path` from `addr` with `Host: domain`; the body must be `want`.
fn fetch(
    addr: SocketAddr,
    domain: &str,
    path: &str,
    want: &str,
    timeout: Duration,
) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build();
    let url = format!("http://{addr}{path}");
    match agent.get(&url).set("Host", domain).call() {
        Ok(response) => {
            let mut body = String::new();
            response
                .into_reader()
                .take(4096)
                .read_to_string(&mut body)
                .map_err(|e| e.to_string())?;
            if body.trim() == want {
                Ok(())
            } else {
                Err(format!("{url} respondeu outro conteúdo"))
            }
        }
        Err(ureq::Error::Status(code, _)) => Err(format!("{url} respondeu HTTP {code}")),
        // ureq's error already names the URL.
        Err(e) => Err(e.to_string()),
    }
}

/// 32 hex characters from the kernel's random source.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Uniqueness is all the token needs; time and pid give that.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(
            &sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(seed))[..16],
        );
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn upstream_servers_are_asked_not_the_stub() {
        let resolved = "# This is /run/systemd/resolve/resolv.conf\nnameserver 10.0.2.3\nnameserver fe80::1%ens3\nsearch .\n";
        assert_eq!(
            nameservers(resolved),
            [
                "10.0.2.3".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        let both = "nameserver 127.0.0.53\nnameserver 192.0.2.53\n";
        assert_eq!(nameservers(both), ["192.0.2.53".parse::<IpAddr>().unwrap()]);
        let stub_only = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        assert_eq!(
            nameservers(stub_only),
            ["127.0.0.53".parse::<IpAddr>().unwrap()]
        );
        assert!(nameservers("# nothing\n").is_empty());
    }

    #[test]
    fn dig_answers_keep_addresses_only() {
        let text = "balcao.tjxx.jus.br.cdn.example.\n203.0.113.7\n2001:db8::7\n203.0.113.7\n";
        assert_eq!(
            parse_dig(text),
            [
                "203.0.113.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert!(parse_dig("").is_empty());
    }

    /// A one-folder HTTP server on 127.0.0.1 serving ROOT/usr/share/jitsi-meet.
    fn serve(root: &Root) -> (u16, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = root.path(WEBROOT);
        let handle = std::thread::spawn(move || {
            // Two requests: 127.0.0.1, then the resolved address.
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body = std::fs::read(base.join(path.trim_start_matches('/')));
                let reply = match body {
                    Ok(b) => [
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .into_bytes(),
                        b,
                    ]
                    .concat(),
                    Err(_) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                stream.write_all(&reply).unwrap();
            }
        });
        (port, handle)
    }

    fn net<'a>(
        port: u16,
        resolve: &'a dyn Fn(&str) -> std::io::Result<Vec<IpAddr>>,
    ) -> Network<'a> {
        Network {
            http_port: port,
            resolve,
            local: vec!["127.0.0.1".parse().unwrap()],
            public_ip: None,
            timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn served_token_passes_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let (port, server) = serve(&root);
        let resolve = |_: &str| Ok(vec!["127.0.0.1".parse().unwrap()]);
        let warnings = check(&root, "b.tjxx.jus.br", &net(port, &resolve)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        server.join().unwrap();
        let left = std::fs::read_dir(root.path(&format!("{WEBROOT}/{CHALLENGE_DIR}")))
            .unwrap()
            .count();
        assert_eq!(left, 0, "the token file is removed");
    }

    #[test]
    fn missing_and_wrong_records_name_the_record_to_create() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let nothing = |_: &str| Err(std::io::Error::other("Name or service not known"));
        let mut network = net(9, &nothing);
        network.public_ip = Some("203.0.113.7".parse().unwrap());
        let err = check(&root, "b.tjxx.jus.br", &network).unwrap_err();
        let text = err.message(Lang::Pt);
        assert!(
            text.contains("registro A b.tjxx.jus.br -> 203.0.113.7"),
            "{text}"
        );

        let elsewhere = |_: &str| Ok(vec!["198.51.100.9".parse().unwrap()]);
        let mut network = net(9, &elsewhere);
        network.public_ip = Some("203.0.113.7".parse().unwrap());
        let text = check(&root, "b.tjxx.jus.br", &network)
            .unwrap_err()
            .message(Lang::Pt);
        assert!(text.contains("aponta para 198.51.100.9"), "{text}");
        assert!(
            text.contains("registro A b.tjxx.jus.br -> 203.0.113.7"),
            "{text}"
        );
    }

    #[test]
    fn nothing_on_port_80_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        // A port nobody listens on: bind, note, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let resolve = |_: &str| Ok(vec!["127.0.0.1".parse().unwrap()]);
        let err = check(&root, "b.tjxx.jus.br", &net(port, &resolve)).unwrap_err();
        assert!(matches!(err, Problem::NotServed { .. }), "{err:?}");
        assert!(err.message(Lang::Pt).contains("nginx"));
        let dir_path = root.path(&format!("{WEBROOT}/{CHALLENGE_DIR}"));
        assert_eq!(std::fs::read_dir(dir_path).unwrap().count(), 0);
    }
}
