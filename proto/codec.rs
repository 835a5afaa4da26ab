//! The protobuf codec of every chatrelay.v1 call: prost's, with small
//! starting buffers.
//!
//! tonic gives each call an encode and a decode buffer on each side, 8 KiB
//! each by default, allocated when the call starts and kept until it ends.
//! An extension session is one call that lasts as long as the extension
//! stays connected, so an idle session held four of them (32 KiB) on the
//! core and the edge. The buffers grow as a message needs, so starting small
//! limits no message size; a large message costs a few reallocations.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes each buffer starts with: room for a control frame (`Ready`, a
/// status update, a short error).
const START_BYTES: usize = 128;

/// Encoded bytes gathered before a stream hands them on (tonic's default).
const YIELD_BYTES: usize = 32 * 1024;

fn buffers() -> BufferSettings {
    BufferSettings::new(START_BYTES, YIELD_BYTES)
}

/// `tonic_prost::ProstCodec` with [`START_BYTES`] buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffers())
    }
}
