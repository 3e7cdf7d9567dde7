# A node image built by Packer: the `file` builder produces the root file
# system tarball (here it copies one; any builder that leaves a rootfs tar
# works the same), and a `shell-local` post-processor runs nodeimg on it:
# the recipe's layers go on top, the image is pushed to a registry, and the
# build's metadata (digests, layers, packages) lands next to the artifact.
#
#   CHECKPOINT_DISABLE=1 packer build \
#     -var rootfs=build/node-base.tar \
#     -var recipe=recipes/containerd-debian.toml \
#     -var registry=registry.example.org \
#     -var repository=nodes/containerd-debian -var tag=1.30 \
#     packer/node-image.pkr.hcl
#
# See packer/README.md for every variable.

variable "rootfs" {
  type        = string
  description = "The root file system tarball the node image starts from (.tar, .tar.gz, .tar.zst)."
}

variable "recipe" {
  type        = string
  description = "The nodeimg recipe to build on it."
}

variable "registry" {
  type        = string
  description = "The registry to push to: HOST[:PORT]."
}

variable "repository" {
  type        = string
  default     = "nodes/node"
  description = "The repository in that registry."
}

variable "tag" {
  type        = string
  default     = "latest"
  description = "The tag to push."
}

variable "output_dir" {
  type        = string
  default     = "out/packer"
  description = "Where the rootfs artifact, the OCI layout and the metadata go."
}

variable "nodeimg" {
  type        = string
  default     = "nodeimg"
  description = "The nodeimg binary."
}

variable "insecure_registry" {
  type        = bool
  default     = false
  description = "Speak plain HTTP to the registry (loopback test registries only; nodeimg refuses others)."
}

locals {
  artifact = "${var.output_dir}/rootfs.tar"
  insecure = var.insecure_registry ? "--insecure-registry ${var.registry}" : ""
}

source "file" "rootfs" {
  source = var.rootfs
  target = local.artifact
}

build {
  sources = ["source.file.rootfs"]

  post-processor "shell-local" {
    environment_vars = [
      "NODEIMG=${var.nodeimg}",
      "RECIPE=${var.recipe}",
      "ARTIFACT=${local.artifact}",
      "OUT=${var.output_dir}",
      "DEST=docker://${var.registry}/${var.repository}:${var.tag}",
      "INSECURE=${local.insecure}",
    ]
    inline = [
      "set -e",
      "echo \"nodeimg: $PACKER_BUILD_NAME ($PACKER_BUILDER_TYPE) -> $DEST\"",
      "\"$NODEIMG\" build \"$RECIPE\" --base \"rootfs:$ARTIFACT\" -o \"$OUT/image\" --push \"$DEST\" $INSECURE --metadata-file \"$OUT/metadata.json\"",
    ]
  }
}
