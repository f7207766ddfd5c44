//! Real-socket p2p for one node: commonware `authenticated::lookup` with every genesis node as
//! the (single) tracked peer set, and the six chain channels registered in order.

use crate::config::{hex32, GenesisFile};
use cairn_chain::engine::{max_message_size, Channels, CHANNEL_QUOTA};
use commonware_codec::DecodeExt;
use commonware_cryptography::{ed25519, ChaCha20Poly1305};
use commonware_p2p::{
    authenticated::lookup::{self, Network, Oracle},
    Address, AddressableManager,
};
use commonware_runtime::{tokio::Context, Handle, Supervisor};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{ordered::Map, NZUsize};
use std::{net::SocketAddr, time::Duration};

/// p2p namespace (distinct per chain id so two devnets never talk).
pub fn namespace(chain_id: &str) -> Vec<u8> {
    format!("cairn/p2p/v1/{chain_id}").into_bytes()
}

/// The sender/receiver types of a lookup network on the tokio runtime.
pub type NetChannels =
    Channels<lookup::Sender<ed25519::PublicKey, Context>, lookup::Receiver<ed25519::PublicKey>>;

/// Starts the p2p network; returns channels, the oracle (provider + blocker) and its handle.
pub fn start(
    context: &Context,
    key: &ed25519::PrivateKey,
    listen: SocketAddr,
    genesis: &GenesisFile,
) -> (NetChannels, Oracle<ed25519::PublicKey>, Handle<()>) {
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let peers_count = genesis.nodes.len().max(1);
    let mut cfg = lookup::Config::local(
        handshake,
        &namespace(&genesis.chain_id),
        listen,
        NZUsize!(peers_count.max(1)),
        max_message_size(),
        NZUsize!(4096),
    );
    cfg.dial_frequency = Duration::from_millis(200);
    let (mut network, mut oracle) = Network::new(context.child("p2p"), cfg);
    let peers: Vec<(ed25519::PublicKey, Address)> = genesis
        .nodes
        .iter()
        .filter_map(|n| {
            let key =
                ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&hex32(&n.public_key)?))
                    .ok()?;
            Some((key, Address::Symmetric(n.p2p_address)))
        })
        .collect();
    let map: Map<ed25519::PublicKey, Address> =
        Map::try_from(peers).expect("genesis node keys are unique");
    let _ = oracle.track(0, map);
    let votes = network.register(0, CHANNEL_QUOTA);
    let certificates = network.register(1, CHANNEL_QUOTA);
    let resolver = network.register(2, CHANNEL_QUOTA);
    let backfill = network.register(3, CHANNEL_QUOTA);
    let broadcast = network.register(4, CHANNEL_QUOTA);
    let txs = network.register(5, CHANNEL_QUOTA);
    let handle = network.start();
    (
        Channels {
            votes,
            certificates,
            resolver,
            backfill,
            broadcast,
            txs,
        },
        oracle,
        handle,
    )
}
