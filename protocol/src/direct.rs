//! The direct data channel's small wire formats: the offer two peers exchange inside their Noise
//! session before punching (candidate addresses and the fingerprint of the QUIC certificate to
//! pin), and the two kinds of plain UDP datagram that share the punched socket with QUIC — the
//! reflector's "what address do you see" exchange and the punching probes.
//!
//! Every plain datagram starts with a zero byte: QUIC v1 sets the fixed bit (0x40) of every
//! packet's first byte, so a zero first byte tells our datagrams from QUIC's on one socket (the
//! same split RFC 7983 uses for STUN beside DTLS).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// What one side of a direct connection tells the other inside the Noise session (which
/// already authenticated who sends it): where it may be reached, and the SHA-256 of the DER
/// certificate its QUIC endpoint will present. The initiator's offer carries a fresh `token`;
/// the answer repeats it, and so does every probe of that attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectOffer {
    pub token: [u8; 16],
    pub fingerprint: [u8; 32],
    pub candidates: Vec<SocketAddr>,
}

/// At most this many candidates are read from an offer (a host with many interfaces is cut to
/// its first ones rather than flooding the peer with probes).
pub const MAX_CANDIDATES: usize = 16;

impl DirectOffer {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encodes every offer")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::message::MessageError> {
        let mut offer: DirectOffer = postcard::from_bytes(bytes)?;
        offer.candidates.truncate(MAX_CANDIDATES);
        Ok(offer)
    }
}

const REFLECT_REQUEST: [u8; 8] = *b"\0RA-RFQ1";
const REFLECT_RESPONSE: [u8; 8] = *b"\0RA-RFA1";
const PROBE: [u8; 8] = *b"\0RA-PRB1";
const PROBE_ACK: [u8; 8] = *b"\0RA-ACK1";

/// The size of a reflector request. Requests are padded to the size of the largest answer, so
/// the reflector never sends more bytes than it received (no amplification for spoofed sources).
pub const REFLECT_REQUEST_LEN: usize = 8 + 8 + 19;

/// Whether a datagram is one of ours rather than QUIC's (see the module comment).
pub fn is_plain_datagram(datagram: &[u8]) -> bool {
    datagram.first() == Some(&0)
}

/// "Tell me the address you see me from", with a transaction id echoed in the answer.
pub fn reflect_request(transaction: u64) -> [u8; REFLECT_REQUEST_LEN] {
    let mut request = [0u8; REFLECT_REQUEST_LEN];
    request[..8].copy_from_slice(&REFLECT_REQUEST);
    request[8..16].copy_from_slice(&transaction.to_be_bytes());
    request
}

/// The transaction id of a reflector request, if the datagram is one.
pub fn parse_reflect_request(datagram: &[u8]) -> Option<u64> {
    if datagram.len() != REFLECT_REQUEST_LEN || datagram[..8] != REFLECT_REQUEST {
        return None;
    }
    Some(u64::from_be_bytes(datagram[8..16].try_into().ok()?))
}

/// The reflector's answer: the transaction id and the source address it saw.
pub fn reflect_response(transaction: u64, observed: SocketAddr) -> Vec<u8> {
    let mut response = Vec::with_capacity(REFLECT_REQUEST_LEN);
    response.extend_from_slice(&REFLECT_RESPONSE);
    response.extend_from_slice(&transaction.to_be_bytes());
    match observed.ip() {
        IpAddr::V4(ip) => {
            response.push(4);
            response.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            response.push(6);
            response.extend_from_slice(&ip.octets());
        }
    }
    response.extend_from_slice(&observed.port().to_be_bytes());
    response
}

/// The transaction id and observed address of a reflector answer, if the datagram is one.
pub fn parse_reflect_response(datagram: &[u8]) -> Option<(u64, SocketAddr)> {
    if datagram.len() < 17 || datagram[..8] != REFLECT_RESPONSE {
        return None;
    }
    let transaction = u64::from_be_bytes(datagram[8..16].try_into().ok()?);
    let rest = &datagram[17..];
    let ip = match (datagram[16], rest.len()) {
        (4, 6) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&rest[..4]).ok()?)),
        (6, 18) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&rest[..16]).ok()?)),
        _ => return None,
    };
    let port = u16::from_be_bytes(rest[rest.len() - 2..].try_into().ok()?);
    Some((transaction, SocketAddr::new(ip, port)))
}

/// A punching datagram: a probe asks for an ack; both carry the attempt's token, so a probe
/// from another attempt (or anyone else) is not taken for a working path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Probe([u8; 16]),
    Ack([u8; 16]),
}

impl Probe {
    pub fn encode(&self) -> [u8; 24] {
        let (magic, token) = match self {
            Probe::Probe(token) => (PROBE, token),
            Probe::Ack(token) => (PROBE_ACK, token),
        };
        let mut datagram = [0u8; 24];
        datagram[..8].copy_from_slice(&magic);
        datagram[8..].copy_from_slice(token);
        datagram
    }

    pub fn decode(datagram: &[u8]) -> Option<Probe> {
        if datagram.len() != 24 {
            return None;
        }
        let token: [u8; 16] = datagram[8..].try_into().ok()?;
        match <[u8; 8]>::try_from(&datagram[..8]).ok()? {
            PROBE => Some(Probe::Probe(token)),
            PROBE_ACK => Some(Probe::Ack(token)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflector_answers_round_trip_and_never_outgrow_the_request() {
        for observed in [
            "203.0.113.7:40000".parse().unwrap(),
            "[2001:db8::1]:9".parse::<SocketAddr>().unwrap(),
        ] {
            let request = reflect_request(42);
            assert_eq!(parse_reflect_request(&request), Some(42));
            let response = reflect_response(42, observed);
            assert!(response.len() <= request.len());
            assert_eq!(parse_reflect_response(&response), Some((42, observed)));
            assert!(is_plain_datagram(&request) && is_plain_datagram(&response));
        }
        assert_eq!(parse_reflect_request(&reflect_request(1)[..20]), None);
        assert_eq!(
            parse_reflect_response(&reflect_response(1, "1.2.3.4:5".parse().unwrap())[..20]),
            None
        );
    }

    #[test]
    fn probes_round_trip_and_carry_their_token() {
        let token = [7u8; 16];
        for probe in [Probe::Probe(token), Probe::Ack(token)] {
            assert_eq!(Probe::decode(&probe.encode()), Some(probe));
        }
        assert_eq!(Probe::decode(&reflect_request(1)), None);
    }

    #[test]
    fn offers_round_trip_and_are_cut_to_the_candidate_limit() {
        let offer = DirectOffer {
            token: [1; 16],
            fingerprint: [2; 32],
            candidates: (0..40)
                .map(|port| SocketAddr::from(([10, 0, 0, 1], port)))
                .collect(),
        };
        let decoded = DirectOffer::decode(&offer.encode()).unwrap();
        assert_eq!(decoded.candidates.len(), MAX_CANDIDATES);
        assert_eq!(decoded.fingerprint, offer.fingerprint);
    }
}
