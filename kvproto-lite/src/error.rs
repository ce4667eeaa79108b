//! The crate's error type: failures to decode or encode a message.

/// An error from [`decode`](crate::decode) or [`encode`](crate::encode).
///
/// Decoding bytes from the network or from disk never panics: truncated,
/// malformed or garbage input becomes [`Error::Decode`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid encoding of the expected message (truncated,
    /// malformed wire data, or a string field that is not UTF-8).
    #[error("cannot decode {message}: {source}")]
    Decode {
        /// Rust type name of the message that was expected.
        message: &'static str,
        /// The protobuf runtime's description of the problem.
        #[source]
        source: protobuf::ProtobufError,
    },
    /// The message could not be encoded.
    #[error("cannot encode {message}: {source}")]
    Encode {
        /// Rust type name of the message.
        message: &'static str,
        /// The protobuf runtime's description of the problem.
        #[source]
        source: protobuf::ProtobufError,
    },
}

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
