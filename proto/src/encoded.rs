//! A ListSignIns page already in its wire form, and SignInService's server over it.
//!
//! The server generated here is SignInService's with one difference: ListSignIns answers an
//! [`EncodedListSignInsResponse`], the protobuf bytes of a `ListSignInsResponse` written by the
//! caller, where the usual server takes a `ListSignInsResponse` struct to encode. A page of a
//! thousand sign-ins is tens of thousands of strings; written straight from the database rows
//! it never becomes those strings. The bytes on the wire, the descriptor reflection serves and
//! every client are the same as with the usual server.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

/// The encoding of a `signins.query.v1.ListSignInsResponse`. Whoever builds it answers for the
/// bytes being one (query-service's tests decode what it writes with the generated message).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncodedListSignInsResponse {
    bytes: Vec<u8>,
}

impl EncodedListSignInsResponse {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for EncodedListSignInsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedListSignInsResponse")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl prost::Message for EncodedListSignInsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    /// Decoding keeps each field's bytes as they came, so a decoded value encodes back to the
    /// same fields (nothing here decodes one; the trait asks for it).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        let start = self.bytes.len();
        prost::encoding::encode_key(tag, wire_type, &mut self.bytes);
        match wire_type {
            WireType::Varint => {
                prost::encoding::encode_varint(
                    prost::encoding::decode_varint(buf)?,
                    &mut self.bytes,
                );
            }
            WireType::LengthDelimited => {
                let mut value = Vec::new();
                prost::encoding::bytes::merge(wire_type, &mut value, buf, ctx)?;
                prost::encoding::encode_varint(value.len() as u64, &mut self.bytes);
                self.bytes.extend_from_slice(&value);
            }
            WireType::SixtyFourBit => {
                let mut value = 0u64;
                prost::encoding::fixed64::merge(wire_type, &mut value, buf, ctx)?;
                self.bytes.put_u64_le(value);
            }
            WireType::ThirtyTwoBit => {
                let mut value = 0u32;
                prost::encoding::fixed32::merge(wire_type, &mut value, buf, ctx)?;
                self.bytes.put_u32_le(value);
            }
            // Groups are not in proto3; like prost's own messages, skip one.
            WireType::StartGroup | WireType::EndGroup => {
                self.bytes.truncate(start);
                prost::encoding::skip_field(wire_type, tag, buf, ctx)?;
            }
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// SignInService's server, ListSignIns answering [`EncodedListSignInsResponse`].
pub mod query {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/encoded/signins.query.v1.rs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::v1 as pb;
    use prost::Message;

    #[test]
    fn a_page_decoded_and_encoded_again_is_the_same_bytes() {
        let page = pb::ListSignInsResponse {
            sign_ins: vec![pb::SignIn {
                id: "a".into(),
                flagged_for_review: Some(true),
                ..Default::default()
            }],
            next_page_token: Some("t".into()),
        };
        let bytes = page.encode_to_vec();
        let raw = EncodedListSignInsResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(raw.as_bytes(), bytes.as_slice());
        assert_eq!(raw.encode_to_vec(), bytes);
        assert_eq!(
            pb::ListSignInsResponse::decode(raw.as_bytes()).expect("decodes"),
            page
        );
    }
}
