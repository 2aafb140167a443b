//! Shared by the tls_* tests: a small certificate authority made with the
//! openssl CLI (Debian package openssl), root -> intermediate -> leaf, whose
//! leaves can be dated in the past with `openssl ca -startdate/-enddate`
//! (`openssl req -x509 -days` cannot back-date); an appliance root folder
//! with setup.toml; and a snapshot of every file under it, to prove that a
//! refusal changed nothing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BALCAOCTL: &str = env!("CARGO_BIN_EXE_balcaoctl");
pub const DOMAIN: &str = "balcao.tjxx.jus.br";

pub fn require_tool(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).is_file();
    assert!(
        found,
        "this test needs `{program}`: apt-get install {package}"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A throwaway CA: `root.pem`, `inter.pem` and their keys in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

const CA_CONF: &str = "[ ca ]\ndefault_ca = test\n[ test ]\ndatabase = DIR/index.txt\nnew_certs_dir = DIR/newcerts\nserial = DIR/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n[ any ]\ncommonName = supplied\n";

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        require_tool("openssl", "openssl");
        fs::create_dir_all(dir.join("newcerts")).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        fs::write(dir.join("serial"), "1000\n").unwrap();
        fs::write(
            dir.join("ca.cnf"),
            CA_CONF.replace("DIR", dir.to_str().unwrap()),
        )
        .unwrap();
        fs::write(
            dir.join("ca_ext.cnf"),
            "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        let pki = Pki {
            dir: dir.to_owned(),
        };
        run(Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "3650"])
            .args(["-keyout", "root.key", "-out", "root.pem"])
            .args(["-subj", "/CN=Raiz de Teste"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        pki.sign_request(
            "inter",
            "/CN=Intermediaria de Teste",
            "root",
            "ca_ext.cnf",
            None,
        );
        pki
    }

    fn sign_request(
        &self,
        name: &str,
        subject: &str,
        issuer: &str,
        ext: &str,
        dates: Option<(&str, &str)>,
    ) {
        run(Command::new("openssl")
            .current_dir(&self.dir)
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes"])
            .args(["-keyout", &format!("{name}.key")])
            .args(["-out", &format!("{name}.csr"), "-subj", subject]));
        let mut ca = Command::new("openssl");
        ca.current_dir(&self.dir)
            .args(["ca", "-batch", "-notext", "-config", "ca.cnf"])
            .args(["-cert", &format!("{issuer}.pem")])
            .args(["-keyfile", &format!("{issuer}.key")])
            .args(["-in", &format!("{name}.csr")])
            .args(["-out", &format!("{name}.pem"), "-extfile", ext]);
        match dates {
            Some((start, end)) => ca.args(["-startdate", start, "-enddate", end]),
            None => ca.args(["-days", "365"]),
        };
        run(&mut ca);
    }

    /// A server certificate for `names` signed by the intermediate; dates
    /// as `YYYYMMDDHHMMSSZ` or a year from now. Returns (cert, key).
    pub fn leaf(
        &self,
        name: &str,
        names: &[&str],
        dates: Option<(&str, &str)>,
    ) -> (PathBuf, PathBuf) {
        let san = names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        let ext = format!("{name}_ext.cnf");
        fs::write(
            self.dir.join(&ext),
            format!("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = {san}\n"),
        )
        .unwrap();
        let subject = format!("/CN={}", names.first().copied().unwrap_or("x"));
        self.sign_request(name, &subject, "inter", &ext, dates);
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// An appliance root with setup.toml for DOMAIN.
pub fn appliance_root(dir: &Path, mode: &str) {
    fs::create_dir_all(dir.join("etc/balcao")).unwrap();
    fs::write(
        dir.join("etc/balcao/setup.toml"),
        format!("domain = \"{DOMAIN}\"\nemail = \"ti@tjxx.jus.br\"\n[admin]\nuser = \"atendimento\"\n[tls]\nmode = \"{mode}\"\n"),
    )
    .unwrap();
}

/// Every file under `dir` with its bytes (and mode).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.clone(),
                    (fs::read(&path).unwrap(), meta.permissions().mode()),
                );
            }
        }
    }
    out
}

/// `balcaoctl tls --root DIR ARGS...`.
pub fn balcaoctl_tls(root: &Path, args: &[&str]) -> Output {
    Command::new(BALCAOCTL)
        .arg("tls")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("balcaoctl runs")
}
