//! Keys: what one key verifies (and maybe signs), and a set of keys chosen
//! from by a token's `alg` and `kid`.
//!
//! A key accepts only algorithms of its own family: a key given for RS256
//! takes RS256 tokens (a JWKS key without `alg` takes its type's family:
//! RS* and PS* for RSA, ES256 for P-256, ES384 for P-384, EdDSA for
//! Ed25519), so an HS256 token "signed" with an RSA public key as secret
//! never reaches an RSA key, let alone the HMAC code. A token's `kid`
//! narrows the choice to the keys with that id (keys without an id stay
//! candidates); a `kid` is only ever compared with the ids of keys already
//! loaded, never used to find a key anywhere else.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use super::error::AuthError;

/// Every algorithm Herald verifies, in a fixed order (the bit of each in
/// [`Algorithms`]).
pub(crate) const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The JOSE name of an algorithm (`HS256`, ..., `EdDSA`).
pub fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// The algorithm of a JOSE name, exactly as spelled (`HS256`, ...); `None`
/// for anything else (`none`, `hs256`, `RSA-OAEP`).
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    ALL.into_iter().find(|a| algorithm_name(*a) == name)
}

/// A set of algorithms, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Algorithms(u16);

impl Algorithms {
    fn bit(a: Algorithm) -> u16 {
        ALL.iter().position(|x| *x == a).map_or(0, |i| 1u16 << i)
    }

    fn one(a: Algorithm) -> Self {
        Self(Self::bit(a))
    }

    fn of(list: &[Algorithm]) -> Self {
        Self(list.iter().fold(0, |acc, a| acc | Self::bit(*a)))
    }

    pub(crate) fn contains(self, a: Algorithm) -> bool {
        let bit = Self::bit(a);
        bit != 0 && self.0 & bit != 0
    }
}

/// One verification key, maybe with its signing half.
///
/// Built from an HMAC secret ([`Key::secret`]), a PEM public key
/// ([`Key::public_pem`], verification only), a PEM private key
/// ([`Key::private_pem`], its public half derived from it) or both halves
/// ([`Key::pem_pair`]); JWKS keys come from the engine's JWKS. An id
/// ([`Key::with_id`]) lets a token's `kid` pick it, and goes in the `kid`
/// of the tokens it signs.
#[derive(Clone)]
pub struct Key {
    id: Option<Arc<str>>,
    accepts: Algorithms,
    /// The algorithm it signs with, and the signing key.
    signing: Option<(Algorithm, EncodingKey)>,
    decoding: DecodingKey,
    /// For `Debug`: what the key was made from.
    origin: &'static str,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accepts: Vec<_> = ALL
            .iter()
            .filter(|a| self.accepts.contains(**a))
            .map(|a| algorithm_name(*a))
            .collect();
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("accepts", &accepts)
            .field("can_sign", &self.signing.is_some())
            .field("origin", &self.origin)
            .finish()
    }
}

fn invalid(kind: &'static str) -> impl FnOnce(jsonwebtoken::errors::Error) -> AuthError {
    move |source| AuthError::InvalidKey { kind, source }
}

impl Key {
    /// An HMAC key (HS256, HS384 or HS512) that signs and verifies.
    pub fn secret(algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Result<Key, AuthError> {
        let secret = secret.as_ref();
        if algorithm.family() != AlgorithmFamily::Hmac {
            return Err(AuthError::WrongKeyType {
                algorithm: algorithm_name(algorithm),
                given: "HMAC secret",
            });
        }
        if secret.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        Ok(Key {
            id: None,
            accepts: Algorithms::one(algorithm),
            signing: Some((algorithm, EncodingKey::from_secret(secret))),
            decoding: DecodingKey::from_secret(secret),
            origin: "secret",
        })
    }

    /// A verification-only key from a PEM public key (`PUBLIC KEY`, `RSA
    /// PUBLIC KEY`) for an RS*, PS*, ES256/384 or EdDSA algorithm.
    pub fn public_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Key, AuthError> {
        let decoding = match algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(AuthError::WrongKeyType {
                    algorithm: algorithm_name(algorithm),
                    given: "PEM",
                });
            }
        }
        .map_err(invalid("public"))?;
        Ok(Key {
            id: None,
            accepts: Algorithms::one(algorithm),
            signing: None,
            decoding,
            origin: "public PEM",
        })
    }

    /// A key that signs, from a PEM private key (PKCS#8, or PKCS#1 for RSA,
    /// SEC1 for EC); its public half is derived from it. Checked by signing
    /// and verifying a probe, so a P-256 key given for ES384 is an error
    /// here, not a refused token later.
    pub fn private_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Key, AuthError> {
        let encoding = Self::encoding_pem(algorithm, pem)?;
        let jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(invalid("private"))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(invalid("private"))?;
        let key = Key {
            id: None,
            accepts: Algorithms::one(algorithm),
            signing: Some((algorithm, encoding)),
            decoding,
            origin: "private PEM",
        };
        key.probe(algorithm)?;
        Ok(key)
    }

    /// A key that signs with `private_pem` and verifies with `public_pem`;
    /// fails when they are not one pair.
    pub fn pem_pair(
        algorithm: Algorithm,
        public_pem: &[u8],
        private_pem: &[u8],
    ) -> Result<Key, AuthError> {
        let public = Self::public_pem(algorithm, public_pem)?;
        let encoding = Self::encoding_pem(algorithm, private_pem)?;
        let key = Key {
            signing: Some((algorithm, encoding)),
            origin: "PEM pair",
            ..public
        };
        key.probe(algorithm)?;
        Ok(key)
    }

    fn encoding_pem(algorithm: Algorithm, pem: &[u8]) -> Result<EncodingKey, AuthError> {
        match algorithm.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(AuthError::WrongKeyType {
                    algorithm: algorithm_name(algorithm),
                    given: "PEM",
                });
            }
        }
        .map_err(invalid("private"))
    }

    /// Signs a probe with the signing half and verifies it with the other.
    fn probe(&self, algorithm: Algorithm) -> Result<(), AuthError> {
        const PROBE: &[u8] = b"herald key check";
        let mismatched = || AuthError::MismatchedKeys {
            algorithm: algorithm_name(algorithm),
            id: self
                .id
                .as_ref()
                .map(|id| format!(" {id:?}"))
                .unwrap_or_default(),
        };
        let Some((_, encoding)) = &self.signing else {
            return Ok(());
        };
        let signature =
            jsonwebtoken::crypto::sign(PROBE, encoding, algorithm).map_err(|_| mismatched())?;
        match jsonwebtoken::crypto::verify(&signature, PROBE, &self.decoding, algorithm) {
            Ok(true) => Ok(()),
            _ => Err(mismatched()),
        }
    }

    /// A verification key from one JWK of a JWKS: RSA, EC (P-256, P-384)
    /// or OKP (Ed25519) public keys meant for signatures. Symmetric (`oct`)
    /// keys are refused: a secret has no business in a document served
    /// over HTTP.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Key, String> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return Err("not a signature key (use)".into());
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops
                .iter()
                .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify))
        {
            return Err("not a verification key (key_ops)".into());
        }
        let family: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms(),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => &[Algorithm::ES256],
                EllipticCurve::P384 => &[Algorithm::ES384],
                _ => return Err("unsupported curve".into()),
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                &[Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric keys are not taken from a JWKS".into());
            }
            _ => return Err("unsupported key type".into()),
        };
        let accepts = match jwk.common.key_algorithm {
            None => Algorithms::of(family),
            Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => return Err("unsupported alg".into()),
            Some(alg) => {
                let alg = parse_algorithm(&alg.to_string())
                    .filter(|a| family.contains(a))
                    .ok_or_else(|| format!("alg {alg} does not fit the key type"))?;
                Algorithms::one(alg)
            }
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        Ok(Key {
            id: jwk.common.key_id.as_deref().map(Arc::from),
            accepts,
            signing: None,
            decoding,
            origin: "JWKS",
        })
    }

    /// The same key with id `id` (the `kid` tokens name it by).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Key {
        self.id = Some(Arc::from(id.into()));
        self
    }

    /// The key's id.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Whether the key checks tokens signed with `algorithm`.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.accepts.contains(algorithm)
    }

    /// The algorithm the key signs with, when it can sign.
    pub fn signing_algorithm(&self) -> Option<Algorithm> {
        self.signing.as_ref().map(|(a, _)| *a)
    }

    pub(crate) fn encoding(&self) -> Option<(Algorithm, &EncodingKey)> {
        self.signing.as_ref().map(|(a, k)| (*a, k))
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// What a token asks for: its algorithm and key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) algorithm: Algorithm,
    pub(crate) kid: Option<String>,
}

/// Keys to choose from.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set of configured keys; their ids must differ.
    pub(crate) fn new(keys: Vec<Key>) -> Result<Self, AuthError> {
        for (i, k) in keys.iter().enumerate() {
            if let Some(id) = k.id()
                && keys[..i].iter().any(|o| o.id() == Some(id))
            {
                return Err(AuthError::DuplicateKeyId(id.to_owned()));
            }
        }
        Ok(Self { keys })
    }

    /// A JWKS's keys (ids may repeat across algorithms).
    pub(crate) fn from_jwks(keys: Vec<Key>) -> Self {
        Self { keys }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key that can sign.
    pub(crate) fn signing(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.signing.is_some())
    }

    /// Whether any key takes `algorithm`.
    pub(crate) fn takes(&self, algorithm: Algorithm) -> bool {
        self.keys.iter().any(|k| k.accepts(algorithm))
    }

    /// The keys that may have signed a token asking for `wanted`: they take
    /// its algorithm, and when it names a `kid`, have that id or none.
    pub(crate) fn candidates<'a>(&'a self, wanted: &'a Wanted) -> impl Iterator<Item = &'a Key> {
        self.keys.iter().filter(move |k| {
            k.accepts(wanted.algorithm)
                && match (&wanted.kid, k.id()) {
                    (Some(kid), Some(id)) => kid == id,
                    _ => true,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/testdata/keys/rsa-public.pem");
    const P256_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/p256-private.pem");
    const P384_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/p384-private.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/ed25519-private.pem");

    #[test]
    fn algorithm_names_round_trip_exactly() {
        for a in ALL {
            assert_eq!(parse_algorithm(algorithm_name(a)), Some(a));
        }
        for bad in ["none", "hs256", "RSA-OAEP", "", "HS256 "] {
            assert_eq!(parse_algorithm(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_accept_only_their_own_algorithm() {
        let hs = Key::secret(Algorithm::HS384, "s").unwrap();
        assert!(hs.accepts(Algorithm::HS384));
        assert!(!hs.accepts(Algorithm::HS256));
        assert!(!hs.accepts(Algorithm::RS256));
        let rs = Key::public_pem(Algorithm::PS256, RSA_PUBLIC).unwrap();
        assert!(rs.accepts(Algorithm::PS256) && !rs.accepts(Algorithm::RS256));
        assert_eq!(rs.signing_algorithm(), None);
    }

    #[test]
    fn wrong_key_types_and_mismatches_are_errors() {
        assert!(matches!(
            Key::secret(Algorithm::RS256, "s"),
            Err(AuthError::WrongKeyType { .. })
        ));
        assert!(matches!(
            Key::secret(Algorithm::HS256, ""),
            Err(AuthError::EmptySecret)
        ));
        assert!(matches!(
            Key::public_pem(Algorithm::HS256, RSA_PUBLIC),
            Err(AuthError::WrongKeyType { .. })
        ));
        assert!(Key::public_pem(Algorithm::ES256, RSA_PUBLIC).is_err());
        assert!(Key::private_pem(Algorithm::ES384, P256_PRIVATE).is_err());
        assert!(Key::private_pem(Algorithm::ES256, P256_PRIVATE).is_ok());
        assert!(Key::private_pem(Algorithm::ES384, P384_PRIVATE).is_ok());
        assert!(Key::private_pem(Algorithm::EdDSA, ED_PRIVATE).is_ok());
        // The RSA private key derives its public half, which matches the
        // given public PEM.
        assert!(Key::pem_pair(Algorithm::RS512, RSA_PUBLIC, RSA_PRIVATE).is_ok());
        assert!(matches!(
            Key::pem_pair(Algorithm::RS256, RSA_PUBLIC, P256_PRIVATE),
            Err(AuthError::InvalidKey { .. })
        ));
    }

    #[test]
    fn a_kid_narrows_to_keys_with_that_id_or_none() {
        let set = KeySet::new(vec![
            Key::secret(Algorithm::HS256, "a").unwrap().with_id("a"),
            Key::secret(Algorithm::HS256, "b").unwrap().with_id("b"),
            Key::secret(Algorithm::HS256, "anon").unwrap(),
            Key::secret(Algorithm::HS512, "c").unwrap().with_id("c"),
        ])
        .unwrap();
        let ids = |alg, kid: Option<&str>| {
            let w = Wanted {
                algorithm: alg,
                kid: kid.map(str::to_owned),
            };
            set.candidates(&w)
                .map(|k| k.id().unwrap_or("-").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Algorithm::HS256, Some("b")), ["b", "-"]);
        assert_eq!(ids(Algorithm::HS256, None), ["a", "b", "-"]);
        assert_eq!(ids(Algorithm::HS256, Some("zzz")), ["-"]);
        assert_eq!(ids(Algorithm::HS512, Some("a")), Vec::<String>::new());
        assert_eq!(ids(Algorithm::RS256, None), Vec::<String>::new());
        assert!(matches!(
            KeySet::new(vec![
                Key::secret(Algorithm::HS256, "a").unwrap().with_id("x"),
                Key::secret(Algorithm::HS384, "b").unwrap().with_id("x"),
            ]),
            Err(AuthError::DuplicateKeyId(id)) if id == "x"
        ));
    }

    #[test]
    fn jwks_keys_take_their_family_or_their_alg() {
        let rsa = Key::private_pem(Algorithm::RS256, RSA_PRIVATE).unwrap();
        let (alg, enc) = rsa.encoding().unwrap();
        let mut jwk = Jwk::from_encoding_key(enc, alg).unwrap();
        let with_alg = Key::from_jwk(&jwk).unwrap();
        assert!(with_alg.accepts(Algorithm::RS256) && !with_alg.accepts(Algorithm::PS256));
        jwk.common.key_algorithm = None;
        let family = Key::from_jwk(&jwk).unwrap();
        assert!(family.accepts(Algorithm::PS512) && !family.accepts(Algorithm::ES256));
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        assert!(Key::from_jwk(&jwk).is_err());
        jwk.common.key_algorithm = None;
        jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(Key::from_jwk(&jwk).is_err());
        let hs = Key::secret(Algorithm::HS256, "s").unwrap();
        let (alg, enc) = hs.encoding().unwrap();
        let oct = Jwk::from_encoding_key(enc, alg).unwrap();
        assert!(Key::from_jwk(&oct).unwrap_err().contains("symmetric"));
    }
}
