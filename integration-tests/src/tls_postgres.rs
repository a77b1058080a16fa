//! A private PostgreSQL that takes TCP connections over TLS only, for the TLS tests: `initdb`
//! into a temporary directory (as the `postgres` user when the tests run as root), a
//! throwaway CA and a server certificate for `localhost`, and `hostssl` lines only in
//! `pg_hba.conf`. Stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};

use crate::free_port;
use crate::sidecar::TempDir;

/// A running TLS-only PostgreSQL with its CA.
#[derive(Debug)]
pub struct TlsPostgres {
    dir: TempDir,
    bin_dir: PathBuf,
    run_as: Option<String>,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca_file: PathBuf,
    /// A CA that signed nothing the server presents (PEM).
    pub other_ca_file: PathBuf,
}

impl TlsPostgres {
    /// Creates, configures and starts the server; panics saying what is missing.
    pub fn start() -> TlsPostgres {
        let bin_dir = postgres_bin_dir();
        let dir = TempDir::new("iam-tls-postgres");
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let (ca_key, ca_cert) = certificate_authority("iam test CA");
        let (_, other_ca) = certificate_authority("some other CA");
        let (server_key, server_cert) = server_certificate(&ca_key, &ca_cert);
        let ca_file = dir.0.join("ca.pem");
        let other_ca_file = dir.0.join("other-ca.pem");
        write(&ca_file, &ca_cert.to_pem().expect("pem"));
        write(&other_ca_file, &other_ca.to_pem().expect("pem"));
        let server_cert_file = dir.0.join("server.crt");
        let server_key_file = dir.0.join("server.key");
        write(&server_cert_file, &server_cert.to_pem().expect("pem"));
        write(
            &server_key_file,
            &server_key.private_key_to_pem_pkcs8().expect("pem"),
        );
        let data = dir.0.join("data");
        if let Some(user) = &run_as {
            // The server refuses to run as root and wants its key readable by itself only.
            chown_tree(&dir.0, user);
        }
        set_mode(&server_key_file, 0o600);
        set_mode(&dir.0, 0o700);
        let server = TlsPostgres {
            dir,
            bin_dir,
            run_as,
            port: free_port(),
            ca_file,
            other_ca_file,
        };
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("pg_hba.conf");
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            server.port,
            path_str(&server.dir.0),
            path_str(&server_cert_file),
            path_str(&server_key_file),
        );
        let log = server.dir.0.join("postgres.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-o",
                &options,
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        server
    }

    /// A connection string to `database` as `postgres` at `host`, with `query` appended.
    pub fn url(&self, host: &str, database: &str, query: &str) -> String {
        let separator = if query.is_empty() { "" } else { "?" };
        format!(
            "postgres://postgres@{host}:{}/{database}{separator}{query}",
            self.port
        )
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("postgres.log")).unwrap_or_default()
    }

    /// `program` from PostgreSQL's directory, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.dir.0)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.0.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The directory of `initdb` and `pg_ctl`: `IAM_TEST_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/*/bin`, else what `pg_config --bindir` says.
fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IAM_TEST_PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return bin;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "the TLS tests start their own PostgreSQL and need its server programs \
                 (initdb, pg_ctl): install the postgresql server package (Debian: \
                 postgresql-15) or set IAM_TEST_PG_BIN_DIR to their directory"
            )
        })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn chown_tree(dir: &Path, user: &str) {
    let status = Command::new("chown")
        .args(["-R", user])
        .arg(dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown -R {user} {} failed", dir.display());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut serial = BigNum::new().expect("bignum");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("random serial");
    serial.to_asn1_integer().expect("serial")
}

fn certificate_authority(name: &str) -> (PKey<Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
    let mut subject = X509NameBuilder::new().expect("name");
    subject.append_entry_by_text("CN", name).expect("cn");
    let subject = subject.build();
    let mut cert = X509::builder().expect("builder");
    cert.set_version(2).expect("v3");
    cert.set_serial_number(&serial()).expect("serial");
    cert.set_subject_name(&subject).expect("subject");
    cert.set_issuer_name(&subject).expect("issuer");
    cert.set_pubkey(&key).expect("key");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("not after");
    cert.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("bc");
    cert.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    (key, cert.build())
}

/// A certificate for `localhost` only (so `verify-full` to 127.0.0.1 fails on the name).
fn server_certificate(ca_key: &PKey<Private>, ca_cert: &X509) -> (PKey<Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
    let mut subject = X509NameBuilder::new().expect("name");
    subject.append_entry_by_text("CN", "localhost").expect("cn");
    let subject = subject.build();
    let mut cert = X509::builder().expect("builder");
    cert.set_version(2).expect("v3");
    cert.set_serial_number(&serial()).expect("serial");
    cert.set_subject_name(&subject).expect("subject");
    cert.set_issuer_name(ca_cert.subject_name())
        .expect("issuer");
    cert.set_pubkey(&key).expect("key");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("not after");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&cert.x509v3_context(Some(ca_cert), None))
        .expect("san");
    cert.append_extension(san).expect("san");
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
        .expect("eku");
    cert.sign(ca_key, MessageDigest::sha256()).expect("sign");
    (key, cert.build())
}
