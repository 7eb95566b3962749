//! Reading identities back out of certificates and CRLs: serial, validity, and the clinic id
//! carried in a `urn:tpg:clinic:<id>` URI subject alternative name.

use proto::clinic_id::{ClinicId, GATEWAY_URI};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// What the pilot cares about in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number as lowercase hex, as `certs list` prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The clinic id, when this is a clinic certificate.
    pub clinic: Option<ClinicId>,
    /// True for the gateway's certificate.
    pub is_gateway: bool,
    pub common_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
    #[error("certificate revocation list is not valid DER: {0}")]
    BadCrl(String),
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn cert_info(der: &[u8]) -> Result<CertInfo, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let mut clinic = None;
    let mut is_gateway = false;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if *uri == GATEWAY_URI {
                    is_gateway = true;
                } else if let Some(id) = ClinicId::from_uri(uri) {
                    clinic = Some(id);
                }
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        serial: hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        clinic,
        is_gateway,
        common_name,
    })
}

/// Serial numbers (lowercase hex) listed in a DER CRL.
pub fn crl_serials(der: &[u8]) -> Result<Vec<String>, IdentityError> {
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| IdentityError::BadCrl(e.to_string()))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| hex(r.raw_serial()))
        .collect())
}
