//! The codec every generated service and client uses: prost's, except that a request
//! that does not decode (bad protobuf, a `string` field holding invalid UTF-8) is
//! answered `INVALID_ARGUMENT` instead of prost's default `INTERNAL`. The caller sent
//! bad input; nothing failed inside the server.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

/// prost encoding and decoding, with decode errors reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct BitmailCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for BitmailCodec<T, U> {
    fn default() -> Self {
        Self { inner: ProstCodec::default() }
    }
}

impl<T, U> Codec for BitmailCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder { _pd: PhantomData }
    }
}

/// Decodes a prost message; a message that does not decode is `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct InvalidArgumentDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("the request is not a valid protobuf message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
