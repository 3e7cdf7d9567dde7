//! Architecture names: the OCI spelling an image declares (`amd64`, `arm`),
//! Debian's (`armhf`) and rpm's (`x86_64`, `armv7hl`); the map lives in
//! the layers crate, where the recipe's variables read it too.

pub use nodeimg_layers::arch::{debian, oci_from_debian, rpm};
