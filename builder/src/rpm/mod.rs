//! rpm packages from yum and zypper repositories: version ordering,
//! repository metadata, dependency resolution, `.rpm` files, and the
//! install into a layer.

pub mod install;
pub mod repodata;
pub mod resolve;
pub mod rpmfile;
pub mod version;
