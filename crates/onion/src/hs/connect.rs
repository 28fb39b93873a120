//! A client's way to an onion service: a rendezvous circuit and an introduction at
//! once, then the service's answer through the rendezvous point.

use std::time::Duration;

use rand::seq::IndexedRandom;

use super::descriptor::Service;
use super::messages::{Cookie, IntroPayload, Introduce};
use crate::OnionError;
use crate::cell::{RelayCommand, RelayMsg};
use crate::client::{Circuit, Partial, Role};
use crate::directory::End;
use crate::ntor::ClientHandshake;
use crate::paths::DirectoryPaths;
use crate::relay::HANDSHAKE_TIMEOUT;

/// How long the service has, after the introduction, to build its circuit to the
/// rendezvous point and answer: three extends' worth.
pub const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(60);

/// A circuit whose far end is `service`, ready for streams.
pub async fn rendezvous(paths: &DirectoryPaths, service: &Service) -> Result<Circuit, OnionError> {
    let mut cookie: Cookie = [0; 20];
    rand::fill(&mut cookie);
    let intro = service
        .intros
        .choose(&mut rand::rng())
        .cloned()
        .ok_or(OnionError::NoPath(
            "the service names no introduction point",
        ))?;
    let (rp, ip) = tokio::join!(
        async {
            let mut rp = paths.partial(End::Any).await?;
            let last = rp.last();
            rp.send(
                last,
                RelayMsg::new(RelayCommand::EstablishRendezvous, 0, cookie.to_vec()),
            )
            .await?;
            rp.expect(last, RelayCommand::RendezvousEstablished, HANDSHAKE_TIMEOUT)
                .await?;
            Ok::<Partial, OnionError>(rp)
        },
        paths.partial(End::At(&intro)),
    );
    let (mut rp, mut ip) = (rp?, ip?);
    let point = rp.hops()[rp.last()];
    let (hs, create) = ClientHandshake::start(service.id, service.ntor_key);
    let payload = IntroPayload {
        rendezvous: point.to_bytes(),
        rendezvous_key: rp.onion_key(rp.last()),
        cookie,
        create: create.to_vec(),
    };
    let introduce = Introduce::seal(service.id, &service.ntor_key, &payload)?.encode()?;
    let last = ip.last();
    ip.send(last, RelayMsg::new(RelayCommand::Introduce1, 0, introduce))
        .await?;
    let ack = ip
        .expect(last, RelayCommand::IntroduceAck, HANDSHAKE_TIMEOUT)
        .await?;
    drop(ip);
    if ack.data != [0] {
        return Err(OnionError::NoPath(
            "the introduction point no longer serves this onion service",
        ));
    }
    let last = rp.last();
    let answer = rp
        .expect(last, RelayCommand::Rendezvous2, RENDEZVOUS_TIMEOUT)
        .await?;
    let keys = hs.finish(&answer.data)?;
    rp.join_service(&keys);
    Ok(rp.into_circuit(Role::Client))
}
