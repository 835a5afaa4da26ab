//! The `chatrelay.v1` wire API, generated from `proto/chatrelay/v1/chatrelay.proto`.
//!
//! This crate is plumbing: the core and the edge convert these messages to
//! their own types at their boundaries.

#![allow(clippy::all, missing_docs)]

pub mod codec;

pub mod v1 {
    tonic::include_proto!("chatrelay.v1");

    /// The encoded `FileDescriptorSet` of the v1 API and its imports, for
    /// gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/chatrelay_descriptor.bin"));
}
