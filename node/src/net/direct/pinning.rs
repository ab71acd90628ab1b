//! The QUIC endpoint's TLS: one throwaway self-signed certificate per node process, and
//! verifiers that accept exactly the certificates whose SHA-256 a peer sent inside its Noise
//! session. The Noise handshake already proved the peer's node identity, so pinning the
//! fingerprint it sent there binds the QUIC connection to that identity; no CA, no names.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use remote_agents_protocol::frame::PeerId;
use rustls::DistinguishedName;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

/// The ALPN both sides require, so a QUIC endpoint of some other protocol never talks to ours.
pub(crate) const ALPN: &[u8] = b"remote-agents-direct/1";

/// The node's certificate for this process.
pub(crate) struct LocalCertificate {
    pub(crate) certificate: CertificateDer<'static>,
    pub(crate) key: PrivatePkcs8KeyDer<'static>,
    pub(crate) fingerprint: [u8; 32],
}

impl LocalCertificate {
    pub(crate) fn generate() -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let certificate =
            rcgen::CertificateParams::new(vec!["remote-agents".to_string()])?.self_signed(&key)?;
        let certificate = CertificateDer::from(certificate.der().to_vec());
        Ok(LocalCertificate {
            fingerprint: fingerprint(&certificate),
            certificate,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    pub(crate) fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.certificate.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

pub(crate) fn fingerprint(certificate: &CertificateDer<'_>) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pinning_error() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// The client side: the server must present exactly the certificate the peer pinned.
#[derive(Debug)]
pub(crate) struct PinnedServer {
    pub(crate) fingerprint: [u8; 32],
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(pinning_error())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Which client certificates the server side accepts right now: the fingerprints peers sent in
/// offers it answered, each until its punching window closes. A connection is taken only from a
/// certificate on this list, and the list says which peer it belongs to.
#[derive(Default)]
pub(crate) struct Expected {
    by_fingerprint: Mutex<HashMap<[u8; 32], (PeerId, Instant)>>,
}

impl Expected {
    pub(crate) fn insert(&self, fingerprint: [u8; 32], peer: PeerId, until: Instant) {
        let mut map = self.by_fingerprint.lock().expect("not poisoned");
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        map.insert(fingerprint, (peer, until));
    }

    /// The peer a certificate was offered by, while its window is open.
    pub(crate) fn peer(&self, fingerprint: &[u8; 32]) -> Option<PeerId> {
        let map = self.by_fingerprint.lock().expect("not poisoned");
        map.get(fingerprint)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(peer, _)| *peer)
    }
}

/// The server side: client authentication is mandatory and only expected certificates pass.
pub(crate) struct ExpectedClients {
    pub(crate) expected: Arc<Expected>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ExpectedClients {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ExpectedClients")
    }
}

impl ClientCertVerifier for ExpectedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.expected.peer(&fingerprint(end_entity)) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(pinning_error()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
