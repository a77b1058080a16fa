//! A private PostgreSQL (`crate::private_postgres`) that takes TCP connections over TLS only,
//! for the TLS tests: a throwaway CA and a server certificate for `localhost`, and `hostssl`
//! lines only in `pg_hba.conf`. Stopped and removed when dropped.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};

use crate::private_postgres::{PrivatePostgres, path_str, set_mode};

/// A running TLS-only PostgreSQL with its CA.
#[derive(Debug)]
pub struct TlsPostgres {
    server: PrivatePostgres,
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
        let server = PrivatePostgres::init(
            "iam-tls-postgres",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        );
        let dir = server.dir().to_path_buf();
        let (ca_key, ca_cert) = certificate_authority("iam test CA");
        let (_, other_ca) = certificate_authority("some other CA");
        let (server_key, server_cert) = server_certificate(&ca_key, &ca_cert);
        let ca_file = dir.join("ca.pem");
        let other_ca_file = dir.join("other-ca.pem");
        write(&ca_file, &ca_cert.to_pem().expect("pem"));
        write(&other_ca_file, &other_ca.to_pem().expect("pem"));
        let server_cert_file = dir.join("server.crt");
        let server_key_file = dir.join("server.key");
        server.write(&server_cert_file, &server_cert.to_pem().expect("pem"));
        // The server wants its key readable by itself only.
        server.write(
            &server_key_file,
            &server_key.private_key_to_pem_pkcs8().expect("pem"),
        );
        set_mode(&server_key_file, 0o600);
        let server = server.with_options(&format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            path_str(&server_cert_file),
            path_str(&server_key_file),
        ));
        server.start();
        TlsPostgres {
            port: server.port,
            server,
            ca_file,
            other_ca_file,
        }
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
        self.server.log()
    }
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
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
