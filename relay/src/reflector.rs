//! The UDP reflector (`--udp-reflector ADDR`): answers each reflector request from address X
//! with X, the address a node's NAT gave it, so the node can offer that address to peers as a
//! direct-path candidate (`protocol::direct`). It keeps no state per client, answers no other
//! datagram, and never sends more bytes than it received (requests are padded to the largest
//! answer), so a spoofed source gains no amplification.

use remote_agents_protocol::direct::{parse_reflect_request, reflect_response};
use tokio::net::UdpSocket;

/// Answers reflector requests on `socket` until the task is dropped.
pub async fn serve_reflector(socket: UdpSocket) {
    let mut buffer = [0u8; 64];
    loop {
        let (length, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors surface here on some systems; they concern one past datagram.
                tracing::debug!(%error, "reflector receive error");
                continue;
            }
        };
        if let Some(transaction) = parse_reflect_request(&buffer[..length]) {
            let answer = reflect_response(transaction, from);
            if let Err(error) = socket.send_to(&answer, from).await {
                tracing::debug!(%from, %error, "reflector answer not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remote_agents_protocol::direct::{parse_reflect_response, reflect_request};

    #[tokio::test]
    async fn a_request_is_answered_with_the_address_it_came_from() {
        let reflector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let reflector_address = reflector.local_addr().unwrap();
        let serving = tokio::spawn(serve_reflector(reflector));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"\0not a request", reflector_address)
            .await
            .unwrap();
        client
            .send_to(&reflect_request(9), reflector_address)
            .await
            .unwrap();
        let mut buffer = [0u8; 64];
        let (length, _) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.recv_from(&mut buffer),
        )
        .await
        .expect("the reflector answers")
        .unwrap();
        // Only the well-formed request is answered, with the client's own address.
        assert_eq!(
            parse_reflect_response(&buffer[..length]),
            Some((9, client.local_addr().unwrap()))
        );
        serving.abort();
    }
}
