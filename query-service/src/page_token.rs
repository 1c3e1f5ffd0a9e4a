//! Opaque, tamper-evident page tokens for ListSignIns. A token holds the position of the last
//! sign-in returned, (createdDateTime, id), and a MAC that also covers the tenant, read scope,
//! filter and order it was issued for, so it cannot be edited or replayed with another query.
//! Tokens do not expire and may be reused: keyset positions stay valid.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const POSITION_BYTES: usize = 1 + 8 + 16;

/// The key page tokens are signed with.
#[derive(Clone)]
pub struct PageTokenKey([u8; 32]);

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a page token of this query (tokens are bound to the filter, order and caller that got them)"
)]
pub struct InvalidPageToken;

impl PageTokenKey {
    /// Derives the key from a deployment secret, kept apart from the secret's other uses.
    pub fn derive(secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"signins page token v1\0");
        hasher.update(secret);
        Self(hasher.finalize().into())
    }

    /// `binding` identifies the query: tenant, scope, canonical filter and order.
    pub fn issue(&self, binding: &str, position: (DateTime<Utc>, Uuid)) -> String {
        let mut bytes = Vec::with_capacity(POSITION_BYTES + MAC_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&position.0.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(position.1.as_bytes());
        let mac = self.mac(binding, &bytes);
        bytes.extend_from_slice(&mac[..MAC_BYTES]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn open(
        &self,
        binding: &str,
        token: &str,
    ) -> Result<(DateTime<Utc>, Uuid), InvalidPageToken> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        if bytes.len() != POSITION_BYTES + MAC_BYTES || bytes[0] != VERSION {
            return Err(InvalidPageToken);
        }
        let (position, mac) = bytes.split_at(POSITION_BYTES);
        let mut verifier = self.hmac(binding);
        verifier.update(position);
        verifier
            .verify_truncated_left(mac)
            .map_err(|_| InvalidPageToken)?;
        let micros = i64::from_be_bytes(position[1..9].try_into().map_err(|_| InvalidPageToken)?);
        let id = Uuid::from_slice(&position[9..25]).map_err(|_| InvalidPageToken)?;
        let time = DateTime::from_timestamp_micros(micros).ok_or(InvalidPageToken)?;
        Ok((time, id))
    }

    fn hmac(&self, binding: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(
            &u64::try_from(binding.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        mac.update(binding.as_bytes());
        mac
    }

    fn mac(&self, binding: &str, position: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac(binding);
        mac.update(position);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_for_its_own_query_and_unaltered() {
        let key = PageTokenKey::derive(b"secret");
        let position = (
            signins_common::clock::truncate_to_micros(Utc::now()),
            Uuid::new_v4(),
        );
        let token = key.issue("tenant-a|flaggedForReview eq true", position);
        assert_eq!(
            key.open("tenant-a|flaggedForReview eq true", &token),
            Ok(position)
        );
        assert_eq!(
            key.open("tenant-b|flaggedForReview eq true", &token),
            Err(InvalidPageToken)
        );
        assert_eq!(
            PageTokenKey::derive(b"other").open("tenant-a|flaggedForReview eq true", &token),
            Err(InvalidPageToken)
        );
        let mut tampered = token.into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            key.open("tenant-a|flaggedForReview eq true", &tampered),
            Err(InvalidPageToken)
        );
    }
}
