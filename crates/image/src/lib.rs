//! nodeimg images: tar streams read and written with hashing and codecs,
//! bounded readers for hostile tars, base images (OCI layout, OCI archive,
//! rootfs tar, or a registry's through a [`base::Puller`]) indexed into a
//! read-only view, the packer of new layers, the writers of OCI layouts,
//! OCI archives and rootfs tars (atomic, locked), the layer cache, and
//! `inspect`.

pub mod base;
pub mod cache;
pub mod epoch;
pub mod error;
pub mod inspect;
pub mod limits;
pub mod output;
pub mod pack;
mod pgzip;
pub mod tarindex;
pub mod tarname;
pub mod tarstream;
mod xz;

pub use error::{Error, IoContext, Result};
