//! The lab's own certificate authority, made anew for every run, and the control server's
//! certificate. headscale's embedded DERP needs TLS; every client trusts this CA and nothing
//! else is ever signed by it or trusted from outside the lab.

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use std::net::{IpAddr, Ipv4Addr};

pub struct LabPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

/// A CA named after the run, and a server certificate for `server_name` and `server_ip`.
pub fn issue(run_id: &str, server_name: &str, server_ip: Ipv4Addr) -> Result<LabPki> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, format!("mesh lab {run_id} CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(vec![server_name.to_string()])?;
    server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(server_ip)));
    server.distinguished_name.push(DnType::CommonName, server_name);
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;
    Ok(LabPki { ca_pem: ca.pem(), server_cert_pem: cert.pem(), server_key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn issues_a_ca_and_a_server_certificate() {
        let pki = super::issue("abc123", "headscale.lab.test", "192.168.1.5".parse().unwrap()).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_key_pem.contains("PRIVATE KEY"));
        assert_ne!(pki.ca_pem, pki.server_cert_pem);
    }
}
